//! Pure naming and small constants of the Docker task runner: container
//! names, the labels of sidecar volumes and fill containers, the volume
//! completeness marker (a tiny tar built in memory) and the musl loader path.
//!
//! No I/O here; everything is a function of its arguments.

use std::collections::BTreeMap;
use std::hash::{BuildHasher, Hasher};

use crate::container_spec::{
    LABEL_EXECUTION_ID, LABEL_MANAGED, LABEL_PREFIX, LABEL_TASK_ID, LABEL_WORKER_ID,
};

/// Label naming what a helper container is for (value [`ROLE_FILL`]).
pub const LABEL_ROLE: &str = "dev.warp.oz-agent-worker.role";
/// Label (`true`) on task containers made while cleanup is off: the
/// operator asked to keep them, so the reaper leaves them once they exit.
pub const LABEL_KEEP: &str = "dev.warp.oz-agent-worker.keep";
/// Label on helper containers naming the volume they work on.
pub const LABEL_VOLUME: &str = "dev.warp.oz-agent-worker.volume";
/// Label on sidecar volumes naming the image they hold.
pub const LABEL_SIDECAR_IMAGE: &str = "dev.warp.oz-agent-worker.sidecar-image";
/// Label on sidecar volumes: a random value per fill. With the creation
/// time (which the daemon reports to the second only) it is the volume's
/// identity: a volume made again under the same name does not carry it.
pub const LABEL_FILL_ID: &str = "dev.warp.oz-agent-worker.fill-id";
/// Label on shared sidecar volumes: the id of the image they were filled
/// from. A volume is named after a 48-bit prefix of a digest; it is reused
/// only for the very image that filled it.
pub const LABEL_FILLED_FROM: &str = "dev.warp.oz-agent-worker.filled-from";
/// Role of the containers that fill or probe a sidecar volume.
pub const ROLE_FILL: &str = "sidecar-fill";
/// Role of an instance's liveness lease volumes (see `lease`).
pub const ROLE_LEASE: &str = "lease";
/// Role of the volumes recording who owns a task container now (see `ownership`).
pub const ROLE_CLAIM: &str = "claim";
/// Label naming the worker process (instance) that owns a container, a
/// helper, a lease or a claim.
pub const LABEL_INSTANCE: &str = "dev.warp.oz-agent-worker.instance";
/// Label on task containers: when the task times out, Unix seconds on the
/// Docker daemon's clock; absent when it has no limit.
pub const LABEL_DEADLINE: &str = "dev.warp.oz-agent-worker.deadline";
/// Label on lease volumes: seconds the lease lasts after the volume's creation.
pub const LABEL_LEASE_TTL: &str = "dev.warp.oz-agent-worker.lease-ttl";
/// Label on claim volumes: the full id of the task container claimed.
pub const LABEL_CONTAINER: &str = "dev.warp.oz-agent-worker.container";
/// Label on claim volumes: their place in the container's chain of owners.
pub const LABEL_GENERATION: &str = "dev.warp.oz-agent-worker.generation";
/// Label (`true`) on a claim whose owner sent the task's terminal message.
pub const LABEL_REPORTED: &str = "dev.warp.oz-agent-worker.reported";
/// Label on task containers and execution claims: the execution's key
/// ([`exec_key`]), which also names the task container.
pub const LABEL_EXEC_KEY: &str = "dev.warp.oz-agent-worker.exec-key";
/// Label on lease volumes: the renewal's sequence number.
pub const LABEL_LEASE_SEQ: &str = "dev.warp.oz-agent-worker.lease-seq";
/// Role of the volumes that claim an execution (see `ownership`).
pub const ROLE_EXEC: &str = "exec";
/// Role of the tombstone of a reported execution.
pub const ROLE_EXEC_DONE: &str = "exec-done";
/// Role of a ping: one process asking another to show it is alive (the
/// target removes it at its next renewal).
pub const ROLE_PING: &str = "ping";
/// Label on a ping: the instance pinged.
pub const LABEL_TARGET: &str = "dev.warp.oz-agent-worker.target";
/// Role of the marker a cleanly stopped instance leaves instead of its lease.
pub const ROLE_RELEASED: &str = "released";
/// Role of a sidecar volume's use record (see `retention`): its creation
/// time on the daemon's clock is when a task last mounted the volume.
pub const ROLE_SIDECAR_USE: &str = "sidecar-use";
/// Role of an image's pull record (see `retention`): this worker pulled the
/// image; its creation time is when a task last used it.
pub const ROLE_IMAGE_PULL: &str = "image-pull";
/// Label on a pull record: the id of the image pulled (`sha256:…`).
pub const LABEL_IMAGE_ID: &str = "dev.warp.oz-agent-worker.image-id";
/// Label on a pull record: the reference the image was pulled as.
pub const LABEL_IMAGE: &str = "dev.warp.oz-agent-worker.image";
/// Every label under the worker's prefix that the worker reads from a
/// container. Each is written at create (empty where it has no value), so
/// an image's labels can never set one: Docker copies an image's labels
/// into the container only where the create request sets none.
pub const CONTAINER_LABELS: [&str; 16] = [
    LABEL_MANAGED,
    LABEL_WORKER_ID,
    LABEL_TASK_ID,
    LABEL_EXECUTION_ID,
    LABEL_ROLE,
    LABEL_KEEP,
    LABEL_VOLUME,
    LABEL_SIDECAR_IMAGE,
    LABEL_FILL_ID,
    LABEL_INSTANCE,
    LABEL_DEADLINE,
    LABEL_LEASE_TTL,
    LABEL_CONTAINER,
    LABEL_GENERATION,
    LABEL_REPORTED,
    LABEL_EXEC_KEY,
];

/// `labels` with every label of [`CONTAINER_LABELS`] it lacks added empty.
pub fn explicit_labels(mut labels: BTreeMap<String, String>) -> BTreeMap<String, String> {
    for key in CONTAINER_LABELS {
        labels.entry(key.to_owned()).or_default();
    }
    labels
}

/// The key of an execution: 32 hex digits of SHA-256 over the worker id,
/// task id and execution id (length-prefixed, so no two triples collide),
/// or 32 random hex digits when the execution id is empty (such a run
/// never matches another).
pub fn exec_key(worker_id: &str, task_id: &str, execution_id: &str) -> String {
    if execution_id.is_empty() {
        return format!(
            "{:08x}{:08x}{:08x}{:08x}",
            nonce(),
            nonce(),
            nonce(),
            nonce()
        );
    }
    let mut input = Vec::new();
    for part in [worker_id, task_id, execution_id] {
        input.extend_from_slice(&(part.len() as u64).to_be_bytes());
        input.extend_from_slice(part.as_bytes());
    }
    crate::docker::sha256::hex_digest(&input)[..32].to_owned()
}

/// `oz-exec-<key>-<generation>`: a claim on an execution.
pub fn exec_claim_name(key: &str, generation: u64) -> String {
    format!("oz-exec-{key}-{generation}")
}

/// `oz-exec-<key>-done`: the tombstone of a reported execution.
pub fn exec_done_name(key: &str) -> String {
    format!("oz-exec-{key}-done")
}

/// `oz-ping-<from>-<to>`: `from`'s ping to `to`.
pub fn ping_name(from: &str, to: &str) -> String {
    format!("oz-ping-{}-{}", sanitise(from), sanitise(to))
}

/// `oz-lease-<instance>-released`: a cleanly stopped instance's marker.
pub fn released_name(instance: &str) -> String {
    format!("oz-lease-{}-released", sanitise(instance))
}

/// Role of a task's private copy of a `read_write` sidecar (a volume
/// removed with the task's container).
pub const ROLE_TASK_SIDECAR: &str = "task-sidecar";
/// Suffix of the worker's own sidecar volume when a volume of the plain
/// name was made by another program and is in use. The plain name ends in
/// hex digits, so no image's plain name ends in this.
pub const FOREIGN_ALTERNATE_SUFFIX: &str = "-oz";
/// File at a sidecar volume's root written after a complete copy.
pub const MARKER: &str = ".oz-sidecar-complete";
/// Where fill and probe containers mount the volume.
pub const FILL_PATH: &str = "/oz-fill";

/// Longest task-id part of a container name (Docker allows long names, people read them).
const NAME_TASK_MAX: usize = 40;

/// `oz-task-<task id>-<first 8 of the execution id>-<key>`, with every
/// character Docker refuses in a name turned into `-`. The execution's key
/// makes the name the execution's own: the daemon refuses a second
/// container of the same execution (409), whatever happened to the claims.
pub fn container_name(task_id: &str, execution_id: &str, key: &str) -> String {
    let task: String = sanitise(task_id).chars().take(NAME_TASK_MAX).collect();
    let exec: String = sanitise(execution_id).chars().take(8).collect();
    let task = if task.is_empty() { "task".into() } else { task };
    let key: String = sanitise(key).chars().take(32).collect();
    if exec.is_empty() {
        format!("oz-task-{task}-{key}")
    } else {
        format!("oz-task-{task}-{exec}-{key}")
    }
}

/// A task's private sidecar volume: `oz-task-<task id>-sidecar-<nonce>`.
pub fn task_sidecar_volume_name(task_id: &str, nonce: u32) -> String {
    let task: String = sanitise(task_id).chars().take(NAME_TASK_MAX).collect();
    let task = if task.is_empty() { "task".into() } else { task };
    format!("oz-task-{task}-sidecar-{nonce:08x}")
}

/// A fill or probe container's name: `oz-fill-<volume>-<what>-<nonce>`.
pub fn helper_name(volume: &str, what: &str, nonce: u32) -> String {
    format!("oz-fill-{}-{what}-{nonce:08x}", sanitise(volume))
}

/// Docker names are `[a-zA-Z0-9][a-zA-Z0-9_.-]*`.
fn sanitise(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') {
                c
            } else {
                '-'
            }
        })
        .collect()
}

/// A random number for names, so a leftover container never blocks a new one.
pub fn nonce() -> u32 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.finish() as u32
}

/// Labels of a sidecar volume; `fill_id` is [`fill_id`]'s.
pub fn volume_labels(worker_id: &str, image: &str, fill: &Fill<'_>) -> BTreeMap<String, String> {
    BTreeMap::from([
        (LABEL_MANAGED.to_owned(), "true".to_owned()),
        (LABEL_WORKER_ID.to_owned(), worker_id.to_owned()),
        (LABEL_SIDECAR_IMAGE.to_owned(), image.to_owned()),
        (LABEL_FILL_ID.to_owned(), fill.id.to_owned()),
        (LABEL_INSTANCE.to_owned(), fill.instance.to_owned()),
        (LABEL_FILLED_FROM.to_owned(), fill.image_id.to_owned()),
    ])
}

/// Who fills a shared sidecar volume, and from what.
#[derive(Debug, Clone, Copy)]
pub struct Fill<'a> {
    /// A fresh [`fill_id`].
    pub id: &'a str,
    /// The filling process's instance (an incomplete volume is only
    /// replaced once that instance is gone).
    pub instance: &'a str,
    /// The image's id ([`LABEL_FILLED_FROM`]).
    pub image_id: &'a str,
}

/// A fresh [`LABEL_FILL_ID`] value (64 random bits, hex).
pub fn fill_id() -> String {
    format!("{:08x}{:08x}", nonce(), nonce())
}

/// Labels of a task's private sidecar volume, made by `instance`: only
/// reaped once that instance is gone (it may be filling it still).
pub fn task_sidecar_labels(
    worker_id: &str,
    instance: &str,
    task_id: &str,
    execution_id: &str,
) -> BTreeMap<String, String> {
    BTreeMap::from([
        (LABEL_MANAGED.to_owned(), "true".to_owned()),
        (LABEL_WORKER_ID.to_owned(), worker_id.to_owned()),
        (LABEL_INSTANCE.to_owned(), instance.to_owned()),
        (LABEL_TASK_ID.to_owned(), task_id.to_owned()),
        (LABEL_EXECUTION_ID.to_owned(), execution_id.to_owned()),
        (LABEL_ROLE.to_owned(), ROLE_TASK_SIDECAR.to_owned()),
    ])
}

/// Labels of a fill or probe container working on `volume` for `instance`
/// (every worker label written: its image is the sidecar's, whose labels
/// must not set any).
pub fn helper_labels(worker_id: &str, instance: &str, volume: &str) -> BTreeMap<String, String> {
    explicit_labels(BTreeMap::from([
        (LABEL_MANAGED.to_owned(), "true".to_owned()),
        (LABEL_WORKER_ID.to_owned(), worker_id.to_owned()),
        (LABEL_INSTANCE.to_owned(), instance.to_owned()),
        (LABEL_ROLE.to_owned(), ROLE_FILL.to_owned()),
        (LABEL_VOLUME.to_owned(), volume.to_owned()),
    ]))
}

/// The labels that let any later worker process finish a task container's
/// lifecycle with no state of its own: who runs it, when it times out (on
/// the daemon's clock) and whether it is kept after it ends.
pub fn lifecycle_labels(
    instance: &str,
    deadline: Option<u64>,
    keep: bool,
) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::from([
        (LABEL_INSTANCE.to_owned(), instance.to_owned()),
        (LABEL_KEEP.to_owned(), keep.to_string()),
    ]);
    if let Some(at) = deadline {
        labels.insert(LABEL_DEADLINE.to_owned(), at.to_string());
    }
    labels
}

/// `oz-lease-<instance>-<sequence>`: one of an instance's lease volumes.
pub fn lease_volume_name(instance: &str, sequence: u64) -> String {
    format!("oz-lease-{}-{sequence}", sanitise(instance))
}

/// `oz-claim-<container id>-<generation>`: the whole id, so claims on two
/// containers can never share a name.
pub fn claim_volume_name(container_id: &str, generation: u64) -> String {
    format!("oz-claim-{}-{generation}", sanitise(container_id))
}

/// Longest part of another name kept in a record volume's name; the
/// whole is in the record's labels. Docker stores a volume as a directory,
/// whose name the host's filesystem bounds (255 bytes).
const RECORD_NAME_PART_MAX: usize = 100;

/// `oz-used-<volume>-<nonce>`: a use record of sidecar volume `volume`
/// (its name cut to 100 characters, so the record's stays well within
/// what a filesystem allows).
pub fn sidecar_use_name(volume: &str, nonce: u32) -> String {
    let part: String = sanitise(volume)
        .chars()
        .take(RECORD_NAME_PART_MAX)
        .collect();
    format!("oz-used-{part}-{nonce:08x}")
}

/// `oz-pulled-<hex of the image id>-<nonce>`: a pull record of image `image_id`.
pub fn image_pull_name(image_id: &str, nonce: u32) -> String {
    let hex = image_id.strip_prefix("sha256:").unwrap_or(image_id);
    let part: String = sanitise(hex).chars().take(RECORD_NAME_PART_MAX).collect();
    format!("oz-pulled-{part}-{nonce:08x}")
}

/// `key=value` for a label filter.
pub fn label(key: &str, value: &str) -> String {
    debug_assert!(key.starts_with(LABEL_PREFIX));
    format!("{key}={value}")
}

/// The musl dynamic loader for the daemon's platform; its presence marks a
/// musl userland, where the agent (built against glibc) cannot run.
pub fn musl_loader(platform: &str) -> &'static str {
    if platform.ends_with("/arm64") {
        "/lib/ld-musl-aarch64.so.1"
    } else {
        "/lib/ld-musl-x86_64.so.1"
    }
}

/// A tar archive holding one empty regular file [`MARKER`] (mode 0644): one
/// ustar header block and the two zero blocks that end an archive.
pub fn marker_tar() -> Vec<u8> {
    let mut header = [0u8; 512];
    header[..MARKER.len()].copy_from_slice(MARKER.as_bytes());
    header[100..108].copy_from_slice(b"0000644\0"); // mode
    header[108..116].copy_from_slice(b"0000000\0"); // uid
    header[116..124].copy_from_slice(b"0000000\0"); // gid
    header[124..136].copy_from_slice(b"00000000000\0"); // size
    header[136..148].copy_from_slice(b"00000000000\0"); // mtime
    header[156] = b'0'; // regular file
    header[257..263].copy_from_slice(b"ustar\0");
    header[263..265].copy_from_slice(b"00");
    // The checksum is computed with its own field as spaces.
    header[148..156].copy_from_slice(b"        ");
    let sum: u32 = header.iter().map(|&b| u32::from(b)).sum();
    header[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    let mut tar = header.to_vec();
    tar.extend_from_slice(&[0u8; 1024]);
    tar
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_names_are_the_executions_own() {
        let key = "0123456789abcdef0123456789abcdef";
        assert_eq!(
            container_name("T-1", "abcdef0123", key),
            "oz-task-T-1-abcdef01-0123456789abcdef0123456789abcdef"
        );
        assert_eq!(
            container_name("a/b c", "", key),
            format!("oz-task-a-b-c-{key}")
        );
        assert_eq!(container_name("", "e", "k"), "oz-task-task-e-k");
        assert_eq!(
            container_name(&"x".repeat(90), "", key).len(),
            8 + 40 + 1 + 32
        );
    }

    #[test]
    fn execution_keys_are_stable_distinct_and_random_without_an_execution_id() {
        let a = exec_key("w", "t", "e");
        assert_eq!(a.len(), 32);
        assert_eq!(a, exec_key("w", "t", "e"));
        // Length-prefixed: moving a character between fields changes the key.
        assert_ne!(exec_key("w", "te", ""), exec_key("w", "t", "e"));
        assert_ne!(exec_key("w", "t", "e"), exec_key("w2", "t", "e"));
        assert_ne!(exec_key("w", "t", ""), exec_key("w", "t", ""));
    }

    #[test]
    fn explicit_labels_fill_every_worker_label() {
        let l = explicit_labels(BTreeMap::from([(LABEL_ROLE.to_owned(), "x".to_owned())]));
        assert_eq!(l.len(), CONTAINER_LABELS.len());
        assert_eq!(l[LABEL_ROLE], "x");
        assert_eq!(l[LABEL_DEADLINE], "");
    }

    #[test]
    fn lifecycle_labels_say_owner_deadline_and_cleanup() {
        assert_eq!(
            lifecycle_labels("ab12", Some(1_800_000_000), false),
            BTreeMap::from([
                (
                    "dev.warp.oz-agent-worker.deadline".to_owned(),
                    "1800000000".to_owned()
                ),
                (
                    "dev.warp.oz-agent-worker.instance".to_owned(),
                    "ab12".to_owned()
                ),
                (
                    "dev.warp.oz-agent-worker.keep".to_owned(),
                    "false".to_owned()
                ),
            ])
        );
        let kept = lifecycle_labels("ab12", None, true);
        assert_eq!(kept.get(LABEL_KEEP).map(String::as_str), Some("true"));
        assert!(!kept.contains_key(LABEL_DEADLINE));
    }

    #[test]
    fn lease_and_claim_names() {
        assert_eq!(lease_volume_name("0a1b", 7), "oz-lease-0a1b-7");
        assert_eq!(
            claim_volume_name("4f1c2e9a8b7d6c5e4f3a2b1c0d9e8f7a", 2),
            "oz-claim-4f1c2e9a8b7d6c5e4f3a2b1c0d9e8f7a-2"
        );
    }

    #[test]
    fn record_names_are_bounded_and_name_their_object() {
        assert_eq!(
            sidecar_use_name("warpdotdev-warp-agent-0123456789ab", 0xabc),
            "oz-used-warpdotdev-warp-agent-0123456789ab-00000abc"
        );
        let long = sidecar_use_name(&"x".repeat(300), 1);
        assert_eq!(long.len(), 8 + 100 + 9);
        assert_eq!(
            image_pull_name(&format!("sha256:{}", "ab".repeat(32)), 2),
            format!("oz-pulled-{}-00000002", "ab".repeat(32))
        );
        assert_eq!(
            image_pull_name("weird/id", 3),
            "oz-pulled-weird-id-00000003"
        );
    }

    #[test]
    fn musl_paths() {
        assert_eq!(musl_loader("linux/amd64"), "/lib/ld-musl-x86_64.so.1");
        assert_eq!(musl_loader("linux/arm64"), "/lib/ld-musl-aarch64.so.1");
    }

    #[test]
    fn marker_is_a_valid_one_file_tar() {
        let tar = marker_tar();
        assert_eq!(tar.len(), 1536);
        assert_eq!(&tar[..20], b".oz-sidecar-complete");
        assert_eq!(&tar[257..263], b"ustar\0");
        let mut h = tar[..512].to_vec();
        let stored = std::str::from_utf8(&h[148..154]).unwrap().to_string();
        h[148..156].copy_from_slice(b"        ");
        let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
        assert_eq!(u32::from_str_radix(&stored, 8).unwrap(), sum);
        assert!(tar[512..].iter().all(|&b| b == 0));
    }

    #[test]
    fn labels_carry_the_worker() {
        let helper = helper_labels("w", "i1", "v");
        assert_eq!(
            helper.get(LABEL_ROLE).map(String::as_str),
            Some("sidecar-fill")
        );
        assert_eq!(helper.get(LABEL_INSTANCE).map(String::as_str), Some("i1"));
        let labels = volume_labels(
            "w",
            "img",
            &Fill {
                id: "f1",
                instance: "i1",
                image_id: "sha256:ab",
            },
        );
        assert_eq!(labels[LABEL_SIDECAR_IMAGE], "img");
        assert_eq!(labels[LABEL_FILL_ID], "f1");
        assert_eq!(labels[LABEL_INSTANCE], "i1");
        assert_eq!(labels[LABEL_FILLED_FROM], "sha256:ab");
        assert_eq!(fill_id().len(), 16);
        let private = task_sidecar_labels("w", "i1", "T", "E");
        assert_eq!(private[LABEL_INSTANCE], "i1");
        assert_eq!(private[LABEL_ROLE], "task-sidecar");
        assert_eq!(private[LABEL_TASK_ID], "T");
        assert_eq!(private[LABEL_EXECUTION_ID], "E");
        assert_eq!(private[LABEL_WORKER_ID], "w");
        assert_eq!(private[LABEL_MANAGED], "true");
        assert_eq!(
            label(LABEL_VOLUME, "v"),
            "dev.warp.oz-agent-worker.volume=v"
        );
    }
}

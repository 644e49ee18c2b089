//! Claim volumes: the records that move a task container from a gone
//! worker process to a live one, that say its terminal message was sent,
//! and that claim an execution before anything is pulled (the design is
//! in [`super::ownership`]).
//!
//! Owns creating, reading back and removing claims; it must not decide who
//! may claim what (that is `ownership`'s verdict), nor keep what this
//! process holds (that is `lease`'s `Ownership`, whose renewal makes these
//! claims again), nor touch the containers.

use std::collections::BTreeMap;

use super::names::{
    self, LABEL_CONTAINER, LABEL_EXEC_KEY, LABEL_GENERATION, LABEL_INSTANCE, LABEL_REPORTED,
    LABEL_ROLE, ROLE_CLAIM, ROLE_EXEC, ROLE_EXEC_DONE,
};
use crate::container_spec::{LABEL_EXECUTION_ID, LABEL_MANAGED, LABEL_TASK_ID, LABEL_WORKER_ID};
use crate::docker::{Docker, DockerError};

/// The labels of a claim on `container_id` at `generation` by `instance`.
pub fn claim_labels(
    worker_id: &str,
    instance: &str,
    container_id: &str,
    generation: u64,
    reported: bool,
) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::from([
        (LABEL_MANAGED.to_owned(), "true".to_owned()),
        (LABEL_WORKER_ID.to_owned(), worker_id.to_owned()),
        (LABEL_ROLE.to_owned(), ROLE_CLAIM.to_owned()),
        (LABEL_INSTANCE.to_owned(), instance.to_owned()),
        (LABEL_CONTAINER.to_owned(), container_id.to_owned()),
        (LABEL_GENERATION.to_owned(), generation.to_string()),
    ]);
    if reported {
        labels.insert(LABEL_REPORTED.to_owned(), "true".to_owned());
    }
    labels
}

/// Tries to take `container_id` at `generation`. Creating a volume whose name
/// exists returns the existing one unchanged, so when two processes race for
/// the same generation both read back the same first creator: true only for
/// the one whose instance the volume names.
pub fn try_claim(
    docker: &Docker,
    worker_id: &str,
    instance: &str,
    container_id: &str,
    generation: u64,
) -> Result<bool, DockerError> {
    let labels = claim_labels(worker_id, instance, container_id, generation, false);
    let name = names::claim_volume_name(container_id, generation);
    let made = docker.volume_create(&name, &labels)?;
    Ok(
        made.labels.get(LABEL_INSTANCE).map(String::as_str) == Some(instance)
            && made.labels.get(LABEL_CONTAINER).map(String::as_str) == Some(container_id),
    )
}

/// Records that the terminal message of `container_id` was sent, so no later
/// process reports the task again while the container is kept (cleanup off)
/// or being stopped when this process ends.
pub fn mark_reported(
    docker: &Docker,
    worker_id: &str,
    instance: &str,
    container_id: &str,
    generation: u64,
) -> Result<(), DockerError> {
    let labels = claim_labels(worker_id, instance, container_id, generation, true);
    docker
        .volume_create(&names::claim_volume_name(container_id, generation), &labels)
        .map(drop)
}

/// The labels of a claim on execution `key` at `generation` by `instance`.
pub fn exec_labels(
    worker_id: &str,
    instance: &str,
    key: &str,
    generation: u64,
    ids: (&str, &str),
) -> BTreeMap<String, String> {
    BTreeMap::from([
        (LABEL_MANAGED.to_owned(), "true".to_owned()),
        (LABEL_WORKER_ID.to_owned(), worker_id.to_owned()),
        (LABEL_ROLE.to_owned(), ROLE_EXEC.to_owned()),
        (LABEL_INSTANCE.to_owned(), instance.to_owned()),
        (LABEL_EXEC_KEY.to_owned(), key.to_owned()),
        (LABEL_GENERATION.to_owned(), generation.to_string()),
        (LABEL_TASK_ID.to_owned(), ids.0.to_owned()),
        (LABEL_EXECUTION_ID.to_owned(), ids.1.to_owned()),
    ])
}

/// What a claim on a done execution reads back as: nobody may hold it.
pub const DONE_HOLDER: &str = "(done)";

/// Tries to take execution `key` at `generation` for `instance`, recording
/// `ids` (task id, execution id) on the claim; returns the holder (`instance`
/// when it won, [`DONE_HOLDER`] when the execution was reported already).
/// What this process holds is [`super::lease::Ownership::claim_exec`]'s to
/// record.
pub fn claim_exec(
    docker: &Docker,
    worker_id: &str,
    instance: &str,
    key: &str,
    generation: u64,
    ids: (&str, &str),
) -> Result<String, DockerError> {
    if docker
        .volume_inspect(&names::exec_done_name(key))?
        .is_some()
    {
        return Ok(DONE_HOLDER.to_owned());
    }
    let labels = exec_labels(worker_id, instance, key, generation, ids);
    let made = docker.volume_create(&names::exec_claim_name(key, generation), &labels)?;
    Ok(made.labels.get(LABEL_INSTANCE).cloned().unwrap_or_default())
}

/// Marks execution `key` done (its tombstone, recording `ids`) and removes
/// its claims. The caller stops renewing its claim first
/// ([`super::lease::Ownership::mark_exec_done`]).
pub fn mark_done(
    docker: &Docker,
    worker_id: &str,
    instance: &str,
    key: &str,
    ids: (&str, &str),
) -> Result<(), DockerError> {
    let mut labels = exec_labels(worker_id, instance, key, 0, ids);
    labels.insert(LABEL_ROLE.to_owned(), ROLE_EXEC_DONE.to_owned());
    labels.remove(LABEL_GENERATION);
    docker.volume_create(&names::exec_done_name(key), &labels)?;
    let worker = names::label(LABEL_WORKER_ID, worker_id);
    let of = names::label(LABEL_EXEC_KEY, key);
    let role = names::label(LABEL_ROLE, ROLE_EXEC);
    for v in docker.volume_list_by_label(&[&worker, &of, &role])? {
        docker.volume_remove(&v.name)?;
    }
    Ok(())
}

/// Removes every claim on `container_id` (it is gone).
pub fn remove_all(docker: &Docker, worker_id: &str, container_id: &str) -> Result<(), DockerError> {
    let worker = names::label(LABEL_WORKER_ID, worker_id);
    let on = names::label(LABEL_CONTAINER, container_id);
    for v in docker.volume_list_by_label(&[&worker, &on])? {
        docker.volume_remove(&v.name)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claim_labels_are_exact() {
        let labels = claim_labels("w", "i2", "c0ffee", 3, true);
        let expected: BTreeMap<String, String> = [
            ("dev.warp.oz-agent-worker.container", "c0ffee"),
            ("dev.warp.oz-agent-worker.generation", "3"),
            ("dev.warp.oz-agent-worker.instance", "i2"),
            ("dev.warp.oz-agent-worker.managed", "true"),
            ("dev.warp.oz-agent-worker.reported", "true"),
            ("dev.warp.oz-agent-worker.role", "claim"),
            ("dev.warp.oz-agent-worker.worker-id", "w"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        assert_eq!(labels, expected);
        assert!(!claim_labels("w", "i2", "c", 1, false).contains_key(LABEL_REPORTED));
    }
}

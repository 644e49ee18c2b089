//! The prefetch rows: the first task of a fresh worker whose task image
//! and sidecar image are only in a registry (none of their layers on the
//! daemon, no sidecar volume), without and with `--prefetch-image`, against
//! a warm task (the [`NTH`] on the prefetched worker).
//!
//! The images are the bench's own, built here with fresh content (the
//! test task image's and stub sidecar's filesystems plus random bytes), so
//! no layer is shared with anything the daemon keeps; they are pushed to a
//! real local registry (`docker-registry`, the stand-in's [`Registry`]) and
//! removed from the daemon before every first task. The registry's access
//! log proves each first task's images came from it.

use std::path::Path;
use std::time::Duration;

use oz_standin::registry::{Registry, RegistryOpts};
use oz_standin::relay::TempDir;
use serde_json::json;

use crate::docker::{self, docker};
use crate::error::{BenchError, Result, io};
use crate::sections::Cfg;
use crate::stats::median;
use crate::table::{Row, Target};
use crate::tasks::{Session, assignment};

const MB: f64 = 1e6;
/// Random bytes in the registry sidecar (as in the ~50 MB bench sidecar).
const SIDECAR_FILL: usize = 50_000_000;
/// The warm task is this one of the prefetched worker's sequential tasks.
pub const NTH: usize = 100;
/// Longest wait for a prefetch (two pulls and a 50 MB fill).
const PREFETCH_TIMEOUT: Duration = Duration::from_secs(300);

/// Builds `tag`: `from`'s filesystem (a created container, exported) plus
/// `fill` random bytes, FROM scratch, labelled with the bench's label.
const BUILD: &str = r#"set -euo pipefail
dir=$1 from=$2 tag=$3 label=$4 fill=$5
mkdir -p "$dir"
c=$(docker create --label "$label" "$from" /oz-bench-none)
status=0
docker export "$c" > "$dir/rootfs.tar" || status=$?
docker rm -f "$c" >/dev/null
[ "$status" = 0 ] || exit "$status"
head -c "$fill" /dev/urandom > "$dir/fill.bin"
printf 'FROM scratch\nADD rootfs.tar /\nCOPY fill.bin /oz-bench-fill.bin\nENV PATH=/bin\nLABEL oz-agent-worker.test=1 %s\n' "$label" > "$dir/Dockerfile"
docker build -q -t "$tag" "$dir" >/dev/null
rm -f "$dir/rootfs.tar" "$dir/fill.bin"
"#;

fn med(xs: &[f64]) -> f64 {
    median(xs).unwrap_or(f64::NAN)
}

fn build(dir: &Path, from: &str, tag: &str, label: &str, fill: usize) -> Result<()> {
    let dir = dir.to_string_lossy().into_owned();
    let fill = fill.to_string();
    let out = std::process::Command::new("bash")
        .args(["-c", BUILD, "_", &dir, from, tag, label, &fill])
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(io(format!("building {tag}")))?;
    if !out.status.success() {
        return Err(BenchError::Command {
            command: format!("building {tag} from {from}"),
            detail: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    Ok(())
}

/// Removes images (and so their layers) from the daemon when dropped.
struct Images(Vec<String>);

impl Drop for Images {
    fn drop(&mut self) {
        for image in &self.0 {
            let _ = forget(image, false);
        }
    }
}

/// Removes `image` from the daemon if it is there; for a sidecar, its
/// shared volume first. Errors unless it is gone afterwards.
fn forget(image: &str, sidecar: bool) -> Result<()> {
    if docker(&["image", "inspect", "-f", "{{.Id}}", image]).is_err() {
        return Ok(());
    }
    if sidecar && let Ok(volume) = docker::sidecar_volume(image) {
        docker(&["volume", "rm", "-f", &volume])?;
    }
    docker(&["rmi", image])?;
    if docker(&["image", "inspect", "-f", "{{.Id}}", image]).is_ok() {
        return Err(BenchError::Unexpected {
            what: format!("{image} is still on the daemon after docker rmi"),
        });
    }
    Ok(())
}

/// Seconds of a Go-style duration as the worker logs it (`850.2ms`,
/// `3.1s`, `1m2.5s`).
fn go_secs(text: &str) -> Option<f64> {
    if let Some(ms) = text.strip_suffix("ms") {
        return Some(ms.parse::<f64>().ok()? / 1000.0);
    }
    let s = text.strip_suffix('s')?;
    match s.split_once('m') {
        Some((m, s)) => Some(m.parse::<f64>().ok()? * 60.0 + s.parse::<f64>().ok()?),
        None => s.parse().ok(),
    }
}

/// The rows: first task without prefetch, first task with it, the warm
/// task they are compared with.
pub fn first_task(cfg: &Cfg) -> Result<Vec<Row>> {
    let registry =
        Registry::try_start(RegistryOpts::default()).map_err(|e| BenchError::Command {
            command: "docker-registry serve".into(),
            detail: e.to_string(),
        })?;
    let scratch = TempDir::new("bench-first").map_err(|e| BenchError::Command {
        command: "mktemp".into(),
        detail: e.to_string(),
    })?;
    let task_src = format!("oz-bench/first-task:{}", cfg.run_id);
    let sidecar_src = format!("oz-bench/first-sidecar:{}", cfg.run_id);
    let mut images = Images(vec![task_src.clone(), sidecar_src.clone()]);
    build(
        &scratch.path().join("task"),
        &cfg.image,
        &task_src,
        &cfg.label,
        64,
    )?;
    build(
        &scratch.path().join("sidecar"),
        &cfg.sidecar,
        &sidecar_src,
        &cfg.label,
        SIDECAR_FILL,
    )?;
    let task_mb = docker::image_size(&task_src)? as f64 / MB;
    let sidecar_mb = docker::image_size(&sidecar_src)? as f64 / MB;
    let repo = format!("oz-bench-{}", cfg.run_id);
    let push = |src: &str, name: &str| {
        registry
            .push(src, &format!("{repo}/{name}:first"))
            .map_err(|e| BenchError::Command {
                command: format!("docker push {name}"),
                detail: e.to_string(),
            })
    };
    let task = push(&task_src, "task")?;
    let sidecar = push(&sidecar_src, "sidecar")?;
    images.0.extend([task.clone(), sidecar.clone()]);
    forget(&task_src, false)?;
    forget(&sidecar_src, false)?;
    let task_blobs = format!("/v2/{repo}/task/blobs/");
    let sidecar_blobs = format!("/v2/{repo}/sidecar/blobs/");
    let fetched = |since: (usize, usize)| {
        (
            registry.requests("GET", &task_blobs) - since.0,
            registry.requests("GET", &sidecar_blobs) - since.1,
        )
    };
    let reset = || -> Result<(usize, usize)> {
        forget(&task, false)?;
        forget(&sidecar, true)?;
        Ok(fetched((0, 0)))
    };
    let frame = |id: &str| assignment(id, &task, &sidecar, None, json!({}));
    let (mut cold, mut first, mut warm, mut ready) = (vec![], vec![], vec![], vec![]);
    // The last ten tasks of every prefetched worker: how much one task varies.
    let mut tail = vec![];
    for i in 0..cfg.heavy_runs {
        // Without prefetch: the assignment as soon as the worker is connected.
        // (A worker always warms its --sidecar-image at start; that pull has
        // just begun, and the task waits for it instead of starting another.)
        let since = reset()?;
        let mut s = Session::connect(
            &cfg.worker,
            &cfg.worker_id("first-cold", i),
            &[
                "--image-pull-policy",
                "IfNotPresent",
                "--sidecar-image",
                &sidecar,
            ],
        )?;
        cold.push(s.run_ok("cold", &frame("cold"))?);
        s.shutdown()?;
        check_pulled(fetched(since), "the first task without prefetch")?;

        // With prefetch: the assignment once the worker says all is ready.
        let since = reset()?;
        let mut s = Session::connect(
            &cfg.worker,
            &cfg.worker_id("first-warm", i),
            &[
                "--image-pull-policy",
                "IfNotPresent",
                "--sidecar-image",
                &sidecar,
                "--prefetch-image",
                &task,
            ],
        )?;
        s.pump_until_logged("image(s) ready in", 1, PREFETCH_TIMEOUT)?;
        let lines = s.worker.log_handle()();
        let line = lines
            .iter()
            .find(|l| l.contains("image(s) ready in"))
            .cloned()
            .unwrap_or_default();
        if !line.contains("prefetch: 2 of 2 image(s)") {
            return Err(BenchError::Unexpected {
                what: format!("the prefetch did not make both images ready: {line:?}"),
            });
        }
        if let Some(secs) = line
            .rsplit("ready in ")
            .next()
            .and_then(|t| go_secs(t.trim()))
        {
            ready.push(secs);
        }
        check_pulled(fetched(since), "the prefetch")?;
        let before = fetched((0, 0));
        first.push(s.run_ok("t1", &frame("t1"))?);
        let after = fetched(before);
        if after != (0, 0) {
            return Err(BenchError::Unexpected {
                what: format!("the prefetched first task fetched {after:?} blobs"),
            });
        }
        let mut last = f64::NAN;
        for t in 2..=NTH {
            let id = format!("t{t}");
            last = s.run_ok(&id, &frame(&id))?;
            if t + 10 > NTH {
                tail.push(last);
            }
            if std::env::var_os("OZ_BENCH_DEBUG").is_some() && (t <= 5 || t == NTH) {
                eprintln!("[oz-bench] task {t}: {last:.0} ms");
            }
        }
        if std::env::var_os("OZ_BENCH_DEBUG").is_some() {
            let lines = s.worker.log_handle()();
            let from = lines.iter().position(|l| l.contains("image(s) ready in"));
            for l in lines.iter().skip(from.unwrap_or(0)).take(40) {
                eprintln!("{l}");
            }
        }
        warm.push(last);
        s.shutdown()?;
    }
    reset()?;
    let (c, f, w) = (med(&cold), med(&first), med(&warm));
    let warm_text = format!("{w:.0} ms (warm: task {NTH})");
    let ready_text = if ready.is_empty() {
        String::new()
    } else {
        format!("; prefetch ready {:.1} s after start", med(&ready))
    };
    Ok(vec![
        Row::new(
            format!(
                "first task, fresh worker, no prefetch ({task_mb:.1} MB task image + \
                 {sidecar_mb:.1} MB sidecar from a local registry, volume filled)"
            ),
            format!("{c:.0} ms"),
        )
        .compared(warm_text.clone(), c / w),
        Row::new(
            "first task, with prefetch (`--prefetch-image`; sent once the worker logged \
             `prefetch: 2 of 2 image(s) ready`)",
            format!("{f:.0} ms{ready_text}"),
        )
        .compared(warm_text, f / w)
        .target(Target::at_most(1.10, ""), f / w),
        Row::new(
            format!("warm task: the {NTH}th of {NTH} sequential tasks on the prefetched worker"),
            format!(
                "{w:.0} ms (tasks {}–{NTH}: median {:.0} ms, {:.0}–{:.0})",
                NTH - 9,
                med(&tail),
                tail.iter().copied().fold(f64::INFINITY, f64::min),
                tail.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            ),
        ),
    ])
}

/// Errors unless both images' blobs were fetched from the registry.
fn check_pulled((task, sidecar): (usize, usize), what: &str) -> Result<()> {
    if task == 0 || sidecar == 0 {
        return Err(BenchError::Unexpected {
            what: format!(
                "{what} fetched {task} task and {sidecar} sidecar blob(s) from the registry; \
                 were the images still on the daemon?"
            ),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_go_durations() {
        assert_eq!(go_secs("850ms"), Some(0.85));
        assert_eq!(go_secs("3.5s"), Some(3.5));
        assert_eq!(go_secs("1m2.5s"), Some(62.5));
        assert_eq!(go_secs("soon"), None);
    }
}

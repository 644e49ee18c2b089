//! The side-by-side rows: the worker against the same Engine API calls
//! made with curl (`bench/raw-api.sh`) and against `docker run --rm`, each
//! repetition interleaved so both see the same machine load.

use std::collections::VecDeque;
use std::time::Instant;

use serde_json::json;

use crate::docker::{self, docker};
use crate::error::{BenchError, Result};
use crate::sections::Cfg;
use crate::stats::median;
use crate::table::{Row, Target};
use crate::tasks::{Session, assignment, is_terminal, kind_and_task};

const MB: f64 = 1e6;
/// Tasks in the throughput run and the worker's slots for it.
const BATCH: usize = 200;
const SLOTS: usize = 8;

fn med(xs: &[f64]) -> f64 {
    median(xs).unwrap_or(f64::NAN)
}

/// The one sidecar volume `s`'s worker made so far.
fn only_volume(s: &Session) -> Result<String> {
    let vols = docker::worker_volumes(&s.worker.worker_id)?;
    match vols.as_slice() {
        [one] => Ok(one.clone()),
        other => Err(BenchError::Unexpected {
            what: format!("expected one sidecar volume, found {other:?}"),
        }),
    }
}

/// Per-task wall time (worker vs raw API vs docker run) and the cost of a
/// cache-hit sidecar (a task with one more, already-filled, sidecar).
pub fn per_task(cfg: &Cfg) -> Result<Vec<Row>> {
    let mut s = Session::connect(
        &cfg.worker,
        &cfg.worker_id("pertask", 0),
        &["--image-pull-policy", "IfNotPresent"],
    )?;
    let plain = |id: &str| assignment(id, &cfg.image, &cfg.sidecar, None, json!({}));
    let extra = |id: &str| assignment(id, &cfg.image, &cfg.sidecar, Some(&cfg.sidecar), json!({}));
    // Warm-up: fills the sidecar volume and every cache on both paths.
    s.run_ok("warm-0", &plain("warm-0"))?;
    s.run_ok("warm-1", &extra("warm-1"))?;
    let volume = only_volume(&s)?;
    let raw_args = |i: usize| {
        let name = format!("oz-bench-raw-{}-{i}", cfg.run_id);
        [
            "task".to_string(),
            cfg.image.clone(),
            cfg.sidecar.clone(),
            volume.clone(),
            cfg.label.clone(),
            name,
        ]
    };
    let raw = |i: usize| {
        let args = raw_args(i);
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        docker::script_number(&cfg.raw_script, &refs)
    };
    raw(0)?;
    docker::docker_run_ms(&cfg.image, &volume, &cfg.label)?;
    let (mut w, mut r, mut d, mut hit) = (vec![], vec![], vec![], vec![]);
    for i in 0..cfg.runs {
        let one = s.run_ok(&format!("p{i}"), &plain(&format!("p{i}")))?;
        let two = s.run_ok(&format!("e{i}"), &extra(&format!("e{i}")))?;
        w.push(one);
        hit.push(two - one);
        r.push(raw(i + 1)?);
        d.push(docker::docker_run_ms(&cfg.image, &volume, &cfg.label)?);
    }
    s.shutdown()?;
    let (w, r, d, hit) = (med(&w), med(&r), med(&d), med(&hit));
    Ok(vec![
        Row::new(
            "wall time per task (container exits at once), vs raw API",
            format!("{w:.0} ms"),
        )
        .compared(format!("{r:.0} ms (curl, same calls)"), w / r)
        .target(Target::at_most(1.10, ""), w / r),
        Row::new(
            "wall time per task, vs `docker run --rm`",
            format!("{w:.0} ms"),
        )
        .compared(format!("{d:.0} ms (docker run --rm)"), w / d)
        .target(Target::at_most(0.8, ""), w / d),
        Row::new(
            "sidecar cache hit, per task (task with 2 sidecars − task with 1)",
            format!("{hit:.1} ms"),
        )
        .target(Target::at_most(10.0, "ms"), hit),
    ])
}

/// 200 tasks through 8 slots vs 8 parallel curl sequences.
pub fn throughput(cfg: &Cfg) -> Result<Row> {
    let (mut w, mut r, mut rejected) = (vec![], vec![], 0usize);
    for run in 0..cfg.heavy_runs {
        let slots = SLOTS.to_string();
        let mut s = Session::connect(
            &cfg.worker,
            &cfg.worker_id("tput", run),
            &[
                "--image-pull-policy",
                "IfNotPresent",
                "--max-concurrent-tasks",
                &slots,
            ],
        )?;
        let frame = |id: &str| assignment(id, &cfg.image, &cfg.sidecar, None, json!({}));
        s.run_ok("warm", &frame("warm"))?;
        let volume = only_volume(&s)?;
        let start = Instant::now();
        let mut queue: VecDeque<String> = (0..BATCH).map(|i| format!("b{i}")).collect();
        let (mut done, mut failed) = (0, 0);
        for _ in 0..SLOTS {
            if let Some(id) = queue.pop_front() {
                s.server.send(&frame(&id))?;
            }
        }
        let deadline = start + crate::tasks::TASK_TIMEOUT * 4;
        while done < BATCH {
            let Some((_, v)) = s.server.recv(deadline)? else {
                return Err(BenchError::Timeout {
                    what: format!("{BATCH} tasks to end ({done} did)"),
                });
            };
            let next = match kind_and_task(&v) {
                Some((kind, _)) if is_terminal(kind) => {
                    done += 1;
                    failed += usize::from(kind != "task_completed");
                    queue.pop_front()
                }
                // The terminal frame can overtake the slot's release: resend.
                Some(("task_rejected", id)) => {
                    rejected += 1;
                    Some(id.to_owned())
                }
                _ => None,
            };
            if let Some(id) = next {
                s.server.send(&frame(&id))?;
            }
        }
        let secs = start.elapsed().as_secs_f64();
        if failed > 0 {
            return Err(BenchError::Unexpected {
                what: format!("{failed} of {BATCH} tasks failed"),
            });
        }
        w.push(BATCH as f64 / secs);
        let n = BATCH.to_string();
        let raw_secs = docker::script_number(
            &cfg.raw_script,
            &[
                "parallel",
                &n,
                &slots,
                &cfg.image,
                &cfg.sidecar,
                &volume,
                &cfg.label,
            ],
        )?;
        r.push(BATCH as f64 / raw_secs);
        s.shutdown()?;
    }
    let (w, r) = (med(&w), med(&r));
    let note = if rejected > 0 {
        format!(" ({rejected} re-sent after task_rejected)")
    } else {
        String::new()
    };
    Ok(Row::new(
        format!("throughput, {BATCH} tasks at {SLOTS} slots"),
        format!("{w:.2} tasks/s{note}"),
    )
    .compared(format!("{r:.2} tasks/s (8 parallel curl sequences)"), w / r)
    .target(Target::at_least(0.9, ""), w / r))
}

/// First copy of the big sidecar (fill − hit task time) vs export | cp.
pub fn sidecar_copy(cfg: &Cfg, big: &str) -> Result<Row> {
    let size = docker::image_size(big)? as f64;
    let (mut w, mut c) = (vec![], vec![]);
    let mut s = Session::connect(
        &cfg.worker,
        &cfg.worker_id("copy", 0),
        &["--image-pull-policy", "IfNotPresent"],
    )?;
    for i in 0..cfg.heavy_runs {
        for v in docker::worker_volumes(&s.worker.worker_id)? {
            docker(&["volume", "rm", "-f", &v])?;
        }
        let frame = |id: &str| assignment(id, &cfg.image, big, None, json!({}));
        let fill = s.run_ok(&format!("f{i}"), &frame(&format!("f{i}")))?;
        let hit = s.run_ok(&format!("h{i}"), &frame(&format!("h{i}")))?;
        w.push(size / MB / ((fill - hit) / 1000.0));
        let cp_ms = docker::script_number(&cfg.raw_script, &["copy", big, &cfg.label])?;
        c.push(size / MB / (cp_ms / 1000.0));
    }
    s.shutdown()?;
    let (w, c) = (med(&w), med(&c));
    Ok(Row::new(
        format!(
            "sidecar first copy, {:.1} MB image (fill task − cached task)",
            size / MB
        ),
        format!("{w:.0} MB/s"),
    )
    .compared(format!("{c:.0} MB/s (docker export | docker cp)"), w / c))
}

//! The side-by-side rows: the worker against the same Engine API calls
//! made with curl (`bench/raw-api.sh`) and against `docker run --rm`, each
//! repetition interleaved so both see the same machine load.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

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

/// Per-task wall time (worker vs raw API vs docker run) and the worker's own
/// CPU per task.
pub fn per_task(cfg: &Cfg) -> Result<Vec<Row>> {
    let mut s = Session::connect(
        &cfg.worker,
        &cfg.worker_id("pertask", 0),
        &["--image-pull-policy", "IfNotPresent"],
    )?;
    let plain = |id: &str| assignment(id, &cfg.image, &cfg.sidecar, None, json!({}));
    // Warm-up: fills the sidecar volume and every cache on both paths.
    s.run_ok("warm-0", &plain("warm-0"))?;
    let volume = docker::sidecar_volume(&cfg.sidecar)?;
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
    let (mut w, mut r, mut d) = (vec![], vec![], vec![]);
    // One reading around the loop: the worker idles during the baselines,
    // and per-task readings would each round to the 10 ms tick.
    let cpu0 = s.worker.cpu_ms()?;
    for i in 0..cfg.runs {
        w.push(s.run_ok(&format!("p{i}"), &plain(&format!("p{i}")))?);
        r.push(raw(i + 1)?);
        d.push(docker::docker_run_ms(&cfg.image, &volume, &cfg.label)?);
    }
    let cpu = (s.worker.cpu_ms()? - cpu0) / cfg.runs as f64;
    s.shutdown()?;
    let (w, r, d) = (med(&w), med(&r), med(&d));
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
            "worker CPU per task (utime+stime over those tasks / their number)",
            format!("{cpu:.1} ms"),
        ),
    ])
}

/// The cost of one more sidecar whose volume is already complete: tasks
/// with two vs one sidecar, paired. They ask for more CPUs than the host
/// has, so Docker refuses the create at once and no container start adds
/// its noise to the difference.
pub fn cache_hit(cfg: &Cfg) -> Result<Row> {
    let mut s = Session::connect(
        &cfg.worker,
        &cfg.worker_id("hit", 0),
        &["--image-pull-policy", "IfNotPresent"],
    )?;
    s.run_ok(
        "warm",
        &assignment("warm", &cfg.image, &cfg.sidecar, None, json!({})),
    )?;
    let refused = |id: &str, extra: Option<&str>| {
        let mut a = assignment(id, &cfg.image, &cfg.sidecar, extra, json!({}));
        a["data"]["instance_shape"] = json!({"vcpus": 4096});
        a
    };
    let pairs = (cfg.runs * 10).max(30);
    let mut diffs = Vec::with_capacity(pairs);
    for i in 0..pairs + 3 {
        let (one_id, two_id) = (format!("one{i}"), format!("two{i}"));
        let (one, end1) = s.run_task(&one_id, &refused(&one_id, None))?;
        let (two, end2) = s.run_task(&two_id, &refused(&two_id, Some(&cfg.sidecar)))?;
        for end in [&end1, &end2] {
            if end["data"]["failure_reason"] != "container_create" {
                return Err(BenchError::Unexpected {
                    what: format!("expected a container_create failure, got {end}"),
                });
            }
        }
        if i >= 3 {
            diffs.push(two - one);
        }
    }
    s.shutdown()?;
    let hit = med(&diffs);
    Ok(Row::new(
        format!("sidecar cache hit, per task (2 sidecars − 1, {pairs} pairs)"),
        format!("{:.0} µs", hit * 1000.0),
    )
    .target(Target::at_most(10.0, "ms"), hit))
}

/// 200 tasks through 8 slots vs 8 parallel curl sequences.
pub fn throughput(cfg: &Cfg) -> Result<Row> {
    let (mut w, mut r, mut cpu, mut rejected) = (vec![], vec![], vec![], 0usize);
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
        let volume = docker::sidecar_volume(&cfg.sidecar)?;
        let cpu0 = s.worker.cpu_ms()?;
        let start = Instant::now();
        let mut queue: VecDeque<String> = (0..BATCH).map(|i| format!("b{i}")).collect();
        let (mut done, mut failed, mut first_failure) = (0, 0, None);
        for _ in 0..SLOTS {
            if let Some(id) = queue.pop_front() {
                s.server.send(&frame(&id))?;
            }
        }
        let deadline = start + crate::tasks::TASK_TIMEOUT * 4;
        // The worker frees a slot before it queues the terminal frame, so an
        // assignment sent straight back should never be rejected; should one
        // be, re-queue it like an orchestrator and retry after a millisecond
        // (the row counts them).
        let mut retry: VecDeque<String> = VecDeque::new();
        while done < BATCH {
            let until = if retry.is_empty() {
                deadline
            } else {
                (Instant::now() + Duration::from_millis(1)).min(deadline)
            };
            let Some((_, v)) = s.server.recv(until)? else {
                if retry.is_empty() || Instant::now() >= deadline {
                    return Err(BenchError::Timeout {
                        what: format!("{BATCH} tasks to end ({done} did)"),
                    });
                }
                while let Some(id) = retry.pop_front() {
                    s.server.send(&frame(&id))?;
                }
                continue;
            };
            match kind_and_task(&v) {
                Some((kind, _)) if is_terminal(kind) => {
                    done += 1;
                    if kind != "task_completed" {
                        failed += 1;
                        first_failure.get_or_insert_with(|| v.to_string());
                    }
                    if let Some(id) = queue.pop_front() {
                        s.server.send(&frame(&id))?;
                    }
                }
                Some(("task_rejected", id)) => {
                    rejected += 1;
                    retry.push_back(id.to_owned());
                }
                _ => {}
            }
        }
        let secs = start.elapsed().as_secs_f64();
        cpu.push((s.worker.cpu_ms()? - cpu0) / BATCH as f64);
        if let Some(first) = first_failure {
            return Err(BenchError::Unexpected {
                what: format!("{failed} of {BATCH} tasks failed, the first: {first}"),
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
    let (w, r, cpu) = (med(&w), med(&r), med(&cpu));
    let mut note = format!("; worker CPU {cpu:.2} ms/task");
    if rejected > 0 {
        note.push_str(&format!("; {rejected} task_rejected, re-sent after 1 ms"));
    }
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
        // A worker removes a task's container once its terminal frame is
        // acknowledged: keep reading (so pings are answered) until it has.
        let deadline = Instant::now() + Duration::from_secs(60);
        while !docker::no_containers(&s.worker.worker_id)? {
            if Instant::now() >= deadline {
                return Err(BenchError::Timeout {
                    what: "the copy worker's containers to be removed".into(),
                });
            }
            s.server
                .idle_until(Instant::now() + Duration::from_millis(50))?;
        }
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

/// Loading a `docker save` archive of `image`, as `.tar` and as `.tar.gz`:
/// the worker at start (`--image-archives`; from its `loading image archive`
/// line to its `loaded image archive` line, by the log's own millisecond
/// timestamps) against `docker load -i` (timed around the CLI). The image is
/// removed before every load, so both load every layer.
pub fn archive_load(cfg: &Cfg, image: &str) -> Result<Vec<Row>> {
    let dir = TempDir(std::env::temp_dir().join(format!("oz-bench-archives-{}", cfg.run_id)));
    let size = docker::image_size(image)? as f64;
    let url = format!("ws://127.0.0.1:9{}", oz_standin::WORKER_PATH);
    let mut rows = Vec::new();
    for ext in ["tar", "tar.gz"] {
        let sub = dir.0.join(ext.replace('.', "-"));
        std::fs::create_dir_all(&sub).map_err(crate::error::io("making the archive directory"))?;
        let file = sub.join(format!("image.{ext}"));
        let file_arg = file.to_string_lossy().into_owned();
        let save = "docker save \"$1\" | if [ \"$3\" = tar.gz ]; then gzip; else cat; fi > \"$2\"";
        let saved = std::process::Command::new("bash")
            .args(["-o", "pipefail", "-c", save, "_", image, &file_arg, ext])
            .status()
            .map_err(crate::error::io("docker save"))?;
        if !saved.success() {
            return Err(BenchError::Command {
                command: format!("docker save {image}"),
                detail: format!("exit {saved}"),
            });
        }
        let bytes = std::fs::metadata(&file)
            .map_err(crate::error::io("the archive's size"))?
            .len() as f64;
        let (mut w, mut c) = (vec![], vec![]);
        for i in 0..cfg.heavy_runs {
            docker(&["rmi", image])?;
            let dir_arg = sub.to_string_lossy().into_owned();
            let worker = crate::worker::WorkerProc::start(
                &cfg.worker,
                &cfg.worker_id("archive", i),
                &url,
                &["--image-archives", &dir_arg],
            )?;
            worker.wait_log("started: up to", 1, Duration::from_secs(300))?;
            let lines = worker.log_handle()();
            let at = |needle: &str| {
                lines
                    .iter()
                    .find(|l| l.contains(needle))
                    .and_then(|l| log_ms(l))
                    .ok_or_else(|| BenchError::Unexpected {
                        what: format!("no timed {needle:?} line in {lines:?}"),
                    })
            };
            let (start, end) = (at("loading image archive")?, at("loaded image archive")?);
            w.push((end - start).rem_euclid(86_400_000.0));
            drop(worker);
            docker(&["rmi", image])?;
            let t = Instant::now();
            docker(&["load", "-i", &file_arg])?;
            c.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        let (w, c) = (med(&w), med(&c));
        rows.push(
            Row::new(
                format!(
                    "image archive load, {:.1} MB image as .{ext} ({:.1} MB file)",
                    size / MB,
                    bytes / MB
                ),
                format!("{w:.0} ms ({:.0} MB/s)", bytes / MB / (w / 1000.0)),
            )
            .compared(format!("{c:.0} ms (docker load -i)"), w / c),
        );
    }
    Ok(rows)
}

/// Milliseconds into the day of a text log line's timestamp
/// (`2026-12-07T05:48:44.657Z INFO …`).
fn log_ms(line: &str) -> Option<f64> {
    let time = line.get(11..23)?;
    let (h, rest) = time.split_once(':')?;
    let (m, s) = rest.split_once(':')?;
    let (h, m, s): (f64, f64, f64) = (h.parse().ok()?, m.parse().ok()?, s.parse().ok()?);
    Some(((h * 60.0 + m) * 60.0 + s) * 1000.0)
}

/// Removes the directory when dropped.
struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

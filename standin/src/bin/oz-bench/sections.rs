//! The measurements, one function per group of table rows. Each returns
//! its rows or the error that stopped it; none leaves a worker running
//! (the [`Session`]/[`WorkerProc`] drop guards kill and clean up).

use std::net::TcpListener;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::docker;
use crate::error::{BenchError, Result, io};
use crate::stats::{median, percentile};
use crate::table::{Row, Target};
use crate::tasks::{Session, assignment, is_terminal, kind_and_task, ms};
use crate::worker::WorkerProc;

/// What the bench runs against and how long.
pub struct Cfg {
    /// The worker binary (the static musl build).
    pub worker: String,
    /// The FROM-scratch image of the worker, for its size.
    pub worker_image: Option<String>,
    /// Task image.
    pub image: String,
    /// Agent sidecar image (the stub agent).
    pub sidecar: String,
    /// ~50 MB sidecar for the copy rows.
    pub big_sidecar: Option<String>,
    /// ~50 MB image of its own for the archive-load rows (removed and
    /// loaded again by them).
    pub archive_image: Option<String>,
    /// `bench/raw-api.sh`.
    pub raw_script: String,
    /// Repetitions of the cheap measurements.
    pub runs: usize,
    /// Repetitions of the expensive ones (16 tasks, 200 tasks, 50 MB copy).
    pub heavy_runs: usize,
    /// Seconds of the idle-CPU window.
    pub idle_secs: u64,
    /// Distinguishes this run's worker ids.
    pub run_id: String,
    /// `KEY=VALUE` label for the baseline containers.
    pub label: String,
}

impl Cfg {
    /// A worker id unique to this run, section and repetition.
    pub fn worker_id(&self, what: &str, i: usize) -> String {
        format!("oz-bench-{}-{what}-{i}", self.run_id)
    }
}

const MB: f64 = 1e6;
const LONG: Duration = Duration::from_secs(300);

fn sleep_env(secs: u32) -> serde_json::Value {
    json!({"OZ_TEST_SLEEP": secs.to_string()})
}

fn med(xs: &[f64]) -> f64 {
    median(xs).unwrap_or(f64::NAN)
}

/// Binary and image sizes.
pub fn sizes(cfg: &Cfg) -> Vec<Row> {
    let mut rows = Vec::new();
    match std::fs::metadata(&cfg.worker) {
        Ok(m) => {
            let b = m.len() as f64;
            rows.push(
                Row::new(
                    "static musl binary",
                    format!("{:.2} MB ({} B)", b / MB, m.len()),
                )
                .target(Target::at_most(2.5, "MB"), b / MB),
            );
        }
        Err(e) => rows.push(Row::failed("static musl binary", e)),
    }
    if let Some(image) = &cfg.worker_image {
        match docker::image_size(image) {
            Ok(b) => rows.push(
                Row::new(
                    "FROM-scratch image",
                    format!("{:.2} MB ({b} B)", b as f64 / MB),
                )
                .target(Target::at_most(3.0, "MB"), b as f64 / MB),
            ),
            Err(e) => rows.push(Row::failed("FROM-scratch image", e)),
        }
    }
    rows
}

fn rss_mb(kib: u64) -> f64 {
    kib as f64 * 1024.0 / MB
}

/// RSS when not connected (a closed port), `runs` fresh processes.
pub fn idle_rss(cfg: &Cfg) -> Result<Row> {
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").map_err(io("finding a free port"))?;
        l.local_addr().map_err(io("finding a free port"))?.port()
    };
    let url = format!("ws://127.0.0.1:{port}{}", oz_standin::WORKER_PATH);
    let mut samples = Vec::new();
    for i in 0..cfg.runs {
        let w = WorkerProc::start(&cfg.worker, &cfg.worker_id("closed", i), &url, &[])?;
        w.wait_log("could not connect", 1, Duration::from_secs(30))?;
        samples.push(rss_mb(w.rss_kib()?));
    }
    let v = med(&samples);
    Ok(Row::new(
        "RSS, started, not connected (closed port)",
        format!("{v:.2} MB"),
    )
    .target(Target::at_most(4.0, "MB"), v))
}

/// RSS connected and idle (`runs` processes), then CPU over one idle window.
pub fn connected_idle(cfg: &Cfg) -> Result<Vec<Row>> {
    let mut samples = Vec::new();
    let mut last = None;
    for i in 0..cfg.runs {
        let s = Session::connect(&cfg.worker, &cfg.worker_id("idle", i), &[])?;
        samples.push(rss_mb(s.worker.rss_kib()?));
        last = Some(s);
    }
    let v = med(&samples);
    let mut rows = vec![
        Row::new("RSS, connected, idle", format!("{v:.2} MB"))
            .target(Target::at_most(4.0, "MB"), v),
    ];
    let Some(mut s) = last else { return Ok(rows) };
    let window = Duration::from_secs(cfg.idle_secs);
    let (cpu0, ns0) = (s.worker.cpu_ms()?, s.worker.cpu_ns_live_threads()?);
    s.server.idle_until(Instant::now() + window)?;
    let (cpu1, ns1) = (s.worker.cpu_ms()?, s.worker.cpu_ns_live_threads()?);
    let scale = 60.0 / window.as_secs_f64();
    let per_min = (cpu1 - cpu0) * scale;
    let fine = (ns1.saturating_sub(ns0)) as f64 / 1e6 * scale;
    let how = if cfg.idle_secs == 60 {
        "one minute".to_string()
    } else {
        format!("{} s ×{}", cfg.idle_secs, crate::table::trim(scale))
    };
    rows.push(
        Row::new(
            format!("CPU, connected, idle ({how}; utime+stime, schedstat in brackets)"),
            format!("{per_min:.1} ms/min [{fine:.2} ms/min]"),
        )
        .target(Target::at_most(5.0, "ms/min"), per_min),
    );
    s.shutdown()?;
    Ok(rows)
}

/// RSS with 16 stub tasks sleeping in their containers.
pub fn sixteen_tasks(cfg: &Cfg) -> Result<Row> {
    let mut samples = Vec::new();
    for i in 0..cfg.heavy_runs {
        let mut s = Session::connect(
            &cfg.worker,
            &cfg.worker_id("16", i),
            &["--image-pull-policy", "IfNotPresent"],
        )?;
        for t in 0..16 {
            let frame = assignment(
                &format!("r{i}-{t}"),
                &cfg.image,
                &cfg.sidecar,
                None,
                sleep_env(600),
            );
            s.server.send(&frame)?;
        }
        s.pump_until_logged("started container", 16, LONG)?;
        samples.push(rss_mb(s.worker.rss_kib()?));
        s.shutdown()?;
    }
    let v = med(&samples);
    Ok(Row::new("RSS, 16 tasks running", format!("{v:.2} MB"))
        .target(Target::at_most(10.0, "MB"), v))
}

/// task_assignment → task_claimed at the server, over `n` fail-fast tasks.
pub fn claim_latency(cfg: &Cfg, n: usize) -> Result<Row> {
    let mut s = Session::connect(
        &cfg.worker,
        &cfg.worker_id("claim", 0),
        &["--image-pull-policy", "Never"],
    )?;
    let mut samples = Vec::with_capacity(n);
    let warmup = 5;
    for i in 0..n + warmup {
        let id = format!("c{i}");
        let frame = assignment(&id, "oz-bench/absent:none", &cfg.sidecar, None, json!({}));
        let sent = s.server.send(&frame)?;
        let mut claimed = None;
        let deadline = sent + LONG;
        loop {
            let Some((at, v)) = s.server.recv(deadline)? else {
                return Err(BenchError::Timeout {
                    what: format!("task {id} to be claimed and end"),
                });
            };
            match kind_and_task(&v) {
                Some(("task_claimed", t)) if t == id => claimed = Some(at),
                Some((kind, t)) if t == id && is_terminal(kind) => break,
                Some(("task_rejected", t)) if t == id => {
                    return Err(BenchError::Unexpected {
                        what: v.to_string(),
                    });
                }
                _ => {}
            }
        }
        let at = claimed.ok_or_else(|| BenchError::Unexpected {
            what: format!("task {id} ended without task_claimed"),
        })?;
        if i >= warmup {
            samples.push(ms(at - sent));
        }
    }
    s.shutdown()?;
    let p50 = percentile(&samples, 50.0).unwrap_or(f64::NAN);
    let p99 = percentile(&samples, 99.0).unwrap_or(f64::NAN);
    Ok(Row::new(
        format!("task_assignment → task_claimed, loopback ({n} tasks)"),
        format!("p50 {:.0} µs, p99 {:.0} µs", p50 * 1000.0, p99 * 1000.0),
    )
    .target(Target::at_most(1.0, "ms (p50)"), p50))
}

/// SIGTERM → exit with four tasks running, per `--on-shutdown` mode (the
/// worker's default stop grace and shutdown budget): `cancel` with an agent
/// that ends on SIGTERM, `cancel` with one that ignores it (the whole
/// budget), and `detach`.
pub fn stop_times(cfg: &Cfg) -> Result<Vec<Row>> {
    let modes: [(&str, &str, serde_json::Value, Target); 3] = [
        (
            "stop with 4 tasks, cancel (agent ends on SIGTERM)",
            "cancel",
            sleep_env(600),
            Target::at_most(10.0, "s"),
        ),
        (
            "stop with 4 tasks, cancel (agent ignores SIGTERM)",
            "cancel",
            json!({"OZ_TEST_SLEEP": "600", "OZ_TEST_IGNORE_TERM": "1"}),
            Target::at_most(10.0, "s"),
        ),
        (
            "stop with 4 tasks, detach",
            "detach",
            sleep_env(600),
            Target::at_most(2.0, "s"),
        ),
    ];
    let mut rows = Vec::new();
    for (n, (name, mode, env, target)) in modes.into_iter().enumerate() {
        let mut samples = Vec::new();
        for i in 0..cfg.heavy_runs {
            let worker_id = cfg.worker_id(&format!("stop{n}"), i);
            let mut s = Session::connect(
                &cfg.worker,
                &worker_id,
                // The default stop grace (the bench's usual 2 s would hide
                // the shutdown budget at work).
                &[
                    "--image-pull-policy",
                    "IfNotPresent",
                    "--on-shutdown",
                    mode,
                    "--stop-grace",
                    "10s",
                ],
            )?;
            for t in 0..4 {
                let frame = assignment(
                    &format!("s{n}-{i}-{t}"),
                    &cfg.image,
                    &cfg.sidecar,
                    None,
                    env.clone(),
                );
                s.server.send(&frame)?;
            }
            s.pump_until_logged("started container", 4, LONG)?;
            let stopping = Instant::now();
            let log = s.worker.log_handle();
            s.shutdown()?;
            samples.push(stopping.elapsed().as_secs_f64());
            if std::env::var_os("OZ_BENCH_DEBUG").is_some() {
                eprintln!("{}", log().join("\n"));
            }
            // A detach leaves its containers running on purpose.
            docker::remove_worker_leftovers(&worker_id);
        }
        let v = med(&samples);
        rows.push(Row::new(name, format!("{v:.2} s")).target(target, v));
    }
    Ok(rows)
}

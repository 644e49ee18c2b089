//! The hostile-input rows: what one large assignment costs in memory (peak
//! RSS, `VmHWM`, against its frame size), what four at once cost, what
//! a `read_write` sidecar's private per-task copy costs in time, and how
//! fast `/healthz` answers while slow clients trickle into the metrics port.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::error::{BenchError, Result};
use crate::sections::Cfg;
use crate::server::BenchServer;
use crate::stats::median;
use crate::stats::percentile;
use crate::table::{Row, Target};
use crate::tasks::{Session, assignment, ms};
use crate::worker::WorkerProc;

const MB: f64 = 1e6;
/// The assignment size the issue names.
const BIG: usize = 10_000_000;
/// Fixed allowance on top of 2× the frame: "a fixed few MB".
const FIXED_MB: f64 = 4.0;

fn med(xs: &[f64]) -> f64 {
    median(xs).unwrap_or(f64::NAN)
}

/// A `BIG`-byte assignment whose bytes sit where `place` says, failing at
/// create (4096 vCPUs) so that every copy up to the create request is made
/// and no container start adds noise.
fn big_assignment(id: &str, cfg: &Cfg, place: &str) -> (Value, usize) {
    let mut a = assignment(id, &cfg.image, &cfg.sidecar, None, json!({}));
    a["data"]["instance_shape"] = json!({"vcpus": 4096});
    let filler = "s".repeat(BIG);
    match place {
        "env_vars" => a["data"]["env_vars"] = json!({"BIG_SECRET": filler}),
        "additional_oz_args" => a["data"]["additional_oz_args"] = json!(["--x", filler]),
        "mcp_servers" => {
            a["data"]["task"]["agent_config_snapshot"] =
                json!({"mcp_servers": {"big": {"command": filler}}})
        }
        _ => a["data"]["task"]["task_definition"] = json!({"prompt": filler}),
    }
    let len = a.to_string().len();
    (a, len)
}

/// Peak RSS of a fresh worker that handled `n` such assignments at once.
fn peak_after(cfg: &Cfg, i: usize, place: &str, n: usize) -> Result<(f64, f64, usize)> {
    let mut s = Session::connect(
        &cfg.worker,
        &cfg.worker_id(&format!("mem{n}"), i),
        &["--image-pull-policy", "IfNotPresent"],
    )?;
    let base = s.worker.hwm_kib()?;
    let mut frames = Vec::new();
    let mut frame_len = 0;
    for t in 0..n {
        let (a, len) = big_assignment(&format!("m{i}-{t}"), cfg, place);
        frame_len = len;
        frames.push(a);
    }
    // Sent back to back: all n are in flight together.
    for a in &frames {
        s.server.send(a)?;
    }
    drop(frames);
    s.pump_until_logged("failed after", n, Duration::from_secs(120))?;
    let ends = s.worker.log_count("container_create") + s.worker.log_count("failed to create");
    if ends == 0 {
        return Err(BenchError::Unexpected {
            what: "the big assignments did not reach container create".into(),
        });
    }
    let peak = s.worker.hwm_kib()?;
    s.shutdown()?;
    Ok((
        base as f64 * 1024.0 / MB,
        peak as f64 * 1024.0 / MB,
        frame_len,
    ))
}

/// Peak RSS for one 10 MB assignment (by where its bytes are) and for four.
pub fn assignment_memory(cfg: &Cfg) -> Result<Vec<Row>> {
    let mut rows = Vec::new();
    for (place, n) in [
        ("env_vars", 1),
        ("additional_oz_args", 1),
        ("mcp_servers", 1),
        ("task_definition", 1),
        ("env_vars", 4),
    ] {
        let mut growth = Vec::new();
        let mut peaks = Vec::new();
        let mut frame = 0;
        for i in 0..cfg.heavy_runs {
            let (base, peak, len) = peak_after(cfg, i, place, n)?;
            growth.push(peak - base);
            peaks.push(peak);
            frame = len;
        }
        let (g, p) = (med(&growth), med(&peaks));
        let frame_mb = frame as f64 / MB;
        let limit = 2.0 * frame_mb * n as f64 + FIXED_MB;
        rows.push(
            Row::new(
                format!(
                    "peak RSS, {n} × {frame_mb:.1} MB assignment{} (bytes in {place}; VmHWM)",
                    if n > 1 { "s at once" } else { "" }
                ),
                format!(
                    "{p:.1} MB; +{g:.1} MB over idle = {:.2} × frame",
                    g / (frame_mb * n as f64)
                ),
            )
            .target(Target::at_most(limit, "MB over idle (2 × frames + 4)"), g),
        );
    }
    Ok(rows)
}

/// A task with a `read_write` sidecar minus the same task with it read-only
/// (both cached), on the stub sidecar and, when given, the ~50 MB one.
pub fn read_write_copy(cfg: &Cfg) -> Result<Vec<Row>> {
    let mut rows = Vec::new();
    let mut sidecars = vec![(cfg.sidecar.clone(), "stub sidecar")];
    if let Some(big) = &cfg.big_sidecar {
        sidecars.push((big.clone(), "50 MB sidecar"));
    }
    for (n, (extra, what)) in sidecars.into_iter().enumerate() {
        let mut s = Session::connect(
            &cfg.worker,
            &cfg.worker_id("rw", n),
            &["--image-pull-policy", "IfNotPresent"],
        )?;
        let task = |id: &str, rw: bool| {
            let mut a = assignment(id, &cfg.image, &cfg.sidecar, Some(&extra), json!({}));
            a["data"]["additional_sidecars"][0]["read_write"] = json!(rw);
            a
        };
        s.run_ok("warm", &task("warm", false))?;
        let mut diffs = Vec::new();
        for i in 0..cfg.runs.max(3) {
            let (ro_id, rw_id) = (format!("ro{i}"), format!("rw{i}"));
            let ro = s.run_ok(&ro_id, &task(&ro_id, false))?;
            let rw = s.run_ok(&rw_id, &task(&rw_id, true))?;
            diffs.push(rw - ro);
        }
        s.shutdown()?;
        rows.push(Row::new(
            format!("read_write sidecar, private copy per task ({what}; rw task − ro task)"),
            format!("{:.0} ms", med(&diffs)),
        ));
    }
    Ok(rows)
}

/// Slow clients held open against the metrics port.
const SLOW_CLIENTS: usize = 4;
/// How often each sends its next byte.
const TRICKLE: Duration = Duration::from_secs(2);
/// How long `/healthz` is timed while they trickle.
const SLOW_WINDOW: Duration = Duration::from_secs(20);

/// `/healthz` round trips (connect, request, whole answer) while
/// [`SLOW_CLIENTS`] clients each send one byte of a request every
/// [`TRICKLE`], never finishing it (reconnecting when dropped).
pub fn healthz_under_slow_clients(cfg: &Cfg) -> Result<Row> {
    let mut server = BenchServer::bind()?;
    let worker = WorkerProc::start_with_env(
        &cfg.worker,
        &cfg.worker_id("slowhttp", 0),
        &server.url()?,
        &[],
        &[
            ("OTEL_METRICS_EXPORTER", "prometheus"),
            ("OTEL_EXPORTER_PROMETHEUS_HOST", "127.0.0.1"),
            ("OTEL_EXPORTER_PROMETHEUS_PORT", "0"),
        ],
    )?;
    server.accept(Duration::from_secs(60))?;
    let mut s = Session { server, worker };
    s.worker
        .wait_log("/readyz on ", 1, Duration::from_secs(30))?;
    let addr = (s.worker.log_handle())()
        .iter()
        .find_map(|l| l.split("/readyz on ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .map(str::to_owned)
        .ok_or_else(|| BenchError::Unexpected {
            what: "no metrics address in the log".into(),
        })?;
    let stop = Arc::new(AtomicBool::new(false));
    let slow: Vec<_> = (0..SLOW_CLIENTS)
        .map(|_| {
            let (addr, stop) = (addr.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    let Ok(mut c) = TcpStream::connect(&addr) else {
                        return;
                    };
                    for b in b"GET /metrics HTTP/1.1\r\nX: "
                        .iter()
                        .chain(std::iter::repeat(&b'a'))
                    {
                        if stop.load(Ordering::SeqCst) || c.write_all(&[*b]).is_err() {
                            break;
                        }
                        std::thread::sleep(TRICKLE);
                    }
                }
            })
        })
        .collect();
    // Every slow client holds a connection before the first timing.
    s.server
        .idle_until(Instant::now() + Duration::from_millis(500))?;
    let mut times = Vec::new();
    let end = Instant::now() + SLOW_WINDOW;
    while Instant::now() < end {
        let start = Instant::now();
        let mut c =
            TcpStream::connect(&addr).map_err(crate::error::io("connecting to /healthz"))?;
        c.set_read_timeout(Some(Duration::from_secs(10)))
            .map_err(crate::error::io("a read timeout"))?;
        c.write_all(b"GET /healthz HTTP/1.1\r\nHost: b\r\n\r\n")
            .map_err(crate::error::io("asking /healthz"))?;
        let mut reply = String::new();
        c.read_to_string(&mut reply)
            .map_err(crate::error::io("reading /healthz"))?;
        if !reply.starts_with("HTTP/1.1 200") {
            return Err(BenchError::Unexpected {
                what: format!("/healthz answered {reply:?}"),
            });
        }
        times.push(ms(start.elapsed()));
        // Spaced out, answering the worker's pings meanwhile.
        s.server
            .idle_until(Instant::now() + Duration::from_millis(100))?;
    }
    stop.store(true, Ordering::SeqCst);
    s.shutdown()?;
    for t in slow {
        let _ = t.join();
    }
    let max = times.iter().copied().fold(0.0, f64::max);
    let p50 = percentile(&times, 50.0).unwrap_or(f64::NAN);
    Ok(
        Row::new(
            format!(
                "/healthz while {SLOW_CLIENTS} clients send 1 byte / {}s to the metrics port ({} requests over {}s)",
                TRICKLE.as_secs(),
                times.len(),
                SLOW_WINDOW.as_secs()
            ),
            format!("p50 {p50:.2} ms, max {max:.2} ms"),
        )
        .target(Target::at_most(100.0, "ms (max)"), max),
    )
}

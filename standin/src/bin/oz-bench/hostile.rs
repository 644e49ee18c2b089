//! The hostile-input rows: what one large assignment costs in memory (peak
//! RSS, `VmHWM`, against its frame size), what four at once cost, and what
//! a `read_write` sidecar's private per-task copy costs in time.

use std::time::Duration;

use serde_json::{Value, json};

use crate::error::{BenchError, Result};
use crate::sections::Cfg;
use crate::stats::median;
use crate::table::{Row, Target};
use crate::tasks::{Session, assignment};

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

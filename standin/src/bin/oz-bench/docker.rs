//! The bench's calls to the `docker` CLI and to the raw-API script
//! (`bench/raw-api.sh`): image sizes, volume lookups, `docker run` timing,
//! and removing what a worker left behind. Never touches anything not
//! labelled with a bench worker's id or the bench run's label.

use std::process::{Command, Stdio};
use std::time::Instant;

use crate::error::{BenchError, Result, io};

/// The label the worker puts on its containers and volumes.
pub const WORKER_ID_LABEL: &str = "dev.warp.oz-agent-worker.worker-id";

/// Runs `docker args…`, returning trimmed stdout.
pub fn docker(args: &[&str]) -> Result<String> {
    run(
        Command::new("docker").args(args),
        &format!("docker {}", args.join(" ")),
    )
}

/// Runs `bash script args…` and parses its stdout as one number.
pub fn script_number(script: &str, args: &[&str]) -> Result<f64> {
    let line = format!("bash {script} {}", args.join(" "));
    let out = run(Command::new("bash").arg(script).args(args), &line)?;
    out.trim().parse().map_err(|_| BenchError::Command {
        command: line,
        detail: format!("expected a number, got {out:?}"),
    })
}

fn run(cmd: &mut Command, line: &str) -> Result<String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(io(format!("running {line}")))?;
    if !out.status.success() {
        return Err(BenchError::Command {
            command: shorten(line),
            detail: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

fn shorten(line: &str) -> String {
    match line.char_indices().nth(120) {
        Some((i, _)) => format!("{}…", &line[..i]),
        None => line.to_owned(),
    }
}

/// `docker image inspect -f {{.Size}}` in bytes.
pub fn image_size(image: &str) -> Result<u64> {
    let out = docker(&["image", "inspect", "-f", "{{.Size}}", image])?;
    out.parse().map_err(|_| BenchError::Command {
        command: format!("docker image inspect {image}"),
        detail: format!("size {out:?} is not a number"),
    })
}

/// The names of the volumes `worker_id` created.
pub fn worker_volumes(worker_id: &str) -> Result<Vec<String>> {
    let filter = format!("label={WORKER_ID_LABEL}={worker_id}");
    let out = docker(&["volume", "ls", "-q", "--filter", &filter])?;
    Ok(out.lines().map(str::to_owned).collect())
}

/// Milliseconds of `docker run --rm` of the stub agent from `volume`,
/// labelled `label`; fails unless it exits 0.
pub fn docker_run_ms(image: &str, volume: &str, label: &str) -> Result<f64> {
    let bind = format!("{volume}:/agent:ro");
    let args = [
        "run",
        "--rm",
        "--label",
        label,
        "-v",
        &bind,
        "-w",
        "/workspace",
        image,
    ];
    let start = Instant::now();
    docker(&[&args[..], &["/agent/entrypoint.sh", "agent", "run"]].concat())?;
    Ok(start.elapsed().as_secs_f64() * 1000.0)
}

/// Removes every container and volume labelled with `worker_id`; errors
/// are ignored (this runs from Drop, and the bench script's trap sweeps again).
pub fn remove_worker_leftovers(worker_id: &str) {
    let filter = format!("label={WORKER_ID_LABEL}={worker_id}");
    if let Ok(ids) = docker(&["ps", "-aq", "--filter", &filter])
        && !ids.is_empty()
    {
        let mut args = vec!["rm", "-f"];
        args.extend(ids.lines());
        let _ = docker(&args);
    }
    if let Ok(names) = docker(&["volume", "ls", "-q", "--filter", &filter])
        && !names.is_empty()
    {
        let mut args = vec!["volume", "rm", "-f"];
        args.extend(names.lines());
        let _ = docker(&args);
    }
}

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
            detail: last_line(&String::from_utf8_lossy(&out.stderr)),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// The last non-empty line: a failing loop repeats its error many times.
fn last_line(text: &str) -> String {
    shorten(
        text.lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("")
            .trim(),
    )
}

fn shorten(line: &str) -> String {
    match line.char_indices().nth(120) {
        Some((i, _)) => format!("{}…", &line[..i]),
        None => line.to_owned(),
    }
}

/// Waits up to a minute for the daemon to answer (another job may be
/// restarting it); true once it does.
pub fn wait_for_daemon() -> bool {
    for _ in 0..60 {
        if docker(&["info", "-f", "{{.ServerVersion}}"]).is_ok() {
            return true;
        }
        // `docker info` exits at once while the socket is gone: pace the retries.
        std::thread::sleep(std::time::Duration::from_secs(1));
    }
    false
}

/// `docker image inspect -f {{.Size}}` in bytes.
pub fn image_size(image: &str) -> Result<u64> {
    let out = docker(&["image", "inspect", "-f", "{{.Size}}", image])?;
    out.parse().map_err(|_| BenchError::Command {
        command: format!("docker image inspect {image}"),
        detail: format!("size {out:?} is not a number"),
    })
}

/// The names of the sidecar volumes `worker_id` created (not its lease).
pub fn worker_volumes(worker_id: &str) -> Result<Vec<String>> {
    let filter = format!("label={WORKER_ID_LABEL}={worker_id}");
    let sidecar = "label=dev.warp.oz-agent-worker.sidecar-image";
    let out = docker(&[
        "volume", "ls", "-q", "--filter", &filter, "--filter", sidecar,
    ])?;
    Ok(out.lines().map(str::to_owned).collect())
}

/// Whether `worker_id` has no container left.
pub fn no_containers(worker_id: &str) -> Result<bool> {
    let filter = format!("label={WORKER_ID_LABEL}={worker_id}");
    Ok(docker(&["ps", "-aq", "--filter", &filter])?
        .trim()
        .is_empty())
}

/// The sidecar volume the worker made for `image` (TASK.md §3 naming),
/// checked to exist. Found by name, not by worker label: a volume another
/// worker made first is reused, not relabelled.
pub fn sidecar_volume(image: &str) -> Result<String> {
    let out = docker(&[
        "image",
        "inspect",
        "-f",
        "{{range .RepoDigests}}{{.}} {{end}}|{{.Id}}",
        image,
    ])?;
    let (digests, id) = out.split_once('|').unwrap_or(("", out.as_str()));
    let digest = digests
        .split_whitespace()
        .next()
        .and_then(|d| d.split_once('@'))
        .map_or(id, |(_, d)| d);
    let name = expected_volume(image, digest);
    docker(&["volume", "inspect", "-f", "{{.Name}}", &name])
}

/// `repo-<12 hex>`: the image's short repository (no registry for Docker
/// Hub, no `library/`, no tag) with characters outside `[A-Za-z0-9_.-]`
/// as `-`, then the first 12 hex digits of `digest` (`sha256:…`).
pub fn expected_volume(image: &str, digest: &str) -> String {
    let repo = image.split('@').next().unwrap_or(image);
    let repo = match repo.rfind(':') {
        Some(i) if !repo[i..].contains('/') => &repo[..i],
        _ => repo,
    };
    let repo = repo.strip_prefix("docker.io/").unwrap_or(repo);
    let repo = repo.strip_prefix("library/").unwrap_or(repo);
    let base: String = repo
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') {
                c
            } else {
                '-'
            }
        })
        .collect();
    let hex = digest.rsplit(':').next().unwrap_or(digest);
    format!("{base}-{}", &hex[..hex.len().min(12)])
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_last_line_of_an_error() {
        assert_eq!(last_line("a\nb failed\n\n"), "b failed");
        assert_eq!(last_line(""), "");
        assert_eq!(last_line(&"x".repeat(130)).chars().count(), 121);
    }

    #[test]
    fn names_sidecar_volumes_like_the_worker() {
        let id = "sha256:1d36dad77e90aabbccddeeff";
        assert_eq!(
            expected_volume("oz-test/agent-sidecar:latest", id),
            "oz-test-agent-sidecar-1d36dad77e90"
        );
        assert_eq!(
            expected_volume(
                "docker.io/library/busybox@sha256:00",
                "sha256:0123456789abcdef"
            ),
            "busybox-0123456789ab"
        );
        assert_eq!(
            expected_volume("localhost:5000/x/y", "sha256:ffffffffffff00"),
            "localhost-5000-x-y-ffffffffffff"
        );
    }
}

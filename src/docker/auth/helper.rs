//! Credential helpers: `docker-credential-<name> get` found on `PATH`,
//! run without the worker's own secrets in its environment, bounded in
//! time and output, and its answer read. Never quotes a successful answer
//! (it holds the secret).

use std::ffi::OsString;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Instant;

use serde::Deserialize;

use super::{AuthError, CredentialEnv, RegistryAuth};

/// A helper's answer `Username` that marks `Secret` as an identity token.
const TOKEN_USERNAME: &str = "<token>";
/// Most helper output kept (its answer is a few hundred bytes).
const HELPER_OUTPUT_MAX: u64 = 64 * 1024;

/// A helper's `get` answer.
#[derive(Deserialize)]
struct HelperAnswer {
    #[serde(rename = "Username", default)]
    username: String,
    #[serde(rename = "Secret", default)]
    secret: String,
}

fn find_program(program: &str, path: Option<&OsString>) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let is_executable = |p: &Path| {
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    std::env::split_paths(path?)
        .filter(|dir| !dir.as_os_str().is_empty())
        .map(|dir| dir.join(program))
        .find(|candidate| is_executable(candidate))
}

/// Runs `docker-credential-<helper> get` with `key` on stdin (no newline).
pub(super) fn run_helper(
    helper: &str,
    key: &str,
    env: &CredentialEnv,
) -> Result<Option<RegistryAuth>, AuthError> {
    let program = format!("docker-credential-{helper}");
    let Some(exe) = find_program(&program, env.path.as_ref()) else {
        return Err(AuthError::HelperNotFound { program });
    };
    let io_err = |e: std::io::Error| AuthError::HelperIo {
        program: program.clone(),
        error: e.to_string(),
    };
    // The helper is someone else's program: it gets the worker's environment
    // (it may need HOME, D-Bus…) but not the worker's own secrets.
    let mut child = Command::new(&exe)
        .arg("get")
        .env_remove("WARP_API_KEY")
        .env_remove("DOCKER_AUTH_CONFIG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(io_err)?;
    if let Some(mut stdin) = child.stdin.take() {
        // A helper may exit before reading; its exit status tells the rest.
        let _ = stdin.write_all(key.as_bytes());
    }
    let Some([stdout, stderr]) = read_outputs(&mut child, env) else {
        return Err(AuthError::HelperTimeout {
            program,
            after: env.helper_timeout,
        });
    };
    let status = child.wait().map_err(io_err)?;
    answer(&program, key, status, &stdout, &stderr)
}

/// The helper's stdout and stderr once both ended; `None` (the helper
/// killed) when the helper's time ran out first.
fn read_outputs(child: &mut Child, env: &CredentialEnv) -> Option<[Vec<u8>; 2]> {
    // Both pipes are drained on their own threads so neither can fill and
    // stall the helper; the deadline bounds a helper that never exits.
    let (tx, rx) = mpsc::channel();
    spawn_reader(child.stdout.take(), 0, tx.clone());
    spawn_reader(child.stderr.take(), 1, tx);
    let deadline = Instant::now() + env.helper_timeout;
    let mut outputs: [Vec<u8>; 2] = [Vec::new(), Vec::new()];
    for _ in 0..2 {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok((which, bytes)) => outputs[which] = bytes,
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
        }
    }
    Some(outputs)
}

/// What a finished helper's exit status and output say: credentials, none
/// (`credentials not found`, or an empty answer), or its failure.
fn answer(
    program: &str,
    key: &str,
    status: ExitStatus,
    stdout: &[u8],
    stderr: &[u8],
) -> Result<Option<RegistryAuth>, AuthError> {
    if !status.success() {
        let text = format!(
            "{} {}",
            String::from_utf8_lossy(stdout).trim(),
            String::from_utf8_lossy(stderr).trim()
        );
        let text = text.trim();
        if text.to_ascii_lowercase().contains("credentials not found") {
            return Ok(None);
        }
        return Err(AuthError::HelperFailed {
            program: program.to_owned(),
            code: status.code(),
        });
    }
    // Never quote a successful answer: it holds the secret.
    let answer: HelperAnswer =
        serde_json::from_slice(stdout).map_err(|_| AuthError::HelperAnswer {
            program: program.to_owned(),
        })?;
    let server_address = key.to_owned();
    Ok(match (answer.username.as_str(), answer.secret) {
        (_, secret) if secret.is_empty() => None,
        (TOKEN_USERNAME, token) => Some(RegistryAuth::IdentityToken {
            token,
            server_address,
        }),
        ("", _) => None,
        (username, password) => Some(RegistryAuth::Password {
            username: username.to_owned(),
            password,
            server_address,
        }),
    })
}

/// Reads one pipe to its end (bounded) on its own thread and sends the bytes.
fn spawn_reader<R: Read + Send + 'static>(
    pipe: Option<R>,
    which: usize,
    tx: mpsc::Sender<(usize, Vec<u8>)>,
) {
    let Some(pipe) = pipe else { return };
    thread::spawn(move || {
        let mut bytes = Vec::new();
        // A read error leaves what was read; the exit status decides.
        let _ = pipe.take(HELPER_OUTPUT_MAX).read_to_end(&mut bytes);
        // The receiver is gone only after a timeout, when nobody wants this.
        let _ = tx.send((which, bytes));
    });
}

//! The one error type of the Docker client, [`DockerError`].
//!
//! Each variant says when it happens; `Display` keeps the daemon's own
//! `message` and adds what to do where there is something to do. Nothing here
//! performs I/O.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use crate::http::ParseError;

/// Which setting named the docker context, for
/// [`DockerError::NoSuchContext`]'s words (set by discovery).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContextFrom {
    /// `DOCKER_CONTEXT`.
    Env,
    /// `currentContext` in the docker CLI's `config.json`.
    ConfigFile,
}

/// Everything that can go wrong talking to the Docker daemon.
#[derive(Debug)]
pub enum DockerError {
    /// `DOCKER_HOST` or a context's endpoint cannot be used (bad form, or an
    /// unsupported scheme such as `ssh://`).
    Endpoint {
        /// The host string as configured.
        host: String,
        /// Why it cannot be used.
        reason: &'static str,
    },
    /// The docker client configuration (context metadata, TLS files) is
    /// missing or unreadable.
    Config {
        /// The file or context concerned.
        what: String,
        /// What went wrong, in the reader's words.
        detail: String,
    },
    /// `DOCKER_CONTEXT` or `currentContext` names a context that does not exist.
    NoSuchContext {
        /// The context name.
        name: String,
        /// Which setting named it.
        from: ContextFrom,
        /// The contexts directory searched.
        dir: PathBuf,
    },
    /// Nothing listens on the Unix socket (missing or connection refused).
    NoDaemon {
        /// The socket tried.
        socket: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// The socket exists but this user may not connect to it.
    PermissionDenied {
        /// The socket tried.
        socket: PathBuf,
        /// This process's uid.
        uid: u32,
        /// The group owning the socket, when it could be read.
        gid: Option<u32>,
    },
    /// A TCP daemon could not be reached or the TLS handshake failed.
    Connect {
        /// `host:port`.
        addr: String,
        /// The OS or TLS error.
        source: io::Error,
        /// The setting that chose this address (`DOCKER_HOST`, a context),
        /// when known, so the message says what to correct.
        origin: Option<String>,
    },
    /// The daemon did not answer within the call's time limit.
    Timeout {
        /// The call, e.g. `GET /_ping`.
        call: String,
    },
    /// Reading or writing the connection failed mid-call.
    Io {
        /// The call, e.g. `POST /containers/create`.
        call: String,
        /// The OS error.
        source: io::Error,
    },
    /// The daemon's reply is not valid HTTP/1.1.
    Http {
        /// The call.
        call: String,
        /// The framing error.
        source: ParseError,
    },
    /// The daemon answered with an error status; `message` is its own words.
    Api {
        /// The call.
        call: String,
        /// HTTP status.
        status: u16,
        /// The daemon's `message` (or its raw body when not JSON).
        message: String,
    },
    /// The daemon's JSON is not what the Engine API documents.
    Decode {
        /// The call.
        call: String,
        /// The JSON error.
        source: serde_json::Error,
    },
    /// A streamed reply ended before its result (e.g. `wait` cut off by a
    /// daemon restart): not an answer, so inspect the container instead.
    Truncated {
        /// The call.
        call: String,
    },
    /// A reply had no readable `Date` header (every Engine reply has one).
    NoDate {
        /// The call.
        call: String,
    },
    /// The daemon's API is older than this worker supports (below 1.41).
    ApiTooOld {
        /// The negotiated or pinned API version.
        api_version: String,
        /// The engine version from `GET /version`, when known.
        engine_version: String,
    },
    /// `DOCKER_API_VERSION` is not of the form `X.Y`.
    BadApiVersion {
        /// The value given.
        value: String,
    },
    /// The daemon runs on a platform the agent sidecar does not support.
    UnsupportedPlatform {
        /// `os/arch` of the daemon.
        platform: String,
    },
    /// An image pull streamed an `error` line (the HTTP status was 200).
    PullFailed {
        /// The image pulled.
        image: String,
        /// The daemon's error text.
        message: String,
    },
    /// An image load streamed an `error` line (the HTTP status was 200).
    LoadFailed {
        /// The daemon's error text.
        message: String,
    },
    /// The multiplexed log stream is malformed.
    Logs {
        /// The container.
        id: String,
    },
    /// The call was aborted from another thread through its
    /// [`AbortSlot`](super::client::AbortSlot).
    Aborted {
        /// The call.
        call: String,
    },
}

impl DockerError {
    /// The daemon's HTTP status, for [`DockerError::Api`].
    pub fn status(&self) -> Option<u16> {
        match self {
            DockerError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Whether the daemon said 404 (no such container, image, volume).
    pub fn is_not_found(&self) -> bool {
        self.status() == Some(404)
    }
}

impl fmt::Display for DockerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DockerError::Endpoint { host, reason } => {
                write!(f, "cannot use Docker host {host:?}: {reason}")
            }
            DockerError::Config { what, detail } => {
                write!(f, "docker client configuration {what}: {detail}")
            }
            DockerError::NoSuchContext { name, from, dir } => no_such_context(f, name, *from, dir),
            DockerError::NoDaemon { socket, source } => write!(
                f,
                "no Docker daemon at {}: {source}; is it running? set DOCKER_HOST to use another daemon",
                socket.display()
            ),
            DockerError::PermissionDenied { socket, uid, gid } => {
                permission_denied(f, socket, *uid, *gid)
            }
            DockerError::Connect {
                addr,
                source,
                origin,
            } => connect_failed(f, addr, source, origin.as_deref()),
            DockerError::Timeout { call } => {
                write!(f, "the Docker daemon did not answer {call} in time")
            }
            DockerError::Io { call, source } => write!(f, "Docker {call}: {source}"),
            DockerError::Http { call, source } => {
                write!(f, "Docker {call}: bad reply from the daemon: {source}")
            }
            DockerError::Api {
                call,
                status,
                message,
            } => write!(f, "Docker {call} failed ({status}): {message}"),
            DockerError::Decode { call, source } => {
                write!(f, "Docker {call}: unexpected reply: {source}")
            }
            DockerError::Truncated { call } => write!(
                f,
                "Docker {call}: the daemon closed the connection before answering"
            ),
            DockerError::NoDate { call } => write!(
                f,
                "Docker {call}: the reply has no readable Date header, so the daemon's clock is unknown"
            ),
            DockerError::ApiTooOld {
                api_version,
                engine_version,
            } => write!(
                f,
                "Docker Engine {engine_version} (API {api_version}) is too old: this worker needs API 1.41 (Engine 20.10) or newer"
            ),
            DockerError::BadApiVersion { value } => {
                write!(f, "DOCKER_API_VERSION {value:?} is not a version like 1.41")
            }
            DockerError::UnsupportedPlatform { platform } => write!(
                f,
                "unsupported Docker platform {platform} (only linux/amd64 and linux/arm64 are supported)"
            ),
            DockerError::PullFailed { image, message } => {
                write!(f, "pulling image {image} failed: {message}")
            }
            DockerError::LoadFailed { message } => {
                write!(f, "the Docker daemon could not load it: {message}")
            }
            DockerError::Logs { id } => {
                write!(f, "container {id}: malformed log stream from the daemon")
            }
            DockerError::Aborted { call } => write!(f, "Docker {call}: aborted"),
        }
    }
}

/// [`DockerError::NoSuchContext`]: which setting to correct, and how.
fn no_such_context(
    f: &mut fmt::Formatter<'_>,
    name: &str,
    from: ContextFrom,
    dir: &Path,
) -> fmt::Result {
    let (setting, fix) = match from {
        ContextFrom::Env => ("DOCKER_CONTEXT", "unset DOCKER_CONTEXT or set it"),
        ContextFrom::ConfigFile => (
            "currentContext in the docker config",
            "run `docker context use default` or set DOCKER_CONTEXT",
        ),
    };
    write!(
        f,
        "docker context {name:?} (from {setting}) does not exist under {}; {fix} to one that `docker context ls` lists",
        dir.display()
    )
}

/// [`DockerError::PermissionDenied`]: the group to join, when it is known.
fn permission_denied(
    f: &mut fmt::Formatter<'_>,
    socket: &Path,
    uid: u32,
    gid: Option<u32>,
) -> fmt::Result {
    write!(
        f,
        "permission denied on the Docker socket {} for uid {uid}: ",
        socket.display()
    )?;
    match gid {
        Some(gid) => write!(
            f,
            "add this user to the socket's group (gid {gid}), or run the worker container with --group-add {gid}"
        ),
        None => write!(
            f,
            "add this user to the socket's group, or run the worker container with --user/--group-add"
        ),
    }
}

/// [`DockerError::Connect`]: names the setting that chose the address, and
/// when nothing answered there, what to correct.
fn connect_failed(
    f: &mut fmt::Formatter<'_>,
    addr: &str,
    source: &io::Error,
    origin: Option<&str>,
) -> fmt::Result {
    write!(f, "cannot connect to the Docker daemon at {addr}")?;
    let Some(origin) = origin else {
        return write!(f, ": {source}");
    };
    write!(f, " (from {origin}): {source}")?;
    if matches!(
        source.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::TimedOut
            | io::ErrorKind::HostUnreachable
            | io::ErrorKind::NetworkUnreachable
    ) {
        write!(
            f,
            "; is a daemon listening there? correct {origin}, or unset it to use the local socket"
        )?;
    }
    Ok(())
}

/// The cause of every variant that has one is already in its `Display`
/// text, so `source()` stays `None` (the crate's rule: one or the other).
impl std::error::Error for DockerError {}

/// Result alias for the Docker client.
pub type Result<T> = std::result::Result<T, DockerError>;

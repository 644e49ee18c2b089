//! The bench's error type: what failed, in words that say what to look at.

use std::fmt;

/// Why a measurement could not be made.
#[derive(Debug)]
pub enum BenchError {
    /// An OS call failed (spawning, reading /proc, sockets).
    Io {
        /// What the bench was doing.
        what: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The WebSocket to the worker failed.
    WebSocket {
        /// What the bench was doing.
        what: &'static str,
        /// tungstenite's error.
        source: Box<tungstenite::Error>,
    },
    /// Something expected did not happen in time.
    Timeout {
        /// What the bench waited for.
        what: String,
    },
    /// A helper command (docker, the raw-API script) failed or printed nonsense.
    Command {
        /// The command line, shortened.
        command: String,
        /// Its stderr, or what was wrong with its output.
        detail: String,
    },
    /// The worker answered in a way the measurement cannot use.
    Unexpected {
        /// What arrived instead.
        what: String,
    },
}

impl fmt::Display for BenchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io { what, source } => write!(f, "{what}: {source}"),
            Self::WebSocket { what, source } => write!(f, "{what}: {source}"),
            Self::Timeout { what } => write!(f, "timed out waiting for {what}"),
            Self::Command { command, detail } => write!(f, "`{command}` failed: {detail}"),
            Self::Unexpected { what } => write!(f, "unexpected answer from the worker: {what}"),
        }
    }
}

impl std::error::Error for BenchError {}

/// Shorthand for an [`BenchError::Io`] mapper.
pub fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> BenchError {
    let what = what.into();
    move |source| BenchError::Io { what, source }
}

/// Result with [`BenchError`].
pub type Result<T> = std::result::Result<T, BenchError>;

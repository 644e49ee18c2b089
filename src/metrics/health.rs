//! Liveness and readiness for `/healthz` and `/readyz`.
//!
//! Owns two facts, set by others: whether the worker is connected to Oz, and
//! when Docker last answered. Readiness is a pure function of those facts and
//! the clock. It must not ping Docker or touch the connection itself.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How recently Docker must have answered for the worker to be ready.
pub const DEFAULT_DOCKER_WINDOW: Duration = Duration::from_secs(60);

/// Why the worker is not ready; the text is the `/readyz` body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotReady {
    /// No WebSocket connection to Oz is up.
    Disconnected,
    /// Docker has not answered within the window (or never has).
    DockerSilent {
        /// The readiness window.
        window: Duration,
    },
}

impl fmt::Display for NotReady {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Disconnected => f.write_str("not connected to Oz"),
            Self::DockerSilent { window } => {
                write!(f, "Docker has not answered a ping in {}", seconds(*window))
            }
        }
    }
}

fn seconds(d: Duration) -> String {
    if d.subsec_nanos() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}s", d.as_secs_f64())
    }
}

/// Ready when connected and Docker answered no longer than `window` before `now`.
pub fn readiness(
    connected: bool,
    docker_answered: Option<Instant>,
    now: Instant,
    window: Duration,
) -> Result<(), NotReady> {
    if !connected {
        return Err(NotReady::Disconnected);
    }
    match docker_answered {
        Some(at) if now.saturating_duration_since(at) <= window => Ok(()),
        _ => Err(NotReady::DockerSilent { window }),
    }
}

/// Shared health state; cheap to clone.
#[derive(Debug, Clone)]
pub struct Health {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    connected: AtomicBool,
    docker_answered: Mutex<Option<Instant>>,
    window: Duration,
}

impl Default for Health {
    fn default() -> Self {
        Self::new(DEFAULT_DOCKER_WINDOW)
    }
}

impl Health {
    /// Not connected, Docker never heard from; Docker must answer within `window`.
    pub fn new(window: Duration) -> Self {
        Self {
            inner: Arc::new(Inner {
                connected: AtomicBool::new(false),
                docker_answered: Mutex::new(None),
                window,
            }),
        }
    }

    /// Records whether a connection to Oz is up.
    pub fn set_connected(&self, connected: bool) {
        self.inner.connected.store(connected, Ordering::SeqCst);
    }

    /// Records that Docker answered just now.
    pub fn docker_ok(&self) {
        *self.lock() = Some(Instant::now());
    }

    /// Whether the worker is ready now, and if not why.
    pub fn ready(&self) -> Result<(), NotReady> {
        readiness(
            self.inner.connected.load(Ordering::SeqCst),
            *self.lock(),
            Instant::now(),
            self.inner.window,
        )
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Instant>> {
        self.inner
            .docker_answered
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_secs(60);

    #[test]
    fn readiness_needs_connection_and_a_recent_docker_answer() {
        let t0 = Instant::now();
        assert_eq!(
            readiness(false, Some(t0), t0, MIN),
            Err(NotReady::Disconnected)
        );
        assert_eq!(
            readiness(true, None, t0, MIN),
            Err(NotReady::DockerSilent { window: MIN })
        );
        assert_eq!(readiness(true, Some(t0), t0 + MIN, MIN), Ok(()));
        assert_eq!(
            readiness(true, Some(t0), t0 + MIN + Duration::from_millis(1), MIN),
            Err(NotReady::DockerSilent { window: MIN })
        );
    }

    #[test]
    fn reasons_read_plainly() {
        assert_eq!(NotReady::Disconnected.to_string(), "not connected to Oz");
        assert_eq!(
            NotReady::DockerSilent { window: MIN }.to_string(),
            "Docker has not answered a ping in 60s"
        );
        assert_eq!(
            NotReady::DockerSilent {
                window: Duration::from_millis(1500)
            }
            .to_string(),
            "Docker has not answered a ping in 1.5s"
        );
    }

    #[test]
    fn health_tracks_what_it_is_told() {
        let h = Health::default();
        assert_eq!(h.ready(), Err(NotReady::Disconnected));
        h.set_connected(true);
        assert_eq!(h.ready(), Err(NotReady::DockerSilent { window: MIN }));
        h.docker_ok();
        assert_eq!(h.ready(), Ok(()));
        h.set_connected(false);
        assert_eq!(h.ready(), Err(NotReady::Disconnected));
    }
}

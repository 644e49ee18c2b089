//! The connection thread: keeps one WebSocket to the orchestrator open for
//! the worker's whole life (PROTOCOL.md, Connection).
//!
//! Owns dialing ([`dial`]), reconnecting with backoff (the thread's loop,
//! [`reconnect`]), and the per-connection loop ([`session`]); sockets,
//! proxies and TLS come from [`crate::net`]. It reads the outbox and
//! acknowledges what the orchestrator has provably read, and hands every
//! inbound message to an [`InboundHandler`]; it knows nothing about tasks,
//! Docker or capacity. A panic on the thread (a bug, or input that reached
//! one) drops the connection and dials again, so the thread never ends
//! half-alive. It warns once when a `ws://` URL would carry the API key in
//! clear. It must never log the API key, proxy credentials or the raw text
//! of an assignment.

mod backoff;
mod dial;
mod reconnect;
mod session;
mod url;

pub use backoff::{Backoff, BackoffPolicy, JitterSource};
pub use dial::{DialError, DialParams, dial_with_response};
pub use url::{UrlError, WsUrl, query_escape};

use std::io;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, bounded};

use crate::config::ApiKey;
use crate::net::{self, ProxySettings, RootSource};
use crate::outbox::Outbox;
use crate::wire::Inbound;
use reconnect::Worker;

/// Whether the log setup may emit a record from `target` at `level`.
/// tungstenite logs the whole upgrade request, `Authorization: Bearer` key
/// included, at trace level, so its debug and trace records must be dropped
/// whatever level the operator asks for.
pub fn log_record_allowed(target: &str, level: log::Level) -> bool {
    !(target.starts_with("tungstenite") && level > log::Level::Info)
}

/// Everything the connection thread needs.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The orchestrator's URL, without `worker_id` (added at dial time).
    pub url: WsUrl,
    /// This worker's id.
    pub worker_id: String,
    /// Sent as `Authorization: Bearer`.
    pub api_key: ApiKey,
    /// Time between keepalive pings (30 s).
    pub ping_interval: Duration,
    /// Silence after which the connection is dead (60 s).
    pub dead_after: Duration,
    /// Longest a write may stay blocked (10 s).
    pub write_timeout: Duration,
    /// Bound on TCP connect and on each step of the TLS / WebSocket handshakes.
    pub dial_timeout: Duration,
    /// Reconnect delays.
    pub backoff: BackoffPolicy,
    /// Extra CA certificates.
    pub tls_roots: RootSource,
    /// Proxy variables.
    pub proxy: ProxySettings,
}

impl Settings {
    /// Settings with the protocol's timings, the proxy and CA variables read
    /// through `env` (pass `|k| std::env::var(k).ok()` in production).
    pub fn new(
        url: &str,
        worker_id: impl Into<String>,
        api_key: ApiKey,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, UrlError> {
        Ok(Self {
            url: WsUrl::parse(url)?,
            worker_id: worker_id.into(),
            api_key,
            ping_interval: Duration::from_secs(30),
            dead_after: Duration::from_secs(60),
            write_timeout: Duration::from_secs(10),
            dial_timeout: Duration::from_secs(10),
            backoff: BackoffPolicy::default(),
            tls_roots: RootSource::from_env(env),
            proxy: ProxySettings::from_env(env),
        })
    }
}

/// Receives what the orchestrator sends. Called on the connection thread:
/// return quickly (hand real work to other threads).
pub trait InboundHandler: Send + 'static {
    /// One decoded message (never [`Inbound::Unknown`]; those are only logged).
    fn on_message(&mut self, msg: Inbound);
    /// The connection came up (`true`) or went down (`false`).
    fn on_connection_change(&mut self, _connected: bool) {}
    /// A dial (TCP, proxy, TLS or WebSocket handshake) failed; a retry follows.
    fn on_dial_failed(&mut self) {}
}

impl<F: FnMut(Inbound) + Send + 'static> InboundHandler for F {
    fn on_message(&mut self, msg: Inbound) {
        self(msg)
    }
}

/// What `finish` achieved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FinishReport {
    /// Status messages the orchestrator had not acknowledged at the end.
    pub unacknowledged: usize,
    /// A Close 1000 was sent and the orchestrator answered it.
    pub closed_cleanly: bool,
    /// The thread ended before the deadline (plus the close wait); when
    /// false it was left behind, stuck in a dial.
    pub thread_exited: bool,
}

/// State shared by the handle and the thread.
pub(crate) struct Shared {
    finish: Mutex<Option<Instant>>,
    finish_set: Condvar,
    connected: AtomicBool,
    wake: Mutex<Option<UnixStream>>,
}

impl Shared {
    fn finish_guard(&self) -> MutexGuard<'_, Option<Instant>> {
        self.finish.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// When `finish` was called, the deadline it gave.
    pub(crate) fn finish_deadline(&self) -> Option<Instant> {
        *self.finish_guard()
    }

    /// Sleeps `delay`; a `finish` arriving meanwhile ends the sleep at once,
    /// and once finishing, no sleep runs past the deadline.
    fn sleep(&self, delay: Duration) {
        let mut guard = self.finish_guard();
        let was_finishing = guard.is_some();
        let mut end = Instant::now() + delay;
        loop {
            if let Some(deadline) = *guard {
                if !was_finishing {
                    return;
                }
                end = end.min(deadline);
            }
            let now = Instant::now();
            if now >= end {
                return;
            }
            guard = self
                .finish_set
                .wait_timeout(guard, end - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

/// The running connection thread. Dropping the handle without
/// [`ConnectionHandle::finish`] leaves the thread running for the process's life.
pub struct ConnectionHandle {
    shared: Arc<Shared>,
    outbox: Outbox,
    done: Receiver<FinishReport>,
    thread: Option<JoinHandle<()>>,
}

/// Why the connection thread could not start.
#[derive(Debug)]
pub enum SpawnError {
    /// The TLS configuration could not be built.
    Tls(net::TlsSetupError),
    /// The wake-up socket or the thread could not be created.
    Io(io::Error),
}

impl std::fmt::Display for SpawnError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Tls(e) => write!(f, "{e}"),
            Self::Io(e) => write!(f, "could not start the connection thread: {e}"),
        }
    }
}

impl std::error::Error for SpawnError {}

/// Starts the connection thread. It dials at once and keeps a connection
/// open until [`ConnectionHandle::finish`].
pub fn spawn(
    settings: Settings,
    outbox: Outbox,
    handler: impl InboundHandler,
) -> Result<ConnectionHandle, SpawnError> {
    let (roots, added, problems) = net::load_roots(&settings.tls_roots);
    for p in &problems {
        log::warn!("{p}");
    }
    if added > 0 {
        log::info!("trusting {added} extra CA certificate(s) from SSL_CERT_FILE/SSL_CERT_DIR");
    }
    let tls = net::client_config(roots).map_err(SpawnError::Tls)?;
    if settings.url.sends_key_in_clear() {
        log::warn!(
            "{} is plain ws:// to a host other than this one: the API key travels in clear on every connection; use wss://",
            settings.url
        );
    }
    let (wake_rx, wake_tx) = UnixStream::pair().map_err(SpawnError::Io)?;
    wake_rx.set_nonblocking(true).map_err(SpawnError::Io)?;
    let outbox_waker = wake_tx.try_clone().map_err(SpawnError::Io)?;
    let shared = Arc::new(Shared {
        finish: Mutex::new(None),
        finish_set: Condvar::new(),
        connected: AtomicBool::new(false),
        wake: Mutex::new(Some(wake_tx)),
    });
    outbox.set_waker(outbox_waker);
    let (done_tx, done) = bounded(1);
    let mut worker = Worker {
        settings,
        tls,
        outbox: outbox.clone(),
        shared: Arc::clone(&shared),
        wake: wake_rx,
    };
    let thread = std::thread::Builder::new()
        .name("connection".into())
        .spawn(move || {
            let report = worker.run_restarting(handler);
            let _ = done_tx.send(report);
        })
        .map_err(SpawnError::Io)?;
    Ok(ConnectionHandle {
        shared,
        outbox,
        done,
        thread: Some(thread),
    })
}

impl ConnectionHandle {
    /// True while a WebSocket is open.
    pub fn is_connected(&self) -> bool {
        self.shared.connected.load(Ordering::SeqCst)
    }

    /// Ends the connection thread: keeps (re)connecting until the outbox is
    /// empty (every message acknowledged) or `deadline` passes, then sends
    /// Close 1000 and waits briefly for the answer. Inbound messages still
    /// reach the handler meanwhile, so late assignments can be rejected.
    pub fn finish(mut self, deadline: Instant) -> FinishReport {
        *self.shared.finish_guard() = Some(deadline);
        self.shared.finish_set.notify_all();
        if let Some(w) = self
            .shared
            .wake
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_mut()
        {
            let _ = io::Write::write(w, &[1]);
        }
        let give_up = deadline.max(Instant::now()) + session::close_wait() + Duration::from_secs(1);
        match self
            .done
            .recv_timeout(give_up.saturating_duration_since(Instant::now()))
        {
            Ok(report) => {
                if let Some(t) = self.thread.take() {
                    let _ = t.join();
                }
                report
            }
            Err(_) => {
                log::warn!("the connection thread did not stop in time; leaving it behind");
                FinishReport {
                    unacknowledged: self.outbox.len(),
                    closed_cleanly: false,
                    thread_exited: false,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tungstenite_debug_and_trace_are_never_logged() {
        use log::Level::*;
        assert!(!log_record_allowed("tungstenite::handshake::client", Trace));
        assert!(!log_record_allowed("tungstenite::protocol", Debug));
        assert!(log_record_allowed("tungstenite::protocol", Warn));
        assert!(log_record_allowed("oz_agent_worker::connection", Trace));
    }

    #[test]
    fn settings_read_proxy_and_ca_from_the_injected_env() {
        let env = |k: &str| match k {
            "https_proxy" => Some("http://p:3128".to_string()),
            "SSL_CERT_FILE" => Some("/ca.pem".to_string()),
            _ => None,
        };
        let s = Settings::new("wss://oz.warp.dev/ws", "w", ApiKey::new("k"), &env).unwrap();
        assert_eq!(s.tls_roots.cert_file, Some("/ca.pem".into()));
        let proxy = s.proxy.proxy_for(&s.url.peer()).unwrap().unwrap();
        assert_eq!(proxy.to_string(), "http://p:3128");
        assert_eq!(s.ping_interval, Duration::from_secs(30));
        assert_eq!(s.dead_after, Duration::from_secs(60));
        assert_eq!(s.write_timeout, Duration::from_secs(10));
        assert!(matches!(
            Settings::new("http://x", "w", ApiKey::new("k"), &|_| None),
            Err(UrlError::Scheme(_))
        ));
    }
}

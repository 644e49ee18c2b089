//! One live connection: the single thread that both reads and writes it.
//!
//! Owns the socket from the end of the handshake until the connection is lost
//! or closed. It waits in `poll` on the socket and the wake-up socket the
//! outbox pokes, hands every decoded inbound message to the handler, writes
//! every unacknowledged outbox message followed by a ping carrying the last
//! sequence number written, acknowledges through the pong that echoes it,
//! sends keepalive pings, and declares the peer dead after `dead_after`
//! without a frame or a write stuck for `write_timeout`. It never logs the raw
//! text of a frame: assignments carry secrets.

use std::fmt;
use std::io::{self, Read};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use tungstenite::protocol::CloseFrame;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::{Error as WsError, Message, WebSocket};

use super::{InboundHandler, Shared};
use crate::net::Stream;
use crate::outbox::Outbox;
use crate::untrusted::Escaped;
use crate::wire::{self, Inbound, MAX_MESSAGE_BYTES, Outbound};

/// How long to wait for the orchestrator to answer our Close before hanging up.
const CLOSE_WAIT: Duration = Duration::from_secs(2);

/// How long `finish` allows for the close handshake after its deadline.
pub(super) fn close_wait() -> Duration {
    CLOSE_WAIT
}

/// Timing knobs of a connection.
#[derive(Debug, Clone, Copy)]
pub(super) struct Timing {
    pub ping_interval: Duration,
    pub dead_after: Duration,
    pub write_timeout: Duration,
}

/// Why a connection ended.
#[derive(Debug)]
pub(super) enum Ended {
    /// The connection is gone; the reconnect loop dials again.
    Lost(Loss),
    /// `finish` was called and the close handshake ran (or timed out).
    Finished {
        /// The orchestrator answered our Close.
        closed_cleanly: bool,
    },
}

/// What ended a connection, in words for the log.
#[derive(Debug)]
pub(super) enum Loss {
    /// The orchestrator closed it, cleanly or not.
    ClosedByPeer(Option<u16>),
    /// No frame arrived for `dead_after`.
    Silent(Duration),
    /// A write stayed blocked for `write_timeout`.
    WriteStuck(Duration),
    /// A frame larger than the limit arrived.
    TooLarge,
    /// Reading or writing failed.
    Io(WsError),
}

impl fmt::Display for Loss {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ClosedByPeer(Some(code)) => {
                write!(f, "the orchestrator closed the connection (code {code})")
            }
            Self::ClosedByPeer(None) => f.write_str("the orchestrator closed the connection"),
            Self::Silent(d) => write!(f, "no frame from the orchestrator for {d:?}"),
            Self::WriteStuck(d) => write!(f, "a write could not complete within {d:?}"),
            Self::TooLarge => write!(
                f,
                "the orchestrator sent a message larger than {} MiB",
                MAX_MESSAGE_BYTES >> 20
            ),
            Self::Io(e) => write!(f, "{e}"),
        }
    }
}

/// Runs one connection to its end.
pub(super) fn run<H: InboundHandler>(
    ws: &mut WebSocket<Stream>,
    outbox: &Outbox,
    handler: &mut H,
    shared: &Shared,
    wake: &mut UnixStream,
    timing: Timing,
) -> Ended {
    let mut s = Session {
        last_written: 0,
        last_frame: Instant::now(),
        next_ping: Instant::now() + timing.ping_interval,
        blocked_since: None,
        closing_since: None,
        peer_close: None,
        timing,
    };
    loop {
        drain(wake);
        let now = Instant::now();
        if let Some(end) = s.read_all(ws, outbox, handler) {
            return end;
        }
        if let Some(deadline) = shared.finish_deadline()
            && s.closing_since.is_none()
            && (outbox.is_empty() || now >= deadline)
        {
            log::info!(
                "closing the connection (code 1000); {} status message(s) unacknowledged",
                outbox.len()
            );
            let frame = CloseFrame {
                code: CloseCode::Normal,
                reason: "".into(),
            };
            s.closing_since = Some(now);
            if let Err(e) = ws.close(Some(frame))
                && !would_block(&e)
            {
                log::warn!("could not send the close frame: {e}");
                return Ended::Finished {
                    closed_cleanly: false,
                };
            }
        }
        if let Some(since) = s.closing_since {
            if now >= since + CLOSE_WAIT {
                return Ended::Finished {
                    closed_cleanly: false,
                };
            }
        } else if let Err(loss) = s.write_pending(ws, outbox) {
            return Ended::Lost(loss);
        }
        if let Err(e) = ws.flush() {
            if !would_block(&e) {
                return Ended::Lost(Loss::Io(e));
            }
            s.blocked_since.get_or_insert(now);
        } else {
            s.blocked_since = None;
        }
        if now >= s.last_frame + timing.dead_after {
            return Ended::Lost(Loss::Silent(timing.dead_after));
        }
        if s.blocked_since
            .is_some_and(|b| now >= b + timing.write_timeout)
        {
            return Ended::Lost(Loss::WriteStuck(timing.write_timeout));
        }
        let wait = s
            .next_wakeup(shared)
            .saturating_duration_since(Instant::now());
        if let Err(e) = wait_ready(ws.get_ref(), wake, s.blocked_since.is_some(), wait) {
            return Ended::Lost(Loss::Io(WsError::Io(e)));
        }
    }
}

struct Session {
    last_written: u64,
    last_frame: Instant,
    next_ping: Instant,
    blocked_since: Option<Instant>,
    closing_since: Option<Instant>,
    peer_close: Option<u16>,
    timing: Timing,
}

impl Session {
    /// Reads until the socket has nothing more; `Some` when the connection ended.
    fn read_all<H: InboundHandler>(
        &mut self,
        ws: &mut WebSocket<Stream>,
        outbox: &Outbox,
        handler: &mut H,
    ) -> Option<Ended> {
        loop {
            let msg = match ws.read() {
                Ok(msg) => msg,
                Err(e) if would_block(&e) => return None,
                Err(WsError::ConnectionClosed | WsError::AlreadyClosed)
                    if self.closing_since.is_some() =>
                {
                    return Some(Ended::Finished {
                        closed_cleanly: true,
                    });
                }
                Err(WsError::ConnectionClosed | WsError::AlreadyClosed) => {
                    return Some(Ended::Lost(Loss::ClosedByPeer(self.peer_close)));
                }
                Err(WsError::Capacity(_)) => return Some(Ended::Lost(Loss::TooLarge)),
                Err(WsError::Io(e)) if self.closing_since.is_some() => {
                    // A TLS peer may hang up without close_notify after answering our Close.
                    log::debug!("connection ended while closing: {e}");
                    return Some(Ended::Finished {
                        closed_cleanly: self.peer_close.is_some(),
                    });
                }
                Err(e) => return Some(Ended::Lost(Loss::Io(e))),
            };
            self.last_frame = Instant::now();
            match msg {
                Message::Text(text) => deliver(text, handler),
                Message::Pong(payload) => {
                    if let Ok(seq) = <[u8; 8]>::try_from(payload.as_ref()) {
                        let seq = u64::from_be_bytes(seq).min(self.last_written);
                        log::debug!("received pong for message {seq}");
                        outbox.ack_through(seq);
                    }
                }
                Message::Ping(_) => log::debug!("received ping"),
                Message::Binary(b) => {
                    log::warn!(
                        "ignoring a {}-byte binary frame from the orchestrator",
                        b.len()
                    )
                }
                Message::Close(frame) => {
                    self.peer_close = Some(frame.map_or(1005, |f| u16::from(f.code)));
                    log::debug!("received close frame {:?}", self.peer_close);
                }
                Message::Frame(_) => {}
            }
        }
    }

    /// Writes every message not yet written on this connection, then the ack
    /// ping; or a keepalive ping when one is due.
    fn write_pending(&mut self, ws: &mut WebSocket<Stream>, outbox: &Outbox) -> Result<(), Loss> {
        let pending = outbox.after(self.last_written);
        let wrote = !pending.is_empty();
        for q in pending {
            let text = match serde_json::to_string(&q.message) {
                Ok(t) => t,
                Err(e) => {
                    log::error!("could not encode status message {}: {e}", q.seq);
                    continue;
                }
            };
            buffered(ws.write(Message::text(text)))?;
            log::debug!("sent {} (message {})", describe(&q.message), q.seq);
            self.last_written = q.seq;
        }
        let now = Instant::now();
        if wrote || now >= self.next_ping {
            let payload = self.last_written.to_be_bytes().to_vec();
            buffered(ws.write(Message::Ping(payload.into())))?;
            log::debug!("sent ping for message {}", self.last_written);
            self.next_ping = now + self.timing.ping_interval;
        }
        Ok(())
    }

    fn next_wakeup(&self, shared: &Shared) -> Instant {
        let mut at = (self.last_frame + self.timing.dead_after).min(self.next_ping);
        if let Some(b) = self.blocked_since {
            at = at.min(b + self.timing.write_timeout);
        }
        match self.closing_since {
            Some(c) => at.min(c + CLOSE_WAIT),
            None => shared.finish_deadline().map_or(at, |d| at.min(d)),
        }
    }
}

/// A write that hit WouldBlock is buffered inside tungstenite; only other
/// errors end the connection.
fn buffered(r: Result<(), WsError>) -> Result<(), Loss> {
    match r {
        Err(e) if !would_block(&e) => Err(Loss::Io(e)),
        _ => Ok(()),
    }
}

fn deliver<H: InboundHandler>(text: tungstenite::Utf8Bytes, handler: &mut H) {
    let decoded = wire::decode(text.as_str());
    // The frame is not needed once decoded: free it before the task starts
    // making its own copies (an assignment then costs its fields, not twice).
    drop(text);
    match decoded {
        Ok(Inbound::Unknown { kind }) => {
            log::warn!(
                "ignoring a message of unknown type {:?} from the orchestrator",
                Escaped(&kind)
            )
        }
        Ok(msg) => {
            match &msg {
                Inbound::Assignment(a) => {
                    log::debug!("received task_assignment for task {}", Escaped(&a.task_id))
                }
                Inbound::InvalidAssignment { task_id, .. } => {
                    log::debug!(
                        "received an unusable task_assignment for task {}",
                        Escaped(task_id)
                    )
                }
                Inbound::Cancellation { task_id } => {
                    log::debug!("received task_cancellation for task {}", Escaped(task_id))
                }
                Inbound::Unknown { .. } => {}
            }
            handler.on_message(msg);
        }
        Err(e) => log::error!("ignoring a frame: {e}"),
    }
}

/// `type task_id` of an outgoing message, for debug logs.
fn describe(m: &Outbound) -> String {
    match m {
        Outbound::TaskClaimed { task_id, .. } => {
            format!("task_claimed for task {}", Escaped(task_id))
        }
        Outbound::TaskRejected { task_id, .. } => {
            format!("task_rejected for task {}", Escaped(task_id))
        }
        Outbound::TaskCompleted { task_id, .. } => {
            format!("task_completed for task {}", Escaped(task_id))
        }
        Outbound::TaskFailed { task_id, .. } => {
            format!("task_failed for task {}", Escaped(task_id))
        }
    }
}

fn would_block(e: &WsError) -> bool {
    matches!(e, WsError::Io(io) if io.kind() == io::ErrorKind::WouldBlock)
}

/// Empties the wake-up socket; its bytes only mean "look again".
fn drain(wake: &mut UnixStream) {
    let mut buf = [0u8; 64];
    while matches!(wake.read(&mut buf), Ok(n) if n > 0) {}
}

/// Blocks until the socket or the wake-up socket is ready, or `wait` passes.
fn wait_ready(
    stream: &Stream,
    wake: &UnixStream,
    want_write: bool,
    wait: Duration,
) -> io::Result<()> {
    let mut events = libc::POLLIN;
    if want_write {
        events |= libc::POLLOUT;
    }
    let mut fds = [
        libc::pollfd {
            fd: stream.as_raw_fd(),
            events,
            revents: 0,
        },
        libc::pollfd {
            fd: wake.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        },
    ];
    // Round up so a sub-millisecond remainder does not spin.
    let ms = wait.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32;
    // SAFETY: `fds` is a valid array of two pollfd for the duration of the call.
    let rc = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
    if rc < 0 {
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
    Ok(())
}

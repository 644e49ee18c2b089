//! The queue of status messages on their way to the orchestrator.
//!
//! Owns every [`Outbound`] message from the moment a task (or the dispatcher)
//! produces it until the orchestrator has provably read it. Messages keep one
//! global order, so a task's `task_claimed` always precedes its terminal
//! message. A message leaves the queue only when acknowledged: the connection
//! writes messages, then a WebSocket ping whose payload is the sequence number
//! of the last one; the pong for it proves the peer read everything before it
//! ([`Outbox::ack_through`]). Whatever is unacknowledged when a connection dies
//! is written again on the next one. This module does no I/O beyond poking the
//! connection thread's wake-up socket.

use std::collections::VecDeque;
use std::io::Write;
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::wire::Outbound;

/// A queued message and its sequence number (1, 2, 3, … in push order).
#[derive(Debug, Clone, PartialEq)]
pub struct Queued {
    /// Position in the global order.
    pub seq: u64,
    /// The message.
    pub message: Outbound,
}

/// Runs once the message it was pushed with is acknowledged.
pub type OnAck = Box<dyn FnOnce() + Send>;

#[derive(Default)]
struct State {
    last_seq: u64,
    unacked: VecDeque<Queued>,
    /// Callbacks by sequence number, in push order.
    on_ack: VecDeque<(u64, OnAck)>,
}

#[derive(Default)]
struct Inner {
    state: Mutex<State>,
    changed: Condvar,
    waker: Mutex<Option<UnixStream>>,
}

/// Shared handle to the queue; clone it freely.
#[derive(Clone, Default)]
pub struct Outbox {
    inner: Arc<Inner>,
}

impl Outbox {
    /// An empty queue.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a message and wakes the connection thread.
    pub fn push(&self, message: Outbound) {
        self.push_inner(message, None);
    }

    /// Appends a message and runs `on_ack` once the orchestrator has read it
    /// (on the acknowledging thread, so it must not block). Never run when
    /// the message is never acknowledged, e.g. the process ends first.
    pub fn push_then(&self, message: Outbound, on_ack: OnAck) {
        self.push_inner(message, Some(on_ack));
    }

    fn push_inner(&self, message: Outbound, on_ack: Option<OnAck>) {
        {
            let mut state = self.state();
            state.last_seq += 1;
            let seq = state.last_seq;
            state.unacked.push_back(Queued { seq, message });
            if let Some(f) = on_ack {
                state.on_ack.push_back((seq, f));
            }
        }
        self.inner.changed.notify_all();
        self.wake();
    }

    /// Messages pushed after `seq` and not yet acknowledged, in order.
    pub fn after(&self, seq: u64) -> Vec<Queued> {
        self.state()
            .unacked
            .iter()
            .filter(|q| q.seq > seq)
            .cloned()
            .collect()
    }

    /// The orchestrator has read every message up to and including `seq`.
    pub fn ack_through(&self, seq: u64) {
        let mut done = Vec::new();
        {
            let mut state = self.state();
            while state.unacked.front().is_some_and(|q| q.seq <= seq) {
                state.unacked.pop_front();
            }
            while state.on_ack.front().is_some_and(|(s, _)| *s <= seq) {
                if let Some((_, f)) = state.on_ack.pop_front() {
                    done.push(f);
                }
            }
        }
        self.inner.changed.notify_all();
        for f in done {
            f();
        }
    }

    /// Number of messages not yet acknowledged.
    pub fn len(&self) -> usize {
        self.state().unacked.len()
    }

    /// True when every message has been acknowledged.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Waits until every message is acknowledged; false if `timeout` passed first.
    pub fn wait_empty(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut state = self.state();
        loop {
            if state.unacked.is_empty() {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            state = self
                .inner
                .changed
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Installs the write end of the connection thread's wake-up socket: every
    /// push writes one byte to it (never blocking), so a thread waiting in
    /// `poll` on the other end sees new messages at once.
    pub fn set_waker(&self, waker: UnixStream) {
        let _ = waker.set_nonblocking(true);
        *self.inner.waker.lock().unwrap_or_else(|e| e.into_inner()) = Some(waker);
        self.wake();
    }

    fn wake(&self) {
        if let Some(w) = self
            .inner
            .waker
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_mut()
        {
            // A full socket already means "wake up"; nothing is lost by ignoring it.
            let _ = w.write(&[1]);
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn claimed(id: &str) -> Outbound {
        Outbound::TaskClaimed {
            task_id: id.into(),
            worker_id: "w".into(),
        }
    }

    #[test]
    fn keeps_order_and_drops_only_acknowledged() {
        let outbox = Outbox::new();
        outbox.push(claimed("a"));
        outbox.push(claimed("b"));
        outbox.push(claimed("c"));
        let all = outbox.after(0);
        assert_eq!(all.iter().map(|q| q.seq).collect::<Vec<_>>(), vec![1, 2, 3]);
        assert_eq!(outbox.after(2), vec![all[2].clone()]);
        outbox.ack_through(2);
        assert_eq!(outbox.after(0), vec![all[2].clone()]);
        outbox.ack_through(1);
        assert_eq!(outbox.len(), 1);
        outbox.ack_through(3);
        assert!(outbox.is_empty());
        assert!(outbox.wait_empty(Duration::ZERO));
    }

    #[test]
    fn callbacks_run_once_when_their_message_is_acknowledged() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let outbox = Outbox::new();
        let hits = Arc::new(AtomicUsize::new(0));
        outbox.push(claimed("a"));
        let h = hits.clone();
        outbox.push_then(
            claimed("b"),
            Box::new(move || {
                h.fetch_add(1, Ordering::SeqCst);
            }),
        );
        outbox.ack_through(1);
        assert_eq!(hits.load(Ordering::SeqCst), 0, "b is not read yet");
        outbox.ack_through(2);
        outbox.ack_through(2);
        assert_eq!(hits.load(Ordering::SeqCst), 1);
        assert!(outbox.is_empty());
    }

    #[test]
    fn push_wakes_the_connection() {
        let outbox = Outbox::new();
        let (mut rx, tx) = UnixStream::pair().unwrap();
        outbox.set_waker(tx);
        outbox.push(claimed("a"));
        let mut buf = [0u8; 8];
        assert!(rx.read(&mut buf).unwrap() >= 1);
    }

    #[test]
    fn wait_empty_returns_when_acked_elsewhere() {
        let outbox = Outbox::new();
        outbox.push(claimed("a"));
        let o = outbox.clone();
        let t = std::thread::spawn(move || o.wait_empty(Duration::from_secs(30)));
        outbox.ack_through(1);
        assert!(t.join().unwrap());
        assert!(!{
            outbox.push(claimed("b"));
            outbox.wait_empty(Duration::from_millis(1))
        });
    }
}

//! One pull of each image reference at a time in this process: a second
//! caller waits for the pull under way and, when it succeeded, uses its
//! image instead of pulling again. Knows references only; never pulls.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use crate::task::CancelToken;

/// One pull of each reference at a time in this process. A caller that
/// finds a pull of its reference under way waits for it; when that pull
/// succeeded, the caller uses the image it brought instead of pulling a
/// second time (the prefetch at start, or another task, just pulled it).
#[derive(Debug, Default)]
pub struct PullGate {
    state: Mutex<GateState>,
    ended: Condvar,
    started: std::sync::atomic::AtomicUsize,
}

#[derive(Debug, Default)]
struct GateState {
    /// References being pulled now.
    pulling: HashMap<String, ()>,
    /// How the last pull of each reference ended.
    succeeded: HashMap<String, bool>,
    /// Callers waiting for a pull now.
    waiting: usize,
}

/// What a caller of [`PullGate::turn`] does.
pub(super) enum Turn<'a> {
    /// Pull it; the guard ends the turn.
    Mine(PullTurn<'a>),
    /// Another caller's pull of it succeeded while this one waited.
    Pulled,
}

/// This caller's pull of a reference; others wait until it is dropped.
pub(super) struct PullTurn<'a> {
    gate: &'a PullGate,
    reference: String,
    pub(super) succeeded: bool,
}

impl Drop for PullTurn<'_> {
    fn drop(&mut self) {
        let mut state = self.gate.lock();
        state.pulling.remove(&self.reference);
        state
            .succeeded
            .insert(self.reference.clone(), self.succeeded);
        drop(state);
        self.gate.ended.notify_all();
    }
}

impl PullGate {
    fn lock(&self) -> MutexGuard<'_, GateState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How many pulls this process started (a waiter that used another's
    /// pull starts none).
    pub fn pulls_started(&self) -> usize {
        self.started.load(Ordering::SeqCst)
    }

    /// How many callers wait for a pull now.
    pub fn waiting(&self) -> usize {
        self.lock().waiting
    }

    /// Whether `reference` is being pulled now.
    pub fn is_pulling(&self, reference: &str) -> bool {
        self.lock().pulling.contains_key(reference)
    }

    /// Waits (cancellably) until nobody pulls `reference`; `None` when
    /// cancelled meanwhile.
    pub(super) fn turn(
        self: &Arc<Self>,
        reference: &str,
        cancel: &CancelToken,
    ) -> Option<Turn<'_>> {
        let me = Arc::clone(self);
        let _hook = cancel.on_cancel(move |_| {
            drop(me.lock());
            me.ended.notify_all();
        });
        let mut state = self.lock();
        let mut waited = false;
        while state.pulling.contains_key(reference) {
            if !waited {
                log::info!("image {reference} is being pulled already; waiting for that pull");
                waited = true;
            }
            if cancel.is_cancelled() {
                return None;
            }
            state.waiting += 1;
            state = self.ended.wait(state).unwrap_or_else(|e| e.into_inner());
            state.waiting -= 1;
        }
        if waited && state.succeeded.get(reference) == Some(&true) {
            return Some(Turn::Pulled);
        }
        if cancel.is_cancelled() {
            return None;
        }
        state.pulling.insert(reference.to_owned(), ());
        self.started.fetch_add(1, Ordering::SeqCst);
        Some(Turn::Mine(PullTurn {
            gate: self,
            reference: reference.to_owned(),
            succeeded: false,
        }))
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;

    /// A second caller waits for the first pull of its reference and, when
    /// it succeeded, pulls nothing itself; after a failed one it pulls.
    #[test]
    fn a_second_caller_waits_for_the_pull_under_way_instead_of_pulling_again() {
        let gate = Arc::new(PullGate::default());
        let never = CancelToken::new();
        let Some(Turn::Mine(mut first)) = gate.turn("reg/a:1", &never) else {
            panic!("the first caller pulls");
        };
        let (tx, rx) = crossbeam_channel::bounded(1);
        let g = Arc::clone(&gate);
        let waiter = std::thread::spawn(move || {
            let turn = g.turn("reg/a:1", &CancelToken::new());
            let pulled = matches!(turn, Some(Turn::Pulled));
            drop(turn);
            tx.send(pulled).unwrap();
        });
        wait_for_waiter(&gate);
        // Another reference is not held up meanwhile.
        assert!(matches!(gate.turn("reg/b:1", &never), Some(Turn::Mine(_))));
        assert!(rx.try_recv().is_err(), "the waiter went ahead of the pull");
        first.succeeded = true;
        drop(first);
        assert!(rx.recv().unwrap(), "the waiter pulled a second time");
        waiter.join().unwrap();
        assert_eq!(gate.pulls_started(), 2);

        // After a failed pull the waiter pulls itself.
        let Some(Turn::Mine(failed)) = gate.turn("reg/c:1", &never) else {
            panic!("the first caller pulls");
        };
        let g = Arc::clone(&gate);
        let waiter = std::thread::spawn(move || {
            matches!(g.turn("reg/c:1", &CancelToken::new()), Some(Turn::Mine(_)))
        });
        wait_for_waiter(&gate);
        drop(failed);
        assert!(waiter.join().unwrap());
    }

    /// Until a caller is blocked in the gate (bounded).
    fn wait_for_waiter(gate: &PullGate) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while gate.waiting() == 0 {
            assert!(Instant::now() < deadline, "no caller came to wait");
            std::thread::yield_now();
        }
    }

    /// A cancelled waiter stops waiting at once.
    #[test]
    fn a_cancelled_waiter_stops_waiting() {
        let gate = Arc::new(PullGate::default());
        let _first = gate.turn("reg/a:1", &CancelToken::new());
        let token = CancelToken::new();
        let t = token.clone();
        let g = Arc::clone(&gate);
        let waiter = std::thread::spawn(move || g.turn("reg/a:1", &t).is_none());
        wait_for_waiter(&gate);
        token.cancel(crate::task::CancelCause::User);
        assert!(waiter.join().unwrap());
    }
}

//! Task time limits.
//!
//! Owns one timer thread that cancels a task's [`CancelToken`] with
//! [`CancelCause::Timeout`] when its deadline passes. It only fires tokens;
//! what a cancelled task does is the runner's business.

use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::Instant;

use crate::task::{CancelCause, CancelToken};

#[derive(Default)]
struct Inner {
    entries: Mutex<Vec<(Instant, CancelToken)>>,
    changed: Condvar,
}

/// Deadlines for running tasks, watched by one thread.
pub struct Deadlines {
    inner: Arc<Inner>,
}

impl Deadlines {
    /// Starts the timer thread; it lives as long as the process.
    pub fn start() -> Self {
        let inner = Arc::new(Inner::default());
        let watched = inner.clone();
        thread::Builder::new()
            .name("task-deadlines".into())
            .spawn(move || watch(&watched))
            .expect("spawning the deadline thread at startup");
        Self { inner }
    }

    /// Cancels `token` with [`CancelCause::Timeout`] at `at`.
    pub fn add(&self, at: Instant, token: CancelToken) {
        self.lock().push((at, token));
        self.inner.changed.notify_all();
    }

    /// Forgets `token`'s deadline (the task ended).
    pub fn remove(&self, token: &CancelToken) {
        self.lock().retain(|(_, t)| !t.same_as(token));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(Instant, CancelToken)>> {
        self.inner.entries.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn watch(inner: &Inner) {
    let mut entries = inner.entries.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        let now = Instant::now();
        let (due, later): (Vec<_>, Vec<_>) = entries.drain(..).partition(|(at, _)| *at <= now);
        *entries = later;
        if !due.is_empty() {
            drop(entries);
            for (_, token) in due {
                token.cancel(CancelCause::Timeout);
            }
            entries = inner.entries.lock().unwrap_or_else(|e| e.into_inner());
            continue;
        }
        entries = match entries.iter().map(|(at, _)| *at).min() {
            Some(next) => {
                inner
                    .changed
                    .wait_timeout(entries, next.saturating_duration_since(now))
                    .unwrap_or_else(|e| e.into_inner())
                    .0
            }
            None => inner
                .changed
                .wait(entries)
                .unwrap_or_else(|e| e.into_inner()),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn fires_due_tokens_and_not_removed_ones() {
        let deadlines = Deadlines::start();
        let soon = CancelToken::new();
        let removed = CancelToken::new();
        deadlines.add(Instant::now() + Duration::from_millis(20), soon.clone());
        deadlines.add(Instant::now() + Duration::from_millis(20), removed.clone());
        deadlines.remove(&removed);
        assert_eq!(
            soon.wait_timeout(Duration::from_secs(10)),
            Some(CancelCause::Timeout)
        );
        assert_eq!(removed.wait_timeout(Duration::from_millis(50)), None);
    }
}

//! The worker-wide cap on bytes of assignments in flight.
//!
//! Each claimed task holds its assignment (about its frame's size) until it
//! ends, and decoding one costs about twice that for a moment; with unlimited
//! concurrency nothing else bounds N × 16 MiB. Owns [`InFlight`], the count
//! of frame bytes of the tasks claimed and not yet ended, and the [`Permit`]
//! a task holds. An assignment that would take the count past the cap is
//! rejected like one beyond `max_concurrent_tasks`. It must not know about
//! tasks, threads or the wire; the dispatcher asks and releases.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The default cap: room for thousands of ordinary (kilobyte) assignments,
/// and for four of the largest frame the worker accepts.
pub const DEFAULT_CAP: usize = 64 << 20;

/// Bytes of assignments in flight, against a cap.
#[derive(Debug, Clone)]
pub struct InFlight {
    cap: usize,
    used: Arc<AtomicUsize>,
}

/// A task's share of [`InFlight`]; released when dropped.
#[derive(Debug)]
#[must_use = "the bytes are released as soon as the permit is dropped"]
pub struct Permit {
    used: Arc<AtomicUsize>,
    bytes: usize,
}

impl InFlight {
    /// At most `cap` bytes in flight; 0 = no cap.
    pub fn new(cap: usize) -> Self {
        Self {
            cap,
            used: Arc::default(),
        }
    }

    /// The cap (0 = none).
    pub fn cap(&self) -> usize {
        self.cap
    }

    /// Bytes held now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::SeqCst)
    }

    /// Takes `bytes`, or `None` when that would pass the cap. One assignment
    /// alone always fits (the cap is never below the largest frame), so
    /// with nothing in flight the answer is always yes.
    pub fn take(&self, bytes: usize) -> Option<Permit> {
        let taken = self
            .used
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |used| {
                let next = used.saturating_add(bytes);
                (self.cap == 0 || used == 0 || next <= self.cap).then_some(next)
            });
        taken.ok().map(|_| Permit {
            used: Arc::clone(&self.used),
            bytes,
        })
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.used.fetch_sub(self.bytes, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_up_to_the_cap_and_releases_on_drop() {
        let f = InFlight::new(100);
        let a = f.take(60).unwrap();
        assert!(f.take(41).is_none());
        let b = f.take(40).unwrap();
        assert_eq!(f.used(), 100);
        drop(a);
        assert_eq!(f.used(), 40);
        drop(b);
        assert_eq!(f.used(), 0);
        // Alone, even an oversized one fits.
        let big = f.take(500).unwrap();
        assert!(f.take(1).is_none());
        drop(big);
        assert!(InFlight::new(0).take(usize::MAX).is_some());
    }
}

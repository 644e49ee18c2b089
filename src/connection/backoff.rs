//! The reconnect delay: 1 s, doubling after each failed dial, capped at 60 s,
//! back to 1 s after a successful handshake (PROTOCOL.md, Connection).
//!
//! Owns only arithmetic: the caller supplies the jitter draw, so the exact
//! sequence is unit-testable. Jitter shortens a delay by up to
//! [`BackoffPolicy::jitter`] of itself (never lengthens it), so the 60 s cap
//! the spec promises still holds while a fleet of workers that lost the
//! orchestrator at once does not redial in lockstep. No I/O, no clocks.

use std::time::Duration;

/// How reconnect delays grow.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BackoffPolicy {
    /// First delay, and the delay after a successful handshake.
    pub initial: Duration,
    /// Multiplier after each failed dial.
    pub factor: u32,
    /// Largest delay.
    pub max: Duration,
    /// Fraction (0..=1) by which a delay may be shortened at random.
    pub jitter: f64,
}

impl Default for BackoffPolicy {
    fn default() -> Self {
        Self {
            initial: Duration::from_secs(1),
            factor: 2,
            max: Duration::from_secs(60),
            jitter: 0.2,
        }
    }
}

/// The running state of a reconnect delay.
#[derive(Debug, Clone)]
pub struct Backoff {
    policy: BackoffPolicy,
    current: Duration,
}

impl Backoff {
    /// Starts at the policy's initial delay.
    pub fn new(policy: BackoffPolicy) -> Self {
        Self {
            current: policy.initial.min(policy.max),
            policy,
        }
    }

    /// The delay to wait now, then grows the next one. `draw` is a uniform
    /// random number in `[0, 1)`; 0 means no jitter.
    pub fn next_delay(&mut self, draw: f64) -> Duration {
        let base = self.current;
        let cut = base.mul_f64((self.policy.jitter * draw).clamp(0.0, 1.0));
        self.current = base
            .saturating_mul(self.policy.factor.max(1))
            .min(self.policy.max);
        base - cut
    }

    /// A handshake succeeded: the next delay is the initial one again.
    pub fn reset(&mut self) {
        self.current = self.policy.initial.min(self.policy.max);
    }
}

/// A cheap uniform `[0, 1)` source for jitter (xorshift seeded from the
/// process's hasher keys); jitter needs spread, not cryptographic quality.
pub struct JitterSource(u64);

impl JitterSource {
    /// A source seeded differently in every process.
    pub fn new() -> Self {
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(std::process::id().into());
        Self(h.finish() | 1)
    }

    /// The next draw in `[0, 1)`.
    pub fn draw(&mut self) -> f64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        (x >> 11) as f64 / (1u64 << 53) as f64
    }
}

impl Default for JitterSource {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_to_the_cap_and_resets() {
        let mut b = Backoff::new(BackoffPolicy::default());
        let secs: Vec<u64> = (0..8).map(|_| b.next_delay(0.0).as_secs()).collect();
        assert_eq!(secs, vec![1, 2, 4, 8, 16, 32, 60, 60]);
        b.reset();
        assert_eq!(b.next_delay(0.0), Duration::from_secs(1));
        assert_eq!(b.next_delay(0.0), Duration::from_secs(2));
    }

    #[test]
    fn jitter_only_shortens() {
        let mut b = Backoff::new(BackoffPolicy::default());
        assert_eq!(b.next_delay(0.5), Duration::from_millis(900));
        assert_eq!(b.next_delay(0.75), Duration::from_millis(1700));
        for _ in 0..10 {
            b.next_delay(0.0);
        }
        assert_eq!(b.next_delay(0.25), Duration::from_secs(57));
    }

    #[test]
    fn jitter_source_stays_in_range() {
        let mut j = JitterSource::new();
        for _ in 0..1000 {
            let d = j.draw();
            assert!((0.0..1.0).contains(&d), "{d}");
        }
    }
}

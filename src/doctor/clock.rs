//! Clock sanity: how far the local clock may drift before it matters (the
//! HTTP dates it is compared with are read by [`crate::calendar`]).
//!
//! Pure arithmetic: no clock is read here, the caller passes "now". A clock
//! that is minutes off breaks certificate validity checks and token expiry,
//! which is why the doctor looks at it at all.

use super::Status;

/// Drift up to this many seconds passes.
pub const PASS_WITHIN_SECS: u64 = 60;
/// Drift up to this many seconds warns; beyond it fails.
pub const WARN_WITHIN_SECS: u64 = 5 * 60;

/// How a drift of `skew_secs` (either direction) rates.
pub fn rate_skew(skew_secs: u64) -> Status {
    if skew_secs <= PASS_WITHIN_SECS {
        Status::Pass
    } else if skew_secs <= WARN_WITHIN_SECS {
        Status::Warn
    } else {
        Status::Fail
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skew_thresholds() {
        assert_eq!(rate_skew(0), Status::Pass);
        assert_eq!(rate_skew(60), Status::Pass);
        assert_eq!(rate_skew(61), Status::Warn);
        assert_eq!(rate_skew(300), Status::Warn);
        assert_eq!(rate_skew(301), Status::Fail);
    }
}

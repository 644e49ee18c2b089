//! Clock sanity: HTTP dates (RFC 9110 IMF-fixdate) to and from Unix seconds,
//! and how far the local clock may drift before it matters.
//!
//! Pure arithmetic: no clock is read here, the caller passes "now". A clock
//! that is minutes off breaks certificate validity checks and token expiry,
//! which is why the doctor looks at it at all.

use super::Status;
use crate::calendar::{civil_from_days, days_from_civil};

/// Drift up to this many seconds passes.
pub const PASS_WITHIN_SECS: u64 = 60;
/// Drift up to this many seconds warns; beyond it fails.
pub const WARN_WITHIN_SECS: u64 = 5 * 60;

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];
const WEEKDAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];

/// Parses `Sun, 06 Nov 1994 08:49:37 GMT` into Unix seconds. The weekday is
/// not checked (servers are trusted on it; only the instant matters).
pub fn parse_http_date(text: &str) -> Option<u64> {
    let (_weekday, rest) = text.trim().split_once(", ")?;
    let parts: Vec<&str> = rest.split(' ').collect();
    let [day, month, year, time, "GMT"] = parts.as_slice() else {
        return None;
    };
    let day: u32 = digits(day, 2)?;
    let month = MONTHS.iter().position(|m| m == month)? as u32 + 1;
    let year: i64 = i64::from(digits(year, 4)?);
    let hms: Vec<&str> = time.split(':').collect();
    let [h, m, s] = hms.as_slice() else {
        return None;
    };
    let (h, m, s) = (digits(h, 2)?, digits(m, 2)?, digits(s, 2)?);
    if !(1..=31).contains(&day) || h > 23 || m > 59 || s > 60 {
        return None;
    }
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + i64::from(h * 3600 + m * 60 + s);
    u64::try_from(secs).ok()
}

/// Formats Unix seconds as an IMF-fixdate.
pub fn format_http_date(unix_secs: u64) -> String {
    let days = (unix_secs / 86_400) as i64;
    let secs = unix_secs % 86_400;
    let (year, month, day) = civil_from_days(days);
    format!(
        "{}, {day:02} {} {year:04} {:02}:{:02}:{:02} GMT",
        WEEKDAYS[(days % 7) as usize],
        MONTHS[(month - 1) as usize],
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

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

/// Exactly `len` ASCII digits.
fn digits(s: &str, len: usize) -> Option<u32> {
    (s.len() == len && s.bytes().all(|b| b.is_ascii_digit()))
        .then(|| s.parse().ok())
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_rfc_example_and_leap_days() {
        assert_eq!(
            parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(784_111_777)
        );
        assert_eq!(parse_http_date("Thu, 01 Jan 1970 00:00:00 GMT"), Some(0));
        assert_eq!(
            parse_http_date("Thu, 29 Feb 2024 23:59:59 GMT"),
            Some(1_709_251_199)
        );
    }

    #[test]
    fn refuses_other_forms() {
        for bad in [
            "",
            "Sunday, 06-Nov-94 08:49:37 GMT",
            "Sun Nov  6 08:49:37 1994",
            "Sun, 06 Nov 1994 08:49:37 UTC",
            "Sun, 6 Nov 1994 08:49:37 GMT",
            "Sun, 06 Nox 1994 08:49:37 GMT",
            "Sun, 06 Nov 1994 24:00:00 GMT",
            "Sun, 06 Nov 1994 08:49 GMT",
        ] {
            assert_eq!(parse_http_date(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn formats_exactly_and_round_trips() {
        assert_eq!(
            format_http_date(784_111_777),
            "Sun, 06 Nov 1994 08:49:37 GMT"
        );
        assert_eq!(format_http_date(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(
            format_http_date(1_709_251_199),
            "Thu, 29 Feb 2024 23:59:59 GMT"
        );
        for t in [1, 951_782_400, 4_102_444_800, 1_767_225_599] {
            assert_eq!(parse_http_date(&format_http_date(t)), Some(t));
        }
    }

    #[test]
    fn skew_thresholds() {
        assert_eq!(rate_skew(0), Status::Pass);
        assert_eq!(rate_skew(60), Status::Pass);
        assert_eq!(rate_skew(61), Status::Warn);
        assert_eq!(rate_skew(300), Status::Warn);
        assert_eq!(rate_skew(301), Status::Fail);
    }
}

//! Durations written the way the Go worker writes them (`45m`, `1h30m`,
//! `1.5h`, `300ms`, `0s`): a parser that accepts exactly what Go's
//! `time.ParseDuration` accepts, and a formatter that prints what Go's
//! `Duration.String` prints, so config files and logs read the same as with
//! the Go worker.
//!
//! Pure functions only; this module must not read configuration or log.

use std::fmt;
use std::time::Duration;

const NANOS_PER_MICRO: u64 = 1_000;
const NANOS_PER_MILLI: u64 = 1_000_000;
const NANOS_PER_SECOND: u64 = 1_000_000_000;
/// Go keeps durations in an `int64` of nanoseconds; anything past this is an overflow there too.
const LIMIT: u64 = 1 << 63;

/// Why a duration string was refused. `Display` uses Go's own wording so an
/// operator moving from the Go worker sees the message they know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DurationError {
    /// Not of the form `[-+]?([0-9]*(\.[0-9]*)?[a-z]+)+`, or too large.
    Invalid(String),
    /// A number with no unit after it, e.g. `10`.
    MissingUnit(String),
    /// A unit other than ns, us, µs, ms, s, m, h.
    UnknownUnit {
        /// The unit as written.
        unit: String,
        /// The whole input.
        input: String,
    },
    /// A negative duration, which Go accepts but no setting here can use.
    Negative(String),
}

impl fmt::Display for DurationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Invalid(input) => write!(f, "time: invalid duration {}", quote(input)),
            // Go's words, then an example: a bare `10` is the commonest
            // mistake, and Go's message does not say what a unit looks like.
            Self::MissingUnit(input) => {
                write!(f, "time: missing unit in duration {} (", quote(input))?;
                let with = |unit: &str| {
                    let fixed = format!("{input}{unit}");
                    parse(&fixed).is_ok().then(|| quote(&fixed))
                };
                match (with("s"), with("m")) {
                    (Some(s), Some(m)) => write!(f, "did you mean {s} or {m}? ")?,
                    _ => f.write_str("e.g. \"10s\", \"45m\", \"1h30m\"; ")?,
                }
                f.write_str("units are ns, us, ms, s, m, h)")
            }
            Self::UnknownUnit { unit, input } => write!(
                f,
                "time: unknown unit {} in duration {}",
                quote(unit),
                quote(input)
            ),
            Self::Negative(input) => {
                write!(f, "negative duration {} is not allowed here", quote(input))
            }
        }
    }
}

impl std::error::Error for DurationError {}

/// Parses a Go duration string. Accepts everything `time.ParseDuration`
/// accepts except negative non-zero values.
pub fn parse(input: &str) -> Result<Duration, DurationError> {
    let invalid = || DurationError::Invalid(input.to_owned());
    let mut s = input.as_bytes();
    let mut negative = false;
    if let Some((&sign @ (b'-' | b'+'), rest)) = s.split_first() {
        negative = sign == b'-';
        s = rest;
    }
    // Go special-cases a bare zero, the one unitless value it accepts.
    if s == b"0" {
        return Ok(Duration::ZERO);
    }
    if s.is_empty() {
        return Err(invalid());
    }
    let mut total: u64 = 0;
    while !s.is_empty() {
        if !(s[0] == b'.' || s[0].is_ascii_digit()) {
            return Err(invalid());
        }
        let before = s.len();
        let (whole, rest) = leading_int(s).ok_or_else(invalid)?;
        s = rest;
        let had_whole = before != s.len();
        let (mut fraction, mut scale, mut had_fraction) = (0u64, 1f64, false);
        if let Some((b'.', rest)) = s.split_first() {
            let before = rest.len();
            let (f, sc, rest) = leading_fraction(rest);
            (fraction, scale, s) = (f, sc, rest);
            had_fraction = before != s.len();
        }
        if !had_whole && !had_fraction {
            return Err(invalid());
        }
        let unit_len = s
            .iter()
            .position(|&c| c == b'.' || c.is_ascii_digit())
            .unwrap_or(s.len());
        if unit_len == 0 {
            return Err(DurationError::MissingUnit(input.to_owned()));
        }
        let (unit_bytes, rest) = s.split_at(unit_len);
        s = rest;
        let unit_text = String::from_utf8_lossy(unit_bytes);
        let unit = unit_nanos(&unit_text).ok_or_else(|| DurationError::UnknownUnit {
            unit: unit_text.into_owned(),
            input: input.to_owned(),
        })?;
        if whole > LIMIT / unit {
            return Err(invalid());
        }
        let mut value = whole * unit;
        if fraction > 0 {
            // Float arithmetic on purpose: it is how Go rounds `1.5h` and friends.
            value += (fraction as f64 * (unit as f64 / scale)) as u64;
            if value > LIMIT {
                return Err(invalid());
            }
        }
        total += value;
        if total > LIMIT {
            return Err(invalid());
        }
    }
    if negative {
        return if total == 0 {
            Ok(Duration::ZERO)
        } else {
            Err(DurationError::Negative(input.to_owned()))
        };
    }
    if total > LIMIT - 1 {
        return Err(invalid());
    }
    Ok(Duration::from_nanos(total))
}

fn unit_nanos(unit: &str) -> Option<u64> {
    Some(match unit {
        "ns" => 1,
        // U+00B5 (micro sign) and U+03BC (Greek mu), as Go accepts both.
        "us" | "\u{b5}s" | "\u{3bc}s" => NANOS_PER_MICRO,
        "ms" => NANOS_PER_MILLI,
        "s" => NANOS_PER_SECOND,
        "m" => 60 * NANOS_PER_SECOND,
        "h" => 3600 * NANOS_PER_SECOND,
        _ => return None,
    })
}

/// The leading run of digits as a number; `None` when it passes Go's limit.
fn leading_int(s: &[u8]) -> Option<(u64, &[u8])> {
    let mut x: u64 = 0;
    let mut i = 0;
    while i < s.len() && s[i].is_ascii_digit() {
        if x > LIMIT / 10 {
            return None;
        }
        x = x * 10 + u64::from(s[i] - b'0');
        if x > LIMIT {
            return None;
        }
        i += 1;
    }
    Some((x, &s[i..]))
}

/// The digits after a `.`, with their scale; digits beyond what fits are
/// consumed but dropped, as Go does.
fn leading_fraction(s: &[u8]) -> (u64, f64, &[u8]) {
    let (mut x, mut scale, mut overflow) = (0u64, 1f64, false);
    let mut i = 0;
    while i < s.len() && s[i].is_ascii_digit() {
        if !overflow {
            if x > (LIMIT - 1) / 10 {
                overflow = true;
            } else {
                let y = x * 10 + u64::from(s[i] - b'0');
                if y > LIMIT {
                    overflow = true;
                } else {
                    x = y;
                    scale *= 10.0;
                }
            }
        }
        i += 1;
    }
    (x, scale, &s[i..])
}

/// Go's `quote` for duration messages: double quotes, with non-ASCII and
/// control bytes shown as `\xNN`.
fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        if !c.is_ascii() || c < ' ' {
            let mut buf = [0u8; 4];
            for byte in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("\\x{byte:02x}"));
            }
        } else {
            if c == '"' || c == '\\' {
                out.push('\\');
            }
            out.push(c);
        }
    }
    out.push('"');
    out
}

/// Formats a duration as Go's `Duration.String` does: `1h30m0s`, `300ms`,
/// `1.5µs`, `0s`.
pub fn format(d: Duration) -> String {
    let nanos = d.as_nanos();
    let second = u128::from(NANOS_PER_SECOND);
    if nanos == 0 {
        return "0s".to_owned();
    }
    if nanos < second {
        let (precision, unit) = if nanos < u128::from(NANOS_PER_MICRO) {
            (0, "ns")
        } else if nanos < u128::from(NANOS_PER_MILLI) {
            (3, "\u{b5}s")
        } else {
            (6, "ms")
        };
        return format!("{}{unit}", with_fraction(nanos, precision));
    }
    let seconds = nanos / second;
    let fraction = nanos % second;
    let secs_text = with_fraction((seconds % 60) * second + fraction, 9);
    let minutes = seconds / 60;
    if minutes == 0 {
        return format!("{secs_text}s");
    }
    let hours = minutes / 60;
    if hours == 0 {
        return format!("{minutes}m{secs_text}s");
    }
    format!("{hours}h{}m{secs_text}s", minutes % 60)
}

/// `value / 10^precision` in decimal, trailing zeros (and a bare point) dropped.
fn with_fraction(value: u128, precision: u32) -> String {
    let scale = 10u128.pow(precision);
    let (whole, fraction) = (value / scale, value % scale);
    if fraction == 0 {
        return whole.to_string();
    }
    let digits = format!("{fraction:0width$}", width = precision as usize);
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(input: &str) -> Duration {
        parse(input).unwrap_or_else(|e| panic!("{input}: {e}"))
    }

    #[test]
    fn parses_the_documented_forms() {
        assert_eq!(ok("45m"), Duration::from_secs(45 * 60));
        assert_eq!(ok("10m"), Duration::from_secs(600));
        assert_eq!(ok("0s"), Duration::ZERO);
        assert_eq!(ok("0"), Duration::ZERO);
        assert_eq!(ok("1h30m"), Duration::from_secs(5400));
        assert_eq!(ok("1.5h"), Duration::from_secs(5400));
        assert_eq!(ok("300ms"), Duration::from_millis(300));
        assert_eq!(ok("8h"), Duration::from_secs(8 * 3600));
    }

    #[test]
    fn parses_every_unit_and_sign() {
        assert_eq!(ok("7ns"), Duration::from_nanos(7));
        assert_eq!(ok("7us"), Duration::from_micros(7));
        assert_eq!(ok("7\u{b5}s"), Duration::from_micros(7));
        assert_eq!(ok("7\u{3bc}s"), Duration::from_micros(7));
        assert_eq!(ok("+2s"), Duration::from_secs(2));
        assert_eq!(ok("-0"), Duration::ZERO);
        assert_eq!(ok("-0s"), Duration::ZERO);
        assert_eq!(ok(".5s"), Duration::from_millis(500));
        assert_eq!(ok("1.s"), Duration::from_secs(1));
        assert_eq!(ok("1h2m3s4ms"), Duration::from_millis(3_723_004));
        assert_eq!(ok("2s1s"), Duration::from_secs(3));
        assert_eq!(ok("1.000000000000000000001s"), Duration::from_secs(1));
        assert_eq!(
            ok("9223372036854775807ns"),
            Duration::from_nanos(i64::MAX as u64)
        );
    }

    #[test]
    fn refuses_what_go_refuses_with_gos_words() {
        let msg = |input: &str| parse(input).unwrap_err().to_string();
        assert_eq!(msg(""), r#"time: invalid duration """#);
        assert_eq!(msg("abc"), r#"time: invalid duration "abc""#);
        assert_eq!(msg("."), r#"time: invalid duration ".""#);
        assert_eq!(msg("-"), r#"time: invalid duration "-""#);
        assert_eq!(msg(" 1h"), r#"time: invalid duration " 1h""#);
        assert_eq!(
            msg("1h 30m"),
            r#"time: unknown unit "h " in duration "1h 30m""#
        );
        assert_eq!(
            msg("10"),
            r#"time: missing unit in duration "10" (did you mean "10s" or "10m"? units are ns, us, ms, s, m, h)"#
        );
        assert_eq!(
            msg("1h30"),
            r#"time: missing unit in duration "1h30" (did you mean "1h30s" or "1h30m"? units are ns, us, ms, s, m, h)"#
        );
        assert_eq!(
            msg("1.5.2"),
            r#"time: missing unit in duration "1.5.2" (e.g. "10s", "45m", "1h30m"; units are ns, us, ms, s, m, h)"#
        );
        assert_eq!(
            msg("10min"),
            r#"time: unknown unit "min" in duration "10min""#
        );
        assert_eq!(
            msg("3\u{e9}"),
            r#"time: unknown unit "\xc3\xa9" in duration "3\xc3\xa9""#
        );
        assert_eq!(
            msg("9223372036854775808ns"),
            r#"time: invalid duration "9223372036854775808ns""#
        );
        assert_eq!(msg("3000000h"), r#"time: invalid duration "3000000h""#);
        assert_eq!(msg("-1s"), r#"negative duration "-1s" is not allowed here"#);
    }

    #[test]
    fn unknown_unit_is_a_typed_error() {
        assert_eq!(
            parse("5d"),
            Err(DurationError::UnknownUnit {
                unit: "d".into(),
                input: "5d".into()
            })
        );
    }

    #[test]
    fn formats_like_go() {
        assert_eq!(format(Duration::ZERO), "0s");
        assert_eq!(format(Duration::from_nanos(999)), "999ns");
        assert_eq!(format(Duration::from_nanos(1500)), "1.5\u{b5}s");
        assert_eq!(format(Duration::from_millis(300)), "300ms");
        assert_eq!(format(Duration::from_micros(1500)), "1.5ms");
        assert_eq!(format(Duration::from_secs(10)), "10s");
        assert_eq!(format(Duration::from_millis(60_500)), "1m0.5s");
        assert_eq!(format(Duration::from_secs(5400)), "1h30m0s");
        assert_eq!(format(Duration::from_secs(8 * 3600)), "8h0m0s");
        assert_eq!(
            format(Duration::from_nanos(3_600_000_000_001)),
            "1h0m0.000000001s"
        );
    }

    #[test]
    fn format_then_parse_round_trips() {
        for d in [
            Duration::from_nanos(1),
            Duration::from_micros(1234),
            Duration::from_millis(61_001),
            Duration::from_secs(100 * 3600 + 7),
        ] {
            assert_eq!(parse(&format(d)), Ok(d));
        }
    }
}

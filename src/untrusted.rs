//! Untrusted values: text that came from outside the worker (the
//! orchestrator's task ids, titles and image references, a task container's
//! output, the daemon's error text), and how it is made safe to show in one
//! log record or one status message.
//!
//! Owns [`Escaped`] (one value escaped and shortened for a message), [`escape_line`]
//! (the logger's last step: a record is always one line) and
//! [`truncate_message`] (the cap on a whole message). Pure functions only; it
//! must not decide what is logged or masked (that is `logging`'s job).

use std::borrow::Cow;
use std::fmt::{self, Write};

/// Characters of one outside value shown in a message; the rest is cut.
pub const VALUE_MAX_CHARS: usize = 200;
/// Bytes of one log message or one `task_failed` message at most.
pub const MESSAGE_MAX_BYTES: usize = 8 * 1024;

/// One outside value for a message: control and line-breaking characters
/// escaped (`\n`, `\u{1b}`, …), cut after [`VALUE_MAX_CHARS`] characters
/// with the number of bytes left out.
#[derive(Clone, Copy)]
pub struct Escaped<'a>(pub &'a str);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut chars = self.0.char_indices();
        for (_, c) in chars.by_ref().take(VALUE_MAX_CHARS) {
            escape_char(c, f)?;
        }
        if let Some((at, _)) = chars.next() {
            write!(f, "…(+{} bytes)", self.0.len() - at)?;
        }
        Ok(())
    }
}

impl fmt::Debug for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{self}\"")
    }
}

/// Whether `c` would end a line, move the cursor, or reorder text in a
/// terminal or log viewer: C0/C1 controls, DEL, the Unicode line and
/// paragraph separators and the bidirectional overrides. Tab is kept.
pub fn needs_escape(c: char) -> bool {
    (c.is_control() && c != '\t')
        || matches!(c, '\u{2028}' | '\u{2029}' | '\u{200e}' | '\u{200f}')
        || ('\u{202a}'..='\u{202e}').contains(&c)
        || ('\u{2066}'..='\u{2069}').contains(&c)
}

fn escape_char(c: char, out: &mut dyn Write) -> fmt::Result {
    match c {
        '\n' => out.write_str("\\n"),
        '\r' => out.write_str("\\r"),
        c if needs_escape(c) => write!(out, "\\u{{{:x}}}", c as u32),
        c => out.write_char(c),
    }
}

/// `text` with every character of [`needs_escape`] escaped, so whatever it
/// holds it prints as one line.
pub fn escape_line(text: &str) -> Cow<'_, str> {
    if !text.chars().any(needs_escape) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        // Writing to a String cannot fail.
        let _ = escape_char(c, &mut out);
    }
    Cow::Owned(out)
}

/// `text` cut to at most `max` bytes (at a character boundary), saying how
/// many bytes were left out.
pub fn truncate_message(text: &str, max: usize) -> Cow<'_, str> {
    if text.len() <= max {
        return Cow::Borrowed(text);
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    Cow::Owned(format!(
        "{}…(message cut: {} more bytes)",
        &text[..end],
        text.len() - end
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaped_escapes_and_cuts() {
        assert_eq!(Escaped("plain/image:1").to_string(), "plain/image:1");
        assert_eq!(
            Escaped("a\nb\rc\u{1b}[31m\u{2028}\u{202e}\td").to_string(),
            "a\\nb\\rc\\u{1b}[31m\\u{2028}\\u{202e}\td"
        );
        let long = "x".repeat(VALUE_MAX_CHARS + 50);
        assert_eq!(
            Escaped(&long).to_string(),
            format!("{}…(+50 bytes)", "x".repeat(VALUE_MAX_CHARS))
        );
        let exact = "é".repeat(VALUE_MAX_CHARS);
        assert_eq!(Escaped(&exact).to_string(), exact);
        assert_eq!(format!("{:?}", Escaped("a\"b")), "\"a\"b\"");
    }

    #[test]
    fn lines_stay_lines() {
        assert!(matches!(escape_line("no breaks"), Cow::Borrowed(_)));
        assert_eq!(
            escape_line("ok\n2026-01-01T00:00:00.000Z INFO  forged"),
            "ok\\n2026-01-01T00:00:00.000Z INFO  forged"
        );
        assert_eq!(escape_line("\u{85}\u{7f}\0"), "\\u{85}\\u{7f}\\u{0}");
    }

    #[test]
    fn messages_are_capped_at_a_char_boundary() {
        assert_eq!(truncate_message("short", 10), "short");
        assert_eq!(truncate_message("ééé", 3), "é…(message cut: 4 more bytes)");
    }
}

//! The envelope of one frame, taken apart without building a value tree:
//! its `type` values, the text of its `data` values, the `task_id` and
//! `task` members of a `data` object, and the first syntax problem.
//!
//! An iterative scanner (no recursion, one pass, no copy of the frame), so a
//! frame nested deeper than serde_json's recursion limit, or with a key given
//! twice, still yields the `task_id` it carries and can be answered. Pure;
//! the typed decoding of `data` is [`decode`](mod@super::decode)'s.

use std::borrow::Cow;

/// Deepest nesting accepted anywhere in a frame: serde_json's own limit
/// (it refuses the 128th nested container).
pub const MAX_DEPTH: usize = 127;

/// One frame's envelope.
#[derive(Debug, Default)]
pub struct Envelope<'a> {
    /// Every top-level `type`, decoded; `None` for one that is not a string.
    pub types: Vec<Option<String>>,
    /// Every top-level `data`, as its JSON text.
    pub datas: Vec<&'a str>,
    /// Deepest nesting seen (the envelope itself is 1).
    pub depth: usize,
    /// The first syntax error; scanning stopped there.
    pub syntax: Option<SyntaxError>,
}

/// The first syntax error in a frame: what the scanner found wrong, and the
/// byte where it stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyntaxError {
    /// What is wrong (`expected a value`, `bad escape`, …).
    pub what: &'static str,
    /// The byte offset in the frame.
    pub at: usize,
}

impl std::fmt::Display for SyntaxError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} at byte {}", self.what, self.at)
    }
}

impl std::error::Error for SyntaxError {}

/// What a `data` object says about its task.
#[derive(Debug, Default)]
pub struct DataMembers<'a> {
    /// Every `task_id`, decoded; `None` for one that is not a string.
    pub task_ids: Vec<Option<String>>,
    /// The first `task` member's JSON text.
    pub task: Option<&'a str>,
}

/// Splits `text`; `None` when it is not a JSON object at all.
pub fn split(text: &str) -> Option<Envelope<'_>> {
    let mut s = Scanner::new(text);
    s.ws();
    if s.peek() != Some(b'{') {
        return None;
    }
    let mut env = Envelope::default();
    let result = s.members(1, &mut |s, key, start| {
        match key.as_ref() {
            "type" => {
                if s.peek() == Some(b'"') {
                    let (a, b) = s.string()?;
                    env.types.push(Some(decode_string(&text[a..b])));
                } else {
                    s.value(1)?;
                    env.types.push(None);
                }
            }
            "data" => {
                s.value(1)?;
                env.datas.push(&text[start..s.pos]);
            }
            _ => s.value(1)?,
        }
        Ok(())
    });
    let result = result.and_then(|()| {
        s.ws();
        match s.peek() {
            None => Ok(()),
            Some(_) => Err(s.error("unexpected text after the object")),
        }
    });
    env.depth = s.max_depth;
    env.syntax = result.err();
    Some(env)
}

/// The `task_id` and `task` members of a `data` value (a complete JSON
/// value, as [`split`] found it); empty when it is not an object.
pub fn data_members(data: &str) -> DataMembers<'_> {
    let mut s = Scanner::new(data);
    let mut found = DataMembers::default();
    if s.peek() != Some(b'{') {
        return found;
    }
    let _ = s.members(1, &mut |s, key, start| {
        match key.as_ref() {
            "task_id" if s.peek() == Some(b'"') => {
                let (a, b) = s.string()?;
                found.task_ids.push(Some(decode_string(&data[a..b])));
            }
            "task_id" => {
                s.value(1)?;
                found.task_ids.push(None);
            }
            "task" => {
                s.value(1)?;
                found.task.get_or_insert(&data[start..s.pos]);
            }
            _ => s.value(1)?,
        }
        Ok(())
    });
    found
}

/// A string token (quotes included) as the string it spells.
fn decode_string(token: &str) -> String {
    if !token.contains('\\') {
        return token[1..token.len() - 1].to_owned();
    }
    // The scanner checked the escapes; serde_json spells them out (a lone
    // surrogate is the one thing it still refuses: shown replaced).
    serde_json::from_str(token).unwrap_or_else(|_| "\u{fffd}".to_owned())
}

type Step<'x> = dyn FnMut(&mut Scanner<'_>, Cow<'_, str>, usize) -> Result<(), SyntaxError> + 'x;

struct Scanner<'a> {
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
    max_depth: usize,
}

impl<'a> Scanner<'a> {
    fn new(text: &'a str) -> Self {
        Self {
            text,
            bytes: text.as_bytes(),
            pos: 0,
            max_depth: 0,
        }
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    fn error(&self, what: &'static str) -> SyntaxError {
        SyntaxError { what, at: self.pos }
    }

    fn expect(&mut self, byte: u8) -> Result<(), SyntaxError> {
        self.ws();
        if self.peek() == Some(byte) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.error(match byte {
                b'{' => "expected `{`",
                b':' => "expected `:`",
                _ => "expected another byte",
            }))
        }
    }

    /// The members of the object at `pos` (at nesting `depth`): `step` gets
    /// each key with the scanner at its value and the value's start, and
    /// must consume the value.
    fn members(&mut self, depth: usize, step: &mut Step<'_>) -> Result<(), SyntaxError> {
        self.max_depth = self.max_depth.max(depth);
        self.expect(b'{')?;
        self.ws();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(());
        }
        loop {
            let key = self.key()?;
            self.expect(b':')?;
            self.ws();
            let start = self.pos;
            step(self, key, start)?;
            self.ws();
            match self.peek() {
                Some(b',') => {
                    self.pos += 1;
                    self.ws();
                }
                Some(b'}') => {
                    self.pos += 1;
                    return Ok(());
                }
                _ => return Err(self.error("expected `,` or `}`")),
            }
        }
    }

    fn key(&mut self) -> Result<Cow<'a, str>, SyntaxError> {
        self.ws();
        if self.peek() != Some(b'"') {
            return Err(self.error("expected a string key"));
        }
        let (a, b) = self.string()?;
        let token = &self.text[a..b];
        Ok(if token.contains('\\') {
            Cow::Owned(decode_string(token))
        } else {
            Cow::Borrowed(&token[1..token.len() - 1])
        })
    }

    /// Skips one value nested inside `depth` containers, keeping its own
    /// containers on a stack rather than the call stack.
    fn value(&mut self, depth: usize) -> Result<(), SyntaxError> {
        let mut open: Vec<u8> = Vec::new();
        loop {
            self.ws();
            match self.peek() {
                Some(c @ (b'{' | b'[')) => {
                    self.pos += 1;
                    self.max_depth = self.max_depth.max(depth + open.len() + 1);
                    self.ws();
                    let close = if c == b'{' { b'}' } else { b']' };
                    if self.peek() == Some(close) {
                        self.pos += 1;
                    } else {
                        open.push(c);
                        if c == b'{' {
                            self.key()?;
                            self.expect(b':')?;
                        }
                        continue;
                    }
                }
                Some(b'"') => {
                    self.string()?;
                }
                Some(b't') => self.literal("true")?,
                Some(b'f') => self.literal("false")?,
                Some(b'n') => self.literal("null")?,
                Some(b'-' | b'0'..=b'9') => self.number()?,
                _ => return Err(self.error("expected a value")),
            }
            // One value ended: close what ends here, or move to the next item.
            loop {
                let Some(&kind) = open.last() else {
                    return Ok(());
                };
                self.ws();
                match (kind, self.peek()) {
                    (_, Some(b',')) => {
                        self.pos += 1;
                        if kind == b'{' {
                            self.key()?;
                            self.expect(b':')?;
                        }
                        break;
                    }
                    (b'{', Some(b'}')) | (b'[', Some(b']')) => {
                        self.pos += 1;
                        open.pop();
                    }
                    _ => return Err(self.error("expected `,` or the end of a container")),
                }
            }
        }
    }

    /// A string token at `pos`; returns its byte range, quotes included.
    fn string(&mut self) -> Result<(usize, usize), SyntaxError> {
        let start = self.pos;
        self.pos += 1;
        loop {
            match self.peek() {
                None => return Err(self.error("unterminated string")),
                Some(b'"') => {
                    self.pos += 1;
                    return Ok((start, self.pos));
                }
                Some(b'\\') => {
                    self.pos += 1;
                    match self.peek() {
                        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => {
                            self.pos += 1
                        }
                        Some(b'u') => {
                            let hex = self.bytes.get(self.pos + 1..self.pos + 5);
                            if !hex.is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) {
                                return Err(self.error("bad \\u escape"));
                            }
                            self.pos += 5;
                        }
                        _ => return Err(self.error("bad escape")),
                    }
                }
                Some(0..=0x1f) => return Err(self.error("control character in a string")),
                Some(_) => self.pos += 1,
            }
        }
    }

    fn literal(&mut self, word: &str) -> Result<(), SyntaxError> {
        if self.bytes[self.pos..].starts_with(word.as_bytes()) {
            self.pos += word.len();
            Ok(())
        } else {
            Err(self.error("expected a value"))
        }
    }

    fn number(&mut self) -> Result<(), SyntaxError> {
        let digits = |s: &mut Self| {
            let from = s.pos;
            while matches!(s.peek(), Some(b'0'..=b'9')) {
                s.pos += 1;
            }
            s.pos > from
        };
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        match self.peek() {
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => {
                digits(self);
            }
            _ => return Err(self.error("bad number")),
        }
        if self.peek() == Some(b'.') {
            self.pos += 1;
            if !digits(self) {
                return Err(self.error("bad number"));
            }
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.pos += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.pos += 1;
            }
            if !digits(self) {
                return Err(self.error("bad number"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_a_plain_envelope() {
        let env =
            split(r#" {"type":"task_assignment","x":[1,{"a":null}],"data":{"task_id":"T"}} "#)
                .unwrap();
        assert_eq!(env.types, vec![Some("task_assignment".to_owned())]);
        assert_eq!(env.datas, vec![r#"{"task_id":"T"}"#]);
        assert_eq!(env.depth, 3);
        assert_eq!(env.syntax, None);
        let m = data_members(env.datas[0]);
        assert_eq!(m.task_ids, vec![Some("T".to_owned())]);
        assert_eq!(m.task, None);
    }

    #[test]
    fn keeps_every_duplicate_and_escaped_keys() {
        let env =
            split(r#"{"type":"a","t\u0079pe":5,"data":{"task_id":"T\n1","task":null},"data":[]}"#)
                .unwrap();
        assert_eq!(env.types, vec![Some("a".to_owned()), None]);
        assert_eq!(env.datas.len(), 2);
        let m = data_members(env.datas[0]);
        assert_eq!(m.task_ids, vec![Some("T\n1".to_owned())]);
        assert_eq!(m.task, Some("null"));
        assert!(data_members(env.datas[1]).task_ids.is_empty());
    }

    #[test]
    fn deep_nesting_is_measured_not_recursed() {
        let deep = format!(
            r#"{{"type":"task_assignment","data":{{"task_id":"T","task":{}1{}}}}}"#,
            "[".repeat(100_000),
            "]".repeat(100_000)
        );
        let env = split(&deep).unwrap();
        assert_eq!(env.syntax, None);
        assert_eq!(env.depth, 100_002);
        assert_eq!(
            data_members(env.datas[0]).task_ids,
            vec![Some("T".to_owned())]
        );
    }

    #[test]
    fn syntax_errors_stop_the_scan_where_they_are() {
        assert!(split("[1]").is_none());
        assert!(split("  ").is_none());
        let env = split(r#"{"data":{"task_id":"T"},"type":tru}"#).unwrap();
        assert_eq!(
            env.syntax.map(|e| e.to_string()).as_deref(),
            Some("expected a value at byte 31")
        );
        assert_eq!(env.datas, vec![r#"{"task_id":"T"}"#]);
        for bad in [
            r#"{"a":01}"#,
            r#"{"a":1.}"#,
            r#"{"a":"\x"}"#,
            "{\"a\":\"\u{1}\"}",
            r#"{"a":[1,]}"#,
            r#"{"a":1} x"#,
            r#"{"a" 1}"#,
            r#"{"a":"\u12"}"#,
            r#"{"a":{"b":1]}"#,
        ] {
            assert!(split(bad).unwrap().syntax.is_some(), "{bad}");
        }
        for good in [
            r#"{"a":-0.5e+10}"#,
            r#"{"a":[[],{},""]}"#,
            r#"{"a":"\u00e9\"\\"}"#,
        ] {
            assert_eq!(split(good).unwrap().syntax, None, "{good}");
        }
    }
}

//! The agent command line (`shared/spec/TASK.md` §5): the arguments after
//! `/agent/entrypoint.sh`, including every `agent_config_snapshot` rule.
//!
//! Pure, like its parent [`crate::container_spec`]; it must not read the
//! environment, the config file or anything but its two inputs.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use serde::{Serialize, Serializer};

use super::SpecInputs;
use crate::wire::{AgentConfig, RawJson, TaskAssignment};

pub(super) fn snapshot(assignment: &TaskAssignment) -> Option<&AgentConfig> {
    assignment.task.agent_config_snapshot.as_ref()
}

fn non_blank(s: Option<&str>) -> Option<&str> {
    s.map(str::trim).filter(|s| !s.is_empty())
}

/// One agent argument: text, or the `--mcp` value, whose JSON is only
/// written out where the create body is (so a large `mcp_servers` is never
/// held twice).
#[derive(Clone)]
pub enum Arg<'a> {
    /// The argument as it is.
    Text(Cow<'a, str>),
    /// `mcp_servers` as the Go worker writes it (see [`mcp_json`]).
    Mcp(&'a BTreeMap<String, RawJson>),
}

// Arguments compare by the text they stand for.
impl PartialEq for Arg<'_> {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Text(a), Self::Text(b)) => a == b,
            _ => self.to_string() == other.to_string(),
        }
    }
}

impl Eq for Arg<'_> {}

impl<'a> From<&'a str> for Arg<'a> {
    fn from(s: &'a str) -> Self {
        Self::Text(Cow::Borrowed(s))
    }
}

impl From<String> for Arg<'_> {
    fn from(s: String) -> Self {
        Self::Text(Cow::Owned(s))
    }
}

impl fmt::Display for Arg<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Text(t) => f.write_str(t),
            Self::Mcp(servers) => write_mcp(servers, f),
        }
    }
}

// The MCP configuration may hold credentials and be large: name it only.
impl fmt::Debug for Arg<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Text(t) => fmt::Debug::fmt(t, f),
            Self::Mcp(servers) => write!(f, "<mcp json of {} server(s)>", servers.len()),
        }
    }
}

impl Serialize for Arg<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Text(t) => s.serialize_str(t),
            // serde_json escapes the text as `Display` writes it.
            Self::Mcp(_) => s.collect_str(self),
        }
    }
}

/// The agent's arguments after `/agent/entrypoint.sh` (TASK.md §5) as text.
pub fn agent_args<'a>(assignment: &'a TaskAssignment, cfg: &'a SpecInputs) -> Vec<Cow<'a, str>> {
    agent_arguments(assignment, cfg)
        .into_iter()
        .map(|a| match a {
            Arg::Text(t) => t,
            mcp @ Arg::Mcp(_) => Cow::Owned(mcp.to_string()),
        })
        .collect()
}

/// The agent's arguments, borrowing from the assignment and the
/// configuration where they can (an orchestrator's large
/// `additional_oz_args` and `mcp_servers` are never copied).
pub(super) fn agent_arguments<'a>(
    assignment: &'a TaskAssignment,
    cfg: &'a SpecInputs,
) -> Vec<Arg<'a>> {
    let task = &assignment.task;
    let mut args: Vec<Arg<'a>> = vec!["agent".into(), "run".into()];
    if task.owner.as_ref().is_some_and(|o| o.is_team()) {
        flag(&mut args, "--share", "team:edit");
    }
    args.extend([
        "--task-id".into(),
        task.id.as_str().into(),
        "--sandboxed".into(),
        "--server-root-url".into(),
        cfg.server_root_url.as_str().into(),
    ]);
    if let Some(snap) = snapshot(assignment) {
        snapshot_args(snap, &mut args);
    }
    args.extend(
        assignment
            .additional_oz_args
            .iter()
            .map(|a| a.as_str().into()),
    );
    args.push("--idle-on-complete".into());
    let task_idle = snapshot(assignment)
        .and_then(|s| s.idle_timeout_minutes)
        .filter(|m| *m > 0);
    if let Some(minutes) = task_idle {
        args.push(format!("{minutes}m").into());
    } else if let Some(worker_idle) = cfg.idle_on_complete.as_deref().filter(|v| !v.is_empty()) {
        args.push(worker_idle.into());
    }
    if let Some(url) = cfg
        .session_sharing_server_url
        .as_deref()
        .filter(|u| !u.is_empty())
    {
        flag(&mut args, "--session-sharing-server-url", url);
    }
    args
}

fn flag<'a>(args: &mut Vec<Arg<'a>>, name: &'static str, value: impl Into<Arg<'a>>) {
    args.push(name.into());
    args.push(value.into());
}

fn snapshot_args<'a>(snap: &'a AgentConfig, args: &mut Vec<Arg<'a>>) {
    let harness_type = snap.harness.as_ref().and_then(|h| h.kind.as_deref());
    let is_oz = matches!(harness_type, None | Some("") | Some("oz"));
    if is_oz && let Some(model) = non_blank(snap.model_id.as_deref()) {
        flag(args, "--model", model);
    }
    if let Some(profile) = non_blank(snap.profile_id.as_deref()) {
        flag(args, "--profile", profile);
    }
    if let Some(skill) = non_blank(snap.skill_spec.as_deref()) {
        flag(args, "--skill", skill);
    }
    if let Some(servers) = snap.mcp_servers.as_ref().filter(|m| !m.is_empty()) {
        flag(args, "--mcp", Arg::Mcp(servers));
    }
    if snap.computer_use_enabled.unwrap_or(is_oz) {
        args.push("--computer-use".into());
    } else {
        args.push("--no-computer-use".into());
    }
    let aws = snap
        .inference_providers
        .as_ref()
        .and_then(|p| p.aws.as_ref());
    if let Some(aws) = aws.filter(|a| !a.disabled)
        && let Some(role) = non_blank(Some(&aws.role_arn))
    {
        flag(args, "--bedrock-inference-role", role);
        if let Some(region) = non_blank(Some(&aws.region)) {
            flag(args, "--bedrock-role-region", region);
        }
    }
    if let Some(harness) = non_blank(harness_type) {
        flag(args, "--harness", harness);
    }
    let public = snap
        .session_sharing
        .as_ref()
        .and_then(|s| s.public_access.as_deref());
    match public {
        Some("VIEWER") => flag(args, "--share", "public:view"),
        Some("EDITOR") => flag(args, "--share", "public:edit"),
        _ => {}
    }
    if snap.snapshot_disabled == Some(true) {
        args.push("--no-snapshot".into());
    }
    if let Some(secs) = snap.snapshot_upload_timeout_secs.filter(|s| *s > 0) {
        flag(args, "--snapshot-upload-timeout", format!("{secs}s"));
    }
    if let Some(secs) = snap.snapshot_script_timeout_secs.filter(|s| *s > 0) {
        flag(args, "--snapshot-script-timeout", format!("{secs}s"));
    }
    if let Some(env) = non_blank(snap.environment_id.as_deref()) {
        flag(args, "--environment", env);
    }
}

/// `mcp_servers` byte for byte as the Go worker writes it, which is
/// `json.Marshal` of a `map[string]json.RawMessage`: keys sorted (bytewise)
/// and encoded as Go encodes strings; each value as Oz sent it, only
/// compacted (whitespace outside strings dropped) and HTML-escaped (`<`, `>`,
/// `&`, U+2028, U+2029 as `\uXXXX`). Numbers, nested key order and the
/// escapes inside strings are never re-spelled.
pub fn mcp_json(servers: &BTreeMap<String, RawJson>) -> String {
    Arg::Mcp(servers).to_string()
}

/// [`mcp_json`] written into `out` as it is made.
fn write_mcp(servers: &BTreeMap<String, RawJson>, out: &mut impl fmt::Write) -> fmt::Result {
    out.write_char('{')?;
    for (i, (name, value)) in servers.iter().enumerate() {
        if i > 0 {
            out.write_char(',')?;
        }
        go_string(name, out)?;
        out.write_char(':')?;
        go_compact(value.get(), out)?;
    }
    out.write_char('}')
}

/// A string as Go's encoder writes it with HTML escaping on: short escapes
/// for `"` `\` `\b` `\f` `\n` `\r` `\t`, `\u00xx` for the other control
/// characters and for `<` `>` `&`, and `\u2028` / `\u2029`.
fn go_string(s: &str, out: &mut impl fmt::Write) -> fmt::Result {
    out.write_char('"')?;
    for c in s.chars() {
        match c {
            '"' => out.write_str("\\\"")?,
            '\\' => out.write_str("\\\\")?,
            '\u{8}' => out.write_str("\\b")?,
            '\u{c}' => out.write_str("\\f")?,
            '\n' => out.write_str("\\n")?,
            '\r' => out.write_str("\\r")?,
            '\t' => out.write_str("\\t")?,
            c if c < ' ' || matches!(c, '<' | '>' | '&' | '\u{2028}' | '\u{2029}') => {
                push_u_escape(c, out)?
            }
            c => out.write_char(c)?,
        }
    }
    out.write_char('"')
}

fn push_u_escape(c: char, out: &mut impl fmt::Write) -> fmt::Result {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let n = c as u32;
    out.write_str("\\u")?;
    for shift in [12, 8, 4, 0] {
        out.write_char(HEX[((n >> shift) & 0xf) as usize] as char)?;
    }
    Ok(())
}

/// Go's `appendCompact` with escaping on, for text already known to be one
/// valid JSON value: whitespace between tokens dropped, string contents kept
/// as written except the HTML-sensitive characters.
fn go_compact(json: &str, out: &mut impl fmt::Write) -> fmt::Result {
    let mut in_string = false;
    let mut escaped = false;
    for c in json.chars() {
        if in_string {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if matches!(c, ' ' | '\t' | '\n' | '\r') {
            continue;
        } else if c == '"' {
            in_string = true;
        }
        match c {
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => push_u_escape(c, out)?,
            c => out.write_char(c)?,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `mcp_servers` decoded from `text` as the wire decoder does, then written.
    fn mcp(text: &str) -> String {
        mcp_json(&serde_json::from_str(text).unwrap())
    }

    #[test]
    fn numbers_keep_their_spelling() {
        assert_eq!(
            mcp(r#"{"s":{"big":123456789012345678901234567890,"neg":-98765432109876543210987}}"#),
            r#"{"s":{"big":123456789012345678901234567890,"neg":-98765432109876543210987}}"#
        );
        assert_eq!(
            mcp(r#"{"s":{"e":1E3,"f":1.50,"g":-0.0,"h":2e-7,"i":1e+400}}"#),
            r#"{"s":{"e":1E3,"f":1.50,"g":-0.0,"h":2e-7,"i":1e+400}}"#
        );
        assert_eq!(
            mcp(r#"{"n":18446744073709551616}"#),
            r#"{"n":18446744073709551616}"#
        );
    }

    #[test]
    fn top_level_keys_sorted_nested_order_kept() {
        assert_eq!(
            mcp(r#"{"zeta":{"z":1,"a":{"y":2,"b":3}},"Alpha":[3,1,2],"alpha":null,"é":true}"#),
            r#"{"Alpha":[3,1,2],"alpha":null,"zeta":{"z":1,"a":{"y":2,"b":3}},"é":true}"#
        );
        // The last of a repeated top-level key wins, as with a Go map.
        assert_eq!(mcp(r#"{"a":1,"a":2}"#), r#"{"a":2}"#);
    }

    #[test]
    fn whitespace_goes_between_tokens_but_stays_in_strings() {
        assert_eq!(
            mcp("{ \"s\" :\t{ \"args\" : [ \"a b\" ,\n\"  \\t \" ] ,\r\n \"k\" : { } } }"),
            r#"{"s":{"args":["a b","  \t "],"k":{}}}"#
        );
    }

    #[test]
    fn string_escapes_kept_and_html_characters_escaped() {
        assert_eq!(
            mcp(r#"{"s":{"url":"http://h/?a=1&b=<2>","esc":"\u0041\/\"\\\n","lit":"é€😀"}}"#),
            r#"{"s":{"url":"http://h/?a=1\u0026b=\u003c2\u003e","esc":"\u0041\/\"\\\n","lit":"é€😀"}}"#
        );
        assert_eq!(
            mcp("{\"s\":\"line\u{2028}para\u{2029}end\"}"),
            r#"{"s":"line\u2028para\u2029end"}"#
        );
        // Already-escaped forms are left as they were sent.
        assert_eq!(
            mcp(r#"{"s":"\u003c\u2028\u00e9"}"#),
            r#"{"s":"\u003c\u2028\u00e9"}"#
        );
    }

    #[test]
    fn keys_are_encoded_as_go_encodes_strings() {
        assert_eq!(
            mcp(
                r#"{"a<b>&c":1,"q\"b\\":2,"\u0001\b\f\n\r\t\u001f\u007f":3,"\u2028":4,"\u0041é":5}"#
            ),
            "{\"\\u0001\\b\\f\\n\\r\\t\\u001f\u{7f}\":3,\"Aé\":5,\"a\\u003cb\\u003e\\u0026c\":1,\"q\\\"b\\\\\":2,\"\\u2028\":4}"
        );
    }
}

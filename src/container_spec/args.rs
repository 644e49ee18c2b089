//! The agent command line (`shared/spec/TASK.md` §5): the arguments after
//! `/agent/entrypoint.sh`, including every `agent_config_snapshot` rule.
//!
//! Pure, like its parent [`crate::container_spec`]; it must not read the
//! environment, the config file or anything but its two inputs.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::SpecInputs;
use crate::wire::{AgentConfig, TaskAssignment};

pub(super) fn snapshot(assignment: &TaskAssignment) -> Option<&AgentConfig> {
    assignment.task.agent_config_snapshot.as_ref()
}

fn non_blank(s: Option<&str>) -> Option<&str> {
    s.map(str::trim).filter(|s| !s.is_empty())
}

/// The agent's arguments after `/agent/entrypoint.sh` (TASK.md §5).
pub fn agent_args(assignment: &TaskAssignment, cfg: &SpecInputs) -> Vec<String> {
    let task = &assignment.task;
    let mut args: Vec<String> = vec!["agent".into(), "run".into()];
    if task.owner.as_ref().is_some_and(|o| o.is_team()) {
        flag(&mut args, "--share", "team:edit");
    }
    args.extend([
        "--task-id".into(),
        task.id.clone(),
        "--sandboxed".into(),
        "--server-root-url".into(),
        cfg.server_root_url.clone(),
    ]);
    if let Some(snap) = snapshot(assignment) {
        snapshot_args(snap, &mut args);
    }
    args.extend(assignment.additional_oz_args.iter().cloned());
    args.push("--idle-on-complete".into());
    let task_idle = snapshot(assignment)
        .and_then(|s| s.idle_timeout_minutes)
        .filter(|m| *m > 0);
    if let Some(minutes) = task_idle {
        args.push(format!("{minutes}m"));
    } else if let Some(worker_idle) = cfg.idle_on_complete.as_deref().filter(|v| !v.is_empty()) {
        args.push(worker_idle.to_owned());
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

fn flag(args: &mut Vec<String>, name: &str, value: &str) {
    args.push(name.to_owned());
    args.push(value.to_owned());
}

fn snapshot_args(snap: &AgentConfig, args: &mut Vec<String>) {
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
        flag(args, "--mcp", &mcp_json(servers));
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
        flag(args, "--snapshot-upload-timeout", &format!("{secs}s"));
    }
    if let Some(secs) = snap.snapshot_script_timeout_secs.filter(|s| *s > 0) {
        flag(args, "--snapshot-script-timeout", &format!("{secs}s"));
    }
    if let Some(env) = non_blank(snap.environment_id.as_deref()) {
        flag(args, "--environment", env);
    }
}

/// `mcp_servers` as the Go worker's `json.Marshal` writes it: compact, keys
/// sorted, and `<`, `>`, `&`, U+2028, U+2029 escaped as `\uXXXX`.
///
/// Go keeps nested values as the orchestrator sent them; ours arrive as parsed
/// JSON, so nested keys come out sorted too (same meaning, maybe other order).
pub fn mcp_json(servers: &BTreeMap<String, Value>) -> String {
    let sorted: Map<String, Value> = servers
        .iter()
        .map(|(k, v)| (k.clone(), sorted_value(v)))
        .collect();
    let compact = Value::Object(sorted).to_string();
    // Outside strings, compact JSON holds none of these characters, so a
    // plain replacement only touches string contents.
    let mut out = String::with_capacity(compact.len());
    for c in compact.chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out
}

// Sorted explicitly so the output does not depend on serde_json's
// `preserve_order` feature being off.
fn sorted_value(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            Value::Object(
                keys.into_iter()
                    .map(|k| (k.clone(), sorted_value(&m[k])))
                    .collect(),
            )
        }
        Value::Array(a) => Value::Array(a.iter().map(sorted_value).collect()),
        other => other.clone(),
    }
}

//! `wire::decode` on arbitrary text: never panics (deep nesting included:
//! the envelope scanner does not recurse); a decoded assignment or
//! cancellation re-serialised into an envelope decodes to the same value;
//! every value serde quotes in a problem text is scrubbed (secrets), numbers
//! and booleans in backticks too; an answer always names a non-empty task;
//! every id, image reference and mount path that comes out of an
//! assignment or a cancellation passed the door (at most 256 / 1024 bytes,
//! no control character).
#![no_main]

use libfuzzer_sys::fuzz_target;
use oz_agent_worker::wire::{Inbound, check_id, check_reference, decode};
use serde_json::json;

/// Every double-quoted span must be the scrubbed `"…"`: serde quotes the
/// values it rejects, and those can be `env_vars` secrets. A backticked
/// span may name a field, never hold a number or a boolean.
fn assert_scrubbed(text: &str) {
    for (i, span) in text.split('"').enumerate() {
        if i % 2 == 1 {
            assert_eq!(span, "…", "unscrubbed quoted value in {text:?}");
        }
    }
    for (i, span) in text.split('`').enumerate() {
        if i % 2 == 1 {
            let value = span.parse::<f64>().is_ok() || span == "true" || span == "false";
            assert!(!value, "unscrubbed value `{span}` in {text:?}");
        }
    }
}

/// Whether `v` holds a non-integer number: serde_json (without its
/// `float_roundtrip` feature) may parse its own output of one a bit
/// differently, so such raw values do not round-trip exactly.
fn has_float(v: &serde_json::Value) -> bool {
    match v {
        serde_json::Value::Number(n) => n.is_f64(),
        serde_json::Value::Array(a) => a.iter().any(has_float),
        serde_json::Value::Object(m) => m.values().any(has_float),
        _ => false,
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match decode(text) {
        Ok(Inbound::Assignment(a)) => {
            assert!(!a.task_id.is_empty());
            assert!(!a.task.id.is_empty());
            for (field, id) in [
                ("task_id", &a.task_id),
                ("execution_id", &a.execution_id),
                ("task.id", &a.task.id),
            ] {
                assert_eq!(check_id(field, id), Ok(()), "{field} passed unchecked");
            }
            let sidecars = a.additional_sidecars.iter();
            for r in [&a.docker_image, &a.sidecar_image]
                .into_iter()
                .chain(sidecars.flat_map(|s| [&s.image, &s.mount_path]))
            {
                assert_eq!(check_reference("reference", r), Ok(()), "{r:?} unchecked");
            }
            assert_eq!(a.frame_bytes, text.len());
            // Written straight to text: through a `Value`, raw values
            // would lose their own spacing.
            let data = serde_json::to_string(&*a).unwrap();
            let frame = format!(r#"{{"type":"task_assignment","data":{data}}}"#);
            let mut expected = a.clone();
            expected.frame_bytes = frame.len();
            let snapshot = a.task.agent_config_snapshot.as_ref();
            // (`mcp_servers` values are kept as raw bytes: they round-trip as they are.)
            let raw_floats =
                snapshot.is_some_and(|s| s.harness_auth_secrets.as_ref().is_some_and(has_float));
            // serde_json reads an object whose *first* key is its private
            // raw-value token as a raw value: re-encoding sorts that key first
            // (found by fuzzing). Decoding such a frame once is still
            // graceful (an invalid assignment, answered); only the round trip
            // cannot hold.
            let reserved = frame.contains("$serde_json::private::");
            if raw_floats || reserved {
                return;
            }
            assert_eq!(
                decode(&frame),
                Ok(Inbound::Assignment(expected)),
                "round trip through {frame}"
            );
        }
        Ok(Inbound::Cancellation { task_id }) => {
            assert_eq!(check_id("task_id", &task_id), Ok(()));
            let frame = json!({"type": "task_cancellation", "data": {"task_id": &task_id}});
            assert_eq!(
                decode(&frame.to_string()),
                Ok(Inbound::Cancellation { task_id })
            );
        }
        Ok(Inbound::InvalidAssignment { task_id, problem }) => {
            assert!(!task_id.is_empty());
            assert_scrubbed(&problem);
        }
        Ok(Inbound::Unknown { kind }) => {
            assert!(kind != "task_assignment" && kind != "task_cancellation");
        }
        Err(e) => assert_scrubbed(&e.to_string()),
    }
});

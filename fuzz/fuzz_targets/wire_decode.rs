//! `wire::decode` on arbitrary text: never panics; a decoded assignment or
//! cancellation re-serialised into an envelope decodes to the same value;
//! every value serde quotes in a problem text is scrubbed (secrets).
#![no_main]

use libfuzzer_sys::fuzz_target;
use oz_agent_worker::wire::{Inbound, decode};
use serde_json::json;

/// Every double-quoted span must be the scrubbed `"…"`: serde quotes the
/// values it rejects, and those can be `env_vars` secrets.
fn assert_scrubbed(text: &str) {
    for (i, span) in text.split('"').enumerate() {
        if i % 2 == 1 {
            assert_eq!(span, "…", "unscrubbed quoted value in {text:?}");
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match decode(text) {
        Ok(Inbound::Assignment(a)) => {
            assert!(!a.task_id.is_empty());
            let frame = json!({"type": "task_assignment", "data": &*a}).to_string();
            let again = decode(&frame);
            assert_eq!(
                again,
                Ok(Inbound::Assignment(a.clone())),
                "round trip through {frame}"
            );
        }
        Ok(Inbound::Cancellation { task_id }) => {
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

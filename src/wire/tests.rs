//! Unit tests of the wire codec: exact frames out, every decoding path in,
//! the door's checks, and that no refused value is ever echoed.

use std::collections::BTreeMap;

use super::decode::scrub_values;
use super::*;
use serde_json::{Value, json};

fn parsed(m: &Outbound) -> Value {
    serde_json::from_str(&m.encode()).unwrap()
}

#[test]
fn claimed_is_exact() {
    let m = Outbound::TaskClaimed {
        task_id: "T".into(),
        worker_id: "W".into(),
    };
    assert_eq!(
        parsed(&m),
        json!({"type":"task_claimed","data":{"task_id":"T","worker_id":"W"}})
    );
}

#[test]
fn failed_omits_empty_fields() {
    let m = Outbound::TaskFailed {
        task_id: "T".into(),
        message: "m".into(),
        failure_reason: None,
        exit_code: 0,
    };
    assert_eq!(
        parsed(&m),
        json!({"type":"task_failed","data":{"task_id":"T","message":"m"}})
    );
    let m = Outbound::TaskFailed {
        task_id: "T".into(),
        message: "m".into(),
        failure_reason: Some(FailureReason::ContainerExit),
        exit_code: 2,
    };
    assert_eq!(
        parsed(&m),
        json!({"type":"task_failed","data":{"task_id":"T","message":"m","failure_reason":"container_exit","exit_code":2}})
    );
}

#[test]
fn completed_and_cancelled_are_exact() {
    let m = Outbound::TaskCompleted {
        task_id: "T".into(),
        message: COMPLETED_MESSAGE.into(),
        task_state: None,
    };
    assert_eq!(
        parsed(&m),
        json!({"type":"task_completed","data":{"task_id":"T","message":"Task completed successfully"}})
    );
    let m = Outbound::TaskCompleted {
        task_id: "T".into(),
        message: CANCELLED_MESSAGE.into(),
        task_state: Some(CANCELLED_STATE.into()),
    };
    assert_eq!(
        parsed(&m),
        json!({"type":"task_completed","data":{"task_id":"T","message":"Task cancelled by user request.","task_state":"CANCELLED"}})
    );
}

#[test]
fn rejected_is_exact() {
    let m = Outbound::TaskRejected {
        task_id: "T".into(),
        reason: crate::events::RejectReason::AtCapacity.wire_text().into(),
    };
    assert_eq!(
        parsed(&m),
        json!({"type":"task_rejected","data":{"task_id":"T","reason":"worker at maximum concurrency"}})
    );
}

#[test]
fn assignment_decodes_with_unknown_fields() {
    let text = json!({"type":"task_assignment","extra":1,"data":{
        "task_id":"T","execution_id":"E","new_field":{"x":1},
        "task":{"id":"T","title":"t","owner":{"Type":"TEAM","Id":42},
                "agent_config_snapshot":{"model_id":"m1","idle_timeout_minutes":12,"future":true}},
        "docker_image":"ubuntu:22.04","env_vars":{"K":"v"},
        "additional_sidecars":[{"image":"i","mount_path":"/m","read_write":true}],
        "instance_shape":{"vcpus":4,"memory_gb":16}}})
    .to_string();
    let Inbound::Assignment(a) = decode(&text).unwrap() else {
        panic!("not an assignment")
    };
    assert_eq!(a.task_id, "T");
    assert_eq!(a.execution_id, "E");
    assert!(a.task.owner.as_ref().unwrap().is_team());
    let snap = a.task.agent_config_snapshot.as_ref().unwrap();
    assert_eq!(snap.model_id.as_deref(), Some("m1"));
    assert_eq!(snap.idle_timeout_minutes, Some(12));
    assert_eq!(a.env_vars["K"], "v");
    assert!(a.additional_sidecars[0].read_write);
    assert_eq!(
        a.instance_shape,
        Some(InstanceShape {
            vcpus: 4,
            memory_gb: 16
        })
    );
}

fn mcp_of(text: &str) -> BTreeMap<String, String> {
    let Inbound::Assignment(a) = decode(text).unwrap() else {
        panic!("not an assignment: {text}")
    };
    let snap = a.task.agent_config_snapshot.unwrap();
    snap.mcp_servers
        .unwrap()
        .into_iter()
        .map(|(k, v)| (k, v.get().to_owned()))
        .collect()
}

#[test]
fn mcp_server_values_keep_the_bytes_oz_sent() {
    let text = r#"{"type":"task_assignment","data":{"task_id":"T","task":{"id":"T",
        "agent_config_snapshot":{"mcp_servers":{"b": { "z" : 1.50, "a":1E3 } ,"a":[ 123456789012345678901234567890 ],"c":"\u00e9<"}}}}}"#;
    assert_eq!(
        mcp_of(text),
        BTreeMap::from([
            (
                "a".to_owned(),
                "[ 123456789012345678901234567890 ]".to_owned()
            ),
            ("b".to_owned(), r#"{ "z" : 1.50, "a":1E3 }"#.to_owned()),
            ("c".to_owned(), r#""\u00e9<""#.to_owned()),
        ])
    );
}

#[test]
fn a_repeated_field_is_refused_and_answered() {
    let text = r#"{"type":"task_assignment","data":{"task_id":"old","task_id":"T",
        "task":{"id":"T"}}}"#;
    assert_eq!(
        decode(text).unwrap(),
        Inbound::InvalidAssignment {
            task_id: "T".into(),
            problem: "duplicate field `task_id`".into()
        }
    );
    // In a map the last one wins, as in a Go map.
    let text = r#"{"type":"task_assignment","data":{"task_id":"T",
        "task":{"id":"T","agent_config_snapshot":{"mcp_servers":{"s":{"x":1},"s":{"x":2}}}}}}"#;
    assert_eq!(mcp_of(text)["s"], r#"{"x":2}"#);
    // An empty task id is as unreadable as a missing one.
    assert!(decode(r#"{"type":"task_assignment","data":{"task_id":"","task":{}}}"#).is_err());
}

#[test]
fn assignment_with_null_task_is_invalid_not_dropped() {
    let text = r#"{"type":"task_assignment","data":{"task_id":"T","task":null}}"#;
    assert_eq!(
        decode(text).unwrap(),
        Inbound::InvalidAssignment {
            task_id: "T".into(),
            problem: "task is missing".into()
        }
    );
    let text = r#"{"type":"task_assignment","data":{"task_id":"T","task":{"id":5}}}"#;
    assert!(matches!(
        decode(text).unwrap(),
        Inbound::InvalidAssignment { task_id, .. } if task_id == "T"
    ));
}

#[test]
fn serde_jsons_private_raw_value_key_is_answered_not_a_crash() {
    // Found by fuzzing: serde_json reads an object whose first key is its
    // private raw-value token as a raw value. First: an invalid assignment,
    // answered; elsewhere in the object: an ordinary key.
    let frame = |secrets: &str| {
        format!(
            r#"{{"type":"task_assignment","data":{{"task_id":"T","execution_id":"E","task":{{"id":"T","agent_config_snapshot":{{"harness_auth_secrets":{secrets}}}}}}}}}"#
        )
    };
    let first = frame(r#"{"$serde_json::private::RawValue":30}"#);
    assert!(matches!(
        decode(&first).unwrap(),
        Inbound::InvalidAssignment { task_id, .. } if task_id == "T"
    ));
    let later = frame(r#"{"a":1,"$serde_json::private::RawValue":30}"#);
    assert!(matches!(decode(&later).unwrap(), Inbound::Assignment(_)));
}

#[test]
fn rejected_values_never_reach_the_problem_text() {
    let text =
        r#"{"type":"task_assignment","data":{"task_id":"T","task":{},"env_vars":"sekrit-value"}}"#;
    let Inbound::InvalidAssignment { problem, .. } = decode(text).unwrap() else {
        panic!("not invalid")
    };
    assert!(!problem.contains("sekrit"), "{problem}");
    assert_eq!(problem, "invalid type: string \"…\", expected a map");
    let err = decode(r#"{"type":"task_cancellation","data":{"task_id":{"x":"sekrit-value"}}}"#)
        .unwrap_err();
    assert!(!err.to_string().contains("sekrit"), "{err}");
}

#[test]
fn escaped_quotes_stay_inside_the_scrubbed_value() {
    let text =
        r#"{"type":"task_assignment","data":{"task_id":"T","task":{},"env_vars":"a\"sekrit\\"}}"#;
    let Inbound::InvalidAssignment { problem, .. } = decode(text).unwrap() else {
        panic!("not invalid")
    };
    assert_eq!(problem, "invalid type: string \"…\", expected a map");
    assert_eq!(
        decode(r#""\"sekrit""#).unwrap_err().to_string(),
        "malformed message from the orchestrator: not a JSON object"
    );
    assert_eq!(scrub_values(r#"x "a\"b" y "c" z"#), "x \"…\" y \"…\" z");
}

#[test]
fn numbers_and_other_values_are_never_echoed() {
    for (env, expected) in [
        (
            r#"{"K":12345678}"#,
            "invalid type: integer `…`, expected a string",
        ),
        (
            r#"{"K":1.25e3}"#,
            "invalid type: floating point `…`, expected a string",
        ),
        (
            r#"{"K":true}"#,
            "invalid type: boolean `…`, expected a string",
        ),
        (
            r#"{"K":[9876]}"#,
            "invalid type: sequence, expected a string",
        ),
    ] {
        let text = format!(
            r#"{{"type":"task_assignment","data":{{"task_id":"T","task":{{"id":"T"}},"env_vars":{env}}}}}"#
        );
        assert_eq!(
            decode(&text).unwrap(),
            Inbound::InvalidAssignment {
                task_id: "T".into(),
                problem: expected.into()
            }
        );
    }
    assert_eq!(
        scrub_values("missing field `task_id`; duplicate field `type`; unknown variant `sekrit`"),
        "missing field `task_id`; duplicate field `type`; unknown variant `…`"
    );
}

fn invalid(problem: &str) -> Inbound {
    Inbound::InvalidAssignment {
        task_id: "T".into(),
        problem: problem.into(),
    }
}

#[test]
fn every_frame_with_a_readable_task_id_is_answered() {
    let deep = format!(
        r#"{{"type":"task_assignment","data":{{"task_id":"T","task":{{"id":"T","x":{}{}}}}}}}"#,
        "[".repeat(200),
        "]".repeat(200)
    );
    assert_eq!(
        decode(&deep).unwrap(),
        invalid("nested deeper than 127 levels")
    );
    let deep_outside = format!(
        r#"{{"type":"task_assignment","junk":{}1{},"data":{{"task_id":"T","task":{{"id":"T"}}}}}}"#,
        "{\"a\":".repeat(300),
        "}".repeat(300)
    );
    assert_eq!(
        decode(&deep_outside).unwrap(),
        invalid("nested deeper than 127 levels")
    );
    let cases = [
        (
            r#"{"type":"task_assignment","type":"task_assignment","data":{"task_id":"T","task":{"id":"T"}}}"#,
            "the envelope has more than one `type`",
        ),
        (
            r#"{"type":"task_assignment","data":{"task_id":"T","task":{"id":"T"}},"data":{"task_id":"T"}}"#,
            "the envelope has more than one `data`",
        ),
        (
            r#"{"type":"task_assignment","data":{"task_id":"T","task_id":"T","task":{"id":"T"}}}"#,
            "duplicate field `task_id`",
        ),
        (
            r#"{"data":{"task_id":"T","task":{"id":"T"}}}"#,
            "the envelope has no `type`",
        ),
        (
            r#"{"type":7,"data":{"task_id":"T","task":{"id":"T"}}}"#,
            "the envelope's `type` is not a string",
        ),
        (
            r#"{"type":"task_assignment","data":{"task_id":"T","task":{"id":"T"}}} trailing"#,
            "not valid JSON: unexpected text after the object at byte 68",
        ),
        (
            r#"{"type":"task_assignment","data":{"task_id":"T","task":[]}}"#,
            "invalid type: sequence, expected an object",
        ),
        (
            r#"{"type":"task_assignment","data":{"task_id":"T","task":{"id":"T"},"instance_shape":[]}}"#,
            "invalid type: sequence, expected an object",
        ),
        (
            r#"{"type":"task_assignment","data":{"task_id":"T","task":{"id":"T","owner":[]}}}"#,
            "invalid type: sequence, expected an object",
        ),
        (
            r#"{"type":"task_assignment","data":{"task_id":"T","task":{"id":"T"},"additional_sidecars":[["i","/m"]]}}"#,
            "invalid type: sequence, expected an object",
        ),
        (
            r#"{"type":"task_assignment","data":{"task_id":"T","task":{"id":"T","title":5}}}"#,
            "invalid type: integer `…`, expected a string",
        ),
        (
            r#"{"type":"task_assignment","data":{"task_id":"T","task":{"id":""}}}"#,
            "task.id is empty",
        ),
        (
            r#"{"type":"task_assignment","data":{"task_id":"T","task":{}}}"#,
            "task.id is empty",
        ),
    ];
    for (text, problem) in cases {
        assert_eq!(decode(text).unwrap(), invalid(problem), "{text}");
    }
}

fn assignment_with(task_id: &str, execution_id: &str, inner_id: &str) -> String {
    json!({"type": "task_assignment", "data": {
        "task_id": task_id, "execution_id": execution_id,
        "task": {"id": inner_id}}})
    .to_string()
}

#[test]
fn ids_are_checked_at_the_door_and_the_field_is_named() {
    let nul = "T\0x";
    assert_eq!(
        decode(&assignment_with(nul, "E", "T")).unwrap(),
        Inbound::InvalidAssignment {
            task_id: nul.into(),
            problem: "task_id holds a control character (U+0000), which is not accepted".into()
        }
    );
    let big = "e".repeat(1 << 20);
    assert_eq!(
        decode(&assignment_with("T", &big, "T")).unwrap(),
        invalid("execution_id is 1048576 bytes long; at most 256 are accepted")
    );
    assert_eq!(
        decode(&assignment_with("T", "E", "T\u{1b}[31m")).unwrap(),
        invalid("task.id holds a control character (U+001B), which is not accepted")
    );
    let long_task = "t".repeat(MAX_ID_BYTES + 1);
    assert_eq!(
        decode(&assignment_with(&long_task, &big, "T")).unwrap(),
        Inbound::InvalidAssignment {
            task_id: long_task.clone(),
            problem: "task_id is 257 bytes long; at most 256 are accepted".into()
        }
    );
    // Even with an envelope problem the answer goes to the id as sent.
    let text =
        format!(r#"{{"type":"task_assignment","data":{{"task_id":"{long_task}","task":[]}}}}"#);
    assert!(matches!(
        decode(&text).unwrap(),
        Inbound::InvalidAssignment { .. }
    ));
    // At the cap, an id is fine.
    let at_cap = "t".repeat(MAX_ID_BYTES);
    assert!(matches!(
        decode(&assignment_with(&at_cap, &at_cap, &at_cap)).unwrap(),
        Inbound::Assignment(_)
    ));
}

#[test]
fn images_and_mount_paths_are_checked_at_the_door_too() {
    let text = json!({"type": "task_assignment", "data": {"task_id": "T", "task": {"id": "T"},
        "additional_sidecars": [{"image": "i", "mount_path": "/mnt/a\nb"}]}})
    .to_string();
    assert_eq!(
        decode(&text).unwrap(),
        invalid(
            "additional_sidecars.mount_path holds a control character (U+000A), which is not accepted"
        )
    );
    let text = json!({"type": "task_assignment", "data": {"task_id": "T", "task": {"id": "T"},
        "sidecar_image": "s".repeat(MAX_REFERENCE_BYTES + 1)}})
    .to_string();
    assert_eq!(
        decode(&text).unwrap(),
        invalid("sidecar_image is 1025 bytes long; at most 1024 are accepted")
    );
    let text = json!({"type": "task_assignment", "data": {"task_id": "T", "task": {"id": "T"},
        "docker_image": "registry.example:5000/team/image:1.2@sha256:0123",
        "additional_sidecars": [{"image": "i", "mount_path": "/mnt/x"}]}})
    .to_string();
    assert!(matches!(decode(&text).unwrap(), Inbound::Assignment(_)));
}

#[test]
fn a_cancellation_with_a_bad_id_is_dropped() {
    for text in [
        r#"{"type":"task_cancellation","data":{"task_id":"a\u0000b"}}"#.to_owned(),
        format!(
            r#"{{"type":"task_cancellation","data":{{"task_id":"{}"}}}}"#,
            "x".repeat(MAX_ID_BYTES + 1)
        ),
        // Repeated key: the scanner's id, same rule.
        r#"{"type":"task_cancellation","data":{"task_id":"a\nb","task_id":"a\nb"}}"#.to_owned(),
    ] {
        let err = decode(&text).unwrap_err().to_string();
        assert!(err.contains("task_id "), "{err}");
    }
    assert_eq!(
        decode(r#"{"type":"task_cancellation","data":{"task_id":"a\u0000b"}}"#)
            .unwrap_err()
            .to_string(),
        "malformed message from the orchestrator: task_cancellation: task_id holds a control character (U+0000), which is not accepted"
    );
}

#[test]
fn empty_ids_and_non_assignments_are_not_answered_and_the_last_id_counts() {
    for text in [
        r#"{"type":"task_assignment","data":{"task_id":"","task":{"id":"T"}}}"#,
        r#"{"type":"task_assignment","data":{"task_id":"T","task_id":5,"task":{}}}"#,
        r#"{"type":"task_assignment","data":{"task_id":5,"task":{}}}"#,
        r#"{"type":"heartbeat","type":"x","data":{"task_id":"T"}}"#,
        r#"{"type":"task_cancellation","data":{"task_id":""}}"#,
    ] {
        assert!(decode(text).is_err(), "{text}");
    }
    assert_eq!(
        decode(
            r#"{"type":"task_assignment","data":{"task_id":"T","task":{}},"data":{"task_id":"U"}}"#
        )
        .unwrap(),
        Inbound::InvalidAssignment {
            task_id: "U".into(),
            problem: "the envelope has more than one `data`".into()
        }
    );
    assert_eq!(
        decode(r#"{"type":"task_cancellation","data":{"task_id":"T","task_id":"T"}}"#).unwrap(),
        Inbound::Cancellation {
            task_id: "T".into()
        }
    );
}

#[test]
fn an_assignment_knows_its_frame_size() {
    let text = r#"{"type":"task_assignment","data":{"task_id":"T","task":{"id":"T"}}}"#;
    let Inbound::Assignment(a) = decode(text).unwrap() else {
        panic!("not an assignment")
    };
    assert_eq!(a.frame_bytes, text.len());
}

#[test]
fn malformed_frames_are_errors() {
    assert!(decode("not json").is_err());
    assert!(decode(r#"{"data":{}}"#).is_err());
    assert!(decode(r#"{"type":"task_assignment","data":{"task":{}}}"#).is_err());
    assert!(decode(r#"{"type":"task_cancellation","data":{"id":"x"}}"#).is_err());
}

#[test]
fn unknown_type_is_reported() {
    assert_eq!(
        decode(r#"{"type":"heartbeat","data":{}}"#).unwrap(),
        Inbound::Unknown {
            kind: "heartbeat".into()
        }
    );
}

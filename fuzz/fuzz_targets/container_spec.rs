//! From a frame to the container-create body: `wire::decode`, then
//! `container_spec::build` and `create_body` with a fixed operator
//! configuration, on arbitrary text. Never panics; for every assignment
//! that builds, the body serialised (streamed `Env`/`Cmd`) is valid JSON
//! equal to its `to_value()`; the ids in its labels passed the door (at most
//! 256 bytes, no control character); `Env` has one entry per name, no name
//! with `=` or NUL, no value with NUL, and the operator's values win over
//! the task's; `Cmd` starts with the entrypoint; the operator's
//! network and binds are the ones in `HostConfig`. A refusal never quotes an
//! operator value.
#![no_main]

use std::collections::{BTreeMap, BTreeSet};

use libfuzzer_sys::fuzz_target;
use oz_agent_worker::config::{Hardening, parse_volume};
use oz_agent_worker::container_spec::{
    LABEL_EXECUTION_ID, LABEL_TASK_ID, SpecInputs, build, create_body,
};
use oz_agent_worker::wire::{Inbound, check_id, decode};

const OPERATOR_SECRET: &str = "operator-secret-value-41";

fn inputs() -> SpecInputs {
    SpecInputs {
        worker_id: "fuzz-worker".into(),
        server_root_url: "https://app.example.test".into(),
        idle_on_complete: Some("10m".into()),
        session_sharing_server_url: None,
        operator_env: BTreeMap::from([
            ("OPERATOR_TOKEN".to_owned(), OPERATOR_SECRET.to_owned()),
            (
                "HTTPS_PROXY".to_owned(),
                "http://proxy.internal:3128".to_owned(),
            ),
        ]),
        volumes: vec![parse_volume("/srv/cache:/cache:ro").unwrap()],
        default_image: String::new(),
        sidecar_image: None,
        hardening: Hardening {
            network: Some("oz-agent-worker-tasks".into()),
            ..Hardening::default()
        },
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(Inbound::Assignment(a)) = decode(text) else {
        return;
    };
    let cfg = inputs();
    let spec = match build(&a, &cfg) {
        Ok(spec) => spec,
        Err(e) => {
            // An error may quote what the orchestrator sent (an image
            // reference, a mount path); it never adds the operator's values.
            // (Found by fuzzing: an input carrying the secret's text itself.)
            if !text.contains(OPERATOR_SECRET) {
                assert!(!e.to_string().contains(OPERATOR_SECRET), "{e}");
            }
            return;
        }
    };
    let volumes: Vec<String> = (0..spec.sidecars.len())
        .map(|i| format!("vol-{i}"))
        .collect();
    let body = create_body(&spec, "registry.example/image:1", &volumes);
    let streamed = serde_json::to_string(&body).expect("the body serialises");
    let parsed: serde_json::Value = serde_json::from_str(&streamed).expect("valid JSON");
    assert_eq!(parsed, body.to_value(), "streamed and whole bodies differ");

    for (label, id) in [
        (LABEL_TASK_ID, &a.task_id),
        (LABEL_EXECUTION_ID, &a.execution_id),
    ] {
        assert_eq!(parsed["Labels"][label].as_str(), Some(id.as_str()));
        assert!(
            check_id(label, id).is_ok(),
            "{label} passed the door unchecked"
        );
    }

    let env: Vec<&str> = parsed["Env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let mut names = BTreeSet::new();
    for entry in &env {
        let (name, value) = entry.split_once('=').expect("KEY=VALUE");
        assert!(!name.is_empty() && !name.contains('\0'), "{entry:?}");
        assert!(!value.contains('\0'), "NUL in the value of {name:?}");
        assert!(names.insert(name), "{name:?} twice");
    }
    for (name, value) in &cfg.operator_env {
        let entry = format!("{name}={value}");
        assert!(env.contains(&entry.as_str()), "the operator's {name} lost");
    }

    assert_eq!(parsed["Cmd"][0], "/agent/entrypoint.sh");
    let host = &parsed["HostConfig"];
    assert_eq!(host["NetworkMode"], "oz-agent-worker-tasks");
    let binds = host["Binds"].as_array().unwrap();
    assert_eq!(binds.last().unwrap(), "/srv/cache:/cache:ro");
    assert_eq!(binds.len(), volumes.len() + 1);
});

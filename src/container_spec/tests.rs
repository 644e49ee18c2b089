//! Exact-value tests of the assignment → container translation.

use serde_json::{Value, json};

use super::*;
use crate::wire::{
    AgentConfig, AwsInferenceProvider, Harness, InferenceProviders, RawJson, SessionSharing,
    SidecarMount, Task, TaskOwner,
};

fn inputs() -> SpecInputs {
    SpecInputs {
        worker_id: "W".into(),
        server_root_url: "https://app.warp.dev".into(),
        default_image: DEFAULT_IMAGE.into(),
        ..SpecInputs::default()
    }
}

fn assignment(snapshot: Option<AgentConfig>) -> TaskAssignment {
    TaskAssignment {
        task_id: "T".into(),
        execution_id: "E".into(),
        task: Task {
            id: "T".into(),
            agent_config_snapshot: snapshot,
            ..Task::default()
        },
        ..TaskAssignment::default()
    }
}

fn with_snapshot(snap: AgentConfig) -> TaskAssignment {
    assignment(Some(snap))
}

fn s(v: &str) -> Option<String> {
    Some(v.to_owned())
}

/// The agent args between `--server-root-url URL` and `--idle-on-complete`.
fn middle(a: &TaskAssignment) -> Vec<String> {
    let cfg = inputs();
    let args = agent_args(a, &cfg);
    let start = args
        .iter()
        .position(|x| x == "https://app.warp.dev")
        .unwrap()
        + 1;
    let end = args
        .iter()
        .rposition(|x| x == "--idle-on-complete")
        .unwrap();
    args[start..end].iter().map(|s| s.to_string()).collect()
}

fn strs(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[test]
fn task_md_example_is_exact() {
    let mut a = with_snapshot(AgentConfig {
        model_id: s("m1"),
        idle_timeout_minutes: Some(12),
        ..AgentConfig::default()
    });
    a.task.owner = Some(TaskOwner {
        kind: "TEAM".into(),
        id: 1,
    });
    let cfg = inputs();
    let spec = build(&a, &cfg).unwrap();
    assert_eq!(
        spec.cmd
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(" "),
        "/agent/entrypoint.sh agent run --share team:edit --task-id T --sandboxed --server-root-url https://app.warp.dev --model m1 --computer-use --idle-on-complete 12m"
    );
}

#[test]
fn user_owned_and_no_snapshot_give_minimal_command() {
    let mut a = assignment(None);
    a.task.owner = Some(TaskOwner {
        kind: "USER".into(),
        id: 1,
    });
    assert_eq!(
        agent_args(&a, &inputs()),
        strs(&[
            "agent",
            "run",
            "--task-id",
            "T",
            "--sandboxed",
            "--server-root-url",
            "https://app.warp.dev",
            "--idle-on-complete"
        ])
    );
}

#[test]
fn model_only_for_oz_harness_and_not_blank() {
    for kind in [None, s(""), s("oz")] {
        let a = with_snapshot(AgentConfig {
            model_id: s(" m1 "),
            harness: Some(Harness { kind }),
            ..AgentConfig::default()
        });
        assert_eq!(middle(&a)[..2], strs(&["--model", "m1"]));
    }
    let a = with_snapshot(AgentConfig {
        model_id: s("m1"),
        harness: Some(Harness { kind: s("claude") }),
        ..AgentConfig::default()
    });
    assert_eq!(
        middle(&a),
        strs(&["--no-computer-use", "--harness", "claude"])
    );
    let a = with_snapshot(AgentConfig {
        model_id: s("  "),
        ..AgentConfig::default()
    });
    assert_eq!(middle(&a), strs(&["--computer-use"]));
}

#[test]
fn profile_skill_environment_trimmed_and_skipped_when_blank() {
    let a = with_snapshot(AgentConfig {
        profile_id: s(" p "),
        skill_spec: s("sk"),
        environment_id: s(" env1 "),
        ..AgentConfig::default()
    });
    assert_eq!(
        middle(&a),
        strs(&[
            "--profile",
            "p",
            "--skill",
            "sk",
            "--computer-use",
            "--environment",
            "env1"
        ])
    );
    let a = with_snapshot(AgentConfig {
        profile_id: s(""),
        skill_spec: s(" "),
        environment_id: s(" "),
        ..AgentConfig::default()
    });
    assert_eq!(middle(&a), strs(&["--computer-use"]));
}

#[test]
fn mcp_is_compact_sorted_and_go_escaped() {
    let servers: BTreeMap<String, RawJson> = serde_json::from_str(
        r#"{"zeta":{"url":"http://a?x=1&y=<2>","b":[{"d":1,"c":2.50}]},"alpha":{"command":"npx"}}"#,
    )
    .unwrap();
    assert_eq!(
        mcp_json(&servers),
        r#"{"alpha":{"command":"npx"},"zeta":{"url":"http://a?x=1\u0026y=\u003c2\u003e","b":[{"d":1,"c":2.50}]}}"#
    );
    let a = with_snapshot(AgentConfig {
        mcp_servers: Some(servers),
        ..AgentConfig::default()
    });
    assert_eq!(middle(&a)[0], "--mcp");
    // In the create body the value is written as it is serialised (never
    // held as a string of its own), byte for byte the same.
    let cfg = inputs();
    let spec = build(&a, &cfg).unwrap();
    let at = spec
        .cmd
        .iter()
        .position(|c| c.to_string() == "--mcp")
        .unwrap();
    assert!(matches!(spec.cmd[at + 1], Arg::Mcp(_)));
    assert_eq!(
        format!("{:?}", spec.cmd[at + 1]),
        "<mcp json of 2 server(s)>"
    );
    let body = serde_json::to_string(&create_body(&spec, "img", &[])).unwrap();
    let want = serde_json::to_string(&mcp_json(
        &serde_json::from_str(
            r#"{"zeta":{"url":"http://a?x=1&y=<2>","b":[{"d":1,"c":2.50}]},"alpha":{"command":"npx"}}"#,
        )
        .unwrap(),
    ))
    .unwrap();
    assert!(body.contains(&format!(r#""--mcp",{want}"#)), "{body}");
    let empty = with_snapshot(AgentConfig {
        mcp_servers: Some(BTreeMap::new()),
        ..AgentConfig::default()
    });
    assert_eq!(middle(&empty), strs(&["--computer-use"]));
}

#[test]
fn computer_use_explicit_wins_else_harness_default() {
    let cases = [
        (None, None, "--computer-use"),
        (None, s("claude"), "--no-computer-use"),
        (Some(false), None, "--no-computer-use"),
        (Some(true), s("claude"), "--computer-use"),
    ];
    for (explicit, kind, want) in cases {
        let a = with_snapshot(AgentConfig {
            computer_use_enabled: explicit,
            harness: Some(Harness { kind: kind.clone() }),
            ..AgentConfig::default()
        });
        assert_eq!(middle(&a)[0], want, "{explicit:?} {kind:?}");
    }
}

fn bedrock(disabled: bool, role: &str, region: &str) -> Vec<String> {
    middle(&with_snapshot(AgentConfig {
        inference_providers: Some(InferenceProviders {
            aws: Some(AwsInferenceProvider {
                disabled,
                role_arn: role.into(),
                region: region.into(),
            }),
        }),
        ..AgentConfig::default()
    }))
}

#[test]
fn bedrock_role_and_region() {
    assert_eq!(
        bedrock(false, " arn:r ", " us-east-1 "),
        strs(&[
            "--computer-use",
            "--bedrock-inference-role",
            "arn:r",
            "--bedrock-role-region",
            "us-east-1"
        ])
    );
    assert_eq!(
        bedrock(false, "arn:r", " "),
        strs(&["--computer-use", "--bedrock-inference-role", "arn:r"])
    );
    assert_eq!(bedrock(true, "arn:r", "eu"), strs(&["--computer-use"]));
    assert_eq!(bedrock(false, " ", "eu"), strs(&["--computer-use"]));
}

#[test]
fn harness_flag_when_not_blank() {
    let a = with_snapshot(AgentConfig {
        harness: Some(Harness { kind: s(" oz ") }),
        ..AgentConfig::default()
    });
    // " oz " is not exactly "oz": a third-party harness as far as defaults go.
    assert_eq!(middle(&a), strs(&["--no-computer-use", "--harness", "oz"]));
}

#[test]
fn public_share_levels() {
    for (level, want) in [
        ("VIEWER", vec!["--computer-use", "--share", "public:view"]),
        ("EDITOR", vec!["--computer-use", "--share", "public:edit"]),
        ("FULL", vec!["--computer-use"]),
    ] {
        let a = with_snapshot(AgentConfig {
            session_sharing: Some(SessionSharing {
                public_access: s(level),
            }),
            ..AgentConfig::default()
        });
        assert_eq!(middle(&a), strs(&want), "{level}");
    }
}

#[test]
fn snapshot_flags() {
    let a = with_snapshot(AgentConfig {
        snapshot_disabled: Some(true),
        snapshot_upload_timeout_secs: Some(30),
        snapshot_script_timeout_secs: Some(5),
        ..AgentConfig::default()
    });
    assert_eq!(
        middle(&a),
        strs(&[
            "--computer-use",
            "--no-snapshot",
            "--snapshot-upload-timeout",
            "30s",
            "--snapshot-script-timeout",
            "5s"
        ])
    );
    let a = with_snapshot(AgentConfig {
        snapshot_disabled: Some(false),
        snapshot_upload_timeout_secs: Some(0),
        snapshot_script_timeout_secs: Some(-1),
        ..AgentConfig::default()
    });
    assert_eq!(middle(&a), strs(&["--computer-use"]));
}

#[test]
fn full_order_with_extra_args_idle_and_session_sharing() {
    let mut a = with_snapshot(AgentConfig {
        model_id: s("m"),
        profile_id: s("p"),
        skill_spec: s("k"),
        mcp_servers: Some(BTreeMap::from([(
            "x".to_owned(),
            RawJson::from_text(r#"{"a": 1}"#).unwrap(),
        )])),
        computer_use_enabled: Some(false),
        inference_providers: Some(InferenceProviders {
            aws: Some(AwsInferenceProvider {
                disabled: false,
                role_arn: "r".into(),
                region: "g".into(),
            }),
        }),
        harness: Some(Harness { kind: s("oz") }),
        session_sharing: Some(SessionSharing {
            public_access: s("VIEWER"),
        }),
        snapshot_disabled: Some(true),
        snapshot_upload_timeout_secs: Some(1),
        snapshot_script_timeout_secs: Some(2),
        environment_id: s("e"),
        ..AgentConfig::default()
    });
    a.additional_oz_args = strs(&["--debug", "x y"]);
    let mut cfg = inputs();
    cfg.idle_on_complete = s("10m");
    cfg.session_sharing_server_url = s("https://share");
    let want = strs(&[
        "agent",
        "run",
        "--task-id",
        "T",
        "--sandboxed",
        "--server-root-url",
        "https://app.warp.dev",
        "--model",
        "m",
        "--profile",
        "p",
        "--skill",
        "k",
        "--mcp",
        r#"{"x":{"a":1}}"#,
        "--no-computer-use",
        "--bedrock-inference-role",
        "r",
        "--bedrock-role-region",
        "g",
        "--harness",
        "oz",
        "--share",
        "public:view",
        "--no-snapshot",
        "--snapshot-upload-timeout",
        "1s",
        "--snapshot-script-timeout",
        "2s",
        "--environment",
        "e",
        "--debug",
        "x y",
        "--idle-on-complete",
        "10m",
        "--session-sharing-server-url",
        "https://share",
    ]);
    assert_eq!(agent_args(&a, &cfg), want);
}

#[test]
fn idle_on_complete_three_cases() {
    let tail = |task_minutes: Option<i64>, worker: Option<&str>| {
        let a = with_snapshot(AgentConfig {
            idle_timeout_minutes: task_minutes,
            ..AgentConfig::default()
        });
        let mut cfg = inputs();
        cfg.idle_on_complete = worker.map(str::to_owned);
        let args = agent_args(&a, &cfg);
        let at = args.iter().position(|x| x == "--idle-on-complete").unwrap();
        args[at..]
            .iter()
            .map(|s| s.to_string())
            .collect::<Vec<String>>()
    };
    assert_eq!(
        tail(Some(15), Some("30m")),
        strs(&["--idle-on-complete", "15m"])
    );
    assert_eq!(
        tail(None, Some("30m")),
        strs(&["--idle-on-complete", "30m"])
    );
    assert_eq!(
        tail(Some(0), Some("20m")),
        strs(&["--idle-on-complete", "20m"])
    );
    assert_eq!(tail(None, None), strs(&["--idle-on-complete"]));
    assert_eq!(tail(None, Some("")), strs(&["--idle-on-complete"]));
}

#[test]
fn environment_order_and_precedence() {
    let mut a = assignment(None);
    a.env_vars = BTreeMap::from([
        ("B".to_owned(), "from-task".to_owned()),
        ("A".to_owned(), "task-a".to_owned()),
        ("TASK_ID".to_owned(), "overridden".to_owned()),
    ]);
    let mut cfg = inputs();
    cfg.operator_env = BTreeMap::from([
        ("B".to_owned(), "operator".to_owned()),
        ("C".to_owned(), "op-c".to_owned()),
        ("WARP_SERVER_ROOT_URL".to_owned(), "https://mine".to_owned()),
    ]);
    assert_eq!(
        environment(&a, &cfg),
        strs(&[
            "TASK_ID=overridden",
            "GIT_TERMINAL_PROMPT=0",
            "GH_PROMPT_DISABLED=1",
            "WARP_SERVER_ROOT_URL=https://mine",
            "A=task-a",
            "B=operator",
            "C=op-c"
        ])
    );
    cfg.server_root_url.clear();
    cfg.operator_env.clear();
    a.env_vars.clear();
    assert_eq!(
        environment(&a, &cfg),
        strs(&["TASK_ID=T", "GIT_TERMINAL_PROMPT=0", "GH_PROMPT_DISABLED=1"])
    );
}

#[test]
fn image_choice_and_environment_warning() {
    let mut a = assignment(None);
    let mut cfg = inputs();
    cfg.default_image = "local/base:1".into();
    assert_eq!(image(&a, &cfg), "local/base:1");
    cfg.default_image.clear();
    assert_eq!(image(&a, &cfg), "ubuntu:22.04");
    a.docker_image = "me/app:2".into();
    assert_eq!(image(&a, &cfg), "me/app:2");

    let mut a = with_snapshot(AgentConfig {
        environment_id: s("env1"),
        ..AgentConfig::default()
    });
    assert_eq!(environment_without_image(&a), Some("env1"));
    a.docker_image = "x".into();
    assert_eq!(environment_without_image(&a), None);
    let a = with_snapshot(AgentConfig {
        environment_id: s(" "),
        ..AgentConfig::default()
    });
    assert_eq!(environment_without_image(&a), None);
    assert_eq!(environment_without_image(&assignment(None)), None);
}

#[test]
fn limits_from_shape() {
    const GIB: i64 = 1 << 30;
    let cases = [
        (None, None, None),
        (Some((0, 0)), None, None),
        (Some((-1, -2)), None, None),
        (Some((4, 16)), Some(4_000_000_000), Some(16 * GIB)),
        (Some((2, 0)), Some(2_000_000_000), None),
        (Some((0, 8)), None, Some(8 * GIB)),
    ];
    for (shape, nano, mem) in cases {
        let shape = shape.map(|(vcpus, memory_gb)| InstanceShape { vcpus, memory_gb });
        assert_eq!(
            limits(shape),
            Limits {
                nano_cpus: nano,
                memory_bytes: mem
            },
            "{shape:?}"
        );
    }
}

fn sidecar(image: &str, mount: &str, rw: bool) -> SidecarMount {
    SidecarMount {
        image: image.into(),
        mount_path: mount.into(),
        read_write: rw,
    }
}

#[test]
fn sidecar_list_with_override() {
    let mut a = assignment(None);
    let mut cfg = inputs();
    assert_eq!(sidecars(&a, &cfg).unwrap(), vec![]);
    a.sidecar_image = "warpdotdev/warp-agent:1".into();
    a.additional_sidecars = vec![sidecar("c:1", "/mnt/c", true)];
    let agent = |image: &str| Sidecar {
        image: image.into(),
        mount_path: "/agent".into(),
        read_only: true,
    };
    let extra = Sidecar {
        image: "c:1".into(),
        mount_path: "/mnt/c".into(),
        read_only: false,
    };
    assert_eq!(
        sidecars(&a, &cfg).unwrap(),
        vec![agent("warpdotdev/warp-agent:1"), extra.clone()]
    );
    cfg.sidecar_image = s("mirror/agent:2");
    assert_eq!(
        sidecars(&a, &cfg).unwrap(),
        vec![agent("mirror/agent:2"), extra.clone()]
    );
    // The override never invents an agent sidecar the orchestrator did not send.
    a.sidecar_image.clear();
    assert_eq!(sidecars(&a, &cfg).unwrap(), vec![extra]);
}

#[test]
fn sidecar_validation() {
    let check = |extra: Vec<SidecarMount>| {
        let mut a = assignment(None);
        a.sidecar_image = "agent:1".into();
        a.additional_sidecars = extra;
        let err = build(&a, &inputs()).unwrap_err();
        assert_eq!(err.failure_reason(), FailureReason::SidecarPrep);
        err.to_string()
    };
    assert_eq!(
        check(vec![sidecar("", "/m", false)]),
        "the sidecar for mount path \"/m\" has an empty image"
    );
    assert_eq!(
        check(vec![sidecar("c:1", "", false)]),
        "sidecar c:1 has an empty mount path"
    );
    assert_eq!(
        check(vec![sidecar("c:1", "/agent/", false)]),
        "duplicate mount path /agent/ for sidecar c:1"
    );
    assert_eq!(
        check(vec![
            sidecar("c:1", "/m", false),
            sidecar("d:1", "/m", false)
        ]),
        "duplicate mount path /m for sidecar d:1"
    );
    assert_eq!(
        check(vec![sidecar("c:1", "rel", false)]),
        "sidecar c:1 has mount path \"rel\", which must be absolute and contain no ':'"
    );
}

#[test]
fn create_body_full_example_is_exact() {
    let mut a = assignment(None);
    a.docker_image = "me/app:2".into();
    a.sidecar_image = "warpdotdev/warp-agent:1".into();
    a.additional_sidecars = vec![sidecar("c:1", "/mnt/c", true)];
    a.env_vars = BTreeMap::from([("K".to_owned(), "v".to_owned())]);
    a.instance_shape = Some(InstanceShape {
        vcpus: 2,
        memory_gb: 1,
    });
    let mut cfg = inputs();
    cfg.volumes = ["/h:/c:ro", "/x:/y"]
        .iter()
        .map(|v| crate::config::parse_volume(v).unwrap())
        .collect();
    cfg.hardening = Hardening {
        runtime: s("runsc"),
        network: s("none"),
        security_opt: strs(&["no-new-privileges"]),
        cap_drop: strs(&["ALL"]),
        pids_limit: Some(512),
        init: Some(true),
    };
    let spec = build(&a, &cfg).unwrap();
    assert_eq!(spec.image, "me/app:2");
    let body = create_body(
        &spec,
        "mirror:5000/me/app:2",
        &strs(&["warpdotdev-warp-agent-0123456789ab", "c-abcdefabcdef"]),
    );
    // What goes on the wire is the same object, Env written from the spec.
    let sent: Value = serde_json::from_slice(&serde_json::to_vec(&body).unwrap()).unwrap();
    assert_eq!(sent, body.to_value());
    assert_eq!(
        body.to_value().to_string(),
        json!({
            "Image": "mirror:5000/me/app:2",
            "Cmd": ["/agent/entrypoint.sh", "agent", "run", "--task-id", "T", "--sandboxed",
                    "--server-root-url", "https://app.warp.dev", "--idle-on-complete"],
            "Env": ["TASK_ID=T", "GIT_TERMINAL_PROMPT=0", "GH_PROMPT_DISABLED=1",
                    "WARP_SERVER_ROOT_URL=https://app.warp.dev", "K=v"],
            "WorkingDir": "/workspace",
            "Labels": {
                "dev.warp.oz-agent-worker.execution-id": "E",
                "dev.warp.oz-agent-worker.managed": "true",
                "dev.warp.oz-agent-worker.task-id": "T",
                "dev.warp.oz-agent-worker.worker-id": "W"
            },
            "HostConfig": {
                "Binds": ["warpdotdev-warp-agent-0123456789ab:/agent:ro",
                          "c-abcdefabcdef:/mnt/c:rw", "/h:/c:ro", "/x:/y"],
                "NanoCpus": 2_000_000_000i64,
                "Memory": 1073741824i64,
                "MemorySwap": 1073741824i64,
                "Runtime": "runsc",
                "NetworkMode": "none",
                "SecurityOpt": ["no-new-privileges"],
                "CapDrop": ["ALL"],
                "PidsLimit": 512,
                "Init": true
            }
        })
        .to_string()
    );
}

#[test]
fn create_body_omits_unset_host_config() {
    let (a, cfg) = (assignment(None), inputs());
    let spec = build(&a, &cfg).unwrap();
    let body = create_body(&spec, "ubuntu:22.04", &[]);
    assert_eq!(body["Image"], "ubuntu:22.04");
    assert_eq!(body["HostConfig"], json!({}));
}

#[test]
fn env_names_are_one_variable_each() {
    let refused = |name: &str, value: &str| {
        let mut a = assignment(None);
        a.env_vars = BTreeMap::from([(name.to_owned(), value.to_owned())]);
        let e = build(&a, &inputs()).unwrap_err();
        assert_eq!(e.failure_reason(), FailureReason::ContainerCreate);
        e.to_string()
    };
    assert_eq!(
        refused("OPERATOR_VAR=evil", "x"),
        "env_vars name \"OPERATOR_VAR=evil\" contains '=' (it would set another variable)"
    );
    assert_eq!(refused("", "x"), "env_vars name \"\" is empty");
    assert_eq!(
        refused("A\0B", "x"),
        "env_vars name \"A\\u{0}B\" contains a NUL byte"
    );
    assert_eq!(
        refused("TOKEN", "se\0cret"),
        "env_vars value of \"TOKEN\" contains a NUL byte"
    );
    assert_eq!(
        refused(&format!("{}=", "N".repeat(300)), "x"),
        format!(
            "env_vars name \"{}…(+101 bytes)\" contains '=' (it would set another variable)",
            "N".repeat(200)
        )
    );
    // Docker and POSIX take any other name; the operator's still wins.
    let mut a = assignment(None);
    a.env_vars = BTreeMap::from([
        ("lower.dotted-name".to_owned(), "1".to_owned()),
        ("TAB\tNAME".to_owned(), "2".to_owned()),
        ("OPERATOR_VAR".to_owned(), "task".to_owned()),
    ]);
    let mut cfg = inputs();
    cfg.operator_env = BTreeMap::from([("OPERATOR_VAR".to_owned(), "operator".to_owned())]);
    let spec = build(&a, &cfg).unwrap();
    let env: Vec<String> = spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    assert!(env.contains(&"OPERATOR_VAR=operator".to_owned()), "{env:?}");
    assert!(env.contains(&"TAB\tNAME=2".to_owned()));
    assert_eq!(
        env.iter().filter(|e| e.starts_with("OPERATOR_VAR")).count(),
        1
    );
}

#[test]
fn env_values_are_escaped_on_the_wire_and_never_copied_into_the_body_object() {
    let mut a = assignment(None);
    a.env_vars = BTreeMap::from([("Q".to_owned(), "a\"b\\c\n\u{1}é".to_owned())]);
    let cfg = inputs();
    let spec = build(&a, &cfg).unwrap();
    let body = create_body(&spec, "img", &[]);
    assert!(body.get("Env").is_none());
    let sent: Value = serde_json::from_slice(&serde_json::to_vec(&body).unwrap()).unwrap();
    assert_eq!(sent["Env"][4], "Q=a\"b\\c\n\u{1}é");
}

#[test]
fn debug_never_shows_env_values() {
    let mut a = assignment(None);
    a.env_vars = BTreeMap::from([("TOKEN".to_owned(), "s3cr3t".to_owned())]);
    let mut cfg = inputs();
    cfg.operator_env = BTreeMap::from([("NPM".to_owned(), "hunter2".to_owned())]);
    let spec = build(&a, &cfg).unwrap();
    let shown = format!("{spec:?} {cfg:?}");
    assert!(shown.contains("TOKEN") && shown.contains("NPM"));
    assert!(!shown.contains("s3cr3t") && !shown.contains("hunter2"));
}

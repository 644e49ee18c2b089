//! Whole-configuration tests: command lines and config files in, exact
//! `Config`s or exact messages out.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use super::*;

const SECRET: &str = "s3cret-value";

fn env(name: &str) -> Option<String> {
    match name {
        "WARP_API_KEY" => Some("env-key".into()),
        "FROM_HOST" => Some("host-value".into()),
        "GITHUB_TOKEN" => Some("gh-from-host".into()),
        "HOME" => Some("/home/op".into()),
        _ => None,
    }
}

fn no_env(_: &str) -> Option<String> {
    None
}

fn args(list: &[&str]) -> Vec<OsString> {
    list.iter().map(OsString::from).collect()
}

fn run(list: &[&str]) -> Config {
    match parse(args(list), &env) {
        Ok(Command::Run(c)) => c,
        other => panic!("expected Run for {list:?}, got {other:?}"),
    }
}

fn error(list: &[&str]) -> String {
    match parse(args(list), &env) {
        Err(e) => e.to_string(),
        Ok(other) => panic!("expected an error for {list:?}, got {other:?}"),
    }
}

/// A config file that removes itself when dropped.
struct TempFile(PathBuf);

impl TempFile {
    fn new(text: &str) -> Self {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("oz-config-test-{}-{n}.yaml", std::process::id()));
        std::fs::write(&path, text).unwrap();
        Self(path)
    }
    fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn defaults(worker_id: &str, api_key: &str) -> Config {
    Config {
        worker_id: worker_id.into(),
        api_key: ApiKey::new(api_key),
        websocket_url: DEFAULT_WEBSOCKET_URL.into(),
        server_root_url: DEFAULT_SERVER_ROOT_URL.into(),
        session_sharing_server_url: None,
        log_level: log::LevelFilter::Info,
        log_format: LogFormat::Text,
        cleanup: true,
        max_concurrent_tasks: 0,
        max_in_flight_bytes: 64 << 20,
        idle_on_complete: None,
        drain_timeout: Duration::ZERO,
        on_shutdown: ShutdownMode::Cancel,
        shutdown_timeout: Duration::from_secs(9),
        upkeep: Upkeep {
            lease_ttl: Duration::from_secs(30),
            reap_interval: Duration::from_secs(30),
        },
        docker: DockerConfig::default(),
    }
}

#[test]
fn shutdown_mode_budget_and_upkeep_from_flags_and_file() {
    let file = TempFile::new("on_shutdown: detach\nshutdown_timeout: 20s\n");
    let mut expected = defaults("w1", "env-key");
    expected.on_shutdown = ShutdownMode::Detach;
    expected.shutdown_timeout = Duration::from_secs(20);
    assert_eq!(
        run(&["--worker-id", "w1", "--config-file", file.path()]),
        expected
    );
    expected.on_shutdown = ShutdownMode::Drain;
    expected.shutdown_timeout = Duration::from_secs(5);
    expected.upkeep = Upkeep {
        lease_ttl: Duration::from_secs(3),
        reap_interval: Duration::from_millis(200),
    };
    assert_eq!(
        run(&[
            "--worker-id",
            "w1",
            "--config-file",
            file.path(),
            "--on-shutdown=drain",
            "--shutdown-timeout",
            "5s",
            "--lease-ttl",
            "3s",
            "--reap-interval=200ms",
        ]),
        expected
    );
    assert_eq!(
        error(&["--on-shutdown", "leave"]),
        "invalid --on-shutdown flag: `leave` is not one of cancel, drain, detach"
    );
    assert_eq!(
        error(&["--lease-ttl", "2s"]),
        "invalid --lease-ttl flag: 2s is too short: the least is 3s"
    );
    let bad = TempFile::new("on_shutdown: pause\n");
    assert_eq!(
        error(&["--config-file", bad.path()]).replace(bad.path(), "FILE"),
        "failed to parse config file FILE: on_shutdown: `pause` is not one of cancel, drain, detach at line 1 column 14"
    );
}

fn vol(host: &str, container: &str, ro: Option<bool>) -> VolumeMount {
    let mode = match ro {
        None => "",
        Some(true) => ":ro",
        Some(false) => ":rw",
    };
    parse_volume(&format!("{host}:{container}{mode}")).unwrap()
}

#[test]
fn minimal_command_line_gives_every_default() {
    assert_eq!(run(&["--worker-id", "w1"]), defaults("w1", "env-key"));
    assert_eq!(
        DockerConfig::default().task_timeout,
        Some(Duration::from_secs(8 * 3600))
    );
}

#[test]
fn every_flag_in_both_forms() {
    let spaced = run(&[
        "--worker-id",
        "w1",
        "--api-key",
        "flag-key",
        "--log-level",
        "debug",
        "--log-format",
        "json",
        "--no-cleanup",
        "--max-concurrent-tasks",
        "3",
        "--idle-on-complete",
        "10m",
        "--web-socket-url",
        "ws://127.0.0.1:9/ws",
        "--server-root-url",
        "http://srv",
        "--session-sharing-server-url",
        "ws://share",
        "--drain-timeout",
        "30s",
        "--task-timeout",
        "1h30m",
        "--default-image",
        "alpine:3",
        "--sidecar-image",
        "mirror/agent:1",
        "--image-pull-policy",
        "Never",
        "--stop-grace",
        "2s",
        "--backend",
        "docker",
    ]);
    let joined = run(&[
        "--worker-id=w1",
        "--api-key=flag-key",
        "--log-level=debug",
        "--log-format=json",
        "--no-cleanup",
        "--max-concurrent-tasks=3",
        "--idle-on-complete=10m",
        "--websocket-url=ws://127.0.0.1:9/ws",
        "--server-root-url=http://srv",
        "--session-sharing-server-url=ws://share",
        "--drain-timeout=30s",
        "--task-timeout=1h30m",
        "--default-image=alpine:3",
        "--sidecar-image=mirror/agent:1",
        "--image-pull-policy=Never",
        "--stop-grace=2s",
        "--backend=docker",
    ]);
    let mut expected = defaults("w1", "flag-key");
    expected.log_level = log::LevelFilter::Debug;
    expected.log_format = LogFormat::Json;
    expected.cleanup = false;
    expected.max_concurrent_tasks = 3;
    expected.idle_on_complete = Some("10m".into());
    expected.websocket_url = "ws://127.0.0.1:9/ws".into();
    expected.server_root_url = "http://srv".into();
    expected.session_sharing_server_url = Some("ws://share".into());
    expected.drain_timeout = Duration::from_secs(30);
    expected.docker.task_timeout = Some(Duration::from_secs(5400));
    expected.docker.default_image = "alpine:3".into();
    expected.docker.sidecar_image = Some("mirror/agent:1".into());
    expected.docker.image_pull_policy = PullPolicy::Never;
    expected.docker.stop_grace = Duration::from_secs(2);
    assert_eq!(spaced, expected);
    assert_eq!(joined, expected);
}

#[test]
fn repeatable_volume_and_env_flags() {
    let c = run(&[
        "--worker-id",
        "w",
        "-v",
        "/a:/a",
        "--volumes",
        "/b:/b:ro",
        "-v=/c:/c:rw",
        "-e",
        "A=1",
        "--env",
        "B=x=y",
        "-e",
        "FROM_HOST",
        "-e",
        "UNSET",
        "--env=A=2",
    ]);
    assert_eq!(
        c.docker.volumes,
        vec![
            vol("/a", "/a", None),
            vol("/b", "/b", Some(true)),
            vol("/c", "/c", Some(false))
        ]
    );
    let expected: BTreeMap<String, String> = [
        ("A", "2"),
        ("B", "x=y"),
        ("FROM_HOST", "host-value"),
        ("UNSET", ""),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    assert_eq!(c.docker.environment, expected);
}

#[test]
fn zero_task_timeout_means_none_and_switch_takes_true_false() {
    let c = run(&[
        "--worker-id",
        "w",
        "--task-timeout",
        "0s",
        "--no-cleanup=false",
    ]);
    assert_eq!(c.docker.task_timeout, None);
    assert!(c.cleanup);
}

#[test]
fn doctor_subcommand_takes_the_same_flags() {
    let expected = defaults("w", "k");
    assert_eq!(
        parse(
            args(&["doctor", "--worker-id", "w", "--api-key", "k"]),
            &env
        )
        .unwrap(),
        Command::Doctor(DoctorInput {
            config: expected,
            config_file: None,
            file_problem: None,
            worker_id_problem: None,
            api_key_problem: None,
            env: DoctorEnv::from_pairs([("HOME", "/home/op")]),
            format: DoctorFormat::Text,
        })
    );
}

#[test]
fn help_and_version_win_over_everything_after() {
    assert_eq!(
        parse(args(&["--help", "--bogus"]), &no_env).unwrap(),
        Command::Help(help())
    );
    assert_eq!(
        parse(args(&["-h"]), &no_env).unwrap(),
        Command::Help(help())
    );
    assert_eq!(
        parse(args(&["--version"]), &no_env).unwrap(),
        Command::Version(format!(
            "oz-agent-worker {}",
            crate::build_info::this().describe()
        ))
    );
}

#[test]
fn command_line_errors_have_exact_messages() {
    assert_eq!(
        error(&["--bogus"]),
        "unknown flag `--bogus` (see `oz-agent-worker --help`)"
    );
    assert_eq!(
        error(&["-x"]),
        "unknown flag `-x` (see `oz-agent-worker --help`)"
    );
    assert_eq!(error(&["--worker-id"]), "flag `--worker-id` needs a value");
    assert_eq!(
        error(&["--no-cleanup=yes"]),
        "flag `--no-cleanup` does not take a value"
    );
    assert_eq!(
        error(&["run"]),
        "unexpected argument `run` (the only subcommand is `doctor`; see `oz-agent-worker --help`)"
    );
    assert_eq!(
        error(&["doctor", "doctor"]),
        "unexpected argument `doctor` (the only subcommand is `doctor`; see `oz-agent-worker --help`)"
    );
    assert_eq!(
        error(&["--backend", "kubernetes"]),
        "unsupported backend `kubernetes`: this build runs the Docker backend only (supported: docker)"
    );
    assert_eq!(
        error(&["--log-level", "trace"]),
        "invalid --log-level flag: `trace` is not one of debug, info, warn, error"
    );
    assert_eq!(
        error(&["--log-format", "xml"]),
        "invalid --log-format flag: `xml` is not one of text, json"
    );
    assert_eq!(
        error(&["--image-pull-policy", "sometimes"]),
        "invalid --image-pull-policy flag: `sometimes` is not one of Always, IfNotPresent, Never"
    );
    assert_eq!(
        error(&["--max-concurrent-tasks", "-1"]),
        "invalid --max-concurrent-tasks flag: `-1` is not a whole number of tasks (0 or more; 0 = unlimited)"
    );
    assert_eq!(
        error(&["--max-concurrent-tasks", "x"]),
        "invalid --max-concurrent-tasks flag: `x` is not a whole number of tasks (0 or more; 0 = unlimited)"
    );
    assert_eq!(
        error(&["--idle-on-complete", "10min"]),
        r#"invalid --idle-on-complete flag: time: unknown unit "min" in duration "10min""#
    );
    assert_eq!(
        error(&["--task-timeout", "5"]),
        r#"invalid --task-timeout flag: time: missing unit in duration "5" (did you mean "5s" or "5m"? units are ns, us, ms, s, m, h)"#
    );
    assert_eq!(
        error(&["--drain-timeout", "-5s"]),
        r#"invalid --drain-timeout flag: negative duration "-5s" is not allowed here"#
    );
    assert_eq!(
        error(&["--stop-grace=soon"]),
        r#"invalid --stop-grace flag: time: invalid duration "soon""#
    );
    assert_eq!(
        error(&["-v", "/data:data"]),
        "invalid --volumes flag: volume `/data:data` has container path `data`, which is not absolute"
    );
    assert_eq!(
        error(&["-e", ","]),
        "invalid --env flag: empty value (expected KEY=VALUE or KEY) (the value was split at commas, as the Go worker splits it; write \\, for a comma inside one entry)"
    );
}

#[test]
fn worker_id_rules() {
    assert_eq!(
        error(&[]),
        "worker-id is required (via --worker-id flag or config file)"
    );
    assert_eq!(
        error(&["--worker-id="]),
        "worker-id is required (via --worker-id flag or config file)"
    );
    assert_eq!(
        error(&["--worker-id", "warp-1"]),
        "invalid worker-id: values starting with 'warp' are reserved and cannot be used"
    );
    assert_eq!(worker_id(Some("flag"), Some("file")).unwrap(), "flag");
    assert_eq!(worker_id(None, Some("file")).unwrap(), "file");
    assert_eq!(worker_id(Some(""), Some("file")).unwrap(), "file");
    assert!(matches!(
        worker_id(None, Some("warpfile")),
        Err(ConfigError::ReservedWorkerId)
    ));
}

#[test]
fn api_key_from_flag_else_environment_else_error() {
    assert_eq!(run(&["--worker-id", "w"]).api_key.expose(), "env-key");
    assert_eq!(
        run(&["--worker-id", "w", "--api-key", "flag-key"])
            .api_key
            .expose(),
        "flag-key"
    );
    let missing = parse(args(&["--worker-id", "w"]), &no_env).unwrap_err();
    assert_eq!(
        missing.to_string(),
        "an API key is required: pass --api-key KEY or set the WARP_API_KEY environment variable"
    );
}

#[test]
fn secrets_never_appear_in_messages_or_debug() {
    let cases: &[&[&str]] = &[
        &["--worker-id", "warp", "--api-key", SECRET],
        &["--api-key", SECRET],
        &["--worker-id", "w", "-e", "=s3cret-value"],
        &["--worker-id", "w", "-e", "BAD KEY=s3cret-value"],
        &["--api-key", SECRET, "--no-cleanup=s3cret-value"],
    ];
    for case in cases {
        let msg = error(case);
        assert!(!msg.contains(SECRET), "{case:?} leaked: {msg}");
    }
    let c = run(&[
        "--worker-id",
        "w",
        "--api-key",
        SECRET,
        "-e",
        "T=s3cret-value",
    ]);
    let dump = format!("{:?}", Command::Run(c));
    assert!(!dump.contains(SECRET), "debug leaked: {dump}");
    assert!(dump.contains("\"T\": \"<redacted>\""), "{dump}");
}

/// The example from CONFIG.md, decoded exactly.
#[test]
fn config_md_example_decodes_exactly() {
    let file = TempFile::new(
        r#"worker_id: "prod-runner-1"
cleanup: true                 # false = --no-cleanup
max_concurrent_tasks: 4
idle_on_complete: "10m"
backend:
  docker:
    volumes:
      - "/opt/shared-cache:/cache:ro"
    environment:
      - name: NPM_TOKEN
        value: "your_token"
      - name: GITHUB_TOKEN      # no value: taken from the worker's environment
"#,
    );
    let mut expected = defaults("prod-runner-1", "env-key");
    expected.max_concurrent_tasks = 4;
    expected.idle_on_complete = Some("10m".into());
    expected.docker.volumes = vec![vol("/opt/shared-cache", "/cache", Some(true))];
    expected.docker.environment = [
        ("NPM_TOKEN", "your_token"),
        ("GITHUB_TOKEN", "gh-from-host"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    assert_eq!(run(&["--config-file", file.path()]), expected);
}

#[test]
fn every_extension_key_decodes() {
    let file = TempFile::new(
        r#"worker_id: w
log_format: json
drain_timeout: 1m
backend:
  docker:
    default_image: "debian:12"
    sidecar_image: "registry.internal/warp-agent:1"
    registry_mirrors:
      docker.io: registry.internal:5000/dockerhub
    image_pull_policy: IfNotPresent
    task_timeout: 0s
    stop_grace: 1.5s
    runtime: runsc
    network: none
    security_opt: ["no-new-privileges"]
    cap_drop: [ALL]
    pids_limit: 256
    init: true
    environment:
      - name: NUM
        value: 123
      - name: FLAG
        value: true
"#,
    );
    let mut expected = defaults("w", "env-key");
    expected.log_format = LogFormat::Json;
    expected.drain_timeout = Duration::from_secs(60);
    let d = &mut expected.docker;
    d.default_image = "debian:12".into();
    d.sidecar_image = Some("registry.internal/warp-agent:1".into());
    d.registry_mirrors = [(
        "docker.io".to_owned(),
        "registry.internal:5000/dockerhub".to_owned(),
    )]
    .into_iter()
    .collect();
    d.image_pull_policy = PullPolicy::IfNotPresent;
    d.task_timeout = None;
    d.stop_grace = Duration::from_millis(1500);
    d.hardening = Hardening {
        runtime: Some("runsc".into()),
        network: Some("none".into()),
        security_opt: vec!["no-new-privileges".into()],
        cap_drop: vec!["ALL".into()],
        pids_limit: Some(256),
        init: Some(true),
    };
    d.environment = [("NUM", "123"), ("FLAG", "true")]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    assert_eq!(run(&["--config-file", file.path()]), expected);
}

#[test]
fn flags_beat_file_and_lists_merge() {
    let file = TempFile::new(
        r#"worker_id: file-id
cleanup: true
max_concurrent_tasks: 4
idle_on_complete: 45m
log_format: json
drain_timeout: 1m
backend:
  docker:
    volumes: ["/file:/file"]
    environment:
      - {name: SHARED, value: from-file}
      - {name: FILE_ONLY, value: f}
    default_image: file:1
    image_pull_policy: Never
    task_timeout: 2h
    stop_grace: 20s
"#,
    );
    let c = run(&[
        "--config-file",
        file.path(),
        "--worker-id",
        "flag-id",
        "--no-cleanup",
        "--max-concurrent-tasks",
        "0",
        "--idle-on-complete",
        "0s",
        "--log-format",
        "text",
        "--drain-timeout",
        "0s",
        "-v",
        "/flag:/flag:ro",
        "-e",
        "SHARED=from-flag",
        "--default-image",
        "flag:1",
        "--image-pull-policy",
        "Always",
        "--task-timeout",
        "1h",
        "--stop-grace",
        "1s",
    ]);
    let mut expected = defaults("flag-id", "env-key");
    expected.cleanup = false;
    expected.idle_on_complete = Some("0s".into());
    // The Go worker's order: the file's volumes, then the flags'.
    expected.docker.volumes = vec![
        vol("/file", "/file", None),
        vol("/flag", "/flag", Some(true)),
    ];
    expected.docker.environment = [("SHARED", "from-flag"), ("FILE_ONLY", "f")]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    expected.docker.default_image = "flag:1".into();
    expected.docker.task_timeout = Some(Duration::from_secs(3600));
    expected.docker.stop_grace = Duration::from_secs(1);
    assert_eq!(c, expected);
}

#[test]
fn file_cleanup_false_is_no_cleanup() {
    let file = TempFile::new("worker_id: w\ncleanup: false\n");
    assert!(!run(&["--config-file", file.path()]).cleanup);
}

#[test]
fn empty_or_comment_only_file_is_an_empty_config() {
    let file = TempFile::new("# nothing yet\n");
    assert_eq!(
        run(&["--config-file", file.path(), "--worker-id", "w"]),
        defaults("w", "env-key")
    );
}

#[test]
fn home_relative_config_path_is_expanded() {
    assert_eq!(expand_home("~/w.yaml", &env), "/home/op/w.yaml");
    assert_eq!(expand_home("~/w.yaml", &no_env), "~/w.yaml");
    assert_eq!(expand_home("./w.yaml", &env), "./w.yaml");
}

fn file_error(text: &str) -> String {
    let file = TempFile::new(text);
    let msg = error(&["--config-file", file.path()]);
    let prefix = file.path().to_owned();
    msg.replacen(&prefix, "FILE", 1)
}

#[test]
fn unknown_key_names_the_key_and_its_line() {
    assert_eq!(
        file_error("worker_id: w\nbogus: 1\n"),
        "failed to parse config file FILE: unknown field `bogus`, expected one of `worker_id`, `cleanup`, `max_concurrent_tasks`, `idle_on_complete`, `log_format`, `drain_timeout`, `on_shutdown`, `shutdown_timeout`, `backend`, `max_in_flight_bytes` at line 2 column 1"
    );
    let nested =
        file_error("backend:\n  docker:\n    environment:\n      - name: A\n        valeu: x\n");
    assert_eq!(
        nested,
        "failed to parse config file FILE: backend.docker.environment[0]: unknown field `valeu`, expected `name` or `value` at line 5 column 9"
    );
}

#[test]
fn bad_file_values_name_their_key_and_line() {
    assert_eq!(
        file_error("backend:\n  docker:\n    volumes:\n      - /a:/b\n      - /a:b\n"),
        "failed to parse config file FILE: backend.docker.volumes[1]: volume `/a:b` has container path `b`, which is not absolute at line 5 column 9"
    );
    assert_eq!(
        file_error("backend:\n  docker:\n    task_timeout: 5d\n"),
        r#"failed to parse config file FILE: backend.docker.task_timeout: time: unknown unit "d" in duration "5d" at line 3 column 19"#
    );
    assert_eq!(
        file_error("max_concurrent_tasks: -3\n"),
        "failed to parse config file FILE: max_concurrent_tasks: `-3` is not a whole number of tasks (0 or more; 0 = unlimited) at line 1 column 23"
    );
    assert_eq!(
        file_error("backend:\n  docker:\n    image_pull_policy: Sometimes\n"),
        "failed to parse config file FILE: backend.docker.image_pull_policy: `Sometimes` is not one of Always, IfNotPresent, Never at line 3 column 24"
    );
}

#[test]
fn file_environment_names_are_checked() {
    assert_eq!(
        file_error(
            "backend:\n  docker:\n    environment:\n      - name: \"\"\n        value: s3cret-value\n"
        ),
        "failed to parse config file FILE: backend.docker.environment[0].name: name is required and must not be empty at line 4 column 15"
    );
    assert_eq!(
        file_error(
            "backend:\n  docker:\n    environment:\n      - name: \"MY VAR\"\n        value: s3cret-value\n"
        ),
        "failed to parse config file FILE: backend.docker.environment[0].name: name `MY VAR` must not contain spaces or tabs at line 4 column 15"
    );
    let not_scalar = file_error(
        "backend:\n  docker:\n    environment:\n      - name: A\n        value: [s3cret-value]\n",
    );
    assert_eq!(
        not_scalar,
        "failed to parse config file FILE: backend.docker.environment[0].value: invalid type: sequence, expected value must be a string, number or boolean at line 5 column 16"
    );
}

#[test]
fn other_backends_are_refused() {
    assert_eq!(
        file_error("worker_id: w\nbackend:\n  kubernetes:\n    namespace: agents\n"),
        "invalid config file FILE: backend.kubernetes is configured, but this build runs the Docker backend only (use backend.docker)"
    );
    assert_eq!(
        file_error("backend:\n  docker: {}\n  direct: {workspace_root: /tmp}\n"),
        "invalid config file FILE: at most one backend may be configured (found docker, direct)"
    );
}

#[test]
fn unreadable_file_names_its_path() {
    assert_eq!(
        error(&["--config-file", "/nonexistent/oz.yaml"]),
        "failed to read config file /nonexistent/oz.yaml: No such file or directory (os error 2)"
    );
}

#[test]
fn file_worker_id_is_checked_like_the_flag() {
    assert_eq!(
        file_error("worker_id: warp-x\n"),
        "invalid worker-id: values starting with 'warp' are reserved and cannot be used"
    );
}

#[test]
fn from_yaml_is_the_file_alone() {
    let text = "worker_id: \"prod-runner-1\"\nmax_concurrent_tasks: 4\nidle_on_complete: \"10m\"\n\
                backend:\n  docker:\n    volumes:\n      - \"/opt/shared-cache:/cache:ro\"\n    \
                environment:\n      - name: NPM_TOKEN\n        value: \"your_token\"\n      - name: GITHUB_TOKEN\n";
    let mut want = defaults("prod-runner-1", "");
    want.max_concurrent_tasks = 4;
    want.idle_on_complete = Some("10m".into());
    want.docker.volumes = vec![vol("/opt/shared-cache", "/cache", Some(true))];
    want.docker.environment = BTreeMap::from([
        ("GITHUB_TOKEN".to_string(), "gh-from-host".to_string()),
        ("NPM_TOKEN".to_string(), "your_token".to_string()),
    ]);
    assert_eq!(from_yaml(text, "c.yaml", &env).unwrap(), want);
    assert_eq!(
        from_yaml("cleanup: true\n", "c.yaml", &env)
            .unwrap_err()
            .to_string(),
        error(&[
            "--api-key",
            "k",
            "--config-file",
            TempFile::new("cleanup: true\n").path()
        ])
    );
}

#[test]
fn network_mode_is_the_go_workers_name_for_network() {
    let file = TempFile::new("worker_id: w\nbackend:\n  docker:\n    network_mode: oz-tasks\n");
    let config = run(&["--config-file", file.path()]);
    assert_eq!(config.docker.hardening.network.as_deref(), Some("oz-tasks"));
    let both =
        TempFile::new("worker_id: w\nbackend:\n  docker:\n    network: a\n    network_mode: b\n");
    let e = error(&["--config-file", both.path()]);
    assert!(e.contains("duplicate field `network`"), "{e}");
}

#[test]
fn a_line_break_in_a_url_or_header_bound_setting_stops_the_start() {
    for (flag, value) in [
        ("--web-socket-url", "wss://oz.warp.dev/ws\r\nX-Injected: 1"),
        ("--server-root-url", "https://app\n.warp.dev"),
        ("--session-sharing-server-url", "https://s\0"),
        ("--worker-id", "w\r1"),
    ] {
        let e = parse(args(&["--worker-id", "w", flag, value]), &env).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "invalid {flag}: it holds a CR, LF or NUL character, which would split the HTTP request or label it goes into; remove it"
            )
        );
        assert_eq!(e.exit_code(), 1);
    }
    let key_env = |name: &str| (name == "WARP_API_KEY").then(|| "sk-line\nX: y".to_owned());
    let e = parse(args(&["--worker-id", "w"]), &key_env)
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "invalid --api-key (or WARP_API_KEY): it holds a CR, LF or NUL character, which would split the HTTP request or label it goes into; remove it"
    );
}

#[test]
fn warm_start_archives_and_retention_from_flags_and_file() {
    // Defaults: nothing prefetched or loaded, sidecar volumes kept a week
    // unused, task images kept.
    let c = run(&["--worker-id", "w", "--api-key", "k"]);
    assert_eq!(c.docker.prefetch_images, Vec::<String>::new());
    assert_eq!(c.docker.image_archives, None);
    assert_eq!(
        c.docker.sidecar_retention,
        Some(Duration::from_secs(7 * 24 * 3600))
    );
    assert_eq!(c.docker.image_retention, None);

    let file = TempFile::new(
        "worker_id: w\nbackend:\n  docker:\n    prefetch_images: [\"a:1\", \"b:2\"]\n    image_archives: /srv/images\n    sidecar_retention: 24h\n    image_retention: 72h\n",
    );
    let c = run(&["--api-key", "k", "--config-file", file.path()]);
    assert_eq!(c.docker.prefetch_images, vec!["a:1", "b:2"]);
    assert_eq!(c.docker.image_archives, Some(PathBuf::from("/srv/images")));
    assert_eq!(
        c.docker.sidecar_retention,
        Some(Duration::from_secs(86_400))
    );
    assert_eq!(c.docker.image_retention, Some(Duration::from_secs(259_200)));

    // Flags first and winning; repeats of one image once; 0s keeps forever.
    let c = run(&[
        "--api-key",
        "k",
        "--config-file",
        file.path(),
        "--prefetch-image",
        "b:2",
        "--prefetch-image=c:3",
        "--image-archives",
        "/mnt/archives",
        "--sidecar-retention",
        "0s",
        "--image-retention",
        "0s",
    ]);
    assert_eq!(c.docker.prefetch_images, vec!["b:2", "c:3", "a:1"]);
    assert_eq!(
        c.docker.image_archives,
        Some(PathBuf::from("/mnt/archives"))
    );
    assert_eq!(c.docker.sidecar_retention, None);
    assert_eq!(c.docker.image_retention, None);

    // A bad duration names its flag or its line.
    assert!(
        error(&[
            "--worker-id",
            "w",
            "--api-key",
            "k",
            "--sidecar-retention",
            "7d"
        ])
        .contains("--sidecar-retention"),
    );
    let bad = TempFile::new("worker_id: w\nbackend:\n  docker:\n    image_retention: soon\n");
    let e = error(&["--api-key", "k", "--config-file", bad.path()]);
    assert!(e.contains("image_retention") || e.contains("line 4"), "{e}");
}

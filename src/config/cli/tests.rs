//! The command line as the Go worker's users write it: kong's comma lists,
//! flag typos, other backends' flags, and the exit code of every refusal.

use std::collections::BTreeMap;
use std::ffi::OsString;

use super::super::{Command, Config, ConfigError, parse, parse_volume};

fn env(name: &str) -> Option<String> {
    match name {
        "WARP_API_KEY" => Some("env-key".into()),
        "FROM_HOST" => Some("host-value".into()),
        _ => None,
    }
}

fn attempt(list: &[&str], env: &dyn Fn(&str) -> Option<String>) -> Result<Command, ConfigError> {
    parse(list.iter().map(OsString::from).collect(), env)
}

fn run(list: &[&str]) -> Config {
    let mut full = vec!["--worker-id", "w"];
    full.extend_from_slice(list);
    match attempt(&full, &env) {
        Ok(Command::Run(c)) => c,
        other => panic!("expected Run for {list:?}, got {other:?}"),
    }
}

/// The refusal's message and exit code.
fn refusal(list: &[&str]) -> (String, i32) {
    let mut full = vec!["--worker-id", "w"];
    full.extend_from_slice(list);
    match attempt(&full, &env) {
        Err(e) => (e.to_string(), e.exit_code()),
        Ok(other) => panic!("expected an error for {list:?}, got {other:?}"),
    }
}

fn pairs(list: &[(&str, &str)]) -> BTreeMap<String, String> {
    list.iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

#[test]
fn env_lists_split_at_unescaped_commas() {
    let c = run(&[
        "-e",
        "A=1,B=2",
        "--env=C=x\\,y,FROM_HOST",
        "-e",
        "",
        "--env",
        "D=c:\\dir,",
    ]);
    assert_eq!(
        c.docker.environment,
        pairs(&[
            ("A", "1"),
            ("B", "2"),
            ("C", "x,y"),
            ("D", "c:\\dir"),
            ("FROM_HOST", "host-value"),
        ])
    );
    // `-e ''` alone is no entry at all, as with kong.
    assert_eq!(run(&["-e", ""]).docker.environment, BTreeMap::new());
}

#[test]
fn volume_lists_split_at_unescaped_commas() {
    let c = run(&["-v", "/a:/a,/b:/b:ro", "--volumes=/c:/c:ro\\,z", "-v", ""]);
    let want: Vec<_> = ["/a:/a", "/b:/b:ro", "/c:/c:ro,z"]
        .iter()
        .map(|v| parse_volume(v).unwrap())
        .collect();
    assert_eq!(c.docker.volumes, want);
}

#[test]
fn a_comma_meant_inside_an_entry_is_explained() {
    assert_eq!(
        refusal(&["-v", "/a:/a:ro,z"]),
        (
            "invalid --volumes flag: volume `z` has container path `z`, which is not absolute \
             (the value was split at commas, as the Go worker splits it; write \\, for a comma \
             inside one entry)"
                .to_owned(),
            1
        )
    );
    assert_eq!(
        refusal(&["-e", "A=1,,B=2"]),
        (
            "invalid --env flag: empty value (expected KEY=VALUE or KEY) (the value was split at \
             commas, as the Go worker splits it; write \\, for a comma inside one entry)"
                .to_owned(),
            1
        )
    );
    // Not split (no comma, or only an escaped one), so nothing is said about it.
    assert_eq!(
        refusal(&["-v", "/a:/b:ro\\,rx"]).0,
        "invalid --volumes flag: volume `/a:/b:ro,rx` has unknown option `rx` (Docker's are ro, \
         rw, z, Z, private, rprivate, shared, rshared, slave, rslave, nocopy, consistent, cached, \
         delegated)"
    );
    assert_eq!(
        refusal(&["-e", "=x"]),
        (
            "invalid --env flag: missing key before '=' (expected KEY=VALUE or KEY)".to_owned(),
            1
        )
    );
}

#[test]
fn flag_typos_get_a_suggestion() {
    let tail = "(see `oz-agent-worker --help`)";
    for (typo, want) in [
        ("--worker-idd", "did you mean --worker-id?"),
        ("--worker_id", "did you mean --worker-id?"),
        ("--volume", "did you mean --volumes?"),
        (
            "--max-concurent-tasks",
            "did you mean --max-concurrent-tasks?",
        ),
        ("--no-clean", "did you mean --no-cleanup?"),
        (
            "--websocketurl",
            "did you mean one of --web-socket-url, --websocket-url?",
        ),
        ("--v", "did you mean one of --version, --volumes, --env?"),
    ] {
        assert_eq!(
            refusal(&[typo]),
            (format!("unknown flag `{typo}`, {want} {tail}"), 80),
            "{typo}"
        );
    }
    assert_eq!(
        refusal(&["--bogus"]),
        (format!("unknown flag `--bogus` {tail}"), 80)
    );
    // The value given with `=` is never echoed (it may be a secret).
    assert_eq!(
        refusal(&["--api-kye=s3cret"]),
        (
            format!("unknown flag `--api-kye`, did you mean --api-key? {tail}"),
            80
        )
    );
    assert_eq!(refusal(&["-x"]), (format!("unknown flag `-x` {tail}"), 80));
}

#[test]
fn other_backends_flags_name_their_backend() {
    let line = "flag `--target-dir` belongs to the Go worker's direct backend, but this build runs the Docker backend only";
    assert_eq!(
        refusal(&["--target-dir", "/srv/work"]),
        (line.to_owned(), 1)
    );
    assert_eq!(refusal(&["--target-dir=/srv/work"]), (line.to_owned(), 1));
    assert_eq!(
        refusal(&["--target-dir"]),
        ("flag `--target-dir` needs a value".to_owned(), 80)
    );
    assert_eq!(
        refusal(&["--backend", "kubernetes"]),
        (
            "unsupported backend `kubernetes`: this build runs the Docker backend only (supported: docker)"
                .to_owned(),
            1
        )
    );
    assert_eq!(refusal(&["--backend", "dockr"]).1, 80);
}

#[test]
fn exit_codes_follow_the_go_worker() {
    // 80: what kong refuses for the Go worker's flags (and ours' typed values).
    for list in [
        &["--bogus"][..],
        &["--worker-id"],
        &["--no-cleanup=maybe"],
        &["run"],
        &["--log-level", "trace"],
        &["--max-concurrent-tasks", "four"],
        &["--backend", "podman"],
        &["--stop-grace", "soon"],
        &["--image-pull-policy", "always"],
        &["--log-format", "xml"],
    ] {
        assert_eq!(refusal(list).1, 80, "{list:?}");
    }
    // 1: what the Go worker refuses after parsing, or Go takes but this build cannot run.
    for list in [
        &["-e", " A=1"][..],
        &["-e", ","],
        &["-v", "/a:b"],
        &["-v", "/a:/x", "-v", "/b:/x"],
        &["--idle-on-complete", "soon"],
        &["--max-concurrent-tasks", "-1"],
        &["--backend", "direct"],
        &["--target-dir", "/x"],
        &["--worker-id", "warp-1"],
        &["--config-file", "/nonexistent/oz-config.yaml"],
    ] {
        assert_eq!(refusal(list).1, 1, "{list:?}");
    }
    let no_key = |_: &str| None;
    let missing = attempt(&["--worker-id", "w"], &no_key).unwrap_err();
    assert_eq!(missing.exit_code(), 80);
    let missing_id = attempt(&[], &env).unwrap_err();
    assert_eq!(missing_id.exit_code(), 1);
}

#[test]
fn a_parse_error_wins_over_a_configuration_error() {
    // Kong refuses the command line before the Go worker looks at `-e`.
    assert_eq!(refusal(&["-e", ",", "--bogus"]).1, 80);
    assert_eq!(
        refusal(&["--target-dir", "/x", "--log-level", "loud"]).1,
        80
    );
    let no_key = |_: &str| None;
    let e = attempt(&["--worker-id", "w", "-e", ","], &no_key).unwrap_err();
    assert_eq!(e.exit_code(), 80, "{e}");
}

#[test]
fn volumes_at_one_container_path_are_refused_at_start() {
    assert_eq!(
        refusal(&["-v", "/a:/data", "-v", "cache:/data/:ro"]),
        (
            "volumes `/a:/data` and `cache:/data/:ro` both mount at /data; Docker refuses two mounts at one container path"
                .to_owned(),
            1
        )
    );
}

//! The built binary's command line: help, version, and refusals, checked on
//! stdout, stderr and the exit code.

use std::process::{Command, Output};

fn worker(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_oz-agent-worker"))
        .args(args)
        .env_remove("WARP_API_KEY")
        .output()
        .expect("the binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Asserts a refusal: exit code 2, nothing on stdout, `message` on stderr.
fn assert_refused(args: &[&str], message: &str) {
    let out = worker(args);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{args:?}: stderr {stderr}");
    assert_eq!(text(&out.stdout), "", "{args:?}");
    assert_eq!(stderr, format!("oz-agent-worker: {message}\n"), "{args:?}");
}

#[test]
fn help_lists_the_flags_and_exits_zero() {
    let out = worker(&["--help"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(text(&out.stderr), "");
    let help = text(&out.stdout);
    for flag in [
        "--worker-id",
        "--api-key",
        "--config-file",
        "--volumes",
        "--env",
        "--max-concurrent-tasks",
        "--idle-on-complete",
        "--task-timeout",
        "doctor",
        "WARP_API_KEY",
    ] {
        assert!(help.contains(flag), "help lacks {flag}:\n{help}");
    }
    assert_eq!(text(&worker(&["-h"]).stdout), help);
}

#[test]
fn version_prints_name_and_version() {
    let out = worker(&["--version"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        text(&out.stdout),
        format!("oz-agent-worker {}\n", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn unknown_flag_is_refused() {
    assert_refused(
        &["--worker-id", "w", "--bogus"],
        "unknown flag `--bogus` (see `oz-agent-worker --help`)",
    );
}

#[test]
fn missing_worker_id_is_refused() {
    assert_refused(
        &["--api-key", "k"],
        "worker-id is required (via --worker-id flag or config file)",
    );
}

#[test]
fn reserved_worker_id_is_refused() {
    assert_refused(
        &["--api-key", "k", "--worker-id", "warpy"],
        "invalid worker-id: values starting with 'warp' are reserved and cannot be used",
    );
}

#[test]
fn missing_api_key_is_refused_without_the_env_var() {
    assert_refused(
        &["--worker-id", "w"],
        "an API key is required: pass --api-key KEY or set the WARP_API_KEY environment variable",
    );
}

#[test]
fn unknown_config_key_is_refused_with_its_line() {
    let path = std::env::temp_dir().join(format!("oz-cli-test-{}.yaml", std::process::id()));
    std::fs::write(
        &path,
        "worker_id: w\nbackend:\n  docker:\n    volumez: []\n",
    )
    .unwrap();
    struct Remove<'a>(&'a std::path::Path);
    impl Drop for Remove<'_> {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(self.0);
        }
    }
    let _remove = Remove(&path);
    let out = worker(&["--api-key", "k", "--config-file", path.to_str().unwrap()]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("unknown field `volumez`"), "{stderr}");
    assert!(stderr.contains("at line 4 column 5"), "{stderr}");
}

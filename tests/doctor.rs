//! `oz-agent-worker doctor` against real peers: the stand-in orchestrator
//! (ws and wss with a test CA), a real CONNECT proxy and the real Docker
//! daemon. The doctor only reads from Docker (ping, version, image inspect),
//! so these tests create nothing there that needs cleaning up.
//!
//! The command line goes through `config::parse` with an injected
//! environment, then `doctor::run` in-process (the binary's `main` wiring is
//! not this part's).

use std::ffi::OsString;
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use oz_agent_worker::calendar::format_http_date;
use oz_agent_worker::config::{self, Command};
use oz_agent_worker::doctor;
use oz_standin::{ConnectProxy, Options, Orchestrator, TEST_HOST};

const KEY: &str = "sk-doctor-SECRET-key-123";
/// Built by `.ci/test-images.sh`.
const IMAGE: &str = "oz-test/busybox:latest";
const WAIT: Duration = Duration::from_secs(10);

/// A temp directory removed on drop, even when the test fails.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("oz-doctor-it-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&path).unwrap();
        Self(path)
    }
    fn file(&self, name: &str, text: &str) -> String {
        let path = self.0.join(name);
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_owned()
    }
    fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs the doctor; `env` is the whole environment it sees (plus PATH).
fn doctor(args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    let args: Vec<OsString> = std::iter::once("doctor")
        .chain(args.iter().copied())
        .map(OsString::from)
        .collect();
    let path = std::env::var("PATH").ok();
    let lookup = |name: &str| {
        env.iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| (*v).to_owned())
            .or_else(|| (name == "PATH").then(|| path.clone()).flatten())
    };
    let input = match config::parse(args, &lookup) {
        Ok(Command::Doctor(input)) => input,
        other => panic!("expected the doctor, got {other:?}"),
    };
    let mut out = Vec::new();
    let code = doctor::run(input, &mut out);
    let text = String::from_utf8(out).unwrap();
    assert!(!text.contains("SECRET"), "the API key leaked:\n{text}");
    (code, text)
}

/// The line of check `name`, which must appear exactly once.
fn line<'a>(report: &'a str, name: &str) -> &'a str {
    let found: Vec<&str> = report
        .lines()
        .filter(|l| {
            l.get(5..)
                .is_some_and(|rest| rest.starts_with(&format!("{name}: ")))
        })
        .collect();
    assert_eq!(found.len(), 1, "check `{name}` in:\n{report}");
    found[0]
}

fn now_date(offset_secs: i64) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    format_http_date(now.saturating_add_signed(offset_secs))
}

fn no_fail(report: &str) {
    assert!(
        !report.lines().any(|l| l.starts_with("FAIL")),
        "unexpected failure:\n{report}"
    );
}

#[test]
fn all_pass_over_plain_ws_with_the_real_daemon() {
    let orch = Orchestrator::start(Options::default());
    orch.set_date_header(Some(now_date(0)));
    let dir = TempDir::new();
    let url = orch.url();
    let (code, report) = doctor(
        &[
            "--worker-id",
            "w-doctor",
            "--web-socket-url",
            &url,
            "--default-image",
            IMAGE,
            "--image-pull-policy",
            "Never",
            "-v",
            &format!("{}:/data:ro", dir.path()),
        ],
        &[("WARP_API_KEY", KEY), ("DOCKER_CONFIG", dir.path())],
    );
    assert_eq!(code, 0, "{report}");
    no_fail(&report);
    assert_eq!(
        line(&report, "config"),
        "PASS config: flags parse (no --config-file given)"
    );
    assert_eq!(line(&report, "worker id"), "PASS worker id: `w-doctor`");
    assert_eq!(
        line(&report, "api key"),
        "PASS api key: present (not shown)"
    );
    assert_eq!(
        line(&report, "docker endpoint"),
        "PASS docker endpoint: unix:///var/run/docker.sock (the default socket)"
    );
    assert!(line(&report, "docker api").starts_with("PASS docker api: using API 1.4"));
    assert!(line(&report, "docker platform").starts_with("PASS docker platform: linux/"));
    // The daemon is local: its data root's free space is shown.
    let disk = line(&report, "docker disk");
    assert!(
        disk.starts_with("PASS docker disk: /var/lib/docker: ") && disk.contains(" GB free of "),
        "{disk}"
    );
    assert_eq!(
        line(&report, "default image"),
        "PASS default image: `oz-test/busybox:latest` pulls as docker.io/oz-test/busybox:latest"
    );
    assert_eq!(
        line(&report, "default image credentials"),
        format!(
            "WARN default image credentials: docker.io: none found (searched {}/config.json); pulls will be anonymous",
            dir.path()
        )
    );
    assert!(
        line(&report, "default image on host").starts_with("PASS default image on host: present (")
    );
    assert_eq!(
        line(&report, &format!("volume {}:/data:ro", dir.path())),
        format!("PASS volume {0}:/data:ro: host path {0} exists", dir.path())
    );
    assert_eq!(
        line(&report, "dns"),
        "PASS dns: 127.0.0.1 resolves to 127.0.0.1"
    );
    assert_eq!(
        line(&report, "websocket"),
        "PASS websocket: handshake accepted with the API key (HTTP 101); closed with 1000"
    );
    assert!(line(&report, "clock").starts_with("PASS clock: within 60s: local clock is "));
    assert!(report.ends_with(" 0 failed\n"), "{report}");
    // The real handshake: the key as a bearer, the worker id in the query,
    // and a normal close straight after.
    let hs = orch.handshakes();
    assert_eq!(hs.len(), 1);
    assert_eq!(
        hs[0].authorization.as_deref(),
        Some(&*format!("Bearer {KEY}"))
    );
    assert_eq!(hs[0].query, "worker_id=w-doctor");
    assert!(
        orch.wait_until(|r| r.close_codes == [1000], WAIT),
        "{:?}",
        orch.snapshot().close_codes
    );
    assert!(orch.received().is_empty());
}

#[test]
fn all_pass_over_wss_with_the_test_ca() {
    let orch = Orchestrator::start(Options { tls: true });
    orch.set_date_header(Some(now_date(-2)));
    let dir = TempDir::new();
    let ca = dir.file("ca.pem", orch.ca_pem().unwrap());
    let url = orch.url();
    let (code, report) = doctor(
        &[
            "--worker-id",
            "w-tls",
            "--api-key",
            KEY,
            "--web-socket-url",
            &url,
            "--default-image",
            IMAGE,
        ],
        &[("SSL_CERT_FILE", &ca), ("DOCKER_CONFIG", dir.path())],
    );
    assert_eq!(code, 0, "{report}");
    no_fail(&report);
    assert_eq!(
        line(&report, "tls"),
        "PASS tls: certificate for 127.0.0.1 verified (trusting 1 extra CA certificate(s) from SSL_CERT_FILE/SSL_CERT_DIR)"
    );
    assert!(line(&report, "websocket").starts_with("PASS"));
    assert!(line(&report, "clock").starts_with("PASS clock:"));
}

#[test]
fn wss_through_the_proxy_and_a_clock_far_off() {
    let orch = Orchestrator::start(Options { tls: true });
    orch.set_date_header(Some(now_date(-600)));
    let proxy = ConnectProxy::start();
    proxy.alias(TEST_HOST, orch.addr());
    let dir = TempDir::new();
    let ca = dir.file("ca.pem", orch.ca_pem().unwrap());
    let url = orch.url_for_host(TEST_HOST);
    let proxy_url = proxy.url();
    let (code, report) = doctor(
        &[
            "--worker-id",
            "w-proxy",
            "--api-key",
            KEY,
            "--web-socket-url",
            &url,
            "--default-image",
            IMAGE,
        ],
        &[
            ("SSL_CERT_FILE", &ca),
            ("HTTPS_PROXY", &proxy_url),
            ("DOCKER_CONFIG", dir.path()),
        ],
    );
    assert_eq!(code, 1, "{report}");
    let authority = format!("{TEST_HOST}:{}", orch.addr().port());
    assert_eq!(
        line(&report, "proxy"),
        format!("PASS proxy: connecting to {authority} through {proxy_url}")
    );
    assert!(
        line(&report, "dns").starts_with(&format!("WARN dns: {TEST_HOST} does not resolve here ("))
    );
    assert_eq!(
        line(&report, "connect"),
        format!("PASS connect: connected to {authority} through {proxy_url}")
    );
    assert!(line(&report, "websocket").starts_with("PASS"));
    assert!(
        line(&report, "clock").starts_with("FAIL clock: local clock is 6"),
        "{report}"
    );
    assert!(
        report.contains("\n  fix: synchronise the clock"),
        "{report}"
    );
    assert_eq!(proxy.connects()[0].target, authority);
}

#[test]
fn config_problems_are_failed_checks_not_refusals() {
    let dir = TempDir::new();
    let file = dir.file("worker.yaml", "worker_id: w\nbogus_key: 1\n");
    let (code, report) = doctor(
        &[
            "--config-file",
            &file,
            "--web-socket-url",
            "ws://127.0.0.1:9/ws",
        ],
        &[("DOCKER_CONFIG", dir.path())],
    );
    assert_eq!(code, 1, "{report}");
    let config = line(&report, "config");
    assert!(
        config.starts_with(&format!(
            "FAIL config: failed to parse config file {file}: unknown field `bogus_key`"
        )),
        "{config}"
    );
    assert_eq!(
        line(&report, "worker id"),
        "FAIL worker id: worker-id is required (via --worker-id flag or config file)"
    );
    assert_eq!(
        line(&report, "api key"),
        "FAIL api key: an API key is required: pass --api-key KEY or set the WARP_API_KEY environment variable"
    );
    assert!(report.contains(
        "  fix: create a team API key in Warp and pass it with --api-key or the WARP_API_KEY environment variable\n"
    ));
    assert_eq!(
        line(&report, "websocket"),
        "WARN websocket: not checked: the worker id or API key is missing (see above)"
    );
}

#[test]
fn reserved_worker_id_fails() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("ws://{}/ws", listener.local_addr().unwrap());
    let (code, report) = doctor(
        &[
            "--worker-id",
            "warp-box",
            "--api-key",
            KEY,
            "--web-socket-url",
            &url,
        ],
        &[],
    );
    assert_eq!(code, 1);
    assert_eq!(
        line(&report, "worker id"),
        "FAIL worker id: invalid worker-id: values starting with 'warp' are reserved and cannot be used"
    );
    assert!(report.contains("  fix: choose an id that does not start with `warp`\n"));
}

#[test]
fn refused_handshake_says_the_key_is_wrong() {
    let orch = Orchestrator::start(Options::default());
    orch.reject_next_handshake(401);
    let url = orch.url();
    let (code, report) = doctor(
        &[
            "--worker-id",
            "w-401",
            "--api-key",
            KEY,
            "--web-socket-url",
            &url,
            "--default-image",
            IMAGE,
        ],
        &[],
    );
    assert_eq!(code, 1, "{report}");
    assert_eq!(
        line(&report, "websocket"),
        "FAIL websocket: HTTP 401 Unauthorized: API key is wrong or lacks team scope"
    );
    assert_eq!(
        line(&report, "clock"),
        "WARN clock: not checked: no handshake response to compare with"
    );
}

#[test]
fn closed_port_fails_the_connect_step() {
    let port = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let url = format!("ws://127.0.0.1:{port}/ws");
    let (code, report) = doctor(
        &[
            "--worker-id",
            "w",
            "--api-key",
            KEY,
            "--web-socket-url",
            &url,
            "--default-image",
            IMAGE,
        ],
        &[],
    );
    assert_eq!(code, 1);
    assert!(
        line(&report, "connect").starts_with(&format!(
            "FAIL connect: could not connect to 127.0.0.1:{port}: "
        )),
        "{report}"
    );
    assert!(!report.contains("websocket:"), "{report}");
}

#[test]
fn missing_volume_missing_socket_and_never_pulled_image() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("ws://{}/ws", listener.local_addr().unwrap());
    drop(listener);
    let (code, report) = doctor(
        &[
            "--worker-id",
            "w",
            "--api-key",
            KEY,
            "--web-socket-url",
            &url,
            "-v",
            "/nonexistent/oz-doctor-data:/data",
        ],
        &[("DOCKER_HOST", "unix:///nonexistent/docker.sock")],
    );
    assert_eq!(code, 1);
    assert_eq!(
        line(&report, "volume /nonexistent/oz-doctor-data:/data"),
        "FAIL volume /nonexistent/oz-doctor-data:/data: host path /nonexistent/oz-doctor-data does not exist"
    );
    assert_eq!(
        line(&report, "docker endpoint"),
        "PASS docker endpoint: unix:///nonexistent/docker.sock (from DOCKER_HOST)"
    );
    assert!(
        line(&report, "docker reachable")
            .starts_with("FAIL docker reachable: no Docker daemon at /nonexistent/docker.sock: "),
        "{report}"
    );
    assert_eq!(
        line(&report, "default image on host"),
        "WARN default image on host: not checked: the Docker daemon cannot be used"
    );

    let (code, report) = doctor(
        &[
            "--worker-id",
            "w",
            "--api-key",
            KEY,
            "--web-socket-url",
            &url,
            "--default-image",
            "oz-test/absent-doctor:none",
            "--image-pull-policy",
            "Never",
        ],
        &[],
    );
    assert_eq!(code, 1);
    assert_eq!(
        line(&report, "default image on host"),
        "FAIL default image on host: docker.io/oz-test/absent-doctor:none is not on this host and image_pull_policy is Never"
    );
}

#[test]
fn plain_ws_to_another_host_is_a_warning() {
    let (_, report) = doctor(
        &[
            "--worker-id",
            "w-clear",
            "--api-key",
            KEY,
            "--web-socket-url",
            "ws://oz-cleartext.invalid:9/ws",
        ],
        &[],
    );
    assert_eq!(
        line(&report, "websocket url"),
        "WARN websocket url: oz-cleartext.invalid:9 is plain ws:// to a host other than this one: the API key travels in clear; use wss://"
    );
    // To this host: no such line.
    let (_, report) = doctor(
        &[
            "--worker-id",
            "w-clear",
            "--api-key",
            KEY,
            "--web-socket-url",
            "ws://127.0.0.1:9/ws",
        ],
        &[],
    );
    assert!(!report.contains("websocket url:"), "{report}");
}

#[test]
fn a_line_break_in_the_api_key_fails_and_nothing_is_sent() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("ws://{}/ws", listener.local_addr().unwrap());
    let (code, report) = doctor(
        &[
            "--worker-id",
            "w-crlf",
            "--api-key",
            "k-SECRET\r\nX-Injected: 1",
            "--web-socket-url",
            &url,
        ],
        &[],
    );
    assert_eq!(code, 1, "{report}");
    assert_eq!(
        line(&report, "line breaks"),
        "FAIL line breaks: invalid --api-key (or WARP_API_KEY): it holds a CR, LF or NUL character, which would split the HTTP request or label it goes into; remove it"
    );
    assert_eq!(
        line(&report, "websocket"),
        "WARN websocket: not checked: a setting holds a CR, LF or NUL character (see above)"
    );
    // Nothing dialled the orchestrator's port.
    listener.set_nonblocking(true).unwrap();
    assert!(listener.accept().is_err());
    assert!(!report.contains("X-Injected"), "{report}");
}

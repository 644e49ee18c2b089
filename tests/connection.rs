//! The connection thread against the stand-in orchestrator and a real
//! CONNECT proxy, over real sockets.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, unbounded};
use oz_agent_worker::config::ApiKey;
use oz_agent_worker::connection::{
    self, BackoffPolicy, ConnectionHandle, InboundHandler, Settings,
};
use oz_agent_worker::outbox::Outbox;
use oz_agent_worker::wire::{Inbound, Outbound};
use oz_standin::{ConnectProxy, Options, Orchestrator, TEST_HOST, WORKER_PATH};
use serde_json::{Value, json};

const KEY: &str = "sk-test-SECRET-api-key";
const ENV_SECRET: &str = "env-SECRET-value-42";
const WAIT: Duration = Duration::from_secs(10);

// ---- log capture: every line at every level, to check words and secrets ----

struct Capture;
static LINES: Mutex<Vec<(log::Level, String)>> = Mutex::new(Vec::new());

impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata) -> bool {
        true
    }
    fn log(&self, record: &log::Record) {
        // The same filter the worker's log setup applies (see log_record_allowed).
        if !connection::log_record_allowed(record.target(), record.level()) {
            return;
        }
        let line = record.args().to_string();
        lines().push((record.level(), line));
    }
    fn flush(&self) {}
}

fn install_logger() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        log::set_boxed_logger(Box::new(Capture)).unwrap();
        log::set_max_level(log::LevelFilter::Trace);
    });
}

fn lines() -> std::sync::MutexGuard<'static, Vec<(log::Level, String)>> {
    LINES.lock().unwrap_or_else(|e| e.into_inner())
}

fn logged(pred: impl Fn(log::Level, &str) -> bool) -> bool {
    lines().iter().any(|(l, s)| pred(*l, s))
}

fn assert_no_secret_logged() {
    for (_, line) in lines().iter() {
        assert!(!line.contains("SECRET"), "secret in log line: {line}");
    }
}

/// Waits for a log line, re-checking whenever the stand-in records a
/// handshake (or every 100ms when dials never reach it).
fn wait_logged(orch: &Orchestrator, pred: impl Fn(log::Level, &str) -> bool) -> bool {
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        if logged(&pred) {
            return true;
        }
        let before = orch.snapshot().handshakes.len();
        orch.wait_until(|r| r.handshakes.len() > before, Duration::from_millis(100));
    }
    false
}

// ---- worker side helpers ----

#[derive(Debug)]
enum Event {
    Msg(Inbound),
    Connected(bool),
}

struct Recorder(Sender<Event>);

impl InboundHandler for Recorder {
    fn on_message(&mut self, msg: Inbound) {
        let _ = self.0.send(Event::Msg(msg));
    }
    fn on_connection_change(&mut self, connected: bool) {
        let _ = self.0.send(Event::Connected(connected));
    }
}

fn settings(url: &str, env: &[(&str, String)]) -> Settings {
    install_logger();
    let map: HashMap<String, String> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    let mut s = Settings::new(url, "worker 1/é", ApiKey::new(KEY), &|k| {
        map.get(k).cloned()
    })
    .unwrap();
    s.backoff = BackoffPolicy {
        initial: Duration::from_millis(20),
        factor: 2,
        max: Duration::from_millis(200),
        jitter: 0.0,
    };
    s
}

fn start(s: Settings, outbox: &Outbox) -> (ConnectionHandle, Receiver<Event>) {
    let (tx, rx) = unbounded();
    let handle = connection::spawn(s, outbox.clone(), Recorder(tx)).unwrap();
    (handle, rx)
}

fn next_message(rx: &Receiver<Event>) -> Inbound {
    let deadline = Instant::now() + WAIT;
    loop {
        match rx
            .recv_deadline(deadline)
            .expect("no inbound message arrived")
        {
            Event::Msg(m) => return m,
            Event::Connected(_) => {}
        }
    }
}

fn claimed(id: &str) -> Outbound {
    Outbound::TaskClaimed {
        task_id: id.into(),
        worker_id: "w".into(),
    }
}

fn task_ids(frames: &[Value]) -> Vec<String> {
    frames
        .iter()
        .filter_map(|f| f["data"]["task_id"].as_str().map(str::to_owned))
        .collect()
}

fn finish(handle: ConnectionHandle) -> connection::FinishReport {
    handle.finish(Instant::now() + Duration::from_secs(5))
}

fn temp_ca(orch: &Orchestrator, tag: &str) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("oz-conn-{tag}-{}.pem", std::process::id()));
    std::fs::write(&path, orch.ca_pem().unwrap()).unwrap();
    path
}

// ---- tests ----

#[test]
fn handshake_carries_path_worker_id_and_bearer() {
    let orch = Orchestrator::start(Options::default());
    let outbox = Outbox::new();
    let url = format!("{}?team=a%20b", orch.url());
    let (handle, rx) = start(settings(&url, &[]), &outbox);
    assert!(orch.wait_until(|r| r.connected, WAIT));
    let hs = &orch.handshakes()[0];
    assert_eq!(hs.path, WORKER_PATH);
    assert_eq!(hs.query, "team=a+b&worker_id=worker+1%2F%C3%A9");
    assert_eq!(
        hs.authorization.as_deref(),
        Some(format!("Bearer {KEY}").as_str())
    );
    assert!(matches!(
        rx.recv_timeout(WAIT).unwrap(),
        Event::Connected(true)
    ));
    assert!(handle.is_connected());
    assert!(logged(|l, s| l == log::Level::Info
        && s.starts_with("connected to ws://127.0.0.1:")
        && s.ends_with("?team=a+b&worker_id=worker+1%2F%C3%A9")));
    finish(handle);
    assert_no_secret_logged();
}

#[test]
fn wss_trusts_the_ca_from_ssl_cert_file() {
    let orch = Orchestrator::start(Options { tls: true });
    let ca = temp_ca(&orch, "ca");

    // Without the CA the certificate is not trusted and nothing gets through.
    let outbox = Outbox::new();
    let (handle, _rx) = start(settings(&orch.url(), &[]), &outbox);
    let port = orch.addr().port();
    assert!(wait_logged(&orch, |_, s| s.contains(&format!(
        "could not connect to wss://127.0.0.1:{port}"
    )) && s
        .contains("TLS handshake with 127.0.0.1 failed")));
    assert!(orch.handshakes().is_empty());
    finish(handle);

    let env = [("SSL_CERT_FILE", ca.display().to_string())];
    let (handle, _rx) = start(settings(&orch.url(), &env), &outbox);
    assert!(orch.wait_until(|r| r.connected, WAIT));
    outbox.push(claimed("tls"));
    orch.wait_for(|f| task_ids(f) == ["tls"], WAIT);
    let report = finish(handle);
    assert!(report.closed_cleanly);
    let _ = std::fs::remove_file(ca);
}

#[test]
fn wss_goes_through_the_connect_proxy_with_credentials() {
    let orch = Orchestrator::start(Options { tls: true });
    let proxy = ConnectProxy::start();
    proxy.alias(TEST_HOST, orch.addr());
    let ca = temp_ca(&orch, "proxy-ca");
    let proxy_url = proxy.url().replace("http://", "http://user:SECRET-pw@");
    let env = [
        ("SSL_CERT_FILE", ca.display().to_string()),
        ("HTTPS_PROXY", proxy_url),
        ("NO_PROXY", "example.com,.other.test".to_string()),
    ];
    let outbox = Outbox::new();
    let url = orch.url_for_host(TEST_HOST);
    let (handle, _rx) = start(settings(&url, &env), &outbox);
    assert!(orch.wait_until(|r| r.connected, WAIT));
    let connects = proxy.connects();
    assert_eq!(connects.len(), 1);
    assert_eq!(
        connects[0].target,
        format!("{TEST_HOST}:{}", orch.addr().port())
    );
    // base64("user:SECRET-pw")
    assert_eq!(
        connects[0].proxy_authorization.as_deref(),
        Some("Basic dXNlcjpTRUNSRVQtcHc=")
    );
    finish(handle);
    assert_no_secret_logged();
    let _ = std::fs::remove_file(ca);
}

/// This machine's host name, which must resolve to a loopback address: it
/// is not `localhost` or an IP literal, so Go's rules would proxy it.
fn loopback_hostname() -> String {
    use std::net::ToSocketAddrs;
    let mut buf = [0u8; 256];
    // SAFETY: buf is valid for its whole length.
    assert_eq!(
        unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) },
        0
    );
    let name = std::ffi::CStr::from_bytes_until_nul(&buf)
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    let local = (name.as_str(), 1)
        .to_socket_addrs()
        .map(|mut a| a.any(|a| a.ip().is_loopback()))
        .unwrap_or(false);
    assert!(
        local,
        "host name {name} must resolve to loopback for this test"
    );
    name
}

#[test]
fn ws_uses_http_proxy_unless_no_proxy_matches() {
    let orch = Orchestrator::start(Options::default());
    let proxy = ConnectProxy::start();
    let host = loopback_hostname();
    let url = orch.url_for_host(&host);

    let outbox = Outbox::new();
    let env = [("HTTP_PROXY", proxy.url())];
    let (handle, _rx) = start(settings(&url, &env), &outbox);
    assert!(orch.wait_until(|r| r.connected, WAIT));
    assert_eq!(
        proxy.connects()[0].target,
        format!("{host}:{}", orch.addr().port())
    );
    assert_eq!(proxy.connects()[0].proxy_authorization, None);
    finish(handle);
    assert!(orch.wait_until(|r| !r.connected, WAIT));

    let env = [
        ("HTTP_PROXY", proxy.url()),
        ("no_proxy", format!("other.example, {host}")),
    ];
    let (handle, _rx) = start(settings(&url, &env), &outbox);
    assert!(orch.wait_until(|r| r.handshakes.len() == 2 && r.connected, WAIT));
    assert_eq!(
        proxy.connects().len(),
        1,
        "a NO_PROXY host went through the proxy"
    );
    finish(handle);
}

#[test]
fn outbox_messages_arrive_as_exact_json_and_are_acknowledged() {
    let orch = Orchestrator::start(Options::default());
    let outbox = Outbox::new();
    // Pushed before any connection exists.
    outbox.push(claimed("early"));
    let (handle, _rx) = start(settings(&orch.url(), &[]), &outbox);
    outbox.push(Outbound::TaskFailed {
        task_id: "T".into(),
        message: "m".into(),
        failure_reason: Some(oz_agent_worker::wire::FailureReason::ContainerExit),
        exit_code: 2,
    });
    let frames = orch.wait_for(|f| f.len() == 2, WAIT);
    assert_eq!(
        frames,
        vec![
            json!({"type":"task_claimed","data":{"task_id":"early","worker_id":"w"}}),
            json!({"type":"task_failed","data":{"task_id":"T","message":"m","failure_reason":"container_exit","exit_code":2}}),
        ]
    );
    assert!(outbox.wait_empty(WAIT), "no pong acknowledged the messages");

    // Pushed while the connection is down: delivered on the next one.
    orch.drop_connection();
    outbox.push(claimed("while-down"));
    orch.wait_for(|f| task_ids(f) == ["early", "T", "while-down"], WAIT);
    assert!(orch.handshakes().len() >= 2);
    assert!(outbox.wait_empty(WAIT));
    finish(handle);
}

#[test]
fn hundred_messages_survive_repeated_drops_in_order() {
    let orch = Orchestrator::start(Options::default());
    let outbox = Outbox::new();
    let (handle, _rx) = start(settings(&orch.url(), &[]), &outbox);
    assert!(orch.wait_until(|r| r.connected, WAIT));
    let expected: Vec<String> = (0..100).map(|i| format!("t{i:03}")).collect();
    for (i, id) in expected.iter().enumerate() {
        outbox.push(claimed(id));
        if i % 10 == 5 {
            assert!(orch.wait_until(|r| r.connected, WAIT));
            orch.drop_connection();
        }
    }
    let frames = orch.wait_for(
        |f| {
            let ids = task_ids(f);
            expected.iter().all(|e| ids.contains(e))
        },
        WAIT,
    );
    assert!(outbox.wait_empty(WAIT));
    let got = task_ids(&frames);
    let mut seen = std::collections::HashSet::new();
    let first_seen: Vec<String> = got.iter().filter(|id| seen.insert(*id)).cloned().collect();
    assert_eq!(first_seen, expected, "messages arrived out of order");
    let duplicates = got.len() - first_seen.len();
    eprintln!(
        "100 messages over {} connections: {duplicates} duplicate(s)",
        orch.handshakes().len()
    );
    assert_eq!(got, expected, "{duplicates} duplicate(s) arrived");
    assert!(orch.handshakes().len() >= 11);
    finish(handle);
}

#[test]
fn reconnect_delays_double_and_reset_after_a_good_handshake() {
    let orch = Orchestrator::start(Options::default());
    let outbox = Outbox::new();
    let mut s = settings(&orch.url(), &[]);
    s.backoff = BackoffPolicy {
        initial: Duration::from_millis(50),
        factor: 2,
        max: Duration::from_millis(400),
        jitter: 0.0,
    };
    let (handle, _rx) = start(s, &outbox);
    assert!(orch.wait_until(|r| r.connected, WAIT));
    orch.reject_handshakes(503, 5);
    orch.drop_connection();
    // 1 good + 5 refused + 1 good, then a drop and one more good.
    assert!(orch.wait_until(|r| r.handshakes.len() == 7 && r.connected, WAIT));
    orch.drop_connection();
    assert!(orch.wait_until(|r| r.handshakes.len() == 8 && r.connected, WAIT));
    let hs = orch.handshakes();
    let rejected: Vec<_> = hs.iter().map(|h| h.rejected_with).collect();
    assert_eq!(
        rejected,
        [
            None,
            Some(503),
            Some(503),
            Some(503),
            Some(503),
            Some(503),
            None,
            None
        ]
    );
    let gaps: Vec<Duration> = hs.windows(2).map(|w| w[1].at - w[0].at).collect();
    // After the loss: 50 (reset by the good handshake), then each refusal
    // doubles: 100, 200, 400, 400 (cap).
    let floors = [50, 50, 100, 200, 400, 400];
    for (i, (gap, floor)) in gaps.iter().zip(floors).enumerate() {
        assert!(
            *gap >= Duration::from_millis(floor),
            "gap {i} {gap:?} < {floor}ms"
        );
    }
    // The last gap follows a successful handshake: back to 50ms, not 400+.
    assert!(
        gaps[6] < Duration::from_millis(350),
        "no reset: {:?}",
        gaps[6]
    );
    assert!(logged(
        |_, s| s.contains("HTTP 503 Service Unavailable") && s.ends_with("retrying in 100ms")
    ));
    finish(handle);
}

#[test]
fn refused_key_is_logged_plainly_and_retried() {
    let orch = Orchestrator::start(Options::default());
    orch.reject_next_handshake(401);
    let outbox = Outbox::new();
    let (handle, _rx) = start(settings(&orch.url(), &[]), &outbox);
    assert!(orch.wait_until(|r| r.handshakes.len() == 2 && r.connected, WAIT));
    assert_eq!(orch.handshakes()[0].rejected_with, Some(401));
    assert!(logged(|l, s| l == log::Level::Error
        && s.contains(
            "HTTP 401 Unauthorized: the API key is wrong or lacks team scope"
        )));
    finish(handle);
    assert_no_secret_logged();
}

#[test]
fn silent_orchestrator_is_declared_dead_and_redialled() {
    let orch = Orchestrator::start(Options::default());
    let outbox = Outbox::new();
    let mut s = settings(&orch.url(), &[]);
    s.ping_interval = Duration::from_millis(50);
    s.dead_after = Duration::from_millis(300);
    let (handle, _rx) = start(s, &outbox);
    assert!(orch.wait_until(|r| r.connected, WAIT));
    // Answered pings keep a live connection up well past dead_after.
    assert!(!orch.wait_until(|r| r.handshakes.len() > 1, Duration::from_millis(900)));
    let silent_at = Instant::now();
    orch.set_silent(true);
    assert!(orch.wait_until(|r| r.handshakes.len() == 2, WAIT));
    let took = silent_at.elapsed();
    assert!(
        took >= Duration::from_millis(250),
        "declared dead after {took:?}"
    );
    assert!(
        took < Duration::from_secs(3),
        "declared dead only after {took:?}"
    );
    assert!(logged(|_, s| s.starts_with(
        "connection lost: no frame from the orchestrator for 300ms"
    )));
    finish(handle);
}

#[test]
fn finish_drains_the_outbox_then_closes_with_1000() {
    let orch = Orchestrator::start(Options::default());
    let outbox = Outbox::new();
    let (handle, _rx) = start(settings(&orch.url(), &[]), &outbox);
    assert!(orch.wait_until(|r| r.connected, WAIT));
    outbox.push(claimed("last-words"));
    let report = finish(handle);
    assert_eq!(
        report,
        connection::FinishReport {
            unacknowledged: 0,
            closed_cleanly: true,
            thread_exited: true
        }
    );
    assert_eq!(task_ids(&orch.received()), ["last-words"]);
    assert!(orch.wait_until(|r| !r.connected, WAIT));
    assert_eq!(orch.close_code(), Some(1000));
}

#[test]
fn finish_cuts_a_long_backoff_short() {
    let orch = Orchestrator::start(Options::default());
    orch.reject_next_handshake(500);
    let outbox = Outbox::new();
    let mut s = settings(&orch.url(), &[]);
    s.backoff.initial = Duration::from_secs(30);
    s.backoff.max = Duration::from_secs(30);
    let (handle, _rx) = start(s, &outbox);
    assert!(wait_logged(&orch, |_, l| l.contains("HTTP 500")
        && l.ends_with("retrying in 30s")));
    let t = Instant::now();
    let report = handle.finish(Instant::now() + Duration::from_secs(20));
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "finish waited {:?}",
        t.elapsed()
    );
    assert_eq!(report.unacknowledged, 0);
    assert!(report.thread_exited);
}

#[test]
fn malformed_frames_are_ignored_and_the_connection_stays_up() {
    let orch = Orchestrator::start(Options::default());
    let outbox = Outbox::new();
    let (handle, rx) = start(settings(&orch.url(), &[]), &outbox);
    assert!(orch.wait_until(|r| r.connected, WAIT));
    assert!(orch.send_text("not json"));
    assert!(orch.send(&json!({"type":"task_assignment","data":{"task":{}}})));
    assert!(orch.send(&json!({"type":"heartbeat","data":{}})));
    assert!(orch.send_message(tungstenite::Message::binary(vec![1, 2, 3])));
    assert!(orch.send(
        &json!({"type":"task_assignment","data":{"task_id":"T","task":null,
        "env_vars":{"K": ENV_SECRET}}})
    ));
    assert_eq!(
        next_message(&rx),
        Inbound::InvalidAssignment {
            task_id: "T".into(),
            problem: "task is missing".into()
        }
    );
    assert!(orch.send(
        &json!({"type":"task_assignment","data":{"task_id":"A","task":{"id":"A"},
        "env_vars":{"K": ENV_SECRET}}})
    ));
    match next_message(&rx) {
        Inbound::Assignment(a) => assert_eq!(a.env_vars["K"], ENV_SECRET),
        other => panic!("expected an assignment, got {other:?}"),
    }
    assert!(orch.send(&json!({"type":"task_cancellation","data":{"task_id":"A"}})));
    assert_eq!(
        next_message(&rx),
        Inbound::Cancellation {
            task_id: "A".into()
        }
    );
    assert_eq!(
        orch.handshakes().len(),
        1,
        "a malformed frame dropped the connection"
    );
    assert!(logged(
        |l, s| l == log::Level::Warn && s.contains("unknown type \"heartbeat\"")
    ));
    assert!(logged(
        |l, s| l == log::Level::Warn && s.contains("3-byte binary frame")
    ));
    assert!(logged(|l, s| l == log::Level::Error
        && s.contains(
            "malformed message from the orchestrator: not a JSON object"
        )));
    assert!(logged(
        |l, s| l == log::Level::Error && s.contains("task_assignment without a readable task_id")
    ));
    assert!(logged(
        |l, s| l == log::Level::Debug && s == "received task_assignment for task A"
    ));
    finish(handle);
    assert_no_secret_logged();
}

#[test]
fn oversized_frame_closes_and_the_worker_reconnects() {
    let orch = Orchestrator::start(Options::default());
    let outbox = Outbox::new();
    let (handle, _rx) = start(settings(&orch.url(), &[]), &outbox);
    assert!(orch.wait_until(|r| r.connected, WAIT));
    let big = format!(
        "\"{}\"",
        "x".repeat(oz_agent_worker::wire::MAX_MESSAGE_BYTES)
    );
    assert!(orch.send_text(&big));
    assert!(orch.wait_until(|r| r.handshakes.len() == 2 && r.connected, WAIT));
    assert!(logged(|_, s| s.starts_with(
        "connection lost: the orchestrator sent a message larger than 16 MiB"
    )));
    finish(handle);
}

/// Panics on an assignment for task `boom`, records everything else.
struct PanicsOnBoom(Sender<Event>);

impl InboundHandler for PanicsOnBoom {
    fn on_message(&mut self, msg: Inbound) {
        if matches!(&msg, Inbound::Assignment(a) if a.task_id == "boom") {
            panic!("handler bug on task boom");
        }
        let _ = self.0.send(Event::Msg(msg));
    }
    fn on_connection_change(&mut self, connected: bool) {
        let _ = self.0.send(Event::Connected(connected));
    }
}

#[test]
fn a_panic_on_the_connection_thread_drops_the_connection_and_dials_again() {
    let orch = Orchestrator::start(Options::default());
    let outbox = Outbox::new();
    let (tx, rx) = unbounded();
    let handle =
        connection::spawn(settings(&orch.url(), &[]), outbox.clone(), PanicsOnBoom(tx)).unwrap();
    assert!(orch.wait_until(|r| r.connected, WAIT));
    let assign =
        |id: &str| json!({"type":"task_assignment","data":{"task_id":id,"task":{"id":id}}});
    assert!(orch.send(&assign("boom")));
    // Readiness goes false, then the thread dials again by itself.
    let mut seen = Vec::new();
    let deadline = Instant::now() + WAIT;
    while seen != [true, false, true] {
        match rx
            .recv_deadline(deadline)
            .expect("no reconnect after the panic")
        {
            Event::Connected(c) => seen.push(c),
            Event::Msg(m) => panic!("unexpected message {m:?}"),
        }
    }
    assert!(orch.wait_until(|r| r.handshakes.len() == 2 && r.connected, WAIT));
    // The new connection works both ways.
    outbox.push(claimed("after"));
    assert!(orch.send(&assign("next")));
    match next_message(&rx) {
        Inbound::Assignment(a) => assert_eq!(a.task_id, "next"),
        other => panic!("expected the next assignment, got {other:?}"),
    }
    let frames = orch.wait_for(|f| task_ids(f).contains(&"after".to_owned()), WAIT);
    assert_eq!(task_ids(&frames), ["after"]);
    assert!(logged(|l, s| l == log::Level::Error
        && s.starts_with(
            "the connection thread stopped on an internal error"
        )));
    assert!(finish(handle).thread_exited);
}

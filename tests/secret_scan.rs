//! No secret reaches the worker's log or its metrics, at debug level, in
//! both log formats, through the flows that handle secrets: the API key,
//! `env_vars` (printed by the container and logged as its output), the
//! operator's `-e`, a registry password from `auths` in `DOCKER_CONFIG`, and
//! a password returned by a credential helper on `PATH`, and the OTLP
//! headers (`OTEL_EXPORTER_OTLP_HEADERS` usually holds a collector's API key)
//! while a hostile collector echoes every request back in its refusal.
//! Every secret is a marker string; the log, a `/metrics` scrape and the
//! pushed metrics and spans must contain none of them.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use oz_standin::registry::{Credentials, Registry, RegistryOpts};
use oz_standin::{Options, Orchestrator};
use serde_json::{Value, json};
use support::otlp::Receiver;
use support::process::WorkerProcess;
use support::tasks::{self, terminal};
use support::{BUSYBOX, Fixture, SIDECAR};

const WAIT: Duration = Duration::from_secs(90);
const API_KEY: &str = "api-key-MARKER-7e01";
const ENV_SECRET: &str = "env-vars-MARKER-4b22";
const OPERATOR_SECRET: &str = "operator-env-MARKER-9c33";
const AUTHS_PASSWORD: &str = "auths-pw-MARKER-1d44";
const HELPER_PASSWORD: &str = "helper-pw-MARKER-5e55";
const HELPER_USER: &str = "oz-helper-user";
const OTLP_SECRET: &str = "otlp-header-MARKER-6f66";
/// Sent percent-encoded: `otlp-enc/MARKER-7a77` on the wire.
const OTLP_ENCODED: &str = "otlp-enc%2FMARKER-7a77";

/// Standard base64, to name the encoded forms of the credentials too.
fn base64(bytes: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ABC[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// `GET path` over HTTP/1.0; the whole reply.
fn http_get(addr: &str, path: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut reply = String::new();
    s.read_to_string(&mut reply).unwrap();
    reply
}

/// The address from the worker's "serving /metrics … on ADDR" line.
fn metrics_addr(worker: &WorkerProcess) -> String {
    let needle = "/readyz on ";
    assert!(
        worker.wait_count(needle, 1, WAIT),
        "no metrics line:\n{}",
        worker.text()
    );
    let text = worker.text();
    let rest = &text[text.find(needle).unwrap() + needle.len()..];
    rest.split(|c: char| c.is_whitespace() || c == '"')
        .next()
        .unwrap()
        .to_owned()
}

struct World {
    fx: Fixture,
    auths_registry: Registry,
    helper_registry: Registry,
    image: String,
    sidecar: String,
    docker_config: std::path::PathBuf,
    bin: std::path::PathBuf,
    forbidden: Vec<String>,
}

/// Two registries with users: the task image behind one whose password is
/// in `auths`, the sidecar behind one whose password a credential helper
/// gives out.
fn world() -> World {
    let mut fx = Fixture::new("secrets");
    let auths_registry = Registry::start(RegistryOpts {
        auth: Some(Credentials::new("oz-auths-user", AUTHS_PASSWORD)),
    });
    let helper_registry = Registry::start(RegistryOpts {
        auth: Some(Credentials::new(HELPER_USER, HELPER_PASSWORD)),
    });
    let image = auths_registry.push(BUSYBOX, "oz-secret/busybox:1").unwrap();
    let sidecar = helper_registry.push(SIDECAR, "oz-secret/agent:1").unwrap();
    fx.forget_tag(&image);
    fx.forget_tag(&sidecar);

    // The `auths` entry exactly as `docker login` wrote it, next to a
    // credHelpers entry for the other registry.
    let login: Value = serde_json::from_str(
        &std::fs::read_to_string(auths_registry.docker_config().join("config.json")).unwrap(),
    )
    .unwrap();
    let auths_addr = auths_registry.addr().to_string();
    let helper_addr = helper_registry.addr().to_string();
    let auth_entry = login["auths"][&auths_addr].clone();
    assert!(auth_entry["auth"].is_string(), "{login}");
    let docker_config = fx.out.join("docker-config");
    std::fs::create_dir_all(&docker_config).unwrap();
    std::fs::write(
        docker_config.join("config.json"),
        json!({"auths": {auths_addr.clone(): auth_entry},
               "credHelpers": {helper_addr.clone(): "test"}})
        .to_string(),
    )
    .unwrap();
    let bin = fx.out.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let helper = bin.join("docker-credential-test");
    std::fs::write(
        &helper,
        format!(
            "#!/bin/sh\n[ \"$1\" = get ] || exit 1\nread key\n[ \"$key\" = \"{helper_addr}\" ] || exit 1\n\
             echo '{{\"ServerURL\":\"{helper_addr}\",\"Username\":\"{HELPER_USER}\",\"Secret\":\"{HELPER_PASSWORD}\"}}'\n"
        ),
    )
    .unwrap();
    std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();

    let forbidden = vec![
        API_KEY.to_owned(),
        ENV_SECRET.to_owned(),
        OPERATOR_SECRET.to_owned(),
        AUTHS_PASSWORD.to_owned(),
        HELPER_PASSWORD.to_owned(),
        OTLP_SECRET.to_owned(),
        "otlp-enc/MARKER-7a77".to_owned(),
        "MARKER".to_owned(),
        auth_entry["auth"].as_str().unwrap().to_owned(),
        base64(format!("{HELPER_USER}:{HELPER_PASSWORD}").as_bytes()),
    ];
    World {
        fx,
        auths_registry,
        helper_registry,
        image,
        sidecar,
        docker_config,
        bin,
        forbidden,
    }
}

fn assert_clean(what: &str, text: &str, forbidden: &[String]) {
    for secret in forbidden {
        assert!(
            !text.contains(secret.as_str()),
            "{secret} leaked in {what}:\n{text}"
        );
    }
}

#[test]
fn no_secret_reaches_the_log_or_the_metrics_in_either_format() {
    let w = world();
    let orch = Orchestrator::start(Options::default());
    let path = format!(
        "{}:{}",
        w.bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let operator_env = format!("OPERATOR_TOKEN={OPERATOR_SECRET}");
    let collector = Receiver::start(&["--status", "401", "--echo"]);
    let otlp_headers = format!("api-key={OTLP_SECRET},x-other={OTLP_ENCODED}");
    for (round, format) in ["text", "json"].into_iter().enumerate() {
        // Pull both images again in each round, so each format sees the
        // credentials used.
        for image in [&w.image, &w.sidecar] {
            w.fx.docker.image_remove(image).unwrap();
        }
        let args = tasks::worker_args(
            &w.fx,
            &orch.url(),
            &[
                "--log-level",
                "debug",
                "--log-format",
                format,
                "-e",
                &operator_env,
            ],
        );
        let config = w.docker_config.display().to_string();
        let mut worker = WorkerProcess::start(
            &tasks::strs(&args),
            &[
                ("WARP_API_KEY", API_KEY),
                ("DOCKER_CONFIG", &config),
                ("PATH", &path),
                ("OTEL_METRICS_EXPORTER", "prometheus,otlp"),
                ("OTEL_TRACES_EXPORTER", "otlp"),
                ("OTEL_EXPORTER_OTLP_ENDPOINT", &collector.base()),
                ("OTEL_EXPORTER_OTLP_HEADERS", &otlp_headers),
                ("OTEL_METRIC_EXPORT_INTERVAL", "200"),
                ("OTEL_BSP_SCHEDULE_DELAY", "100"),
                ("OTEL_EXPORTER_PROMETHEUS_HOST", "127.0.0.1"),
                ("OTEL_EXPORTER_PROMETHEUS_PORT", "0"),
            ],
        );
        assert!(
            orch.wait_until(|r| r.connected && r.handshakes.len() == round + 1, WAIT),
            "{}",
            worker.text()
        );
        let id = format!("sec-{format}");
        // Exit 3 makes the worker log the container's output, which prints
        // the whole environment (the stub's OZ_TEST_PRINT_ENV).
        assert!(tasks::send_assignment(
            &orch,
            &id,
            &w.image,
            &w.sidecar,
            json!({"SECRET_TOKEN": ENV_SECRET, "OZ_TEST_EXIT": "3", "OZ_TEST_PRINT_ENV": "1"}),
        ));
        let frames = orch.wait_for(|f| !terminal(f, &id).is_empty(), WAIT);
        let end = terminal(&frames, &id)[0].clone();
        assert_eq!(
            end["data"]["failure_reason"],
            "container_exit",
            "{end}\n{}",
            worker.text()
        );
        assert_eq!(end["data"]["exit_code"], 3);

        let addr = metrics_addr(&worker);
        let metrics = http_get(&addr, "/metrics");
        assert!(metrics.starts_with("HTTP/1.1 200"), "{metrics}");
        assert!(metrics.contains(&w.fx.worker_id), "{metrics}");
        assert_clean("/metrics", &metrics, &w.forbidden);
        for health in ["/healthz", "/readyz"] {
            assert_clean(health, &http_get(&addr, health), &w.forbidden);
        }

        worker.signal(libc::SIGTERM);
        assert_eq!(
            worker.wait_exit(WAIT).and_then(|s| s.code()),
            Some(0),
            "{}",
            worker.text()
        );
        let text = worker.text();
        // The flows really ran: both pulls used their credentials, and the
        // container's output was logged, masked.
        for (registry, user) in [
            (&w.auths_registry, "oz-auths-user"),
            (&w.helper_registry, HELPER_USER),
        ] {
            let line = format!("pulling image {}/oz-secret/", registry.addr());
            assert!(
                text.lines()
                    .any(|l| l.contains(&line) && l.contains(&format!(" as {user}"))),
                "no authenticated pull from {} ({format}):\n{text}",
                registry.addr()
            );
        }
        assert!(
            text.contains("SECRET_TOKEN=[REDACTED]"),
            "container output not logged masked ({format}):\n{text}"
        );
        assert!(
            text.contains("OPERATOR_TOKEN=[REDACTED]"),
            "the operator's -e value not logged masked ({format}):\n{text}"
        );
        // The collector got the headers (decoded), refused with them echoed,
        // and the refusal reached the log masked.
        let pushed = collector.requests();
        assert!(
            pushed.iter().any(|q| q["headers"]["api-key"] == OTLP_SECRET
                && q["headers"]["x-other"] == "otlp-enc/MARKER-7a77"),
            "the OTLP headers were not sent"
        );
        assert!(
            text.lines()
                .any(|l| l.contains("answered HTTP 401") && l.contains("[REDACTED]")),
            "no masked refusal in the {format} log:\n{text}"
        );
        for q in &pushed {
            assert_clean("a pushed request", &q["request"].to_string(), &w.forbidden);
        }
        assert_clean(&format!("the {format} log"), &text, &w.forbidden);
        if format == "json" {
            for line in worker.lines() {
                serde_json::from_str::<Value>(&line)
                    .unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
            }
        }
    }
    let (containers, volumes) = w.fx.leftovers();
    assert_eq!(containers, Vec::<String>::new());
    assert!(volumes.len() <= 1, "{volumes:?}");
}

#[test]
fn base64_matches_the_standard_alphabet() {
    assert_eq!(base64(b"user:pw"), "dXNlcjpwdw==");
    assert_eq!(base64(b"ab"), "YWI=");
    assert_eq!(base64(b"abc"), "YWJj");
}

/// Lines of the multi-line secrets: each long enough to be masked alone.
const TASK_PEM: [&str; 4] = [
    "-----BEGIN TASK KEY-----",
    "TASKPEM1MARKERMIIEvQIBADANBgkqhkiG9w0BAQEFAASC",
    "TASKPEM2MARKERBKcwggSjAgEAAoIBAQC7",
    "-----END TASK KEY-----",
];
const OPERATOR_PEM: [&str; 3] = [
    "OPPEM1MARKER-first-line-of-the-key",
    "OPPEM2MARKER-second-line-of-the-key",
    "OPPEM3MARKER-third",
];

#[test]
fn each_line_of_a_multi_line_secret_is_masked_at_debug_level() {
    let mut fx = Fixture::new("pem");
    let sidecar = fx.sidecar("pem");
    let orch = Orchestrator::start(Options::default());
    let operator_env = format!("OPERATOR_PEM={}", OPERATOR_PEM.join("\n"));
    let args = tasks::worker_args(
        &fx,
        &orch.url(),
        &["--log-level", "debug", "-e", &operator_env],
    );
    let mut worker = WorkerProcess::start(&tasks::strs(&args), &[("WARP_API_KEY", API_KEY)]);
    assert!(orch.wait_until(|r| r.connected, WAIT), "{}", worker.text());
    // Exit 3: the container's output (its whole environment, a line at a
    // time) is logged.
    let task_pem = format!("{}\n", TASK_PEM.join("\n"));
    assert!(tasks::send_assignment(
        &orch,
        "pem",
        BUSYBOX,
        &sidecar,
        json!({"TASK_PEM": task_pem, "OZ_TEST_EXIT": "3", "OZ_TEST_PRINT_ENV": "1"}),
    ));
    let frames = orch.wait_for(|f| !terminal(f, "pem").is_empty(), WAIT);
    assert_eq!(terminal(&frames, "pem")[0]["data"]["exit_code"], 3);
    worker.signal(libc::SIGTERM);
    assert_eq!(worker.wait_exit(WAIT).and_then(|s| s.code()), Some(0));
    let text = worker.text();
    // The output really was logged a line at a time, each line masked.
    assert!(text.contains("[container] TASK_PEM=[REDACTED]"), "{text}");
    assert!(
        text.contains("[container] OPERATOR_PEM=[REDACTED]"),
        "{text}"
    );
    assert!(
        worker
            .lines()
            .iter()
            .filter(|l| l.ends_with("[container] [REDACTED]"))
            .count()
            >= TASK_PEM.len() - 1 + OPERATOR_PEM.len() - 1,
        "{text}"
    );
    for line in TASK_PEM.iter().chain(OPERATOR_PEM.iter()) {
        assert!(!text.contains(line), "{line} leaked:\n{text}");
    }
    assert!(!text.contains("MARKER"), "{text}");
    fx.wait_no_containers(WAIT);
}

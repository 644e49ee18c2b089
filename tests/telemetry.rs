//! The worker's telemetry as an operator with an OpenTelemetry collector
//! sees it: the real worker binary running real tasks in Docker against the
//! stand-in orchestrator, pushing to a real OTLP receiver that decodes with
//! the `opentelemetry-proto` package (not our code). The push must equal
//! the Prometheus scrape of the same process; http/json, gzip, headers and
//! the endpoint path rules as the OpenTelemetry specification says; a
//! collector that fails or hangs must not hold up a task; one trace per task
//! with its children; pull progress seen through a throttled registry.

mod support;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use oz_standin::registry::{Registry, RegistryOpts};
use oz_standin::{Options, Orchestrator};
use serde_json::{Value, json};
use support::otlp::Receiver;
use support::process::WorkerProcess;
use support::stall_proxy::StallProxy;
use support::tasks::{self, terminal, worker_args};
use support::{BUSYBOX, Fixture, docker_cli};

const WAIT: Duration = Duration::from_secs(60);
const API_KEY: &str = "oz-telemetry-test-key";

fn http_get(addr: &str, path: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut reply = String::new();
    s.read_to_string(&mut reply).unwrap();
    reply.split_once("\r\n\r\n").unwrap().1.to_owned()
}

fn metrics_addr(worker: &WorkerProcess) -> String {
    let needle = "/readyz on ";
    assert!(worker.wait_count(needle, 1, WAIT), "{}", worker.text());
    let text = worker.text();
    let rest = &text[text.find(needle).unwrap() + needle.len()..];
    rest.split(|c: char| c.is_whitespace() || c == '"')
        .next()
        .unwrap()
        .to_owned()
}

/// A worker process against `orch` with `env` added to the API key.
fn start_worker(
    fx: &Fixture,
    orch: &Orchestrator,
    extra: &[&str],
    env: &[(&str, &str)],
) -> WorkerProcess {
    let args = worker_args(fx, &orch.url(), extra);
    let mut all = vec![("WARP_API_KEY", API_KEY)];
    all.extend_from_slice(env);
    let worker = WorkerProcess::start(&tasks::strs(&args), &all);
    assert!(orch.wait_until(|r| r.connected, WAIT), "{}", worker.text());
    worker
}

/// Runs task `id` (exit code `exit`) and returns its terminal message.
fn run_task(
    orch: &Orchestrator,
    worker: &WorkerProcess,
    id: &str,
    image: &str,
    sidecar: &str,
    exit: u32,
) -> Value {
    assert!(tasks::send_assignment(
        orch,
        id,
        image,
        sidecar,
        json!({"OZ_TEST_EXIT": exit.to_string()}),
    ));
    let frames = orch.wait_for(|f| !terminal(f, id).is_empty(), WAIT);
    terminal(&frames, id)
        .first()
        .map(|v| (*v).clone())
        .unwrap_or_else(|| panic!("{id} never ended:\n{}", worker.text()))
}

fn label_key(name: &str, mut labels: Vec<(String, String)>) -> String {
    labels.sort();
    let inner: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
    format!("{name}{{{}}}", inner.join(","))
}

/// The scrape's samples (scope labels dropped; target_info and the HTTP
/// handler's own counter are not OTLP metrics) and each family's TYPE.
fn scrape_samples(text: &str) -> (BTreeMap<String, f64>, BTreeMap<String, String>) {
    let mut samples = BTreeMap::new();
    let mut types = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            types.insert(name.to_owned(), kind.to_owned());
            continue;
        }
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap();
        let (name, labels) = match series.split_once('{') {
            Some((n, l)) => (n, l.trim_end_matches('}')),
            None => (series, ""),
        };
        if name.starts_with("promhttp_") || name == "target_info" {
            continue;
        }
        let mut pairs = Vec::new();
        for pair in labels.split("\",").filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once("=\"").unwrap();
            let v = v.trim_end_matches('"');
            if !k.starts_with("otel_scope_") {
                pairs.push((k.to_owned(), v.replace("\\\"", "\"").replace("\\\\", "\\")));
            }
        }
        let value = match value {
            "+Inf" => f64::INFINITY,
            v => v.parse().unwrap(),
        };
        samples.insert(label_key(name, pairs), value);
    }
    (samples, types)
}

fn attrs(list: &Value) -> Vec<(String, String)> {
    list.as_array()
        .map(|a| {
            a.iter()
                .map(|kv| {
                    let v = &kv["value"];
                    let text = v["stringValue"]
                        .as_str()
                        .map(str::to_owned)
                        .or_else(|| v["intValue"].as_str().map(str::to_owned))
                        .unwrap_or_else(|| v.to_string());
                    (kv["key"].as_str().unwrap().to_owned(), text)
                })
                .collect()
        })
        .unwrap_or_default()
}

fn num(v: &Value) -> f64 {
    match v {
        Value::String(s) => s.parse().unwrap(),
        Value::Number(n) => n.as_f64().unwrap(),
        Value::Null => 0.0,
        other => panic!("not a number: {other}"),
    }
}

/// A decoded `ExportMetricsServiceRequest` as scrape samples, and each
/// metric's (prometheus type it maps to, unit, description).
/// Each metric's (Prometheus type it maps to, unit, description).
type Kinds = BTreeMap<String, (String, String, String)>;

fn otlp_samples(req: &Value) -> (BTreeMap<String, f64>, Kinds) {
    let mut samples = BTreeMap::new();
    let mut kinds = BTreeMap::new();
    let scope = &req["resourceMetrics"][0]["scopeMetrics"][0];
    assert_eq!(
        scope["scope"]["name"],
        "github.com/warpdotdev/oz-agent-worker"
    );
    for m in scope["metrics"].as_array().unwrap() {
        let name = m["name"].as_str().unwrap();
        let unit = m["unit"].as_str().unwrap_or("").to_owned();
        let help = m["description"].as_str().unwrap_or("").to_owned();
        let kind = if let Some(g) = m.get("gauge") {
            for dp in g["dataPoints"].as_array().unwrap() {
                samples.insert(label_key(name, attrs(&dp["attributes"])), num(&dp["asInt"]));
            }
            "gauge"
        } else if let Some(s) = m.get("sum") {
            assert_eq!(
                s["aggregationTemporality"], "AGGREGATION_TEMPORALITY_CUMULATIVE",
                "{name}"
            );
            for dp in s["dataPoints"].as_array().unwrap() {
                samples.insert(label_key(name, attrs(&dp["attributes"])), num(&dp["asInt"]));
            }
            if s["isMonotonic"] == true {
                "counter"
            } else {
                "gauge"
            }
        } else {
            let h = &m["histogram"];
            assert_eq!(
                h["aggregationTemporality"], "AGGREGATION_TEMPORALITY_CUMULATIVE",
                "{name}"
            );
            for dp in h["dataPoints"].as_array().unwrap() {
                let labels = attrs(&dp["attributes"]);
                let bounds = dp["explicitBounds"].as_array().unwrap();
                let counts = dp["bucketCounts"].as_array().unwrap();
                assert_eq!(counts.len(), bounds.len() + 1, "{name}");
                let mut cumulative = 0.0;
                for (i, c) in counts.iter().enumerate() {
                    cumulative += num(c);
                    let le = bounds.get(i).map_or("+Inf".to_owned(), |b| {
                        let b = num(b);
                        if b.fract() == 0.0 {
                            format!("{}", b as i64)
                        } else {
                            b.to_string()
                        }
                    });
                    let mut l = labels.clone();
                    l.push(("le".into(), le));
                    samples.insert(label_key(&format!("{name}_bucket"), l), cumulative);
                }
                samples.insert(
                    label_key(&format!("{name}_sum"), labels.clone()),
                    num(&dp["sum"]),
                );
                samples.insert(
                    label_key(&format!("{name}_count"), labels.clone()),
                    num(&dp["count"]),
                );
                assert!(num(&dp["min"]) <= num(&dp["max"]), "{name}");
            }
            "histogram"
        };
        kinds.insert(name.to_owned(), (kind.to_owned(), unit, help));
    }
    (samples, kinds)
}

fn resource(req: &Value, key: &str) -> BTreeMap<String, String> {
    attrs(&req[key][0]["resource"]["attributes"])
        .into_iter()
        .collect()
}

#[test]
fn the_push_equals_the_scrape_after_real_tasks_and_each_task_has_a_trace() {
    let mut fx = Fixture::new("otlp-eq");
    let sidecar = fx.sidecar("otlp-eq");
    let receiver = Receiver::start(&[]);
    let orch = Orchestrator::start(Options::default());
    let base = receiver.base();
    let mut worker = start_worker(
        &fx,
        &orch,
        &[],
        &[
            ("OTEL_METRICS_EXPORTER", "prometheus,otlp"),
            ("OTEL_EXPORTER_PROMETHEUS_HOST", "127.0.0.1"),
            ("OTEL_EXPORTER_PROMETHEUS_PORT", "0"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &base),
            ("OTEL_METRIC_EXPORT_INTERVAL", "300"),
            ("OTEL_TRACES_EXPORTER", "otlp"),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
            (
                "OTEL_RESOURCE_ATTRIBUTES",
                "deployment.environment=test%20env,novalue",
            ),
        ],
    );
    let ok = run_task(&orch, &worker, "tel-ok", BUSYBOX, &sidecar, 0);
    assert_eq!(ok["type"], "task_completed", "{ok}\n{}", worker.text());
    let failed = run_task(&orch, &worker, "tel-fail", BUSYBOX, &sidecar, 3);
    assert_eq!(
        failed["data"]["failure_reason"], "container_exit",
        "{failed}"
    );
    let addr = metrics_addr(&worker);

    // A push taken while nothing changes must equal the scrapes around it.
    let mut compared = false;
    for _ in 0..10 {
        let before = http_get(&addr, "/metrics");
        let t0 = Instant::now();
        // The second push to arrive after the scrape: the first may carry a
        // snapshot taken before it (built, then sent).
        let metrics_pushes = |r: &[Value]| r.iter().filter(|q| q["signal"] == "metrics").count();
        let pushes = receiver.wait_after(t0, |r| metrics_pushes(r) >= 2, WAIT);
        let after = http_get(&addr, "/metrics");
        let (s1, types) = scrape_samples(&before);
        if s1 != scrape_samples(&after).0 {
            continue; // something moved meanwhile (an acknowledgement); take another
        }
        let Some(push) = pushes.iter().filter(|q| q["signal"] == "metrics").nth(1) else {
            continue;
        };
        assert_eq!(push["path"], "/v1/metrics");
        assert_eq!(push["content_type"], "application/x-protobuf");
        let req = &push["request"];
        let (pushed, kinds) = otlp_samples(req);
        assert_eq!(pushed, s1, "push vs scrape");
        for (name, (kind, unit, help)) in &kinds {
            assert_eq!(types.get(name), Some(kind), "{name}");
            assert!(
                before.contains(&format!("# HELP {name} {help}\n")),
                "{name}"
            );
            let want = if name.ends_with("_seconds") {
                "s"
            } else if name.ends_with("_bytes_total") {
                "By"
            } else {
                ""
            };
            assert_eq!(unit, want, "{name}");
        }
        assert_eq!(
            pushed[r#"oz_worker_tasks_completed_total{result="succeeded"}"#],
            1.0
        );
        assert_eq!(
            pushed[r#"oz_worker_task_failures_total{phase="backend",reason="container_exit"}"#],
            1.0
        );
        assert_eq!(
            pushed[r#"oz_worker_task_duration_seconds_count{result="failed"}"#],
            1.0
        );
        assert_eq!(pushed["oz_worker_docker_up{}"], 1.0);
        assert_eq!(pushed["oz_worker_status_messages_unacknowledged{}"], 0.0);
        assert!(pushed["oz_worker_sidecar_copy_bytes_total{}"] > 0.0);
        assert_eq!(
            pushed[r#"oz_worker_sidecar_copy_duration_seconds_count{result="succeeded"}"#],
            1.0
        );
        let res = resource(req, "resourceMetrics");
        assert_eq!(res["service.name"], "oz-agent-worker");
        assert_eq!(res["worker.id"], fx.worker_id);
        assert_eq!(res["deployment.environment"], "test env");
        assert_eq!(res["telemetry.sdk.language"], "rust");
        assert!(
            before.contains("deployment_environment=\"test env\""),
            "{before}"
        );
        compared = true;
        break;
    }
    assert!(compared, "the scrape never held still around a push");
    assert_eq!(
        worker
            .lines()
            .iter()
            .filter(|l| l.contains("OTEL_RESOURCE_ATTRIBUTES: ignored 1 entry"))
            .count(),
        1,
        "{}",
        worker.text()
    );

    // Traces: one task span per task, children under it, status from the outcome.
    let spans_of = |reqs: &[Value]| -> Vec<Value> {
        reqs.iter()
            .filter(|q| q["signal"] == "traces")
            .flat_map(|q| {
                q["request"]["resourceSpans"][0]["scopeSpans"][0]["spans"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
            })
            .collect()
    };
    let task_span = |spans: &[Value], id: &str| -> Option<Value> {
        spans
            .iter()
            .find(|s| {
                s["name"] == "oz_worker.task"
                    && attrs(&s["attributes"]).contains(&("task.id".into(), id.into()))
            })
            .cloned()
    };
    let all = receiver.wait_after(
        Instant::now() - WAIT,
        |r| {
            let spans = spans_of(r);
            task_span(&spans, "tel-ok").is_some() && task_span(&spans, "tel-fail").is_some()
        },
        WAIT,
    );
    let spans = spans_of(&all);
    let ok_span = task_span(&spans, "tel-ok").unwrap();
    let fail_span = task_span(&spans, "tel-fail").unwrap();
    assert_eq!(ok_span["status"]["code"], "STATUS_CODE_OK", "{ok_span}");
    assert_eq!(
        fail_span["status"]["code"], "STATUS_CODE_ERROR",
        "{fail_span}"
    );
    assert_eq!(fail_span["status"]["message"], "container_exit");
    assert_eq!(ok_span["kind"], "SPAN_KIND_INTERNAL");
    assert!(attrs(&ok_span["attributes"]).contains(&("task.title".into(), "fault test".into())));
    let events: Vec<&str> = fail_span["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        events,
        [
            "task.assigned",
            "task.claimed",
            "task.started",
            "backend.started",
            "task.failed",
            "exception"
        ]
    );
    for task in [&ok_span, &fail_span] {
        let children: Vec<&Value> = spans
            .iter()
            .filter(|s| s["parentSpanId"] == task["spanId"] && s["traceId"] == task["traceId"])
            .collect();
        let names: Vec<&str> = children
            .iter()
            .map(|s| s["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            names,
            ["oz_worker.sidecar_prep", "oz_worker.container_run"],
            "{task}"
        );
        let run = children[1];
        let want = if task == &ok_span {
            "STATUS_CODE_OK"
        } else {
            "STATUS_CODE_ERROR"
        };
        assert_eq!(run["status"]["code"], want);
        assert!(num(&task["startTimeUnixNano"]) <= num(&run["startTimeUnixNano"]));
        assert!(num(&run["endTimeUnixNano"]) <= num(&task["endTimeUnixNano"]));
    }
    let res = resource(
        &all.iter().find(|q| q["signal"] == "traces").unwrap()["request"],
        "resourceSpans",
    );
    assert_eq!(res["worker.id"], fx.worker_id);

    // The last export goes out at shutdown.
    let t0 = Instant::now();
    worker.signal(libc::SIGTERM);
    assert_eq!(
        worker.wait_exit(WAIT).and_then(|s| s.code()),
        Some(0),
        "{}",
        worker.text()
    );
    // Sent before the exit; the receiver's reader may take a moment to
    // hand it over.
    let last = receiver.wait_after(
        t0,
        |r| r.iter().any(|q| q["signal"] == "metrics"),
        Duration::from_secs(10),
    );
    assert!(
        !last.is_empty(),
        "no final export at shutdown:\n{}",
        worker.text()
    );
    fx.assert_no_containers();
}

#[test]
fn json_gzip_headers_and_endpoint_paths_as_the_spec_says() {
    let mut fx = Fixture::new("otlp-json");
    let sidecar = fx.sidecar("otlp-json");
    let receiver = Receiver::start(&[]);
    let orch = Orchestrator::start(Options::default());
    let metrics_base = format!("{}/base/", receiver.base());
    let traces_url = format!("{}/custom/traces", receiver.base());
    let mut worker = start_worker(
        &fx,
        &orch,
        &["--log-format", "json"],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &metrics_base),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
            ("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip"),
            (
                "OTEL_EXPORTER_OTLP_HEADERS",
                "api-key=otlp%2Fkey-s3cret-9731,X-Tenant=t1",
            ),
            ("OTEL_METRIC_EXPORT_INTERVAL", "200"),
            ("OTEL_TRACES_EXPORTER", "otlp"),
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", &traces_url),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ],
    );
    let ok = run_task(&orch, &worker, "tel-json", BUSYBOX, &sidecar, 0);
    assert_eq!(ok["type"], "task_completed", "{}", worker.text());
    let has_task_span =
        |q: &Value| q["signal"] == "traces" && q.to_string().contains("\"oz_worker.task\"");
    let reqs = receiver.wait_after(
        Instant::now() - WAIT,
        |r| r.iter().any(|q| q["signal"] == "metrics") && r.iter().any(has_task_span),
        WAIT,
    );
    let m = reqs.iter().find(|q| q["signal"] == "metrics").unwrap();
    assert_eq!(m["path"], "/base/v1/metrics");
    assert_eq!(m["content_type"], "application/json");
    assert_eq!(m["encoding"], "gzip");
    assert_eq!(m["headers"]["api-key"], "otlp/key-s3cret-9731");
    assert_eq!(m["headers"]["x-tenant"], "t1");
    assert!(
        m["headers"]["user-agent"]
            .as_str()
            .unwrap()
            .starts_with("oz-agent-worker/")
    );
    let (samples, _) = otlp_samples(&m["request"]);
    assert!(samples.contains_key("oz_worker_connected{}"), "{samples:?}");
    let t = reqs.iter().find(|q| has_task_span(q)).unwrap();
    assert_eq!(t["path"], "/custom/traces");
    assert_eq!(t["content_type"], "application/json");
    let spans = t["request"]["resourceSpans"][0]["scopeSpans"][0]["spans"]
        .as_array()
        .unwrap();
    assert!(spans.iter().any(|s| s["name"] == "oz_worker.task"), "{t}");

    worker.signal(libc::SIGTERM);
    assert_eq!(
        worker.wait_exit(WAIT).and_then(|s| s.code()),
        Some(0),
        "{}",
        worker.text()
    );
    let text = worker.text();
    assert!(!text.contains("s3cret-9731"), "{text}");
    // Every line is JSON; every line about the task (the claim line too) names it.
    let lines: Vec<Value> = worker
        .lines()
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    for l in &lines {
        assert_eq!(l["worker_id"], fx.worker_id.as_str(), "{l}");
        let msg = l["message"].as_str().unwrap();
        if msg.contains("tel-json") || msg.contains("container") {
            assert_eq!(l["task_id"], "tel-json", "{l}");
        }
    }
    assert!(lines.iter().any(|l| {
        l["message"]
            .as_str()
            .unwrap()
            .starts_with("claimed task tel-json")
    }));
    let ended = lines
        .iter()
        .find(|l| {
            l["message"]
                .as_str()
                .unwrap()
                .starts_with("task tel-json ended")
        })
        .unwrap();
    assert!(ended["duration_seconds"].as_f64().unwrap() > 0.0, "{ended}");
    fx.assert_no_containers();
}

#[test]
fn a_collector_that_fails_or_hangs_holds_up_no_task() {
    let mut fx = Fixture::new("otlp-bad");
    let sidecar = fx.sidecar("otlp-bad");
    let orch = Orchestrator::start(Options::default());

    // 503 on every push: tasks run, one WARN for the one distinct error.
    let busy = Receiver::start(&["--status", "503"]);
    let mut worker = start_worker(
        &fx,
        &orch,
        &["--log-format", "json"],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &busy.base()),
            ("OTEL_METRIC_EXPORT_INTERVAL", "100"),
        ],
    );
    let failed = run_task(&orch, &worker, "tel-503", BUSYBOX, &sidecar, 5);
    assert_eq!(failed["data"]["exit_code"], 5);
    assert!(
        busy.wait_after(Instant::now() - WAIT, |r| r.len() >= 3, WAIT)
            .len()
            >= 3
    );
    let warns: Vec<String> = worker
        .lines()
        .into_iter()
        .filter(|l| l.contains("OTLP metrics push"))
        .collect();
    assert_eq!(warns.len(), 1, "{warns:?}");
    let w: Value = serde_json::from_str(&warns[0]).unwrap();
    assert_eq!(w["level"], "WARN");
    assert!(
        w["message"]
            .as_str()
            .unwrap()
            .contains("the collector answered HTTP 503: collector busy"),
        "{w}"
    );
    // The task failure itself: WARN, with its fields.
    let fail_line = worker
        .lines()
        .into_iter()
        .map(|l| serde_json::from_str::<Value>(&l).unwrap())
        .find(|l| {
            l["message"]
                .as_str()
                .unwrap()
                .starts_with("task tel-503 failed")
        })
        .unwrap();
    assert_eq!(fail_line["level"], "WARN");
    assert_eq!(fail_line["exit_code"], 5);
    assert_eq!(fail_line["failure_reason"], "container_exit");
    assert_eq!(fail_line["task_id"], "tel-503");
    worker.signal(libc::SIGTERM);
    assert_eq!(worker.wait_exit(WAIT).and_then(|s| s.code()), Some(0));
    drop(worker);

    // A collector that accepts and never answers: the task still ends, and
    // shutdown waits for the last export no longer than its bound.
    let hung = Receiver::start(&["--hang"]);
    let mut worker = start_worker(
        &fx,
        &orch,
        &[],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &hung.base()),
            ("OTEL_METRIC_EXPORT_INTERVAL", "100"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "600000"),
            ("OTEL_METRIC_EXPORT_TIMEOUT", "600000"),
        ],
    );
    assert!(
        !hung
            .wait_after(Instant::now() - WAIT, |r| !r.is_empty(), WAIT)
            .is_empty()
    );
    let ok = run_task(&orch, &worker, "tel-hang", BUSYBOX, &sidecar, 0);
    assert_eq!(ok["type"], "task_completed", "{}", worker.text());
    assert_eq!(hung.requests().len(), 1, "one push, still hanging");
    worker.signal(libc::SIGTERM);
    assert_eq!(
        worker.wait_exit(WAIT).and_then(|s| s.code()),
        Some(0),
        "{}",
        worker.text()
    );
    assert!(
        worker
            .text()
            .contains("the last telemetry export did not finish within 5000 ms"),
        "{}",
        worker.text()
    );
    fx.assert_no_containers();
}

#[test]
fn a_slow_pull_shows_progress_and_lands_in_the_metrics_and_the_trace() {
    let mut fx = Fixture::new("otlp-pull");
    let sidecar = fx.sidecar("otlp-pull");
    // A 3 MB incompressible layer on busybox, through a 150 kB/s link: the
    // pull takes about 20 s, long enough for a progress line.
    let ctx = fx.out.join("big-image");
    std::fs::create_dir_all(&ctx).unwrap();
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let noise: Vec<u8> = (0..3_000_000)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed as u8
        })
        .collect();
    std::fs::write(ctx.join("noise"), noise).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        format!("FROM {BUSYBOX}\nCOPY noise /noise\nLABEL oz-agent-worker.test=1\n"),
    )
    .unwrap();
    let local = format!("oz-test/big-{}:latest", fx.worker_id.to_lowercase());
    docker_cli(&["build", "-q", "-t", &local, &ctx.display().to_string()]);
    fx.forget_tag(&local);
    let registry = Registry::start(RegistryOpts::default());
    let pushed = registry.push(&local, "oz-tel/big:1").unwrap();
    fx.forget_tag(&pushed);
    // Gone from the daemon, so the worker's pull must download it.
    docker_cli(&["image", "rm", &local]);
    let proxy = StallProxy::throttled(registry.addr(), 150_000);
    let image = format!("{}/oz-tel/big:1", proxy.addr());
    fx.forget_tag(&image);

    let receiver = Receiver::start(&[]);
    let orch = Orchestrator::start(Options::default());
    let mut worker = start_worker(
        &fx,
        &orch,
        &[],
        &[
            ("OTEL_METRICS_EXPORTER", "prometheus"),
            ("OTEL_EXPORTER_PROMETHEUS_HOST", "127.0.0.1"),
            ("OTEL_EXPORTER_PROMETHEUS_PORT", "0"),
            ("OTEL_TRACES_EXPORTER", "otlp"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &receiver.base()),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ],
    );
    let ok = run_task(&orch, &worker, "tel-pull", &image, &sidecar, 0);
    assert_eq!(ok["type"], "task_completed", "{ok}\n{}", worker.text());
    let lines = worker.lines();
    let progress: Vec<&String> = lines
        .iter()
        .filter(|l| {
            l.contains(&format!("pulling image {image}: "))
                && l.contains(" layers, ")
                && l.ends_with("/s")
                || l.contains("not known yet)")
        })
        .collect();
    assert!(!progress.is_empty(), "no progress line:\n{}", worker.text());
    for l in &progress {
        assert!(l.contains(" task=tel-pull "), "{l}");
    }
    let closing = lines
        .iter()
        .find(|l| l.contains(&format!("pulled image {image} in ")))
        .unwrap_or_else(|| panic!("no closing line:\n{}", worker.text()));
    assert!(
        closing.contains(" layers") && closing.contains(" downloaded, "),
        "{closing}"
    );

    let scrape = http_get(&metrics_addr(&worker), "/metrics");
    let (samples, _) = scrape_samples(&scrape);
    assert_eq!(
        samples[r#"oz_worker_image_pull_duration_seconds_count{result="succeeded"}"#],
        1.0
    );
    assert!(
        samples[r#"oz_worker_image_pull_duration_seconds_sum{result="succeeded"}"#] > 10.0,
        "{scrape}"
    );
    assert!(
        samples["oz_worker_image_pull_bytes_total{}"] > 2_900_000.0,
        "{scrape}"
    );

    let reqs = receiver.wait_after(
        Instant::now() - WAIT,
        |r| {
            r.iter()
                .any(|q| q.to_string().contains("oz_worker.image_pull"))
        },
        WAIT,
    );
    let spans: Vec<Value> = reqs
        .iter()
        .flat_map(|q| {
            q["request"]["resourceSpans"][0]["scopeSpans"][0]["spans"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .collect();
    let pull = spans
        .iter()
        .find(|s| s["name"] == "oz_worker.image_pull")
        .unwrap();
    assert_eq!(pull["status"]["code"], "STATUS_CODE_OK");
    assert!(attrs(&pull["attributes"]).contains(&("docker.image".into(), image.clone())));
    worker.signal(libc::SIGTERM);
    assert_eq!(worker.wait_exit(WAIT).and_then(|s| s.code()), Some(0));
    fx.assert_no_containers();
}

#[test]
fn grpc_and_unusable_settings_stop_the_worker_at_start_with_one_line() {
    for (var, value, line) in [
        (
            "OTEL_EXPORTER_OTLP_PROTOCOL",
            "grpc",
            "ERROR telemetry: OTEL_EXPORTER_OTLP_PROTOCOL=grpc: this worker pushes OTLP over HTTP only; set http/protobuf (the collector's port 4318) or http/json, or OTEL_METRICS_EXPORTER=none to export nothing",
        ),
        (
            "OTEL_METRICS_EXPORTER",
            "otlp,statsd",
            "ERROR telemetry: OTEL_METRICS_EXPORTER lists \"statsd\", which this worker does not have; use otlp, prometheus, console or none",
        ),
        (
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "collector:4318",
            "ERROR telemetry: OTEL_EXPORTER_OTLP_ENDPOINT is not an http:// or https:// URL; write a URL such as http://collector:4318",
        ),
    ] {
        let mut worker = WorkerProcess::start(
            &[
                "--worker-id",
                "tel-start",
                "--web-socket-url",
                "ws://127.0.0.1:9/",
            ],
            &[("WARP_API_KEY", API_KEY), (var, value)],
        );
        let status = worker.wait_exit(WAIT).expect("the worker exits");
        assert_eq!(status.code(), Some(1), "{}", worker.text());
        let errors: Vec<String> = worker
            .lines()
            .into_iter()
            .filter(|l| l.contains("ERROR"))
            .collect();
        assert_eq!(errors.len(), 1, "{}", worker.text());
        assert!(errors[0].ends_with(line), "{}", errors[0]);
        // Refused before anything else starts.
        assert!(!worker.text().contains("Docker at"), "{}", worker.text());
    }
}

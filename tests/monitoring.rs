//! The monitoring we ship (`deploy/grafana/oz-agent-worker.json`,
//! `deploy/prometheus/alerts.yaml`) against the real tools: `promtool` checks
//! the rules and runs their unit tests (`alerts_test.yaml`); a real
//! Prometheus scrapes real worker processes that run real tasks in Docker
//! against the stand-in orchestrator, and every expression of the dashboard
//! and every selector of every rule returns data through its HTTP API, with
//! the real rule evaluator raising the Docker alert when the worker's Docker
//! endpoint is cut and the down alert when the worker is killed. The names an
//! OpenTelemetry Collector's Prometheus exporter makes of the same workers'
//! OTLP push are checked to be the names the dashboard and rules use.
//!
//! Needs `prometheus` and `promtool` (Debian's `prometheus` package) and the
//! OTLP receiver's Python packages: `bash .ci/setup-host` installs them. A
//! missing tool fails the test; nothing is skipped.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use oz_standin::registry::{Registry, RegistryOpts};
use oz_standin::relay::{Helper, TcpRelay, TempDir, free_loopback_addr};
use oz_standin::{Options, Orchestrator};
use serde_json::{Value, json};
use support::otlp::Receiver;
use support::process::WorkerProcess;
use support::tasks::{self, count, held, terminal, worker_args};
use support::{BUSYBOX, Fixture, docker_cli};

const WAIT: Duration = Duration::from_secs(60);
const API_KEY: &str = "oz-monitoring-test-key";
/// The job name the rules expect (README, "Monitoring a fleet").
const JOB: &str = "oz-agent-worker";
/// What the test puts for Grafana's `$__rate_interval` and `$__range`: wide
/// enough to cover everything the test's tasks did.
const RATE_INTERVAL: &str = "5m";
const RANGE: &str = "1h";

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn rules_file() -> PathBuf {
    repo("deploy/prometheus/alerts.yaml")
}

fn dashboard() -> Value {
    let text = std::fs::read_to_string(repo("deploy/grafana/oz-agent-worker.json")).unwrap();
    serde_json::from_str(&text).expect("the dashboard is JSON")
}

/// Every alerting rule of the rules file, in file order.
fn alert_rules() -> Vec<serde_yaml::Value> {
    let text = std::fs::read_to_string(rules_file()).unwrap();
    let doc: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    doc["groups"]
        .as_sequence()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_sequence().unwrap().clone())
        .collect()
}

/// Runs a Prometheus tool; panics, saying how to get it, when it is missing.
fn tool(program: &str, args: &[&str], dir: &Path) -> (bool, String) {
    let out = Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run {program}: {e}; install Debian's prometheus package (bash .ci/setup-host)")
        });
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Every PromQL expression of the dashboard's panels, with its panel title.
fn panel_exprs(dash: &Value) -> Vec<(String, String)> {
    fn walk(panels: &Value, out: &mut Vec<(String, String)>) {
        for p in panels.as_array().into_iter().flatten() {
            for t in p["targets"].as_array().into_iter().flatten() {
                let expr = t["expr"].as_str().expect("every target has an expr");
                out.push((p["title"].as_str().unwrap().to_owned(), expr.to_owned()));
            }
            walk(&p["panels"], out);
        }
    }
    let mut out = Vec::new();
    walk(&dash["panels"], &mut out);
    out
}

/// The metric selectors (name plus optional matchers) in an expression.
fn selectors(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let bytes = expr.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let starts_word = i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_');
        let rest = &expr[i..];
        let name_len = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(rest.len());
        let name = &rest[..name_len];
        if starts_word && (name.starts_with("oz_worker_") || name == "up") {
            let mut sel = name.to_owned();
            if rest[name_len..].starts_with('{') {
                let close = rest[name_len..].find('}').unwrap();
                sel.push_str(&rest[name_len..name_len + close + 1]);
            }
            i += sel.len();
            out.push(sel);
        } else {
            i += name_len.max(1);
        }
    }
    out
}

#[test]
fn promtool_checks_the_rules_and_every_alert_has_a_firing_and_a_silent_unit_test() {
    let dir = repo("deploy/prometheus");
    let (ok, text) = tool("promtool", &["check", "rules", "alerts.yaml"], &dir);
    assert!(ok, "promtool check rules:\n{text}");
    assert!(text.contains("SUCCESS"), "{text}");
    let (ok, text) = tool("promtool", &["test", "rules", "alerts_test.yaml"], &dir);
    assert!(ok, "promtool test rules:\n{text}");

    let tests: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(dir.join("alerts_test.yaml")).unwrap())
            .unwrap();
    let mut firing = BTreeSet::new();
    let mut silent = BTreeSet::new();
    for case in tests["tests"].as_sequence().unwrap() {
        for check in case["alert_rule_test"].as_sequence().unwrap() {
            let name = check["alertname"].as_str().unwrap().to_owned();
            if check["exp_alerts"].as_sequence().unwrap().is_empty() {
                silent.insert(name);
            } else {
                firing.insert(name);
            }
        }
    }
    for rule in alert_rules() {
        let name = rule["alert"].as_str().unwrap();
        assert!(firing.contains(name), "{name} has no firing case");
        assert!(silent.contains(name), "{name} has no silent case");
    }
}

/// What the files promise people: every alert has a summary, a
/// description, a severity and a runbook under README's Troubleshooting;
/// every panel says what a bad value means; the dashboard's data source and
/// filters are variables, and its rows are the ones on call wants.
#[test]
fn every_alert_and_panel_explains_itself_and_runbooks_exist() {
    let readme = std::fs::read_to_string(repo("README.md")).unwrap();
    let anchors: BTreeSet<String> = readme
        .lines()
        .filter(|l| l.starts_with('#'))
        .map(|l| {
            l.trim_start_matches('#')
                .trim()
                .to_lowercase()
                .chars()
                .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
                .map(|c| if c == ' ' { '-' } else { c })
                .collect()
        })
        .collect();
    let troubleshooting = &readme[readme.find("## Troubleshooting").unwrap()..];
    let troubleshooting = &troubleshooting[..troubleshooting[3..].find("\n## ").unwrap()];
    for rule in alert_rules() {
        let name = rule["alert"].as_str().unwrap();
        let a = &rule["annotations"];
        for key in ["summary", "description"] {
            assert!(
                a[key].as_str().is_some_and(|s| s.len() > 20),
                "{name}: {key}"
            );
        }
        assert!(rule["labels"]["severity"].is_string(), "{name}: severity");
        let runbook = a["runbook_url"].as_str().unwrap();
        let anchor = runbook.strip_prefix("README.md#").unwrap();
        assert_eq!(anchor, name.to_lowercase(), "{name}");
        assert!(
            anchors.contains(anchor),
            "{name}: no README heading #{anchor}"
        );
        assert!(
            troubleshooting.contains(&format!("#### {name}")),
            "{name}: its runbook is not under Troubleshooting"
        );
    }

    let dash = dashboard();
    assert!(dash["schemaVersion"].as_u64().unwrap() >= 39);
    let vars: Vec<&str> = dash["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert_eq!(vars, ["datasource", "worker_id", "instance"]);
    let text = dash.to_string();
    assert!(
        !text.contains("\"uid\":\"prometheus\""),
        "a data source fixed by uid"
    );
    fn check(panels: &Value, titles: &mut Vec<String>) {
        for p in panels.as_array().into_iter().flatten() {
            let title = p["title"].as_str().unwrap().to_owned();
            if p["type"] != "row" {
                assert_eq!(p["datasource"]["uid"], "${datasource}", "{title}");
                let desc = p["description"].as_str().unwrap_or("");
                assert!(
                    desc.contains("Bad") || desc.contains("bad"),
                    "{title}: {desc}"
                );
                for t in p["targets"].as_array().unwrap() {
                    let expr = t["expr"].as_str().unwrap();
                    assert!(expr.contains("$instance"), "{title}: {expr}");
                }
            }
            titles.push(title);
            check(&p["panels"], titles);
        }
    }
    let mut titles = Vec::new();
    check(&dash["panels"], &mut titles);
    let rows: Vec<&String> = titles
        .iter()
        .filter(|t| {
            dash["panels"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["type"] == "row" && p["title"] == t.as_str())
        })
        .collect();
    assert_eq!(
        rows,
        [
            "Is every worker connected, and is Docker answering?",
            "Capacity",
            "Outcomes",
            "Adopted and detached tasks",
            "Status messages waiting for acknowledgement",
            "Reconnects",
            "Image pulls and sidecar copies",
        ]
    );
}

/// A real Prometheus server: the given targets under job `oz-agent-worker`,
/// scraped and evaluated every second, with `rules` loaded. Killed on drop.
struct Prometheus {
    addr: SocketAddr,
    helper: Helper,
    _dir: TempDir,
}

fn http(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(WAIT)).ok()?;
    // HTTP/1.0: the answer ends at EOF, never chunked.
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut raw = String::new();
    s.read_to_string(&mut raw).ok()?;
    let (head, body) = raw.split_once("\r\n\r\n")?;
    Some((head.get(9..12)?.parse().ok()?, body.to_owned()))
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

impl Prometheus {
    fn start(targets: &[String], rules: &str) -> Prometheus {
        let dir = TempDir::new("prometheus").unwrap();
        let addr = free_loopback_addr().unwrap();
        std::fs::write(dir.path().join("alerts.yaml"), rules).unwrap();
        let config = json!({
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
            "rule_files": [dir.path().join("alerts.yaml")],
            "scrape_configs": [{"job_name": JOB, "static_configs": [{"targets": targets}]}],
        });
        // JSON is YAML.
        std::fs::write(dir.path().join("prometheus.yml"), config.to_string()).unwrap();
        let mut cmd = Command::new("prometheus");
        cmd.arg(format!(
            "--config.file={}",
            dir.path().join("prometheus.yml").display()
        ))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address={addr}"));
        let mut helper = Helper::spawn("prometheus", cmd, dir.path().join("prometheus.log"))
            .unwrap_or_else(|e| {
                panic!("{e}; install Debian's prometheus package (bash .ci/setup-host)")
            });
        helper
            .wait_ready(addr, |a| {
                http(a, "/-/ready").is_some_and(|(status, _)| status == 200)
            })
            .unwrap_or_else(|e| panic!("prometheus did not start: {e}"));
        Prometheus {
            addr,
            helper,
            _dir: dir,
        }
    }

    /// `GET /api/v1/<path>`'s `data`; panics on an error answer.
    fn api(&self, path: &str) -> Value {
        let (status, body) = http(self.addr, &format!("/api/v1/{path}"))
            .unwrap_or_else(|| panic!("no answer to {path}; log:\n{}", self.helper.log()));
        let v: Value = serde_json::from_str(&body).unwrap_or_else(|_| panic!("{status} {body}"));
        assert_eq!(v["status"], "success", "{path}: {body}");
        v["data"].clone()
    }

    /// An instant query's result series.
    fn query(&self, promql: &str) -> Vec<Value> {
        let data = self.api(&format!("query?query={}", urlencode(promql)));
        match &data["result"] {
            Value::Array(series) => series.clone(),
            // A scalar is one value.
            other => vec![other.clone()],
        }
    }

    /// Polls `query` until it returns a series: samples arrive with the next
    /// scrape and evaluation, and no event says when.
    fn wait_series(&self, promql: &str, timeout: Duration) -> Vec<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let series = self.query(promql);
            if !series.is_empty() || Instant::now() >= deadline {
                return series;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// Polls the rule evaluator until alert `name` is firing; its labels.
    fn wait_firing(&self, name: &str, timeout: Duration) -> Option<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let alerts = self.api("alerts");
            let found = alerts["alerts"]
                .as_array()
                .unwrap()
                .iter()
                .find(|a| a["labels"]["alertname"] == name && a["state"] == "firing")
                .cloned();
            if found.is_some() || Instant::now() >= deadline {
                return found.map(|a| a["labels"].clone());
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

/// The rules file with the `for:` of `shorten` cut to one second, so their
/// alerts fire within the test.
fn rules_for_test(shorten: &[&str]) -> String {
    let text = std::fs::read_to_string(rules_file()).unwrap();
    let mut doc: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    let mut cut = 0;
    for group in doc["groups"].as_sequence_mut().unwrap() {
        for rule in group["rules"].as_sequence_mut().unwrap() {
            let name = rule["alert"].as_str().unwrap_or("").to_owned();
            if shorten.contains(&name.as_str()) {
                rule["for"] = serde_yaml::Value::String("1s".into());
                cut += 1;
            }
        }
    }
    assert_eq!(cut, shorten.len(), "a rule to shorten is missing");
    serde_yaml::to_string(&doc).unwrap()
}

/// The name an OpenTelemetry Collector's Prometheus exporter gives an OTLP
/// metric with `add_metric_suffixes` (its default), as the Prometheus
/// translator builds it: the name's words, the unit's Prometheus word unless
/// already among them, `total` last for a monotonic sum, `ratio` for unit 1.
fn collector_name(name: &str, unit: &str, monotonic_sum: bool) -> String {
    let mut words: Vec<String> = name
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_owned)
        .collect();
    let unit_word = match unit {
        "" | "1" => None,
        "s" => Some("seconds"),
        "ms" => Some("milliseconds"),
        "By" => Some("bytes"),
        other if other.contains('{') => None,
        other => panic!("unit {other} is not mapped here; add the translator's word for it"),
    };
    if let Some(w) = unit_word
        && !words.iter().any(|x| x == w)
    {
        words.push(w.to_owned());
    }
    if monotonic_sum {
        words.retain(|w| w != "total");
        words.push("total".into());
    }
    if unit == "1" && !monotonic_sum && !words.iter().any(|w| w == "ratio") {
        words.push("ratio".into());
    }
    words.join("_")
}

/// The translator's own examples, so the check below means what it says.
#[test]
fn collector_names_follow_the_prometheus_translator() {
    for (name, unit, monotonic, want) in [
        (
            "system.cpu.time",
            "s",
            true,
            "system_cpu_time_seconds_total",
        ),
        (
            "http.server.request.duration",
            "s",
            false,
            "http_server_request_duration_seconds",
        ),
        (
            "process.memory.usage",
            "By",
            false,
            "process_memory_usage_bytes",
        ),
        (
            "system.cpu.utilization",
            "1",
            false,
            "system_cpu_utilization_ratio",
        ),
        (
            "http.server.active_requests",
            "{request}",
            false,
            "http_server_active_requests",
        ),
        ("requests_total", "", true, "requests_total"),
        (
            "oz_worker_image_pull_bytes_total",
            "By",
            true,
            "oz_worker_image_pull_bytes_total",
        ),
    ] {
        assert_eq!(collector_name(name, unit, monotonic), want, "{name}");
    }
}

/// The Prometheus series names a collector exports for every metric in the
/// OTLP pushes `reqs`, and every resource's `service.instance.id`.
fn collector_names(reqs: &[Value]) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut names = BTreeSet::new();
    let mut instances = BTreeSet::new();
    for q in reqs.iter().filter(|q| q["signal"] == "metrics") {
        for rm in q["request"]["resourceMetrics"].as_array().unwrap() {
            for kv in rm["resource"]["attributes"].as_array().unwrap() {
                if kv["key"] == "service.instance.id" {
                    instances.insert(kv["value"]["stringValue"].as_str().unwrap().to_owned());
                }
            }
            for sm in rm["scopeMetrics"].as_array().unwrap() {
                for m in sm["metrics"].as_array().unwrap() {
                    let name = m["name"].as_str().unwrap();
                    let unit = m["unit"].as_str().unwrap_or("");
                    let monotonic = m["sum"]["isMonotonic"] == true;
                    let exported = collector_name(name, unit, monotonic);
                    assert_eq!(
                        exported, name,
                        "a collector would export {name} (unit {unit:?}) as {exported}"
                    );
                    if m.get("histogram").is_some() {
                        for suffix in ["_bucket", "_sum", "_count"] {
                            names.insert(format!("{exported}{suffix}"));
                        }
                    } else {
                        names.insert(exported);
                    }
                }
            }
        }
    }
    (names, instances)
}

/// Grafana's variables and built-ins, as the dashboard would send them for
/// the test's worker.
fn substitute(expr: &str, worker_id: &str, instance: &str) -> String {
    expr.replace("$__rate_interval", RATE_INTERVAL)
        .replace("$__range", RANGE)
        .replace("$worker_id", worker_id)
        .replace("$instance", instance)
}

#[test]
fn a_real_prometheus_sees_every_panel_and_rule_and_the_docker_and_down_alerts_fire() {
    let started = Instant::now();
    let mut fx = Fixture::new("monitoring");
    let sidecar = fx.sidecar("monitoring");
    // An image only the registry has, so the worker really pulls it.
    let local = format!("oz-test/mon-{}:latest", fx.worker_id.to_lowercase());
    docker_cli(&["tag", BUSYBOX, &local]);
    fx.forget_tag(&local);
    let registry = Registry::start(RegistryOpts::default());
    let pulled = registry.push(&local, "oz-mon/busybox:1").unwrap();
    fx.forget_tag(&pulled);
    docker_cli(&["image", "rm", &local]);
    let missing = registry.image("oz-mon/missing:1");

    // The worker's Docker endpoint, a relay the test can cut without
    // touching the shared daemon.
    let relay = TcpRelay::start("/var/run/docker.sock");
    let receiver = Receiver::start(&[]);
    let orch = Orchestrator::start(Options::default());
    // One address for both worker processes: the restarted worker is the
    // same Prometheus target, as on a real host.
    let metrics = free_loopback_addr().unwrap();
    let instance = metrics.to_string();
    let port = metrics.port().to_string();
    let resource = format!("service.instance.id={instance}");
    let docker_host = relay.docker_host();
    let otlp = receiver.base();
    let env: Vec<(&str, &str)> = vec![
        ("WARP_API_KEY", API_KEY),
        ("DOCKER_HOST", &docker_host),
        ("OTEL_METRICS_EXPORTER", "prometheus,otlp"),
        ("OTEL_EXPORTER_PROMETHEUS_HOST", "127.0.0.1"),
        ("OTEL_EXPORTER_PROMETHEUS_PORT", &port),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", &otlp),
        ("OTEL_METRIC_EXPORT_INTERVAL", "500"),
        ("OTEL_RESOURCE_ATTRIBUTES", &resource),
    ];
    let args = worker_args(
        &fx,
        &orch.url(),
        &[
            "--max-concurrent-tasks",
            "2",
            "--lease-ttl",
            "3s",
            "--reap-interval",
            "200ms",
        ],
    );
    let mut first = WorkerProcess::start(&tasks::strs(&args), &env);
    assert!(orch.wait_until(|r| r.connected, WAIT), "{}", first.text());

    let rules = rules_for_test(&["OzWorkerDown", "OzDockerUnreachable"]);
    let prom = Prometheus::start(std::slice::from_ref(&instance), &rules);
    assert!(
        !prom
            .wait_series(
                &format!("oz_worker_connected{{instance=\"{instance}\"}} == 1"),
                WAIT
            )
            .is_empty(),
        "Prometheus never scraped the worker; its log:\n{}",
        prom.helper.log()
    );

    let ends = |id: &str, image: &str, env: Value| -> Value {
        assert!(tasks::send_assignment(&orch, id, image, &sidecar, env));
        let frames = orch.wait_for(|f| !terminal(f, id).is_empty(), WAIT);
        terminal(&frames, id)[0].clone()
    };
    // Pulled from the registry, sidecar copied, succeeds.
    let ok = ends("mon-ok", &pulled, json!({}));
    assert_eq!(ok["type"], "task_completed", "{ok}\n{}", first.text());
    let failed = ends("mon-fail", BUSYBOX, json!({"OZ_TEST_EXIT": "3"}));
    assert_eq!(
        failed["data"]["failure_reason"], "container_exit",
        "{failed}"
    );
    let no_image = ends("mon-no-image", &missing, json!({}));
    assert_eq!(
        no_image["data"]["failure_reason"], "image_pull",
        "{no_image}"
    );
    // Both slots taken, a third assignment is rejected at capacity.
    let started_before = first
        .lines()
        .iter()
        .filter(|l| l.contains("started container"))
        .count();
    for id in ["mon-held", "mon-cancel"] {
        tasks::assign(&orch, id, &sidecar, held(id, 0));
    }
    assert!(
        first.wait_count("started container", started_before + 2, WAIT),
        "{}",
        first.text()
    );
    tasks::assign(&orch, "mon-rejected", &sidecar, json!({}));
    orch.wait_for(|f| count(f, "task_rejected", "mon-rejected") == 1, WAIT);
    assert!(orch.send(&json!({"type": "task_cancellation", "data": {"task_id": "mon-cancel"}})));
    orch.wait_for(|f| !terminal(f, "mon-cancel").is_empty(), WAIT);

    // Histogram series appear with their first observation, and rate() and
    // increase() need two samples: the cancellation's series came last, so
    // two scrapes of it mean two of everything before it.
    let scraped_twice = prom.wait_series(
        "count_over_time(oz_worker_task_duration_seconds_count{result=\"cancelled\"}[1h]) >= 2",
        WAIT,
    );
    assert!(!scraped_twice.is_empty(), "{}", prom.helper.log());

    // An unclean exit with a task running: the down alert fires, and the
    // next process on the same address adopts the task.
    first.signal(libc::SIGKILL);
    first.wait_exit(WAIT).expect("the killed worker exits");
    let down = prom
        .wait_firing("OzWorkerDown", WAIT)
        .unwrap_or_else(|| panic!("OzWorkerDown never fired; alerts: {}", prom.api("alerts")));
    assert_eq!(down["instance"], instance.as_str());
    assert_eq!(down["job"], JOB);
    let second = WorkerProcess::start(&tasks::strs(&args), &env);
    assert!(
        second.wait_count("adopted task mon-held", 1, WAIT),
        "{}",
        second.text()
    );
    fx.release("mon-held");
    let adopted = orch.wait_for(|f| !terminal(f, "mon-held").is_empty(), WAIT);
    assert_eq!(terminal(&adopted, "mon-held")[0]["type"], "task_completed");
    fx.wait_no_containers(WAIT);
    let adoption = prom.wait_firing("OzTasksAdopted", WAIT);
    assert!(
        adoption.is_some(),
        "OzTasksAdopted never fired: {}",
        prom.api("alerts")
    );

    // Every dashboard expression returns data, as Grafana would send it.
    let dash = dashboard();
    let mut empty = Vec::new();
    let exprs = panel_exprs(&dash);
    for (title, expr) in &exprs {
        let q = substitute(expr, &fx.worker_id, &instance);
        if prom.wait_series(&q, Duration::from_secs(20)).is_empty() {
            // Which of its selectors has data says whether the worker or the
            // expression is at fault.
            let parts: Vec<String> = selectors(&q)
                .iter()
                .map(|sel| {
                    let n = prom.query(&format!("last_over_time({sel}[{RANGE}])")).len();
                    format!("  {sel}: {n} series")
                })
                .collect();
            empty.push(format!("{title}: {q}\n{}", parts.join("\n")));
        }
    }
    assert!(empty.is_empty(), "no data for:\n{}", empty.join("\n"));
    // The variables' label_values(SELECTOR, LABEL) queries find the worker.
    for var in dash["templating"]["list"].as_array().unwrap() {
        let Some(def) = var["definition"].as_str() else {
            continue;
        };
        let inner = def
            .strip_prefix("label_values(")
            .and_then(|s| s.strip_suffix(')'))
            .unwrap();
        let (selector, label) = inner.rsplit_once(", ").unwrap();
        let series = prom.query(&substitute(selector, &fx.worker_id, &instance));
        let values: BTreeSet<&str> = series
            .iter()
            .filter_map(|s| s["metric"][label].as_str())
            .collect();
        let want = if label == "instance" {
            instance.as_str()
        } else {
            fx.worker_id.as_str()
        };
        assert!(values.contains(want), "{def}: {values:?}");
    }

    // Every rule was evaluated without error, and each of its selectors has data.
    let groups = prom.api("rules");
    let mut evaluated = 0;
    for group in groups["groups"].as_array().unwrap() {
        for rule in group["rules"].as_array().unwrap() {
            assert_eq!(rule["health"], "ok", "{rule}");
            for sel in selectors(rule["query"].as_str().unwrap()) {
                let q = format!("last_over_time({sel}[{RATE_INTERVAL}])");
                assert!(
                    !prom.wait_series(&q, Duration::from_secs(20)).is_empty(),
                    "{}: no data for {sel}",
                    rule["name"]
                );
            }
            evaluated += 1;
        }
    }
    assert_eq!(evaluated, alert_rules().len());

    // The same dashboard and rules fit what a collector exports from the push.
    let (pushed, instances) = collector_names(&receiver.requests());
    assert_eq!(instances, BTreeSet::from([instance.clone()]));
    let mut used = BTreeMap::new();
    for (title, expr) in &exprs {
        for sel in selectors(expr) {
            used.insert(sel.split('{').next().unwrap().to_owned(), title.clone());
        }
    }
    for rule in alert_rules() {
        for sel in selectors(rule["expr"].as_str().unwrap()) {
            let name = sel.split('{').next().unwrap().to_owned();
            if name != "up" {
                used.insert(name, rule["alert"].as_str().unwrap().to_owned());
            }
        }
    }
    for (name, user) in &used {
        assert!(
            pushed.contains(name),
            "{user} uses {name}, which the OTLP push does not make"
        );
    }

    // Docker gone: the worker says so and the alert fires.
    drop(relay);
    let docker = prom
        .wait_firing("OzDockerUnreachable", WAIT)
        .unwrap_or_else(|| panic!("OzDockerUnreachable never fired:\n{}", second.text()));
    assert_eq!(docker["instance"], instance.as_str());
    drop(second);
    eprintln!("monitoring test took {:?}", started.elapsed());
}

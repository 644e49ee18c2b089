//! Tasks walled off from each other, with the real worker binary, the real
//! daemon and the stand-in orchestrator: on the default settings two tasks
//! share the worker's task network, where one cannot connect to the other's
//! port by its address while both still reach a server on the host; with
//! `network_mode` (or `network`) set, the operator's network is used as
//! before, and there the same connection succeeds.

mod support;

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use oz_agent_worker::container_spec::LABEL_TASK_ID;
use oz_agent_worker::task_network::{BRIDGE_NAME, ICC_OPTION, TASK_NETWORK};
use oz_standin::{Options, Orchestrator};
use serde_json::{Value, json};
use support::process::WorkerProcess;
use support::tasks::{strs, terminal, worker_args};
use support::{BUSYBOX, Fixture, docker_cli};

const WAIT: Duration = Duration::from_secs(60);

/// The task's script (its sidecar's entrypoint, run by busybox `sh`). Both
/// roles first say hello to the host's server through the gateway; then
/// `listen` records what one client sends to its port 7777 (saying so only
/// once the port listens) until released, and
/// `connect` sends a line to the listener's address and exits with nc's
/// status (1 when the connection fails).
const SCRIPT: &str = r#"echo "hello-from-$TASK_ID" | nc -w 5 "$OZ_GATEWAY" "$OZ_HOST_PORT" || exit 9
case "$OZ_ROLE" in
listen)
  # stdin held open, so nc reads the whole line before it hangs up.
  (sleep 600 | nc -l -p 7777 >> "/out/got-$TASK_ID") &
  until netstat -ltn | grep -q ':7777 '; do sleep 0.05; done
  touch "/out/listening-$TASK_ID"
  until [ -e "/out/release-$TASK_ID" ]; do sleep 0.1; done ;;
connect)
  echo "from-$TASK_ID" | nc -w 3 "$OZ_PEER" 7777 ;;
esac"#;

/// A server on the host: every line any client sends.
fn host_server() -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("0.0.0.0:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = lines.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
            let mut line = String::new();
            let _ = BufReader::new(conn).read_line(&mut line);
            sink.lock().unwrap().push(line.trim().to_owned());
        }
    });
    (port, lines)
}

fn gateway(network: &str) -> String {
    docker_cli(&[
        "network",
        "inspect",
        "-f",
        "{{(index .IPAM.Config 0).Gateway}}",
        network,
    ])
}

/// Waits for `path` to exist (the task's own signal that it listens).
fn wait_file(path: &Path) -> bool {
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        if path.exists() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// The networks and address of task `id`'s container.
fn container_net(fx: &Fixture, id: &str) -> (String, String) {
    let container = docker_cli(&[
        "ps",
        "-q",
        "--filter",
        &format!("label={}", fx.worker_label()),
        "--filter",
        &format!("label={LABEL_TASK_ID}={id}"),
    ]);
    let names = docker_cli(&[
        "inspect",
        "-f",
        "{{range $k, $v := .NetworkSettings.Networks}}{{$k}} {{end}}",
        &container,
    ]);
    let ip = docker_cli(&[
        "inspect",
        "-f",
        "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
        &container,
    ]);
    (names.trim().to_owned(), ip)
}

struct Outcome {
    /// The connecting task's terminal message.
    connect: Value,
    /// What the listening task recorded.
    got: String,
    /// The network both containers were on.
    networks: String,
    /// Every line the host's server received.
    host: Vec<String>,
}

/// Runs one listening and one connecting task on a worker started with
/// `extra`, whose tasks join `network`.
fn listen_then_connect(fx: &mut Fixture, extra: &[&str], network: Option<&str>) -> Outcome {
    let sidecar = fx.script_sidecar(SCRIPT);
    let (port, host) = host_server();
    let orch = Orchestrator::start(Options::default());
    let args = worker_args(fx, &orch.url(), extra);
    let mut worker = WorkerProcess::start(&strs(&args), &[("WARP_API_KEY", "oz-net-test-key")]);
    assert!(orch.wait_until(|r| r.connected, WAIT), "{}", worker.text());
    let gw = gateway(network.unwrap_or(TASK_NETWORK));
    let send = |id: &str, role: &str, peer: &str| {
        assert!(orch.send(&json!({"type": "task_assignment", "data": {
            "task_id": id, "execution_id": format!("e-{id}"),
            "task": {"id": id, "title": "network"},
            "docker_image": BUSYBOX, "sidecar_image": sidecar,
            "env_vars": {"OZ_ROLE": role, "OZ_PEER": peer, "OZ_GATEWAY": gw,
                         "OZ_HOST_PORT": port.to_string()}}})));
    };
    send("net-a", "listen", "");
    assert!(
        wait_file(&fx.out.join("listening-net-a")),
        "{}",
        worker.text()
    );
    let (networks, ip) = container_net(fx, "net-a");
    send("net-b", "connect", &ip);
    let frames = orch.wait_for(|f| !terminal(f, "net-b").is_empty(), WAIT);
    let connect = terminal(&frames, "net-b")
        .first()
        .map(|v| (*v).clone())
        .unwrap_or_else(|| panic!("no end for net-b: {frames:?}\n{}", worker.text()));
    fx.release("net-a");
    let frames = orch.wait_for(|f| !terminal(f, "net-a").is_empty(), WAIT);
    assert_eq!(
        terminal(&frames, "net-a")[0]["type"],
        "task_completed",
        "{}",
        worker.text()
    );
    worker.signal(libc::SIGTERM);
    assert_eq!(worker.wait_exit(WAIT).and_then(|s| s.code()), Some(0));
    fx.wait_no_containers(WAIT);
    let host = host.lock().unwrap().clone();
    Outcome {
        connect,
        got: fx.read_out("got-net-a"),
        networks,
        host,
    }
}

#[test]
fn on_the_default_settings_tasks_cannot_reach_each_other_but_reach_the_host() {
    let mut fx = Fixture::new("netdefault");
    let out = listen_then_connect(&mut fx, &[], None);
    assert_eq!(out.networks, TASK_NETWORK);
    assert_eq!(out.connect["type"], "task_failed", "{}", out.connect);
    assert_eq!(out.connect["data"]["exit_code"], 1, "{}", out.connect);
    assert_eq!(out.got, "", "the connecting task reached the listener");
    let mut host = out.host;
    host.sort();
    assert_eq!(host, ["hello-from-net-a", "hello-from-net-b"]);
    // The network the worker made (or found) keeps containers apart.
    let options = docker_cli(&[
        "network",
        "inspect",
        "-f",
        "{{json .Options}} {{json .Labels}}",
        TASK_NETWORK,
    ]);
    assert!(
        options.contains(&format!("\"{ICC_OPTION}\":\"false\"")),
        "{options}"
    );
    assert!(
        options.contains(&format!(
            "\"com.docker.network.bridge.name\":\"{BRIDGE_NAME}\""
        )),
        "{options}"
    );
    assert!(
        options.contains("\"dev.warp.oz-agent-worker.role\":\"task-network\""),
        "{options}"
    );
}

/// A network of the test's own, removed when the test ends (declare it
/// before the fixture, whose containers must go first).
struct TestNetwork(String);

impl Drop for TestNetwork {
    fn drop(&mut self) {
        let _ = std::process::Command::new("docker")
            .args(["network", "rm", &self.0])
            .output();
    }
}

#[test]
fn with_network_mode_set_the_operators_network_is_used_as_before() {
    // Before the fixture, so it is dropped after it: a network with
    // containers still on it cannot be removed.
    let net = TestNetwork(format!("oz-test-net-{}", std::process::id()));
    let mut fx = Fixture::new("netoperator");
    docker_cli(&[
        "network",
        "create",
        "--label",
        "oz-agent-worker.test=1",
        &net.0,
    ]);
    let config = fx.out.join("config.yaml");
    std::fs::write(
        &config,
        format!("backend:\n  docker:\n    network_mode: {}\n", net.0),
    )
    .unwrap();
    let out = listen_then_connect(
        &mut fx,
        &["--config-file", config.to_str().unwrap()],
        Some(&net.0),
    );
    assert_eq!(out.networks, net.0);
    // Docker's own bridge default: containers reach each other.
    assert_eq!(out.connect["type"], "task_completed", "{}", out.connect);
    assert_eq!(out.got, "from-net-b\n");
    let mut host = out.host;
    host.sort();
    assert_eq!(host, ["hello-from-net-a", "hello-from-net-b"]);
}

#[test]
fn workers_starting_at_once_make_one_network_and_a_talkative_one_is_refused() {
    use oz_agent_worker::task_network::{Ensured, TaskNetworkError, ensure_network};
    let docker = support::docker();
    let pid = std::process::id();
    let race = TestNetwork(format!("oz-test-race-{pid}"));
    // A host interface of its own (at most 15 characters).
    let bridge = format!("ozt{}", pid % 100_000);
    let results: Vec<Ensured> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|_| s.spawn(|| ensure_network(&docker, &race.0, &bridge)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap().expect("every racer gets the network"))
            .collect()
    });
    let created = results.iter().filter(|r| **r == Ensured::Created).count();
    assert_eq!(created, 1, "{results:?}");
    // One network of that name, not one per racer.
    let same_name = docker_cli(&[
        "network",
        "ls",
        "-q",
        "--filter",
        &format!("name=^{}$", race.0),
    ]);
    assert_eq!(same_name.lines().count(), 1, "{same_name}");
    let options = docker_cli(&["network", "inspect", "-f", "{{json .Options}}", &race.0]);
    assert!(
        options.contains(&format!("\"{ICC_OPTION}\":\"false\"")),
        "{options}"
    );
    assert!(
        options.contains(&format!("\"com.docker.network.bridge.name\":\"{bridge}\"")),
        "{options}"
    );
    // Found again later: reused as it is.
    assert_eq!(
        ensure_network(&docker, &race.0, &bridge).unwrap(),
        Ensured::Reused
    );

    // A network of that name that lets containers talk is refused.
    let plain = TestNetwork(format!("oz-test-plain-{pid}"));
    docker_cli(&[
        "network",
        "create",
        "--label",
        "oz-agent-worker.test=1",
        &plain.0,
    ]);
    match ensure_network(&docker, &plain.0, "ozt-unused0") {
        Err(e @ TaskNetworkError::NotIsolated { .. }) => assert_eq!(
            e.to_string(),
            format!(
                "the task network {0} exists but lets its containers reach each other (driver bridge, {ICC_OPTION} unset); the worker did not make it so: remove it (docker network rm {0}) so the worker makes its own, or name the network tasks should use in backend.docker.network",
                plain.0
            )
        ),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

//! A Go worker's command line on the real binary, against the stand-in
//! orchestrator and the real daemon: comma lists reach the task's
//! environment as kong splits them, volume warnings are logged at start, and
//! `--mcp` carries Oz's bytes exactly as the Go worker would write them.

mod support;

use std::time::Duration;

use oz_standin::{Options, Orchestrator};
use support::Fixture;
use support::process::WorkerProcess;
use support::tasks::{strs, terminal, worker_args};

const WAIT: Duration = Duration::from_secs(60);

/// Removes the named volume the task container made Docker create.
struct NamedVolume(oz_agent_worker::docker::Docker, String);

impl Drop for NamedVolume {
    fn drop(&mut self) {
        let _ = self.0.volume_remove(&self.1);
    }
}

#[test]
fn go_command_line_gives_the_same_task() {
    let mut fx = Fixture::new("dropin");
    let sidecar = fx.sidecar("dropin");
    let orch = Orchestrator::start(Options::default());
    let volume = format!("oz-test-dropin-{}", std::process::id());
    let _volume = NamedVolume(fx.docker.clone(), volume.clone());
    let named = format!("{volume}:/shared");
    let missing = format!("{}/made-by-docker:/later", fx.out.display());
    let extra = [
        "-e",
        "A=1,B=2",
        "--env=C=x\\,y,D=",
        "-e",
        "",
        "-v",
        &named,
        "--volumes",
        &missing,
    ];
    let args = worker_args(&fx, &orch.url(), &extra);
    let mut worker = WorkerProcess::start(&strs(&args), &[("WARP_API_KEY", "k-dropin")]);
    assert!(orch.wait_until(|r| r.connected, WAIT), "{}", worker.text());
    let log = worker.text();
    for line in [
        format!(
            "WARN  volume `{named}`: `{volume}` is not a host path but a named Docker volume, shared by every task this worker runs; write an absolute path to bind a host directory"
        ),
        format!(
            "WARN  volume `{missing}`: host path {}/made-by-docker does not exist; Docker will create it as an empty directory owned by root",
            fx.out.display()
        ),
    ] {
        assert!(log.contains(&line), "{line}\nnot in:\n{log}");
    }

    // Sent as text, so the bytes are exactly these.
    let frame = format!(
        r#"{{"type":"task_assignment","data":{{"task_id":"dropin","execution_id":"e-dropin",
        "task":{{"id":"dropin","title":"t","owner":{{"Type":"USER","Id":7}},
          "agent_config_snapshot":{{"mcp_servers":{{
            "zeta": {{ "url" : "http://h/?a=1&b=<2>", "n": [1.50, 1E3, 123456789012345678901234567890], "z":1, "a":2 }},
            "alpha":{{"command":"npx", "args":[ "a b" ]}}}}}}}},
        "docker_image":"{image}","sidecar_image":"{sidecar}","env_vars":{{"OZ_TEST_OUT":"/out"}}}}}}"#,
        image = support::BUSYBOX,
    );
    assert!(orch.send_text(&frame));
    let frames = orch.wait_for(|f| !terminal(f, "dropin").is_empty(), WAIT);
    let done = terminal(&frames, "dropin");
    assert_eq!(
        done[0]["type"],
        "task_completed",
        "{frames:?}\n{}",
        worker.text()
    );

    let argv = fx.read_out("argv");
    let argv: Vec<&str> = argv.lines().collect();
    let at = argv
        .iter()
        .position(|a| *a == "--mcp")
        .expect("--mcp passed");
    assert_eq!(
        argv[at + 1],
        r#"{"alpha":{"command":"npx","args":["a b"]},"zeta":{"url":"http://h/?a=1\u0026b=\u003c2\u003e","n":[1.50,1E3,123456789012345678901234567890],"z":1,"a":2}}"#
    );
    let env = fx.read_out("env");
    for line in ["A=1", "B=2", "C=x,y", "D="] {
        assert!(
            env.lines().any(|l| l == line),
            "{line} missing from:\n{env}"
        );
    }

    worker.signal(libc::SIGTERM);
    assert_eq!(worker.wait_exit(WAIT).and_then(|s| s.code()), Some(0));
    fx.assert_no_containers();
}

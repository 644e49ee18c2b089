//! `oz-demo`: runs one real task end to end on this machine, with no Oz account.
//!
//! Plays the orchestrator on 127.0.0.1, starts the worker binary against it,
//! sends one task assignment, prints every status message the worker sends,
//! then stops the worker with SIGTERM as an operator would. Exits 0 when the
//! task completed, the worker closed with code 1000 and exited 0.
//!
//! Usage: oz-demo --worker PATH [--image IMAGE] [--sidecar IMAGE]

use std::process::{Child, Command, ExitCode};
use std::time::Duration;

use oz_standin::{Options, Orchestrator};
use serde_json::{Value, json};

struct Args {
    worker: String,
    image: String,
    sidecar: String,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        worker: "target/release/oz-agent-worker".into(),
        image: "oz-test/busybox:latest".into(),
        sidecar: "oz-test/demo-sidecar:latest".into(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--worker" => args.worker = value()?,
            "--image" => args.image = value()?,
            "--sidecar" => args.sidecar = value()?,
            _ => {
                return Err(format!(
                    "unknown argument {flag}; usage: oz-demo --worker PATH [--image IMAGE] [--sidecar IMAGE]"
                ));
            }
        }
    }
    Ok(args)
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("oz-demo: {e}");
            return ExitCode::from(2);
        }
    };
    let orch = Orchestrator::start(Options::default());
    println!("[demo] stand-in orchestrator listening on {}", orch.url());
    let mut worker = match Command::new(&args.worker)
        .args([
            "--worker-id",
            "demo-worker",
            "--web-socket-url",
            &orch.url(),
        ])
        .args([
            "--image-pull-policy",
            "IfNotPresent",
            "--log-level",
            "debug",
        ])
        .env("WARP_API_KEY", "demo-api-key-not-a-real-key")
        .spawn()
    {
        Ok(child) => child,
        Err(e) => {
            eprintln!("oz-demo: could not start the worker {}: {e}", args.worker);
            return ExitCode::from(1);
        }
    };
    let ok = drive(&orch, &args, &mut worker);
    ExitCode::from(if ok { 0 } else { 1 })
}

fn drive(orch: &Orchestrator, args: &Args, worker: &mut Child) -> bool {
    if !orch.wait_until(|r| r.connected, Duration::from_secs(30)) {
        eprintln!("oz-demo: the worker did not connect within 30 s (see its log above)");
        let _ = worker.kill();
        return false;
    }
    let handshake = &orch.handshakes()[0];
    println!(
        "[demo] worker connected: GET {}?{}",
        handshake.path, handshake.query
    );
    let assignment = json!({"type": "task_assignment", "data": {
        "task_id": "demo-task-1",
        "execution_id": "demo-exec-1",
        "task": {
            "id": "demo-task-1",
            "title": "Demo task",
            "task_definition": {"prompt": "say hello"},
            "owner": {"Type": "TEAM", "Id": 1},
            "agent_config_snapshot": {"model_id": "demo-model", "idle_timeout_minutes": 1}
        },
        "docker_image": args.image,
        "sidecar_image": args.sidecar,
        "env_vars": {"DEMO_TOKEN": "demo-secret-value-never-logged"}
    }});
    println!(
        "[demo] -> task_assignment demo-task-1 (image {}, sidecar {})",
        args.image, args.sidecar
    );
    orch.send(&assignment);
    let mut shown = 0;
    let mut terminal: Option<Value> = None;
    while terminal.is_none() {
        let got_more = orch.wait_until(|r| r.received.len() > shown, Duration::from_secs(300));
        if !got_more {
            eprintln!("oz-demo: no status message within 5 minutes");
            break;
        }
        for frame in &orch.received()[shown..] {
            println!("[demo] <- {frame}");
            if frame["type"] == "task_completed" || frame["type"] == "task_failed" {
                terminal = Some(frame.clone());
            }
            shown += 1;
        }
    }
    println!("[demo] stopping the worker with SIGTERM");
    // SAFETY: kill(2) on our own child's pid.
    unsafe {
        libc::kill(worker.id() as libc::pid_t, libc::SIGTERM);
    }
    let status = worker.wait();
    let code = status.as_ref().ok().and_then(|s| s.code());
    println!(
        "[demo] worker exited with {code:?}; close code {:?}",
        orch.close_code()
    );
    let completed = terminal.is_some_and(|t| t["type"] == "task_completed");
    let ok = completed && code == Some(0) && orch.close_code() == Some(1000);
    println!(
        "[demo] {}",
        if ok {
            "OK: the task ran in a real container and completed"
        } else {
            "FAILED"
        }
    );
    ok
}

//! The `oz-agent-worker` binary: parses the command line and hands off to
//! the `run` command ([`oz_agent_worker::worker`]) or the `doctor`.

use oz_agent_worker::config::{self, Command};
use oz_agent_worker::{doctor, signals, worker};

fn main() {
    // Before any thread starts, so every thread inherits the mask and only
    // the signal thread ever takes SIGTERM/SIGINT.
    signals::block();
    let args: Vec<_> = std::env::args_os().skip(1).collect();
    match config::parse(args, &|name| std::env::var(name).ok()) {
        Ok(Command::Help(text)) => print!("{text}"),
        Ok(Command::Version(text)) => println!("{text}"),
        Ok(Command::Run(cfg)) => std::process::exit(worker::run(cfg)),
        Ok(Command::Doctor(input)) => {
            std::process::exit(doctor::run(input, &mut std::io::stdout().lock()))
        }
        Err(e) => {
            eprintln!("oz-agent-worker: {e}");
            // The Go worker's codes: 80 for a command line its parser
            // refuses, 1 for a configuration that cannot run.
            std::process::exit(e.exit_code());
        }
    }
}

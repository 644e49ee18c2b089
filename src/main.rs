//! The `oz-agent-worker` binary.

use oz_agent_worker::config::{self, Command};

fn main() {
    let args: Vec<_> = std::env::args_os().skip(1).collect();
    match config::parse(args, &|name| std::env::var(name).ok()) {
        Ok(Command::Help(text)) => print!("{text}"),
        Ok(Command::Version(text)) => println!("{text}"),
        // The lead engineer wires the worker and the doctor here.
        Ok(Command::Run(_)) | Ok(Command::Doctor(_)) => {}
        Err(e) => {
            eprintln!("oz-agent-worker: {e}");
            std::process::exit(2);
        }
    }
}

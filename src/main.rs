//! The `oz-agent-worker` binary.

fn main() {
    eprintln!("oz-agent-worker: not wired yet");
    std::process::exit(2);
}

//! SIGTERM / SIGINT handling without async-signal-unsafe handlers.
//!
//! Owns the process signal mask: [`block`] must run on the main thread before
//! any other thread starts, so every thread inherits the mask and the signals
//! are only ever taken by the one watcher thread in [`watch`] via `sigwait`.
//! The first signal starts a graceful shutdown; a second one ends the process
//! at once. Child processes get a clean mask (Rust's `Command` resets it).

use std::thread;

/// A shutdown signal that arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// SIGTERM.
    Term,
    /// SIGINT.
    Int,
}

impl Signal {
    /// Conventional name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Term => "SIGTERM",
            Self::Int => "SIGINT",
        }
    }
}

fn shutdown_set() -> libc::sigset_t {
    // SAFETY: sigemptyset/sigaddset only write the set we own.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
        set
    }
}

/// Blocks SIGTERM and SIGINT on this thread (and every thread it starts later).
pub fn block() {
    let set = shutdown_set();
    // SAFETY: pthread_sigmask with a valid set and a null old-set pointer.
    unsafe {
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}

fn wait_one(set: &libc::sigset_t) -> Signal {
    loop {
        let mut signo: libc::c_int = 0;
        // SAFETY: sigwait with a valid set and a pointer to our integer.
        let rc = unsafe { libc::sigwait(set, &mut signo) };
        if rc == 0 {
            return if signo == libc::SIGINT {
                Signal::Int
            } else {
                Signal::Term
            };
        }
    }
}

/// Starts the watcher thread: `on_first` runs on it for the first signal; a
/// second signal logs and exits the process with status 130 immediately.
pub fn watch(on_first: impl FnOnce(Signal) + Send + 'static) {
    thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            let set = shutdown_set();
            let first = wait_one(&set);
            log::info!("received {}, shutting down gracefully", first.name());
            on_first(first);
            let second = wait_one(&set);
            log::warn!(
                "received {} during shutdown, exiting now without waiting",
                second.name()
            );
            std::process::exit(130);
        })
        .expect("spawning the signal thread at startup");
}

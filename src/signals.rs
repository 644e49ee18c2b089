//! Process signals without async-signal-unsafe handlers.
//!
//! Owns the process signal mask: [`block`] must run on the main thread before
//! any other thread starts, so every thread inherits the mask and the signals
//! are only ever taken by the one watcher thread in [`watch`] via `sigwait`.
//!
//! - SIGTERM / SIGINT: stop, the way `--on-shutdown` says.
//! - SIGQUIT: stop after running tasks finish (drain), GitLab Runner's convention.
//! - SIGHUP: logged and ignored. Nothing is reloaded (flags and the config
//!   file are read once); a terminal hang-up or a `kill -HUP` must not end
//!   the worker and every task with it.
//! - A second SIGTERM / SIGINT within [`REPEAT_WINDOW`] of the first is the
//!   same request (senders such as `timeout` or a supervisor and its
//!   container runtime often signal twice); a later one exits at once with
//!   status 130, leaving running containers to the next process.
//!
//! Child processes get a clean mask (Rust's `Command` resets it).

use std::thread;
use std::time::{Duration, Instant};

/// A repeated stop signal this soon after the first is the same request.
pub const REPEAT_WINDOW: Duration = Duration::from_secs(1);

/// A signal the worker acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// SIGTERM.
    Term,
    /// SIGINT.
    Int,
    /// SIGQUIT.
    Quit,
    /// SIGHUP.
    Hup,
}

impl Signal {
    /// Conventional name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Term => "SIGTERM",
            Self::Int => "SIGINT",
            Self::Quit => "SIGQUIT",
            Self::Hup => "SIGHUP",
        }
    }

    fn from_raw(signo: libc::c_int) -> Self {
        match signo {
            libc::SIGINT => Self::Int,
            libc::SIGQUIT => Self::Quit,
            libc::SIGHUP => Self::Hup,
            _ => Self::Term,
        }
    }
}

fn watched_set() -> libc::sigset_t {
    // SAFETY: sigemptyset/sigaddset only write the set we own.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for signo in [libc::SIGTERM, libc::SIGINT, libc::SIGQUIT, libc::SIGHUP] {
            libc::sigaddset(&mut set, signo);
        }
        set
    }
}

/// Blocks the watched signals on this thread (and every thread it starts later).
pub fn block() {
    let set = watched_set();
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
            return Signal::from_raw(signo);
        }
    }
}

/// What the watcher does with one signal, given when the stop began.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reaction {
    /// Start stopping (the first stop signal).
    Stop,
    /// Log it and carry on.
    Ignore(&'static str),
    /// Exit now with status 130.
    Force,
}

/// The pure rule: `stopping_since` is when the first stop signal came.
pub fn react(signal: Signal, stopping_since: Option<Instant>, now: Instant) -> Reaction {
    match (signal, stopping_since) {
        (Signal::Hup, _) => Reaction::Ignore(
            "ignored: this worker reloads nothing (restart it to apply configuration changes)",
        ),
        (_, None) => Reaction::Stop,
        (Signal::Quit, Some(_)) => Reaction::Ignore("ignored: the worker is already stopping"),
        (_, Some(since)) if now.duration_since(since) < REPEAT_WINDOW => {
            Reaction::Ignore("the same stop request; still stopping gracefully")
        }
        (_, Some(_)) => Reaction::Force,
    }
}

/// Starts the watcher thread: `on_stop` runs on it for the first stop signal
/// (SIGTERM, SIGINT or SIGQUIT); later signals follow [`react`].
pub fn watch(on_stop: impl FnOnce(Signal) + Send + 'static) {
    thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            let set = watched_set();
            let mut on_stop = Some(on_stop);
            let mut stopping_since = None;
            loop {
                let signal = wait_one(&set);
                match react(signal, stopping_since, Instant::now()) {
                    Reaction::Stop => {
                        stopping_since = Some(Instant::now());
                        let how = if signal == Signal::Quit {
                            "after running tasks finish"
                        } else {
                            "gracefully"
                        };
                        log::info!("received {}, shutting down {how}", signal.name());
                        if let Some(f) = on_stop.take() {
                            f(signal);
                        }
                    }
                    Reaction::Ignore(why) => log::info!("received {}: {why}", signal.name()),
                    Reaction::Force => {
                        log::warn!(
                            "received {} again during shutdown, exiting now without waiting (running containers are left for the next worker process)",
                            signal.name()
                        );
                        std::process::exit(130);
                    }
                }
            }
        })
        .expect("spawning the signal thread at startup");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_signals_within_the_window_are_one_request() {
        let t0 = Instant::now();
        let soon = t0 + Duration::from_millis(400);
        let later = t0 + Duration::from_millis(1500);
        assert_eq!(react(Signal::Term, None, t0), Reaction::Stop);
        assert_eq!(react(Signal::Quit, None, t0), Reaction::Stop);
        assert!(matches!(
            react(Signal::Term, Some(t0), soon),
            Reaction::Ignore(_)
        ));
        assert!(matches!(
            react(Signal::Int, Some(t0), soon),
            Reaction::Ignore(_)
        ));
        assert_eq!(react(Signal::Term, Some(t0), later), Reaction::Force);
        assert_eq!(react(Signal::Int, Some(t0), later), Reaction::Force);
        assert!(matches!(
            react(Signal::Quit, Some(t0), later),
            Reaction::Ignore(_)
        ));
        assert!(matches!(react(Signal::Hup, None, t0), Reaction::Ignore(_)));
        assert!(matches!(
            react(Signal::Hup, Some(t0), later),
            Reaction::Ignore(_)
        ));
    }
}

//! The stall watchdog: a thread that aborts a pull when the registry sends
//! no progress for a while (a pull has no overall time limit).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crossbeam_channel::{RecvTimeoutError, Sender};

/// A watchdog on its own thread: runs `on_stall` once when [`StallWatch::progress`]
/// has not been called for `limit` (counting from the start).
pub struct StallWatch {
    beat: Option<Sender<()>>,
    stalled: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl StallWatch {
    /// Starts watching.
    pub fn start(limit: Duration, on_stall: impl FnOnce() + Send + 'static) -> StallWatch {
        // One pending beat is enough: it only says "something happened".
        let (beat, beats) = crossbeam_channel::bounded::<()>(1);
        let stalled = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stalled);
        let thread = std::thread::Builder::new()
            .name("pull-watch".into())
            .spawn(move || {
                loop {
                    match beats.recv_timeout(limit) {
                        Ok(()) => {}
                        Err(RecvTimeoutError::Disconnected) => return,
                        Err(RecvTimeoutError::Timeout) => {
                            flag.store(true, Ordering::SeqCst);
                            on_stall();
                            return;
                        }
                    }
                }
            });
        StallWatch {
            beat: Some(beat),
            stalled,
            // Without the thread there is no timeout, but the pull still works.
            thread: thread.ok(),
        }
    }

    /// Something moved: the timer starts again.
    pub fn progress(&self) {
        if let Some(beat) = &self.beat {
            // Full: a beat is already pending. Disconnected: the watchdog has
            // fired and the pull is being aborted. Either way nothing to do.
            let _ = beat.try_send(());
        }
    }

    /// Stops watching; true if the watchdog fired.
    pub fn finish(mut self) -> bool {
        self.stop();
        self.stalled.load(Ordering::SeqCst)
    }

    fn stop(&mut self) {
        drop(self.beat.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for StallWatch {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_watch_fires_once_without_progress() {
        let (tx, rx) = crossbeam_channel::unbounded();
        let watch = StallWatch::start(Duration::from_millis(20), move || {
            tx.send(()).unwrap();
        });
        rx.recv_timeout(Duration::from_secs(10)).unwrap();
        assert!(watch.finish());
        assert_eq!(
            rx.try_recv(),
            Err(crossbeam_channel::TryRecvError::Disconnected)
        );
    }

    #[test]
    fn progress_keeps_the_watch_quiet() {
        let (tx, rx) = crossbeam_channel::unbounded::<()>();
        let watch = StallWatch::start(Duration::from_millis(500), move || {
            tx.send(()).unwrap();
        });
        // Beats ten times faster than the limit, for three limits' worth.
        for _ in 0..30 {
            std::thread::sleep(Duration::from_millis(50));
            watch.progress();
        }
        assert!(!watch.finish());
        assert!(rx.try_recv().is_err());
    }
}

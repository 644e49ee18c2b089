//! [`AbortSlot`]: how another thread cuts a long Docker call short (a
//! socket shutdown), and keeps later calls through the same slot from
//! starting.

use std::sync::{Arc, Mutex, MutexGuard};

use super::super::transport::{ShutdownHandle, Stream};

#[derive(Default)]
struct SlotState {
    aborted: bool,
    handle: Option<ShutdownHandle>,
}

/// A cancel hook for long calls: [`AbortSlot::abort`] from any thread shuts
/// down the socket of the call currently using the slot, and makes every
/// later call with it fail with [`DockerError::Aborted`]. Cheap to clone.
#[derive(Clone, Default)]
pub struct AbortSlot {
    state: Arc<Mutex<SlotState>>,
}

impl AbortSlot {
    /// A slot not yet aborted.
    pub fn new() -> AbortSlot {
        AbortSlot::default()
    }

    fn lock(&self) -> MutexGuard<'_, SlotState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Aborts the call in progress (if any) and all later ones.
    pub fn abort(&self) {
        let mut state = self.lock();
        state.aborted = true;
        if let Some(handle) = state.handle.take() {
            handle.shutdown();
        }
    }

    /// Whether [`AbortSlot::abort`] was called.
    pub fn is_aborted(&self) -> bool {
        self.lock().aborted
    }

    /// Registers `stream` as the one to shut down; false if already aborted.
    pub(super) fn arm(&self, stream: &Stream) -> bool {
        let mut state = self.lock();
        if state.aborted {
            return false;
        }
        // Without a handle the call cannot be cut short, but it still works.
        state.handle = stream.shutdown_handle().ok();
        true
    }

    pub(super) fn disarm(&self) {
        self.lock().handle = None;
    }
}

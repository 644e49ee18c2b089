//! The worker ⇄ orchestrator wire protocol (`shared/spec/PROTOCOL.md`).
//!
//! Owns the serde types of every message and the envelope codec: turning one
//! text frame into an [`Inbound`] message, and an [`Outbound`] message into
//! one text frame. It does no I/O and knows nothing about sockets, threads or
//! Docker. Unknown fields are ignored everywhere, so a newer orchestrator never
//! breaks this worker.
//!
//! This file only re-exports; the parts live in:
//!
//! | file | owns |
//! |---|---|
//! | `decode` | one frame in: [`decode`](fn@decode), [`Inbound`], [`DecodeError`], scrubbing serde's errors |
//! | `envelope` | the recursion-free scanner that takes a frame's envelope apart |
//! | `ids` | the door's checks on ids, image references and mount paths |
//! | `assignment` | the `task_assignment` structs ([`TaskAssignment`] and its parts) |
//! | `shape` | serde helpers that accept only JSON objects |
//! | `outbound` | [`Outbound`], [`FailureReason`] and the fixed message texts |

/// Largest frame the worker accepts; a larger one closes the connection.
pub const MAX_MESSAGE_BYTES: usize = 16 << 20;

mod assignment;
mod decode;
mod envelope;
mod ids;
mod outbound;
mod shape;

pub use assignment::{
    AgentConfig, AwsInferenceProvider, Harness, InferenceProviders, InstanceShape, RawJson,
    SessionSharing, SidecarMount, Task, TaskAssignment, TaskOwner,
};
pub use decode::{DecodeError, EnvelopeProblem, Inbound, decode};
pub use envelope::{MAX_DEPTH, SyntaxError};
pub use ids::{IdProblem, MAX_ID_BYTES, MAX_REFERENCE_BYTES, check_id, check_reference};
pub use outbound::{
    CANCELLED_MESSAGE, CANCELLED_STATE, COMPLETED_MESSAGE, FailureReason, INTERRUPTED_MESSAGE,
    Outbound, TIMEOUT_MESSAGE,
};

#[cfg(test)]
mod tests;

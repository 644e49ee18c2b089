//! `oz-agent-worker`: the self-hosted worker for Oz cloud agents.
//!
//! One connection thread talks to the Oz orchestrator over a WebSocket
//! ([`connection`]); assignments go to [`dispatch`], which claims or rejects
//! them and hands each claimed task to a fixed pool of threads; each pool
//! thread runs its task through a [`task::TaskRunner`] (the Docker backend in
//! [`docker`] and [`execute`]); status messages travel back through the
//! [`outbox`], which keeps them across reconnects until the orchestrator has
//! them. The process around them, and the list of every thread it starts,
//! is [`worker`]'s.
//!
//! # Errors
//!
//! One rule for every error in the crate: an error is a type (an enum or a
//! struct, never a `String`) whose `Display` is plain words an operator can
//! act on. Its cause goes in exactly one place: in `Display`, when the cause
//! is what the operator must read (the usual case: one log line says it
//! all), or in `source()`, when the error wraps another one unchanged and
//! adds only context — never in both, so a chain printed cause by cause
//! does not repeat itself.

#![deny(missing_docs, unused_must_use)]

pub mod archives;
pub mod build_info;
pub mod calendar;
pub mod config;
pub mod connection;
pub mod container_spec;
pub mod daemon;
pub mod deadline;
pub mod dispatch;
pub mod docker;
pub mod doctor;
pub mod duration;
pub mod events;
pub mod execute;
pub mod http;
pub mod inflight;
pub mod logging;
pub mod metrics;
pub mod net;
pub mod outbox;
pub mod preflight;
pub mod signals;
pub mod task;
pub mod task_network;
pub mod telemetry;
pub mod untrusted;
pub mod wire;
pub mod worker;

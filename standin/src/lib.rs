//! Stand-in Oz orchestrator and network fixtures for tests and the local demo.
//!
//! [`Orchestrator`] is a real WebSocket server (plain or TLS with a throwaway
//! CA) that records what a worker sends and lets a test push messages, drop
//! the connection, go silent or refuse a handshake. [`ConnectProxy`] is a real
//! HTTP `CONNECT` proxy. [`registry`] runs a real private registry and
//! [`relay`] exposes the Docker socket over TCP and TLS. Nothing here depends on the worker crate's internals:
//! the stand-in speaks only the wire protocol, as the real orchestrator does.
//! Fixture setup failures panic with a plain message; these are test tools.

#![deny(missing_docs)]

mod certs;
mod orchestrator;
mod proxy;
pub mod registry;
pub mod relay;

pub use certs::{TEST_HOST, TestCa};
pub use orchestrator::{Handshake, Options, Orchestrator, Recorded, WORKER_PATH};
pub use proxy::{ConnectProxy, ConnectRecord};

//! Stand-in Oz orchestrator and network fixtures for tests and the local demo.
pub mod registry;
pub mod relay;

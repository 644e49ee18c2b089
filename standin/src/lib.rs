//! Stand-in Oz orchestrator and network fixtures for tests and the local demo.

//! The Docker Engine API client: hand-written HTTP/1.1 over a Unix socket,
//! TCP or TLS, with daemon discovery and a typed API.
//!
//! Layers, bottom up: [`crate::http`] (the crate's pure HTTP/1.1 codec),
//! [`transport`] (sockets, on [`crate::net`]), [`client`] (one
//! request/response, pooling, aborts), [`api`], [`images`], [`volumes`],
//! [`containers`], [`system`] and [`disk`] (typed Engine calls on
//! [`Docker`]). [`discovery`] finds the daemon; [`logs`] demuxes log
//! streams. Task logic (names, specs) lives elsewhere and must not move in
//! here.

pub mod api;
pub mod auth;
pub mod client;
pub mod containers;
pub mod discovery;
pub mod disk;
pub mod error;
pub mod images;
pub mod logs;
pub mod reference;
pub mod sha256;
pub mod system;
pub mod transport;
pub mod volumes;

pub use api::{Docker, VersionInfo};
pub use client::AbortSlot;
pub use containers::{
    ContainerConfig, ContainerDetails, ContainerState, ContainerSummary, WaitResult,
};
pub use discovery::Target;
pub use error::DockerError;
pub use images::{ImageInfo, LoadReport, ProgressDetail, PullProgress};
pub use system::{NetworkInfo, SystemInfo};
pub use transport::Endpoint;
pub use volumes::VolumeInfo;

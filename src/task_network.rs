//! The network task containers join when the operator names none: one
//! bridge network the worker makes once and reuses, in which containers
//! cannot reach each other (Docker's `com.docker.network.bridge.enable_icc`
//! set to `false`) but reach the outside through the host as on Docker's
//! default bridge. On the default bridge one task could connect to another
//! task's listening port by its address.
//!
//! Owns the network's name, how it is made ([`ensure`]: create if missing,
//! a concurrent creation by another worker tolerated) and the judgement of
//! an existing one ([`judge`], pure). It never removes the network (other
//! workers' containers may be on it) and never touches an operator's
//! `network` / `network_mode`, which replaces it.

use std::collections::BTreeMap;
use std::fmt;

use crate::container_spec::LABEL_MANAGED;
use crate::docker::{Docker, DockerError, NetworkInfo};
use crate::execute::names::LABEL_ROLE;

/// The network's name on the daemon.
pub const TASK_NETWORK: &str = "oz-agent-worker-tasks";
/// Its bridge interface on the host (at most 15 characters), fixed so a
/// firewall rule can name it (`iptables -i oz-tasks0`).
pub const BRIDGE_NAME: &str = "oz-tasks0";
/// Docker's bridge option for inter-container communication.
pub const ICC_OPTION: &str = "com.docker.network.bridge.enable_icc";
/// `…role` label value of the network.
pub const ROLE_TASK_NETWORK: &str = "task-network";

/// Why the task network cannot be used.
#[derive(Debug)]
pub enum TaskNetworkError {
    /// A network of the task network's name exists but lets containers
    /// reach each other (someone else made it, or changed it).
    NotIsolated {
        /// The network's name.
        name: String,
        /// Its driver.
        driver: String,
        /// Its `enable_icc` option, when set.
        icc: Option<String>,
    },
    /// The daemon refused or failed a call.
    Daemon {
        /// The network's name.
        name: String,
        /// The call, e.g. `POST /networks/create`.
        call: &'static str,
        /// What it said.
        source: DockerError,
    },
}

impl fmt::Display for TaskNetworkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotIsolated { name, driver, icc } => write!(
                f,
                "the task network {name} exists but lets its containers reach each other (driver {driver}, {ICC_OPTION} {}); the worker did not make it so: remove it (docker network rm {name}) so the worker makes its own, or name the network tasks should use in backend.docker.network",
                icc.as_deref()
                    .map_or("unset".to_owned(), |v| format!("{v:?}"))
            ),
            Self::Daemon { name, call, source } => {
                write!(
                    f,
                    "cannot prepare the task network {name} ({call}): {source}"
                )
            }
        }
    }
}

impl std::error::Error for TaskNetworkError {}

/// What [`ensure`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ensured {
    /// It was there already (made by this or another worker).
    Reused,
    /// This call made it.
    Created,
}

/// The driver options a task network is made with, its host interface
/// named `bridge`.
pub fn create_options(bridge: &str) -> BTreeMap<&'static str, &str> {
    BTreeMap::from([
        (ICC_OPTION, "false"),
        ("com.docker.network.bridge.name", bridge),
    ])
}

/// The labels the network is made with (no worker id: every worker on the
/// daemon shares it).
pub fn labels() -> BTreeMap<String, String> {
    BTreeMap::from([
        (LABEL_MANAGED.to_owned(), "true".to_owned()),
        (LABEL_ROLE.to_owned(), ROLE_TASK_NETWORK.to_owned()),
    ])
}

/// Whether an existing network keeps its containers apart: a bridge with
/// `enable_icc` `false`.
pub fn judge(info: &NetworkInfo) -> Result<(), TaskNetworkError> {
    let icc = info.options.get(ICC_OPTION);
    if info.driver == "bridge" && icc.map(String::as_str) == Some("false") {
        return Ok(());
    }
    Err(TaskNetworkError::NotIsolated {
        name: info.name.clone(),
        driver: info.driver.clone(),
        icc: icc.cloned(),
    })
}

/// Makes [`TASK_NETWORK`] unless it exists, and checks it keeps containers
/// apart (see [`ensure_network`]).
pub fn ensure(docker: &Docker) -> Result<Ensured, TaskNetworkError> {
    ensure_network(docker, TASK_NETWORK, BRIDGE_NAME)
}

/// Makes network `name` (host interface `bridge`) unless it exists, and
/// checks it keeps containers apart. Two workers starting at once may both
/// try: the loser's refusal is fine once the network it finds passes
/// [`judge`].
pub fn ensure_network(
    docker: &Docker,
    name: &str,
    bridge: &str,
) -> Result<Ensured, TaskNetworkError> {
    let failed = |call, source| TaskNetworkError::Daemon {
        name: name.to_owned(),
        call,
        source,
    };
    let inspect = || {
        docker
            .network_inspect(name)
            .map_err(|source| failed("GET /networks", source))
    };
    if let Some(info) = inspect()? {
        return judge(&info).map(|()| Ensured::Reused);
    }
    match docker.network_create(name, &create_options(bridge), &labels()) {
        Ok(()) => Ok(Ensured::Created),
        // Another worker got there first: a 409 (the name, when its create
        // was done) or a 403 "networks have same bridge name" (when both
        // were in flight; the fixed bridge name is what stops a second
        // network of the same name then). Whatever the refusal, the network
        // found now decides.
        Err(e) => match inspect()? {
            Some(info) => judge(&info).map(|()| Ensured::Reused),
            None => Err(failed("POST /networks/create", e)),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(driver: &str, icc: Option<&str>) -> NetworkInfo {
        NetworkInfo {
            name: TASK_NETWORK.into(),
            driver: driver.into(),
            options: icc
                .map(|v| BTreeMap::from([(ICC_OPTION.to_owned(), v.to_owned())]))
                .unwrap_or_default(),
            labels: BTreeMap::new(),
        }
    }

    #[test]
    fn only_a_bridge_without_icc_keeps_tasks_apart() {
        assert!(judge(&info("bridge", Some("false"))).is_ok());
        for (driver, icc) in [
            ("bridge", None),
            ("bridge", Some("true")),
            ("macvlan", Some("false")),
        ] {
            assert!(judge(&info(driver, icc)).is_err(), "{driver} {icc:?}");
        }
        assert_eq!(
            judge(&info("bridge", None)).unwrap_err().to_string(),
            "the task network oz-agent-worker-tasks exists but lets its containers reach each other (driver bridge, com.docker.network.bridge.enable_icc unset); the worker did not make it so: remove it (docker network rm oz-agent-worker-tasks) so the worker makes its own, or name the network tasks should use in backend.docker.network"
        );
    }

    #[test]
    fn made_isolated_with_a_named_bridge_and_labelled() {
        assert_eq!(
            create_options(BRIDGE_NAME),
            BTreeMap::from([
                ("com.docker.network.bridge.enable_icc", "false"),
                ("com.docker.network.bridge.name", "oz-tasks0"),
            ])
        );
        assert_eq!(
            labels(),
            BTreeMap::from([
                (
                    "dev.warp.oz-agent-worker.managed".to_owned(),
                    "true".to_owned()
                ),
                (
                    "dev.warp.oz-agent-worker.role".to_owned(),
                    "task-network".to_owned()
                ),
            ])
        );
    }
}

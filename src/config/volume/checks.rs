//! Checks across the volume entries (two at one container path, one at the
//! agent's path) and the warnings logged at start (named volumes, missing
//! host paths). Pure, like its parent: host-path existence is a lookup.

use std::fmt;

use super::{VolumeMount, VolumeSource, clean};

/// Two entries that cannot both be mounted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VolumeConflict {
    /// Both mount at the same container path (Docker: "Duplicate mount point").
    SameContainerPath {
        /// The earlier entry.
        first: String,
        /// The later entry.
        second: String,
        /// The container path, cleaned.
        path: String,
    },
    /// An entry mounts where the agent sidecar must go.
    AgentPath {
        /// The entry.
        entry: String,
    },
}

impl fmt::Display for VolumeConflict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::SameContainerPath {
                first,
                second,
                path,
            } => write!(
                f,
                "volumes `{first}` and `{second}` both mount at {path}; Docker refuses two mounts at one container path"
            ),
            Self::AgentPath { entry } => write!(
                f,
                "volume `{entry}` mounts at {}, where every task's agent sidecar is mounted",
                crate::config::AGENT_MOUNT_PATH
            ),
        }
    }
}

/// Refuses entries that would make every task's container create fail:
/// two at one container path, or one at the agent's path.
pub fn check_conflicts(volumes: &[VolumeMount]) -> Result<(), VolumeConflict> {
    let mut seen: Vec<(String, &str)> = Vec::with_capacity(volumes.len());
    for v in volumes {
        let path = clean(&v.container);
        if path == crate::config::AGENT_MOUNT_PATH {
            return Err(VolumeConflict::AgentPath {
                entry: v.spec.clone(),
            });
        }
        if let Some((_, first)) = seen.iter().find(|(p, _)| *p == path) {
            return Err(VolumeConflict::SameContainerPath {
                first: (*first).to_owned(),
                second: v.spec.clone(),
                path,
            });
        }
        seen.push((path, &v.spec));
    }
    Ok(())
}

/// Something about a volume entry the operator should know at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VolumeWarning {
    /// The source is a name, so Docker mounts one named volume into every task.
    Named {
        /// The entry.
        entry: String,
        /// The volume name.
        name: String,
    },
    /// The host path is missing, so Docker will create it.
    MissingHostPath {
        /// The entry.
        entry: String,
        /// The host path.
        path: String,
    },
}

impl VolumeWarning {
    /// The entry the warning is about.
    pub fn entry(&self) -> &str {
        match self {
            Self::Named { entry, .. } | Self::MissingHostPath { entry, .. } => entry,
        }
    }

    /// The warning without the entry.
    pub fn detail(&self) -> String {
        match self {
            Self::Named { name, .. } => format!(
                "`{name}` is not a host path but a named Docker volume, shared by every task this worker runs; write an absolute path to bind a host directory"
            ),
            Self::MissingHostPath { path, .. } => format!(
                "host path {path} does not exist; Docker will create it as an empty directory owned by root"
            ),
        }
    }
}

impl fmt::Display for VolumeWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "volume `{}`: {}", self.entry(), self.detail())
    }
}

/// The warnings for `volumes`, in order. `exists` says whether a host path
/// exists (`None`: cannot tell from here, e.g. inside a container).
pub fn warnings(
    volumes: &[VolumeMount],
    exists: &dyn Fn(&str) -> Option<bool>,
) -> Vec<VolumeWarning> {
    volumes
        .iter()
        .filter_map(|v| match &v.source {
            VolumeSource::Named(name) => Some(VolumeWarning::Named {
                entry: v.spec.clone(),
                name: name.clone(),
            }),
            VolumeSource::HostPath(path) if exists(path) == Some(false) => {
                Some(VolumeWarning::MissingHostPath {
                    entry: v.spec.clone(),
                    path: path.clone(),
                })
            }
            _ => None,
        })
        .collect()
}

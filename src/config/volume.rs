//! `-v` / `backend.docker.volumes` entries, read with the grammar of the
//! Docker Engine's own Linux mount parser (moby `volume/mounts`,
//! `ParseMountRaw`) and the local volume driver's name rule. The worker
//! refuses at start exactly what a task's container create would refuse, and
//! hands every other entry to Docker verbatim as a `HostConfig.Binds` string,
//! as the Go worker does.
//!
//! Owns [`VolumeMount`], the entry grammar, the checks across entries
//! (two at one container path) and the start-up warnings. Pure: it must not
//! touch the filesystem (host-path existence comes in as a lookup) or log.

use std::fmt;

/// One volume entry for every task container, as Docker reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeMount {
    /// The entry as written: the `HostConfig.Binds` string.
    pub spec: String,
    /// What is mounted.
    pub source: VolumeSource,
    /// The path in the container, as written.
    pub container: String,
    /// The comma-separated option list, read.
    pub options: MountOptions,
}

/// What a volume entry mounts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VolumeSource {
    /// An absolute host path: a bind mount.
    HostPath(String),
    /// Any other source: a named volume, created by Docker when missing.
    Named(String),
    /// No source (`/data`): a fresh volume per container, removed with it.
    Anonymous,
}

/// The options Docker accepts after the second `:`, at most one of each kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MountOptions {
    /// `ro` / `rw`.
    pub access: Option<Access>,
    /// `z` / `Z`: SELinux relabelling.
    pub selinux: Option<SelinuxLabel>,
    /// Bind propagation (host paths only).
    pub propagation: Option<Propagation>,
    /// `nocopy`: do not copy the image's files into a new volume (volumes only).
    pub nocopy: bool,
    /// `consistent` / `cached` / `delegated` (accepted, no effect on Linux).
    pub consistency: Option<Consistency>,
}

/// `ro` or `rw`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// `ro`.
    ReadOnly,
    /// `rw`.
    ReadWrite,
}

/// `z` (shared between containers) or `Z` (private to this one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SelinuxLabel {
    /// `z`.
    Shared,
    /// `Z`.
    Private,
}

/// Mount propagation of a bind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum Propagation {
    Private,
    RPrivate,
    Shared,
    RShared,
    Slave,
    RSlave,
}

/// Docker Desktop's consistency hints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum Consistency {
    Consistent,
    Cached,
    Delegated,
}

impl VolumeMount {
    /// The Docker `Binds` entry: the entry exactly as written.
    pub fn to_bind(&self) -> String {
        self.spec.clone()
    }

    /// Mounted read-only (`ro` in the options).
    pub fn read_only(&self) -> bool {
        self.options.access == Some(Access::ReadOnly)
    }

    /// The host path of a bind mount.
    pub fn host_path(&self) -> Option<&str> {
        match &self.source {
            VolumeSource::HostPath(p) => Some(p),
            _ => None,
        }
    }
}

/// Why Docker would refuse a volume entry; the entry itself is shown by
/// the error that carries this.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VolumeProblem {
    /// Nothing at all.
    Empty,
    /// Nothing before the first `:`.
    EmptySource,
    /// More than three `:`-separated parts.
    TooManyParts,
    /// `PATH:OPTIONS` with no container path (`/data:ro`).
    OptionsWithoutContainerPath(String),
    /// Nothing where the container path goes.
    EmptyContainerPath,
    /// A container path that does not start with `/`.
    RelativeContainerPath(String),
    /// A container path that is `/` itself.
    RootContainerPath,
    /// An empty item in the option list (`ro,`).
    EmptyOption,
    /// An option Docker does not know.
    UnknownOption(String),
    /// Two options of one kind (`ro,rw`).
    ConflictingOptions(String, String),
    /// `nocopy` on a host path.
    NoCopyOnHostPath,
    /// A propagation option on a volume.
    PropagationOnVolume(String),
    /// A one-character volume name.
    VolumeNameTooShort(String),
    /// A volume name the local driver refuses (e.g. `./data`).
    BadVolumeName(String),
}

impl fmt::Display for VolumeProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const FORM: &str =
            "(expected SOURCE:CONTAINER[:OPTIONS], or /CONTAINER for an anonymous volume)";
        const HOST_PATH: &str = "a host directory must be written as an absolute path";
        match self {
            Self::Empty => write!(f, "is empty {FORM}"),
            Self::EmptySource => write!(f, "has nothing before the first ':' {FORM}"),
            Self::TooManyParts => write!(f, "has more than three ':'-separated parts {FORM}"),
            Self::OptionsWithoutContainerPath(o) => {
                write!(f, "has options `{o}` but no container path {FORM}")
            }
            Self::EmptyContainerPath => write!(f, "has an empty container path {FORM}"),
            Self::RelativeContainerPath(p) => {
                write!(f, "has container path `{p}`, which is not absolute")
            }
            Self::RootContainerPath => {
                f.write_str("has container path `/`: nothing can be mounted over the container's root")
            }
            Self::EmptyOption => f.write_str("has an empty item in its option list"),
            Self::UnknownOption(o) => write!(
                f,
                "has unknown option `{o}` (Docker's are ro, rw, z, Z, private, rprivate, shared, \
                 rshared, slave, rslave, nocopy, consistent, cached, delegated)"
            ),
            Self::ConflictingOptions(a, b) => write!(
                f,
                "has options `{a}` and `{b}`, which conflict (at most one of each kind)"
            ),
            Self::NoCopyOnHostPath => f.write_str(
                "has option `nocopy` on a host path (it applies to named and anonymous volumes only)",
            ),
            Self::PropagationOnVolume(p) => write!(
                f,
                "has option `{p}` on a volume (propagation applies to host paths only)"
            ),
            Self::VolumeNameTooShort(n) => write!(
                f,
                "names volume `{n}`, but a volume name needs at least two characters; {HOST_PATH}"
            ),
            Self::BadVolumeName(n) => write!(
                f,
                "names volume `{n}`, but a volume name may hold only [a-zA-Z0-9][a-zA-Z0-9_.-]; {HOST_PATH}"
            ),
        }
    }
}

/// Reads one entry: `SOURCE:CONTAINER[:OPTIONS]` or `/CONTAINER`. SOURCE is
/// an absolute host path (a bind) or a volume name; the checks are Docker's,
/// in Docker's order.
pub fn parse_volume(entry: &str) -> Result<VolumeMount, VolumeProblem> {
    let parts: Vec<&str> = entry.splitn(4, ':').collect();
    if parts[0].is_empty() {
        return Err(if entry.is_empty() {
            VolumeProblem::Empty
        } else {
            VolumeProblem::EmptySource
        });
    }
    let (source, container, mode) = match parts.as_slice() {
        [container] => ("", *container, ""),
        [_, ""] => return Err(VolumeProblem::EmptyContainerPath),
        [_, second] if parse_options(second).is_ok() => {
            return Err(VolumeProblem::OptionsWithoutContainerPath(
                (*second).to_owned(),
            ));
        }
        [source, container] => (*source, *container, ""),
        [source, container, mode] => (*source, *container, *mode),
        _ => return Err(VolumeProblem::TooManyParts),
    };
    let options = parse_options(mode)?;
    let source = if source.starts_with('/') {
        VolumeSource::HostPath(source.to_owned())
    } else if source.is_empty() {
        VolumeSource::Anonymous
    } else {
        VolumeSource::Named(source.to_owned())
    };
    match (&source, options.propagation) {
        (VolumeSource::HostPath(_), _) if options.nocopy => {
            return Err(VolumeProblem::NoCopyOnHostPath);
        }
        (VolumeSource::Named(_) | VolumeSource::Anonymous, Some(p)) => {
            return Err(VolumeProblem::PropagationOnVolume(p.as_str().to_owned()));
        }
        _ => {}
    }
    check_container_path(container)?;
    if let VolumeSource::Named(name) = &source {
        check_volume_name(name)?;
    }
    Ok(VolumeMount {
        spec: entry.to_owned(),
        source,
        container: container.to_owned(),
        options,
    })
}

/// Docker checks the container path with `\` read as `/`.
fn check_container_path(path: &str) -> Result<(), VolumeProblem> {
    if path.is_empty() {
        return Err(VolumeProblem::EmptyContainerPath);
    }
    let slashed = path.replace('\\', "/");
    if clean(&slashed) == "/" {
        return Err(VolumeProblem::RootContainerPath);
    }
    if !slashed.starts_with('/') {
        return Err(VolumeProblem::RelativeContainerPath(path.to_owned()));
    }
    Ok(())
}

/// The local volume driver's rule (`[a-zA-Z0-9][a-zA-Z0-9_.-]+`).
fn check_volume_name(name: &str) -> Result<(), VolumeProblem> {
    if name.chars().count() == 1 {
        return Err(VolumeProblem::VolumeNameTooShort(name.to_owned()));
    }
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if first_ok && rest_ok {
        Ok(())
    } else {
        Err(VolumeProblem::BadVolumeName(name.to_owned()))
    }
}

/// The option list; empty means none.
fn parse_options(mode: &str) -> Result<MountOptions, VolumeProblem> {
    let mut o = MountOptions::default();
    if mode.is_empty() {
        return Ok(o);
    }
    // Per kind: the option already seen, to name both in a conflict.
    let mut seen: [Option<&str>; 5] = [None; 5];
    for item in mode.split(',') {
        let kind = match item {
            "ro" | "rw" => {
                o.access = Some(if item == "ro" {
                    Access::ReadOnly
                } else {
                    Access::ReadWrite
                });
                0
            }
            "z" | "Z" => {
                o.selinux = Some(if item == "z" {
                    SelinuxLabel::Shared
                } else {
                    SelinuxLabel::Private
                });
                1
            }
            "nocopy" => {
                o.nocopy = true;
                3
            }
            "consistent" | "cached" | "delegated" => {
                o.consistency = Some(match item {
                    "consistent" => Consistency::Consistent,
                    "cached" => Consistency::Cached,
                    _ => Consistency::Delegated,
                });
                4
            }
            "" => return Err(VolumeProblem::EmptyOption),
            other => match Propagation::parse(other) {
                Some(p) => {
                    o.propagation = Some(p);
                    2
                }
                None => return Err(VolumeProblem::UnknownOption(other.to_owned())),
            },
        };
        if let Some(first) = seen[kind] {
            return Err(VolumeProblem::ConflictingOptions(
                first.to_owned(),
                item.to_owned(),
            ));
        }
        seen[kind] = Some(item);
    }
    Ok(o)
}

impl Propagation {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "private" => Self::Private,
            "rprivate" => Self::RPrivate,
            "shared" => Self::Shared,
            "rshared" => Self::RShared,
            "slave" => Self::Slave,
            "rslave" => Self::RSlave,
            _ => return None,
        })
    }

    /// The option as written.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Private => "private",
            Self::RPrivate => "rprivate",
            Self::Shared => "shared",
            Self::RShared => "rshared",
            Self::Slave => "slave",
            Self::RSlave => "rslave",
        }
    }
}

/// Go's `path.Clean`: Docker compares mount destinations cleaned.
fn clean(path: &str) -> String {
    let rooted = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for seg in path.split('/') {
        match seg {
            "" | "." => {}
            ".." => match parts.last() {
                Some(&last) if last != ".." => {
                    parts.pop();
                }
                _ if rooted => {}
                _ => parts.push(".."),
            },
            seg => parts.push(seg),
        }
    }
    match (rooted, parts.is_empty()) {
        (true, _) => format!("/{}", parts.join("/")),
        (false, true) => ".".to_owned(),
        (false, false) => parts.join("/"),
    }
}

mod checks;
pub use checks::{VolumeConflict, VolumeWarning, check_conflicts, warnings};

#[cfg(test)]
mod tests;

//! Making an image usable on this host (`shared/spec/TASK.md` §2): registry
//! mirrors, the pull policy, credentials, the pull itself (watched by a
//! [`StallWatch`] that aborts a pull without progress) and the platform
//! check after it.
//!
//! Owns [`ImageSettings`], [`ensure`], [`PullGate`] (one pull of an image at
//! a time in this process: a second caller waits for the first, as a task
//! waits for the start-up prefetch), [`StallWatch`] and [`ImageError`]. It must not decide
//! what a task fails with (the flow in `execute.rs` does) and must never log a
//! credential: the password and the `X-Registry-Auth` value are registered
//! as secrets for the life of the returned [`PreparedImage`].

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::PullPolicy;
use crate::docker::auth::{self, CredentialEnv, RegistryAuth};
use crate::docker::reference::{ImageRef, ReferenceError};
use crate::docker::{AbortSlot, Docker, DockerError, ImageInfo};
use crate::logging::{self, SecretGuard};
use crate::metrics::WorkResult;
use crate::telemetry::{self, AttrValue, ChildSpan};

use super::progress::{self, PullTally, Throttle};
use crate::task::CancelToken;

mod gate;
mod stall;

pub use gate::PullGate;
use gate::Turn;
pub use stall::StallWatch;

/// How the worker gets images.
#[derive(Debug, Clone)]
pub struct ImageSettings {
    /// The daemon's `os/arch`; every image must match it.
    pub platform: String,
    /// When to pull.
    pub policy: PullPolicy,
    /// `registry_mirrors`: registry prefix → replacement.
    pub mirrors: BTreeMap<String, String>,
    /// Where registry credentials are looked up.
    pub credentials: CredentialEnv,
    /// A pull that reports no progress for this long is aborted: a registry
    /// or network that stalls mid-blob would otherwise hold the task forever.
    pub pull_stall_timeout: Duration,
}

/// The default of [`ImageSettings::pull_stall_timeout`]: long enough for a
/// slow registry to start a big layer, short enough that a dead one is noticed.
pub const PULL_STALL_TIMEOUT: Duration = Duration::from_secs(300);

/// An image present on the host for the right platform.
pub struct PreparedImage {
    /// The reference as pulled (after the mirror rewrite): what to create from.
    pub reference: String,
    /// The daemon's view of it.
    pub info: ImageInfo,
    /// This call pulled the image onto the host (the daemon did not have
    /// it): the worker brought it, so retention may take it away again.
    pub pulled: bool,
    /// Keeps the credential masked in logs while the task runs.
    _secrets: Vec<SecretGuard>,
}

/// Why an image cannot be used.
#[derive(Debug)]
pub enum ImageError {
    /// The name is not an image reference, or a mirror rewrite broke it.
    Reference(ReferenceError),
    /// `image_pull_policy: Never` and the host does not have it.
    NotPresent {
        /// The image as it would be pulled.
        image: String,
    },
    /// The daemon could not pull it; `source` keeps the daemon's / registry's words.
    Pull {
        /// The image pulled.
        image: String,
        /// What the daemon said.
        source: DockerError,
    },
    /// The pull made no progress for [`ImageSettings::pull_stall_timeout`]
    /// and was aborted.
    Stalled {
        /// The image pulled.
        image: String,
        /// How long it went without progress.
        after: Duration,
    },
    /// Inspecting the image failed.
    Inspect {
        /// The image.
        image: String,
        /// What the daemon said.
        source: DockerError,
    },
    /// The pull succeeded but the daemon does not have the image afterwards.
    MissingAfterPull {
        /// The image.
        image: String,
    },
    /// The image is built for another platform than the daemon's.
    Platform {
        /// The image.
        image: String,
        /// Its `os/arch`.
        found: String,
        /// The daemon's `os/arch`.
        required: String,
    },
}

impl fmt::Display for ImageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Reference(e) => e.fmt(f),
            Self::NotPresent { image } => write!(
                f,
                "image {image} is not on this host and image_pull_policy is Never; load it first (docker load / docker pull) or use IfNotPresent"
            ),
            Self::Pull { image, source } => {
                write!(f, "failed to pull image {image}: {}", daemon_words(source))
            }
            Self::Stalled { image, after } => write!(
                f,
                "failed to pull image {image}: the pull stalled (no progress from the registry for {}) and was aborted; check the registry and the network between it and the Docker daemon",
                crate::duration::format(*after)
            ),
            Self::Inspect { image, source } => {
                write!(f, "failed to inspect image {image}: {source}")
            }
            Self::MissingAfterPull { image } => {
                write!(f, "image {image} is missing right after pulling it")
            }
            Self::Platform {
                image,
                found,
                required,
            } => write!(
                f,
                "image {image} is for platform {found}, but this worker requires {required}"
            ),
        }
    }
}

impl std::error::Error for ImageError {}

impl fmt::Debug for PreparedImage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PreparedImage")
            .field("reference", &self.reference)
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

/// The daemon's or registry's own message, without our call decoration.
fn daemon_words(e: &DockerError) -> String {
    match e {
        DockerError::Api { message, .. } | DockerError::PullFailed { message, .. } => {
            message.clone()
        }
        other => other.to_string(),
    }
}

/// How the daemon's last pull status starts when it did not have the image
/// (moby `distribution/pull.go`: `Status: Downloaded newer image for …`;
/// otherwise `Status: Image is up to date for …`).
const DOWNLOADED_NEWER: &str = "Status: Downloaded newer image";

/// The reference to pull for `image` once `mirrors` are applied.
pub fn resolve(
    image: &str,
    mirrors: &BTreeMap<String, String>,
) -> Result<ImageRef, ReferenceError> {
    ImageRef::parse(image)?.with_mirrors(mirrors)
}

/// Makes `image` present on the host for the daemon's platform, following the
/// pull policy, one pull of it at a time through `gate`. `cancel` aborts a
/// pull in progress; the caller then sees a [`ImageError::Pull`] and checks
/// the token.
pub fn ensure(
    docker: &Docker,
    settings: &ImageSettings,
    gate: &Arc<PullGate>,
    image: &str,
    cancel: &CancelToken,
) -> Result<PreparedImage, ImageError> {
    let target = resolve(image, &settings.mirrors).map_err(ImageError::Reference)?;
    let reference = target.to_string();
    if ImageRef::parse(image).is_ok_and(|r| r.registry() != target.registry()) {
        log::info!("image {image} comes from mirror {reference}");
    }
    let mut secrets = Vec::new();
    let present = match settings.policy {
        PullPolicy::Always => None,
        PullPolicy::IfNotPresent | PullPolicy::Never => inspect(docker, &reference)?,
    };
    let (info, pulled) = match (present, settings.policy) {
        (Some(info), _) => {
            log::debug!("image {reference} is present; not pulling");
            (info, false)
        }
        (None, PullPolicy::Never) => return Err(ImageError::NotPresent { image: reference }),
        (None, _) => {
            // Whether this caller's pull downloaded it (a waiter that used
            // another's pull did not).
            let pulled = match gate.turn(&reference, cancel) {
                Some(Turn::Pulled) => false,
                Some(Turn::Mine(mut turn)) => {
                    let pulled = pull(docker, settings, &target, &reference, cancel, &mut secrets)?;
                    turn.succeeded = true;
                    pulled
                }
                None => {
                    return Err(ImageError::Pull {
                        image: reference,
                        source: DockerError::Aborted {
                            call: "waiting for another pull of the image".into(),
                        },
                    });
                }
            };
            let info = inspect(docker, &reference)?.ok_or(ImageError::MissingAfterPull {
                image: reference.clone(),
            })?;
            (info, pulled)
        }
    };
    let found = format!("{}/{}", info.os, info.architecture);
    if found != settings.platform {
        return Err(ImageError::Platform {
            image: reference,
            found,
            required: settings.platform.clone(),
        });
    }
    Ok(PreparedImage {
        reference,
        info,
        pulled,
        _secrets: secrets,
    })
}

fn inspect(docker: &Docker, reference: &str) -> Result<Option<ImageInfo>, ImageError> {
    docker
        .image_inspect(reference)
        .map_err(|source| ImageError::Inspect {
            image: reference.to_owned(),
            source,
        })
}

/// Pulls `target`; true when the daemon did not have the image before
/// (its last status says it downloaded a newer image, not that the image
/// is up to date).
fn pull(
    docker: &Docker,
    settings: &ImageSettings,
    target: &ImageRef,
    reference: &str,
    cancel: &CancelToken,
    secrets: &mut Vec<SecretGuard>,
) -> Result<bool, ImageError> {
    let header = auth_header(settings, target, reference, secrets);
    let slot = AbortSlot::new();
    let hook_slot = slot.clone();
    let _hook = cancel.on_cancel(move |_| hook_slot.abort());
    let watch_slot = slot.clone();
    let watch = StallWatch::start(settings.pull_stall_timeout, move || watch_slot.abort());
    let span = telemetry::phase(
        "oz_worker.image_pull",
        vec![("docker.image", AttrValue::Str(logging::redact(reference)))],
    );
    let started = Instant::now();
    let mut tally = PullTally::default();
    let mut throttle = Throttle::new(started, progress::EVERY);
    let mut downloaded = false;
    let pulled = docker.image_pull(
        &target.name(),
        target.tag_or_digest(),
        &settings.platform,
        header.as_deref(),
        &mut |p| {
            watch.progress();
            log::trace!("pull {reference}: {} {}", p.id, p.status);
            tally.observe(&p.status, &p.id, p.detail.current, p.detail.total);
            downloaded |= p.status.starts_with(DOWNLOADED_NEWER);
            if let Some(since) = throttle.due(Instant::now()) {
                log::info!("{}", tally.line(reference, since));
            }
        },
        &slot,
    );
    let stalled = watch.finish();
    report_pull(reference, &pulled, &tally, started.elapsed(), span);
    match pulled {
        Ok(()) => Ok(downloaded),
        Err(_) if stalled => Err(ImageError::Stalled {
            image: reference.to_owned(),
            after: settings.pull_stall_timeout,
        }),
        Err(source) => Err(ImageError::Pull {
            image: reference.to_owned(),
            source,
        }),
    }
}

/// The `X-Registry-Auth` value for `target`, when credentials are found
/// (its secrets registered in `secrets`); logs the pull's start line.
fn auth_header(
    settings: &ImageSettings,
    target: &ImageRef,
    reference: &str,
    secrets: &mut Vec<SecretGuard>,
) -> Option<String> {
    let key = target.credential_key();
    // Like the Go worker: a credential problem is a warning and the pull goes
    // anonymous; the registry's refusal then says what is wrong.
    let credential = match auth::lookup(key, &settings.credentials) {
        Ok(found) => found,
        Err(e) => {
            log::warn!("registry credentials for {key}: {e}; pulling {reference} anonymously");
            None
        }
    };
    let header = credential.as_ref().map(|c| {
        if let RegistryAuth::Password { password, .. } = c {
            secrets.push(logging::register_secret(password));
        } else if let RegistryAuth::IdentityToken { token, .. } = c {
            secrets.push(logging::register_secret(token));
        }
        let value = c.header_value();
        secrets.push(logging::register_secret(&value));
        value
    });
    match credential.as_ref().and_then(RegistryAuth::username) {
        Some(user) => log::info!("pulling image {reference} as {user}"),
        None => log::info!("pulling image {reference}"),
    }
    header
}

/// A finished pull's summary line, metric and span.
fn report_pull(
    reference: &str,
    pulled: &Result<(), DockerError>,
    tally: &PullTally,
    took: Duration,
    mut span: Option<ChildSpan>,
) {
    let result = if pulled.is_ok() {
        log::info!("{}", tally.summary(reference, took));
        WorkResult::Succeeded
    } else {
        WorkResult::Failed
    };
    telemetry::image_pulled(result, took, tally.bytes());
    if let Some(span) = &mut span {
        span.attribute("image.bytes", AttrValue::Int(tally.bytes() as i64));
        match pulled {
            Ok(()) => span.ok(),
            Err(e) => span.error(&e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mirrors_rewrite_the_pulled_reference() {
        let mirrors = BTreeMap::from([("docker.io".to_string(), "127.0.0.1:5000".to_string())]);
        assert_eq!(
            resolve("me/app:1", &mirrors).unwrap().to_string(),
            "127.0.0.1:5000/me/app:1"
        );
        assert_eq!(
            resolve("ghcr.io/a/b", &mirrors).unwrap().to_string(),
            "ghcr.io/a/b:latest"
        );
    }

    #[test]
    fn a_stall_names_the_image_and_the_wait() {
        let e = ImageError::Stalled {
            image: "127.0.0.1:5000/a/b:1".into(),
            after: Duration::from_secs(300),
        };
        assert_eq!(
            e.to_string(),
            "failed to pull image 127.0.0.1:5000/a/b:1: the pull stalled (no progress from the registry for 5m0s) and was aborted; check the registry and the network between it and the Docker daemon"
        );
    }

    #[test]
    fn messages_keep_the_daemon_words() {
        let e = ImageError::Pull {
            image: "127.0.0.1:1/a:b".into(),
            source: DockerError::Api {
                call: "POST /images/create".into(),
                status: 500,
                message: "Head \"…\": no basic auth credentials".into(),
            },
        };
        assert_eq!(
            e.to_string(),
            "failed to pull image 127.0.0.1:1/a:b: Head \"…\": no basic auth credentials"
        );
        let e = ImageError::Platform {
            image: "docker.io/oz-test/arm64:latest".into(),
            found: "linux/arm64".into(),
            required: "linux/amd64".into(),
        };
        assert_eq!(
            e.to_string(),
            "image docker.io/oz-test/arm64:latest is for platform linux/arm64, but this worker requires linux/amd64"
        );
    }
}

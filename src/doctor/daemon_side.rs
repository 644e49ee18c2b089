//! Checks of what the daemon must have for the configuration: the
//! `runtime`, the `network` (or, when none is named, the worker's own task
//! network), each `security_opt` profile, and each mirror registry
//! answering `GET /v2/`. The verdicts are `preflight`'s, the same
//! the worker refuses to start on; here each becomes one line.
//!
//! Read-only (`GET /info`, `GET /networks/..`, one `GET /v2/` per mirror,
//! without credentials). Must not print proxy values or registry secrets.

use super::{Check, DoctorInput, Reporter};
use crate::docker::Docker;
use crate::docker::system::{RegistryConfig, SystemInfo};
use crate::preflight::registry::{Answer, Silence};
use crate::preflight::{self, Outcome, profiles};
use crate::task_network::{self, ICC_OPTION, TASK_NETWORK};

/// Every daemon-side check the configuration calls for (none when it sets
/// no hardening key and no mirror).
pub fn run(input: &DoctorInput, docker: Option<&Docker>, report: &mut Reporter<'_>) {
    let h = &input.config.docker.hardening;
    if h.network.is_none() {
        report.add(task_network(docker));
    }
    let mirrors = preflight::mirror_registries(&input.config);
    let configured = h.runtime.is_some() || h.network.is_some() || !h.security_opt.is_empty();
    if !configured && mirrors.is_empty() {
        return;
    }
    let info = docker.map(Docker::info);
    let registry_config = match &info {
        Some(Ok(info)) => info.registry_config.clone(),
        // The daemon's default: plain HTTP on loopback only.
        _ => RegistryConfig {
            insecure_cidrs: vec!["127.0.0.0/8".into()],
            ..RegistryConfig::default()
        },
    };
    if configured {
        match (docker, info) {
            (Some(docker), Some(Ok(info))) => hardening(docker, input, &info, report),
            (_, Some(Err(e))) => report.add(Check::fail(
                "docker info",
                e.to_string(),
                "check the daemon's health (`docker info`)",
            )),
            _ => not_checked(input, report),
        }
    }
    let env = |name: &str| input.env.get(name);
    for (registry, answer) in preflight::probe_mirrors(&mirrors, &registry_config, &env) {
        report.add(mirror(&registry, answer));
    }
}

fn hardening(docker: &Docker, input: &DoctorInput, info: &SystemInfo, report: &mut Reporter<'_>) {
    let read_list = || std::fs::read_to_string(profiles::APPARMOR_PROFILES);
    let (findings, _) =
        preflight::hardening(docker, &input.config.docker.hardening, info, &read_list);
    for finding in findings {
        report.add(match finding.outcome {
            Outcome::Fine(detail) => Check::pass(finding.name, detail),
            Outcome::Doubt(detail) => Check::warn(finding.name, detail),
            Outcome::Fatal(problem) => Check::fail(finding.name, problem.detail(), problem.fix()),
        });
    }
}

/// The worker's own task network, used when the configuration names none:
/// it passes when it keeps containers apart or does not exist yet (the
/// worker makes it at start). Read-only.
fn task_network(docker: Option<&Docker>) -> Check {
    let name = "task network";
    let Some(docker) = docker else {
        return Check::warn(name, "not checked: the Docker daemon cannot be used");
    };
    match docker.network_inspect(TASK_NETWORK) {
        Ok(None) => Check::pass(
            name,
            format!(
                "{TASK_NETWORK} does not exist yet; the worker makes it at start (containers on it cannot reach each other)"
            ),
        ),
        Ok(Some(info)) => match task_network::judge(&info) {
            Ok(()) => Check::pass(
                name,
                format!("{TASK_NETWORK} keeps task containers apart ({ICC_OPTION}=false)"),
            ),
            Err(e) => Check::fail(
                name,
                e.to_string(),
                format!(
                    "docker network rm {TASK_NETWORK} (with no container on it), or set backend.docker.network"
                ),
            ),
        },
        Err(e) => Check::fail(
            name,
            format!("GET /networks/{TASK_NETWORK}: {e}"),
            "check the daemon's health (`docker info`)",
        ),
    }
}

/// Without a usable daemon only the profile files can be looked at.
fn not_checked(input: &DoctorInput, report: &mut Reporter<'_>) {
    let h = &input.config.docker.hardening;
    let skipped = "not checked: the Docker daemon cannot be used";
    if h.runtime.is_some() {
        report.add(Check::warn("runtime", skipped));
    }
    if h.network.is_some() {
        report.add(Check::warn("network", skipped));
    }
    for entry in &h.security_opt {
        let name = format!("security_opt {entry}");
        report.add(match profiles::classify(entry) {
            profiles::SecurityOpt::SeccompFile(path) => match profiles::load_seccomp(path) {
                Ok(_) => Check::pass(name, "profile read"),
                Err(e) => {
                    let problem = preflight::Problem::Profile(e);
                    Check::fail(name, problem.detail(), problem.fix())
                }
            },
            _ => Check::warn(name, skipped),
        });
    }
}

fn mirror(registry: &str, answer: Result<Answer, Silence>) -> Check {
    let name = format!("mirror {registry}");
    match answer {
        Ok(Answer::Registry { scheme, status }) => Check::pass(
            name,
            format!(
                "answers {scheme} GET /v2/ ({status}{})",
                match status {
                    401 => ", wants a login",
                    _ => "",
                }
            ),
        ),
        Ok(Answer::Untrusted { detail }) => Check::warn(
            name,
            format!(
                "answers TLS with a certificate this host does not trust ({detail}); pulls work if the daemon trusts it (/etc/docker/certs.d/{registry}/ca.crt)"
            ),
        ),
        Err(silence) => Check::fail(
            name,
            format!("{silence} (checked from this host, without the daemon's proxy settings)"),
            format!(
                "start the registry or correct backend.docker.registry_mirrors; every pull through {registry} fails meanwhile"
            ),
        ),
    }
}

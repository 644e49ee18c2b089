//! The container environment (`shared/spec/TASK.md` §4): `env_vars`
//! names and values checked, and the entries layered (the worker's own,
//! the assignment's, the operator's last), borrowed from their inputs.
//!
//! Pure, like its parent [`crate::container_spec`].

use super::{EnvNameProblem, SpecError, SpecInputs};
use crate::wire::TaskAssignment;

/// Refuses an `env_vars` name that is not one variable's name, as the
/// runtime and POSIX read the `NAME=value` entry: empty, holding `=` (the
/// entry would set a shorter name, e.g. an operator's `HTTPS_PROXY`, past the
/// operator's own entry) or NUL (C strings end there). Any other character,
/// control characters included, is what Docker and POSIX allow (names other
/// than `[A-Za-z_][A-Za-z0-9_]*` are legal, only unusable from a shell), so
/// it passes; log lines escape it. Values may hold anything but NUL.
pub fn check_env_vars(assignment: &TaskAssignment) -> Result<(), SpecError> {
    for (name, value) in &assignment.env_vars {
        let problem = if name.is_empty() {
            Some(EnvNameProblem::Empty)
        } else if name.contains('=') {
            Some(EnvNameProblem::Equals)
        } else if name.contains('\0') {
            Some(EnvNameProblem::Nul)
        } else {
            None
        };
        if let Some(problem) = problem {
            return Err(SpecError::BadEnvName {
                name: name.clone(),
                problem,
            });
        }
        if value.contains('\0') {
            return Err(SpecError::EnvValueNul { name: name.clone() });
        }
    }
    Ok(())
}

/// The container environment (TASK.md §4): one entry per name, later
/// layers winning, matched by the exact name (the operator's entries come
/// last, so none can be shadowed); names keep the position of their first
/// appearance, each layer's new names in sorted order. Borrows its inputs.
pub fn environment_entries<'a>(
    assignment: &'a TaskAssignment,
    cfg: &'a SpecInputs,
) -> Vec<(&'a str, &'a str)> {
    let mut entries: Vec<(&str, &str)> = vec![
        ("TASK_ID", assignment.task.id.as_str()),
        ("GIT_TERMINAL_PROMPT", "0"),
        ("GH_PROMPT_DISABLED", "1"),
    ];
    if !cfg.server_root_url.is_empty() {
        entries.push(("WARP_SERVER_ROOT_URL", cfg.server_root_url.as_str()));
    }
    for layer in [&assignment.env_vars, &cfg.operator_env] {
        for (k, v) in layer {
            match entries.iter_mut().find(|(name, _)| name == k) {
                Some(entry) => entry.1 = v,
                None => entries.push((k, v)),
            }
        }
    }
    entries
}

/// [`environment_entries`] as `KEY=VALUE` strings.
pub fn environment(assignment: &TaskAssignment, cfg: &SpecInputs) -> Vec<String> {
    environment_entries(assignment, cfg)
        .into_iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect()
}

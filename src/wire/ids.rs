//! The orchestrator's ids checked at the door: `task_id`, `execution_id`
//! and `task.id` become container and volume labels, parts of names, a
//! field of every JSON log line and values in status messages, so each is
//! bounded ([`MAX_ID_BYTES`], far above any real id) and free of control
//! characters before anything else sees it. Image references and sidecar
//! mount paths (a volume label and name, a bind, log fields) get the same
//! check with a longer cap ([`MAX_REFERENCE_BYTES`]).
//!
//! Pure: says what is wrong with one value; [`decode`](mod@super::decode) decides how
//! the frame is answered. Never quotes the value (it may be a megabyte).

use std::fmt;

use crate::untrusted::needs_escape;

/// Longest id accepted, in bytes. Oz's ids are UUIDs or short slugs (36
/// bytes); Docker's own labels and names are far shorter in practice.
pub const MAX_ID_BYTES: usize = 256;
/// Longest image reference or mount path accepted, in bytes: a reference's
/// name is at most 255 characters, its tag 128 and a digest 71.
pub const MAX_REFERENCE_BYTES: usize = 1024;

/// Why one id was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdProblem {
    /// The value is longer than its cap.
    TooLong {
        /// The field, e.g. `task_id`.
        field: &'static str,
        /// Its length in bytes.
        bytes: usize,
        /// The cap.
        max: usize,
    },
    /// The id holds a control or line-breaking character.
    Control {
        /// The field, e.g. `execution_id`.
        field: &'static str,
        /// The first such character.
        found: char,
    },
}

impl IdProblem {
    /// The field that was refused.
    pub fn field(&self) -> &'static str {
        match self {
            Self::TooLong { field, .. } | Self::Control { field, .. } => field,
        }
    }
}

impl fmt::Display for IdProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooLong { field, bytes, max } => {
                write!(
                    f,
                    "{field} is {bytes} bytes long; at most {max} are accepted"
                )
            }
            Self::Control { field, found } => write!(
                f,
                "{field} holds a control character (U+{:04X}), which is not accepted",
                u32::from(*found)
            ),
        }
    }
}

impl std::error::Error for IdProblem {}

/// Checks one id: at most [`MAX_ID_BYTES`] bytes, no character that
/// [`needs_escape`] (controls, NUL, DEL, line and paragraph separators,
/// bidirectional overrides).
pub fn check_id(field: &'static str, value: &str) -> Result<(), IdProblem> {
    check_text(field, value, MAX_ID_BYTES)
}

/// Checks an image reference or a mount path: at most
/// [`MAX_REFERENCE_BYTES`] bytes, no control character.
pub fn check_reference(field: &'static str, value: &str) -> Result<(), IdProblem> {
    check_text(field, value, MAX_REFERENCE_BYTES)
}

fn check_text(field: &'static str, value: &str, max: usize) -> Result<(), IdProblem> {
    if value.len() > max {
        return Err(IdProblem::TooLong {
            field,
            bytes: value.len(),
            max,
        });
    }
    match value.chars().find(|&c| needs_escape(c) || c == '\t') {
        Some(found) => Err(IdProblem::Control { field, found }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_ids_pass_up_to_the_cap() {
        assert_eq!(check_id("task_id", "0b1c2d3e-uuid"), Ok(()));
        assert_eq!(check_id("task_id", &"x".repeat(MAX_ID_BYTES)), Ok(()));
        assert_eq!(check_id("task_id", "tâche-é"), Ok(()));
    }

    #[test]
    fn long_ids_name_the_field_and_the_length() {
        let e = check_id("execution_id", &"x".repeat(MAX_ID_BYTES + 1)).unwrap_err();
        assert_eq!(
            e,
            IdProblem::TooLong {
                field: "execution_id",
                bytes: 257,
                max: 256
            }
        );
        assert_eq!(
            e.to_string(),
            "execution_id is 257 bytes long; at most 256 are accepted"
        );
        assert_eq!(e.field(), "execution_id");
    }

    #[test]
    fn references_get_a_longer_cap() {
        let image = format!("registry.example/{}:tag", "a".repeat(600));
        assert_eq!(check_reference("docker_image", &image), Ok(()));
        assert_eq!(
            check_reference("docker_image", &"a".repeat(1025))
                .unwrap_err()
                .to_string(),
            "docker_image is 1025 bytes long; at most 1024 are accepted"
        );
        assert!(check_reference("sidecar_image", "busybox\nx").is_err());
    }

    #[test]
    fn every_control_character_is_refused() {
        for c in (0u32..0x20)
            .chain(0x7f..0xa0)
            .chain([0x2028, 0x2029, 0x202e])
        {
            let c = char::from_u32(c).unwrap();
            let id = format!("a{c}b");
            assert_eq!(
                check_id("task_id", &id),
                Err(IdProblem::Control {
                    field: "task_id",
                    found: c
                }),
                "{:x}",
                c as u32
            );
        }
        assert_eq!(
            check_id("task.id", "a\0b").unwrap_err().to_string(),
            "task.id holds a control character (U+0000), which is not accepted"
        );
    }
}

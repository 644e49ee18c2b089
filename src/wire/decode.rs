//! One text frame in: the envelope checked, `data` decoded into an
//! [`Inbound`] message, and every way that can fail as a [`DecodeError`] or
//! an [`Inbound::InvalidAssignment`] (which is answered, so the run ends
//! visibly).
//!
//! The scanning is [`super::envelope`]'s, the id checks [`super::ids`]'s;
//! this module decides what a frame means and never echoes a refused value.

use std::fmt;

use serde::Deserialize;

use super::assignment::TaskAssignment;
use super::envelope::{self, MAX_DEPTH};
use super::ids::{IdProblem, check_id, check_reference};

/// A message from the orchestrator, decoded.
#[derive(Debug, Clone, PartialEq)]
pub enum Inbound {
    /// A task routed to this worker.
    Assignment(Box<TaskAssignment>),
    /// An assignment whose `task_id` could be read but whose rest is unusable;
    /// it is answered with `task_failed` so the run ends visibly.
    InvalidAssignment {
        /// The task to fail.
        task_id: String,
        /// What is wrong with it, in plain words.
        problem: String,
    },
    /// Cancel a task if it is active here.
    Cancellation {
        /// The task to cancel.
        task_id: String,
    },
    /// A message type this worker does not know; logged at warn and ignored.
    Unknown {
        /// The `type` the frame carried.
        kind: String,
    },
}

/// Why a frame could not be decoded at all (logged at error, then ignored).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// The frame is not a JSON object.
    NotAnObject,
    /// The envelope is unusable and the frame cannot be answered.
    Envelope(EnvelopeProblem),
    /// A `task_assignment` whose `task_id` cannot be read, so nothing can be
    /// answered.
    AssignmentWithoutId,
    /// A `task_cancellation` whose `task_id` is the empty string.
    EmptyCancellationId,
    /// A `task_cancellation` whose `task_id` fails the door's check.
    CancellationId(IdProblem),
    /// A `task_cancellation` whose `data` does not decode, in serde's words
    /// with every quoted value blanked.
    CancellationData(String),
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("malformed message from the orchestrator: ")?;
        match self {
            Self::NotAnObject => f.write_str("not a JSON object"),
            Self::Envelope(problem) => write!(f, "{problem}"),
            Self::AssignmentWithoutId => f.write_str("task_assignment without a readable task_id"),
            Self::EmptyCancellationId => f.write_str("task_cancellation with an empty task_id"),
            Self::CancellationId(problem) => write!(f, "task_cancellation: {problem}"),
            Self::CancellationData(problem) => write!(f, "task_cancellation: {problem}"),
        }
    }
}

impl std::error::Error for DecodeError {}

/// What is wrong with a frame's envelope (its `type` and `data` members);
/// the text is also the `problem` of an answered [`Inbound::InvalidAssignment`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnvelopeProblem {
    /// The frame is not valid JSON: the scanner's first syntax error.
    Syntax(envelope::SyntaxError),
    /// Nested deeper than [`MAX_DEPTH`].
    TooDeep,
    /// No `type` member.
    NoType,
    /// The `type` member is not a string.
    TypeNotString,
    /// `type` given more than once.
    ManyTypes,
    /// `data` given more than once.
    ManyDatas,
}

impl fmt::Display for EnvelopeProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Syntax(syntax) => write!(f, "not valid JSON: {syntax}"),
            Self::TooDeep => write!(f, "nested deeper than {MAX_DEPTH} levels"),
            Self::NoType => f.write_str("the envelope has no `type`"),
            Self::TypeNotString => f.write_str("the envelope's `type` is not a string"),
            Self::ManyTypes => f.write_str("the envelope has more than one `type`"),
            Self::ManyDatas => f.write_str("the envelope has more than one `data`"),
        }
    }
}

/// Decodes one text frame.
///
/// The envelope is taken apart by a scanner that needs no recursion, and
/// `data` is decoded straight from the frame's text into the typed structs
/// (no intermediate value tree), so an assignment costs its frame plus its
/// fields. Whatever else is wrong with a frame that may be an assignment, a
/// readable `task_id` gets it a `task_failed` answer ([`Inbound::InvalidAssignment`]).
pub fn decode(text: &str) -> Result<Inbound, DecodeError> {
    let Some(env) = envelope::split(text) else {
        return Err(DecodeError::NotAnObject);
    };
    let members: Vec<_> = env
        .datas
        .iter()
        .map(|d| envelope::data_members(d))
        .collect();
    let task_id = readable_task_id(&members);
    // An id that fails the door's check is still answered (the orchestrator
    // matches answers by it), but never cancels anything.
    let id_problem = task_id
        .as_deref()
        .and_then(|id| check_id("task_id", id).err());
    let Some(problem) = envelope_problem(&env) else {
        let data = env.datas.first().copied().unwrap_or("null");
        let kind = env.types[0].clone().unwrap_or_default();
        return match kind.as_str() {
            "task_assignment" => match id_problem {
                Some(p) => Ok(Inbound::InvalidAssignment {
                    task_id: task_id.unwrap_or_default(),
                    problem: p.to_string(),
                }),
                None => decode_assignment(text.len(), data, task_id, &members[..]),
            },
            "task_cancellation" => decode_cancellation(data, task_id, id_problem),
            _ => Ok(Inbound::Unknown { kind }),
        };
    };
    answer_bad_envelope(&env, problem, task_id, id_problem)
}

/// A frame whose envelope is unusable: still answered (an assignment) or
/// obeyed (a cancellation) when its `task_id` can be read.
fn answer_bad_envelope(
    env: &envelope::Envelope<'_>,
    problem: EnvelopeProblem,
    task_id: Option<String>,
    id_problem: Option<IdProblem>,
) -> Result<Inbound, DecodeError> {
    let only_cancellation = !env.types.is_empty()
        && env
            .types
            .iter()
            .all(|t| t.as_deref() == Some("task_cancellation"));
    let maybe_assignment = env
        .types
        .iter()
        .any(|t| t.as_deref() == Some("task_assignment"))
        || env.types.iter().all(Option::is_none);
    match task_id {
        Some(_) if only_cancellation && id_problem.is_some() => Err(DecodeError::Envelope(problem)),
        Some(task_id) if only_cancellation => Ok(Inbound::Cancellation { task_id }),
        Some(task_id) if maybe_assignment => Ok(Inbound::InvalidAssignment {
            task_id,
            problem: problem.to_string(),
        }),
        _ => Err(DecodeError::Envelope(problem)),
    }
}

/// What is wrong with the envelope itself, if anything.
fn envelope_problem(env: &envelope::Envelope<'_>) -> Option<EnvelopeProblem> {
    if let Some(syntax) = &env.syntax {
        return Some(EnvelopeProblem::Syntax(*syntax));
    }
    if env.depth > MAX_DEPTH {
        return Some(EnvelopeProblem::TooDeep);
    }
    match env.types.as_slice() {
        [] => return Some(EnvelopeProblem::NoType),
        [None] => return Some(EnvelopeProblem::TypeNotString),
        [_] => {}
        _ => return Some(EnvelopeProblem::ManyTypes),
    }
    (env.datas.len() > 1).then_some(EnvelopeProblem::ManyDatas)
}

/// A well-formed `task_cancellation`; `task_id` is the scanner's reading of
/// it, used when `data` does not decode as a whole.
fn decode_cancellation(
    data: &str,
    task_id: Option<String>,
    id_problem: Option<IdProblem>,
) -> Result<Inbound, DecodeError> {
    match serde_json::from_str::<TaskCancellation>(data) {
        Ok(c) if !c.task_id.is_empty() => match check_id("task_id", &c.task_id) {
            Ok(()) => Ok(Inbound::Cancellation { task_id: c.task_id }),
            Err(p) => Err(DecodeError::CancellationId(p)),
        },
        Ok(_) => Err(DecodeError::EmptyCancellationId),
        Err(e) => match (task_id, id_problem) {
            (Some(_), Some(p)) => Err(DecodeError::CancellationId(p)),
            (Some(task_id), None) => Ok(Inbound::Cancellation { task_id }),
            (None, _) => Err(DecodeError::CancellationData(problem_of(&e))),
        },
    }
}

/// The `task_id` to answer: as Go's decoder reads a repeated key, the last
/// one of the last `data`; `None` when that is not a non-empty string.
fn readable_task_id(members: &[envelope::DataMembers<'_>]) -> Option<String> {
    let last = members.iter().rev().find(|m| !m.task_ids.is_empty())?;
    last.task_ids.last()?.clone().filter(|id| !id.is_empty())
}

/// A well-formed `task_assignment` with a good `task_id`: decoded, or
/// answered with what is wrong with it.
fn decode_assignment(
    frame_bytes: usize,
    data: &str,
    task_id: Option<String>,
    members: &[envelope::DataMembers<'_>],
) -> Result<Inbound, DecodeError> {
    let Some(task_id) = task_id else {
        return Err(DecodeError::AssignmentWithoutId);
    };
    let invalid = |problem: String| {
        Ok(Inbound::InvalidAssignment {
            task_id: task_id.clone(),
            problem,
        })
    };
    if members[0].task.is_none_or(|t| t == "null") {
        return invalid("task is missing".into());
    }
    match serde_json::from_str::<TaskAssignment>(data) {
        Ok(a) if a.task.id.is_empty() => invalid("task.id is empty".into()),
        Ok(mut a) => {
            if let Err(p) = other_ids(&a) {
                return invalid(p.to_string());
            }
            a.frame_bytes = frame_bytes;
            Ok(Inbound::Assignment(Box::new(a)))
        }
        Err(e) => invalid(problem_of(&e)),
    }
}

/// The ids of a decoded assignment other than `task_id` (checked first),
/// and its image references and sidecar mount paths: each becomes a label,
/// part of a name, a path or a log field.
fn other_ids(a: &TaskAssignment) -> Result<(), IdProblem> {
    check_id("execution_id", &a.execution_id)?;
    check_id("task.id", &a.task.id)?;
    check_reference("docker_image", &a.docker_image)?;
    check_reference("sidecar_image", &a.sidecar_image)?;
    for s in &a.additional_sidecars {
        check_reference("additional_sidecars.image", &s.image)?;
        check_reference("additional_sidecars.mount_path", &s.mount_path)?;
    }
    Ok(())
}

/// A serde error in plain words, without the values it quotes and without
/// its position (which counts from the start of `data`, not of the frame).
fn problem_of(e: &serde_json::Error) -> String {
    let text = e.to_string();
    let position = format!(" at line {} column {}", e.line(), e.column());
    scrub_values(text.strip_suffix(&position).unwrap_or(&text))
}

/// Blanks every value a serde error quotes: serde quotes the values it
/// rejects, and in an assignment those can be `env_vars` secrets — strings
/// in double quotes, numbers, booleans and characters in backticks. Field
/// names (backticks after `field`) stay, since they say what is wrong.
/// serde quotes strings with `{:?}`, so inside one `\"` is an escaped quote,
/// not its end (found by fuzzing: the text after it leaked).
pub(super) fn scrub_values(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut quote: Option<char> = None;
    let mut keep = false;
    let mut escaped = false;
    for c in message.chars() {
        match quote {
            Some('"') if escaped => escaped = false,
            Some('"') if c == '\\' => escaped = true,
            Some(q) if c == q => {
                if !keep {
                    out.push('…');
                }
                out.push(c);
                quote = None;
            }
            Some(_) if keep => out.push(c),
            Some(_) => {}
            None if c == '"' || c == '`' => {
                keep = c == '`' && (out.ends_with("field ") || out.ends_with("fields "));
                out.push(c);
                quote = Some(c);
            }
            None => out.push(c),
        }
    }
    out
}

/// `task_cancellation` data.
#[derive(Debug, Clone, Deserialize)]
struct TaskCancellation {
    task_id: String,
}

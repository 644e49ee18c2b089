//! The worker ⇄ orchestrator wire protocol (`shared/spec/PROTOCOL.md`).
//!
//! Owns the serde types of every message and the envelope codec: turning one
//! text frame into an [`Inbound`] message, and an [`Outbound`] message into
//! one text frame. It does no I/O and knows nothing about sockets, threads or
//! Docker. Unknown fields are ignored everywhere, so a newer orchestrator never
//! breaks this worker.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;

/// Largest frame the worker accepts; a larger one closes the connection.
pub const MAX_MESSAGE_BYTES: usize = 16 << 20;

/// `task_completed` message for a container that exited 0.
pub const COMPLETED_MESSAGE: &str = "Task completed successfully";
/// `task_completed` message for a task ended by `task_cancellation`.
pub const CANCELLED_MESSAGE: &str = "Task cancelled by user request.";
/// `task_state` that marks a cancelled task.
pub const CANCELLED_STATE: &str = "CANCELLED";
/// `task_failed` message for a task ended by shutdown or another interruption.
pub const INTERRUPTED_MESSAGE: &str = "The task was interrupted due to an infrastructure issue (context canceled). This is typically transient — please try again.";
/// `task_failed` message for a task that ran past its time limit.
pub const TIMEOUT_MESSAGE: &str = "The task exceeded its maximum allowed execution time and was terminated. Consider breaking the task into smaller steps or increasing the timeout.";

mod envelope;
mod ids;
mod shape;

pub use envelope::MAX_DEPTH;
pub use ids::{IdProblem, MAX_ID_BYTES, MAX_REFERENCE_BYTES, check_id, check_reference};

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
pub struct DecodeError(pub String);

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "malformed message from the orchestrator: {}", self.0)
    }
}

impl std::error::Error for DecodeError {}

/// Decodes one text frame.
///
/// The envelope is taken apart by a scanner that needs no recursion, and
/// `data` is decoded straight from the frame's text into the typed structs
/// (no intermediate value tree), so an assignment costs its frame plus its
/// fields. Whatever else is wrong with a frame that may be an assignment, a
/// readable `task_id` gets it a `task_failed` answer ([`Inbound::InvalidAssignment`]).
pub fn decode(text: &str) -> Result<Inbound, DecodeError> {
    let Some(env) = envelope::split(text) else {
        return Err(DecodeError("not a JSON object".into()));
    };
    let is = |kind: &str| env.types.iter().any(|t| t.as_deref() == Some(kind));
    let problem = envelope_problem(&env);
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
    let Some(problem) = problem else {
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
            "task_cancellation" => match serde_json::from_str::<TaskCancellation>(data) {
                Ok(c) if !c.task_id.is_empty() => match check_id("task_id", &c.task_id) {
                    Ok(()) => Ok(Inbound::Cancellation { task_id: c.task_id }),
                    Err(p) => Err(DecodeError(format!("task_cancellation: {p}"))),
                },
                Ok(_) => Err(DecodeError(
                    "task_cancellation with an empty task_id".into(),
                )),
                Err(e) => match task_id {
                    Some(_) if id_problem.is_some() => Err(DecodeError(format!(
                        "task_cancellation: {}",
                        id_problem.map(|p| p.to_string()).unwrap_or_default()
                    ))),
                    Some(task_id) => Ok(Inbound::Cancellation { task_id }),
                    None => Err(DecodeError(format!(
                        "task_cancellation: {}",
                        problem_of(&e)
                    ))),
                },
            },
            _ => Ok(Inbound::Unknown { kind }),
        };
    };
    let only_cancellation = !env.types.is_empty()
        && env
            .types
            .iter()
            .all(|t| t.as_deref() == Some("task_cancellation"));
    let maybe_assignment = is("task_assignment") || env.types.iter().all(Option::is_none);
    match task_id {
        Some(_) if only_cancellation && id_problem.is_some() => Err(DecodeError(problem)),
        Some(task_id) if only_cancellation => Ok(Inbound::Cancellation { task_id }),
        Some(task_id) if maybe_assignment => Ok(Inbound::InvalidAssignment { task_id, problem }),
        _ => Err(DecodeError(problem)),
    }
}

/// What is wrong with the envelope itself, if anything.
fn envelope_problem(env: &envelope::Envelope<'_>) -> Option<String> {
    if let Some(syntax) = &env.syntax {
        return Some(format!("not valid JSON: {syntax}"));
    }
    if env.depth > MAX_DEPTH {
        return Some(format!("nested deeper than {MAX_DEPTH} levels"));
    }
    match env.types.as_slice() {
        [] => return Some("the envelope has no `type`".into()),
        [None] => return Some("the envelope's `type` is not a string".into()),
        [_] => {}
        _ => return Some("the envelope has more than one `type`".into()),
    }
    (env.datas.len() > 1).then(|| "the envelope has more than one `data`".into())
}

/// The `task_id` to answer: as Go's decoder reads a repeated key, the last
/// one of the last `data`; `None` when that is not a non-empty string.
fn readable_task_id(members: &[envelope::DataMembers<'_>]) -> Option<String> {
    let last = members.iter().rev().find(|m| !m.task_ids.is_empty())?;
    last.task_ids.last()?.clone().filter(|id| !id.is_empty())
}

fn decode_assignment(
    frame_bytes: usize,
    data: &str,
    task_id: Option<String>,
    members: &[envelope::DataMembers<'_>],
) -> Result<Inbound, DecodeError> {
    let Some(task_id) = task_id else {
        return Err(DecodeError(
            "task_assignment without a readable task_id".into(),
        ));
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
fn scrub_values(message: &str) -> String {
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

/// `task_assignment` data.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, Default)]
pub struct TaskAssignment {
    /// The logical run.
    pub task_id: String,
    /// The concrete execution of the run (follow-ups reuse `task_id`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub execution_id: String,
    /// The task itself.
    #[serde(deserialize_with = "shape::object")]
    pub task: Task,
    /// Task image; empty ⇒ the configured default.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub docker_image: String,
    /// The agent sidecar image, mounted at `/agent`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub sidecar_image: String,
    /// Environment for the task container. The values are secrets.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env_vars: BTreeMap<String, String>,
    /// Further sidecar images to mount.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "shape::objects"
    )]
    pub additional_sidecars: Vec<SidecarMount>,
    /// Extra arguments for the agent CLI, forwarded verbatim.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub additional_oz_args: Vec<String>,
    /// CPU and memory limits.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "shape::optional_object"
    )]
    pub instance_shape: Option<InstanceShape>,
    /// Bytes of the frame this assignment came in (0 when not decoded from
    /// one): what holding it costs, for the in-flight cap.
    #[serde(skip)]
    pub frame_bytes: usize,
}

/// An extra sidecar image to mount into the task container.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, Default)]
pub struct SidecarMount {
    /// Image to pull.
    #[serde(default)]
    pub image: String,
    /// Where its filesystem appears in the task container.
    #[serde(default)]
    pub mount_path: String,
    /// Mounted read-write when true, read-only otherwise.
    #[serde(default)]
    pub read_write: bool,
}

/// Compute size of a task; non-positive axes mean "no limit".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
pub struct InstanceShape {
    /// Virtual CPUs.
    #[serde(default)]
    pub vcpus: i64,
    /// Memory in GiB.
    #[serde(default)]
    pub memory_gb: i64,
}

/// The agent task.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, Default)]
pub struct Task {
    /// Task id (normally equal to `task_id`).
    #[serde(default)]
    pub id: String,
    /// Human title.
    #[serde(default)]
    pub title: String,
    /// Who owns it; a TEAM owner shares the session with the team.
    #[serde(default, deserialize_with = "shape::optional_object")]
    pub owner: Option<TaskOwner>,
    /// The agent configuration snapshotted onto the run.
    #[serde(default, deserialize_with = "shape::optional_object")]
    pub agent_config_snapshot: Option<AgentConfig>,
}

/// Owner of a task (the orchestrator capitalises these keys).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, Default)]
pub struct TaskOwner {
    /// `USER` or `TEAM`.
    #[serde(rename = "Type", default)]
    pub kind: String,
    /// Owner id.
    #[serde(rename = "Id", default)]
    pub id: i64,
}

impl TaskOwner {
    /// True when a team owns the task.
    pub fn is_team(&self) -> bool {
        self.kind == "TEAM"
    }
}

/// `agent_config_snapshot`: every field optional.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, Default)]
#[allow(missing_docs)]
pub struct AgentConfig {
    pub environment_id: Option<String>,
    pub base_prompt: Option<String>,
    pub model_id: Option<String>,
    pub profile_id: Option<String>,
    pub skill_spec: Option<String>,
    pub mcp_servers: Option<BTreeMap<String, RawJson>>,
    pub computer_use_enabled: Option<bool>,
    pub idle_timeout_minutes: Option<i64>,
    #[serde(default, deserialize_with = "shape::optional_object")]
    pub harness: Option<Harness>,
    pub harness_auth_secrets: Option<Value>,
    #[serde(default, deserialize_with = "shape::optional_object")]
    pub inference_providers: Option<InferenceProviders>,
    #[serde(default, deserialize_with = "shape::optional_object")]
    pub session_sharing: Option<SessionSharing>,
    pub snapshot_disabled: Option<bool>,
    pub snapshot_upload_timeout_secs: Option<i64>,
    pub snapshot_script_timeout_secs: Option<i64>,
}

/// One JSON value exactly as the orchestrator wrote it (Go's
/// `json.RawMessage`): numbers, key order and string escapes untouched.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RawJson(Box<RawValue>);

impl RawJson {
    /// Checks that `text` is one JSON value and keeps it as written.
    pub fn from_text(text: &str) -> Result<Self, serde_json::Error> {
        RawValue::from_string(text.to_owned()).map(Self)
    }

    /// The value's text, without surrounding whitespace.
    pub fn get(&self) -> &str {
        self.0.get()
    }
}

// Equal when the bytes are: the bytes are what gets forwarded.
impl PartialEq for RawJson {
    fn eq(&self, other: &Self) -> bool {
        self.get() == other.get()
    }
}

/// Which agent harness runs the task; none, empty or `oz` is Warp's own.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, Default)]
pub struct Harness {
    /// e.g. `claude`.
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
}

/// Per-provider inference configuration.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, Default)]
pub struct InferenceProviders {
    /// AWS Bedrock.
    #[serde(default, deserialize_with = "shape::optional_object")]
    pub aws: Option<AwsInferenceProvider>,
}

/// AWS Bedrock inference settings.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, Default)]
#[allow(missing_docs)]
pub struct AwsInferenceProvider {
    #[serde(default)]
    pub disabled: bool,
    #[serde(default)]
    pub role_arn: String,
    #[serde(default)]
    pub region: String,
}

/// Session sharing chosen for the run.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, Default)]
pub struct SessionSharing {
    /// `VIEWER` or `EDITOR`.
    #[serde(default)]
    pub public_access: Option<String>,
}

/// `failure_reason` values of `task_failed` (the orchestrator mirrors this list).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[allow(missing_docs)]
pub enum FailureReason {
    ImagePull,
    SidecarPrep,
    ContainerCreate,
    ContainerStart,
    ContainerWait,
    ContainerExit,
    ContainerOom,
    TaskTimeout,
    TaskCancelled,
    GracefulShutdown,
    Unknown,
}

impl FailureReason {
    /// Every value, in the spec's order.
    pub const ALL: [FailureReason; 11] = [
        Self::ImagePull,
        Self::SidecarPrep,
        Self::ContainerCreate,
        Self::ContainerStart,
        Self::ContainerWait,
        Self::ContainerExit,
        Self::ContainerOom,
        Self::TaskTimeout,
        Self::TaskCancelled,
        Self::GracefulShutdown,
        Self::Unknown,
    ];

    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ImagePull => "image_pull",
            Self::SidecarPrep => "sidecar_prep",
            Self::ContainerCreate => "container_create",
            Self::ContainerStart => "container_start",
            Self::ContainerWait => "container_wait",
            Self::ContainerExit => "container_exit",
            Self::ContainerOom => "container_oom",
            Self::TaskTimeout => "task_timeout",
            Self::TaskCancelled => "task_cancelled",
            Self::GracefulShutdown => "graceful_shutdown",
            Self::Unknown => "unknown",
        }
    }
}

impl fmt::Display for FailureReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A message from the worker to the orchestrator.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", content = "data", rename_all = "snake_case")]
pub enum Outbound {
    /// The worker accepted the assignment.
    TaskClaimed {
        /// Task.
        task_id: String,
        /// This worker's id.
        worker_id: String,
    },
    /// Every slot is busy.
    TaskRejected {
        /// Task.
        task_id: String,
        /// Why.
        reason: String,
    },
    /// The task ended well, or was cancelled by the user.
    TaskCompleted {
        /// Task.
        task_id: String,
        /// For the dashboard.
        message: String,
        /// `CANCELLED` for a user cancellation.
        #[serde(skip_serializing_if = "Option::is_none")]
        task_state: Option<String>,
    },
    /// Anything else ended the task.
    TaskFailed {
        /// Task.
        task_id: String,
        /// For the dashboard.
        message: String,
        /// Where it failed.
        #[serde(skip_serializing_if = "Option::is_none")]
        failure_reason: Option<FailureReason>,
        /// Container exit status (128+signal for a signal death); omitted when 0.
        #[serde(skip_serializing_if = "is_zero")]
        exit_code: i64,
    },
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

impl Outbound {
    /// The task this message is about.
    pub fn task_id(&self) -> &str {
        match self {
            Self::TaskClaimed { task_id, .. }
            | Self::TaskRejected { task_id, .. }
            | Self::TaskCompleted { task_id, .. }
            | Self::TaskFailed { task_id, .. } => task_id,
        }
    }

    /// True for `task_completed` and `task_failed`.
    pub fn is_terminal(&self) -> bool {
        matches!(self, Self::TaskCompleted { .. } | Self::TaskFailed { .. })
    }

    /// The message type as sent on the wire.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::TaskClaimed { .. } => "task_claimed",
            Self::TaskRejected { .. } => "task_rejected",
            Self::TaskCompleted { .. } => "task_completed",
            Self::TaskFailed { .. } => "task_failed",
        }
    }

    /// The text frame for this message.
    pub fn encode(&self) -> String {
        // Serialising these plain structs cannot fail.
        serde_json::to_string(self).expect("outbound messages always serialise")
    }
}

#[cfg(test)]
mod tests;

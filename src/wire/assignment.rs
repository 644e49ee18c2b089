//! The `task_assignment` data: the typed structs an assignment decodes
//! into, exactly as the orchestrator spells them (unknown fields ignored).
//!
//! Pure data with serde derives; the envelope, the door's checks and the
//! answer to a bad assignment are [`decode`](mod@super::decode)'s.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;

use super::shape;

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

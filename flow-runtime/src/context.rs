//! What a running task knows about itself.

use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The id of one flow run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct FlowRunId(pub Uuid);

impl FlowRunId {
    /// A new random id.
    pub fn new() -> Self {
        FlowRunId(Uuid::new_v4())
    }
}

impl Default for FlowRunId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for FlowRunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl std::str::FromStr for FlowRunId {
    type Err = InvalidRunId;

    /// Reads a run id as it prints (`FlowRun::id().to_string()`), e.g. to restart a run
    /// named on a command line.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s.trim())
            .map(FlowRunId)
            .map_err(|e| InvalidRunId {
                given: s.to_owned(),
                reason: e.to_string(),
            })
    }
}

/// A text that is not a flow run id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{given}` is not a flow run id (a UUID such as `67e55044-10b1-426f-9247-bb680e5fe0c8`): {reason}")]
pub struct InvalidRunId {
    given: String,
    reason: String,
}

/// The id of one task run: the flow run, the task's node in the graph, and the map index
/// of a mapped child. Stable across retries (the attempt is counted separately).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TaskRunId {
    /// The flow run.
    pub flow_run: FlowRunId,
    /// The task's position in the flow's graph.
    pub node: u32,
    /// The child's index, for a mapped child.
    pub map_index: Option<u32>,
}

impl fmt::Display for TaskRunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.flow_run, self.node)?;
        if let Some(i) = self.map_index {
            write!(f, "-{i}")?;
        }
        Ok(())
    }
}

/// What a task run knows about itself; a task receives it by taking a `&TaskContext`
/// parameter (`fn whoami(ctx: &TaskContext) -> String`), which is not a data input.
#[derive(Clone, Debug)]
pub struct TaskContext {
    pub(crate) id: TaskRunId,
    pub(crate) flow_name: &'static str,
    pub(crate) task_name: &'static str,
    pub(crate) binding: Arc<str>,
    pub(crate) attempt: u32,
    pub(crate) scheduled_start: SystemTime,
    pub(crate) params: Arc<serde_json::Map<String, serde_json::Value>>,
}

impl TaskContext {
    /// The flow run this task run belongs to.
    pub fn flow_run_id(&self) -> FlowRunId {
        self.id.flow_run
    }

    /// This task run's id (the same for every attempt).
    pub fn task_run_id(&self) -> TaskRunId {
        self.id
    }

    /// The flow's name.
    pub fn flow_name(&self) -> &'static str {
        self.flow_name
    }

    /// The task's name (its `name` option, or the function's name).
    pub fn task_name(&self) -> &'static str {
        self.task_name
    }

    /// The name of the task in this flow: the `let` binding, or the task name.
    pub fn binding(&self) -> &str {
        &self.binding
    }

    /// The index of this child in its map, for a mapped child.
    pub fn map_index(&self) -> Option<usize> {
        self.id.map_index.map(|i| i as usize)
    }

    /// The attempt, counted from 1.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// When this attempt was scheduled to start: when the task run became ready, or, for a
    /// retry, when its wait ended.
    pub fn scheduled_start(&self) -> SystemTime {
        self.scheduled_start
    }

    /// The flow run's parameter values, by name, as JSON.
    pub fn parameters(&self) -> &serde_json::Map<String, serde_json::Value> {
        &self.params
    }

    /// The flow run's parameter `name` as a `T`, if the flow has it and it fits `T`.
    pub fn param<T: serde::de::DeserializeOwned>(&self, name: &str) -> Option<T> {
        T::deserialize(self.params.get(name)?).ok()
    }

    /// The secret `name`, read from the environment variable of that name. A [`Secret`]
    /// prints as `***`, so it cannot leak into a log line or an error message by accident.
    ///
    /// # Errors
    /// [`SecretError`] when the variable is not set (or is not valid unicode); the error
    /// names the variable, never a value.
    pub fn secret(&self, name: &str) -> Result<Secret, SecretError> {
        Secret::from_env(name)
    }

    /// `clean[3]` for a mapped child, `clean` otherwise (the binding name).
    pub fn full_name(&self) -> String {
        match self.id.map_index {
            Some(i) => format!("{}[{i}]", self.binding),
            None => self.binding.to_string(),
        }
    }
}

/// A secret value (a token, a password, a webhook URL). Its `Debug` and `Display` print
/// `***`; [`Secret::expose`] is the only way to its text, so every place that uses it is
/// explicit.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// A secret from its text.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret held by the environment variable `name`.
    ///
    /// # Errors
    /// [`SecretError`] when the variable is not set or not valid unicode.
    pub fn from_env(name: &str) -> Result<Secret, SecretError> {
        match std::env::var(name) {
            Ok(value) => Ok(Secret(value)),
            Err(std::env::VarError::NotPresent) => Err(SecretError::NotSet {
                name: name.to_owned(),
            }),
            Err(std::env::VarError::NotUnicode(_)) => Err(SecretError::NotUnicode {
                name: name.to_owned(),
            }),
        }
    }

    /// The secret's text: pass it to what needs it, never to a log line.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// A secret that could not be read. Names the variable, never a value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SecretError {
    /// The variable is not set.
    #[error("secret `{name}` is not set: set the environment variable `{name}`")]
    NotSet {
        /// The variable's name.
        name: String,
    },
    /// The variable holds bytes that are not unicode.
    #[error("secret `{name}` is not valid unicode: check the environment variable `{name}`")]
    NotUnicode {
        /// The variable's name.
        name: String,
    },
}

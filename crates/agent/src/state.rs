//! The state a network carries from iteration to iteration.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// What the network knows about the task: the summary the agent gave when it
/// finished, and every project file written so far (path relative to the
/// project root → content), seeded with the files of the previous fragment.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkState {
    /// The text between `<task_summary>` tags; empty until the agent is done.
    #[serde(default)]
    pub summary: String,
    /// Project files, path → content.
    #[serde(default)]
    pub files: BTreeMap<String, String>,
}

impl NetworkState {
    /// A state seeded with the files of the previous fragment.
    pub fn with_files(files: BTreeMap<String, String>) -> Self {
        Self {
            summary: String::new(),
            files,
        }
    }

    /// Applies what one tool call changed.
    pub fn apply(&mut self, changes: &StateChanges) {
        for (path, content) in &changes.files {
            self.files.insert(path.clone(), content.clone());
        }
    }
}

/// The changes one tool call made to the [`NetworkState`].
///
/// They are journaled with the tool step's result: on replay the network
/// re-applies the journaled changes instead of running the tool again, which
/// is what makes the rebuilt state identical to the one before the crash.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateChanges {
    /// Files written, path → new content.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub files: BTreeMap<String, String>,
}

impl StateChanges {
    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }
}

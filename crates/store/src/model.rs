use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The name every project starts with. The code-agent replaces it with the title of the first
/// fragment, but only while [`Project::name_is_default`] is still true.
pub const DEFAULT_PROJECT_NAME: &str = "Untitled project";

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct User {
    pub id: String,
    pub name: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Project {
    pub id: String,
    pub name: String,
    /// True until the project is renamed; a flag rather than a comparison with
    /// [`DEFAULT_PROJECT_NAME`] so that a fragment titled "Untitled project" ends the renaming.
    pub name_is_default: bool,
    pub sandbox_id: Option<String>,
    pub image_url: Option<String>,
    pub user_id: String,
    /// Whether the preview is served to anyone (`true`) or to the owner only.
    #[serde(default)]
    pub public: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum MessageRole {
    User,
    Assistant,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum MessageType {
    Result,
    Error,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Message {
    pub id: String,
    pub project_id: String,
    #[sqlx(try_from = "String")]
    pub role: MessageRole,
    #[serde(rename = "type")]
    #[sqlx(rename = "type", try_from = "String")]
    pub kind: MessageType,
    pub content: String,
    pub image_url: Option<String>,
    pub user_id: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, sqlx::FromRow, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Fragment {
    pub id: String,
    pub message_id: String,
    pub sandbox_url: String,
    /// The sandbox the fragment was built in; it may be gone since.
    pub sandbox_id: Option<String>,
    pub title: String,
    /// File path (relative to the project root) → file content.
    #[sqlx(json)]
    pub files: BTreeMap<String, String>,
    pub image_url: Option<String>,
    #[sqlx(json(nullable))]
    pub design_spec: Option<serde_json::Value>,
    /// The errors the app still had when its run ended; `None` when it rendered.
    pub app_errors: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Bytes of a fragment's files as its size limit counts them: every path and every content.
pub fn files_size(files: &BTreeMap<String, String>) -> usize {
    files.iter().map(|(path, content)| path.len() + content.len()).sum()
}

impl Fragment {
    /// The fragment without its file contents.
    pub fn summary(&self) -> FragmentSummary {
        let file_sizes: BTreeMap<String, u64> = self
            .files
            .iter()
            .map(|(path, content)| (path.clone(), content.len() as u64))
            .collect();
        FragmentSummary {
            id: self.id.clone(),
            message_id: self.message_id.clone(),
            sandbox_url: self.sandbox_url.clone(),
            sandbox_id: self.sandbox_id.clone(),
            title: self.title.clone(),
            size: files_size(&self.files) as u64,
            file_sizes,
            image_url: self.image_url.clone(),
            design_spec: self.design_spec.clone(),
            app_errors: self.app_errors.clone(),
            created_at: self.created_at,
            updated_at: self.updated_at,
        }
    }
}

/// A fragment as a chat listing carries it: everything but the file contents, which come
/// from `GET /api/fragments/{id}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, sqlx::FromRow, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FragmentSummary {
    pub id: String,
    pub message_id: String,
    pub sandbox_url: String,
    /// The sandbox the fragment was built in; it may be gone since.
    pub sandbox_id: Option<String>,
    pub title: String,
    /// File path (relative to the project root) → size of its content in bytes.
    #[sqlx(json)]
    pub file_sizes: BTreeMap<String, u64>,
    /// Bytes of all files, paths and contents: what the fragment size limit counts.
    #[sqlx(skip)]
    pub size: u64,
    pub image_url: Option<String>,
    #[sqlx(json(nullable))]
    pub design_spec: Option<serde_json::Value>,
    /// The errors the app still had when its run ended; `None` when it rendered.
    pub app_errors: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A message as the chat lists it: with a summary of the fragment an ASSISTANT result carries.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ListedMessage {
    #[serde(flatten)]
    pub message: Message,
    /// Named as in the original app's API; its `fileSizes` replace the original's `files`.
    #[serde(rename = "codeFragment")]
    pub fragment: Option<FragmentSummary>,
}

/// A message with the whole fragment an ASSISTANT result carries.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MessageWithFragment {
    #[serde(flatten)]
    pub message: Message,
    /// Named as in the original app's API, so its clients carry over.
    #[serde(rename = "codeFragment")]
    pub fragment: Option<Fragment>,
}

/// What the code-agent saves as its answer to a prompt.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "SCREAMING_SNAKE_CASE", rename_all_fields = "camelCase")]
pub enum AssistantReply {
    /// A finished task: a RESULT message with the fragment it produced.
    Result { content: String, fragment: NewFragment },
    /// A failed task: an ERROR message and no fragment.
    Error { content: String },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NewFragment {
    pub sandbox_url: String,
    pub sandbox_id: Option<String>,
    pub title: String,
    pub files: BTreeMap<String, String>,
    pub image_url: Option<String>,
    pub design_spec: Option<serde_json::Value>,
    /// The errors the app still had when the run ended (see [`Fragment::app_errors`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_errors: Option<String>,
}

/// A fragment after its files were changed, with the sandbox its project uses now, which is
/// where the server writes the changed files.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, sqlx::FromRow, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FragmentUpdate {
    #[sqlx(flatten)]
    pub fragment: Fragment,
    pub project_sandbox_id: Option<String>,
}

/// A message role or type that this version does not know.
#[derive(Debug, thiserror::Error)]
#[error("unknown {column} {value:?}")]
pub struct UnknownValue {
    column: &'static str,
    value: String,
}

impl UnknownValue {
    pub(crate) fn new(column: &'static str, value: String) -> Self {
        UnknownValue { column, value }
    }
}

impl MessageRole {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            MessageRole::User => "USER",
            MessageRole::Assistant => "ASSISTANT",
        }
    }
}

impl TryFrom<String> for MessageRole {
    type Error = UnknownValue;

    fn try_from(value: String) -> Result<Self, UnknownValue> {
        match value.as_str() {
            "USER" => Ok(MessageRole::User),
            "ASSISTANT" => Ok(MessageRole::Assistant),
            _ => Err(UnknownValue {
                column: "message role",
                value,
            }),
        }
    }
}

impl MessageType {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            MessageType::Result => "RESULT",
            MessageType::Error => "ERROR",
        }
    }
}

impl TryFrom<String> for MessageType {
    type Error = UnknownValue;

    fn try_from(value: String) -> Result<Self, UnknownValue> {
        match value.as_str() {
            "RESULT" => Ok(MessageType::Result),
            "ERROR" => Ok(MessageType::Error),
            _ => Err(UnknownValue {
                column: "message type",
                value,
            }),
        }
    }
}

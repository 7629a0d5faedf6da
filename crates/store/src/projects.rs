//! Projects, their messages and fragments. Every query joins through `projects.user_id`, so
//! another user's rows behave exactly like rows that do not exist.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use sqlx::query::Query;
use sqlx::types::Json;
use sqlx::{Database, Encode, Type};

use crate::{
    AssistantReply, Backend, DEFAULT_PROJECT_NAME, Error, Fragment, FragmentSummary, FragmentUpdate, ListedMessage,
    Message, MessageRole, MessageType, MessageWithFragment, NewFragment, Project, Result, Store, files_size, new_id,
    now,
};

const MAX_PROJECT_NAME_CHARS: usize = 200;

pub(crate) const PROJECT_COLUMNS: &str =
    "id, name, name_is_default, sandbox_id, image_url, user_id, public, created_at, updated_at";

impl Store {
    /// Creates a project with its first USER message, in one transaction: if the message is
    /// refused, no project is left behind. The project starts with [`DEFAULT_PROJECT_NAME`]
    /// and takes the message's image URL.
    pub async fn create_project(
        &self,
        user_id: &str,
        content: &str,
        image_url: Option<&str>,
    ) -> Result<(Project, Message)> {
        let created = now();
        let project = Project {
            id: new_id(),
            name: DEFAULT_PROJECT_NAME.to_owned(),
            name_is_default: true,
            sandbox_id: None,
            image_url: image_url.map(str::to_owned),
            user_id: user_id.to_owned(),
            public: false,
            created_at: created,
            updated_at: created,
        };
        let message = user_message(&project.id, user_id, content, image_url, created);
        with_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            sqlx::query(
                "INSERT INTO projects (id, name, name_is_default, sandbox_id, image_url, user_id, \
                 created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(&project.id)
            .bind(&project.name)
            .bind(project.name_is_default)
            .bind(&project.sandbox_id)
            .bind(&project.image_url)
            .bind(&project.user_id)
            .bind(project.created_at)
            .bind(project.updated_at)
            .execute(&mut *tx)
            .await?;
            insert_message(&message).execute(&mut *tx).await?;
            tx.commit().await?;
        });
        Ok((project, message))
    }

    /// The user's projects, most recently updated first.
    pub async fn list_projects(&self, user_id: &str) -> Result<Vec<Project>> {
        let sql = format!(
            "SELECT {PROJECT_COLUMNS} FROM projects WHERE user_id = $1 \
             ORDER BY updated_at DESC, id DESC"
        );
        Ok(with_pool!(self, pool => {
            sqlx::query_as(&sql).bind(user_id).fetch_all(pool).await?
        }))
    }

    pub async fn get_project(&self, user_id: &str, project_id: &str) -> Result<Option<Project>> {
        let sql = format!("SELECT {PROJECT_COLUMNS} FROM projects WHERE id = $1 AND user_id = $2");
        Ok(with_pool!(self, pool => {
            sqlx::query_as(&sql)
                .bind(project_id)
                .bind(user_id)
                .fetch_optional(pool)
                .await?
        }))
    }

    /// Deletes the project with its messages and fragments. `false` when there was none.
    pub async fn delete_project(&self, user_id: &str, project_id: &str) -> Result<bool> {
        let deleted = with_pool!(self, pool => {
            sqlx::query("DELETE FROM projects WHERE id = $1 AND user_id = $2")
                .bind(project_id)
                .bind(user_id)
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(deleted > 0)
    }

    /// Deletes one of the user's messages (with its fragment). `false` when there was none.
    pub async fn delete_message(&self, user_id: &str, message_id: &str) -> Result<bool> {
        let deleted = with_pool!(self, pool => {
            sqlx::query(
                "DELETE FROM messages WHERE id = $1 \
                 AND project_id IN (SELECT id FROM projects WHERE user_id = $2)",
            )
            .bind(message_id)
            .bind(user_id)
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(deleted > 0)
    }

    /// Records the sandbox the project now runs in (`None` to forget it). `false` when there
    /// is no such project.
    pub async fn set_project_sandbox(&self, user_id: &str, project_id: &str, sandbox_id: Option<&str>) -> Result<bool> {
        let updated = with_pool!(self, pool => {
            sqlx::query(
                "UPDATE projects SET sandbox_id = $1, updated_at = $2 \
                 WHERE id = $3 AND user_id = $4",
            )
            .bind(sandbox_id)
            .bind(now())
            .bind(project_id)
            .bind(user_id)
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(updated > 0)
    }

    /// Gives the project `name` if it still has its default name. `true` when it was renamed;
    /// `false` when it had been renamed before or does not exist. `name` is trimmed.
    pub async fn rename_project_if_default(&self, user_id: &str, project_id: &str, name: &str) -> Result<bool> {
        let name = name.trim();
        if name.is_empty() || name.chars().count() > MAX_PROJECT_NAME_CHARS {
            return Err(Error::Invalid {
                field: "project name",
                reason: format!("{name:?}: it must have 1 to 200 characters"),
            });
        }
        let updated = with_pool!(self, pool => {
            sqlx::query(
                "UPDATE projects SET name = $1, name_is_default = FALSE, updated_at = $2 \
                 WHERE id = $3 AND user_id = $4 AND name_is_default",
            )
            .bind(name)
            .bind(now())
            .bind(project_id)
            .bind(user_id)
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(updated > 0)
    }

    /// Adds a USER message (a prompt) to the project and marks the project as updated.
    /// `None` when there is no such project.
    pub async fn add_user_message(
        &self,
        user_id: &str,
        project_id: &str,
        content: &str,
        image_url: Option<&str>,
    ) -> Result<Option<Message>> {
        let message = user_message(project_id, user_id, content, image_url, now());
        with_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            // Writing first (rather than checking ownership with a SELECT) takes SQLite's
            // write lock at once, so concurrent writers wait instead of failing.
            let touched = touch_project(project_id, user_id, message.created_at)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if touched == 0 {
                return Ok(None);
            }
            insert_message(&message).execute(&mut *tx).await?;
            tx.commit().await?;
        });
        Ok(Some(message))
    }

    /// The project's messages, oldest first, each with a summary of its fragment (file paths
    /// and sizes, no contents: the database measures the files, so big ones are never loaded
    /// here). `None` when there is no such project.
    pub async fn list_messages(&self, user_id: &str, project_id: &str) -> Result<Option<Vec<ListedMessage>>> {
        if self.get_project(user_id, project_id).await?.is_none() {
            return Ok(None);
        }
        let file_sizes = match self.backend {
            Backend::Sqlite(_) => {
                "(SELECT json_group_object(e.key, length(CAST(e.value AS BLOB))) FROM json_each(f.files) e)"
            }
            Backend::Postgres(_) => {
                "(SELECT COALESCE(jsonb_object_agg(e.key, octet_length(e.value)), '{}'::jsonb) \
                 FROM jsonb_each_text(f.files) e)"
            }
        };
        let fragments_sql = format!(
            "SELECT f.id, f.message_id, f.sandbox_url, f.sandbox_id, f.title, {file_sizes} AS file_sizes, \
             f.image_url, f.design_spec, f.app_errors, f.created_at, f.updated_at \
             FROM fragments f JOIN messages m ON m.id = f.message_id WHERE m.project_id = $1"
        );
        let (messages, fragments): (Vec<Message>, Vec<FragmentSummary>) = with_pool!(self, pool => {
            let messages = sqlx::query_as(
                "SELECT * FROM messages WHERE project_id = $1 ORDER BY created_at, id",
            )
            .bind(project_id)
            .fetch_all(pool)
            .await?;
            let fragments = sqlx::query_as(&fragments_sql)
                .bind(project_id)
                .fetch_all(pool)
                .await?;
            (messages, fragments)
        });
        let mut fragments: HashMap<String, FragmentSummary> = fragments
            .into_iter()
            .map(|mut fragment| {
                fragment.size = fragment
                    .file_sizes
                    .iter()
                    .map(|(path, size)| path.len() as u64 + size)
                    .sum();
                (fragment.message_id.clone(), fragment)
            })
            .collect();
        Ok(Some(
            messages
                .into_iter()
                .map(|message| ListedMessage {
                    fragment: fragments.remove(&message.id),
                    message,
                })
                .collect(),
        ))
    }

    /// One fragment with its files, if the user owns its project.
    pub async fn get_fragment(&self, user_id: &str, fragment_id: &str) -> Result<Option<Fragment>> {
        Ok(with_pool!(self, pool => {
            sqlx::query_as(
                "SELECT f.* FROM fragments f \
                 JOIN messages m ON m.id = f.message_id \
                 JOIN projects p ON p.id = m.project_id \
                 WHERE f.id = $1 AND p.user_id = $2",
            )
            .bind(fragment_id)
            .bind(user_id)
            .fetch_optional(pool)
            .await?
        }))
    }

    /// Up to `limit` of the project's most recent messages, returned oldest first: the
    /// conversation history of an agent run. With `before_message_id`, only messages older
    /// than that message count (nothing when it is not a message of the project). Empty
    /// when there is no such project.
    pub async fn recent_messages(
        &self,
        user_id: &str,
        project_id: &str,
        before_message_id: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Message>> {
        Ok(with_pool!(self, pool => {
            sqlx::query_as(
                "SELECT * FROM ( \
                   SELECT m.* FROM messages m JOIN projects p ON p.id = m.project_id \
                   WHERE m.project_id = $1 AND p.user_id = $2 AND ($3 IS NULL OR \
                     (m.created_at, m.id) < \
                     (SELECT b.created_at, b.id FROM messages b WHERE b.id = $3 AND b.project_id = $1)) \
                   ORDER BY m.created_at DESC, m.id DESC LIMIT $4 \
                 ) recent ORDER BY created_at, id",
            )
            .bind(project_id)
            .bind(user_id)
            .bind(before_message_id)
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await?
        }))
    }

    /// Every fragment of the project, oldest first: its versions. Empty when there is no such
    /// project.
    pub async fn project_fragments(&self, user_id: &str, project_id: &str) -> Result<Vec<Fragment>> {
        Ok(with_pool!(self, pool => {
            sqlx::query_as(
                "SELECT f.* FROM fragments f \
                 JOIN messages m ON m.id = f.message_id \
                 JOIN projects p ON p.id = m.project_id \
                 WHERE p.id = $1 AND p.user_id = $2 \
                 ORDER BY f.created_at, f.id",
            )
            .bind(project_id)
            .bind(user_id)
            .fetch_all(pool)
            .await?
        }))
    }

    /// The project's most recent fragment (whose files seed the next agent run), if any.
    pub async fn latest_fragment(&self, user_id: &str, project_id: &str) -> Result<Option<Fragment>> {
        Ok(with_pool!(self, pool => {
            sqlx::query_as(
                "SELECT f.* FROM fragments f \
                 JOIN messages m ON m.id = f.message_id \
                 JOIN projects p ON p.id = m.project_id \
                 WHERE p.id = $1 AND p.user_id = $2 \
                 ORDER BY f.created_at DESC, f.id DESC LIMIT 1",
            )
            .bind(project_id)
            .bind(user_id)
            .fetch_optional(pool)
            .await?
        }))
    }

    /// Stores the code-agent's answer: an ASSISTANT message and, for a result, its fragment,
    /// in one transaction, and marks the project as updated. `None` when there is no such
    /// project.
    pub async fn add_assistant_message(
        &self,
        user_id: &str,
        project_id: &str,
        reply: AssistantReply,
    ) -> Result<Option<MessageWithFragment>> {
        self.add_assistant_message_once(user_id, project_id, &new_id(), reply)
            .await
    }

    /// [`Store::add_assistant_message`] with an id chosen by the caller: when a message with
    /// that id already exists in the project, it is returned and nothing is stored. A durable
    /// step that stored the reply and was interrupted before its result was journaled thus
    /// stores it only once when it runs again.
    pub async fn add_assistant_message_once(
        &self,
        user_id: &str,
        project_id: &str,
        message_id: &str,
        reply: AssistantReply,
    ) -> Result<Option<MessageWithFragment>> {
        if let Some(existing) = self.message_with_fragment(user_id, project_id, message_id).await? {
            return Ok(Some(existing));
        }
        let created = now();
        let (kind, content, new_fragment) = match reply {
            AssistantReply::Result { content, fragment } => (MessageType::Result, content, Some(fragment)),
            AssistantReply::Error { content } => (MessageType::Error, content, None),
        };
        let message = Message {
            id: message_id.to_owned(),
            project_id: project_id.to_owned(),
            role: MessageRole::Assistant,
            kind,
            content,
            image_url: None,
            user_id: user_id.to_owned(),
            created_at: created,
            updated_at: created,
        };
        let fragment = new_fragment.map(|new| fragment(&message.id, new, created));
        with_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            let touched = touch_project(project_id, user_id, created)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if touched == 0 {
                return Ok(None);
            }
            insert_message(&message).execute(&mut *tx).await?;
            if let Some(fragment) = &fragment {
                insert_fragment(fragment).execute(&mut *tx).await?;
            }
            tx.commit().await?;
        });
        Ok(Some(MessageWithFragment { message, fragment }))
    }

    async fn message_with_fragment(
        &self,
        user_id: &str,
        project_id: &str,
        message_id: &str,
    ) -> Result<Option<MessageWithFragment>> {
        let found: Option<(Message, Option<Fragment>)> = with_pool!(self, pool => {
            let message: Option<Message> = sqlx::query_as(
                "SELECT m.* FROM messages m JOIN projects p ON p.id = m.project_id \
                 WHERE m.id = $1 AND m.project_id = $2 AND p.user_id = $3",
            )
            .bind(message_id)
            .bind(project_id)
            .bind(user_id)
            .fetch_optional(pool)
            .await?;
            match message {
                Some(message) => {
                    let fragment = sqlx::query_as("SELECT * FROM fragments WHERE message_id = $1")
                        .bind(message_id)
                        .fetch_optional(pool)
                        .await?;
                    Some((message, fragment))
                }
                None => None,
            }
        });
        Ok(found.map(|(message, fragment)| MessageWithFragment { message, fragment }))
    }

    /// Merges `files` into the fragment's files (a path in both takes the new content).
    /// Returns the updated fragment with the sandbox its project uses now; `None` when there
    /// is no such fragment.
    pub async fn merge_fragment_files(
        &self,
        user_id: &str,
        fragment_id: &str,
        files: &BTreeMap<String, String>,
    ) -> Result<Option<FragmentUpdate>> {
        self.merge_fragment_files_within(user_id, fragment_id, files, usize::MAX)
            .await
    }

    /// [`Store::merge_fragment_files`], refused with [`Error::FragmentTooLarge`] (storing
    /// nothing) when the merged files would have more than `max_bytes` (see [`files_size`]).
    /// The size is checked inside the merge's transaction, so concurrent merges cannot
    /// together pass the limit.
    pub async fn merge_fragment_files_within(
        &self,
        user_id: &str,
        fragment_id: &str,
        files: &BTreeMap<String, String>,
        max_bytes: usize,
    ) -> Result<Option<FragmentUpdate>> {
        // One UPDATE merges inside the database, so concurrent merges cannot lose each
        // other's files the way a read-modify-write could.
        let merged = match self.backend {
            Backend::Sqlite(_) => "json_patch(files, $1)",
            Backend::Postgres(_) => "files || $1",
        };
        let update = format!(
            "UPDATE fragments SET files = {merged}, updated_at = $2 WHERE id = $3 AND message_id IN ( \
               SELECT m.id FROM messages m JOIN projects p ON p.id = m.project_id WHERE p.user_id = $4)"
        );
        with_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            let updated = sqlx::query(&update)
                .bind(Json(files))
                .bind(now())
                .bind(fragment_id)
                .bind(user_id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if updated == 0 {
                return Ok(None);
            }
            let fragment: FragmentUpdate = sqlx::query_as(
                "SELECT f.*, p.sandbox_id AS project_sandbox_id FROM fragments f \
                 JOIN messages m ON m.id = f.message_id \
                 JOIN projects p ON p.id = m.project_id \
                 WHERE f.id = $1",
            )
            .bind(fragment_id)
            .fetch_one(&mut *tx)
            .await?;
            let size = files_size(&fragment.fragment.files);
            if size > max_bytes {
                tx.rollback().await?;
                return Err(Error::FragmentTooLarge { size, limit: max_bytes });
            }
            tx.commit().await?;
            Ok(Some(fragment))
        })
    }
}

fn user_message(
    project_id: &str,
    user_id: &str,
    content: &str,
    image_url: Option<&str>,
    created: DateTime<Utc>,
) -> Message {
    Message {
        id: new_id(),
        project_id: project_id.to_owned(),
        role: MessageRole::User,
        kind: MessageType::Result,
        content: content.to_owned(),
        image_url: image_url.map(str::to_owned),
        user_id: user_id.to_owned(),
        created_at: created,
        updated_at: created,
    }
}

fn fragment(message_id: &str, new: NewFragment, created: DateTime<Utc>) -> Fragment {
    Fragment {
        id: new_id(),
        message_id: message_id.to_owned(),
        sandbox_url: new.sandbox_url,
        sandbox_id: new.sandbox_id,
        title: new.title,
        files: new.files,
        image_url: new.image_url,
        design_spec: new.design_spec,
        app_errors: new.app_errors,
        created_at: created,
        updated_at: created,
    }
}

// The statements below are shared by several operations, so they are built generically over
// the database instead of being spelled out in every `with_pool!` arm.

/// Marks a project as updated; affects no row unless the user owns the project.
fn touch_project<'q, DB>(project_id: &'q str, user_id: &'q str, at: DateTime<Utc>) -> Query<'q, DB, DB::Arguments<'q>>
where
    DB: Database,
    &'q str: Encode<'q, DB> + Type<DB>,
    DateTime<Utc>: Encode<'q, DB> + Type<DB>,
{
    sqlx::query("UPDATE projects SET updated_at = $1 WHERE id = $2 AND user_id = $3")
        .bind(at)
        .bind(project_id)
        .bind(user_id)
}

fn insert_message<'q, DB>(message: &'q Message) -> Query<'q, DB, DB::Arguments<'q>>
where
    DB: Database,
    &'q str: Encode<'q, DB> + Type<DB>,
    Option<&'q str>: Encode<'q, DB> + Type<DB>,
    DateTime<Utc>: Encode<'q, DB> + Type<DB>,
{
    sqlx::query(
        "INSERT INTO messages (id, project_id, role, type, content, image_url, user_id, \
         created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(message.id.as_str())
    .bind(message.project_id.as_str())
    .bind(message.role.as_str())
    .bind(message.kind.as_str())
    .bind(message.content.as_str())
    .bind(message.image_url.as_deref())
    .bind(message.user_id.as_str())
    .bind(message.created_at)
    .bind(message.updated_at)
}

fn insert_fragment<'q, DB>(fragment: &'q Fragment) -> Query<'q, DB, DB::Arguments<'q>>
where
    DB: Database,
    &'q str: Encode<'q, DB> + Type<DB>,
    Option<&'q str>: Encode<'q, DB> + Type<DB>,
    Json<&'q BTreeMap<String, String>>: Encode<'q, DB> + Type<DB>,
    Option<Json<&'q serde_json::Value>>: Encode<'q, DB> + Type<DB>,
    DateTime<Utc>: Encode<'q, DB> + Type<DB>,
{
    sqlx::query(
        "INSERT INTO fragments (id, message_id, sandbox_url, sandbox_id, title, files, \
         image_url, design_spec, app_errors, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    )
    .bind(fragment.id.as_str())
    .bind(fragment.message_id.as_str())
    .bind(fragment.sandbox_url.as_str())
    .bind(fragment.sandbox_id.as_deref())
    .bind(fragment.title.as_str())
    .bind(Json(&fragment.files))
    .bind(fragment.image_url.as_deref())
    .bind(fragment.design_spec.as_ref().map(Json))
    .bind(fragment.app_errors.as_deref())
    .bind(fragment.created_at)
    .bind(fragment.updated_at)
}

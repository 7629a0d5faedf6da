//! What preview access needs: which project (and so which owner) a sandbox serves, whether
//! its owner made it public, and the server's own keys.

use rand::Rng;

use crate::projects::PROJECT_COLUMNS;
use crate::{Project, Result, Store, now};

/// The project a sandbox belongs to, as the preview proxy needs it.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct SandboxOwner {
    pub project_id: String,
    pub user_id: String,
    pub public: bool,
}

impl Store {
    /// The project whose current sandbox is `sandbox_id`; `None` when no project uses it.
    pub async fn sandbox_owner(&self, sandbox_id: &str) -> Result<Option<SandboxOwner>> {
        Ok(with_pool!(self, pool => {
            sqlx::query_as(
                "SELECT id AS project_id, user_id, public FROM projects WHERE sandbox_id = $1 \
                 ORDER BY updated_at DESC LIMIT 1",
            )
            .bind(sandbox_id)
            .fetch_optional(pool)
            .await?
        }))
    }

    /// Shares (`true`) or unshares the project's preview; the project as it is now, or `None`
    /// when the user has no such project.
    pub async fn set_project_public(&self, user_id: &str, project_id: &str, public: bool) -> Result<Option<Project>> {
        let sql = format!(
            "UPDATE projects SET public = $1, updated_at = $2 WHERE id = $3 AND user_id = $4 \
             RETURNING {PROJECT_COLUMNS}"
        );
        Ok(with_pool!(self, pool => {
            sqlx::query_as(&sql)
                .bind(public)
                .bind(now())
                .bind(project_id)
                .bind(user_id)
                .fetch_optional(pool)
                .await?
        }))
    }

    /// The server's secret named `name` (64 hex characters of random), made on first use and
    /// the same for every process sharing the database.
    pub async fn server_secret(&self, name: &str) -> Result<String> {
        let mut bytes = [0u8; 32];
        rand::rng().fill(&mut bytes);
        let fresh: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        Ok(with_pool!(self, pool => {
            // Of processes racing here, the first insert wins and all read its value.
            sqlx::query(
                "INSERT INTO server_secrets (name, value, created_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (name) DO NOTHING",
            )
            .bind(name)
            .bind(&fresh)
            .bind(now())
            .execute(pool)
            .await?;
            sqlx::query_scalar("SELECT value FROM server_secrets WHERE name = $1")
                .bind(name)
                .fetch_one(pool)
                .await?
        }))
    }
}

//! Users and the bearer tokens that identify them.

use rand::Rng;
use sha2::{Digest, Sha256};

use crate::error::is_unique_violation;
use crate::{Error, Result, Store, User, new_id, now};

/// Kinds of rows in `api_tokens`. API and session tokens authenticate requests; a login token
/// only buys one session token.
const KIND_API: &str = "api";
const KIND_LOGIN_ONCE: &str = "login-once";
const KIND_SESSION: &str = "session";

const MAX_USER_NAME_CHARS: usize = 64;

impl Store {
    /// Creates a user and an API token for it. The plain token is returned only here; the
    /// store keeps its hash.
    pub async fn create_user(&self, name: &str) -> Result<(User, String)> {
        validate_user_name(name)?;
        let user = User {
            id: new_id(),
            name: name.to_owned(),
            created_at: now(),
        };
        let (token, token_hash) = new_token();
        with_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            sqlx::query("INSERT INTO users (id, name, created_at) VALUES ($1, $2, $3)")
                .bind(&user.id)
                .bind(&user.name)
                .bind(user.created_at)
                .execute(&mut *tx)
                .await
                .map_err(|err| {
                    if is_unique_violation(&err) {
                        Error::UserExists(name.to_owned())
                    } else {
                        err.into()
                    }
                })?;
            sqlx::query(
                "INSERT INTO api_tokens (token_hash, user_id, kind, created_at) \
                 VALUES ($1, $2, $3, $4)",
            )
            .bind(&token_hash)
            .bind(&user.id)
            .bind(KIND_API)
            .bind(user.created_at)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
        });
        Ok((user, token))
    }

    /// Number of users; the server creates the first one when this is zero.
    pub async fn user_count(&self) -> Result<u64> {
        let count: i64 = with_pool!(self, pool => {
            sqlx::query_scalar("SELECT COUNT(*) FROM users").fetch_one(pool).await?
        });
        Ok(count.unsigned_abs())
    }

    pub async fn find_user_by_name(&self, name: &str) -> Result<Option<User>> {
        Ok(with_pool!(self, pool => {
            sqlx::query_as("SELECT id, name, created_at FROM users WHERE name = $1")
                .bind(name)
                .fetch_optional(pool)
                .await?
        }))
    }

    /// The user an API or session token belongs to; `None` for unknown tokens and for login
    /// tokens, which must be exchanged with [`Store::consume_login_token`] first.
    pub async fn authenticate(&self, token: &str) -> Result<Option<User>> {
        let token_hash = hash_token(token);
        Ok(with_pool!(self, pool => {
            sqlx::query_as(
                "SELECT u.id, u.name, u.created_at FROM api_tokens t \
                 JOIN users u ON u.id = t.user_id \
                 WHERE t.token_hash = $1 AND t.kind IN ($2, $3)",
            )
            .bind(&token_hash)
            .bind(KIND_API)
            .bind(KIND_SESSION)
            .fetch_optional(pool)
            .await?
        }))
    }

    /// Creates a one-time login token for the user (for a login URL); `None` when no such
    /// user exists.
    pub async fn create_login_token(&self, user_id: &str) -> Result<Option<String>> {
        let (token, token_hash) = new_token();
        let inserted = with_pool!(self, pool => {
            // Inserting through a SELECT makes an unknown user insert nothing instead of
            // tripping the foreign key.
            sqlx::query(
                "INSERT INTO api_tokens (token_hash, user_id, kind, created_at) \
                 SELECT $1, id, $2, $3 FROM users WHERE id = $4",
            )
            .bind(&token_hash)
            .bind(KIND_LOGIN_ONCE)
            .bind(now())
            .bind(user_id)
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok((inserted > 0).then_some(token))
    }

    /// Exchanges a login token for a new session token. The login token is deleted in the
    /// same transaction, so of two concurrent calls with one token only one succeeds; later
    /// calls answer `None`.
    pub async fn consume_login_token(&self, token: &str) -> Result<Option<(User, String)>> {
        let login_hash = hash_token(token);
        let (session, session_hash) = new_token();
        with_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            let user_id: Option<String> = sqlx::query_scalar(
                "DELETE FROM api_tokens WHERE token_hash = $1 AND kind = $2 RETURNING user_id",
            )
            .bind(&login_hash)
            .bind(KIND_LOGIN_ONCE)
            .fetch_optional(&mut *tx)
            .await?;
            let Some(user_id) = user_id else {
                return Ok(None);
            };
            sqlx::query(
                "INSERT INTO api_tokens (token_hash, user_id, kind, created_at) \
                 VALUES ($1, $2, $3, $4)",
            )
            .bind(&session_hash)
            .bind(&user_id)
            .bind(KIND_SESSION)
            .bind(now())
            .execute(&mut *tx)
            .await?;
            let user: User = sqlx::query_as("SELECT id, name, created_at FROM users WHERE id = $1")
                .bind(&user_id)
                .fetch_one(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(Some((user, session)))
        })
    }
}

/// Names appear in the CLI and in the UI, so they are kept short and free of whitespace
/// and control characters.
fn validate_user_name(name: &str) -> Result<()> {
    let reason = if name.is_empty() {
        "it is empty"
    } else if name.chars().count() > MAX_USER_NAME_CHARS {
        "it is longer than 64 characters"
    } else if name.chars().any(|c| c.is_whitespace() || c.is_control()) {
        "it contains whitespace or control characters"
    } else {
        return Ok(());
    };
    Err(Error::Invalid {
        field: "user name",
        reason: format!("{name:?}: {reason}"),
    })
}

/// A fresh token (256 random bits, hex) and its hash. `rand::rng()` is a CSPRNG seeded from
/// the operating system.
fn new_token() -> (String, String) {
    let mut bytes = [0u8; 32];
    rand::rng().fill(&mut bytes);
    let token = hex(&bytes);
    let hash = hash_token(&token);
    (token, hash)
}

/// A plain SHA-256 suffices, without salt or stretching: tokens are 256 random bits, not
/// guessable passwords, and an unsalted hash can be looked up directly.
fn hash_token(token: &str) -> String {
    hex(&Sha256::digest(token.as_bytes()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_and_hashed() {
        let (token, hash) = new_token();
        let (other, _) = new_token();
        assert_eq!(token.len(), 64);
        assert_ne!(token, other);
        assert_eq!(hash, hash_token(&token));
        assert_ne!(hash, token);
        // SHA-256("abc"), from FIPS 180-2.
        assert_eq!(
            hash_token("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn user_names_are_validated() {
        assert!(validate_user_name("alice").is_ok());
        assert!(validate_user_name("").is_err());
        assert!(validate_user_name("al ice").is_err());
        assert!(validate_user_name(&"a".repeat(65)).is_err());
    }
}

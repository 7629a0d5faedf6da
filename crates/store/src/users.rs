//! Users and the bearer tokens that identify them: API tokens (no expiry), browser sessions
//! (at most [`MAX_SESSION_TTL`]) and one-time login links ([`LOGIN_LINK_TTL`]).

use chrono::{DateTime, Duration, Utc};
use rand::Rng;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::is_unique_violation;
use crate::{Error, Result, Store, UnknownValue, User, new_id, now};

/// Kinds of rows in `api_tokens`. API and session tokens authenticate requests; a login token
/// only buys one session token.
const KIND_API: &str = "api";
const KIND_LOGIN_ONCE: &str = "login-once";
const KIND_SESSION: &str = "session";

const MAX_USER_NAME_CHARS: usize = 64;

/// The longest a browser session lives.
pub const MAX_SESSION_TTL: Duration = Duration::days(30);
/// How long a login link (`/login?token=…`) can be used (once).
pub const LOGIN_LINK_TTL: Duration = Duration::minutes(15);
/// `last_used_at` is written at most this often per token, so authenticating stays a read.
const LAST_USED_RESOLUTION: Duration = Duration::minutes(1);

const TOKEN_COLUMNS: &str = "id, kind, user_id, created_at, expires_at, last_used_at";

/// What a token is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub enum TokenKind {
    /// For scripts and `forgeai run`: sent as `Authorization: Bearer`; never expires.
    #[serde(rename = "api")]
    Api,
    /// A browser session (the cookie); expires.
    #[serde(rename = "session")]
    Session,
    /// A one-time login link not used yet; expires.
    #[serde(rename = "login-once")]
    LoginOnce,
}

impl TokenKind {
    fn as_str(self) -> &'static str {
        match self {
            TokenKind::Api => KIND_API,
            TokenKind::Session => KIND_SESSION,
            TokenKind::LoginOnce => KIND_LOGIN_ONCE,
        }
    }
}

impl TryFrom<String> for TokenKind {
    type Error = UnknownValue;

    fn try_from(value: String) -> Result<Self, UnknownValue> {
        match value.as_str() {
            KIND_API => Ok(TokenKind::Api),
            KIND_SESSION => Ok(TokenKind::Session),
            KIND_LOGIN_ONCE => Ok(TokenKind::LoginOnce),
            _ => Err(UnknownValue::new("token kind", value)),
        }
    }
}

/// A token as its owner may see it: never its secret nor the secret's hash.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TokenInfo {
    pub id: String,
    #[sqlx(try_from = "String")]
    pub kind: TokenKind,
    #[serde(skip)]
    pub user_id: String,
    pub created_at: DateTime<Utc>,
    /// `null` for API tokens, which last until revoked.
    pub expires_at: Option<DateTime<Utc>>,
    /// When it last authenticated a request (to the minute); `null` if never.
    pub last_used_at: Option<DateTime<Utc>>,
}

impl TokenInfo {
    /// Whether the token is still within its lifetime at `at`.
    pub fn is_live(&self, at: DateTime<Utc>) -> bool {
        self.expires_at.is_none_or(|expires| expires > at)
    }
}

/// A new browser session: its user, its row and its secret (the cookie's value), which the
/// store does not keep.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewSession {
    pub user: User,
    pub token: TokenInfo,
    pub secret: String,
}

/// The columns of a token joined with its user, as [`Store::authenticate_token`] reads them.
#[derive(sqlx::FromRow)]
struct AuthRow {
    user_id: String,
    user_name: String,
    user_created_at: DateTime<Utc>,
    #[sqlx(flatten)]
    token: TokenInfo,
}

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
                "INSERT INTO api_tokens (id, token_hash, user_id, kind, created_at) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(new_id())
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

    /// The user an API or session token belongs to; `None` for unknown, expired and revoked
    /// tokens and for login tokens, which must be exchanged with
    /// [`Store::consume_login_token`] first.
    pub async fn authenticate(&self, token: &str) -> Result<Option<User>> {
        Ok(self.authenticate_token(token).await?.map(|(user, _)| user))
    }

    /// [`Store::authenticate`] with the token's row (which kind it is, when it expires).
    pub async fn authenticate_token(&self, token: &str) -> Result<Option<(User, TokenInfo)>> {
        let token_hash = hash_token(token);
        let row: Option<AuthRow> = with_pool!(self, pool => {
            sqlx::query_as(
                "SELECT u.id AS user_id, u.name AS user_name, u.created_at AS user_created_at, \
                 t.id, t.kind, t.created_at, t.expires_at, t.last_used_at FROM api_tokens t \
                 JOIN users u ON u.id = t.user_id \
                 WHERE t.token_hash = $1 AND t.kind IN ($2, $3)",
            )
            .bind(&token_hash)
            .bind(KIND_API)
            .bind(KIND_SESSION)
            .fetch_optional(pool)
            .await?
        });
        let Some(row) = row else { return Ok(None) };
        let at = now();
        if !row.token.is_live(at) {
            return Ok(None);
        }
        let mut token = row.token;
        if token.last_used_at.is_none_or(|used| at - used >= LAST_USED_RESOLUTION) {
            // Bookkeeping only: a failed write (say, a full disk) must not refuse the caller.
            let touched: Result<()> = async {
                with_pool!(self, pool => {
                    sqlx::query("UPDATE api_tokens SET last_used_at = $1 WHERE id = $2")
                        .bind(at)
                        .bind(&token.id)
                        .execute(pool)
                        .await?;
                });
                Ok(())
            }
            .await;
            if touched.is_ok() {
                token.last_used_at = Some(at);
            }
        }
        let user = User {
            id: row.user_id,
            name: row.user_name,
            created_at: row.user_created_at,
        };
        Ok(Some((user, token)))
    }

    /// Whether the user's API or session token `token_id` still exists and has not expired
    /// (what a preview cookie minted through that token relies on).
    pub async fn token_is_live(&self, user_id: &str, token_id: &str) -> Result<bool> {
        let sql = format!("SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE id = $1 AND user_id = $2 AND kind IN ($3, $4)");
        let token: Option<TokenInfo> = with_pool!(self, pool => {
            sqlx::query_as(&sql)
                .bind(token_id)
                .bind(user_id)
                .bind(KIND_API)
                .bind(KIND_SESSION)
                .fetch_optional(pool)
                .await?
        });
        Ok(token.is_some_and(|token| token.is_live(now())))
    }

    /// Creates a browser session for the user, living `ttl` (at most [`MAX_SESSION_TTL`]);
    /// `None` when no such user exists.
    pub async fn create_session(&self, user_id: &str, ttl: Duration) -> Result<Option<(TokenInfo, String)>> {
        self.insert_token(user_id, TokenKind::Session, Some(ttl.min(MAX_SESSION_TTL)))
            .await
    }

    /// Creates another API token for the user (it never expires; revoke it to end it).
    pub async fn create_api_token(&self, user_id: &str) -> Result<Option<(TokenInfo, String)>> {
        self.insert_token(user_id, TokenKind::Api, None).await
    }

    /// Creates a one-time login token for the user (for a login URL), valid for
    /// [`LOGIN_LINK_TTL`]; `None` when no such user exists.
    pub async fn create_login_token(&self, user_id: &str) -> Result<Option<String>> {
        self.create_login_token_expiring(user_id, LOGIN_LINK_TTL).await
    }

    /// [`Store::create_login_token`] valid for `ttl` (at most [`LOGIN_LINK_TTL`]).
    pub async fn create_login_token_expiring(&self, user_id: &str, ttl: Duration) -> Result<Option<String>> {
        let created = self
            .insert_token(user_id, TokenKind::LoginOnce, Some(ttl.min(LOGIN_LINK_TTL)))
            .await?;
        Ok(created.map(|(_, secret)| secret))
    }

    async fn insert_token(
        &self,
        user_id: &str,
        kind: TokenKind,
        ttl: Option<Duration>,
    ) -> Result<Option<(TokenInfo, String)>> {
        let (secret, token_hash) = new_token();
        let created_at = now();
        let info = TokenInfo {
            id: new_id(),
            kind,
            user_id: user_id.to_owned(),
            created_at,
            expires_at: ttl.map(|ttl| created_at + ttl),
            last_used_at: None,
        };
        let inserted = with_pool!(self, pool => {
            // Expired tokens are of no use: each new one clears its user's (the table does not
            // grow with every `forgeai run` or sign-in).
            sqlx::query("DELETE FROM api_tokens WHERE user_id = $1 AND expires_at IS NOT NULL AND expires_at <= $2")
                .bind(user_id)
                .bind(created_at)
                .execute(pool)
                .await?;
            // Inserting through a SELECT makes an unknown user insert nothing instead of
            // tripping the foreign key.
            sqlx::query(
                "INSERT INTO api_tokens (id, token_hash, user_id, kind, created_at, expires_at) \
                 SELECT $1, $2, id, $3, $4, $5 FROM users WHERE id = $6",
            )
            .bind(&info.id)
            .bind(&token_hash)
            .bind(kind.as_str())
            .bind(info.created_at)
            .bind(info.expires_at)
            .bind(user_id)
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok((inserted > 0).then_some((info, secret)))
    }

    /// Exchanges a login token for a new session token living `session_ttl` (at most
    /// [`MAX_SESSION_TTL`]). The login token is deleted in the same transaction, so of two
    /// concurrent calls with one token only one succeeds; later calls, and calls with an
    /// expired login token, answer `None`.
    pub async fn consume_login_token(&self, token: &str, session_ttl: Duration) -> Result<Option<NewSession>> {
        let login_hash = hash_token(token);
        let (secret, session_hash) = new_token();
        let created_at = now();
        let session = TokenInfo {
            id: new_id(),
            kind: TokenKind::Session,
            user_id: String::new(),
            created_at,
            expires_at: Some(created_at + session_ttl.min(MAX_SESSION_TTL)),
            last_used_at: None,
        };
        with_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            let login: Option<(String, Option<DateTime<Utc>>)> = sqlx::query_as(
                "DELETE FROM api_tokens WHERE token_hash = $1 AND kind = $2 RETURNING user_id, expires_at",
            )
            .bind(&login_hash)
            .bind(KIND_LOGIN_ONCE)
            .fetch_optional(&mut *tx)
            .await?;
            let Some((user_id, expires_at)) = login else {
                return Ok(None);
            };
            if expires_at.is_none_or(|expires| expires <= created_at) {
                // An expired link is used up too.
                tx.commit().await?;
                return Ok(None);
            }
            let session = TokenInfo { user_id, ..session };
            sqlx::query(
                "INSERT INTO api_tokens (id, token_hash, user_id, kind, created_at, expires_at) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(&session.id)
            .bind(&session_hash)
            .bind(&session.user_id)
            .bind(KIND_SESSION)
            .bind(session.created_at)
            .bind(session.expires_at)
            .execute(&mut *tx)
            .await?;
            let user: User = sqlx::query_as("SELECT id, name, created_at FROM users WHERE id = $1")
                .bind(&session.user_id)
                .fetch_one(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(Some(NewSession { user, token: session, secret }))
        })
    }

    /// The user's live tokens (API tokens, sessions, unused login links), oldest first.
    /// Expired ones are deleted on the way.
    pub async fn list_tokens(&self, user_id: &str) -> Result<Vec<TokenInfo>> {
        let at = now();
        let sql = format!("SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE user_id = $1 ORDER BY created_at, id");
        let tokens: Vec<TokenInfo> = with_pool!(self, pool => {
            sqlx::query("DELETE FROM api_tokens WHERE user_id = $1 AND expires_at IS NOT NULL AND expires_at <= $2")
                .bind(user_id)
                .bind(at)
                .execute(pool)
                .await?;
            sqlx::query_as(&sql).bind(user_id).fetch_all(pool).await?
        });
        Ok(tokens.into_iter().filter(|token| token.is_live(at)).collect())
    }

    /// Revokes one of the user's tokens; `false` when the user has no such token.
    pub async fn revoke_token(&self, user_id: &str, token_id: &str) -> Result<bool> {
        let deleted = with_pool!(self, pool => {
            sqlx::query("DELETE FROM api_tokens WHERE id = $1 AND user_id = $2")
                .bind(token_id)
                .bind(user_id)
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(deleted > 0)
    }

    /// Ends the session whose secret (cookie value) is `secret`; `false` when there is none.
    /// Only sessions: an API token sent here stays valid.
    pub async fn revoke_session(&self, secret: &str) -> Result<bool> {
        let deleted = with_pool!(self, pool => {
            sqlx::query("DELETE FROM api_tokens WHERE token_hash = $1 AND kind = $2")
                .bind(hash_token(secret))
                .bind(KIND_SESSION)
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(deleted > 0)
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

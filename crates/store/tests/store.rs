//! Every scenario runs twice: on SQLite in a temporary directory and on PostgreSQL (a private
//! throwaway server, or a database on the server named by `FORGEAI_TEST_DATABASE_URL`).

use std::collections::BTreeMap;

use chrono::Duration;
use forgeai_store::testing::TestPostgres;
use forgeai_store::{
    AssistantReply, DEFAULT_PROJECT_NAME, Error, LOGIN_LINK_TTL, MAX_SESSION_TTL, MessageRole, MessageType,
    NewFragment, SandboxOwner, Store, TokenKind,
};
use sqlx::{Connection, PgConnection, SqliteConnection};
use tempfile::TempDir;

struct Db {
    store: Store,
    url: String,
    _dir: Option<TempDir>,
    _postgres: Option<TestPostgres>,
}

impl Db {
    async fn sqlite() -> Db {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_default(dir.path()).await.unwrap();
        Db {
            store,
            url: format!("sqlite://{}/forgeai.db", dir.path().display()),
            _dir: Some(dir),
            _postgres: None,
        }
    }

    async fn postgres() -> Db {
        let postgres = TestPostgres::start().await;
        let store = Store::connect(postgres.url()).await.unwrap();
        Db {
            store,
            url: postgres.url().to_owned(),
            _dir: None,
            _postgres: Some(postgres),
        }
    }

    /// Rows in `table`, counted behind the store's back.
    async fn count(&self, table: &str) -> i64 {
        let sql = format!("SELECT COUNT(*) FROM {table}");
        if self.url.starts_with("postgres") {
            let mut conn = PgConnection::connect(&self.url).await.unwrap();
            sqlx::query_scalar(&sql).fetch_one(&mut conn).await.unwrap()
        } else {
            let mut conn = SqliteConnection::connect(&self.url).await.unwrap();
            sqlx::query_scalar(&sql).fetch_one(&mut conn).await.unwrap()
        }
    }

    async fn token_hashes(&self) -> Vec<String> {
        let sql = "SELECT token_hash FROM api_tokens";
        if self.url.starts_with("postgres") {
            let mut conn = PgConnection::connect(&self.url).await.unwrap();
            sqlx::query_scalar(sql).fetch_all(&mut conn).await.unwrap()
        } else {
            let mut conn = SqliteConnection::connect(&self.url).await.unwrap();
            sqlx::query_scalar(sql).fetch_all(&mut conn).await.unwrap()
        }
    }
}

macro_rules! on_both_backends {
    ($($scenario:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $scenario() {
                    super::$scenario(&super::Db::sqlite().await).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $scenario() {
                    super::$scenario(&super::Db::postgres().await).await;
                }
            )*
        }
    };
}

on_both_backends!(
    users_and_api_tokens,
    login_token_is_one_time,
    sessions_expire_and_tokens_are_listed_and_revoked,
    login_links_expire,
    preview_access_lookups,
    projects_ordering_renaming_and_sandbox,
    messages_order_and_history,
    fragments_and_file_merge,
    other_users_see_nothing,
    delete_cascades,
    failed_writes_leave_nothing,
    a_reply_with_a_known_id_is_stored_once,
    app_errors_are_kept_with_the_fragment,
    fragments_are_listed_without_their_files,
);

/// A chat listing measures the files instead of carrying them; the files come one fragment at
/// a time, to its owner only; a merge past the size limit stores nothing.
async fn fragments_are_listed_without_their_files(db: &Db) {
    let store = &db.store;
    let (alice, _) = store.create_user("alice").await.unwrap();
    let (bob, _) = store.create_user("bob").await.unwrap();
    let (project, _) = store.create_project(&alice.id, "Build", None).await.unwrap();
    let big = "b".repeat(3 * 1024 * 1024);
    let fragment = store
        .add_assistant_message(
            &alice.id,
            &project.id,
            result("Big", "sbx", &[("app/page.tsx", "é✓"), ("public/big.txt", &big)]),
        )
        .await
        .unwrap()
        .unwrap()
        .fragment
        .unwrap();
    let listed = store.list_messages(&alice.id, &project.id).await.unwrap().unwrap();
    let summary = listed[1].fragment.clone().unwrap();
    assert_eq!(summary, fragment.summary());
    assert_eq!(
        summary.file_sizes,
        BTreeMap::from([
            ("app/page.tsx".to_owned(), 5),
            ("public/big.txt".to_owned(), big.len() as u64)
        ]),
        "sizes are in bytes of UTF-8"
    );
    assert_eq!(summary.size, (12 + 5 + 14 + big.len()) as u64);
    let json = serde_json::to_string(&listed).unwrap();
    assert!(json.len() < 4096, "the listing has {} bytes", json.len());
    assert!(!json.contains("bbbb"));

    assert_eq!(
        store.get_fragment(&alice.id, &fragment.id).await.unwrap(),
        Some(fragment.clone())
    );
    assert_eq!(store.get_fragment(&bob.id, &fragment.id).await.unwrap(), None);
    assert_eq!(store.get_fragment(&alice.id, "no-such-fragment").await.unwrap(), None);

    // The limit counts the merged files: 3 MiB are there, 2 MiB more would pass 4 MiB.
    let limit = 4 * 1024 * 1024;
    let more = files(&[("public/more.txt", &"m".repeat(2 * 1024 * 1024))]);
    let refused = store
        .merge_fragment_files_within(&alice.id, &fragment.id, &more, limit)
        .await
        .unwrap_err();
    assert!(
        matches!(refused, Error::FragmentTooLarge { limit: 4194304, .. }),
        "{refused}"
    );
    assert_eq!(
        store.get_fragment(&alice.id, &fragment.id).await.unwrap(),
        Some(fragment.clone())
    );
    let small = files(&[("app/page.tsx", "v2")]);
    let update = store
        .merge_fragment_files_within(&alice.id, &fragment.id, &small, limit)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(update.fragment.files["app/page.tsx"], "v2");
}

fn files(entries: &[(&str, &str)]) -> BTreeMap<String, String> {
    entries
        .iter()
        .map(|(path, content)| (path.to_string(), content.to_string()))
        .collect()
}

fn result(title: &str, sandbox_id: &str, entries: &[(&str, &str)]) -> AssistantReply {
    AssistantReply::Result {
        content: format!("Built {title}"),
        fragment: NewFragment {
            sandbox_url: format!("http://3000-{sandbox_id}.localhost:8080/"),
            sandbox_id: Some(sandbox_id.to_owned()),
            title: title.to_owned(),
            files: files(entries),
            image_url: None,
            design_spec: None,
            app_errors: None,
        },
    }
}

async fn a_reply_with_a_known_id_is_stored_once(db: &Db) {
    let store = &db.store;
    let (alice, _) = store.create_user("alice").await.unwrap();
    let (bob, _) = store.create_user("bob").await.unwrap();
    let (project, _) = store.create_project(&alice.id, "Build", None).await.unwrap();
    let id = uuid::Uuid::now_v7().to_string();
    let first = store
        .add_assistant_message_once(&alice.id, &project.id, &id, result("Once", "sbx", &[("a", "1")]))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.message.id, id);
    let again = store
        .add_assistant_message_once(&alice.id, &project.id, &id, result("Twice", "sbx", &[("a", "2")]))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(again, first, "the repeat returns what the first call stored");
    assert_eq!(db.count("messages").await, 2);
    assert_eq!(db.count("fragments").await, 1);
    let foreign = store
        .add_assistant_message_once(&bob.id, &project.id, &id, result("Bob", "sbx", &[]))
        .await
        .unwrap();
    assert_eq!(foreign, None, "another user's project is not found");
}

async fn app_errors_are_kept_with_the_fragment(db: &Db) {
    let store = &db.store;
    let (alice, _) = store.create_user("alice").await.unwrap();
    let (project, _) = store.create_project(&alice.id, "Build", None).await.unwrap();
    let mut reply = result("Broken", "sbx", &[("app/page.tsx", "x")]);
    if let AssistantReply::Result { fragment, .. } = &mut reply {
        fragment.app_errors = Some("GET / answered HTTP 500: Module not found".into());
    }
    let id = uuid::Uuid::now_v7().to_string();
    let saved = store
        .add_assistant_message_once(&alice.id, &project.id, &id, reply)
        .await
        .unwrap()
        .unwrap();
    let fragment = saved.fragment.expect("a fragment");
    let expected = Some("GET / answered HTTP 500: Module not found".to_owned());
    assert_eq!(fragment.app_errors, expected);
    let stored = store.get_fragment(&alice.id, &fragment.id).await.unwrap().unwrap();
    assert_eq!(stored.app_errors, expected);
    let listed = store.list_messages(&alice.id, &project.id).await.unwrap().unwrap();
    let summary = listed.iter().find_map(|message| message.fragment.clone()).unwrap();
    assert_eq!(summary.app_errors, expected, "the chat listing says the app has errors");
}

async fn users_and_api_tokens(db: &Db) {
    let store = &db.store;
    assert_eq!(store.user_count().await.unwrap(), 0);
    let (alice, token) = store.create_user("alice").await.unwrap();
    assert_eq!(store.user_count().await.unwrap(), 1);
    assert_eq!(store.authenticate(&token).await.unwrap(), Some(alice.clone()));
    assert_eq!(store.authenticate("not-a-token").await.unwrap(), None);
    assert_eq!(store.authenticate("").await.unwrap(), None);
    assert_eq!(store.find_user_by_name("alice").await.unwrap(), Some(alice.clone()));
    assert_eq!(store.find_user_by_name("bob").await.unwrap(), None);

    let duplicate = store.create_user("alice").await.unwrap_err();
    assert!(matches!(&duplicate, Error::UserExists(name) if name == "alice"));
    assert_eq!(duplicate.to_string(), "a user named \"alice\" already exists");
    assert!(matches!(store.create_user("al ice").await, Err(Error::Invalid { .. })));
    assert_eq!(store.user_count().await.unwrap(), 1);

    let (bob, bob_token) = store.create_user("bob").await.unwrap();
    assert_ne!(token, bob_token);
    assert_eq!(store.authenticate(&bob_token).await.unwrap(), Some(bob));

    let stored = db.token_hashes().await;
    assert_eq!(stored.len(), 2);
    assert!(!stored.contains(&token) && !stored.contains(&bob_token));
}

async fn login_token_is_one_time(db: &Db) {
    let store = &db.store;
    let (alice, _) = store.create_user("alice").await.unwrap();
    let login = store.create_login_token(&alice.id).await.unwrap().unwrap();
    // A login token is not a credential by itself.
    assert_eq!(store.authenticate(&login).await.unwrap(), None);

    let new_session = store
        .consume_login_token(&login, MAX_SESSION_TTL)
        .await
        .unwrap()
        .unwrap();
    let (user, session) = (new_session.user, new_session.secret);
    assert_eq!(user, alice);
    assert_ne!(session, login);
    assert_eq!(store.authenticate(&session).await.unwrap(), Some(alice.clone()));
    assert_eq!(store.consume_login_token(&login, MAX_SESSION_TTL).await.unwrap(), None);
    // Nor can a session or API token be used as a login token.
    assert_eq!(
        store.consume_login_token(&session, MAX_SESSION_TTL).await.unwrap(),
        None
    );
    assert_eq!(store.create_login_token("no-such-user").await.unwrap(), None);

    let contested = store.create_login_token(&alice.id).await.unwrap().unwrap();
    let (first, second) = tokio::join!(
        store.consume_login_token(&contested, MAX_SESSION_TTL),
        store.consume_login_token(&contested, MAX_SESSION_TTL)
    );
    let winners = [first.unwrap(), second.unwrap()].into_iter().flatten().count();
    assert_eq!(winners, 1);
}

async fn sessions_expire_and_tokens_are_listed_and_revoked(db: &Db) {
    let store = &db.store;
    let (alice, api_token) = store.create_user("alice").await.unwrap();
    let (bob, bob_token) = store.create_user("bob").await.unwrap();
    let before = chrono::Utc::now();

    let (session, secret) = store
        .create_session(&alice.id, Duration::hours(1))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(session.kind, TokenKind::Session);
    assert_ne!(secret, api_token);
    let expires = session.expires_at.unwrap();
    assert!(expires > before + Duration::minutes(59) && expires <= chrono::Utc::now() + Duration::hours(1));
    let (user, info) = store.authenticate_token(&secret).await.unwrap().unwrap();
    assert_eq!(user, alice);
    assert_eq!(info.id, session.id);
    assert!(info.last_used_at.is_some(), "authenticating notes the use");
    assert!(store.token_is_live(&alice.id, &session.id).await.unwrap());
    assert!(!store.token_is_live(&bob.id, &session.id).await.unwrap());

    // A session never lives longer than 30 days, whatever is asked.
    let (long, _) = store
        .create_session(&alice.id, Duration::days(400))
        .await
        .unwrap()
        .unwrap();
    assert!(long.expires_at.unwrap() <= chrono::Utc::now() + MAX_SESSION_TTL);
    assert!(long.expires_at.unwrap() > chrono::Utc::now() + MAX_SESSION_TTL - Duration::minutes(1));

    // An expired session authenticates nothing and is not listed.
    let (expired, expired_secret) = store
        .create_session(&alice.id, Duration::seconds(-1))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(store.authenticate(&expired_secret).await.unwrap(), None);
    assert!(!store.token_is_live(&alice.id, &expired.id).await.unwrap());
    let rows = db.count("api_tokens").await;
    // The next token made for Alice clears her expired ones (Bob's tokens stay).
    let (_, next) = store
        .create_session(&alice.id, Duration::hours(1))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(db.count("api_tokens").await, rows, "one made, the expired one cleared");
    let (_, extra) = store
        .create_session(&alice.id, Duration::hours(1))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(db.count("api_tokens").await, rows + 1);
    assert!(store.revoke_session(&next).await.unwrap());
    assert!(store.revoke_session(&extra).await.unwrap());
    assert_eq!(
        store.create_session("no-such-user", Duration::hours(1)).await.unwrap(),
        None
    );

    let listed = store.list_tokens(&alice.id).await.unwrap();
    let kinds: Vec<TokenKind> = listed.iter().map(|token| token.kind).collect();
    assert_eq!(kinds, [TokenKind::Api, TokenKind::Session, TokenKind::Session]);
    assert_eq!(listed[1].id, session.id);
    assert_eq!(listed[0].expires_at, None, "API tokens do not expire");
    assert!(listed.iter().all(|token| token.id != expired.id));
    let json = serde_json::to_string(&listed).unwrap();
    assert!(
        !json.contains(&api_token) && !json.contains(&secret),
        "no secret is shown"
    );
    assert!(!json.contains("userId"), "{json}");
    for hash in db.token_hashes().await {
        assert!(!json.contains(&hash), "no hash is shown");
    }

    // Revoking: only one's own tokens; a revoked token authenticates nothing.
    assert!(!store.revoke_token(&bob.id, &session.id).await.unwrap());
    assert!(store.revoke_token(&alice.id, &session.id).await.unwrap());
    assert!(!store.revoke_token(&alice.id, &session.id).await.unwrap());
    assert_eq!(store.authenticate(&secret).await.unwrap(), None);
    let bob_api = store.list_tokens(&bob.id).await.unwrap()[0].id.clone();
    assert!(store.revoke_token(&bob.id, &bob_api).await.unwrap());
    assert_eq!(store.authenticate(&bob_token).await.unwrap(), None);

    // Signing out ends a session by its secret, never an API token.
    let (_, other) = store
        .create_session(&alice.id, Duration::hours(1))
        .await
        .unwrap()
        .unwrap();
    assert!(!store.revoke_session(&api_token).await.unwrap());
    assert_eq!(store.authenticate(&api_token).await.unwrap(), Some(alice.clone()));
    assert!(store.revoke_session(&other).await.unwrap());
    assert!(!store.revoke_session(&other).await.unwrap());
    assert_eq!(store.authenticate(&other).await.unwrap(), None);

    // Another API token works like the first and can be revoked on its own.
    let (second, second_secret) = store.create_api_token(&alice.id).await.unwrap().unwrap();
    assert_eq!(second.kind, TokenKind::Api);
    assert_eq!(store.authenticate(&second_secret).await.unwrap(), Some(alice.clone()));
    assert!(store.revoke_token(&alice.id, &second.id).await.unwrap());
    assert_eq!(store.authenticate(&second_secret).await.unwrap(), None);
    assert_eq!(store.authenticate(&api_token).await.unwrap(), Some(alice));
}

async fn login_links_expire(db: &Db) {
    let store = &db.store;
    let (alice, _) = store.create_user("alice").await.unwrap();
    let link = store.create_login_token(&alice.id).await.unwrap().unwrap();
    let listed = store.list_tokens(&alice.id).await.unwrap();
    let pending = listed.iter().find(|token| token.kind == TokenKind::LoginOnce).unwrap();
    let ttl = pending.expires_at.unwrap() - pending.created_at;
    assert_eq!(ttl, LOGIN_LINK_TTL, "a login link lives 15 minutes");

    let expired = store
        .create_login_token_expiring(&alice.id, Duration::seconds(-1))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        store.consume_login_token(&expired, MAX_SESSION_TTL).await.unwrap(),
        None
    );
    // A longer life than 15 minutes is not granted.
    store
        .create_login_token_expiring(&alice.id, Duration::days(1))
        .await
        .unwrap()
        .unwrap();
    let longest = store
        .list_tokens(&alice.id)
        .await
        .unwrap()
        .into_iter()
        .filter_map(|token| token.expires_at)
        .max()
        .unwrap();
    assert!(longest <= chrono::Utc::now() + LOGIN_LINK_TTL);

    let session = store
        .consume_login_token(&link, Duration::hours(2))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(session.user, alice);
    assert_eq!(session.token.kind, TokenKind::Session);
    assert_eq!(
        session.token.expires_at.unwrap() - session.token.created_at,
        Duration::hours(2)
    );
    assert_eq!(store.consume_login_token(&link, MAX_SESSION_TTL).await.unwrap(), None);
}

async fn preview_access_lookups(db: &Db) {
    let store = &db.store;
    let (alice, _) = store.create_user("alice").await.unwrap();
    let (bob, _) = store.create_user("bob").await.unwrap();
    let (project, _) = store.create_project(&alice.id, "Build a page", None).await.unwrap();
    assert!(!project.public, "a preview is private until shared");
    assert_eq!(store.sandbox_owner("sbx1").await.unwrap(), None);
    assert!(
        store
            .set_project_sandbox(&alice.id, &project.id, Some("sbx1"))
            .await
            .unwrap()
    );
    let owner = store.sandbox_owner("sbx1").await.unwrap().unwrap();
    assert_eq!(
        owner,
        SandboxOwner {
            project_id: project.id.clone(),
            user_id: alice.id.clone(),
            public: false
        }
    );

    assert_eq!(
        store.set_project_public(&bob.id, &project.id, true).await.unwrap(),
        None
    );
    let shared = store
        .set_project_public(&alice.id, &project.id, true)
        .await
        .unwrap()
        .unwrap();
    assert!(shared.public);
    assert_eq!(shared.id, project.id);
    assert!(store.sandbox_owner("sbx1").await.unwrap().unwrap().public);
    assert!(store.get_project(&alice.id, &project.id).await.unwrap().unwrap().public);
    let unshared = store
        .set_project_public(&alice.id, &project.id, false)
        .await
        .unwrap()
        .unwrap();
    assert!(!unshared.public);
    // A sandbox the project moved away from serves no one.
    assert!(
        store
            .set_project_sandbox(&alice.id, &project.id, Some("sbx2"))
            .await
            .unwrap()
    );
    assert_eq!(store.sandbox_owner("sbx1").await.unwrap(), None);

    let key = store.server_secret("preview-grant").await.unwrap();
    assert_eq!(key.len(), 64);
    assert!(key.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(store.server_secret("preview-grant").await.unwrap(), key, "made once");
    assert_ne!(store.server_secret("other").await.unwrap(), key);
}

async fn projects_ordering_renaming_and_sandbox(db: &Db) {
    let store = &db.store;
    let (alice, _) = store.create_user("alice").await.unwrap();
    let (first, prompt) = store
        .create_project(&alice.id, "Build a todo app", Some("https://img.example/a.png"))
        .await
        .unwrap();
    assert_eq!(first.name, DEFAULT_PROJECT_NAME);
    assert!(first.name_is_default);
    assert_eq!(first.user_id, alice.id);
    assert_eq!(first.sandbox_id, None);
    assert_eq!(first.image_url.as_deref(), Some("https://img.example/a.png"));
    assert_eq!(prompt.project_id, first.id);
    assert_eq!(prompt.role, MessageRole::User);
    assert_eq!(prompt.kind, MessageType::Result);
    assert_eq!(prompt.content, "Build a todo app");
    assert_eq!(prompt.image_url, first.image_url);
    assert_eq!(
        store.get_project(&alice.id, &first.id).await.unwrap(),
        Some(first.clone())
    );

    let (second, _) = store.create_project(&alice.id, "A blog", None).await.unwrap();
    let ids = |projects: Vec<forgeai_store::Project>| -> Vec<String> { projects.into_iter().map(|p| p.id).collect() };
    assert_eq!(
        ids(store.list_projects(&alice.id).await.unwrap()),
        [second.id.clone(), first.id.clone()]
    );
    // A new prompt makes the project the most recently updated.
    store
        .add_user_message(&alice.id, &first.id, "Add a dark mode", None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        ids(store.list_projects(&alice.id).await.unwrap()),
        [first.id.clone(), second.id.clone()]
    );

    assert!(
        store
            .rename_project_if_default(&alice.id, &first.id, "  Todo App ")
            .await
            .unwrap()
    );
    assert!(
        !store
            .rename_project_if_default(&alice.id, &first.id, "Something else")
            .await
            .unwrap()
    );
    let renamed = store.get_project(&alice.id, &first.id).await.unwrap().unwrap();
    assert_eq!(renamed.name, "Todo App");
    assert!(!renamed.name_is_default);
    assert!(matches!(
        store.rename_project_if_default(&alice.id, &second.id, "   ").await,
        Err(Error::Invalid { .. })
    ));

    assert!(
        store
            .set_project_sandbox(&alice.id, &first.id, Some("sbx-1"))
            .await
            .unwrap()
    );
    let with_sandbox = store.get_project(&alice.id, &first.id).await.unwrap().unwrap();
    assert_eq!(with_sandbox.sandbox_id.as_deref(), Some("sbx-1"));
    assert!(store.set_project_sandbox(&alice.id, &first.id, None).await.unwrap());
    let without = store.get_project(&alice.id, &first.id).await.unwrap().unwrap();
    assert_eq!(without.sandbox_id, None);

    assert_eq!(store.get_project(&alice.id, "not-a-uuid").await.unwrap(), None);
    assert!(
        !store
            .set_project_sandbox(&alice.id, "not-a-uuid", Some("sbx"))
            .await
            .unwrap()
    );
}

async fn messages_order_and_history(db: &Db) {
    let store = &db.store;
    let (alice, _) = store.create_user("alice").await.unwrap();
    let (project, _) = store.create_project(&alice.id, "m0", None).await.unwrap();
    for i in 1..=7 {
        store
            .add_user_message(&alice.id, &project.id, &format!("m{i}"), None)
            .await
            .unwrap()
            .unwrap();
    }
    let all = store.list_messages(&alice.id, &project.id).await.unwrap().unwrap();
    let contents: Vec<&str> = all.iter().map(|m| m.message.content.as_str()).collect();
    assert_eq!(contents, ["m0", "m1", "m2", "m3", "m4", "m5", "m6", "m7"]);
    assert!(all.iter().all(|m| m.fragment.is_none()));

    let history =
        |messages: Vec<forgeai_store::Message>| -> Vec<String> { messages.into_iter().map(|m| m.content).collect() };
    let current = &all[7].message.id;
    assert_eq!(
        history(
            store
                .recent_messages(&alice.id, &project.id, Some(current), 6)
                .await
                .unwrap()
        ),
        ["m1", "m2", "m3", "m4", "m5", "m6"]
    );
    assert_eq!(
        history(store.recent_messages(&alice.id, &project.id, None, 3).await.unwrap()),
        ["m5", "m6", "m7"]
    );
    assert_eq!(
        history(
            store
                .recent_messages(&alice.id, &project.id, Some(&all[2].message.id), 6)
                .await
                .unwrap()
        ),
        ["m0", "m1"]
    );
    assert!(
        store
            .recent_messages(&alice.id, &project.id, Some(&all[0].message.id), 6)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .recent_messages(&alice.id, &project.id, Some("not-a-message"), 6)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(store.list_messages(&alice.id, "not-a-project").await.unwrap(), None);
}

async fn fragments_and_file_merge(db: &Db) {
    let store = &db.store;
    let (alice, _) = store.create_user("alice").await.unwrap();
    let (project, _) = store.create_project(&alice.id, "Build a todo app", None).await.unwrap();
    assert_eq!(store.latest_fragment(&alice.id, &project.id).await.unwrap(), None);
    store
        .set_project_sandbox(&alice.id, &project.id, Some("sbx-1"))
        .await
        .unwrap();

    let spec = serde_json::json!({"meta": {"title": "Todo", "mode": "light", "uncertainties": []}});
    let mut reply = result(
        "Todo app",
        "sbx-1",
        &[("app/page.tsx", "v1"), ("app/layout.tsx", "layout")],
    );
    if let AssistantReply::Result { fragment, .. } = &mut reply {
        fragment.image_url = Some("https://img.example/mock.png".to_owned());
        fragment.design_spec = Some(spec.clone());
    }
    let saved = store
        .add_assistant_message(&alice.id, &project.id, reply)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(saved.message.role, MessageRole::Assistant);
    assert_eq!(saved.message.kind, MessageType::Result);
    assert_eq!(saved.message.content, "Built Todo app");
    let first = saved.fragment.clone().unwrap();
    assert_eq!(first.message_id, saved.message.id);
    assert_eq!(first.design_spec, Some(spec));
    assert_eq!(
        store.latest_fragment(&alice.id, &project.id).await.unwrap(),
        Some(first.clone())
    );

    let failed = store
        .add_assistant_message(
            &alice.id,
            &project.id,
            AssistantReply::Error {
                content: "Something went wrong. Please try again.".to_owned(),
            },
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(failed.message.kind, MessageType::Error);
    assert_eq!(failed.fragment, None);
    // An ERROR leaves the latest fragment as it was.
    assert_eq!(
        store.latest_fragment(&alice.id, &project.id).await.unwrap(),
        Some(first.clone())
    );

    let second = store
        .add_assistant_message(
            &alice.id,
            &project.id,
            result("Todo v2", "sbx-1", &[("app/page.tsx", "v2")]),
        )
        .await
        .unwrap()
        .unwrap()
        .fragment
        .unwrap();
    assert_eq!(
        store.latest_fragment(&alice.id, &project.id).await.unwrap(),
        Some(second.clone())
    );

    let chat = store.list_messages(&alice.id, &project.id).await.unwrap().unwrap();
    let attached: Vec<Option<&str>> = chat
        .iter()
        .map(|m| m.fragment.as_ref().map(|f| f.title.as_str()))
        .collect();
    assert_eq!(attached, [None, Some("Todo app"), None, Some("Todo v2")]);
    assert_eq!(chat[1].fragment.as_ref(), Some(&first.summary()));

    store
        .set_project_sandbox(&alice.id, &project.id, Some("sbx-2"))
        .await
        .unwrap();
    let update = store
        .merge_fragment_files(
            &alice.id,
            &first.id,
            &files(&[("app/page.tsx", "v1.1"), ("lib/util.ts", "util")]),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        update.fragment.files,
        files(&[
            ("app/layout.tsx", "layout"),
            ("app/page.tsx", "v1.1"),
            ("lib/util.ts", "util")
        ])
    );
    // The files go to the sandbox the project uses now, not the one the fragment was built in.
    assert_eq!(update.project_sandbox_id.as_deref(), Some("sbx-2"));
    assert_eq!(update.fragment.sandbox_id.as_deref(), Some("sbx-1"));
    assert!(update.fragment.updated_at >= first.updated_at);
    assert_eq!(update.fragment.created_at, first.created_at);

    // Concurrent merges of different files both land.
    let (a_files, b_files) = (files(&[("a.ts", "a")]), files(&[("b.ts", "b")]));
    let (a, b) = tokio::join!(
        store.merge_fragment_files(&alice.id, &second.id, &a_files),
        store.merge_fragment_files(&alice.id, &second.id, &b_files)
    );
    a.unwrap().unwrap();
    b.unwrap().unwrap();
    let merged = store.latest_fragment(&alice.id, &project.id).await.unwrap().unwrap();
    assert_eq!(
        merged.files,
        files(&[("a.ts", "a"), ("app/page.tsx", "v2"), ("b.ts", "b")])
    );

    assert_eq!(
        store
            .merge_fragment_files(&alice.id, "no-such-fragment", &files(&[("x", "y")]))
            .await
            .unwrap(),
        None
    );
}

async fn other_users_see_nothing(db: &Db) {
    let store = &db.store;
    let (alice, _) = store.create_user("alice").await.unwrap();
    let (bob, _) = store.create_user("bob").await.unwrap();
    let (project, prompt) = store.create_project(&alice.id, "Alice's app", None).await.unwrap();
    store
        .set_project_sandbox(&alice.id, &project.id, Some("sbx-a"))
        .await
        .unwrap();
    let fragment = store
        .add_assistant_message(
            &alice.id,
            &project.id,
            result("Alice app", "sbx-a", &[("app/page.tsx", "alice")]),
        )
        .await
        .unwrap()
        .unwrap()
        .fragment
        .unwrap();
    let before = store.get_project(&alice.id, &project.id).await.unwrap().unwrap();

    assert_eq!(store.get_project(&bob.id, &project.id).await.unwrap(), None);
    assert!(store.list_projects(&bob.id).await.unwrap().is_empty());
    assert_eq!(store.list_messages(&bob.id, &project.id).await.unwrap(), None);
    assert!(
        store
            .recent_messages(&bob.id, &project.id, None, 6)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .recent_messages(&bob.id, &project.id, Some(&prompt.id), 6)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(store.latest_fragment(&bob.id, &project.id).await.unwrap(), None);
    assert!(!store.delete_project(&bob.id, &project.id).await.unwrap());
    assert!(
        !store
            .set_project_sandbox(&bob.id, &project.id, Some("sbx-b"))
            .await
            .unwrap()
    );
    assert!(
        !store
            .rename_project_if_default(&bob.id, &project.id, "Bob's now")
            .await
            .unwrap()
    );
    assert_eq!(
        store
            .add_user_message(&bob.id, &project.id, "hijack", None)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store
            .add_assistant_message(&bob.id, &project.id, result("Bob", "sbx-b", &[("x", "y")]))
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store
            .merge_fragment_files(&bob.id, &fragment.id, &files(&[("app/page.tsx", "bob")]))
            .await
            .unwrap(),
        None
    );

    // Nothing of Alice's changed.
    assert_eq!(store.get_project(&alice.id, &project.id).await.unwrap(), Some(before));
    assert_eq!(db.count("messages").await, 2);
    assert_eq!(db.count("fragments").await, 1);
    assert_eq!(
        store.latest_fragment(&alice.id, &project.id).await.unwrap(),
        Some(fragment)
    );
}

async fn delete_cascades(db: &Db) {
    let store = &db.store;
    let (alice, _) = store.create_user("alice").await.unwrap();
    let (doomed, _) = store.create_project(&alice.id, "Doomed", None).await.unwrap();
    let fragment = store
        .add_assistant_message(&alice.id, &doomed.id, result("Doomed", "sbx-1", &[("a", "b")]))
        .await
        .unwrap()
        .unwrap()
        .fragment
        .unwrap();
    let (kept, _) = store.create_project(&alice.id, "Kept", None).await.unwrap();
    store
        .add_assistant_message(&alice.id, &kept.id, result("Kept", "sbx-2", &[("c", "d")]))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(db.count("messages").await, 4);
    assert_eq!(db.count("fragments").await, 2);

    assert!(store.delete_project(&alice.id, &doomed.id).await.unwrap());
    assert!(!store.delete_project(&alice.id, &doomed.id).await.unwrap());
    assert_eq!(store.get_project(&alice.id, &doomed.id).await.unwrap(), None);
    assert_eq!(store.list_messages(&alice.id, &doomed.id).await.unwrap(), None);
    assert_eq!(
        store
            .merge_fragment_files(&alice.id, &fragment.id, &files(&[("x", "y")]))
            .await
            .unwrap(),
        None
    );
    assert_eq!(db.count("projects").await, 1);
    assert_eq!(db.count("messages").await, 2);
    assert_eq!(db.count("fragments").await, 1);
    assert_eq!(
        store.list_messages(&alice.id, &kept.id).await.unwrap().unwrap().len(),
        2
    );
}

async fn failed_writes_leave_nothing(db: &Db) {
    let store = &db.store;
    let (alice, _) = store.create_user("alice").await.unwrap();

    // The project row is written before the message is refused; the transaction undoes it.
    let refused = store.create_project(&alice.id, "", None).await.unwrap_err();
    assert!(
        matches!(&refused, Error::Rejected(reason) if reason.contains("message_content_not_empty")),
        "{refused}"
    );
    assert_eq!(db.count("projects").await, 0);
    assert_eq!(db.count("messages").await, 0);
    assert!(store.list_projects(&alice.id).await.unwrap().is_empty());

    assert!(matches!(
        store.create_project("no-such-user", "hello", None).await,
        Err(Error::Rejected(_))
    ));
    assert_eq!(db.count("projects").await, 0);

    let (project, _) = store.create_project(&alice.id, "hello", None).await.unwrap();
    let before = store.get_project(&alice.id, &project.id).await.unwrap().unwrap();
    // Both writes touch the project first; the refused message undoes that too.
    assert!(matches!(
        store.add_user_message(&alice.id, &project.id, "", None).await,
        Err(Error::Rejected(_))
    ));
    assert!(matches!(
        store
            .add_assistant_message(&alice.id, &project.id, AssistantReply::Error { content: String::new() })
            .await,
        Err(Error::Rejected(_))
    ));
    assert_eq!(store.get_project(&alice.id, &project.id).await.unwrap(), Some(before));
    assert_eq!(db.count("messages").await, 1);
}

#[tokio::test]
async fn sqlite_default_file_is_created_in_wal_mode_and_persists() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("nested").join("data");
    let store = Store::open_default(&data_dir).await.unwrap();
    store.ping().await.unwrap();
    let (alice, token) = store.create_user("alice").await.unwrap();
    store.close().await;

    let file = data_dir.join(forgeai_store::DEFAULT_DB_FILE);
    assert!(file.is_file());
    let mut conn = SqliteConnection::connect(&format!("sqlite://{}", file.display()))
        .await
        .unwrap();
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(mode, "wal");

    // Opening again runs the migrations again, which must be a no-op.
    let reopened = Store::open_default(&data_dir).await.unwrap();
    assert_eq!(reopened.authenticate(&token).await.unwrap(), Some(alice));
}

#[tokio::test]
async fn sqlite_in_memory_keeps_its_data_across_calls() {
    let store = Store::connect("sqlite::memory:").await.unwrap();
    let (alice, _) = store.create_user("alice").await.unwrap();
    let (project, _) = store.create_project(&alice.id, "hi", None).await.unwrap();
    let (a, b) = tokio::join!(
        store.add_user_message(&alice.id, &project.id, "one", None),
        store.add_user_message(&alice.id, &project.id, "two", None)
    );
    a.unwrap().unwrap();
    b.unwrap().unwrap();
    let messages = store.list_messages(&alice.id, &project.id).await.unwrap().unwrap();
    assert_eq!(messages.len(), 3);
}

#[tokio::test]
async fn postgres_connection_is_checked_at_connect() {
    let postgres = TestPostgres::start().await;
    let store = Store::connect(postgres.url()).await.unwrap();
    store.ping().await.unwrap();
    // A second store on the same database finds its schema up to date.
    let again = Store::connect(postgres.url()).await.unwrap();
    assert_eq!(again.user_count().await.unwrap(), 0);
}

#[tokio::test]
async fn bad_urls_are_explained_without_passwords() {
    let unsupported = Store::connect("mysql://root:hunter2@localhost/forge")
        .await
        .unwrap_err();
    assert!(matches!(unsupported, Error::UnsupportedUrl(_)));
    let message = unsupported.to_string();
    assert!(
        message.contains("postgres://") && !message.contains("hunter2"),
        "{message}"
    );

    let unparsable = Store::connect("postgres://root:hunter2@localhost:notaport/forge")
        .await
        .unwrap_err();
    assert!(matches!(unparsable, Error::Connect { .. }));
    assert!(!unparsable.to_string().contains("hunter2"), "{unparsable}");

    // A server that is not there is reported at once, with the cause.
    let started = std::time::Instant::now();
    let refused = Store::connect("postgres://root:hunter2@127.0.0.1:1/forge")
        .await
        .unwrap_err();
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    assert!(matches!(refused, Error::Connect { .. }));
    assert!(!refused.to_string().contains("hunter2"), "{refused}");
    assert!(std::error::Error::source(&refused).is_some());

    let missing_dir = Store::connect("sqlite:///nonexistent-forgeai-dir/forgeai.db")
        .await
        .unwrap_err();
    assert!(matches!(missing_dir, Error::Connect { .. }), "{missing_dir}");
}

#[test]
fn json_uses_the_api_field_names() {
    let project = serde_json::json!({
        "id": "p", "name": "n", "nameIsDefault": true, "sandboxId": null, "imageUrl": null,
        "userId": "u", "public": false, "createdAt": "2026-01-02T03:04:05.123456Z",
        "updatedAt": "2026-01-02T03:04:05.123456Z"
    });
    let parsed: forgeai_store::Project = serde_json::from_value(project.clone()).unwrap();
    assert_eq!(serde_json::to_value(&parsed).unwrap(), project);
    // Projects written before previews could be shared read as private.
    let mut older = project.clone();
    older.as_object_mut().unwrap().remove("public");
    let parsed: forgeai_store::Project = serde_json::from_value(older).unwrap();
    assert!(!parsed.public);

    let message = serde_json::json!({
        "id": "m", "projectId": "p", "role": "ASSISTANT", "type": "RESULT", "content": "done",
        "imageUrl": null, "userId": "u", "createdAt": "2026-01-02T03:04:05Z",
        "updatedAt": "2026-01-02T03:04:05Z",
        "codeFragment": {
            "id": "f", "messageId": "m", "sandboxUrl": "http://3000-s.localhost/",
            "sandboxId": "s", "title": "t", "files": {"app/page.tsx": "x"}, "imageUrl": null,
            "designSpec": {"meta": {}}, "appErrors": null, "createdAt": "2026-01-02T03:04:05Z",
            "updatedAt": "2026-01-02T03:04:05Z"
        }
    });
    let parsed: forgeai_store::MessageWithFragment = serde_json::from_value(message.clone()).unwrap();
    assert_eq!(parsed.message.kind, MessageType::Result);
    assert_eq!(serde_json::to_value(&parsed).unwrap(), message);

    let reply: AssistantReply =
        serde_json::from_value(serde_json::json!({"type": "ERROR", "content": "failed"})).unwrap();
    assert_eq!(
        reply,
        AssistantReply::Error {
            content: "failed".to_owned()
        }
    );
}

/// A database from before tokens could expire: after the upgrade its API tokens still work
/// (with an id each), while its sessions and login links, which would never have expired, end.
async fn upgrade_from_tokens_without_expiry<DB: sqlx::Database>(
    pool: sqlx::Pool<DB>,
    mut migrator: sqlx::migrate::Migrator,
) where
    for<'c> &'c mut <DB as sqlx::Database>::Connection: sqlx::Executor<'c, Database = DB>,
    <DB as sqlx::Database>::Connection: sqlx::migrate::Migrate,
    for<'q> <DB as sqlx::Database>::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
    for<'q> &'q str: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> chrono::DateTime<chrono::Utc>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    use sha2::Digest;
    migrator.migrations = std::borrow::Cow::Owned(vec![migrator.migrations[0].clone()]);
    migrator.run(&pool).await.unwrap();
    let hash = |token: &str| -> String {
        sha2::Sha256::digest(token.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    };
    let now = chrono::Utc::now();
    sqlx::query("INSERT INTO users (id, name, created_at) VALUES ($1, $2, $3)")
        .bind("u1")
        .bind("alice")
        .bind(now)
        .execute(&pool)
        .await
        .unwrap();
    for (token, kind) in [
        ("old-api", "api"),
        ("old-session", "session"),
        ("old-link", "login-once"),
    ] {
        sqlx::query("INSERT INTO api_tokens (token_hash, user_id, kind, created_at) VALUES ($1, $2, $3, $4)")
            .bind(hash(token).as_str())
            .bind("u1")
            .bind(kind)
            .bind(now)
            .execute(&pool)
            .await
            .unwrap();
    }
    pool.close().await;
}

async fn check_upgraded(store: &Store) {
    let alice = store
        .authenticate("old-api")
        .await
        .unwrap()
        .expect("the API token still works");
    assert_eq!(alice.name, "alice");
    assert_eq!(store.authenticate("old-session").await.unwrap(), None);
    assert_eq!(
        store.consume_login_token("old-link", MAX_SESSION_TTL).await.unwrap(),
        None
    );
    let tokens = store.list_tokens(&alice.id).await.unwrap();
    assert_eq!(tokens.len(), 1, "{tokens:?}");
    assert_eq!(tokens[0].kind, TokenKind::Api);
    assert_eq!(tokens[0].expires_at, None);
    assert!(uuid::Uuid::parse_str(&tokens[0].id).is_ok(), "{}", tokens[0].id);
    assert!(store.revoke_token(&alice.id, &tokens[0].id).await.unwrap());
    assert_eq!(store.authenticate("old-api").await.unwrap(), None);
}

#[tokio::test]
async fn upgrading_sqlite_keeps_api_tokens_and_ends_sessions() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/forgeai.db?mode=rwc", dir.path().display());
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    upgrade_from_tokens_without_expiry(pool, sqlx::migrate!("migrations/sqlite")).await;
    check_upgraded(&Store::open_default(dir.path()).await.unwrap()).await;
}

#[tokio::test]
async fn upgrading_postgres_keeps_api_tokens_and_ends_sessions() {
    let postgres = TestPostgres::start().await;
    let pool = sqlx::PgPool::connect(postgres.url()).await.unwrap();
    upgrade_from_tokens_without_expiry(pool, sqlx::migrate!("migrations/postgres")).await;
    check_upgraded(&Store::connect(postgres.url()).await.unwrap()).await;
}

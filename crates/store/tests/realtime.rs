//! One suite for every [`RealtimeFeed`]: the embedded engine, and `PgRealtime` with two
//! instances on one database acting as two nodes (for the engine both "nodes" are the same
//! engine). PostgreSQL runs on a private throwaway server, or on the server named by
//! `FORGEAI_TEST_DATABASE_URL`.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use forgeai_engine::{Durability, Engine, EngineConfig, FeedError, RealtimeFeed, RealtimeMessage};
use forgeai_store::testing::TestPostgres;
use forgeai_store::{Error, PgRealtime, PgRealtimeConfig, Store};
use futures::StreamExt;
use futures::stream::BoxStream;
use serde_json::json;
use tempfile::TempDir;

type Messages = BoxStream<'static, Result<RealtimeMessage, FeedError>>;

const DAY: Duration = Duration::from_secs(24 * 60 * 60);
/// Long enough for a loaded machine; a passing test never waits for it.
const PATIENCE: Duration = Duration::from_secs(30);

/// Two nodes of one feed.
struct Nodes {
    a: Arc<dyn RealtimeFeed>,
    b: Arc<dyn RealtimeFeed>,
    /// The database's URL, for tests that go behind the feed's back.
    postgres_url: Option<String>,
    _keep: Keep,
}

#[allow(dead_code, reason = "held for their Drop")]
enum Keep {
    Engine(Engine, TempDir),
    Postgres(TestPostgres),
}

impl Nodes {
    async fn engine(retention: Duration) -> Nodes {
        let dir = tempfile::tempdir().unwrap();
        let mut config = EngineConfig::new(dir.path());
        config.realtime_retention = retention;
        config.durability = Durability::ProcessCrash;
        let engine = Engine::builder(config).start().await.unwrap();
        Nodes {
            a: Arc::new(engine.clone()),
            b: Arc::new(engine.clone()),
            postgres_url: None,
            _keep: Keep::Engine(engine, dir),
        }
    }

    async fn postgres(retention: Duration) -> Nodes {
        let postgres = TestPostgres::start().await;
        let config = PgRealtimeConfig {
            retention,
            // Enough connections for publishes to really race.
            max_connections: 16,
        };
        let node = || async {
            let store = Store::connect(postgres.url()).await.unwrap();
            PgRealtime::start(&store, config.clone()).await.unwrap()
        };
        let (a, b) = (node().await, node().await);
        Nodes {
            a: Arc::new(a),
            b: Arc::new(b),
            postgres_url: Some(postgres.url().to_owned()),
            _keep: Keep::Postgres(postgres),
        }
    }
}

macro_rules! on_every_feed {
    ($($scenario:ident),* $(,)?) => {
        mod engine {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $scenario() {
                    super::$scenario(super::Nodes::engine(super::DAY).await).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $scenario() {
                    super::$scenario(super::Nodes::postgres(super::DAY).await).await;
                }
            )*
        }
    };
}

on_every_feed!(
    live_messages_reach_the_other_node_in_order,
    replay_after_an_id_gives_exactly_the_later_messages,
    concurrent_publishers_are_seen_once_each_in_id_order,
    subscribing_while_messages_are_published_misses_none,
);

/// The next `count` messages, failing the test on an error, the end of the stream or a wait.
async fn take(messages: &mut Messages, count: usize) -> Vec<RealtimeMessage> {
    let mut taken = Vec::with_capacity(count);
    while taken.len() < count {
        match tokio::time::timeout(PATIENCE, messages.next()).await {
            Ok(Some(Ok(message))) => taken.push(message),
            Ok(Some(Err(error))) => panic!("the subscription failed after {} messages: {error}", taken.len()),
            Ok(None) => panic!("the subscription ended after {} of {count} messages", taken.len()),
            Err(_) => panic!("only {} of {count} messages arrived", taken.len()),
        }
    }
    taken
}

/// Fails when another message arrives soon.
async fn nothing_more(messages: &mut Messages) {
    if let Ok(Some(extra)) = tokio::time::timeout(Duration::from_millis(300), messages.next()).await {
        panic!("an unexpected message arrived: {extra:?}");
    }
}

fn ids(messages: &[RealtimeMessage]) -> Vec<i64> {
    messages.iter().map(|message| message.id).collect()
}

fn assert_increasing(messages: &[RealtimeMessage]) {
    let ids = ids(messages);
    assert!(
        ids.windows(2).all(|pair| pair[0] < pair[1]),
        "ids out of order: {ids:?}"
    );
}

async fn live_messages_reach_the_other_node_in_order(nodes: Nodes) {
    let mut on_b = nodes.b.subscribe("project:1", None);
    let mut published = Vec::new();
    for n in 0..20 {
        published.push(
            nodes
                .a
                .publish("project:1", "status", &json!({ "n": n }))
                .await
                .unwrap(),
        );
        nodes
            .a
            .publish("project:2", "status", &json!({ "other": n }))
            .await
            .unwrap();
    }
    let received = take(&mut on_b, 20).await;
    assert_eq!(received, published);
    assert_increasing(&received);
    assert_eq!(received[3].data, json!({ "n": 3 }));
    assert_eq!(received[3].topic, "status");
    nothing_more(&mut on_b).await;

    // And the other way round, to a subscriber of the publishing node as well.
    let mut on_a = nodes.a.subscribe("project:1", None);
    let last = nodes.b.publish("project:1", "done", &json!(null)).await.unwrap();
    assert!(last.id > published[19].id);
    assert_eq!(take(&mut on_a, 1).await, vec![last.clone()]);
    assert_eq!(take(&mut on_b, 1).await, vec![last]);
}

async fn replay_after_an_id_gives_exactly_the_later_messages(nodes: Nodes) {
    let mut published = Vec::new();
    for n in 0..10 {
        published.push(nodes.a.publish("project:1", "status", &json!(n)).await.unwrap());
        nodes.a.publish("project:2", "status", &json!(n)).await.unwrap();
    }
    let after = published[3].id;
    let mut replay = nodes.b.subscribe("project:1", Some(after));
    assert_eq!(take(&mut replay, 6).await, published[4..].to_vec());
    nothing_more(&mut replay).await;
    // The replay goes on live.
    let next = nodes.a.publish("project:1", "status", &json!(10)).await.unwrap();
    assert_eq!(take(&mut replay, 1).await, vec![next.clone()]);

    // From 0: everything kept; from the newest id: nothing but what comes next.
    let mut everything = nodes.b.subscribe("project:1", Some(0));
    let mut all = published.clone();
    all.push(next.clone());
    assert_eq!(take(&mut everything, 11).await, all);
    let mut from_newest = nodes.b.subscribe("project:1", Some(next.id));
    nothing_more(&mut from_newest).await;
    let last = nodes.a.publish("project:1", "status", &json!(11)).await.unwrap();
    assert_eq!(take(&mut from_newest, 1).await, vec![last]);
}

async fn concurrent_publishers_are_seen_once_each_in_id_order(nodes: Nodes) {
    const COUNT: usize = 500;
    let mut on_a = nodes.a.subscribe("project:1", None);
    let mut on_b = nodes.b.subscribe("project:1", None);
    let publishes = (0..COUNT).map(|n| {
        let node = if n % 2 == 0 { nodes.a.clone() } else { nodes.b.clone() };
        tokio::spawn(async move {
            // Another channel publishing alongside must not disturb the order of this one.
            let channel = if n % 5 == 0 { "project:2" } else { "project:1" };
            node.publish(channel, "status", &json!(n)).await.unwrap()
        })
    });
    let published: Vec<RealtimeMessage> = futures::future::join_all(publishes)
        .await
        .into_iter()
        .map(Result::unwrap)
        .filter(|message| message.channel == "project:1")
        .collect();
    let expected: BTreeSet<i64> = ids(&published).into_iter().collect();
    assert_eq!(expected.len(), published.len());

    for messages in [&mut on_a, &mut on_b] {
        let received = take(messages, published.len()).await;
        assert_increasing(&received);
        assert_eq!(ids(&received).into_iter().collect::<BTreeSet<_>>(), expected);
        nothing_more(messages).await;
    }
    // A replay of the same messages agrees with what was seen live.
    let mut replay = nodes.b.subscribe("project:1", Some(0));
    let replayed = take(&mut replay, published.len()).await;
    assert_eq!(ids(&replayed).into_iter().collect::<BTreeSet<_>>(), expected);
    assert_increasing(&replayed);
}

async fn subscribing_while_messages_are_published_misses_none(nodes: Nodes) {
    const COUNT: usize = 300;
    let started = Arc::new(AtomicUsize::new(0));
    let publisher = {
        let (a, b, started) = (nodes.a.clone(), nodes.b.clone(), started.clone());
        tokio::spawn(async move {
            // Two publishers at a time, one per node, so ids also race.
            let mut published = Vec::new();
            for n in (0..COUNT).step_by(2) {
                started.store(n, Ordering::SeqCst);
                let (first, second) = (json!(n), json!(n + 1));
                let (x, y) = tokio::join!(
                    a.publish("project:1", "status", &first),
                    b.publish("project:1", "status", &second)
                );
                published.extend([x.unwrap(), y.unwrap()]);
            }
            published
        })
    };
    while started.load(Ordering::SeqCst) < COUNT / 3 {
        tokio::task::yield_now().await;
    }
    let mut replaying = nodes.b.subscribe("project:1", Some(0));
    let mut live = nodes.b.subscribe("project:1", None);
    // Every publish that started after the live subscription must reach it.
    let first_after = started.load(Ordering::SeqCst) + 2;
    let published = publisher.await.unwrap();

    let replayed = take(&mut replaying, COUNT).await;
    assert_increasing(&replayed);
    let mut expected = ids(&published);
    expected.sort_unstable();
    assert_eq!(ids(&replayed), expected);
    nothing_more(&mut replaying).await;

    let must_see: BTreeSet<i64> = published
        .iter()
        .filter(|message| message.data.as_u64().is_some_and(|n| n as usize >= first_after))
        .map(|message| message.id)
        .collect();
    let mut seen = Vec::new();
    while let Ok(Some(message)) = tokio::time::timeout(Duration::from_millis(500), live.next()).await {
        seen.push(message.unwrap());
    }
    assert_increasing(&seen);
    let seen_ids: BTreeSet<i64> = ids(&seen).into_iter().collect();
    assert!(
        must_see.is_subset(&seen_ids),
        "missed {:?}",
        must_see.difference(&seen_ids)
    );
}

/// Both feeds delete messages past their retention.
#[tokio::test]
async fn expired_messages_are_deleted() {
    for nodes in [
        Nodes::engine(Duration::from_millis(200)).await,
        Nodes::postgres(Duration::from_millis(200)).await,
    ] {
        let old = nodes.a.publish("project:1", "status", &json!("old")).await.unwrap();
        tokio::time::sleep(Duration::from_millis(1200)).await;
        let fresh = nodes.a.publish("project:1", "status", &json!("fresh")).await.unwrap();
        let mut replay = nodes.b.subscribe("project:1", Some(0));
        let replayed = take(&mut replay, 1).await;
        assert_eq!(replayed, vec![fresh], "{:?} should have expired", old.id);
    }
}

/// A listener whose connection is killed reconnects, and its subscribers catch up on what was
/// published meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lost_listener_connection_is_caught_up() {
    let nodes = Nodes::postgres(DAY).await;
    let url = nodes.postgres_url.clone().unwrap();
    let mut on_b = nodes.b.subscribe("project:1", None);
    let first = nodes.a.publish("project:1", "status", &json!(0)).await.unwrap();
    assert_eq!(take(&mut on_b, 1).await, vec![first]);

    let admin = sqlx::PgPool::connect(&url).await.unwrap();
    let killed: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = current_database() AND query ILIKE 'LISTEN%' AND pid <> pg_backend_pid()",
    )
    .fetch_all(&admin)
    .await
    .unwrap();
    assert_eq!(
        killed,
        vec![true, true],
        "both nodes listen on a connection of their own"
    );
    let mut during = Vec::new();
    for n in 1..=5 {
        during.push(nodes.a.publish("project:1", "status", &json!(n)).await.unwrap());
    }
    assert_eq!(take(&mut on_b, 5).await, during);
    nothing_more(&mut on_b).await;
    let after = nodes.b.publish("project:1", "status", &json!(6)).await.unwrap();
    assert_eq!(take(&mut on_b, 1).await, vec![after]);
}

#[tokio::test]
async fn pg_realtime_needs_postgres() {
    let store = Store::connect("sqlite::memory:").await.unwrap();
    let error = PgRealtime::start(&store, PgRealtimeConfig::default())
        .await
        .unwrap_err();
    assert!(matches!(error, Error::Invalid { field: "database", .. }), "{error}");
}

/// Dropping the last handle of a `PgRealtime` ends its subscriptions instead of leaving them
/// waiting forever.
#[tokio::test]
async fn subscriptions_end_with_their_feed() {
    let postgres = TestPostgres::start().await;
    let store = Store::connect(postgres.url()).await.unwrap();
    let feed = PgRealtime::start(&store, PgRealtimeConfig::default()).await.unwrap();
    let mut messages = feed.subscribe("project:1", None);
    drop(feed);
    let end = tokio::time::timeout(PATIENCE, messages.next()).await.unwrap();
    assert!(end.is_none(), "{end:?}");
}

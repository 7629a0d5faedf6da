//! `GET /api/projects/{id}/realtime`: the wire format, live statuses of runs, and resuming
//! with `Last-Event-ID` (header or `lastEventId` query parameter) without loss or repeats.

use std::time::Duration;

use forgeai_code_agent::{STATUS_TOPIC, project_channel};
use forgeai_store::testing::TestPostgres;
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::harness::{LastEventId, STATUSES, SseClient, TestServer};

/// Long enough for a stray repeat to show up after the expected messages.
const QUIET: Duration = Duration::from_millis(300);

async fn publish(s: &TestServer, project_id: &str, status: &str) -> i64 {
    s.engine
        .publish(&project_channel(project_id), STATUS_TOPIC, json!(status))
        .await
        .expect("published")
        .id
}

async fn expect_statuses(client: &mut SseClient, expected: &[(i64, &str)]) {
    for (id, status) in expected {
        let event = client.next().await;
        assert_eq!((event.id(), event.status()), (*id, (*status).to_owned()), "{event:?}");
    }
}

async fn expect_quiet(client: &mut SseClient) {
    if let Some(event) = client.next_within(QUIET).await {
        panic!("unexpected event {event:?}");
    }
}

pub async fn realtime_resumes_without_loss_or_repeats(s: &TestServer) {
    let alice = s.user("alice").await;
    let token = alice.token.as_str();
    let id = s.create_project(token, "Build a todo app").await;
    let other = s.create_project(token, "Another app").await;
    s.finished_runs(token, &id, 1).await;
    s.finished_runs(token, &other, 1).await;

    // A fresh subscriber sees what is published from now on; nothing of other channels.
    let mut client = s.subscribe(token, &id, LastEventId::None).await;
    let first = publish(s, &id, "one").await;
    publish(s, &other, "not for this channel").await;
    let second = publish(s, &id, "two \"quoted\"\nand a second line").await;
    expect_statuses(
        &mut client,
        &[(first, "one"), (second, "two \"quoted\"\nand a second line")],
    )
    .await;
    // The wire format: the topic as the event, the JSON-encoded status as data (one line), the
    // id; fields in any order.
    let mut blocks: Vec<Vec<&str>> = client.raw.split("\n\n").map(|block| block.lines().collect()).collect();
    blocks.iter_mut().for_each(|lines| lines.sort_unstable());
    let first_wire = format!("data: \"one\"\nevent: {STATUS_TOPIC}\nid: {first}");
    let second_wire = format!("data: \"two \\\"quoted\\\"\\nand a second line\"\nevent: {STATUS_TOPIC}\nid: {second}");
    for expected in [first_wire, second_wire] {
        let expected: Vec<&str> = expected.lines().collect();
        assert!(
            blocks.contains(&expected),
            "{expected:?} not on the wire: {:?}",
            client.raw
        );
    }

    // The client goes away having seen `second`; three more are published meanwhile.
    let third = publish(s, &id, "three").await;
    drop(client);
    let missed = [third, publish(s, &id, "four").await, publish(s, &id, "five").await];
    publish(s, &other, "still not for this channel").await;

    let resumed = [(missed[0], "three"), (missed[1], "four"), (missed[2], "five")];
    let second_text = second.to_string();
    for how in [LastEventId::Header(&second_text), LastEventId::Query(&second_text)] {
        let mut client = s.subscribe(token, &id, how).await;
        expect_statuses(&mut client, &resumed).await;
        expect_quiet(&mut client).await;
    }
    // Live messages follow the replay, each once.
    let mut client = s.subscribe(token, &id, LastEventId::Header(&second_text)).await;
    expect_statuses(&mut client, &resumed).await;
    let six = publish(s, &id, "six").await;
    expect_statuses(&mut client, &[(six, "six")]).await;
    expect_quiet(&mut client).await;
    drop(client);

    // The header wins over the query parameter; an id from the future replays nothing.
    let five_text = missed[2].to_string();
    let response = s
        .request(
            Method::GET,
            &format!("/api/projects/{id}/realtime?lastEventId={second}"),
            Some(token),
        )
        .header("Last-Event-ID", &five_text)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let mut client = SseClient::from_response(response);
    expect_statuses(&mut client, &[(six, "six")]).await;
    expect_quiet(&mut client).await;
    let mut client = s
        .subscribe(token, &id, LastEventId::Query(&(six + 1000).to_string()))
        .await;
    expect_quiet(&mut client).await;
    drop(client);

    // From 0: everything the project's runs and this test published, in order.
    let mut client = s.subscribe(token, &id, LastEventId::Header("0")).await;
    let mut seen = Vec::new();
    while let Some(event) = client.next_within(QUIET).await {
        seen.push((event.id(), event.status()));
    }
    let statuses: Vec<&str> = seen.iter().map(|(_, status)| status.as_str()).collect();
    let mut expected: Vec<&str> = STATUSES.to_vec();
    expected.extend([
        "one",
        "two \"quoted\"\nand a second line",
        "three",
        "four",
        "five",
        "six",
    ]);
    assert_eq!(statuses, expected);
    assert!(
        seen.windows(2).all(|pair| pair[0].0 < pair[1].0),
        "ids increase: {seen:?}"
    );
}

/// Reconnecting while messages keep coming: every message arrives exactly once, in order.
pub async fn realtime_reconnects_under_load(s: &TestServer) {
    let alice = s.user("alice").await;
    let token = alice.token.as_str();
    let id = s.create_project(token, "Build a todo app").await;
    s.finished_runs(token, &id, 1).await;

    let mut client = s.subscribe(token, &id, LastEventId::None).await;
    let publisher = {
        let engine = s.engine.clone();
        let channel = project_channel(&id);
        tokio::spawn(async move {
            let mut ids = Vec::new();
            for n in 0..200_u32 {
                ids.push(
                    engine
                        .publish(&channel, STATUS_TOPIC, json!(format!("status {n}")))
                        .await
                        .unwrap()
                        .id,
                );
                if n.is_multiple_of(10) {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            }
            ids
        })
    };
    let mut received: Vec<(i64, String)> = Vec::new();
    let mut reconnects = 0_u32;
    while received.len() < 200 {
        let event = client.next().await;
        received.push((event.id(), event.status()));
        // Hang up every 17 messages and come back from the last one seen, alternating ways.
        if received.len().is_multiple_of(17) {
            drop(client);
            reconnects += 1;
            let last = received.last().unwrap().0.to_string();
            let how = if reconnects.is_multiple_of(2) {
                LastEventId::Header(&last)
            } else {
                LastEventId::Query(&last)
            };
            client = s.subscribe(token, &id, how).await;
        }
    }
    let published = publisher.await.unwrap();
    expect_quiet(&mut client).await;
    let ids: Vec<i64> = received.iter().map(|(id, _)| *id).collect();
    assert_eq!(ids, published, "every message once, in order");
    for (n, (_, status)) in received.iter().enumerate() {
        assert_eq!(status, &format!("status {n}"));
    }
}

/// The statuses a run publishes reach a subscriber as they happen.
pub async fn realtime_streams_run_statuses(s: &TestServer) {
    let alice = s.user("alice").await;
    let token = alice.token.as_str();
    let id = s.create_project(token, "Build a todo app").await;
    s.finished_runs(token, &id, 1).await;

    let mut client = s.subscribe(token, &id, LastEventId::None).await;
    let (status, _) = s
        .call(
            Method::POST,
            "/api/messages",
            Some(token),
            Some(json!({ "projectId": id, "message": "Add dark mode" })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let mut ids = Vec::new();
    for expected in STATUSES {
        let event = client.next().await;
        assert_eq!(event.status(), expected);
        ids.push(event.id());
    }
    assert!(ids.windows(2).all(|pair| pair[0] < pair[1]));
    expect_quiet(&mut client).await;
}

/// Two servers on one PostgreSQL database, each reading realtime channels through a
/// `PgRealtime` of its own: a message published on one node streams from the other, and a
/// client that hops between the nodes with `Last-Event-ID` gets every message once, in order.
pub async fn realtime_resumes_on_another_node() {
    let postgres = TestPostgres::start().await;
    let (a, feed_a) = TestServer::start_node(postgres.url()).await;
    let (b, feed_b) = TestServer::start_node(postgres.url()).await;
    let alice = a.user("alice").await;
    let token = alice.token.as_str();
    let (project, _) = a
        .store
        .create_project(&alice.id, "Build a todo app", None)
        .await
        .unwrap();
    let channel = project_channel(&project.id);

    // Published on B, streamed live by A.
    let mut client = a.subscribe(token, &project.id, LastEventId::None).await;
    let first = feed_b.publish(&channel, STATUS_TOPIC, &json!("one")).await.unwrap().id;
    let second = feed_b.publish(&channel, STATUS_TOPIC, &json!("two")).await.unwrap().id;
    expect_statuses(&mut client, &[(first, "one"), (second, "two")]).await;
    drop(client);

    // Resumed on B after `first`, then live from A.
    let first_text = first.to_string();
    let mut client = b.subscribe(token, &project.id, LastEventId::Header(&first_text)).await;
    expect_statuses(&mut client, &[(second, "two")]).await;
    expect_quiet(&mut client).await;
    let third = feed_a
        .publish(&channel, STATUS_TOPIC, &json!("three"))
        .await
        .unwrap()
        .id;
    expect_statuses(&mut client, &[(third, "three")]).await;

    // Both nodes publish while the client keeps hopping from one node to the other.
    let publisher = tokio::spawn(async move {
        let mut ids = Vec::new();
        for n in 0..200_u32 {
            let feed = if n.is_multiple_of(2) { &feed_a } else { &feed_b };
            let status = json!(format!("status {n}"));
            ids.push(feed.publish(&channel, STATUS_TOPIC, &status).await.unwrap().id);
        }
        ids
    });
    let mut received: Vec<(i64, String)> = Vec::new();
    let mut on_a = false;
    while received.len() < 200 {
        let event = client.next().await;
        received.push((event.id(), event.status()));
        if received.len().is_multiple_of(17) {
            drop(client);
            on_a = !on_a;
            let node = if on_a { &a } else { &b };
            let last = received.last().unwrap().0.to_string();
            client = node.subscribe(token, &project.id, LastEventId::Header(&last)).await;
        }
    }
    let published = publisher.await.unwrap();
    expect_quiet(&mut client).await;
    let ids: Vec<i64> = received.iter().map(|(id, _)| *id).collect();
    assert_eq!(ids, published, "every message once, in order");
    for (n, (_, status)) in received.iter().enumerate() {
        assert_eq!(status, &format!("status {n}"));
    }
}

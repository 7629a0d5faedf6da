//! The JSON API: projects, messages, fragments, runs, auth, and every way to get them wrong.

use reqwest::header::{CONTENT_TYPE, COOKIE, LOCATION, SET_COOKIE};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::harness::{LastEventId, TestServer, assert_code_agent_event, expect_error, read_json};

const MISSING: &str = "0190a5b1-0000-7000-8000-000000000000";

fn is_uuid(value: &Value) -> bool {
    value.as_str().is_some_and(|text| uuid::Uuid::parse_str(text).is_ok())
}

fn time(value: &Value) -> chrono::DateTime<chrono::Utc> {
    value
        .as_str()
        .and_then(|text| text.parse().ok())
        .unwrap_or_else(|| panic!("not a timestamp: {value}"))
}

pub async fn projects_messages_and_runs(s: &TestServer) {
    let alice = s.user("alice").await;
    let token = alice.token.as_str();

    // Create: the project, its first USER message, and a code-agent run.
    let (status, project) = s
        .call(
            Method::POST,
            "/api/projects",
            Some(token),
            Some(json!({ "message": "Build a todo app" })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{project}");
    assert!(is_uuid(&project["id"]), "{project}");
    assert_eq!(project["name"], "Untitled project");
    assert_eq!(project["nameIsDefault"], true);
    assert_eq!(project["userId"], alice.id.as_str());
    assert_eq!(project["imageUrl"], Value::Null);
    assert_eq!(project["sandboxId"], Value::Null);
    let id = project["id"].as_str().unwrap().to_owned();

    let (status, listed) = s.get("/api/projects", token).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(listed, json!([project.clone()]));
    let (status, fetched) = s.get(&format!("/api/projects/{id}"), token).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(fetched, project);
    // Ids are UUIDs; any spelling of one names the same project.
    let (status, _) = s.get(&format!("/api/projects/{}", id.to_uppercase()), token).await;
    assert_eq!(status, StatusCode::OK);

    let runs = s.finished_runs(token, &id, 1).await;
    let run = &runs[0];
    assert_eq!(run["status"], "completed", "{run}");
    assert!(is_uuid(&run["id"]));
    assert_eq!(run["error"], Value::Null);
    assert!(time(&run["startedAt"]) <= time(&run["endedAt"]));
    let run_id = run["id"].as_str().unwrap();

    let (status, detail) = s.get(&format!("/api/runs/{run_id}"), token).await;
    assert_eq!(status, StatusCode::OK, "{detail}");
    assert_eq!(detail["id"], run["id"]);
    assert_eq!(detail["status"], "completed");
    assert_eq!(detail["projectId"], id.as_str());
    let steps = detail["steps"].as_array().expect("steps");
    let step = steps
        .iter()
        .find(|step| step["name"] == "get-prev-messages")
        .expect("the function's step");
    assert_eq!(step["status"], "completed");
    assert_eq!(step["attempts"], 1);
    assert_eq!(step["error"], Value::Null);
    // The run got the event the design describes, with the caller as userId.
    let output = s.engine_run(run_id).await.run.output.expect("run output");
    assert_code_agent_event(&output, &id, "Build a todo app", &alice.id);

    // Messages: each further prompt is stored and queues a run; runs of a project go one by
    // one, in the order sent.
    let (status, message) = s
        .call(
            Method::POST,
            "/api/messages",
            Some(token),
            Some(json!({ "projectId": id, "message": "Add dark mode", "imageUrl": "https://example.com/mock.png" })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{message}");
    assert_eq!(message["projectId"], id.as_str());
    assert_eq!(message["role"], "USER");
    assert_eq!(message["type"], "RESULT");
    assert_eq!(message["content"], "Add dark mode");
    assert_eq!(message["imageUrl"], "https://example.com/mock.png");
    assert_eq!(message["userId"], alice.id.as_str());
    let (status, _) = s
        .call(
            Method::POST,
            "/api/messages",
            Some(token),
            Some(json!({ "projectId": id, "message": "Add a footer" })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);

    let runs = s.finished_runs(token, &id, 3).await;
    let mut outputs = Vec::new();
    for pair in runs.windows(2) {
        assert!(
            time(&pair[0]["endedAt"]) <= time(&pair[1]["startedAt"]),
            "runs of one project overlapped: {runs:?}"
        );
    }
    for run in &runs {
        assert_eq!(run["status"], "completed", "{run}");
        let output = s
            .engine_run(run["id"].as_str().unwrap())
            .await
            .run
            .output
            .expect("output");
        outputs.push(output);
    }
    assert_eq!(outputs[1]["imageUrl"], "https://example.com/mock.png");
    let prompts: Vec<&str> = outputs
        .iter()
        .map(|output| output["message"].as_str().unwrap())
        .collect();
    assert_eq!(prompts, ["Build a todo app", "Add dark mode", "Add a footer"]);

    let (status, messages) = s.get(&format!("/api/messages?projectId={id}"), token).await;
    assert_eq!(status, StatusCode::OK);
    let contents: Vec<&str> = messages
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["content"].as_str().unwrap())
        .collect();
    assert_eq!(contents, ["Build a todo app", "Add dark mode", "Add a footer"]);
    for message in messages.as_array().unwrap() {
        assert_eq!(message["codeFragment"], Value::Null, "{message}");
        assert_eq!(message["role"], "USER");
    }

    // A project created with an image keeps it, and the run gets it.
    let (status, pictured) = s
        .call(
            Method::POST,
            "/api/projects",
            Some(token),
            Some(json!({ "message": "Like this", "imageUrl": "http://127.0.0.1/uploads/x.png" })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{pictured}");
    assert_eq!(pictured["imageUrl"], "http://127.0.0.1/uploads/x.png");
    let pictured_id = pictured["id"].as_str().unwrap();
    let runs = s.finished_runs(token, pictured_id, 1).await;
    let output = s.engine_run(runs[0]["id"].as_str().unwrap()).await.run.output.unwrap();
    assert_eq!(output["imageUrl"], "http://127.0.0.1/uploads/x.png");

    // Most recently updated first: a new message moves its project to the top.
    let (_, listed) = s.get("/api/projects", token).await;
    let order: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    assert_eq!(order, [pictured_id, id.as_str()]);
    s.call(
        Method::POST,
        "/api/messages",
        Some(token),
        Some(json!({ "projectId": id, "message": "One more" })),
    )
    .await;
    let (_, listed) = s.get("/api/projects", token).await;
    assert_eq!(listed[0]["id"], id.as_str());
    s.finished_runs(token, &id, 4).await;

    // Delete: gone with its messages; its runs are no longer shown.
    let response = s
        .request(Method::DELETE, &format!("/api/projects/{id}"), Some(token))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert!(response.bytes().await.unwrap().is_empty());
    for path in [
        format!("/api/projects/{id}"),
        format!("/api/messages?projectId={id}"),
        format!("/api/projects/{id}/runs"),
        format!("/api/runs/{run_id}"),
    ] {
        expect_error(
            s.request(Method::GET, &path, Some(token)).send().await.unwrap(),
            StatusCode::NOT_FOUND,
        )
        .await;
    }
    let again = s
        .request(Method::DELETE, &format!("/api/projects/{id}"), Some(token))
        .send()
        .await
        .unwrap();
    expect_error(again, StatusCode::NOT_FOUND).await;
    let (_, listed) = s.get("/api/projects", token).await;
    assert_eq!(listed.as_array().unwrap().len(), 1);
}

pub async fn fragments(s: &TestServer) {
    let alice = s.user("alice").await;
    let token = alice.token.as_str();
    let id = s.create_project(token, "Build a counter").await;
    let saved = s
        .add_fragment(&alice, &id, &[("app/page.tsx", "v1"), ("lib/utils.ts", "export {}")])
        .await;
    let fragment = saved.fragment.expect("fragment");

    let (status, messages) = s.get(&format!("/api/messages?projectId={id}"), token).await;
    assert_eq!(status, StatusCode::OK);
    let messages = messages.as_array().unwrap();
    assert_eq!(messages.len(), 2);
    assert_eq!(messages[0]["role"], "USER");
    assert!(messages[0].as_object().unwrap().contains_key("codeFragment"));
    assert_eq!(messages[0]["codeFragment"], Value::Null);
    let reply = &messages[1];
    assert_eq!(reply["role"], "ASSISTANT");
    assert_eq!(reply["type"], "RESULT");
    assert_eq!(reply["content"], "Built a counter app.");
    let code = &reply["codeFragment"];
    assert_eq!(code["id"], fragment.id.as_str());
    assert_eq!(code["messageId"], reply["id"]);
    assert_eq!(code["sandboxUrl"], "http://3000-sbx.localhost:4000/");
    assert_eq!(code["sandboxId"], "sbx");
    assert_eq!(code["title"], "Counter app");
    // The listing has each file's size, not its content; that comes from the fragment's route.
    assert_eq!(code["fileSizes"], json!({ "app/page.tsx": 2, "lib/utils.ts": 9 }));
    assert_eq!(code["size"], 12 + 2 + 12 + 9);
    assert!(code.get("files").is_none(), "{code}");
    assert_eq!(code["designSpec"], json!({ "meta": { "title": "Counter" } }));
    assert_eq!(code["imageUrl"], Value::Null);
    let path = format!("/api/fragments/{}", fragment.id);
    let (status, full) = s.get(&path, token).await;
    assert_eq!(status, StatusCode::OK, "{full}");
    assert_eq!(full["id"], fragment.id.as_str());
    assert_eq!(full["messageId"], reply["id"]);
    assert_eq!(full["title"], "Counter app");
    assert_eq!(
        full["files"],
        json!({ "app/page.tsx": "v1", "lib/utils.ts": "export {}" })
    );

    // PATCH merges: new content for a known path, new paths added, others kept.
    let (status, patched) = s
        .call(
            Method::PATCH,
            &path,
            Some(token),
            Some(json!({ "files": { "app/page.tsx": "v2 ✓", "components/ui/new button.tsx": "n" } })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{patched}");
    assert_eq!(patched["id"], fragment.id.as_str());
    assert_eq!(
        patched["files"],
        json!({ "app/page.tsx": "v2 ✓", "components/ui/new button.tsx": "n", "lib/utils.ts": "export {}" })
    );
    assert!(time(&patched["updatedAt"]) >= time(&patched["createdAt"]));
    let (_, full) = s.get(&path, token).await;
    assert_eq!(full["files"], patched["files"]);
    let (_, messages) = s.get(&format!("/api/messages?projectId={id}"), token).await;
    assert_eq!(
        messages[1]["codeFragment"]["fileSizes"],
        json!({ "app/page.tsx": 6, "components/ui/new button.tsx": 1, "lib/utils.ts": 9 })
    );

    // A file may have 1 MiB (more than the 1 MB of other JSON bodies), not one byte more.
    const MIB: usize = 1024 * 1024;
    let (status, patched) = s
        .call(
            Method::PATCH,
            &path,
            Some(token),
            Some(json!({ "files": { "public/big.txt": "x".repeat(MIB) } })),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(patched["files"]["public/big.txt"].as_str().map(str::len), Some(MIB));
    let (_, before_refusals) = s.get(&path, token).await;
    let response = s
        .request(Method::PATCH, &path, Some(token))
        .json(&json!({ "files": { "app/page.tsx": "fine", "public/bigger.txt": "x".repeat(MIB + 1) } }))
        .send()
        .await
        .unwrap();
    let error = expect_error(response, StatusCode::PAYLOAD_TOO_LARGE).await;
    assert!(
        error.contains("\"public/bigger.txt\" has 1.0 MiB; a file may have at most 1 MiB"),
        "{error}"
    );
    // A fragment may have 8 MiB in all (paths and contents): with six more files of 1 MiB it has
    // 7 MiB and a little, and a seventh does not fit.
    let six: serde_json::Map<String, Value> = (0..6)
        .map(|i| (format!("public/part{i}.txt"), json!("p".repeat(MIB))))
        .collect();
    let response = s
        .request(Method::PATCH, &path, Some(token))
        .json(&json!({ "files": six }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let response = s
        .request(Method::PATCH, &path, Some(token))
        .json(&json!({ "files": { "public/part6.txt": "p".repeat(MIB) } }))
        .send()
        .await
        .unwrap();
    let error = expect_error(response, StatusCode::PAYLOAD_TOO_LARGE).await;
    assert!(
        error.contains("more than the 8 MiB a fragment may have; nothing was saved"),
        "{error}"
    );
    let (_, after) = s.get(&path, token).await;
    assert!(after["files"].get("public/part6.txt").is_none() && after["files"].get("public/bigger.txt").is_none());
    assert_eq!(after["files"]["app/page.tsx"], before_refusals["files"]["app/page.tsx"]);
    let (_, messages) = s.get(&format!("/api/messages?projectId={id}"), token).await;
    let size = messages[1]["codeFragment"]["size"].as_u64().unwrap();
    assert!(size > 7 * MIB as u64 && size < 8 * MIB as u64, "{size}");

    // Refused edits change nothing.
    let before = s.stored().await;
    let refused = [
        json!({ "files": {} }),
        json!({}),
        json!({ "files": null }),
        json!({ "files": ["app/page.tsx"] }),
        json!({ "files": { "app/page.tsx": 1 } }),
        json!({ "files": { "app/page.tsx": "ok", "../escape.txt": "no" } }),
        json!({ "files": { "/etc/passwd": "no" } }),
        json!({ "files": { "a//b": "no" } }),
        json!({ "files": { "a/./b": "no" } }),
        json!({ "files": { "a\\b": "no" } }),
        json!({ "files": { "": "no" } }),
        json!({ "files": { "nul\u{0}.txt": "no" } }),
        json!({ "files": { "app/page.tsx": "nul \u{0} inside" } }),
        json!({ "files": { "x".repeat(600): "too long a path" } }),
    ];
    for body in refused {
        let response = s
            .request(Method::PATCH, &path, Some(token))
            .json(&body)
            .send()
            .await
            .unwrap();
        let error = expect_error(response, StatusCode::BAD_REQUEST).await;
        assert!(!error.contains("internal"), "{body}: {error}");
    }
    let malformed = s
        .request(Method::PATCH, &path, Some(token))
        .header(CONTENT_TYPE, "application/json")
        .body(r#"{"files": {"a": "b"}"#)
        .send()
        .await
        .unwrap();
    expect_error(malformed, StatusCode::BAD_REQUEST).await;
    let text = s
        .request(Method::PATCH, &path, Some(token))
        .header(CONTENT_TYPE, "text/plain")
        .body(r#"{"files": {"a": "b"}}"#)
        .send()
        .await
        .unwrap();
    expect_error(text, StatusCode::UNSUPPORTED_MEDIA_TYPE).await;
    let huge = json!({ "files": { "public/huge.txt": "y".repeat(17 * 1024 * 1024) } });
    let response = s
        .request(Method::PATCH, &path, Some(token))
        .json(&huge)
        .send()
        .await
        .unwrap();
    expect_error(response, StatusCode::PAYLOAD_TOO_LARGE).await;
    let unknown = s
        .request(Method::PATCH, &format!("/api/fragments/{MISSING}"), Some(token))
        .json(&json!({ "files": { "a.txt": "b" } }))
        .send()
        .await
        .unwrap();
    expect_error(unknown, StatusCode::NOT_FOUND).await;
    let bad_id = s
        .request(Method::PATCH, "/api/fragments/fragment-1", Some(token))
        .json(&json!({ "files": { "a.txt": "b" } }))
        .send()
        .await
        .unwrap();
    expect_error(bad_id, StatusCode::BAD_REQUEST).await;
    assert_eq!(s.stored().await, before);

    // An ERROR reply has no fragment.
    s.store
        .add_assistant_message(
            &alice.id,
            &id,
            forgeai_store::AssistantReply::Error {
                content: "Something went wrong. Please try again.".into(),
            },
        )
        .await
        .unwrap()
        .unwrap();
    let (_, messages) = s.get(&format!("/api/messages?projectId={id}"), token).await;
    assert_eq!(messages[2]["type"], "ERROR");
    assert_eq!(messages[2]["codeFragment"], Value::Null);
}

/// A fragment saved with a 50 MB file (as before the size limits) no longer makes every listing
/// of its project that big: the listing stays small, the file comes from the fragment's route.
pub async fn a_big_fragment_keeps_the_listing_small(s: &TestServer) {
    let alice = s.user("alice").await;
    let token = alice.token.as_str();
    let id = s.create_project(token, "Build a data viewer").await;
    let big = "d".repeat(50 * 1024 * 1024);
    let fragment = s
        .add_fragment(&alice, &id, &[("app/page.tsx", "page"), ("public/data.json", &big)])
        .await
        .fragment
        .unwrap();
    let response = s
        .request(Method::GET, &format!("/api/messages?projectId={id}"), Some(token))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body = response.bytes().await.unwrap();
    assert!(body.len() < 4096, "GET /api/messages answered {} bytes", body.len());
    let messages: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        messages[1]["codeFragment"]["fileSizes"],
        json!({ "app/page.tsx": 4, "public/data.json": big.len() })
    );
    let (status, full) = s.get(&format!("/api/fragments/{}", fragment.id), token).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        full["files"]["public/data.json"].as_str().map(str::len),
        Some(big.len())
    );
}

/// Every malformed request is answered 4xx with `{error}`, and none of them stores anything.
pub async fn rejected_requests_store_nothing(s: &TestServer) {
    let alice = s.user("alice").await;
    let token = alice.token.as_str();
    let id = s.create_project(token, "Build a todo app").await;
    let fragment = s
        .add_fragment(&alice, &id, &[("app/page.tsx", "v1")])
        .await
        .fragment
        .unwrap();
    s.finished_runs(token, &id, 1).await;

    // The limits themselves are accepted: 10000 characters, counted as characters.
    for message in ["a".repeat(10_000), "é".repeat(10_000), "🦀".repeat(10_000)] {
        let (status, body) = s
            .call(
                Method::POST,
                "/api/messages",
                Some(token),
                Some(json!({ "projectId": id, "message": message })),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    s.finished_runs(token, &id, 4).await;
    let before = s.stored().await;

    let post_json = |path: &str, body: &str, content_type: Option<&str>| {
        let mut request = s.request(Method::POST, path, Some(token)).body(body.to_owned());
        if let Some(content_type) = content_type {
            request = request.header(CONTENT_TYPE, content_type);
        }
        request.send()
    };
    let json_type = Some("application/json");
    let long = "a".repeat(10_001);
    let projects_bad: Vec<(String, Option<&str>, StatusCode)> = vec![
        ("{".into(), json_type, StatusCode::BAD_REQUEST),
        (r#"{"message": "hi""#.into(), json_type, StatusCode::BAD_REQUEST),
        ("".into(), json_type, StatusCode::BAD_REQUEST),
        ("null".into(), json_type, StatusCode::BAD_REQUEST),
        ("[]".into(), json_type, StatusCode::BAD_REQUEST),
        ("{}".into(), json_type, StatusCode::BAD_REQUEST),
        (r#"{"message": 5}"#.into(), json_type, StatusCode::BAD_REQUEST),
        (r#"{"message": ""}"#.into(), json_type, StatusCode::BAD_REQUEST),
        (r#"{"message": " \n\t "}"#.into(), json_type, StatusCode::BAD_REQUEST),
        (
            json!({ "message": long }).to_string(),
            json_type,
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({ "message": "nul \u{0} byte" }).to_string(),
            json_type,
            StatusCode::BAD_REQUEST,
        ),
        (
            r#"{"message": "hi", "imageUrl": "ftp://example.com/a.png"}"#.into(),
            json_type,
            StatusCode::BAD_REQUEST,
        ),
        (
            r#"{"message": "hi", "imageUrl": "javascript:alert(1)"}"#.into(),
            json_type,
            StatusCode::BAD_REQUEST,
        ),
        (
            r#"{"message": "hi", "imageUrl": "https://a b"}"#.into(),
            json_type,
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({ "message": "hi", "imageUrl": "https://x/\u{0}" }).to_string(),
            json_type,
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({ "message": "hi", "imageUrl": format!("https://{}", "x".repeat(3000)) }).to_string(),
            json_type,
            StatusCode::BAD_REQUEST,
        ),
        (
            r#"{"message": "hi", "imageUrl": 3}"#.into(),
            json_type,
            StatusCode::BAD_REQUEST,
        ),
        (
            r#"{"message": "hi"}"#.into(),
            Some("text/plain"),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        (
            r#"{"message": "hi"}"#.into(),
            Some("application/x-www-form-urlencoded"),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        (r#"{"message": "hi"}"#.into(), None, StatusCode::UNSUPPORTED_MEDIA_TYPE),
        (
            json!({ "message": "x".repeat(2 * 1024 * 1024) }).to_string(),
            json_type,
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
    ];
    for (body, content_type, status) in &projects_bad {
        let response = post_json("/api/projects", body, *content_type).await.unwrap();
        let error = expect_error(response, *status).await;
        assert!(!error.contains("internal"), "{body:.80}: {error}");
    }

    let messages_bad: Vec<(Value, StatusCode)> = vec![
        (json!({ "message": "hi" }), StatusCode::BAD_REQUEST),
        (
            json!({ "projectId": "not-a-uuid", "message": "hi" }),
            StatusCode::BAD_REQUEST,
        ),
        (json!({ "projectId": 7, "message": "hi" }), StatusCode::BAD_REQUEST),
        (json!({ "projectId": MISSING, "message": "hi" }), StatusCode::NOT_FOUND),
        (json!({ "projectId": id, "message": "" }), StatusCode::BAD_REQUEST),
        (json!({ "projectId": id, "message": "   " }), StatusCode::BAD_REQUEST),
        (json!({ "projectId": id, "message": long }), StatusCode::BAD_REQUEST),
        (json!({ "projectId": id, "message": "\u{0}" }), StatusCode::BAD_REQUEST),
        (json!({ "projectId": id }), StatusCode::BAD_REQUEST),
        (
            json!({ "projectId": id, "message": "hi", "imageUrl": "data:image/png;base64,AAAA" }),
            StatusCode::BAD_REQUEST,
        ),
    ];
    for (body, status) in &messages_bad {
        let response = post_json("/api/messages", &body.to_string(), json_type).await.unwrap();
        let error = expect_error(response, *status).await;
        assert!(!error.contains("internal"), "{body}: {error}");
    }
    let response = post_json(
        "/api/messages",
        &json!({ "projectId": id, "message": "hi" }).to_string(),
        Some("text/plain"),
    )
    .await
    .unwrap();
    expect_error(response, StatusCode::UNSUPPORTED_MEDIA_TYPE).await;
    let response = post_json("/api/messages", "{\"projectId\":", json_type).await.unwrap();
    expect_error(response, StatusCode::BAD_REQUEST).await;

    let gets: Vec<(Method, String, StatusCode)> = vec![
        (Method::GET, "/api/messages".into(), StatusCode::BAD_REQUEST),
        (Method::GET, "/api/messages?projectId=".into(), StatusCode::BAD_REQUEST),
        (
            Method::GET,
            "/api/messages?projectId=nope".into(),
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::GET,
            "/api/messages?project_id=".to_owned() + &id,
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::GET,
            format!("/api/messages?projectId={MISSING}"),
            StatusCode::NOT_FOUND,
        ),
        (Method::GET, "/api/projects/nope".into(), StatusCode::BAD_REQUEST),
        (Method::GET, "/api/projects/%00".into(), StatusCode::BAD_REQUEST),
        (Method::GET, format!("/api/projects/{MISSING}"), StatusCode::NOT_FOUND),
        (Method::DELETE, "/api/projects/nope".into(), StatusCode::BAD_REQUEST),
        (
            Method::DELETE,
            format!("/api/projects/{MISSING}"),
            StatusCode::NOT_FOUND,
        ),
        (Method::GET, "/api/projects/nope/runs".into(), StatusCode::BAD_REQUEST),
        (
            Method::GET,
            format!("/api/projects/{MISSING}/runs"),
            StatusCode::NOT_FOUND,
        ),
        (Method::GET, "/api/runs/not.an.id".into(), StatusCode::BAD_REQUEST),
        (Method::GET, "/api/runs/nope".into(), StatusCode::NOT_FOUND),
        (Method::GET, format!("/api/runs/{MISSING}"), StatusCode::NOT_FOUND),
        // A project id is not a run id.
        (Method::GET, format!("/api/runs/{id}"), StatusCode::NOT_FOUND),
        (
            Method::GET,
            "/api/projects/nope/realtime".into(),
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::GET,
            format!("/api/projects/{MISSING}/realtime"),
            StatusCode::NOT_FOUND,
        ),
        (
            Method::GET,
            format!("/api/projects/{id}/realtime?lastEventId=abc"),
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::GET,
            format!("/api/projects/{id}/realtime?lastEventId=1.5"),
            StatusCode::BAD_REQUEST,
        ),
        (Method::GET, "/api/nothing-here".into(), StatusCode::NOT_FOUND),
        (Method::PUT, "/api/projects".into(), StatusCode::METHOD_NOT_ALLOWED),
    ];
    for (method, path, status) in &gets {
        let response = s.request(method.clone(), path, Some(token)).send().await.unwrap();
        let error = expect_error(response, *status).await;
        assert!(!error.contains("internal"), "{method} {path}: {error}");
    }
    let response = s
        .request(Method::PUT, "/api/projects", Some(token))
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["allow"], "POST,GET,HEAD");
    let response = s.open_realtime(token, &id, LastEventId::Header("not-a-number")).await;
    expect_error(response, StatusCode::BAD_REQUEST).await;

    let patch = s
        .request(Method::PATCH, &format!("/api/fragments/{}", fragment.id), Some(token))
        .json(&json!({ "files": { "../../etc/passwd": "x" } }))
        .send()
        .await
        .unwrap();
    expect_error(patch, StatusCode::BAD_REQUEST).await;

    assert_eq!(s.stored().await, before, "a rejected request stored something");
}

pub async fn authentication(s: &TestServer) {
    let alice = s.user("alice").await;
    let id = s.create_project(&alice.token, "Build a todo app").await;
    let fragment = s.add_fragment(&alice, &id, &[("a.txt", "a")]).await.fragment.unwrap();
    let runs = s.finished_runs(&alice.token, &id, 1).await;
    let run_id = runs[0]["id"].as_str().unwrap();
    let before = s.stored().await;

    let login = s.store.create_login_token(&alice.id).await.unwrap().unwrap();
    let routes: Vec<(Method, String, Option<Value>)> = vec![
        (Method::GET, "/api/projects".into(), None),
        (Method::POST, "/api/projects".into(), Some(json!({ "message": "hi" }))),
        (Method::POST, "/api/projects".into(), Some(json!({ "message": "" }))),
        (Method::GET, format!("/api/projects/{id}"), None),
        (Method::GET, "/api/projects/not-a-uuid".into(), None),
        (Method::DELETE, format!("/api/projects/{id}"), None),
        (Method::GET, format!("/api/projects/{id}/runs"), None),
        (Method::GET, format!("/api/projects/{id}/realtime"), None),
        (Method::GET, format!("/api/messages?projectId={id}"), None),
        (
            Method::POST,
            "/api/messages".into(),
            Some(json!({ "projectId": id, "message": "hi" })),
        ),
        (
            Method::PATCH,
            format!("/api/fragments/{}", fragment.id),
            Some(json!({ "files": { "a.txt": "b" } })),
        ),
        (Method::GET, format!("/api/runs/{run_id}"), None),
        (Method::POST, "/api/uploads".into(), None),
    ];
    let bad_credentials: [Option<String>; 7] = [
        None,
        Some("Bearer".into()),
        Some("Bearer ".into()),
        Some("Bearer not-a-token".into()),
        Some(format!("Basic {}", alice.token)),
        Some(format!("Bearer {login}")),
        Some(format!("Bearer {}x", alice.token)),
    ];
    for (method, path, body) in &routes {
        for credentials in &bad_credentials {
            let mut request = s.request(method.clone(), path, None);
            if let Some(credentials) = credentials {
                request = request.header("Authorization", credentials);
            }
            if let Some(body) = body {
                request = request.json(body);
            }
            let response = request.send().await.unwrap();
            expect_error(response, StatusCode::UNAUTHORIZED).await;
        }
        let cookie = s
            .request(method.clone(), path, None)
            .header(COOKIE, "forgeai_session=forged")
            .send()
            .await
            .unwrap();
        expect_error(cookie, StatusCode::UNAUTHORIZED).await;
    }
    let event = json!({ "name": forgeai_code_agent::CODE_AGENT_EVENT, "data": { "projectId": id, "message": "hi" } });
    for key in ["not-a-token", login.as_str()] {
        let response = s
            .request(Method::POST, &format!("/e/{key}"), None)
            .json(&event)
            .send()
            .await
            .unwrap();
        expect_error(response, StatusCode::UNAUTHORIZED).await;
    }
    assert_eq!(s.stored().await, before, "an unauthenticated request stored something");

    // The scheme is case-insensitive and the token may be surrounded by spaces.
    for credentials in [format!("bearer {}", alice.token), format!("BEARER  {} ", alice.token)] {
        let response = s
            .request(Method::GET, "/api/projects", None)
            .header("Authorization", credentials)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }

    // The one-time login link: trades its token for a session cookie, once.
    let response = s
        .request(Method::GET, &format!("/login?token={login}"), None)
        .send()
        .await
        .unwrap();
    assert!(response.status().is_redirection(), "{}", response.status());
    assert_eq!(response.headers()[LOCATION], "/");
    let set_cookie = response.headers()[SET_COOKIE].to_str().unwrap().to_owned();
    assert!(set_cookie.starts_with("forgeai_session="), "{set_cookie}");
    assert!(
        set_cookie.contains("HttpOnly") && set_cookie.contains("SameSite=Lax") && set_cookie.contains("Path=/"),
        "{set_cookie}"
    );
    let session = set_cookie.split(';').next().unwrap().to_owned();
    let response = s
        .request(Method::GET, "/api/projects", None)
        .header(COOKIE, &session)
        .send()
        .await
        .unwrap();
    let (status, projects) = read_json(response).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(projects[0]["id"], id.as_str());
    let again = s
        .request(Method::GET, &format!("/login?token={login}"), None)
        .send()
        .await
        .unwrap();
    expect_error(again, StatusCode::BAD_REQUEST).await;
    for path in ["/login", "/login?token=", "/login?token=forged"] {
        let response = s.request(Method::GET, path, None).send().await.unwrap();
        expect_error(response, StatusCode::BAD_REQUEST).await;
    }

    // Signing in with an API token: a new session becomes the session cookie (never the API
    // token itself); signing out removes it (crates/server/tests/http/sessions.rs has more).
    let response = s
        .request(Method::POST, "/api/session", None)
        .json(&json!({ "token": format!(" {} ", alice.token) }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let set_cookie = response.headers()[SET_COOKIE].to_str().unwrap().to_owned();
    assert!(set_cookie.starts_with("forgeai_session="), "{set_cookie}");
    assert!(!set_cookie.contains(&alice.token), "{set_cookie}");
    assert!(set_cookie.contains("HttpOnly"), "{set_cookie}");
    let session = set_cookie.split(';').next().unwrap().to_owned();
    let response = s
        .request(Method::GET, &format!("/api/projects/{id}"), None)
        .header(COOKIE, &session)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let before_sign_in = s.stored().await;
    let refused: Vec<(Option<&str>, String, StatusCode)> = vec![
        (
            Some("application/json"),
            json!({ "token": "forged" }).to_string(),
            StatusCode::UNAUTHORIZED,
        ),
        (
            Some("application/json"),
            json!({ "token": login }).to_string(),
            StatusCode::UNAUTHORIZED,
        ),
        (
            Some("application/json"),
            json!({ "token": "" }).to_string(),
            StatusCode::UNAUTHORIZED,
        ),
        (Some("application/json"), "{}".into(), StatusCode::BAD_REQUEST),
        (Some("application/json"), "{\"token\": ".into(), StatusCode::BAD_REQUEST),
        (
            Some("text/plain"),
            json!({ "token": alice.token }).to_string(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        (
            None,
            json!({ "token": alice.token }).to_string(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
    ];
    for (content_type, body, status) in refused {
        let mut request = s.request(Method::POST, "/api/session", None).body(body.clone());
        if let Some(content_type) = content_type {
            request = request.header(CONTENT_TYPE, content_type);
        }
        let response = request.send().await.unwrap();
        assert!(!response.headers().contains_key(SET_COOKIE), "{body}");
        expect_error(response, status).await;
    }
    assert_eq!(s.stored().await, before_sign_in);
    let response = s
        .request(Method::DELETE, "/api/session", None)
        .header(COOKIE, &session)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let removal = response.headers()[SET_COOKIE].to_str().unwrap().to_owned();
    assert!(
        removal.starts_with("forgeai_session=;") && removal.contains("Max-Age=0"),
        "{removal}"
    );

    // Health and the API description need no credentials (metrics: sessions.rs).
    let (status, health) = s.call(Method::GET, "/healthz", None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(health, json!({ "status": "ok" }));
    let (status, _) = s.call(Method::GET, "/api/openapi.json", None, None).await;
    assert_eq!(status, StatusCode::OK);
}

/// Another user's project, messages, fragments, runs and stream behave exactly like ones that
/// do not exist, and nothing of theirs changes.
pub async fn other_users_data_is_invisible(s: &TestServer) {
    let alice = s.user("alice").await;
    let bob = s.user("bob").await;
    let id = s.create_project(&alice.token, "Alice's app").await;
    let fragment = s
        .add_fragment(&alice, &id, &[("app/page.tsx", "alice")])
        .await
        .fragment
        .unwrap();
    let runs = s.finished_runs(&alice.token, &id, 1).await;
    let run_id = runs[0]["id"].as_str().unwrap().to_owned();
    let (_, alice_messages) = s.get(&format!("/api/messages?projectId={id}"), &alice.token).await;
    let before = s.stored().await;

    let (status, listed) = s.get("/api/projects", &bob.token).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(listed, json!([]));

    // Each request on Alice's data, and the same request on an id that exists nowhere.
    let probes: Vec<(Method, String, String, Option<Value>)> = vec![
        (
            Method::GET,
            format!("/api/projects/{id}"),
            format!("/api/projects/{MISSING}"),
            None,
        ),
        (
            Method::DELETE,
            format!("/api/projects/{id}"),
            format!("/api/projects/{MISSING}"),
            None,
        ),
        (
            Method::GET,
            format!("/api/messages?projectId={id}"),
            format!("/api/messages?projectId={MISSING}"),
            None,
        ),
        (
            Method::GET,
            format!("/api/projects/{id}/runs"),
            format!("/api/projects/{MISSING}/runs"),
            None,
        ),
        (
            Method::GET,
            format!("/api/runs/{run_id}"),
            format!("/api/runs/{MISSING}"),
            None,
        ),
        (
            Method::GET,
            format!("/api/projects/{id}/realtime"),
            format!("/api/projects/{MISSING}/realtime"),
            None,
        ),
        (
            Method::PATCH,
            format!("/api/fragments/{}", fragment.id),
            format!("/api/fragments/{MISSING}"),
            Some(json!({ "files": { "app/page.tsx": "bob was here" } })),
        ),
        (
            Method::GET,
            format!("/api/fragments/{}", fragment.id),
            format!("/api/fragments/{MISSING}"),
            None,
        ),
    ];
    for (method, theirs, nowhere, body) in &probes {
        let mut answers = Vec::new();
        for path in [theirs, nowhere] {
            let mut request = s.request(method.clone(), path, Some(&bob.token));
            if let Some(body) = body {
                request = request.json(body);
            }
            answers.push(expect_error(request.send().await.unwrap(), StatusCode::NOT_FOUND).await);
        }
        assert_eq!(
            answers[0], answers[1],
            "{method} {theirs} tells Alice's data from missing data"
        );
    }
    for body in [
        json!({ "projectId": id, "message": "bob" }),
        json!({ "projectId": MISSING, "message": "bob" }),
    ] {
        let response = s
            .request(Method::POST, "/api/messages", Some(&bob.token))
            .json(&body)
            .send()
            .await
            .unwrap();
        expect_error(response, StatusCode::NOT_FOUND).await;
    }
    for last_event_id in [LastEventId::Header("0"), LastEventId::Query("0")] {
        let response = s.open_realtime(&bob.token, &id, last_event_id).await;
        expect_error(response, StatusCode::NOT_FOUND).await;
    }
    let event = json!({ "name": forgeai_code_agent::CODE_AGENT_EVENT, "data": { "projectId": id, "message": "bob" } });
    let response = s
        .request(Method::POST, &format!("/e/{}", bob.token), None)
        .json(&event)
        .send()
        .await
        .unwrap();
    expect_error(response, StatusCode::NOT_FOUND).await;

    assert_eq!(s.stored().await, before, "Bob's requests changed something");
    let (status, project) = s.get(&format!("/api/projects/{id}"), &alice.token).await;
    assert_eq!(status, StatusCode::OK, "{project}");
    let (_, messages) = s.get(&format!("/api/messages?projectId={id}"), &alice.token).await;
    assert_eq!(messages, alice_messages);
    assert_eq!(s.finished_runs(&alice.token, &id, 1).await.len(), 1);
    let (status, _) = s.get(&format!("/api/runs/{run_id}"), &alice.token).await;
    assert_eq!(status, StatusCode::OK);
}

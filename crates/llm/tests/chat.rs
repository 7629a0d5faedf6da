//! forgeai-llm against the mock OpenAI server, over real HTTP.

use std::time::{Duration, Instant};

use forgeai_llm::{
    ChatRequest, ChatResponse, ContentPart, FinishReason, LlmClient, LlmConfig, LlmError, Message, StreamEvent, Tool,
    ToolCall, ToolChoice, Usage, data_url,
};
use forgeai_test_support::{MockOpenAi, MockReply};
use serde_json::{Value, json};

fn client_for(mock: &MockOpenAi) -> LlmClient {
    client_with(mock, |_| {})
}

fn client_with(mock: &MockOpenAi, tweak: impl FnOnce(&mut LlmConfig)) -> LlmClient {
    let mut config = LlmConfig::new(mock.base_url(), Some("sk-test".into())).with_base_delay(Duration::from_millis(5));
    tweak(&mut config);
    LlmClient::new(config).unwrap()
}

fn hello_request() -> ChatRequest {
    ChatRequest::new("test-model", vec![Message::system("be brief"), Message::user("hi")])
}

fn tools() -> Vec<Tool> {
    vec![
        Tool::function(
            "terminal",
            "Run a shell command",
            json!({"type":"object","properties":{"command":{"type":"string"}},"required":["command"]}),
        ),
        Tool::function(
            "readFiles",
            "Read files",
            json!({"type":"object","properties":{"files":{"type":"array","items":{"type":"string"}}},"required":["files"]}),
        ),
    ]
}

#[tokio::test]
async fn text_reply() {
    let mock = MockOpenAi::start([MockReply::text("Hello there!")]).await;
    let r = client_for(&mock).chat(&hello_request()).await.unwrap();
    assert_eq!(r.content.as_deref(), Some("Hello there!"));
    assert_eq!(r.text(), "Hello there!");
    assert!(r.tool_calls.is_empty());
    assert_eq!(r.finish_reason, Some(FinishReason::Stop));
    assert_eq!(r.model.as_deref(), Some("test-model"));

    let reqs = mock.recorded();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].path, "/v1/chat/completions");
    assert_eq!(reqs[0].header("authorization"), Some("Bearer sk-test"));
    assert_eq!(
        reqs[0].body,
        json!({
            "model": "test-model",
            "messages": [{"role":"system","content":"be brief"},{"role":"user","content":"hi"}],
            "stream": false
        })
    );
}

#[tokio::test]
async fn tool_call_reply() {
    let mock = MockOpenAi::start([MockReply::tool_call(
        "call_abc",
        "terminal",
        json!({"command": "npm install zod --yes"}),
    )])
    .await;
    let req = hello_request().with_tools(tools()).with_tool_choice(ToolChoice::Auto);
    let r = client_for(&mock).chat(&req).await.unwrap();
    assert_eq!(r.content, None);
    assert_eq!(r.finish_reason, Some(FinishReason::ToolCalls));
    assert_eq!(
        r.tool_calls,
        vec![ToolCall::new(
            "call_abc",
            "terminal",
            r#"{"command":"npm install zod --yes"}"#
        )]
    );
    let args: Value = r.tool_calls[0].parse_arguments().unwrap();
    assert_eq!(args["command"], "npm install zod --yes");

    let body = &mock.requests()[0];
    assert_eq!(body["tool_choice"], "auto");
    assert_eq!(body["tools"][0]["type"], "function");
    assert_eq!(body["tools"][0]["function"]["name"], "terminal");
    assert_eq!(body["tools"][0]["function"]["description"], "Run a shell command");
    assert_eq!(
        body["tools"][0]["function"]["parameters"]["required"],
        json!(["command"])
    );
    assert_eq!(body["tools"][1]["function"]["name"], "readFiles");

    // Feeding the result back: assistant tool_calls + tool message in wire format.
    mock.push(MockReply::text("done"));
    let mut messages = req.messages.clone();
    messages.push(r.to_message());
    messages.push(Message::tool("call_abc", "added 1 package"));
    let r2 = client_for(&mock)
        .chat(&ChatRequest::new("test-model", messages).with_tools(tools()))
        .await
        .unwrap();
    assert_eq!(r2.text(), "done");
    let body = &mock.requests()[1];
    assert_eq!(
        body["messages"][2],
        json!({"role":"assistant","content":null,"tool_calls":[{"id":"call_abc","type":"function",
            "function":{"name":"terminal","arguments":"{\"command\":\"npm install zod --yes\"}"}}]})
    );
    assert_eq!(
        body["messages"][3],
        json!({"role":"tool","tool_call_id":"call_abc","content":"added 1 package"})
    );
}

fn mixed_reply() -> MockReply {
    MockReply::text("Let me look at the files and then install a package — ünïcödé ✓.")
        .with_tool_call(
            "call_1",
            "readFiles",
            json!({"files": ["app/page.tsx", "app/layout.tsx"]}),
        )
        .with_tool_call(
            "call_2",
            "terminal",
            json!({"command": "npm install framer-motion --yes"}),
        )
        .usage(321, 45)
}

#[tokio::test]
async fn streaming_and_non_streaming_agree() {
    let mock = MockOpenAi::start([mixed_reply(), mixed_reply()]).await;
    let client = client_for(&mock);
    let req = hello_request().with_tools(tools());

    let plain = client.chat(&req).await.unwrap();
    let mut events = Vec::new();
    let streamed = client.chat_stream(&req, |e| events.push(e)).await.unwrap();
    assert_eq!(plain, streamed);
    assert_eq!(plain.tool_calls.len(), 2);
    assert_eq!(plain.tool_calls[1].name, "terminal");
    assert_eq!(
        plain.usage,
        Some(Usage {
            prompt_tokens: 321,
            completion_tokens: 45,
            total_tokens: 366
        })
    );

    // The stream really arrived in pieces, and the pieces add up.
    let text: String = events
        .iter()
        .filter_map(|e| match e {
            StreamEvent::Text(t) => Some(t.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(text, plain.text());
    assert!(events.iter().filter(|e| matches!(e, StreamEvent::Text(_))).count() > 1);
    let args_1: String = events
        .iter()
        .filter_map(|e| match e {
            StreamEvent::ToolCallDelta {
                index: 0, arguments, ..
            } => Some(arguments.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(args_1, plain.tool_calls[0].arguments);

    let bodies = mock.requests();
    assert_eq!(bodies[0]["stream"], false);
    assert!(bodies[0].get("stream_options").is_none());
    assert_eq!(bodies[1]["stream"], true);
    assert_eq!(bodies[1]["stream_options"], json!({"include_usage": true}));

    // `chat` with `stream: true` takes the streaming path too.
    mock.push(mixed_reply());
    let via_flag = client.chat(&req.clone().with_stream(true)).await.unwrap();
    assert_eq!(via_flag, plain);
    assert_eq!(mock.requests()[2]["stream"], true);
}

#[tokio::test]
async fn retry_after_429_is_honoured() {
    let mock = MockOpenAi::start([
        MockReply::error(429, "Rate limit reached").retry_after("1"),
        MockReply::text("ok"),
    ])
    .await;
    let started = Instant::now();
    let r = client_for(&mock).chat(&hello_request()).await.unwrap();
    assert_eq!(r.text(), "ok");
    let reqs = mock.recorded();
    assert_eq!(reqs.len(), 2);
    let gap = reqs[1].received_at - reqs[0].received_at;
    assert!(gap >= Duration::from_millis(950), "retried after only {gap:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn retry_after_http_date_and_streaming_retry() {
    // An HTTP date in the past means "now"; streaming requests retry too.
    let mock = MockOpenAi::start([
        MockReply::error(503, "overloaded").retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
        MockReply::text("ok"),
    ])
    .await;
    let r = client_for(&mock)
        .chat(&hello_request().with_stream(true))
        .await
        .unwrap();
    assert_eq!(r.text(), "ok");
    assert_eq!(mock.request_count(), 2);
}

#[tokio::test]
async fn server_errors_are_retried() {
    let mock = MockOpenAi::start([
        MockReply::error(500, "boom"),
        MockReply::error_body(502, "<html>Bad Gateway</html>"),
        MockReply::text("recovered"),
    ])
    .await;
    let r = client_for(&mock).chat(&hello_request()).await.unwrap();
    assert_eq!(r.text(), "recovered");
    assert_eq!(mock.request_count(), 3);
}

#[tokio::test]
async fn retries_give_up_after_max_retries() {
    let mock = MockOpenAi::start((0..5).map(|_| MockReply::error(500, "still broken"))).await;
    let err = client_with(&mock, |c| c.max_retries = 2)
        .chat(&hello_request())
        .await
        .unwrap_err();
    assert_eq!(mock.request_count(), 3);
    assert_eq!(err.status(), Some(500));
    assert_eq!(err.provider_message(), Some("still broken"));
    assert!(err.is_retriable(), "a durable engine may try again later");
}

#[tokio::test]
async fn bad_request_fails_at_once() {
    let mock = MockOpenAi::start([
        MockReply::error(400, "Invalid schema for response_format 'spec': missing 'required'"),
        MockReply::text("must not be reached"),
    ])
    .await;
    let started = Instant::now();
    let err = client_for(&mock).chat(&hello_request()).await.unwrap_err();
    assert_eq!(mock.request_count(), 1);
    assert!(!err.is_retriable());
    assert_eq!(err.status(), Some(400));
    assert!(
        err.to_string().contains("Invalid schema for response_format 'spec'"),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_millis(500));
}

#[tokio::test]
async fn auth_and_not_found_fail_at_once() {
    for status in [401, 403, 404, 422] {
        let mock = MockOpenAi::start([MockReply::error(status, "nope"), MockReply::text("x")]).await;
        let err = client_for(&mock).chat(&hello_request()).await.unwrap_err();
        assert_eq!(mock.request_count(), 1, "{status}");
        assert!(matches!(err, LlmError::Api { status: s, .. } if s == status));
        assert!(!err.is_retriable());
    }
}

#[tokio::test]
async fn image_input_is_sent_as_image_url_parts() {
    let mock = MockOpenAi::start([MockReply::text("a hero section")]).await;
    let png = data_url("image/png", &[0x89, b'P', b'N', b'G']);
    let req = ChatRequest::new(
        "vision-model",
        vec![Message::user_parts(vec![
            ContentPart::text("Describe this design"),
            ContentPart::image_url("https://example.com/mock.png"),
            ContentPart::image_url(png.clone()),
        ])],
    );
    client_for(&mock).chat(&req).await.unwrap();
    let body = &mock.requests()[0];
    assert_eq!(
        body["messages"][0],
        json!({"role":"user","content":[
            {"type":"text","text":"Describe this design"},
            {"type":"image_url","image_url":{"url":"https://example.com/mock.png"}},
            {"type":"image_url","image_url":{"url":png}}
        ]})
    );
    assert!(png.starts_with("data:image/png;base64,"));
}

#[tokio::test]
async fn json_schema_response_format_is_sent() {
    let schema = json!({
        "type": "object",
        "properties": {"title": {"type": "string"}},
        "required": ["title"],
        "additionalProperties": false
    });
    let mock = MockOpenAi::start([MockReply::text(r#"{"title":"Landing page"}"#)]).await;
    let req = hello_request()
        .with_json_schema("design_spec", schema.clone())
        .with_temperature(0.2);
    let r = client_for(&mock).chat(&req).await.unwrap();
    let body = &mock.requests()[0];
    assert_eq!(
        body["response_format"],
        json!({"type":"json_schema","json_schema":{"name":"design_spec","schema":schema,"strict":true}})
    );
    assert_eq!(body["temperature"], json!(0.2));
    let parsed: Value = r.parse_json().unwrap();
    assert_eq!(parsed["title"], "Landing page");
}

#[tokio::test]
async fn usage_is_parsed() {
    let mock = MockOpenAi::start([
        MockReply::text("a").usage(1200, 34),
        MockReply::text("b").usage(7, 3),
        MockReply::text("c").without_usage(),
    ])
    .await;
    let client = client_for(&mock);
    let a = client.chat(&hello_request()).await.unwrap();
    assert_eq!(
        a.usage,
        Some(Usage {
            prompt_tokens: 1200,
            completion_tokens: 34,
            total_tokens: 1234
        })
    );
    let b = client.chat(&hello_request().with_stream(true)).await.unwrap();
    assert_eq!(
        b.usage,
        Some(Usage {
            prompt_tokens: 7,
            completion_tokens: 3,
            total_tokens: 10
        })
    );
    assert_eq!(
        a.usage.unwrap() + b.usage.unwrap(),
        Usage {
            prompt_tokens: 1207,
            completion_tokens: 37,
            total_tokens: 1244
        }
    );
    let c = client.chat(&hello_request()).await.unwrap();
    assert_eq!(c.usage, None);
}

#[tokio::test]
async fn no_authorization_header_without_key_and_base_without_v1() {
    let mock = MockOpenAi::start([MockReply::text("local")]).await;
    let client = LlmClient::new(LlmConfig::new(mock.url(), Some(String::new()))).unwrap();
    assert_eq!(client.chat(&hello_request()).await.unwrap().text(), "local");
    let req = &mock.recorded()[0];
    assert_eq!(req.path, "/chat/completions");
    assert_eq!(req.header("authorization"), None);
}

#[tokio::test]
async fn tolerant_non_streaming_parsing() {
    // llama.cpp / Ollama-ish: no id, arguments as an object, no usage total,
    // extra unknown fields, content null.
    let mock = MockOpenAi::start([MockReply::raw_json(json!({
        "object": "chat.completion",
        "choices": [{"message": {"role": "assistant", "content": null, "reasoning_content": "hmm",
            "tool_calls": [{"function": {"name": "terminal", "arguments": {"command": "ls"}}}]},
            "finish_reason": "tool_calls"}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 2},
        "timings": {"predicted_ms": 12.5}
    }))])
    .await;
    let r = client_for(&mock).chat(&hello_request()).await.unwrap();
    assert_eq!(
        r,
        ChatResponse {
            tool_calls: vec![ToolCall::new("call_0", "terminal", r#"{"command":"ls"}"#)],
            finish_reason: Some(FinishReason::ToolCalls),
            usage: Some(Usage {
                prompt_tokens: 5,
                completion_tokens: 2,
                total_tokens: 7
            }),
            ..Default::default()
        }
    );
}

#[tokio::test]
async fn tolerant_stream_parsing() {
    // Comments, CRLF, no spaces after "data:", usage inside the last chunk, no
    // tool-call index, and arguments split mid-UTF-8 by the 7-byte framing.
    let body = concat!(
        ": OPENROUTER PROCESSING\r\n\r\n",
        "data:{\"id\":\"gen-1\",\"choices\":[{\"delta\":{\"role\":\"assistant\",\"content\":\"Héllo \"}}]}\r\n\r\n",
        "data: {\"choices\":[{\"delta\":{\"content\":\"wörld\"}}]}\r\n\r\n",
        "data: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"id\":\"t1\",\"function\":{\"name\":\"readFiles\",\"arguments\":\"{\\\"files\\\":\"}}]}}]}\n\n",
        "data: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"function\":{\"arguments\":\"[\\\"ä.tsx\\\"]}\"}}]}}]}\n\n",
        "data: {\"choices\":[{\"delta\":{},\"finish_reason\":\"tool_calls\"}],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":4,\"total_tokens\":13}}\n\n",
        "data: [DONE]\n\n",
    );
    let mock = MockOpenAi::start([MockReply::raw_sse(body)]).await;
    let r = client_for(&mock)
        .chat(&hello_request().with_stream(true))
        .await
        .unwrap();
    assert_eq!(r.id.as_deref(), Some("gen-1"));
    assert_eq!(r.text(), "Héllo wörld");
    assert_eq!(
        r.tool_calls,
        vec![ToolCall::new("t1", "readFiles", r#"{"files":["ä.tsx"]}"#)]
    );
    assert_eq!(r.usage.unwrap().total_tokens, 13);
}

#[tokio::test]
async fn server_ignoring_stream_flag_still_works() {
    let mock = MockOpenAi::start([MockReply::raw_json(json!({
        "choices": [{"index": 0, "message": {"content": "whole"}, "finish_reason": "stop"}]
    }))])
    .await;
    let mut seen = Vec::new();
    let r = client_for(&mock)
        .chat_stream(&hello_request(), |e| seen.push(e))
        .await
        .unwrap();
    assert_eq!(r.text(), "whole");
    assert_eq!(seen, vec![StreamEvent::Text("whole".into())]);
}

#[tokio::test]
async fn error_inside_stream_is_reported() {
    let body = concat!(
        "data: {\"choices\":[{\"delta\":{\"content\":\"partial\"}}]}\n\n",
        "data: {\"error\":{\"message\":\"upstream provider crashed\",\"code\":502}}\n\n",
    );
    let mock = MockOpenAi::start([MockReply::raw_sse(body), MockReply::text("not used")]).await;
    let err = client_for(&mock)
        .chat(&hello_request().with_stream(true))
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(502));
    assert!(err.to_string().contains("upstream provider crashed"));
    assert!(err.is_retriable());
    // Text had already been delivered, so the client did not retry by itself.
    assert_eq!(mock.request_count(), 1);
}

#[tokio::test]
async fn truncated_stream_is_a_retriable_error() {
    let mock = MockOpenAi::start([MockReply::raw_sse(
        "data: {\"choices\":[{\"delta\":{\"content\":\"half an ans\"}}]}\n\n",
    )])
    .await;
    let err = client_for(&mock)
        .chat(&hello_request().with_stream(true))
        .await
        .unwrap_err();
    assert!(matches!(err, LlmError::Stream(_)), "{err:?}");
    assert!(err.is_retriable());
}

#[tokio::test]
async fn timeout_is_retried() {
    let mock = MockOpenAi::start([
        MockReply::text("too late").delay(Duration::from_millis(800)),
        MockReply::text("in time"),
    ])
    .await;
    let client = client_with(&mock, |c| c.request_timeout = Duration::from_millis(200));
    let r = client.chat(&hello_request()).await.unwrap();
    assert_eq!(r.text(), "in time");
    assert_eq!(mock.request_count(), 2);
}

#[tokio::test]
async fn connect_error_is_retriable() {
    // Port 9 (discard), where nothing listens on these machines, as the other tests' unreachable
    // URLs: a port freed by a dropped listener could be taken by a mock server of a test running
    // in parallel, which then resets the connection instead of refusing it.
    let config = LlmConfig::new("http://127.0.0.1:9/v1", None)
        .with_max_retries(1)
        .with_base_delay(Duration::from_millis(1));
    let err = LlmClient::new(config)
        .unwrap()
        .chat(&hello_request())
        .await
        .unwrap_err();
    assert!(matches!(err, LlmError::Connect(_)), "{err:?}");
    assert!(err.is_retriable());
}

#[tokio::test]
async fn responder_mode_answers_from_the_request() {
    let mock = MockOpenAi::with_responder(|req| {
        let last = req["messages"]
            .as_array()
            .and_then(|m| m.last())
            .cloned()
            .unwrap_or_default();
        MockReply::text(format!("echo: {}", last["content"].as_str().unwrap_or("")))
    })
    .await;
    let client = client_for(&mock);
    let calls = (0..8).map(|i| {
        let client = client.clone();
        async move {
            let req = ChatRequest::new("m", vec![Message::user(format!("run {i}"))]).with_stream(i % 2 == 0);
            client.chat(&req).await.unwrap().text().to_owned()
        }
    });
    let answers = futures::future::join_all(calls).await;
    for (i, a) in answers.iter().enumerate() {
        assert_eq!(a, &format!("echo: run {i}"));
    }
    assert_eq!(mock.request_count(), 8);
}

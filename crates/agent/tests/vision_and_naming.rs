//! The design-spec step and the naming agent against the mock model server.

mod common;

use common::*;
use forgeai_agent::{
    AgentError, AgentInput, DesignSpec, FALLBACK_TITLE, NAMING_PROMPT, build_agent_input,
    extract_design_spec_from_image, generate_title,
};
use forgeai_engine::{Function, StepError};
use forgeai_llm::data_url;
use forgeai_test_support::{MockOpenAi, MockReply};
use serde_json::{Value, json};

fn spec_json() -> Value {
    json!({
        "meta": {"title": "Coffee landing page", "mode": "match_layout", "uncertainties": ["footer text is blurry"]},
        "theme": {
            "primaryColorHex": "#6F4E37", "backgroundColorHex": "#FFFFFF", "textColorHex": null,
            "radius": "lg", "fontStyle": "serif"
        },
        "pages": [{
            "route": "/",
            "sections": [{
                "type": "hero",
                "layout": {"container": "lg", "columns": 2, "align": "left"},
                "content": {
                    "heading": "Fresh roasted", "subheading": null, "body": "Every morning.",
                    "buttons": [{"label": "Order now", "variant": "default"}],
                    "items": [{"title": "Beans", "description": null}]
                },
                "media": [{"kind": "photo", "aspect": "wide", "alt": "A cup of coffee"}]
            }]
        }]
    })
}

#[tokio::test]
async fn the_vision_step_sends_the_image_and_builds_the_design_spec_input() {
    let mock = MockOpenAi::start([MockReply::text(spec_json().to_string())]).await;
    let llm = llm_for(&mock);
    let image = data_url("image/png", b"\x89PNG fake");
    // As the `build-agent-input` step of a real engine run: the result must
    // survive the journal.
    let function = Function::new("vision-test", TRIGGER, move |ctx, _event| {
        let (llm, image) = (llm.clone(), image.clone());
        async move {
            ctx.step("build-agent-input", || async {
                build_agent_input(&llm, "Make the buttons rounder", Some(&image))
                    .await
                    .map_err(AgentError::into_step_error)
            })
            .await
        }
    });
    let harness = Harness::with_function(function).await;

    let detail = harness.run(json!({})).await;
    let input: AgentInput =
        serde_json::from_value(detail.run.output.clone().unwrap_or_default()).expect("an AgentInput");

    let spec: DesignSpec = serde_json::from_value(spec_json()).unwrap();
    assert_eq!(input.design_spec.as_ref(), Some(&spec));
    let spec_text = input
        .text
        .strip_prefix("designSpec:\n")
        .and_then(|rest| rest.strip_suffix("\n\nUser notes:\nMake the buttons rounder"))
        .expect("designSpec:\n<spec JSON>\n\nUser notes:\n<message>");
    assert!(spec_text.contains('\n'), "the spec is pretty-printed");
    assert_eq!(serde_json::from_str::<Value>(spec_text).unwrap(), spec_json());

    let requests = mock.requests();
    assert_eq!(requests.len(), 1);
    let request = &requests[0];
    assert_eq!(request["model"], VISION_MODEL);
    let user = &request["messages"][1];
    assert_eq!(user["role"], "user");
    assert!(
        user["content"][0]["text"]
            .as_str()
            .unwrap()
            .contains("Make the buttons rounder")
    );
    assert_eq!(user["content"][1]["type"], "image_url");
    assert_eq!(
        user["content"][1]["image_url"]["url"],
        data_url("image/png", b"\x89PNG fake")
    );
    let format = &request["response_format"];
    assert_eq!(format["type"], "json_schema");
    assert_eq!(format["json_schema"]["name"], "design_spec");
    assert_eq!(format["json_schema"]["strict"], true);
    assert_eq!(format["json_schema"]["schema"], DesignSpec::json_schema());
    assert_eq!(format["json_schema"]["schema"]["additionalProperties"], false);
}

#[tokio::test]
async fn https_images_are_sent_as_given() {
    let mock = MockOpenAi::start([MockReply::text(format!("```json\n{}\n```", spec_json()))]).await;
    let spec = extract_design_spec_from_image(&llm_for(&mock), "https://img.example/shot.png", "")
        .await
        .expect("a spec");
    assert_eq!(spec.theme.primary_color_hex.as_deref(), Some("#6F4E37"));
    assert_eq!(
        mock.requests()[0]["messages"][1]["content"][1]["image_url"]["url"],
        "https://img.example/shot.png"
    );
}

#[tokio::test]
async fn without_an_image_the_message_is_the_input() {
    let mock = MockOpenAi::start([]).await;
    let input = build_agent_input(&llm_for(&mock), "Build a todo app", None)
        .await
        .unwrap();
    assert_eq!(
        input,
        AgentInput {
            text: "Build a todo app".into(),
            design_spec: None
        }
    );
    let input = build_agent_input(&llm_for(&mock), "Build a todo app", Some("  "))
        .await
        .unwrap();
    assert_eq!(input.design_spec, None);
    assert_eq!(mock.request_count(), 0);
}

#[tokio::test]
async fn unusable_vision_answers_and_inputs_are_errors() {
    let mock = MockOpenAi::start([
        MockReply::text("{\"meta\": {}}"),
        MockReply::raw_json(json!({
            "choices": [{"index": 0, "finish_reason": "stop",
                "message": {"role": "assistant", "content": null, "refusal": "I can't help with that."}}]
        })),
    ])
    .await;
    let llm = llm_for(&mock);

    let invalid = extract_design_spec_from_image(&llm, "https://img.example/a.png", "")
        .await
        .unwrap_err();
    assert!(matches!(invalid, AgentError::InvalidAnswer { .. }), "{invalid:?}");
    assert!(invalid.is_retriable());

    let refused = extract_design_spec_from_image(&llm, "https://img.example/a.png", "")
        .await
        .unwrap_err();
    assert!(
        matches!(refused, AgentError::Refused(ref text) if text.contains("can't help")),
        "{refused:?}"
    );
    let step_error: StepError = refused.into_step_error();
    assert!(!step_error.is_retriable());

    let bad_url = extract_design_spec_from_image(&llm, "file:///etc/passwd", "")
        .await
        .unwrap_err();
    assert!(matches!(bad_url, AgentError::InvalidInput(_)), "{bad_url:?}");
    assert_eq!(mock.request_count(), 2, "a bad URL is not sent");
}

#[tokio::test]
async fn the_naming_agent_returns_a_clean_short_title() {
    let mock = MockOpenAi::start([
        MockReply::text("\"Coffee Shop Landing Page.\"\n"),
        MockReply::text("   "),
    ])
    .await;
    let llm = llm_for(&mock);

    let title = generate_title(&llm, "Build me a landing page for my coffee shop")
        .await
        .unwrap();
    assert_eq!(title, "Coffee Shop Landing Page");
    let request = &mock.requests()[0];
    assert_eq!(request["model"], NAMER_MODEL);
    assert_eq!(
        request["messages"][0],
        json!({"role": "system", "content": NAMING_PROMPT})
    );
    assert_eq!(
        request["messages"][1]["content"],
        "Build me a landing page for my coffee shop"
    );
    assert!(NAMING_PROMPT.contains("2 to 5 words"));

    assert_eq!(generate_title(&llm, "x").await.unwrap(), FALLBACK_TITLE);
}

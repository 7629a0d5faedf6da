//! Request and response types, serialised in the chat-completions wire format.

use base64::Engine as _;
use serde::de::{DeserializeOwned, Deserializer};
use serde::ser::Serializer;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

// ---------------------------------------------------------------- messages

/// One chat message. Serialises to the wire format (`{"role": "...", ...}`)
/// and back, so conversations can be stored (e.g. in a durable step journal).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "role", rename_all = "lowercase")]
pub enum Message {
    /// System prompt.
    System {
        /// Text of the prompt.
        content: String,
    },
    /// A user turn: text, or parts (text and images).
    User {
        /// The content.
        content: UserContent,
    },
    /// An assistant turn, possibly asking for tool calls.
    Assistant {
        /// Text (none when the turn only calls tools).
        #[serde(default)]
        content: Option<String>,
        /// Tool calls requested by the assistant.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        tool_calls: Vec<ToolCall>,
    },
    /// The result of one tool call, fed back to the model.
    Tool {
        /// The [`ToolCall::id`] this answers.
        tool_call_id: String,
        /// The result, as text (often JSON).
        content: String,
    },
}

impl Message {
    /// A system message.
    pub fn system(content: impl Into<String>) -> Self {
        Message::System {
            content: content.into(),
        }
    }

    /// A plain-text user message.
    pub fn user(content: impl Into<String>) -> Self {
        Message::User {
            content: UserContent::Text(content.into()),
        }
    }

    /// A user message made of parts.
    pub fn user_parts(parts: Vec<ContentPart>) -> Self {
        Message::User {
            content: UserContent::Parts(parts),
        }
    }

    /// A user message with text followed by one image (`https://` or `data:` URL).
    pub fn user_with_image(text: impl Into<String>, image_url: impl Into<String>) -> Self {
        Self::user_parts(vec![ContentPart::text(text), ContentPart::image_url(image_url)])
    }

    /// A plain-text assistant message.
    pub fn assistant(content: impl Into<String>) -> Self {
        Message::Assistant {
            content: Some(content.into()),
            tool_calls: Vec::new(),
        }
    }

    /// An assistant message that calls tools (with optional text).
    pub fn assistant_tool_calls(content: Option<String>, tool_calls: Vec<ToolCall>) -> Self {
        Message::Assistant { content, tool_calls }
    }

    /// A tool result.
    pub fn tool(tool_call_id: impl Into<String>, content: impl Into<String>) -> Self {
        Message::Tool {
            tool_call_id: tool_call_id.into(),
            content: content.into(),
        }
    }
}

/// User content: a string, or a list of parts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum UserContent {
    /// Plain text.
    Text(String),
    /// Text and image parts.
    Parts(Vec<ContentPart>),
}

impl From<String> for UserContent {
    fn from(s: String) -> Self {
        UserContent::Text(s)
    }
}

impl From<&str> for UserContent {
    fn from(s: &str) -> Self {
        UserContent::Text(s.to_owned())
    }
}

/// One part of a user message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ContentPart {
    /// `{"type":"text","text":..}`
    Text {
        /// The text.
        text: String,
    },
    /// `{"type":"image_url","image_url":{"url":..}}`
    ImageUrl {
        /// The image.
        image_url: ImageUrl,
    },
}

impl ContentPart {
    /// A text part.
    pub fn text(text: impl Into<String>) -> Self {
        ContentPart::Text { text: text.into() }
    }

    /// An image part from an `https://` or `data:` URL.
    pub fn image_url(url: impl Into<String>) -> Self {
        ContentPart::ImageUrl {
            image_url: ImageUrl {
                url: url.into(),
                detail: None,
            },
        }
    }

    /// An image part from raw bytes (sent inline as a base64 `data:` URL).
    pub fn image_bytes(mime: &str, bytes: &[u8]) -> Self {
        Self::image_url(data_url(mime, bytes))
    }
}

/// Image reference of an `image_url` part.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageUrl {
    /// `https://…` or `data:<mime>;base64,…`.
    pub url: String,
    /// Optional detail level.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<ImageDetail>,
}

/// `image_url.detail`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ImageDetail {
    /// Let the model decide.
    Auto,
    /// Low resolution.
    Low,
    /// High resolution.
    High,
}

/// Builds a `data:<mime>;base64,<..>` URL from raw bytes.
pub fn data_url(mime: &str, bytes: &[u8]) -> String {
    format!(
        "data:{mime};base64,{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    )
}

// ---------------------------------------------------------------- tool calls

/// A tool call requested by the assistant.
///
/// Serialises as `{"id","type":"function","function":{"name","arguments"}}`.
/// On input, `arguments` given as a JSON object (some servers do) is
/// normalised to its JSON string, and missing arguments become `"{}"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "WireToolCall", from = "WireToolCallIn")]
pub struct ToolCall {
    /// Call id, echoed back in [`Message::Tool`]. Servers that send none get
    /// `call_<index>`.
    pub id: String,
    /// Function name.
    pub name: String,
    /// Arguments as the raw JSON text produced by the model (may be invalid JSON).
    pub arguments: String,
}

impl ToolCall {
    /// A tool call.
    pub fn new(id: impl Into<String>, name: impl Into<String>, arguments: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            name: name.into(),
            arguments: arguments.into(),
        }
    }

    /// Parses the arguments (an empty string counts as `{}`).
    pub fn parse_arguments<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        let a = self.arguments.trim();
        serde_json::from_str(if a.is_empty() { "{}" } else { a })
    }
}

#[derive(Serialize)]
struct WireToolCall {
    id: String,
    #[serde(rename = "type")]
    kind: &'static str,
    function: WireFunctionCall,
}

#[derive(Serialize)]
struct WireFunctionCall {
    name: String,
    arguments: String,
}

impl From<ToolCall> for WireToolCall {
    fn from(t: ToolCall) -> Self {
        WireToolCall {
            id: t.id,
            kind: "function",
            function: WireFunctionCall {
                name: t.name,
                arguments: t.arguments,
            },
        }
    }
}

#[derive(Deserialize)]
struct WireToolCallIn {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    function: Option<WireFunctionCallIn>,
}

#[derive(Deserialize)]
struct WireFunctionCallIn {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    arguments: Value,
}

impl From<WireToolCallIn> for ToolCall {
    fn from(w: WireToolCallIn) -> Self {
        let (name, args) = match w.function {
            Some(f) => (f.name.unwrap_or_default(), f.arguments),
            None => (String::new(), Value::Null),
        };
        ToolCall {
            id: w.id.unwrap_or_default(),
            name,
            arguments: normalize_arguments(&args),
        }
    }
}

/// Tool-call arguments as a string: strings as-is, null/missing as `{}`,
/// anything else (an object, usually) as its JSON text.
pub(crate) fn normalize_arguments(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "{}".to_owned(),
        other => other.to_string(),
    }
}

// ---------------------------------------------------------------- tools

/// A function the model may call.
#[derive(Debug, Clone, PartialEq)]
pub struct Tool {
    /// Function name.
    pub name: String,
    /// What it does (shown to the model).
    pub description: Option<String>,
    /// JSON schema of the arguments object.
    pub parameters: Value,
    /// OpenAI strict mode for the arguments (omitted when `None`).
    pub strict: Option<bool>,
}

impl Tool {
    /// A function tool.
    pub fn function(name: impl Into<String>, description: impl Into<String>, parameters: Value) -> Self {
        Self {
            name: name.into(),
            description: Some(description.into()),
            parameters,
            strict: None,
        }
    }
}

impl Serialize for Tool {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut f = Map::new();
        f.insert("name".into(), Value::String(self.name.clone()));
        if let Some(d) = &self.description {
            f.insert("description".into(), Value::String(d.clone()));
        }
        f.insert("parameters".into(), self.parameters.clone());
        if let Some(strict) = self.strict {
            f.insert("strict".into(), Value::Bool(strict));
        }
        json!({"type": "function", "function": f}).serialize(s)
    }
}

/// `tool_choice`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolChoice {
    /// `"auto"`: the model decides.
    Auto,
    /// `"none"`: no tool calls.
    None,
    /// `"required"`: at least one tool call.
    Required,
    /// Force this function.
    Function(String),
}

impl Serialize for ToolChoice {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            ToolChoice::Auto => s.serialize_str("auto"),
            ToolChoice::None => s.serialize_str("none"),
            ToolChoice::Required => s.serialize_str("required"),
            ToolChoice::Function(name) => json!({"type": "function", "function": {"name": name}}).serialize(s),
        }
    }
}

// ---------------------------------------------------------------- response format

/// `response_format`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ResponseFormat {
    /// Free text (the default).
    Text,
    /// Any JSON object.
    JsonObject,
    /// JSON matching a schema (structured output).
    JsonSchema {
        /// The schema.
        json_schema: JsonSchemaFormat,
    },
}

impl ResponseFormat {
    /// Strict JSON-schema output.
    pub fn json_schema(name: impl Into<String>, schema: Value) -> Self {
        ResponseFormat::JsonSchema {
            json_schema: JsonSchemaFormat {
                name: name.into(),
                description: None,
                schema,
                strict: Some(true),
            },
        }
    }
}

/// The `json_schema` object of [`ResponseFormat::JsonSchema`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JsonSchemaFormat {
    /// Schema name (`[a-zA-Z0-9_-]`, ≤ 64 chars for OpenAI).
    pub name: String,
    /// Optional description.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The JSON schema.
    pub schema: Value,
    /// Strict mode (OpenAI requires `additionalProperties: false` and all
    /// properties listed in `required` when true).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub strict: Option<bool>,
}

// ---------------------------------------------------------------- request

/// A chat-completions request.
///
/// `stream` selects the transport when calling
/// [`LlmClient::chat`](crate::LlmClient::chat); both give the same
/// [`ChatResponse`]. `extra` is merged into the top-level JSON body for
/// server-specific options (e.g. `reasoning_effort`, `seed`, `top_p`).
#[derive(Debug, Clone, PartialEq, Serialize, Default)]
pub struct ChatRequest {
    /// Model name.
    pub model: String,
    /// The conversation.
    pub messages: Vec<Message>,
    /// Functions the model may call (omitted when empty).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<Tool>,
    /// `tool_choice`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<ToolChoice>,
    /// `parallel_tool_calls`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parallel_tool_calls: Option<bool>,
    /// `response_format`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_format: Option<ResponseFormat>,
    /// Sampling temperature (some reasoning models reject anything but the default).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    /// `max_completion_tokens`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_completion_tokens: Option<u32>,
    /// Stream the answer over SSE.
    pub stream: bool,
    /// Extra top-level fields.
    #[serde(flatten, skip_serializing_if = "Map::is_empty")]
    pub extra: Map<String, Value>,
}

impl ChatRequest {
    /// A non-streaming request with no tools.
    pub fn new(model: impl Into<String>, messages: Vec<Message>) -> Self {
        Self {
            model: model.into(),
            messages,
            ..Default::default()
        }
    }

    /// Sets the tools.
    pub fn with_tools(mut self, tools: Vec<Tool>) -> Self {
        self.tools = tools;
        self
    }

    /// Sets `tool_choice`.
    pub fn with_tool_choice(mut self, choice: ToolChoice) -> Self {
        self.tool_choice = Some(choice);
        self
    }

    /// Sets `response_format`.
    pub fn with_response_format(mut self, format: ResponseFormat) -> Self {
        self.response_format = Some(format);
        self
    }

    /// Strict JSON-schema output.
    pub fn with_json_schema(self, name: impl Into<String>, schema: Value) -> Self {
        self.with_response_format(ResponseFormat::json_schema(name, schema))
    }

    /// Sets the temperature.
    pub fn with_temperature(mut self, t: f64) -> Self {
        self.temperature = Some(t);
        self
    }

    /// Sets `max_completion_tokens`.
    pub fn with_max_completion_tokens(mut self, n: u32) -> Self {
        self.max_completion_tokens = Some(n);
        self
    }

    /// Streaming on/off.
    pub fn with_stream(mut self, stream: bool) -> Self {
        self.stream = stream;
        self
    }

    /// Adds an extra top-level body field.
    pub fn with_extra(mut self, key: impl Into<String>, value: Value) -> Self {
        self.extra.insert(key.into(), value);
        self
    }
}

// ---------------------------------------------------------------- response

/// Why the model stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FinishReason {
    /// Natural end (`stop`).
    Stop,
    /// Token limit (`length`).
    Length,
    /// It wants tool calls (`tool_calls`, or legacy `function_call`).
    ToolCalls,
    /// Filtered (`content_filter`).
    ContentFilter,
    /// Anything else, verbatim.
    Other(String),
}

impl FinishReason {
    /// Parses a wire value; unknown values are kept in [`FinishReason::Other`].
    pub fn parse(s: &str) -> Self {
        match s {
            "stop" | "end_turn" | "eos" => FinishReason::Stop,
            "length" | "max_tokens" => FinishReason::Length,
            "tool_calls" | "function_call" | "tool_use" => FinishReason::ToolCalls,
            "content_filter" => FinishReason::ContentFilter,
            other => FinishReason::Other(other.to_owned()),
        }
    }

    /// The wire value.
    pub fn as_str(&self) -> &str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
            FinishReason::ToolCalls => "tool_calls",
            FinishReason::ContentFilter => "content_filter",
            FinishReason::Other(s) => s,
        }
    }
}

impl Serialize for FinishReason {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for FinishReason {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(FinishReason::parse(&String::deserialize(d)?))
    }
}

/// Token usage of one call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Input tokens.
    #[serde(default)]
    pub prompt_tokens: u64,
    /// Output tokens.
    #[serde(default)]
    pub completion_tokens: u64,
    /// Total (computed as the sum when the server does not send it).
    #[serde(default)]
    pub total_tokens: u64,
}

impl std::ops::AddAssign for Usage {
    fn add_assign(&mut self, o: Usage) {
        self.prompt_tokens += o.prompt_tokens;
        self.completion_tokens += o.completion_tokens;
        self.total_tokens += o.total_tokens;
    }
}

impl std::ops::Add for Usage {
    type Output = Usage;
    fn add(mut self, o: Usage) -> Usage {
        self += o;
        self
    }
}

/// The result of one call, the same for streaming and non-streaming.
/// Serialisable, so it can be journaled as a durable step result.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ChatResponse {
    /// Response id, when the server sends one.
    #[serde(default)]
    pub id: Option<String>,
    /// The model that answered, when the server says.
    #[serde(default)]
    pub model: Option<String>,
    /// Assistant text; `None` when absent or empty.
    #[serde(default)]
    pub content: Option<String>,
    /// Refusal text (OpenAI structured outputs), when present.
    #[serde(default)]
    pub refusal: Option<String>,
    /// Requested tool calls, in order.
    #[serde(default)]
    pub tool_calls: Vec<ToolCall>,
    /// Why the model stopped.
    #[serde(default)]
    pub finish_reason: Option<FinishReason>,
    /// Token usage, when the server reports it.
    #[serde(default)]
    pub usage: Option<Usage>,
}

impl ChatResponse {
    /// The assistant text, or `""`.
    pub fn text(&self) -> &str {
        self.content.as_deref().unwrap_or("")
    }

    /// The assistant message to append to the conversation.
    pub fn to_message(&self) -> Message {
        Message::Assistant {
            content: self.content.clone(),
            tool_calls: self.tool_calls.clone(),
        }
    }

    /// Parses the text as JSON (for `response_format` json_schema / json_object).
    /// Tolerates a surrounding ```` ```json ```` fence.
    pub fn parse_json<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        let t = self.text().trim();
        let t = t
            .strip_prefix("```json")
            .or_else(|| t.strip_prefix("```"))
            .and_then(|r| r.trim_end().strip_suffix("```"))
            .unwrap_or(t);
        serde_json::from_str(t.trim())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_wire_format_round_trips() {
        let msgs = vec![
            Message::system("s"),
            Message::user("u"),
            Message::user_with_image("look", "https://x/y.png"),
            Message::assistant_tool_calls(None, vec![ToolCall::new("c1", "f", "{\"a\":1}")]),
            Message::tool("c1", "ok"),
        ];
        let v = serde_json::to_value(&msgs).unwrap();
        assert_eq!(
            v,
            json!([
                {"role":"system","content":"s"},
                {"role":"user","content":"u"},
                {"role":"user","content":[{"type":"text","text":"look"},{"type":"image_url","image_url":{"url":"https://x/y.png"}}]},
                {"role":"assistant","content":null,"tool_calls":[{"id":"c1","type":"function","function":{"name":"f","arguments":"{\"a\":1}"}}]},
                {"role":"tool","tool_call_id":"c1","content":"ok"}
            ])
        );
        let back: Vec<Message> = serde_json::from_value(v).unwrap();
        assert_eq!(back, msgs);
    }

    #[test]
    fn tool_call_arguments_object_is_normalised() {
        let t: ToolCall =
            serde_json::from_value(json!({"id":"x","function":{"name":"f","arguments":{"a":[1,2]}}})).unwrap();
        assert_eq!(t.arguments, r#"{"a":[1,2]}"#);
        let t: ToolCall = serde_json::from_value(json!({"function":{"name":"f"}})).unwrap();
        assert_eq!(t.arguments, "{}");
        assert_eq!(t.id, "");
    }

    #[test]
    fn tool_and_choice_serialise() {
        let t = Tool::function("f", "does f", json!({"type":"object"}));
        assert_eq!(
            serde_json::to_value(&t).unwrap(),
            json!({"type":"function","function":{"name":"f","description":"does f","parameters":{"type":"object"}}})
        );
        assert_eq!(serde_json::to_value(ToolChoice::Auto).unwrap(), json!("auto"));
        assert_eq!(
            serde_json::to_value(ToolChoice::Function("f".into())).unwrap(),
            json!({"type":"function","function":{"name":"f"}})
        );
    }

    #[test]
    fn request_extra_is_flattened_and_temperature_exact() {
        let r = ChatRequest::new("m", vec![])
            .with_temperature(0.2)
            .with_extra("seed", json!(7));
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["temperature"], json!(0.2));
        assert_eq!(v["seed"], json!(7));
        assert_eq!(v["stream"], json!(false));
        assert!(v.get("tools").is_none());
    }

    #[test]
    fn parse_json_tolerates_fence() {
        let r = ChatResponse {
            content: Some("```json\n{\"a\":1}\n```".into()),
            ..Default::default()
        };
        let v: Value = r.parse_json().unwrap();
        assert_eq!(v, json!({"a":1}));
    }

    #[test]
    fn data_url_encodes() {
        assert_eq!(data_url("image/png", b"hi"), "data:image/png;base64,aGk=");
    }
}

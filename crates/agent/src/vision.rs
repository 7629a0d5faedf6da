//! Design specs from images: the vision model describes a screenshot or
//! mock-up as structured JSON, which becomes part of the coding agent's input.

use forgeai_llm::{ChatRequest, LlmClient, Message, ModelRole};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::error::AgentError;
use crate::schema::strict_schema;

/// What the vision model is told.
pub const DESIGN_SPEC_PROMPT: &str = "You are a senior product designer. You look at a screenshot, \
mock-up or sketch of a web page and describe it as a structured design spec that a developer \
can rebuild it from with Next.js, Tailwind CSS and shadcn/ui.\n\
- meta.title: what the page is, in a few words. meta.mode: `match_layout` when the image is a \
finished design to reproduce, `modernize` when it is a rough sketch or an outdated site to improve. \
meta.uncertainties: everything you could not read or had to guess.\n\
- theme: the main colors as hex codes (#RRGGBB; null when not visible), the corner radius and the \
font style.\n\
- pages: one entry per page shown (route `/` for the main one), with its sections from top to \
bottom (navbar, hero, features, pricing, testimonials, footer, …). For each section give its \
layout, its real text (copy headings, body text, button labels and list items exactly as written; \
null when absent) and its images (kind, aspect and a short alt text).\n\
Do not invent content that is not in the image, except to fill obviously cut-off text, and list \
such guesses under uncertainties.";

/// The name of the response schema sent to the model.
const SCHEMA_NAME: &str = "design_spec";

/// A structured description of a page design.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DesignSpec {
    /// What the design is and how to treat it.
    pub meta: SpecMeta,
    /// Colors, radius and font.
    pub theme: SpecTheme,
    /// The pages shown, main page first.
    pub pages: Vec<PageSpec>,
}

/// `meta` of a [`DesignSpec`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SpecMeta {
    /// What the page is, in a few words.
    pub title: String,
    /// Reproduce the layout, or improve on it.
    pub mode: SpecMode,
    /// What could not be read or had to be guessed.
    pub uncertainties: Vec<String>,
}

// The variants of the enums below have `//` comments, not doc comments:
// documented variants make schemars emit `oneOf` with `const`s, which strict
// structured output and some local servers reject, instead of a plain `enum`.

/// How closely to follow the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SpecMode {
    // A finished design: reproduce it.
    MatchLayout,
    // A sketch or dated site: keep the structure, modernise the look.
    Modernize,
}

/// `theme` of a [`DesignSpec`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SpecTheme {
    /// Accent color, `#RRGGBB`.
    pub primary_color_hex: Option<String>,
    /// Page background, `#RRGGBB`.
    pub background_color_hex: Option<String>,
    /// Main text color, `#RRGGBB`.
    pub text_color_hex: Option<String>,
    /// Corner radius of cards and buttons.
    pub radius: Radius,
    /// The style of the main font.
    pub font_style: Option<FontStyle>,
}

/// Corner radius.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Radius {
    // Small.
    Sm,
    // Medium.
    Md,
    // Large.
    Lg,
    // Extra large.
    Xl,
}

/// Font style.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FontStyle {
    // Geometric or grotesque sans-serif (Inter, Geist…).
    ModernSans,
    // Traditional sans-serif (Helvetica, Arial…).
    ClassicSans,
    // Serif.
    Serif,
}

/// One page of a [`DesignSpec`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PageSpec {
    /// The route, e.g. `/` or `/pricing`.
    pub route: String,
    /// The sections from top to bottom.
    pub sections: Vec<SectionSpec>,
}

/// One section of a page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SectionSpec {
    /// What kind of section: navbar, hero, features, pricing, testimonials, footer, …
    #[serde(rename = "type")]
    pub kind: String,
    /// How it is laid out.
    pub layout: SectionLayout,
    /// Its text.
    pub content: SectionContent,
    /// Its images.
    pub media: Vec<SectionMedia>,
}

/// Layout of a section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SectionLayout {
    /// Width of the content container.
    pub container: ContainerWidth,
    /// Columns of the content (1 to 6).
    #[schemars(range(min = 1, max = 6))]
    pub columns: u8,
    /// Text alignment.
    pub align: SectionAlign,
}

/// Width of a section's content container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ContainerWidth {
    // Narrow.
    Sm,
    // Medium.
    Md,
    // Wide.
    Lg,
    // Edge to edge.
    Full,
}

/// Text alignment of a section.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SectionAlign {
    // Left-aligned.
    Left,
    // Centred.
    Center,
}

/// Text of a section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SectionContent {
    /// Main heading.
    pub heading: Option<String>,
    /// Line under the heading.
    pub subheading: Option<String>,
    /// Paragraph text.
    pub body: Option<String>,
    /// Buttons, in order.
    pub buttons: Vec<SectionButton>,
    /// Repeated items: features, plans, links, testimonials, …
    pub items: Vec<SectionItem>,
}

/// A button of a section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SectionButton {
    /// Its label.
    pub label: String,
    /// Its look.
    pub variant: ButtonVariant,
}

/// The look of a button (shadcn/ui variants).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ButtonVariant {
    // Filled with the primary color.
    Default,
    // Outlined.
    Outline,
    // Muted fill.
    Secondary,
}

/// A repeated item of a section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SectionItem {
    /// Its title.
    pub title: Option<String>,
    /// Its text.
    pub description: Option<String>,
}

/// An image of a section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SectionMedia {
    /// What it is: photo, illustration, logo, icon, screenshot, …
    pub kind: String,
    /// Its shape.
    pub aspect: MediaAspect,
    /// A short description of what it shows.
    pub alt: Option<String>,
}

/// The shape of an image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum MediaAspect {
    // 1:1.
    Square,
    // 16:9.
    Video,
    // Wider than 16:9.
    Wide,
    // Taller than wide.
    Portrait,
}

impl DesignSpec {
    /// The strict JSON schema the vision model's answer must match.
    pub fn json_schema() -> serde_json::Value {
        strict_schema::<DesignSpec>()
    }
}

/// Asks the vision model for the design spec of the image at `image_url`
/// (`https://…` or a `data:image/…` URL), with the user's notes as a hint.
pub async fn extract_design_spec_from_image(
    llm: &LlmClient,
    image_url: &str,
    user_notes: &str,
) -> Result<DesignSpec, AgentError> {
    let image_url = image_url.trim();
    if !is_image_url(image_url) {
        return Err(AgentError::InvalidInput(
            "the image must be an http(s) URL or a data:image/… URL".into(),
        ));
    }
    let text = format!("Describe this design as JSON matching the required schema.\nUser notes: {user_notes}");
    let request = ChatRequest::new(
        llm.config().model(ModelRole::Vision),
        vec![
            Message::system(DESIGN_SPEC_PROMPT),
            Message::user_with_image(text, image_url),
        ],
    )
    .with_json_schema(SCHEMA_NAME, DesignSpec::json_schema());
    let response = llm.chat(&request).await?;
    if let Some(refusal) = response.refusal.as_deref().filter(|refusal| !refusal.trim().is_empty()) {
        return Err(AgentError::Refused(refusal.to_owned()));
    }
    response
        .parse_json::<DesignSpec>()
        .map_err(|error| AgentError::InvalidAnswer {
            what: "design spec",
            reason: error.to_string(),
        })
}

fn is_image_url(url: &str) -> bool {
    let lower = url.get(..11).unwrap_or(url).to_ascii_lowercase();
    lower.starts_with("https://") || lower.starts_with("http://") || lower.starts_with("data:image/")
}

/// The coding agent's input for a message with a design spec:
/// `designSpec:\n<spec JSON>\n\nUser notes:\n<message>`.
pub fn design_spec_input(spec: &DesignSpec, message: &str) -> String {
    // Plain structs with string keys always serialise; the fallback only
    // keeps this function total.
    let json = serde_json::to_string_pretty(spec).unwrap_or_default();
    format!("designSpec:\n{json}\n\nUser notes:\n{message}")
}

/// The coding agent's input and the design spec it came with, if any.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentInput {
    /// The text the coding network starts from.
    pub text: String,
    /// The design spec extracted from the image, to store with the fragment.
    pub design_spec: Option<DesignSpec>,
}

/// The `build-agent-input` step: with an image, its design spec followed by
/// the message ([`design_spec_input`]); without, the message unchanged.
pub async fn build_agent_input(
    llm: &LlmClient,
    message: &str,
    image_url: Option<&str>,
) -> Result<AgentInput, AgentError> {
    let Some(image_url) = image_url.filter(|url| !url.trim().is_empty()) else {
        return Ok(AgentInput {
            text: message.to_owned(),
            design_spec: None,
        });
    };
    let spec = extract_design_spec_from_image(llm, image_url, message).await?;
    Ok(AgentInput {
        text: design_spec_input(&spec, message),
        design_spec: Some(spec),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_schema_is_strict_and_has_the_designed_shape() {
        let schema = DesignSpec::json_schema();
        assert_eq!(schema["required"], json!(["meta", "pages", "theme"]));
        assert_eq!(schema["additionalProperties"], json!(false));
        let meta = &schema["properties"]["meta"];
        assert_eq!(meta["required"], json!(["mode", "title", "uncertainties"]));
        let theme = &schema["properties"]["theme"];
        assert_eq!(
            theme["required"],
            json!([
                "backgroundColorHex",
                "fontStyle",
                "primaryColorHex",
                "radius",
                "textColorHex"
            ])
        );
        let section = &schema["properties"]["pages"]["items"]["properties"]["sections"]["items"];
        assert_eq!(section["required"], json!(["content", "layout", "media", "type"]));
        assert_eq!(
            section["properties"]["layout"]["required"],
            json!(["align", "columns", "container"])
        );
        assert_eq!(
            section["properties"]["content"]["required"],
            json!(["body", "buttons", "heading", "items", "subheading"])
        );
        assert_eq!(theme["properties"]["radius"]["enum"], json!(["sm", "md", "lg", "xl"]));
        // Every object in the schema is closed and fully required, and only
        // keywords strict mode accepts are used.
        fn check(value: &serde_json::Value) {
            if let Some(object) = value.as_object() {
                if let Some(properties) = object.get("properties").and_then(|p| p.as_object()) {
                    assert_eq!(object["additionalProperties"], json!(false));
                    assert_eq!(object["required"].as_array().map(Vec::len), Some(properties.len()));
                }
                for keyword in ["format", "$ref", "oneOf", "const", "default"] {
                    assert!(!object.contains_key(keyword), "`{keyword}` in {value}");
                }
                object.values().for_each(check);
            } else if let Some(items) = value.as_array() {
                items.iter().for_each(check);
            }
        }
        check(&schema);
    }

    #[test]
    fn image_urls_are_checked() {
        assert!(is_image_url("https://example.com/a.png"));
        assert!(is_image_url("data:image/png;base64,AAAA"));
        assert!(is_image_url("HTTP://x"));
        assert!(!is_image_url("file:///etc/passwd"));
        assert!(!is_image_url("data:text/html,hi"));
        assert!(!is_image_url("é"));
    }
}

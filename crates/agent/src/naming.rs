//! The naming agent: a short title for a fragment and its project.

use forgeai_llm::{ChatRequest, LlmClient, Message, ModelRole};

use crate::error::AgentError;

/// What the naming model is told.
pub const NAMING_PROMPT: &str = "You name web app projects. Given the user's request, reply with a \
short, descriptive title of 2 to 5 words in Title Case, such as \"Coffee Shop Landing Page\" or \
\"Team Task Board\". Reply with the title only: no quotes, no trailing punctuation, no explanation.";

/// The title used when the model's answer has nothing usable.
pub const FALLBACK_TITLE: &str = "Untitled Project";

/// The longest title kept, in characters.
const MAX_TITLE_CHARS: usize = 80;

/// Characters of the request sent to the model: the gist of a prompt is in
/// its beginning, and a title is not worth paying for a 10 000-character one.
const MAX_REQUEST_CHARS: usize = 2_000;

/// Characters models like to wrap titles in.
const WRAPPERS: &[char] = &['"', '\'', '`', '“', '”', '‘', '’', '«', '»', '*', '_', '#'];

/// Asks the namer model for a title for the app `request` describes.
pub async fn generate_title(llm: &LlmClient, request: &str) -> Result<String, AgentError> {
    let request: String = request.chars().take(MAX_REQUEST_CHARS).collect();
    let chat = ChatRequest::new(
        llm.config().model(ModelRole::Namer),
        vec![Message::system(NAMING_PROMPT), Message::user(request)],
    );
    let response = llm.chat(&chat).await?;
    Ok(clean_title(response.text()))
}

/// Makes a model's answer a usable title: its first non-empty line, without a
/// `Title:` label, surrounding quotes or markdown, or a trailing period, with
/// whitespace collapsed, at most 80 characters; [`FALLBACK_TITLE`] when
/// nothing is left.
pub fn clean_title(raw: &str) -> String {
    let line = raw.lines().map(str::trim).find(|line| !line.is_empty()).unwrap_or("");
    let line = strip_label(line);
    let line = line
        .trim_matches(|c: char| c.is_whitespace() || WRAPPERS.contains(&c))
        .trim_end_matches(['.', '!'])
        .trim_end_matches(|c: char| c.is_whitespace() || WRAPPERS.contains(&c));
    let collapsed = line.split_whitespace().collect::<Vec<_>>().join(" ");
    let title: String = collapsed.chars().take(MAX_TITLE_CHARS).collect();
    let title = title.trim_end();
    if title.is_empty() {
        FALLBACK_TITLE.to_owned()
    } else {
        title.to_owned()
    }
}

/// `Title: X` → `X` (also `**Title:** X`, any case).
fn strip_label(line: &str) -> &str {
    let unwrapped = line.trim_start_matches(|c: char| WRAPPERS.contains(&c));
    let Some(prefix) = unwrapped.get(..6) else {
        return line;
    };
    if prefix.eq_ignore_ascii_case("title:") {
        unwrapped[6..].trim_start_matches(|c: char| c.is_whitespace() || WRAPPERS.contains(&c))
    } else {
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn titles_are_cleaned() {
        assert_eq!(clean_title("\"Coffee Shop Landing\""), "Coffee Shop Landing");
        assert_eq!(clean_title("  “Team   Task Board”.\n\nBecause…"), "Team Task Board");
        assert_eq!(clean_title("**Title:** Recipe Finder"), "Recipe Finder");
        assert_eq!(clean_title("title: 'Budget Tracker'"), "Budget Tracker");
        assert_eq!(clean_title(""), FALLBACK_TITLE);
        assert_eq!(clean_title(" \"\" "), FALLBACK_TITLE);
        let long = clean_title(&"Word ".repeat(40));
        assert!(long.chars().count() <= 80 && !long.ends_with(' '), "{long:?}");
        assert_eq!(clean_title("Écoles Élégantes ✨"), "Écoles Élégantes ✨");
    }
}

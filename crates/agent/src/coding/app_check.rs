//! The coding agent's check: open the app the way a person would, through the dev server that
//! already runs in the sandbox, and read what went wrong.
//!
//! The routes are `/` and every static route whose page the run wrote. A route fails when the
//! dev server gives no answer, answers 5xx (Next.js answers a build error, a missing module or
//! an error thrown while rendering with 500), answers 404 for a page the run wrote, or renders
//! an error. The text handed back is what the dev server printed for it (source file, line and
//! a code frame: `⨯ ./app/page.tsx:1:1 Module not found: …`), or, when the sandbox keeps no
//! dev server output, the error the page itself carries.

use std::sync::Arc;

use async_trait::async_trait;

use super::workspace::{ProjectWorkspace, RouteResponse};
use crate::check::{CheckOutcome, WorkCheck};
use crate::error::ToolError;
use crate::limits::truncate_middle;

/// The status published while the app is checked.
pub const CHECK_STATUS: &str = "Checking the app...";

/// Routes asked for in one check, `/` included.
const MAX_ROUTES: usize = 6;
/// Characters of problems handed back to the agent.
const MAX_PROBLEM_CHARS: usize = 6_000;
/// Lines of one error block of the dev server's output.
const MAX_BLOCK_LINES: usize = 30;

/// Checks the app through its dev server (see the module docs).
#[derive(Clone)]
pub struct AppCheck {
    workspace: Arc<dyn ProjectWorkspace>,
}

impl AppCheck {
    /// A check of the app in `workspace`.
    pub fn new(workspace: Arc<dyn ProjectWorkspace>) -> Self {
        Self { workspace }
    }
}

#[async_trait]
impl WorkCheck for AppCheck {
    fn status(&self) -> &str {
        CHECK_STATUS
    }

    async fn check(&self, changed_files: &[String]) -> Result<CheckOutcome, ToolError> {
        let before = self.workspace.dev_server_output(0).await?.map(|output| output.end);
        let mut failures = Vec::new();
        for (route, page) in routes_to_check(changed_files) {
            let response = self.workspace.fetch_route(&route).await?;
            if let Some(failure) = route_failure(&route, page.as_deref(), &response) {
                failures.push(failure);
            }
        }
        if failures.is_empty() {
            return Ok(CheckOutcome::Passed);
        }
        let printed = match before {
            Some(from) => self
                .workspace
                .dev_server_output(from)
                .await?
                .map(|output| error_blocks(&output.text))
                .unwrap_or_default(),
            None => Vec::new(),
        };
        let mut problems = failures.join("\n");
        if !printed.is_empty() {
            problems.push_str("\n\nThe dev server printed:\n");
            problems.push_str(&printed.join("\n\n"));
        }
        Ok(CheckOutcome::Failed {
            problems: truncate_middle(&problems, MAX_PROBLEM_CHARS),
        })
    }
}

/// `/` and the static routes of the pages among `changed_files`, each with the page file it
/// comes from (`None` for `/` when its page was not written).
pub fn routes_to_check(changed_files: &[String]) -> Vec<(String, Option<String>)> {
    let mut routes: Vec<(String, Option<String>)> = vec![("/".to_owned(), None)];
    for file in changed_files {
        let Some(route) = page_route(file) else {
            continue;
        };
        if let Some((_, page)) = routes.iter_mut().find(|(known, _)| *known == route) {
            *page = Some(file.clone());
        } else if routes.len() < MAX_ROUTES {
            routes.push((route, Some(file.clone())));
        }
    }
    routes
}

/// The URL path of an App Router page file (`app/about/page.tsx` → `/about`); `None` for other
/// files and for routes that need parameters (`[id]`) or are not routes (`@slot`, `_private`).
fn page_route(file: &str) -> Option<String> {
    let dir = file
        .strip_prefix("app/")
        .map(|rest| rest.rsplit_once('/').map_or("", |(dir, _)| dir))?;
    let name = file.rsplit('/').next()?;
    let is_page = ["page.tsx", "page.jsx", "page.ts", "page.js", "page.mdx"].contains(&name);
    if !is_page {
        return None;
    }
    let mut route = String::new();
    for segment in dir.split('/').filter(|segment| !segment.is_empty()) {
        if segment.starts_with('(') && segment.ends_with(')') {
            continue;
        }
        if segment.starts_with(['[', '@', '_']) {
            return None;
        }
        route.push('/');
        route.push_str(segment);
    }
    Some(if route.is_empty() { "/".to_owned() } else { route })
}

/// What is wrong with the answer for `route`, if anything.
fn route_failure(route: &str, page: Option<&str>, response: &RouteResponse) -> Option<String> {
    let Some(status) = response.status else {
        let why = response.failure.as_deref().unwrap_or("no answer");
        return Some(format!("GET {route}: the dev server did not answer ({why})."));
    };
    let error = page_error(&response.body);
    if status >= 500 || error.is_some() {
        let detail = error.map_or_else(String::new, |error| format!(":\n{error}"));
        return Some(format!("GET {route} answered HTTP {status}{detail}"));
    }
    if status == 404
        && let Some(page) = page
    {
        return Some(format!(
            "GET {route} answered HTTP 404 although {page} was written: the page is not served."
        ));
    }
    None
}

/// The error a Next.js dev server page carries: a build error (`__NEXT_DATA__`'s `err`), or an
/// error thrown while rendering (the error template, or the error record of the RSC payload).
pub fn page_error(body: &str) -> Option<String> {
    if let Some(message) = next_data_error(body) {
        return Some(message);
    }
    if let Some(message) = attribute(body, "data-next-error-message") {
        return Some(message);
    }
    rsc_error(body)
}

fn next_data_error(body: &str) -> Option<String> {
    let start = body.find("<script id=\"__NEXT_DATA__\"")?;
    let json_start = start + body[start..].find('>')? + 1;
    let json_end = json_start + body[json_start..].find("</script>")?;
    let data: serde_json::Value = serde_json::from_str(&body[json_start..json_end]).ok()?;
    let err = data.get("err")?;
    let message = err.get("message")?.as_str()?.trim();
    let name = err.get("name").and_then(|name| name.as_str()).unwrap_or("Error");
    Some(format!("{name}: {message}"))
}

fn attribute(body: &str, name: &str) -> Option<String> {
    let marker = format!("{name}=\"");
    let start = body.find(&marker)? + marker.len();
    let end = start + body[start..].find('"')?;
    Some(html_unescape(&body[start..end]))
}

/// `E{"digest":…,"name":"TypeError","message":"…"` inside the escaped RSC payload.
fn rsc_error(body: &str) -> Option<String> {
    let marker = "E{\\\"digest\\\":";
    let start = body.find(marker)? + 1;
    // The record is JSON inside a JS string: undo one level of escaping, then read it.
    let escaped = &body[start..start + body[start..].find("}\\n")? + 1];
    let json: serde_json::Value = serde_json::from_str(&format!("\"{escaped}\""))
        .ok()
        .and_then(|text: String| serde_json::from_str(&text).ok())?;
    let message = json.get("message")?.as_str()?;
    let name = json.get("name").and_then(|name| name.as_str()).unwrap_or("Error");
    Some(format!("{name}: {message}"))
}

fn html_unescape(text: &str) -> String {
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#x27;", "'")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

/// The error blocks of the dev server's output (`⨯ …` and the lines that belong to it), without
/// terminal colours, each once.
pub fn error_blocks(output: &str) -> Vec<String> {
    let plain = strip_ansi(output);
    let mut blocks: Vec<String> = Vec::new();
    let mut current: Option<Vec<&str>> = None;
    for line in plain.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with('⨯') {
            if let Some(block) = current.take() {
                push_block(&mut blocks, block);
            }
            current = Some(vec![trimmed.trim_start_matches('⨯').trim_start()]);
        } else if let Some(block) = current.as_mut() {
            let ends_block = ["GET ", "POST ", "HEAD ", "✓ ", "○ ", "⚠ "]
                .iter()
                .any(|marker| trimmed.starts_with(marker));
            if ends_block {
                push_block(&mut blocks, current.take().unwrap_or_default());
            } else if block.len() < MAX_BLOCK_LINES {
                block.push(line);
            }
        }
    }
    if let Some(block) = current {
        push_block(&mut blocks, block);
    }
    blocks
}

fn push_block(blocks: &mut Vec<String>, lines: Vec<&str>) {
    let text = lines.join("\n").trim().to_owned();
    if !text.is_empty() && !blocks.contains(&text) {
        blocks.push(text);
    }
}

fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' && chars.peek() == Some(&'[') {
            chars.next();
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(paths: &[&str]) -> Vec<String> {
        paths.iter().map(|path| path.to_string()).collect()
    }

    #[test]
    fn routes_are_the_root_and_the_static_pages_written() {
        let routes = routes_to_check(&files(&[
            "app/about/page.tsx",
            "app/(marketing)/pricing/page.tsx",
            "app/blog/[slug]/page.tsx",
            "app/@modal/page.tsx",
            "app/api/items/route.ts",
            "components/hero.tsx",
            "app/page.tsx",
        ]));
        assert_eq!(
            routes,
            vec![
                ("/".to_owned(), Some("app/page.tsx".to_owned())),
                ("/about".to_owned(), Some("app/about/page.tsx".to_owned())),
                (
                    "/pricing".to_owned(),
                    Some("app/(marketing)/pricing/page.tsx".to_owned())
                ),
            ]
        );
        assert_eq!(routes_to_check(&files(&["index.html"])), vec![("/".to_owned(), None)]);
    }

    #[test]
    fn build_errors_are_read_from_the_page() {
        let body = r#"<html><body><script id="__NEXT_DATA__" type="application/json">{"props":{},"err":{"name":"Error","source":"server","message":"./app/page.tsx:1:1\nModule not found: Can't resolve '@/components/nope'\n","stack":"x"}}</script></body></html>"#;
        assert_eq!(
            page_error(body).as_deref(),
            Some("Error: ./app/page.tsx:1:1\nModule not found: Can't resolve '@/components/nope'")
        );
    }

    #[test]
    fn render_errors_are_read_from_the_page() {
        let template = r#"<template data-next-error-message="Expected property name or &#x27;}&#x27; in JSON" data-next-error-digest="1"></template>"#;
        assert_eq!(
            page_error(template).as_deref(),
            Some("Expected property name or '}' in JSON")
        );
        let rsc = r#"<script>self.__next_f.push([1,"2e:E{\"digest\":\"605678889\",\"name\":\"TypeError\",\"message\":\"Cannot read properties of undefined (reading 'map')\",\"stack\":[],\"env\":\"Server\"}\n"])</script>"#;
        assert_eq!(
            page_error(rsc).as_deref(),
            Some("TypeError: Cannot read properties of undefined (reading 'map')")
        );
        assert_eq!(page_error("<html><body><h1>Fine</h1></body></html>"), None);
    }

    #[test]
    fn the_dev_servers_error_blocks_are_kept_without_colours() {
        let output = " ✓ Compiled / in 55ms\n \u{1b}[31m⨯\u{1b}[39m TypeError: Cannot read properties of undefined (reading 'map')\n    at Home (app/page.tsx:2:55)\n> 2 | items!.map(…)\n{\n  digest: '605678889'\n}\n GET / 500 in 421ms\n ⨯ TypeError: Cannot read properties of undefined (reading 'map')\n    at Home (app/page.tsx:2:55)\n> 2 | items!.map(…)\n{\n  digest: '605678889'\n}\n GET / 500 in 30ms\n";
        assert_eq!(
            error_blocks(output),
            vec![
                "TypeError: Cannot read properties of undefined (reading 'map')\n    at Home (app/page.tsx:2:55)\n> 2 | items!.map(…)\n{\n  digest: '605678889'\n}"
            ]
        );
    }

    #[test]
    fn a_failing_route_says_what_failed() {
        let silent = RouteResponse {
            status: None,
            body: String::new(),
            failure: Some("connection refused".into()),
        };
        assert_eq!(
            route_failure("/", None, &silent).as_deref(),
            Some("GET /: the dev server did not answer (connection refused).")
        );
        let missing = RouteResponse {
            status: Some(404),
            ..RouteResponse::default()
        };
        assert!(route_failure("/about", Some("app/about/page.tsx"), &missing).is_some());
        assert!(route_failure("/", None, &missing).is_none());
        let fine = RouteResponse {
            status: Some(200),
            body: "<h1>ok</h1>".into(),
            failure: None,
        };
        assert!(route_failure("/", Some("app/page.tsx"), &fine).is_none());
    }
}

//! `forgeai serve --help` lists every setting, with its environment variable and its default,
//! and the README's "Configuration" table says the same: a setting added to one and not the
//! other, or a default changed in one only, fails here. No root, sandbox or model needed.

use std::collections::BTreeMap;
use std::process::Command;

/// One option of the help: its environment variable, its default (`[default: …]`) and its whole
/// text.
#[derive(Debug)]
struct HelpSetting {
    default: Option<String>,
    text: String,
}

/// `serve --help` run with an empty environment, so that no value of this machine's shows.
fn serve_help() -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_forgeai"))
        .args(["serve", "--help"])
        .env_clear()
        .output()
        .expect("forgeai runs");
    assert!(output.status.success(), "{output:?}");
    String::from_utf8(output.stdout).expect("the help is UTF-8")
}

/// The help's options by environment variable.
fn help_settings(help: &str) -> BTreeMap<String, HelpSetting> {
    let mut entries: Vec<String> = Vec::new();
    for line in help.lines() {
        let trimmed = line.trim_start();
        let starts_option = trimmed.starts_with("--") || (trimmed.starts_with('-') && trimmed.get(2..3) == Some(","));
        if starts_option {
            entries.push(String::new());
        }
        if let Some(entry) = entries.last_mut() {
            entry.push(' ');
            entry.push_str(line.trim());
        }
    }
    let between = |text: &str, open: &str, ends: &[char]| -> Option<String> {
        let start = text.find(open)? + open.len();
        let end = text[start..].find(ends)?;
        Some(text[start..start + end].to_owned())
    };
    let mut settings = BTreeMap::new();
    for text in entries {
        let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
        let Some(variable) = between(&text, "[env: ", &['=', ']']) else {
            continue;
        };
        let default = between(&text, "[default: ", &[']']);
        settings.insert(variable, HelpSetting { default, text });
    }
    settings
}

/// The README's "Configuration" table: each variable with its default as written there
/// (`` `value` ``, or words such as "none" or "half the RAM").
fn readme_settings() -> Vec<(String, String)> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md")).expect("README.md");
    let section = readme
        .split("\n## Configuration\n")
        .nth(1)
        .expect("the README has a Configuration section");
    let section = section.split("\n## ").next().unwrap_or_default();
    let mut settings = Vec::new();
    for row in section.lines().filter(|line| line.starts_with("| `")) {
        let cells: Vec<&str> = row.trim_matches('|').split(" | ").map(str::trim).collect();
        let variables: Vec<&str> = cells[0].split(", ").map(|name| name.trim_matches('`')).collect();
        let defaults: Vec<&str> = cells[1].split(", ").collect();
        assert_eq!(
            variables.len(),
            defaults.len(),
            "the README's row {row:?} needs one default for each variable"
        );
        for (variable, default) in variables.into_iter().zip(defaults) {
            settings.push((variable.to_owned(), default.to_owned()));
        }
    }
    assert!(
        settings.len() > 20,
        "the Configuration table was not found: {settings:?}"
    );
    settings
}

#[test]
fn serve_help_lists_every_setting_of_the_readme_with_its_default() {
    let help = serve_help();
    let in_help = help_settings(&help);
    let in_readme = readme_settings();
    for (variable, readme_default) in &in_readme {
        let Some(setting) = in_help.get(variable) else {
            panic!("{variable} is in the README but not in `forgeai serve --help`:\n{help}");
        };
        match &setting.default {
            Some(default) => assert_eq!(
                readme_default,
                &format!("`{default}`"),
                "{variable}: the README's default differs from the help's ({})",
                setting.text
            ),
            // A default that depends on other settings or on the machine is told in words.
            None => assert!(
                readme_default.starts_with("none") || setting.text.contains("default"),
                "{variable}: the README gives the default {readme_default}, the help none ({})",
                setting.text
            ),
        }
    }
    for variable in in_help.keys() {
        assert!(
            in_readme.iter().any(|(name, _)| name == variable),
            "{variable} is a setting of `forgeai serve` the README's Configuration table does not list"
        );
    }
}

#[test]
fn secrets_are_not_shown_in_the_help() {
    let output = Command::new(env!("CARGO_BIN_EXE_forgeai"))
        .args(["serve", "--help"])
        .env_clear()
        .env("OPENAI_API_KEY", "sk-secret-1")
        .env("UNSPLASH_ACCESS_KEY", "unsplash-secret-2")
        .env("E2B_API_KEY", "e2b-secret-3")
        .env("FORGEAI_METRICS_TOKEN", "metrics-secret-4")
        .env("DATABASE_URL", "postgres://forgeai:secret-5@db/forgeai")
        .output()
        .expect("forgeai runs");
    let help = String::from_utf8_lossy(&output.stdout);
    assert!(help.contains("[env: OPENAI_API_KEY]"), "{help}");
    assert!(!help.contains("secret"), "{help}");
}

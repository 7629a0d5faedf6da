//! The coding agent's prompt against the real `forgeai-v1` template: every path, module,
//! package version and icon the prompt names is in the built template, every shadcn/ui
//! component of the template is named in the prompt, and every package the project depends on
//! is named with its exact version. Needs the template cache CI keeps
//! (`FORGEAI_TEMPLATE_CACHE`); skipped without it.

use std::collections::BTreeSet;
use std::path::Path;

use forgeai_agent::CODING_AGENT_PROMPT;
use serde_json::Value;

/// The backticked parts of the prompt.
fn quoted(prompt: &str) -> Vec<&str> {
    prompt.split('`').skip(1).step_by(2).collect()
}

/// Top-level entries of the project a path the prompt names starts with.
const PROJECT_ENTRIES: &[&str] = &["app", "components", "lib", "hooks", "public"];

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("parse {}: {e}", path.display()))
}

/// The component names of the prompt's list ("… in `components/ui/`, written as …: accordion, …").
fn prompt_components(prompt: &str) -> BTreeSet<String> {
    let line = prompt
        .lines()
        .find(|line| line.contains("`components/ui/<name>.jsx`"))
        .expect("the prompt lists the components");
    let list = line.split(": ").nth(1).expect("a list after the colon");
    let list = list.split(". ").next().unwrap();
    list.split(", ").map(|name| name.trim().to_owned()).collect()
}

/// Where `specifier` resolves in the project, if anywhere.
fn resolves(project: &Path, specifier: &str) -> bool {
    if let Some(local) = specifier.strip_prefix("@/") {
        let base = project.join(local);
        return base.is_dir()
            || ["", ".tsx", ".ts", ".jsx", ".js", ".d.ts"]
                .iter()
                .any(|extension| project.join(format!("{local}{extension}")).is_file());
    }
    let parts: Vec<&str> = specifier.split('/').collect();
    let package_len = if specifier.starts_with('@') { 2 } else { 1 };
    let package = parts[..package_len].join("/");
    let dir = project.join("node_modules").join(specifier);
    let manifest = read_json(&project.join("package.json"));
    let declared =
        manifest["dependencies"].get(&package).is_some() || manifest["devDependencies"].get(&package).is_some();
    declared
        && (dir.is_dir()
            || ["", ".js", ".d.ts"].iter().any(|extension| {
                project
                    .join("node_modules")
                    .join(format!("{specifier}{extension}"))
                    .is_file()
            }))
}

#[tokio::test]
async fn the_prompt_names_exactly_what_the_template_has() {
    let Some(cache) = forgeai_test_support::template_cache() else {
        eprintln!(
            "SKIPPED: {} is not set (CI sets it; see .ci/run)",
            forgeai_test_support::TEMPLATE_CACHE_VAR
        );
        return;
    };
    let (template, _) = forgeai_test_support::cached_forgeai_v1(&cache).await;
    let project = template.project_dir();
    let prompt = CODING_AGENT_PROMPT;
    let manifest = read_json(&project.join("package.json"));
    let mut problems = Vec::new();
    let mut checked = 0;

    // Components, both ways.
    let named = prompt_components(prompt);
    let shipped: BTreeSet<String> = std::fs::read_dir(project.join("components/ui"))
        .unwrap()
        .filter_map(|entry| {
            entry
                .ok()?
                .file_name()
                .to_str()?
                .strip_suffix(".jsx")
                .map(str::to_owned)
        })
        .collect();
    for name in named.symmetric_difference(&shipped) {
        problems.push(format!(
            "component `{name}`: named in the prompt xor shipped in components/ui"
        ));
    }
    for name in &named {
        for file in [
            format!("components/ui/{name}.jsx"),
            format!("components/ui/{name}.d.ts"),
        ] {
            checked += 1;
            if !project.join(&file).is_file() {
                problems.push(format!("{file} does not exist"));
            }
        }
    }

    let mut icons = Vec::new();
    for token in quoted(prompt) {
        let token = token.trim();
        // `import … from "module"`
        if let Some((_, rest)) = token.split_once("from \"") {
            let module = rest.trim_end_matches('"');
            checked += 1;
            if !resolves(&project, module) {
                problems.push(format!("`{token}`: {module} does not resolve"));
            }
            continue;
        }
        if token.contains(' ') || token.contains('(') {
            continue; // commands and code
        }
        // `name@1.2.3`
        if let Some((name, version)) = token.rsplit_once('@')
            && !name.is_empty()
            && version.chars().next().is_some_and(|c| c.is_ascii_digit())
        {
            checked += 1;
            let declared = manifest["dependencies"]
                .get(name)
                .or_else(|| manifest["devDependencies"].get(name))
                .and_then(Value::as_str);
            if declared != Some(version) {
                problems.push(format!("`{token}`: package.json says {declared:?}"));
            }
            let installed = read_json(&project.join("node_modules").join(name).join("package.json"));
            if installed["version"].as_str() != Some(version) {
                problems.push(format!("`{token}`: installed is {}", installed["version"]));
            }
            continue;
        }
        if token.contains('<') || token.contains('[') {
            continue; // patterns of files to write
        }
        let first = token.split('/').next().unwrap_or_default();
        if PROJECT_ENTRIES.contains(&first) || (!token.contains('/') && token.contains(".") && !token.starts_with('.'))
        {
            checked += 1;
            if !project.join(token.trim_end_matches('/')).exists() {
                problems.push(format!("`{token}` does not exist in the template"));
            }
            continue;
        }
        if token.contains('/') {
            checked += 1;
            if !resolves(&project, token) {
                problems.push(format!("module `{token}` does not resolve"));
            }
            continue;
        }
        if token.len() > 1
            && token.chars().next().is_some_and(|c| c.is_ascii_uppercase())
            && token.chars().all(|c| c.is_ascii_alphanumeric())
        {
            icons.push(token.to_owned());
        }
    }

    // Every package the project depends on is named with its version (Radix primitives and
    // type packages are named as a group).
    for section in ["dependencies", "devDependencies"] {
        for (name, version) in manifest[section].as_object().unwrap() {
            if name.starts_with("@radix-ui/") || name.starts_with("@types/") {
                continue;
            }
            checked += 1;
            let mention = format!("`{name}@{}`", version.as_str().unwrap());
            if !prompt.contains(&mention) {
                problems.push(format!(
                    "package.json's {name} {version} is not named in the prompt as {mention}"
                ));
            }
        }
    }

    // The icons the prompt promises exist in the installed lucide-react.
    assert!(!icons.is_empty(), "the prompt names brand icons");
    let script = format!(
        "const l = require('lucide-react'); const missing = {:?}.filter(n => typeof l[n] !== 'object'); \
         if (missing.length) {{ console.log(missing.join(', ')); process.exit(1); }}",
        icons
    );
    let output = std::process::Command::new("node")
        .args(["-e", &script])
        .current_dir(&project)
        .output()
        .expect("node runs");
    if !output.status.success() {
        problems.push(format!(
            "lucide-react lacks icons the prompt names: {}",
            String::from_utf8_lossy(&output.stdout)
        ));
    }
    checked += icons.len();

    assert!(
        problems.is_empty(),
        "the prompt and the template disagree:\n{}",
        problems.join("\n")
    );
    assert!(
        checked > 100,
        "only {checked} facts were checked: the prompt's format changed?"
    );
    eprintln!(
        "{checked} facts of the prompt hold in the template (icons: {})",
        icons.join(", ")
    );
}

//! The `forgeai-v1` recipe rendered as an E2B template (`e2b.toml`, `e2b.Dockerfile`, the start
//! script and the files the recipe writes), so E2B sandboxes hold what local ones do. The copy
//! in the repository (`templates/e2b/forgeai-v1`) is checked against this rendering by a test.

use super::{DEV_SERVER, NAME, Step, steps};

/// The start command's script: the project goes to the sandbox user, whose dev server then
/// runs in the background (E2B snapshots the template once `ready_cmd` succeeds).
const START_SH: &str = r#"#!/bin/bash
# Start command of the forgeai-v1 E2B template: hands the project to the sandbox user and runs
# the dev server as that user, its output in /home/user/.forgeai-dev.log.
chown -R user:user /home/user/project
cd /home/user/project
exec su user -s /bin/bash -c "NEXT_TELEMETRY_DISABLED=1 PORT=3000 exec __DEV_SERVER__ >> /home/user/.forgeai-dev.log 2>&1"
"#;

/// The template's files, as (path relative to the template directory, contents).
pub fn forgeai_v1_e2b_template() -> Vec<(String, String)> {
    let mut files = Vec::new();
    let mut dockerfile = format!(
        "# The {NAME} template for E2B, generated from forgeai's recipe (crates/sandbox/src/local/build);\n\
         # `cargo test -p forgeai-sandbox e2b_template` checks this copy and says how to rewrite it.\n\
         FROM node:22-bookworm-slim\n\
         SHELL [\"/bin/bash\", \"-c\"]\n\
         RUN apt-get update && apt-get install -y --no-install-recommends curl ca-certificates \\\n    \
         && rm -rf /var/lib/apt/lists/*\n\
         ENV NEXT_TELEMETRY_DISABLED=1\n\
         WORKDIR /home/user/project\n"
    );
    for step in steps() {
        match step {
            Step::Run { name, script } => {
                dockerfile.push_str(&format!("# {name}\nRUN {script}\n"));
            }
            Step::Write { path, contents } => {
                dockerfile.push_str(&format!("COPY files/{path} {path}\n"));
                files.push((format!("files/{path}"), contents.to_owned()));
            }
        }
    }
    dockerfile.push_str("COPY start.sh /forgeai/start.sh\nRUN chmod 755 /forgeai/start.sh\n");
    files.push(("e2b.Dockerfile".into(), dockerfile));
    files.push(("start.sh".into(), START_SH.replace("__DEV_SERVER__", DEV_SERVER)));
    files.push((
        "e2b.toml".into(),
        format!(
            "# E2B template of forgeai's {NAME}; build it with `e2b template build` in this directory\n\
             # (README: \"Sandboxes on E2B\").\n\
             template_name = \"{NAME}\"\n\
             dockerfile = \"e2b.Dockerfile\"\n\
             start_cmd = \"/forgeai/start.sh\"\n\
             ready_cmd = \"curl -sf -o /dev/null http://localhost:3000/\"\n\
             cpu_count = 2\n\
             memory_mb = 2048\n"
        ),
    ));
    files.sort();
    files
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    /// The repository's E2B template is the recipe's rendering; with
    /// `FORGEAI_WRITE_E2B_TEMPLATE=1` this test rewrites it instead.
    #[test]
    fn e2b_template_matches_the_recipe() {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../templates/e2b/forgeai-v1");
        let rendered = forgeai_v1_e2b_template();
        if std::env::var_os("FORGEAI_WRITE_E2B_TEMPLATE").is_some() {
            let _ = std::fs::remove_dir_all(&dir);
            for (path, contents) in &rendered {
                let file = dir.join(path);
                std::fs::create_dir_all(file.parent().unwrap()).unwrap();
                std::fs::write(&file, contents).unwrap();
            }
        }
        let mut on_disk = Vec::new();
        let mut stack = vec![dir.clone()];
        while let Some(next) = stack.pop() {
            for entry in std::fs::read_dir(&next).unwrap_or_else(|e| panic!("{}: {e}", next.display())) {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    stack.push(path);
                } else {
                    let relative = path.strip_prefix(&dir).unwrap().to_string_lossy().into_owned();
                    on_disk.push((relative, std::fs::read_to_string(&path).unwrap()));
                }
            }
        }
        on_disk.sort();
        assert!(
            on_disk == rendered,
            "templates/e2b/forgeai-v1 is not the recipe's rendering; rewrite it with \
             FORGEAI_WRITE_E2B_TEMPLATE=1 cargo test -p forgeai-sandbox e2b_template"
        );
    }
}

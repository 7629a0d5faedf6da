//! Building the `forgeai-v1` template: a Next.js + Tailwind app with every shadcn/ui component
//! in `components/ui`, fonts served locally, and `next dev` as its dev server.
//!
//! npm runs inside a sandbox of an empty template — as the sandbox user, with the sandbox's
//! network (registry access) and limits — so nothing from the build touches the host. The
//! sandbox's writable layer then *is* the new template's project directory (the lower layer was
//! empty), which is moved into place instead of copied (~500 MB).
//!
//! shadcn's CLI downloads component sources from its website, unreachable here; the npm
//! package `shadcn-packaged` ships the same components, which are copied into the project (as
//! the shadcn CLI would) so the agent can edit them and Tailwind sees their classes.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

mod e2b;

pub use e2b::forgeai_v1_e2b_template;

use super::{LocalConfig, LocalProvider};
use crate::error::{Error, IoContext, Result};
use crate::local::cgroup::Limits;
use crate::provider::{CommandOptions, CreateOptions, SandboxProvider};
use crate::templates::{TEMPLATE_FILE, Template, TemplateConfig, Templates, chown_tree, replace_dir};

const NAME: &str = "forgeai-v1";
/// Names of the empty template a build runs in, and of the half-built template's directory;
/// both live in `<data_dir>/templates` only while a build runs.
const BASE_PREFIX: &str = "build-forgeai-v1-";
const STAGING_PREFIX: &str = ".forgeai-v1-";
/// Any single build step; `npm install` of Next.js is the slow one.
const STEP_TIMEOUT: Duration = Duration::from_secs(20 * 60);

const COPY_COMPONENTS_MJS: &str = include_str!("copy-components.mjs");
const PATCH_NEXT_CONFIG_MJS: &str = include_str!("patch-config.mjs");
const LAYOUT_TSX: &str = include_str!("layout.tsx");
const PAGE_TSX: &str = include_str!("page.tsx");
const SMOKE_TEST_SH: &str = include_str!("smoke-test.sh");
/// The template's dev server, run in the project directory.
const DEV_SERVER: &str = "node_modules/.bin/next dev --turbopack -H 0.0.0.0 -p 3000";
const USE_TOAST_TS: &str = include_str!("use-toast.ts");
const TOASTER_TSX: &str = include_str!("toaster.tsx");

/// The Next.js release line models know best, and create-next-app of that line (which writes
/// its conventional configuration: App Router, TypeScript, Tailwind v4 through PostCSS).
const CREATE_NEXT_APP: &str = "create-next-app@15.5.28";

/// Every package of the project, at exact versions, so the prompt can name them and
/// `npm install <one of them>` keeps the version the components were written for. The
/// `shadcn-packaged` components build on the Radix packages and libraries below; lucide-react
/// stays on the 0.x line, which still has the brand icons (`Github`, `Twitter`, …) models use;
/// zod 3 and recharts 2 are the APIs models write; shadcn's data tables use TanStack Table.
const DEPENDENCIES: &[&str] = &[
    "next@15.5.29",
    "react@19.1.10",
    "react-dom@19.1.10",
    "geist@1.9.2",
    "class-variance-authority@0.7.1",
    "clsx@2.1.1",
    "tailwind-merge@3.7.1",
    "tw-animate-css@1.4.0",
    "lucide-react@0.577.0",
    "recharts@2.15.4",
    "framer-motion@12.43.0",
    "react-hook-form@7.92.0",
    "@hookform/resolvers@5.2.2",
    "zod@3.25.76",
    "date-fns@4.4.0",
    "react-day-picker@9.14.0",
    "sonner@2.0.8",
    "next-themes@0.4.6",
    "vaul@1.1.2",
    "cmdk@1.1.1",
    "embla-carousel-react@8.6.0",
    "input-otp@1.5.0",
    "react-resizable-panels@3.0.6",
    "@tanstack/react-table@8.21.3",
    "@radix-ui/react-accordion@1.3.1",
    "@radix-ui/react-alert-dialog@1.2.1",
    "@radix-ui/react-aspect-ratio@1.2.0",
    "@radix-ui/react-avatar@1.3.1",
    "@radix-ui/react-checkbox@1.4.1",
    "@radix-ui/react-collapsible@1.2.1",
    "@radix-ui/react-context-menu@2.4.1",
    "@radix-ui/react-dialog@1.3.1",
    "@radix-ui/react-dropdown-menu@2.2.1",
    "@radix-ui/react-hover-card@1.2.1",
    "@radix-ui/react-label@2.1.17",
    "@radix-ui/react-menubar@1.2.1",
    "@radix-ui/react-navigation-menu@1.4.1",
    "@radix-ui/react-popover@1.3.1",
    "@radix-ui/react-progress@1.2.1",
    "@radix-ui/react-radio-group@1.5.1",
    "@radix-ui/react-scroll-area@1.4.0",
    "@radix-ui/react-select@2.4.1",
    "@radix-ui/react-separator@1.2.0",
    "@radix-ui/react-slider@1.6.1",
    "@radix-ui/react-slot@1.5.0",
    "@radix-ui/react-switch@1.4.1",
    "@radix-ui/react-tabs@1.2.1",
    "@radix-ui/react-toggle@1.2.1",
    "@radix-ui/react-toggle-group@1.2.1",
    "@radix-ui/react-tooltip@1.4.1",
];
const DEV_DEPENDENCIES: &[&str] = &["tailwindcss@4.3.5", "@tailwindcss/postcss@4.3.5", "typescript@5.9.3"];
/// The source of the shadcn/ui components (the shadcn CLI downloads them from its website,
/// which cannot be reached here).
const SHADCN_PACKAGED: &str = "shadcn-packaged@2025.12.15";

/// Appended to shadcn's stylesheet: use the local Geist fonts as Tailwind's sans/mono.
const FONT_THEME_CSS: &str =
    "\n@theme inline {\n  --font-sans: var(--font-geist-sans);\n  --font-mono: var(--font-geist-mono);\n}\n";

/// Names this recipe: a digest of everything the build uses. A built template records it, so
/// a cache (or an operator) can tell a template built by older code.
pub fn forgeai_v1_recipe() -> String {
    use sha2::{Digest, Sha256};
    let mut digest = Sha256::new();
    for part in [
        include_str!("mod.rs"),
        include_str!("e2b.rs"),
        // The build runs under the sandbox's seccomp filter: a new filter rebuilds the template,
        // which shows npm and `next build` still work under it.
        include_str!("../seccomp.rs"),
        COPY_COMPONENTS_MJS,
        PATCH_NEXT_CONFIG_MJS,
        LAYOUT_TSX,
        PAGE_TSX,
        SMOKE_TEST_SH,
        USE_TOAST_TS,
        TOASTER_TSX,
    ] {
        digest.update(part.as_bytes());
        digest.update([0]);
    }
    digest.finalize().iter().take(8).map(|b| format!("{b:02x}")).collect()
}

pub(crate) async fn build_forgeai_v1(data_dir: &Path) -> Result<Template> {
    let mut cfg = LocalConfig::new(data_dir);
    // npm and the first Next.js compile need more than an agent's sandbox.
    cfg.limits = Limits {
        memory_bytes: Some(6 << 30),
        pids: Some(4096),
        cpu_cores: None,
        cpu_shares: None,
    };
    let (uid, gid) = (cfg.uid, cfg.gid);
    let provider = LocalProvider::new(cfg).await?;
    let templates = Templates::dir(provider.data_dir());
    // One build per data dir at a time. The kernel drops the lock when its holder dies, so
    // whatever a build left behind while nobody holds it is from one that was interrupted.
    let _lock = BuildLock::acquire(&templates).await?;
    sweep_interrupted_builds(&provider, &templates).await;

    // An empty template to build in.
    let base_name = format!("{BASE_PREFIX}{:08x}", rand::random::<u32>());
    let base = templates.join(&base_name);
    std::fs::create_dir_all(base.join("project")).ctx(|| format!("create {}", base.display()))?;
    chown_tree(&base.join("project"), uid, gid)?;
    let base_cfg = TemplateConfig {
        dev_command: None,
        port: 3000,
        env: BTreeMap::new(),
        memory_estimate_bytes: 256 << 20,
        recipe: None,
    };
    write_json(&base.join(TEMPLATE_FILE), &base_cfg)?;

    let staging = templates.join(format!("{STAGING_PREFIX}{:08x}", rand::random::<u32>()));
    let result = async {
        let info = provider
            .create(
                &base_name,
                CreateOptions {
                    timeout: Some(Duration::from_secs(3600)),
                    ..Default::default()
                },
            )
            .await?;
        let id = info.id;
        let built = build_in(&provider, &id).await;
        let exported = match built {
            Ok(()) => {
                std::fs::create_dir_all(&staging).ctx(|| format!("create {}", staging.display()))?;
                provider.export_upper(&id, &staging.join("project")).await
            }
            Err(e) => Err(e),
        };
        let _ = provider.kill(&id).await;
        exported
    }
    .await;
    let _ = std::fs::remove_dir_all(&base);
    if let Err(e) = result {
        let _ = std::fs::remove_dir_all(&staging);
        return Err(e);
    }
    let config = TemplateConfig {
        dev_command: Some(format!("exec {DEV_SERVER}")),
        port: 3000,
        env: BTreeMap::from([
            ("NEXT_TELEMETRY_DISABLED".to_string(), "1".to_string()),
            ("PORT".to_string(), "3000".to_string()),
        ]),
        // Measured: 350–470 MiB of anonymous memory once `next dev` has compiled a page.
        memory_estimate_bytes: 448 << 20,
        recipe: Some(forgeai_v1_recipe()),
    };
    write_json(&staging.join(TEMPLATE_FILE), &config)?;
    replace_dir(&staging, &templates.join(NAME))?;
    Template::load(provider.data_dir(), NAME)
}

/// One step of the recipe: a shell command in the project directory, or a file written there.
pub(crate) enum Step {
    Run { name: &'static str, script: String },
    Write { path: &'static str, contents: &'static str },
}

/// The recipe, in order. The local build runs it in a sandbox; [`forgeai_v1_e2b_template`] renders
/// the same steps as an E2B template's Dockerfile.
pub(crate) fn steps() -> Vec<Step> {
    use Step::{Run, Write};
    let mut steps = vec![
        Run {
            name: "create-next-app",
            script: format!(
                "npx --yes {CREATE_NEXT_APP} forgeai-app --yes --ts --tailwind --app --turbopack --use-npm --no-src-dir \
                 --no-eslint --import-alias '@/*' && shopt -s dotglob && mv forgeai-app/* . && rmdir forgeai-app && rm -rf .git"
            ),
        },
        Run {
            name: "install packages",
            script: format!(
                "npm install --no-audit --no-fund --save-exact {} && npm install --no-audit --no-fund --save-exact --save-dev {}",
                DEPENDENCIES.join(" "),
                DEV_DEPENDENCIES.join(" ")
            ),
        },
        Write {
            path: ".forgeai-copy-components.mjs",
            contents: COPY_COMPONENTS_MJS,
        },
        Run {
            name: "copy components",
            script: format!(
                "set -e; dir=$(mktemp -d); npm pack --silent --pack-destination \"$dir\" {SHADCN_PACKAGED} >/dev/null; \
                 tar -xzf \"$dir\"/*.tgz -C \"$dir\"; SHADCN_DIR=\"$dir/package\" node .forgeai-copy-components.mjs; \
                 cp \"$dir/package/index.css\" app/globals.css; rm -rf \"$dir\" .forgeai-copy-components.mjs"
            ),
        },
        Write {
            path: ".forgeai-font-theme.css",
            contents: FONT_THEME_CSS,
        },
        Run {
            name: "fonts",
            script: "cat .forgeai-font-theme.css >> app/globals.css && rm .forgeai-font-theme.css".into(),
        },
        Write {
            path: "app/layout.tsx",
            contents: LAYOUT_TSX,
        },
        Write {
            path: "app/page.tsx",
            contents: PAGE_TSX,
        },
    ];
    for path in ["hooks/use-toast.ts", "components/ui/use-toast.ts"] {
        steps.push(Write {
            path,
            contents: USE_TOAST_TS,
        });
    }
    steps.extend([
        Write {
            path: "components/ui/toaster.tsx",
            contents: TOASTER_TSX,
        },
        Write {
            path: ".forgeai-patch-config.mjs",
            contents: PATCH_NEXT_CONFIG_MJS,
        },
        Run {
            name: "next.config.ts",
            script: "node .forgeai-patch-config.mjs && rm .forgeai-patch-config.mjs".into(),
        },
        Write {
            path: ".forgeai-smoke-test.sh",
            contents: SMOKE_TEST_SH,
        },
        Run {
            name: "smoke test",
            script: "bash .forgeai-smoke-test.sh && rm .forgeai-smoke-test.sh".into(),
        },
        Run {
            name: "clean",
            script: "rm -rf .next".into(),
        },
    ]);
    steps
}

async fn build_in(provider: &LocalProvider, id: &str) -> Result<()> {
    for step in steps() {
        let (name, script) = match step {
            Step::Write { path, contents } => {
                provider.write_file(id, path, contents.as_bytes()).await?;
                continue;
            }
            Step::Run { name, script } => (name, script),
        };
        tracing::info!(step = name, "building {NAME}");
        let opts = CommandOptions::default()
            .with_timeout(STEP_TIMEOUT)
            .with_env("NEXT_TELEMETRY_DISABLED", "1")
            .on_output(move |chunk| {
                for line in chunk.data.lines() {
                    tracing::debug!(step = name, "{line}");
                }
            });
        let r = provider.run_command(id, &script, opts).await?;
        if !r.success() {
            let tail: String = r
                .stderr
                .chars()
                .rev()
                .take(4000)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            return Err(Error::Provider(format!(
                "{NAME} build step `{name}` failed with exit code {}: {tail}",
                r.exit_code
            )));
        }
    }
    Ok(())
}

/// An exclusive `flock(2)` on `<templates>/.forgeai-v1.lock`, held for the whole build.
struct BuildLock {
    _file: std::fs::File,
}

impl BuildLock {
    async fn acquire(templates: &Path) -> Result<BuildLock> {
        let path = templates.join(format!(".{NAME}.lock"));
        tokio::task::spawn_blocking(move || {
            let file = match super::lockfile::try_lock(&path)? {
                Some(file) => file,
                None => {
                    tracing::info!("another {NAME} build runs in this data dir; waiting for it");
                    super::lockfile::lock(&path)?
                }
            };
            Ok(BuildLock { _file: file })
        })
        .await
        .map_err(|e| Error::Provider(format!("template build task failed: {e}")))?
    }
}

/// Removes what an interrupted build (process killed, host rebooted) left: its build sandbox
/// (mount, network, cgroup, processes and ~500 MB of files), its empty base template and its
/// half-built staging directory. Only called with the build lock held.
async fn sweep_interrupted_builds(provider: &LocalProvider, templates: &Path) {
    for id in provider.list() {
        if provider
            .stored_template(&id)
            .is_some_and(|t| t.starts_with(BASE_PREFIX))
        {
            tracing::info!(%id, "removing the sandbox of an interrupted {NAME} build");
            if let Err(e) = provider.kill(&id).await {
                tracing::warn!(%id, error = %e, "cannot remove the sandbox of an interrupted {NAME} build");
            }
        }
    }
    let Ok(entries) = std::fs::read_dir(templates) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
        if is_dir && (name.starts_with(BASE_PREFIX) || name.starts_with(STAGING_PREFIX)) {
            tracing::info!(dir = %entry.path().display(), "removing what an interrupted {NAME} build left");
            if let Err(e) = std::fs::remove_dir_all(entry.path()) {
                tracing::warn!(dir = %entry.path().display(), error = %e, "cannot remove");
            }
        }
    }
}

fn write_json(path: &Path, value: &TemplateConfig) -> Result<()> {
    let json = serde_json::to_string_pretty(value).map_err(|e| Error::InvalidTemplate {
        name: NAME.into(),
        reason: e.to_string(),
    })?;
    std::fs::write(path, json).ctx(|| format!("write {}", path.display()))
}

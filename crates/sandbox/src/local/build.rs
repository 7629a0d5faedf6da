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

/// Copies shadcn-packaged's components, hooks and utils into the project, rewriting their
/// relative imports to the `@/` alias the project uses.
const COPY_COMPONENTS_MJS: &str = r#"
import fs from 'node:fs';
import path from 'node:path';
const pkg = 'node_modules/shadcn-packaged';
const fix = (src) => src
  .replaceAll(/(["'])\.\.\/lib\/utils(\.js)?\1/g, '"@/lib/utils"')
  .replaceAll(/(["'])\.\.\/hooks\/([\w-]+?)(\.jsx?)?\1/g, '"@/hooks/$2"');
let count = 0;
for (const [from, to] of [['ui', 'components/ui'], ['hooks', 'hooks'], ['lib', 'lib']]) {
  fs.mkdirSync(to, { recursive: true });
  for (const f of fs.readdirSync(path.join(pkg, from))) {
    fs.writeFileSync(path.join(to, f), fix(fs.readFileSync(path.join(pkg, from, f), 'utf8')));
    if (from === 'ui' && f.endsWith('.jsx')) count++;
  }
}
if (count < 40) { console.error(`only ${count} components found in ${pkg}/ui`); process.exit(1); }
console.log(`copied ${count} shadcn/ui components`);
"#;

const LAYOUT_TSX: &str = r#"import type { Metadata } from "next";
import { GeistSans } from "geist/font/sans";
import { GeistMono } from "geist/font/mono";
import "./globals.css";

export const metadata: Metadata = {
  title: "forgeai app",
  description: "Built with forgeai",
};

export default function RootLayout({
  children,
}: Readonly<{
  children: React.ReactNode;
}>) {
  return (
    <html lang="en">
      <body className={`${GeistSans.variable} ${GeistMono.variable} font-sans antialiased`}>{children}</body>
    </html>
  );
}
"#;

const PAGE_TSX: &str = r#"import { Button } from "@/components/ui/button";

export default function Home() {
  return (
    <main className="flex min-h-screen flex-col items-center justify-center gap-4 p-8">
      <h1 className="text-3xl font-semibold">forgeai</h1>
      <p className="text-muted-foreground">Your app will appear here.</p>
      <Button>Get started</Button>
    </main>
  );
}
"#;

/// Adds to create-next-app's own next.config.ts (which wires Tailwind into Turbopack and must
/// be kept): preview hosts look like 3000-<sandbox>.<domain>, and the dev server must accept
/// them as origins for its dev resources and HMR socket; Unsplash images are allowed.
const PATCH_NEXT_CONFIG_MJS: &str = r#"
import fs from 'node:fs';
let src = fs.readFileSync('next.config.ts', 'utf8');
const anchor = 'const nextConfig: NextConfig = {';
if (!src.includes(anchor)) { console.error(`next.config.ts has no "${anchor}"; create-next-app changed its output`); process.exit(1); }
src = src.replace(anchor, `// Preview hosts look like 3000-<sandbox>.<domain> (FORGEAI_PREVIEW_DOMAIN, set by forgeai).
const previewDomain = process.env.FORGEAI_PREVIEW_DOMAIN;

${anchor}
  allowedDevOrigins: ["*.localhost", ...(previewDomain && previewDomain !== "localhost" ? [\`*.\${previewDomain}\`] : [])],
  images: { remotePatterns: [{ protocol: "https", hostname: "images.unsplash.com" }] },`);
fs.writeFileSync('next.config.ts', src);
"#;

/// Appended to shadcn's stylesheet: use the local Geist fonts as Tailwind's sans/mono.
const FONT_THEME_CSS: &str =
    "\n@theme inline {\n  --font-sans: var(--font-geist-sans);\n  --font-mono: var(--font-geist-mono);\n}\n";

/// Checks the result: a throwaway `next dev` must render the page.
const SMOKE_TEST_SH: &str = r#"
node_modules/.bin/next dev -H 127.0.0.1 -p 3999 > /tmp/next-dev.log 2>&1 &
for i in $(seq 1 180); do
  if curl -sf http://127.0.0.1:3999/ -o /tmp/page.html && grep -q 'Get started' /tmp/page.html; then
    echo "next dev rendered the page after ${i}s"; exit 0
  fi
  sleep 1
done
echo 'next dev did not render the page:' >&2; tail -50 /tmp/next-dev.log >&2; exit 1
"#;

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
        dev_command: Some("exec node_modules/.bin/next dev -H 0.0.0.0 -p 3000".into()),
        port: 3000,
        env: BTreeMap::from([
            ("NEXT_TELEMETRY_DISABLED".to_string(), "1".to_string()),
            ("PORT".to_string(), "3000".to_string()),
        ]),
        // Measured: 350–470 MiB of anonymous memory once `next dev` has compiled a page.
        memory_estimate_bytes: 448 << 20,
    };
    write_json(&staging.join(TEMPLATE_FILE), &config)?;
    replace_dir(&staging, &templates.join(NAME))?;
    Template::load(provider.data_dir(), NAME)
}

async fn build_in(provider: &LocalProvider, id: &str) -> Result<()> {
    let step = |name: &'static str, script: String| async move {
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
        Ok(())
    };
    step(
        "create-next-app",
        "npx --yes create-next-app@latest forgeai-app --yes --ts --tailwind --app --use-npm --no-src-dir --import-alias '@/*' \
         && shopt -s dotglob && mv forgeai-app/* . && rmdir forgeai-app && rm -rf .git"
            .into(),
    )
    .await?;
    step(
        "install shadcn-packaged",
        "npm install --no-audit --no-fund shadcn-packaged geist class-variance-authority clsx tailwind-merge lucide-react tw-animate-css".into(),
    )
    .await?;
    provider
        .write_file(id, ".forgeai-copy-components.mjs", COPY_COMPONENTS_MJS.as_bytes())
        .await?;
    step(
        "copy components",
        "node .forgeai-copy-components.mjs && rm .forgeai-copy-components.mjs".into(),
    )
    .await?;
    step(
        "stylesheet",
        "cp node_modules/shadcn-packaged/index.css app/globals.css".into(),
    )
    .await?;
    let css = provider.read_file(id, "app/globals.css").await?;
    let mut css = String::from_utf8_lossy(&css).into_owned();
    css.push_str(FONT_THEME_CSS);
    provider.write_file(id, "app/globals.css", css.as_bytes()).await?;
    provider.write_file(id, "app/layout.tsx", LAYOUT_TSX.as_bytes()).await?;
    provider.write_file(id, "app/page.tsx", PAGE_TSX.as_bytes()).await?;
    provider
        .write_file(id, ".forgeai-patch-config.mjs", PATCH_NEXT_CONFIG_MJS.as_bytes())
        .await?;
    step(
        "next.config.ts",
        "node .forgeai-patch-config.mjs && rm .forgeai-patch-config.mjs".into(),
    )
    .await?;
    step("smoke test", SMOKE_TEST_SH.into()).await?;
    step("clean", "rm -rf .next".into()).await?;
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

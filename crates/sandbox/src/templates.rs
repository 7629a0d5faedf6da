//! Sandbox templates: read-only directories every sandbox of that template is a copy-on-write
//! clone of.
//!
//! Layout of `<data_dir>/templates/<name>/`:
//! - `forgeai-template.json` — `{ "devCommand": "...", "port": 3000, "env": { … } }`
//! - `project/` — the files the sandbox starts with (the overlay's lower layer), owned by the
//!   sandbox user so sandbox code can change them (overlayfs copies ownership up);
//! - `support/` (optional) — files the dev command needs but the project should not contain,
//!   shown read-only at `/opt/forgeai-template`.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Error, IoContext, Result};

/// Name of the template description file.
pub const TEMPLATE_FILE: &str = "forgeai-template.json";
/// The default uid/gid of the sandbox user (`user` inside).
pub const DEFAULT_SANDBOX_UID: u32 = 1000;

/// What a template declares about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TemplateConfig {
    /// Long-running command started with each sandbox and restarted when it dies.
    #[serde(default)]
    pub dev_command: Option<String>,
    /// Port the dev server listens on.
    #[serde(default = "default_port")]
    pub port: u16,
    /// Environment for every process of the sandbox.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Memory a sandbox of this template is expected to use once its dev server served a page;
    /// the memory budget counts a starting sandbox as at least this much.
    #[serde(default = "default_memory_estimate")]
    pub memory_estimate_bytes: u64,
    /// The recipe a built-in template was built by (see [`crate::forgeai_v1_recipe`]); a template
    /// whose recipe differs from the running code's was built by another version of forgeai.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recipe: Option<String>,
}

fn default_port() -> u16 {
    3000
}

fn default_memory_estimate() -> u64 {
    64 << 20
}

/// A template on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    pub name: String,
    pub dir: PathBuf,
    pub config: TemplateConfig,
}

impl Template {
    /// The read-only lower layer of every sandbox of this template.
    pub fn project_dir(&self) -> PathBuf {
        self.dir.join("project")
    }

    /// Support files shown at `/opt/forgeai-template`, if the template has any.
    pub fn support_dir(&self) -> Option<PathBuf> {
        let d = self.dir.join("support");
        d.is_dir().then_some(d)
    }

    /// Loads template `name` from `<data_dir>/templates/<name>`.
    pub fn load(data_dir: &Path, name: &str) -> Result<Template> {
        validate_name(name)?;
        let dir = Templates::dir(data_dir).join(name);
        let file = dir.join(TEMPLATE_FILE);
        let text = match fs::read_to_string(&file) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::TemplateNotFound {
                    name: name.into(),
                    path: dir,
                });
            }
            Err(e) => return Err(Error::io(format!("read {}", file.display()), e)),
        };
        let config: TemplateConfig = serde_json::from_str(&text).map_err(|e| Error::InvalidTemplate {
            name: name.into(),
            reason: format!("{}: {e}", file.display()),
        })?;
        if !dir.join("project").is_dir() {
            return Err(Error::InvalidTemplate {
                name: name.into(),
                reason: format!("{} has no project/ directory", dir.display()),
            });
        }
        Ok(Template {
            name: name.into(),
            dir,
            config,
        })
    }
}

/// Template names become directory names: keep them to a safe alphabet.
pub fn validate_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with(['.', '-'])
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidTemplate {
            name: name.into(),
            reason: "names are 1-64 letters, digits, '-', '_' or '.', not starting with '.' or '-'".into(),
        })
    }
}

/// Builds and finds templates.
pub struct Templates;

/// Dev server of the `static` template: serves the project over HTTP, index.html at `/`.
/// Written for node (always present, since the agent needs it) with no dependencies; used when
/// busybox is missing.
const STATIC_SERVER_JS: &str = r#"// forgeai `static` template dev server: serves /home/user/project on $PORT (3000).
'use strict';
const http = require('http');
const fs = require('fs');
const path = require('path');
const root = '/home/user/project';
const port = Number(process.env.PORT || 3000);
const types = {
  '.html': 'text/html; charset=utf-8', '.htm': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8', '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8', '.json': 'application/json', '.txt': 'text/plain; charset=utf-8',
  '.svg': 'image/svg+xml', '.png': 'image/png', '.jpg': 'image/jpeg', '.jpeg': 'image/jpeg',
  '.gif': 'image/gif', '.webp': 'image/webp', '.ico': 'image/x-icon', '.wasm': 'application/wasm',
};
function send(res, code, type, body) {
  res.writeHead(code, { 'content-type': type, 'cache-control': 'no-store' });
  res.end(body);
}
http.createServer((req, res) => {
  let pathname;
  try { pathname = decodeURIComponent(new URL(req.url, 'http://x').pathname); }
  catch { return send(res, 400, 'text/plain', 'bad request\n'); }
  let file = path.join(root, path.normalize(pathname));
  if (file !== root && !file.startsWith(root + '/')) return send(res, 403, 'text/plain', 'forbidden\n');
  fs.stat(file, (err, st) => {
    if (!err && st.isDirectory()) file = path.join(file, 'index.html');
    fs.readFile(file, (err, data) => {
      if (err) return send(res, 404, 'text/plain; charset=utf-8', 'not found\n');
      send(res, 200, types[path.extname(file).toLowerCase()] || 'application/octet-stream', data);
    });
  });
}).listen(port, '0.0.0.0', () => console.log(`static dev server listening on :${port}`));
"#;

const STATIC_INDEX_HTML: &str = "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>forgeai</title></head>\n<body><h1>forgeai static template</h1><p>Write index.html to replace this page.</p></body></html>\n";

impl Templates {
    /// `<data_dir>/templates`.
    pub fn dir(data_dir: &Path) -> PathBuf {
        data_dir.join("templates")
    }

    /// Makes sure the `static` template exists (sandbox user uid/gid 1000); cheap when it does.
    pub fn ensure_static(data_dir: &Path) -> Result<Template> {
        Self::ensure_static_for(data_dir, DEFAULT_SANDBOX_UID, DEFAULT_SANDBOX_UID)
    }

    /// [`Templates::ensure_static`] for another sandbox uid/gid.
    pub fn ensure_static_for(data_dir: &Path, uid: u32, gid: u32) -> Result<Template> {
        let config = TemplateConfig {
            // busybox's httpd starts in a millisecond where node needs ~50 ms of CPU, which
            // decides how many sandboxes can start at once; node is the fallback.
            dev_command: Some(
                "if [ -x /bin/busybox ]; then exec busybox httpd -f -p 3000 -h /home/user/project; \
                 else exec node /opt/forgeai-template/serve.js; fi"
                    .into(),
            ),
            port: 3000,
            env: BTreeMap::from([("PORT".to_string(), "3000".to_string())]),
            memory_estimate_bytes: 8 << 20,
            recipe: None,
        };
        let config_json = serde_json::to_string_pretty(&config).map_err(|e| Error::InvalidTemplate {
            name: "static".into(),
            reason: e.to_string(),
        })?;
        let dir = Self::dir(data_dir).join("static");
        let current = fs::read_to_string(dir.join(TEMPLATE_FILE)).ok();
        let server = fs::read_to_string(dir.join("support/serve.js")).ok();
        if current.as_deref() == Some(config_json.as_str())
            && server.as_deref() == Some(STATIC_SERVER_JS)
            && dir.join("project").is_dir()
        {
            return Template::load(data_dir, "static");
        }
        // Build next to the final place and rename in, so a half-written template is never used.
        let templates = Self::dir(data_dir);
        ensure_traversable_dir(&templates)?;
        let staging = templates.join(format!(".static-{}", rand::random::<u32>()));
        let result = (|| {
            fs::create_dir_all(staging.join("project")).ctx(|| format!("create {}", staging.display()))?;
            fs::create_dir_all(staging.join("support")).ctx(|| format!("create {}", staging.display()))?;
            fs::write(staging.join("project/index.html"), STATIC_INDEX_HTML)
                .ctx(|| "write static index.html".into())?;
            fs::write(staging.join("support/serve.js"), STATIC_SERVER_JS).ctx(|| "write static serve.js".into())?;
            fs::write(staging.join(TEMPLATE_FILE), &config_json).ctx(|| "write static template config".into())?;
            chown_tree(&staging.join("project"), uid, gid)?;
            // bwrap runs as the sandbox user and must reach support/ to bind it.
            for d in [&staging, &staging.join("support")] {
                fs::set_permissions(d, fs::Permissions::from_mode(0o755)).ctx(|| format!("chmod {}", d.display()))?;
            }
            replace_dir(&staging, &dir)
        })();
        if result.is_err() {
            let _ = fs::remove_dir_all(&staging);
        }
        result?;
        Template::load(data_dir, "static")
    }
}

/// Creates `dir` (and parents) with mode 0711: the sandbox user must traverse it for bwrap's
/// binds but has no business listing it.
pub(crate) fn ensure_traversable_dir(dir: &Path) -> Result<()> {
    fs::create_dir_all(dir).ctx(|| format!("create {}", dir.display()))?;
    let mode = fs::metadata(dir)
        .ctx(|| format!("stat {}", dir.display()))?
        .permissions()
        .mode();
    if mode & 0o001 == 0 {
        fs::set_permissions(dir, fs::Permissions::from_mode((mode & 0o7777) | 0o711))
            .ctx(|| format!("chmod {}", dir.display()))?;
    }
    Ok(())
}

pub(crate) fn replace_dir(staging: &Path, dir: &Path) -> Result<()> {
    if dir.exists() {
        // Running sandboxes keep the old lower layer mounted; move it aside, never edit it.
        let old = dir.with_file_name(format!(
            ".old-{}-{}",
            dir.file_name().map(|n| n.to_string_lossy()).unwrap_or_default(),
            rand::random::<u32>()
        ));
        fs::rename(dir, &old).ctx(|| format!("move old template {} aside", dir.display()))?;
        fs::rename(staging, dir).ctx(|| format!("install template {}", dir.display()))?;
        let _ = fs::remove_dir_all(&old);
    } else {
        fs::rename(staging, dir).ctx(|| format!("install template {}", dir.display()))?;
    }
    Ok(())
}

pub(crate) fn chown_tree(path: &Path, uid: u32, gid: u32) -> Result<()> {
    std::os::unix::fs::lchown(path, Some(uid), Some(gid)).ctx(|| format!("chown {}", path.display()))?;
    let meta = fs::symlink_metadata(path).ctx(|| format!("stat {}", path.display()))?;
    if meta.is_dir() {
        for entry in fs::read_dir(path).ctx(|| format!("read {}", path.display()))? {
            let entry = entry.ctx(|| format!("read {}", path.display()))?;
            chown_tree(&entry.path(), uid, gid)?;
        }
    }
    Ok(())
}

/// How long the `forgeai-v1` build may take (npm installs hundreds of MB).
pub const BUILD_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// Builds template `name` into `<data_dir>/templates/<name>`.
///
/// `static` is written directly; `forgeai-v1` (Next.js + Tailwind + every shadcn/ui component
/// from `shadcn-packaged`) is built by running npm in a sandbox of the local provider, which
/// needs root and registry access and takes minutes.
pub async fn build_template(name: &str, data_dir: &Path) -> Result<Template> {
    match name {
        "static" => {
            let data_dir = data_dir.to_path_buf();
            tokio::task::spawn_blocking(move || Templates::ensure_static(&data_dir))
                .await
                .map_err(|e| Error::Provider(format!("template build task failed: {e}")))?
        }
        "forgeai-v1" => crate::local::build_forgeai_v1(data_dir).await,
        other => Err(Error::InvalidTemplate {
            name: other.into(),
            reason: "no build recipe for it (known: static, forgeai-v1)".into(),
        }),
    }
}

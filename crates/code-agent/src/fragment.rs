//! Which of the agent's files a fragment keeps: text source files only, within the size limits.

use std::collections::BTreeMap;

use forgeai_agent::{SizeLimits, format_bytes};

/// Directories whose contents never go into a fragment, wherever they are: installed packages,
/// Next.js build output and caches, version control.
const EXCLUDED_ANYWHERE: &[&str] = &["node_modules", ".next", ".git", ".turbo", ".vercel", ".swc", ".cache"];

/// Top-level directories of build output.
const EXCLUDED_AT_ROOT: &[&str] = &["dist", "build", "out", "coverage"];

/// Extensions of binary formats: such a file written as text is broken anyway.
const BINARY_EXTENSIONS: &[&str] = &[
    "png", "jpg", "jpeg", "gif", "webp", "avif", "ico", "bmp", "tif", "tiff", "woff", "woff2", "ttf", "otf", "eot",
    "mp3", "mp4", "webm", "ogg", "wav", "mov", "zip", "gz", "tgz", "br", "zst", "tar", "7z", "pdf", "wasm", "exe",
    "so", "dll", "bin", "db", "sqlite",
];

/// The files of a fragment, and the ones left out with the reason.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct FragmentFiles {
    pub files: BTreeMap<String, String>,
    pub left_out: Vec<(String, String)>,
}

impl FragmentFiles {
    /// A sentence for the person reading the result, when something was left out.
    pub fn note(&self) -> Option<String> {
        if self.left_out.is_empty() {
            return None;
        }
        const SHOWN: usize = 5;
        let mut listed: Vec<String> = self
            .left_out
            .iter()
            .take(SHOWN)
            .map(|(path, reason)| format!("`{path}` ({reason})"))
            .collect();
        if self.left_out.len() > SHOWN {
            listed.push(format!("{} more", self.left_out.len() - SHOWN));
        }
        Some(format!(
            "Not kept in this saved version (they stay in the sandbox): {}.",
            listed.join(", ")
        ))
    }
}

/// Why `path` with `content` never goes into a fragment, if it does not.
fn excluded(path: &str, content: &str, limits: &SizeLimits) -> Option<String> {
    let parts: Vec<&str> = path.split('/').collect();
    let directories = &parts[..parts.len() - 1];
    if directories.iter().any(|part| EXCLUDED_ANYWHERE.contains(part))
        || directories
            .first()
            .is_some_and(|first| EXCLUDED_AT_ROOT.contains(first))
    {
        return Some("installed packages or build output".into());
    }
    let extension = path
        .rsplit_once('.')
        .map(|(_, extension)| extension.to_ascii_lowercase());
    if extension.is_some_and(|extension| BINARY_EXTENSIONS.contains(&extension.as_str())) || looks_binary(content) {
        return Some("not a text file".into());
    }
    if content.len() > limits.max_file_bytes {
        return Some(format!(
            "{}, over the {} a file may have",
            format_bytes(content.len()),
            format_bytes(limits.max_file_bytes)
        ));
    }
    None
}

/// NUL, or many other control characters, in the first 8 KiB (what `git` and `grep` look at).
fn looks_binary(content: &str) -> bool {
    let head = &content.as_bytes()[..content.len().min(8192)];
    let controls = head
        .iter()
        .filter(|&&byte| byte < 0x20 && !matches!(byte, b'\n' | b'\r' | b'\t' | 0x0c))
        .count();
    head.contains(&0) || controls * 10 > head.len().max(1)
}

/// The files of `all` that a fragment keeps: no packages, build output or binary files, no file
/// over the file limit, and in all at most the fragment limit (counting paths and contents as
/// [`forgeai_store::files_size`] does). When they do not all fit, the smaller files are kept
/// first, so the sources survive and the odd big file is what goes.
pub(crate) fn fragment_files(all: &BTreeMap<String, String>, limits: &SizeLimits) -> FragmentFiles {
    let mut result = FragmentFiles::default();
    let mut candidates: Vec<(&String, &String)> = Vec::new();
    for (path, content) in all {
        match excluded(path, content, limits) {
            Some(reason) => result.left_out.push((path.clone(), reason)),
            None => candidates.push((path, content)),
        }
    }
    candidates.sort_by_key(|(path, content)| (path.len() + content.len(), path.as_str()));
    let mut total = 0;
    for (path, content) in candidates {
        let size = path.len() + content.len();
        if total + size > limits.max_fragment_bytes {
            let reason = format!(
                "the saved version would pass its limit of {}",
                format_bytes(limits.max_fragment_bytes)
            );
            result.left_out.push((path.clone(), reason));
            continue;
        }
        total += size;
        result.files.insert(path.clone(), content.clone());
    }
    result.left_out.sort();
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(entries: &[(&str, String)]) -> BTreeMap<String, String> {
        entries
            .iter()
            .map(|(path, content)| ((*path).to_owned(), content.clone()))
            .collect()
    }

    #[test]
    fn packages_build_output_and_binaries_stay_out() {
        let all = files(&[
            ("app/page.tsx", "export default function Page() {}".into()),
            ("components/build/Button.tsx", "button".into()),
            ("node_modules/react/index.js", "module.exports = {}".into()),
            ("packages/ui/node_modules/x/index.js", "x".into()),
            (".next/server/app/page.js", "compiled".into()),
            ("dist/index.html", "<html>".into()),
            ("out/index.html", "<html>".into()),
            (".git/config", "[core]".into()),
            ("public/logo.png", "\u{89}PNG".into()),
            ("public/blob.txt", "a\0b".into()),
            ("README.md", "# readme".into()),
        ]);
        let kept = fragment_files(&all, &SizeLimits::default());
        assert_eq!(
            kept.files.keys().collect::<Vec<_>>(),
            ["README.md", "app/page.tsx", "components/build/Button.tsx"]
        );
        assert_eq!(kept.left_out.len(), 8);
        let note = kept.note().unwrap();
        assert!(
            note.contains("`.git/config` (installed packages or build output)"),
            "{note}"
        );
        assert!(note.ends_with(", 3 more."), "{note}");
    }

    #[test]
    fn a_fragment_never_passes_its_limits() {
        let limits = SizeLimits {
            max_file_bytes: 1000,
            max_fragment_bytes: 2500,
            ..SizeLimits::default()
        };
        let all = files(&[
            ("a.ts", "a".repeat(900)),
            ("b.ts", "b".repeat(900)),
            ("c.ts", "c".repeat(900)),
            ("small.ts", "s".repeat(10)),
            ("huge.txt", "h".repeat(50_000_000)),
        ]);
        let kept = fragment_files(&all, &limits);
        assert!(forgeai_store::files_size(&kept.files) <= 2500);
        assert_eq!(kept.files.keys().collect::<Vec<_>>(), ["a.ts", "b.ts", "small.ts"]);
        let left_out: Vec<&str> = kept.left_out.iter().map(|(path, _)| path.as_str()).collect();
        assert_eq!(left_out, ["c.ts", "huge.txt"]);
        assert!(
            kept.left_out[1]
                .1
                .contains("47.7 MiB, over the 1000 bytes a file may have")
        );
        assert!(kept.left_out[0].1.contains("would pass its limit of 2.4 KiB"));
        assert_eq!(fragment_files(&BTreeMap::new(), &limits), FragmentFiles::default());
        assert_eq!(FragmentFiles::default().note(), None);
    }
}

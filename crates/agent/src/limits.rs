//! Size limits on what an agent's tools take in and give back, so one run cannot fill a shared
//! server's database, journal or model context with a single huge file.

use serde::{Deserialize, Serialize};

const KIB: usize = 1024;
const MIB: usize = 1024 * KIB;

/// How much one coding run may write, send and get back. The binary fills it from its
/// configuration; libraries only take it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SizeLimits {
    /// Most bytes of one file written by a tool (`createOrUpdateFiles`) or by an edit of a
    /// fragment through the API.
    pub max_file_bytes: usize,
    /// Most bytes of the arguments of one tool call. A bigger call runs nothing and is answered
    /// with a tool error; its arguments are not sent back to the model either.
    pub max_tool_call_bytes: usize,
    /// Most bytes of one tool result sent back to the model; a longer one keeps its beginning
    /// and end, with a note saying how much was left out.
    pub max_tool_result_bytes: usize,
    /// Most bytes of the files of one fragment (paths plus contents).
    pub max_fragment_bytes: usize,
}

impl Default for SizeLimits {
    fn default() -> Self {
        Self {
            max_file_bytes: MIB,
            max_tool_call_bytes: 4 * MIB,
            max_tool_result_bytes: 64 * KIB,
            max_fragment_bytes: 8 * MIB,
        }
    }
}

/// A byte count as people read it: `812 bytes`, `64 KiB`, `1.5 MiB`.
pub fn format_bytes(bytes: usize) -> String {
    let with_unit = |unit: usize, name: &str| {
        if bytes.is_multiple_of(unit) {
            format!("{} {name}", bytes / unit)
        } else {
            format!("{:.1} {name}", bytes as f64 / unit as f64)
        }
    };
    if bytes >= MIB {
        with_unit(MIB, "MiB")
    } else if bytes >= KIB {
        with_unit(KIB, "KiB")
    } else {
        format!("{bytes} bytes")
    }
}

/// `text` cut to at most `max_bytes` (plus a note of about a hundred bytes): its beginning and
/// its end, where tool output has what matters (what ran, and how it ended), with a note in the
/// middle saying how much was left out and why.
pub fn truncate_middle(text: &str, max_bytes: usize) -> String {
    if text.len() <= max_bytes {
        return text.to_owned();
    }
    let head_end = floor_char_boundary(text, max_bytes / 2);
    let tail_start = ceil_char_boundary(text, text.len() - (max_bytes - head_end));
    let omitted = tail_start - head_end;
    format!(
        "{}\n[… {omitted} bytes left out: a tool result sent back is at most {}; ask for less, e.g. one file or a part of it …]\n{}",
        &text[..head_end],
        format_bytes(max_bytes),
        &text[tail_start..]
    )
}

fn floor_char_boundary(text: &str, mut index: usize) -> usize {
    while !text.is_char_boundary(index) {
        index -= 1;
    }
    index
}

fn ceil_char_boundary(text: &str, mut index: usize) -> usize {
    while !text.is_char_boundary(index) {
        index += 1;
    }
    index
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_naturally() {
        assert_eq!(format_bytes(812), "812 bytes");
        assert_eq!(format_bytes(64 * 1024), "64 KiB");
        assert_eq!(format_bytes(MIB), "1 MiB");
        assert_eq!(format_bytes(50 * MIB + MIB / 2), "50.5 MiB");
    }

    #[test]
    fn long_text_keeps_its_ends_within_the_limit() {
        assert_eq!(truncate_middle("short", 10), "short");
        let text = format!("BEGIN{}END", "é".repeat(100_000));
        let cut = truncate_middle(&text, 1000);
        assert!(cut.starts_with("BEGIN") && cut.ends_with("END"), "{cut}");
        assert!(cut.len() <= 1000 + 200, "{}", cut.len());
        assert!(cut.contains("bytes left out: a tool result sent back is at most 1000 bytes"));
    }
}

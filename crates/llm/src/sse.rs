//! A minimal incremental Server-Sent Events decoder (just what chat streams use).

/// Feeds bytes in, yields the `data` of each complete event.
///
/// Handles `\n`, `\r\n` and `\r` line ends, `data:` with or without a space,
/// multi-line data (joined with `\n`), comments (`: ...`) and other fields
/// (ignored), and chunk boundaries anywhere, including inside UTF-8 sequences.
#[derive(Debug, Default)]
pub(crate) struct SseDecoder {
    buf: Vec<u8>,
    data: Option<String>,
    /// The previous byte was a `\r` that ended a line (so a following `\n` is
    /// part of the same line end).
    after_cr: bool,
}

impl SseDecoder {
    /// Adds bytes; returns the data of every event completed by them.
    pub(crate) fn feed(&mut self, bytes: &[u8]) -> Vec<String> {
        let mut out = Vec::new();
        for &b in bytes {
            if self.after_cr {
                self.after_cr = false;
                if b == b'\n' {
                    continue;
                }
            }
            match b {
                b'\n' => self.end_line(&mut out),
                b'\r' => {
                    self.end_line(&mut out);
                    self.after_cr = true;
                }
                _ => self.buf.push(b),
            }
        }
        out
    }

    /// End of input: returns the data of a last event not followed by a blank line.
    pub(crate) fn finish(&mut self) -> Option<String> {
        if !self.buf.is_empty() {
            let mut out = Vec::new();
            self.end_line(&mut out);
            if let Some(d) = out.pop() {
                return Some(d);
            }
        }
        self.data.take()
    }

    fn end_line(&mut self, out: &mut Vec<String>) {
        let line = String::from_utf8_lossy(&self.buf).into_owned();
        self.buf.clear();
        if line.is_empty() {
            if let Some(d) = self.data.take() {
                out.push(d);
            }
            return;
        }
        if line.starts_with(':') {
            return; // comment / keep-alive
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line.as_str(), ""),
        };
        if field == "data" {
            match &mut self.data {
                Some(d) => {
                    d.push('\n');
                    d.push_str(value);
                }
                None => self.data = Some(value.to_owned()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_events_across_chunks() {
        let mut d = SseDecoder::default();
        let mut got = Vec::new();
        let input = ": keep-alive\r\n\r\ndata: {\"a\":\"é\"}\r\n\r\ndata:x\nevent: y\ndata: z\n\ndata: [DONE]\n\n";
        for chunk in input.as_bytes().chunks(3) {
            got.extend(d.feed(chunk));
        }
        assert_eq!(got, vec!["{\"a\":\"é\"}", "x\nz", "[DONE]"]);
        assert_eq!(d.finish(), None);
    }

    #[test]
    fn trailing_event_without_blank_line() {
        let mut d = SseDecoder::default();
        assert!(d.feed(b"data: last").is_empty());
        assert_eq!(d.finish().as_deref(), Some("last"));
    }
}

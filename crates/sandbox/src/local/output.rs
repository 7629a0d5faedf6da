//! Collecting a command's output while it runs: chunks go to the caller's callback as they
//! arrive, and the tail of each stream is kept for the result.

use tokio::io::AsyncReadExt;

use crate::provider::{OutputCallback, OutputChunk, Stream};

/// Incremental UTF-8 decoding for streamed output: a character split across reads is held
/// back until its remaining bytes arrive.
#[derive(Default)]
struct Utf8Stream {
    carry: Vec<u8>,
}

impl Utf8Stream {
    fn push(&mut self, bytes: &[u8]) -> String {
        self.carry.extend_from_slice(bytes);
        match std::str::from_utf8(&self.carry) {
            Ok(s) => {
                let s = s.to_string();
                self.carry.clear();
                s
            }
            Err(e) if e.error_len().is_none() && self.carry.len() - e.valid_up_to() < 4 => {
                let valid = e.valid_up_to();
                let s = String::from_utf8_lossy(&self.carry[..valid]).into_owned();
                self.carry.drain(..valid);
                s
            }
            Err(_) => {
                let s = String::from_utf8_lossy(&self.carry).into_owned();
                self.carry.clear();
                s
            }
        }
    }
}

/// Reads one output stream: forwards chunks to the callback and keeps the last `max` bytes.
pub(super) async fn pump(
    mut reader: impl tokio::io::AsyncRead + Unpin,
    stream: Stream,
    callback: Option<OutputCallback>,
    max: usize,
) -> (Vec<u8>, bool) {
    let mut kept: Vec<u8> = Vec::new();
    let mut truncated = false;
    let mut decoder = Utf8Stream::default();
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match reader.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if let Some(cb) = &callback {
            let data = decoder.push(&buf[..n]);
            if !data.is_empty() {
                cb(&OutputChunk { stream, data });
            }
        }
        kept.extend_from_slice(&buf[..n]);
        // Amortised: trim only when twice the limit, keeping the tail.
        if kept.len() > 2 * max {
            let cut = kept.len() - max;
            kept.drain(..cut);
            truncated = true;
        }
    }
    if kept.len() > max {
        let cut = kept.len() - max;
        kept.drain(..cut);
        truncated = true;
    }
    (kept, truncated)
}

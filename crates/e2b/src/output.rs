//! A command's output as it streams in: chunks handed on whole-character, the last
//! `max` bytes kept for the result.

use forgeai_sandbox::{OutputCallback, OutputChunk, Stream};

/// One stream's text: bytes of a character split across two messages wait for the rest.
#[derive(Default)]
struct StreamText {
    pending: Vec<u8>,
    kept: String,
    truncated: bool,
}

impl StreamText {
    /// Appends `bytes`, returning the text that is now complete.
    fn push(&mut self, bytes: &[u8], max: usize) -> String {
        self.pending.extend_from_slice(bytes);
        let valid = match std::str::from_utf8(&self.pending) {
            Ok(_) => self.pending.len(),
            // An invalid sequence (not just an unfinished one) is replaced, not waited on.
            Err(error) if error.error_len().is_some() => self.pending.len(),
            Err(error) => error.valid_up_to(),
        };
        let complete: Vec<u8> = self.pending.drain(..valid).collect();
        let text = String::from_utf8_lossy(&complete).into_owned();
        self.keep(&text, max);
        text
    }

    fn finish(&mut self, max: usize) -> String {
        let rest = String::from_utf8_lossy(&std::mem::take(&mut self.pending)).into_owned();
        self.keep(&rest, max);
        rest
    }

    fn keep(&mut self, text: &str, max: usize) {
        self.kept.push_str(text);
        if self.kept.len() > max {
            let mut cut = self.kept.len() - max;
            while !self.kept.is_char_boundary(cut) {
                cut += 1;
            }
            self.kept.drain(..cut);
            self.truncated = true;
        }
    }
}

/// Both streams of one command.
pub struct OutputTail {
    stdout: StreamText,
    stderr: StreamText,
    max: usize,
    callback: Option<OutputCallback>,
}

impl OutputTail {
    pub fn new(max: usize, callback: Option<OutputCallback>) -> Self {
        OutputTail {
            stdout: StreamText::default(),
            stderr: StreamText::default(),
            max,
            callback,
        }
    }

    pub fn push(&mut self, stream: Stream, bytes: &[u8]) {
        let text = match stream {
            Stream::Stdout => self.stdout.push(bytes, self.max),
            Stream::Stderr => self.stderr.push(bytes, self.max),
        };
        self.emit(stream, text);
    }

    fn emit(&self, stream: Stream, data: String) {
        if let (Some(callback), false) = (&self.callback, data.is_empty()) {
            callback(&OutputChunk { stream, data });
        }
    }

    /// `(stdout, stderr, truncated)`.
    pub fn finish(mut self) -> (String, String, bool) {
        let out = self.stdout.finish(self.max);
        self.emit(Stream::Stdout, out);
        let err = self.stderr.finish(self.max);
        self.emit(Stream::Stderr, err);
        let truncated = self.stdout.truncated || self.stderr.truncated;
        (self.stdout.kept, self.stderr.kept, truncated)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[test]
    fn characters_split_across_messages_arrive_whole() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = seen.clone();
        let mut tail = OutputTail::new(
            1024,
            Some(Arc::new(move |c: &OutputChunk| {
                sink.lock().unwrap().push(c.data.clone())
            })),
        );
        let bytes = "héllo".as_bytes();
        tail.push(Stream::Stdout, &bytes[..2]);
        tail.push(Stream::Stdout, &bytes[2..]);
        let (out, err, truncated) = tail.finish();
        assert_eq!((out.as_str(), err.as_str(), truncated), ("héllo", "", false));
        assert_eq!(*seen.lock().unwrap(), vec!["h".to_string(), "éllo".to_string()]);
    }

    #[test]
    fn only_the_tail_is_kept() {
        let mut tail = OutputTail::new(4, None);
        tail.push(Stream::Stderr, b"abcdef");
        tail.push(Stream::Stderr, b"\xff");
        let (_, err, truncated) = tail.finish();
        assert_eq!(err, "f\u{fffd}");
        assert!(truncated);
    }
}

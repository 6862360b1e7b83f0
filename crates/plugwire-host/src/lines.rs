//! Reading a plugin's output line by line with a bound on memory, whatever the plugin writes.

use tokio::io::{AsyncBufRead, AsyncBufReadExt};

/// A piece of a line: a whole line, or a fragment of a line longer than the bound.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Segment {
    /// The bytes, without the line ending (`\n` or `\r\n`).
    pub(crate) data: Vec<u8>,
    /// True for the last piece of a line (a complete line, or the last fragment).
    pub(crate) end_of_line: bool,
    /// True when this piece is part of a line longer than the bound.
    pub(crate) fragment: bool,
}

/// Splits a byte stream into lines of at most `max` bytes, like Go's `bufio.Reader.ReadLine`
/// with a `max`-byte buffer: longer lines come in several fragments.
pub(crate) struct BoundedLines<R> {
    reader: R,
    max: usize,
    /// The current line has already produced at least one fragment.
    in_long_line: bool,
}

impl<R: AsyncBufRead + Unpin> BoundedLines<R> {
    pub(crate) fn new(reader: R, max: usize) -> Self {
        BoundedLines {
            reader,
            max,
            in_long_line: false,
        }
    }

    /// The next piece, or `None` at end of input. Text after the last newline is returned as a
    /// final line. I/O errors end the input.
    pub(crate) async fn next(&mut self) -> std::io::Result<Option<Segment>> {
        let mut data = Vec::new();
        loop {
            let available = self.reader.fill_buf().await?;
            if available.is_empty() {
                if data.is_empty() {
                    self.in_long_line = false;
                    return Ok(None);
                }
                return Ok(Some(self.finish(data, true)));
            }
            let room = self.max - data.len();
            let window = &available[..available.len().min(room)];
            if let Some(pos) = window.iter().position(|&b| b == b'\n') {
                data.extend_from_slice(&window[..pos]);
                self.reader.consume(pos + 1);
                if data.last() == Some(&b'\r') {
                    data.pop();
                }
                return Ok(Some(self.finish(data, true)));
            }
            let taken = window.len();
            data.extend_from_slice(window);
            self.reader.consume(taken);
            if data.len() == self.max {
                // A `\r` here may belong to a `\r\n` split across fragments; keep it, as Go does.
                let segment = Segment {
                    data,
                    end_of_line: false,
                    fragment: true,
                };
                self.in_long_line = true;
                return Ok(Some(segment));
            }
        }
    }

    fn finish(&mut self, data: Vec<u8>, end_of_line: bool) -> Segment {
        let fragment = std::mem::replace(&mut self.in_long_line, false);
        Segment {
            data,
            end_of_line,
            fragment,
        }
    }

    /// Gives the reader back (to keep draining it).
    pub(crate) fn into_inner(self) -> R {
        self.reader
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn all(input: &[u8], max: usize) -> Vec<(String, bool, bool)> {
        let mut lines = BoundedLines::new(tokio::io::BufReader::with_capacity(7, input), max);
        let mut out = Vec::new();
        while let Some(s) = lines.next().await.expect("in-memory read") {
            out.push((
                String::from_utf8_lossy(&s.data).into_owned(),
                s.end_of_line,
                s.fragment,
            ));
        }
        out
    }

    #[tokio::test]
    async fn splits_lines_and_strips_crlf() {
        assert_eq!(
            all(b"one\r\ntwo\n\nthree", 64).await,
            vec![
                ("one".into(), true, false),
                ("two".into(), true, false),
                ("".into(), true, false),
                ("three".into(), true, false),
            ]
        );
    }

    #[tokio::test]
    async fn long_lines_come_in_fragments() {
        assert_eq!(
            all(b"abcdefghij\nxy\n", 4).await,
            vec![
                ("abcd".into(), false, true),
                ("efgh".into(), false, true),
                ("ij".into(), true, true),
                ("xy".into(), true, false),
            ]
        );
        // A line of exactly the bound is followed by an empty last fragment, as in Go.
        assert_eq!(
            all(b"abcd\n", 4).await,
            vec![("abcd".into(), false, true), ("".into(), true, true)]
        );
    }

    #[tokio::test]
    async fn binary_garbage_is_just_bytes() {
        let out = all(b"\xff\xfe\x00\n", 64).await;
        assert_eq!(out.len(), 1);
        assert!(out[0].1);
    }
}

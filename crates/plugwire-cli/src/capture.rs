//! What the plugin says while it runs: its raw stderr (a byte-exact copy the host hands us) and
//! its log lines (the `tracing` events the host makes of them, target `plugwire::plugin`), plus
//! the host's own warnings.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::io::Write as _;
use std::sync::{Arc, Mutex};

use serde::Serialize;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Metadata, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::Context;

use crate::style::Style;

/// How much raw stderr is kept from the start of a run.
const HEAD_LIMIT: usize = 4 << 20;
/// How much of the end of stderr is always kept, for diagnoses.
const TAIL_LIMIT: usize = 64 << 10;
/// How many log lines are kept.
const LOG_LIMIT: usize = 2000;

/// A byte-exact copy of a plugin's stderr: the first 4 MiB and the last 64 KiB.
#[derive(Clone, Debug, Default)]
pub(crate) struct StderrCapture(Arc<Mutex<Captured>>);

#[derive(Debug, Default)]
struct Captured {
    head: Vec<u8>,
    tail: VecDeque<u8>,
    total: u64,
}

impl StderrCapture {
    /// A writer appending to this capture (give it to the host's `stderr` sink).
    pub(crate) fn writer(&self) -> CaptureWriter {
        CaptureWriter(self.clone())
    }

    pub(crate) fn push(&self, bytes: &[u8]) {
        let Ok(mut captured) = self.0.lock() else {
            return;
        };
        captured.total += bytes.len() as u64;
        let room = HEAD_LIMIT.saturating_sub(captured.head.len());
        captured
            .head
            .extend_from_slice(&bytes[..room.min(bytes.len())]);
        captured.tail.extend(bytes.iter().copied());
        let excess = captured.tail.len().saturating_sub(TAIL_LIMIT);
        captured.tail.drain(..excess);
    }

    /// The first 4 MiB, and whether that is everything.
    pub(crate) fn head(&self) -> (Vec<u8>, bool) {
        self.0
            .lock()
            .map(|c| (c.head.clone(), c.total <= c.head.len() as u64))
            .unwrap_or_default()
    }

    /// The last `n` non-empty lines.
    pub(crate) fn tail_lines(&self, n: usize) -> Vec<String> {
        let Ok(captured) = self.0.lock() else {
            return Vec::new();
        };
        let bytes: Vec<u8> = captured.tail.iter().copied().collect();
        let text = String::from_utf8_lossy(&bytes);
        let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        let skip = lines.len().saturating_sub(n);
        lines[skip..].iter().map(|l| truncate(l, 300)).collect()
    }

    /// Whether the plugin wrote this text to stderr (within the kept bytes).
    pub(crate) fn contains(&self, needle: &str) -> bool {
        let Ok(captured) = self.0.lock() else {
            return false;
        };
        let tail: Vec<u8> = captured.tail.iter().copied().collect();
        [captured.head.as_slice(), tail.as_slice()]
            .iter()
            .any(|hay| String::from_utf8_lossy(hay).contains(needle))
    }
}

/// `io::Write` into a [`StderrCapture`].
#[derive(Debug)]
pub(crate) struct CaptureWriter(StderrCapture);

impl std::io::Write for CaptureWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.push(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Who said it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Source {
    /// The plugin (a line of its stderr).
    Plugin,
    /// plugwire's host library.
    Host,
}

/// One log line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub(crate) struct LogLine {
    pub(crate) source: Source,
    /// `TRACE`, `DEBUG`, `INFO`, `WARN` or `ERROR`.
    pub(crate) level: &'static str,
    pub(crate) message: String,
    /// The plugin's key/value pairs, `key=value ...`.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub(crate) fields: String,
}

/// The log lines seen so far; shared by the [`LogLayer`] and whoever reads them.
#[derive(Clone, Debug, Default)]
pub(crate) struct Logs(Arc<Mutex<LogStore>>);

#[derive(Debug, Default)]
struct LogStore {
    lines: Vec<LogLine>,
    dropped: usize,
}

impl Logs {
    /// Takes every line kept so far (and how many were dropped past the limit).
    pub(crate) fn take(&self) -> (Vec<LogLine>, usize) {
        self.0
            .lock()
            .map(|mut s| (std::mem::take(&mut s.lines), std::mem::take(&mut s.dropped)))
            .unwrap_or_default()
    }

    fn push(&self, line: LogLine) {
        if let Ok(mut store) = self.0.lock() {
            if store.lines.len() < LOG_LIMIT {
                store.lines.push(line);
            } else {
                store.dropped += 1;
            }
        }
    }
}

/// A `tracing` layer that keeps the plugin's log lines and the host's warnings (every host event
/// with `--verbose`), and with `--verbose` prints them to stderr as they come.
#[derive(Debug)]
pub(crate) struct LogLayer {
    logs: Logs,
    verbose: Option<Style>,
}

impl LogLayer {
    pub(crate) fn new(logs: Logs, verbose: Option<Style>) -> Self {
        LogLayer { logs, verbose }
    }

    fn wanted(&self, metadata: &Metadata<'_>) -> bool {
        let target = metadata.target();
        if target == "plugwire::plugin" {
            return true;
        }
        let ours = target.starts_with("plugwire_host") || target.starts_with("plugwire_runtime");
        ours && (self.verbose.is_some() || *metadata.level() <= Level::WARN)
    }
}

impl<S: Subscriber> Layer<S> for LogLayer {
    fn enabled(&self, metadata: &Metadata<'_>, _: Context<'_, S>) -> bool {
        self.wanted(metadata)
    }

    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        let metadata = event.metadata();
        if !self.wanted(metadata) {
            return;
        }
        let mut visitor = Fields::default();
        event.record(&mut visitor);
        let source = if metadata.target() == "plugwire::plugin" {
            Source::Plugin
        } else {
            Source::Host
        };
        let line = LogLine {
            source,
            level: level_name(*metadata.level()),
            message: visitor.message,
            fields: visitor.fields,
        };
        if let Some(style) = self.verbose {
            let who = match source {
                Source::Plugin => "plugin",
                Source::Host => "plugwire",
            };
            let mut text = format!("{} {:<5} {}", style.dim(who), line.level, line.message);
            if !line.fields.is_empty() {
                let _ = write!(text, "  {}", style.dim(&line.fields));
            }
            let _ = writeln!(std::io::stderr().lock(), "{text}");
        }
        self.logs.push(line);
    }
}

/// The message and the key/value fields of an event (the host's `plugin` field is left out:
/// it is the executable's name, the same on every line).
#[derive(Default)]
struct Fields {
    message: String,
    fields: String,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.add(field, value.to_owned());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.add(field, format!("{value:?}"));
    }
}

impl Fields {
    fn add(&mut self, field: &Field, value: String) {
        match field.name() {
            "message" => self.message = value,
            "plugin" => {}
            // The host puts the plugin's own key/value pairs, already `k=v`, in one field.
            "fields" => {
                if !self.fields.is_empty() {
                    self.fields.push(' ');
                }
                self.fields.push_str(&value);
            }
            name => {
                if !self.fields.is_empty() {
                    self.fields.push(' ');
                }
                let _ = write!(self.fields, "{name}={value}");
            }
        }
    }
}

pub(crate) fn level_name(level: Level) -> &'static str {
    match level {
        Level::TRACE => "TRACE",
        Level::DEBUG => "DEBUG",
        Level::INFO => "INFO",
        Level::WARN => "WARN",
        Level::ERROR => "ERROR",
    }
}

/// At most `max` characters of `text`, with an ellipsis when cut.
pub(crate) fn truncate(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stderr_keeps_head_and_tail() {
        let capture = StderrCapture::default();
        let mut writer = capture.writer();
        writer.write_all(b"first line\n").expect("write");
        writer.write_all(&[b'x'; 100]).expect("write");
        writer
            .write_all(b"\nThis binary is a plugin.\n\n")
            .expect("write");
        assert_eq!(
            capture.tail_lines(1),
            vec!["This binary is a plugin.".to_owned()]
        );
        assert!(capture.contains("binary is a plugin"));
        let (head, complete) = capture.head();
        assert!(complete);
        assert!(head.starts_with(b"first line\n"));
        assert_eq!(truncate("abcdef", 3), "abc…");
        assert_eq!(truncate("abc", 3), "abc");
    }
}

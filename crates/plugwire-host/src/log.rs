//! The plugin's stderr, line by line, into `tracing` (go-plugin's `logStderr`).
//!
//! Each line is classified as go-plugin does, and a little more robustly:
//! - an hclog JSON object (`@level`, `@message`, `@timestamp`, other keys as fields) is logged at
//!   its level with its fields; any `@timestamp` precision is accepted, and non-string values
//!   never crash the host (they would panic a Go host);
//! - a text line starting `[TRACE]`, `[DEBUG]`, `[INFO]`, `[WARN]` or `[ERROR]` is logged at that
//!   level;
//! - `panic: `, `fatal error: ` (Go) and `thread '…' panicked at` (Rust) start a crash trace:
//!   that line and every later untagged line are logged at error;
//! - anything else, and the fragments of lines longer than 64 KiB, at debug.
//!
//! Events have target `plugwire::plugin`, a `plugin` field (the executable's file name) and, for
//! JSON lines, a `fields` field with the plugin's key/value pairs.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

use tokio::io::AsyncRead;

use crate::lines::BoundedLines;

/// go-plugin's `PluginLogBufferSize` default: longer lines are logged in fragments.
pub(crate) const LOG_LINE_MAX: usize = 64 * 1024;

/// How much of the end of stderr is kept for error messages.
const TAIL_LINES: usize = 12;
const TAIL_LINE_MAX: usize = 512;

/// Log levels, as hclog names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    /// `trace`
    Trace,
    /// `debug`
    Debug,
    /// `info`
    Info,
    /// `warn`
    Warn,
    /// `error`
    Error,
}

impl Level {
    /// hclog's `LevelFromString`: case-insensitive, surrounding space ignored.
    pub fn from_hclog(s: &str) -> Option<Level> {
        match s.trim().to_ascii_lowercase().as_str() {
            "trace" => Some(Level::Trace),
            "debug" => Some(Level::Debug),
            "info" => Some(Level::Info),
            "warn" => Some(Level::Warn),
            "error" => Some(Level::Error),
            _ => None,
        }
    }
}

/// One line of plugin stderr, classified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogEntry {
    /// The level it is logged at.
    pub level: Level,
    /// The message (for text lines, the whole line).
    pub message: String,
    /// Other key/value pairs of an hclog JSON line, values as JSON text (strings unquoted).
    pub fields: Vec<(String, String)>,
    /// The plugin's `@timestamp`, as written.
    pub timestamp: Option<String>,
}

impl LogEntry {
    /// The fields as `key=value key=value`, hclog style.
    pub fn fields_text(&self) -> String {
        let mut out = String::new();
        for (k, v) in &self.fields {
            if !out.is_empty() {
                out.push(' ');
            }
            if v.contains(char::is_whitespace) || v.is_empty() {
                let _ = write!(out, "{k}={v:?}");
            } else {
                let _ = write!(out, "{k}={v}");
            }
        }
        out
    }
}

/// Classifies stderr lines; holds the crash-trace state between lines.
#[derive(Debug, Default)]
pub struct LogParser {
    in_panic: bool,
}

impl LogParser {
    /// A parser at the start of a plugin's output.
    pub fn new() -> Self {
        LogParser::default()
    }

    /// Classifies one complete line (without its newline).
    pub fn parse_line(&mut self, line: &[u8]) -> LogEntry {
        let text = String::from_utf8_lossy(line);
        if let Some(entry) = parse_json(&text) {
            return entry;
        }
        let text = text.into_owned();
        const TAGS: [(&str, Level); 5] = [
            ("[TRACE]", Level::Trace),
            ("[DEBUG]", Level::Debug),
            ("[INFO]", Level::Info),
            ("[WARN]", Level::Warn),
            ("[ERROR]", Level::Error),
        ];
        let level = if let Some((_, level)) = TAGS.iter().find(|(tag, _)| text.starts_with(tag)) {
            *level
        } else if is_crash_start(&text) {
            self.in_panic = true;
            Level::Error
        } else if self.in_panic {
            Level::Error
        } else {
            Level::Debug
        };
        LogEntry {
            level,
            message: text,
            fields: Vec::new(),
            timestamp: None,
        }
    }

    /// A fragment of a line longer than the buffer: logged verbatim at debug, never parsed.
    pub fn fragment(&mut self, data: &[u8]) -> LogEntry {
        LogEntry {
            level: Level::Debug,
            message: String::from_utf8_lossy(data).into_owned(),
            fields: Vec::new(),
            timestamp: None,
        }
    }
}

fn is_crash_start(line: &str) -> bool {
    line.starts_with("panic: ")
        || line.starts_with("fatal error: ")
        || (line.starts_with("thread '") && line.contains("' panicked at "))
}

fn parse_json(text: &str) -> Option<LogEntry> {
    let trimmed = text.trim_start();
    if !trimmed.starts_with('{') {
        return None;
    }
    let serde_json::Value::Object(map) = serde_json::from_str(trimmed).ok()? else {
        return None;
    };
    let level = map
        .get("@level")
        .and_then(serde_json::Value::as_str)
        .and_then(Level::from_hclog);
    let Some(level) = level else {
        // No usable level: not hclog; the raw line at debug, as go-plugin.
        return Some(LogEntry {
            level: Level::Debug,
            message: text.to_owned(),
            fields: Vec::new(),
            timestamp: None,
        });
    };
    let mut message = String::new();
    let mut timestamp = None;
    let mut fields = Vec::new();
    for (key, value) in map {
        match key.as_str() {
            "@level" => {}
            "@message" => message = json_text(value),
            "@timestamp" => timestamp = Some(json_text(value)),
            _ => fields.push((key, json_text(value))),
        }
    }
    Some(LogEntry {
        level,
        message,
        fields,
        timestamp,
    })
}

fn json_text(value: serde_json::Value) -> String {
    match value {
        serde_json::Value::String(s) => s,
        other => other.to_string(),
    }
}

/// The last lines of a plugin's stderr, for error messages.
#[derive(Clone, Debug, Default)]
pub(crate) struct Tail(Arc<Mutex<VecDeque<String>>>);

impl Tail {
    fn push(&self, line: &[u8]) {
        let mut text = String::from_utf8_lossy(line).into_owned();
        if text.len() > TAIL_LINE_MAX {
            let mut cut = TAIL_LINE_MAX;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.truncate(cut);
            text.push('…');
        }
        if let Ok(mut lines) = self.0.lock() {
            if lines.len() == TAIL_LINES {
                lines.pop_front();
            }
            lines.push_back(text);
        }
    }

    /// The kept lines, indented, or an empty string.
    pub(crate) fn render(&self) -> String {
        let Ok(lines) = self.0.lock() else {
            return String::new();
        };
        lines.iter().fold(String::new(), |mut out, l| {
            out.push_str("\n  ");
            out.push_str(l);
            out
        })
    }
}

/// Where raw stderr bytes are copied, byte-exact (go-plugin's `ClientConfig.Stderr`), from a
/// thread of its own.
pub type RawSink = crate::writer::Sink;

/// Reads stderr until EOF, logging every line and keeping the tail.
pub(crate) async fn bridge(
    stderr: impl AsyncRead + Unpin,
    plugin: String,
    tail: Tail,
    raw: Option<RawSink>,
) {
    let raw = crate::writer::SinkWriter::start("plugwire-stderr", &plugin, vec![raw]);
    let mut parser = LogParser::new();
    let mut lines = BoundedLines::new(
        tokio::io::BufReader::with_capacity(LOG_LINE_MAX, stderr),
        LOG_LINE_MAX,
    );
    loop {
        let segment = match lines.next().await {
            Ok(Some(segment)) => segment,
            Ok(None) => break,
            Err(e) => {
                tracing::error!(target: "plugwire::plugin", plugin = %plugin, error = %e, "reading plugin stderr");
                break;
            }
        };
        if let Some(raw) = &raw {
            let mut bytes = segment.data.clone();
            if segment.end_of_line {
                bytes.push(b'\n');
            }
            raw.write(0, bytes).await;
        }
        let entry = if segment.fragment {
            parser.fragment(&segment.data)
        } else {
            tail.push(&segment.data);
            parser.parse_line(&segment.data)
        };
        emit(&plugin, &entry);
    }
    if let Some(raw) = raw {
        raw.finish().await;
    }
}

/// Emits one entry as a `tracing` event.
pub(crate) fn emit(plugin: &str, entry: &LogEntry) {
    let fields = entry.fields_text();
    macro_rules! event {
        ($level:expr) => {
            if fields.is_empty() {
                tracing::event!(target: "plugwire::plugin", $level, plugin = %plugin, "{}", entry.message)
            } else {
                tracing::event!(target: "plugwire::plugin", $level, plugin = %plugin, fields = %fields, "{}", entry.message)
            }
        };
    }
    match entry.level {
        Level::Trace => event!(tracing::Level::TRACE),
        Level::Debug => event!(tracing::Level::DEBUG),
        Level::Info => event!(tracing::Level::INFO),
        Level::Warn => event!(tracing::Level::WARN),
        Level::Error => event!(tracing::Level::ERROR),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(lines: &[&str]) -> Vec<(Level, String)> {
        let mut p = LogParser::new();
        lines
            .iter()
            .map(|l| {
                let e = p.parse_line(l.as_bytes());
                (e.level, e.message)
            })
            .collect()
    }

    #[test]
    fn hclog_json_lines() {
        let mut p = LogParser::new();
        let e = p.parse_line(
            br#"{"@level":"info","@message":"hello","@timestamp":"2026-01-02T15:04:05.123456+01:00","foo":"bar","n":12,"@module":"plugin.x"}"#,
        );
        assert_eq!(e.level, Level::Info);
        assert_eq!(e.message, "hello");
        assert_eq!(
            e.timestamp.as_deref(),
            Some("2026-01-02T15:04:05.123456+01:00")
        );
        assert_eq!(e.fields_text(), "@module=plugin.x foo=bar n=12");
        // Other precisions are fine here (a Go host would log the raw line at debug).
        let e = p.parse_line(
            br#"{"@level":"WARN ","@message":"m","@timestamp":"2026-01-02T15:04:05Z"}"#,
        );
        assert_eq!(e.level, Level::Warn);
    }

    #[test]
    fn hostile_json_never_panics() {
        let mut p = LogParser::new();
        let e = p.parse_line(br#"{"@level":"error","@message":5,"@timestamp":[1]}"#);
        assert_eq!((e.level, e.message.as_str()), (Level::Error, "5"));
        let e = p.parse_line(br#"{"@level":7,"@message":"x"}"#);
        assert_eq!(e.level, Level::Debug, "no level: raw line at debug");
        assert_eq!(p.parse_line(b"[\"HELLO\"]").level, Level::Debug);
        assert_eq!(p.parse_line(b"12345").level, Level::Debug);
        assert_eq!(p.parse_line(b"{not json").level, Level::Debug);
        assert_eq!(p.parse_line(b"\xff\xfe").level, Level::Debug);
    }

    #[test]
    fn text_prefixes_and_crash_mode() {
        assert_eq!(
            parse(&[
                "[WARN] careful",
                "plain",
                "panic: boom",
                "",
                "goroutine 1 [running]:",
                "[INFO] still tagged"
            ]),
            vec![
                (Level::Warn, "[WARN] careful".into()),
                (Level::Debug, "plain".into()),
                (Level::Error, "panic: boom".into()),
                (Level::Error, "".into()),
                (Level::Error, "goroutine 1 [running]:".into()),
                (Level::Info, "[INFO] still tagged".into()),
            ]
        );
        let rust = parse(&[
            "thread 'main' panicked at src/main.rs:3:5:",
            "boom",
            "note: run with RUST_BACKTRACE=1",
        ]);
        assert!(rust.iter().all(|(l, _)| *l == Level::Error), "{rust:?}");
        assert_eq!(
            parse(&["fatal error: all goroutines are asleep"])[0].0,
            Level::Error
        );
    }

    #[tokio::test]
    async fn raw_copy_is_byte_exact_and_tail_is_kept() {
        #[derive(Clone, Default)]
        struct Shared(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Shared {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().expect("lock").extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let long = "y".repeat(LOG_LINE_MAX * 2 + 5);
        let input = format!("first\n{long}\n\u{fffd}last");
        let sink = Shared::default();
        let tail = Tail::default();
        bridge(
            input.as_bytes(),
            "p".into(),
            tail.clone(),
            Some(Box::new(sink.clone())),
        )
        .await;
        let copied = sink.0.lock().expect("lock").clone();
        assert_eq!(
            copied,
            format!("first\n{long}\n\u{fffd}last\n").into_bytes()
        );
        let rendered = tail.render();
        assert!(
            rendered.contains("first") && rendered.contains("last"),
            "{rendered}"
        );
    }
}

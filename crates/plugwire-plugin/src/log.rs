//! Logging for plugins: `tracing` events as hclog JSON lines on the real stderr, which go-plugin
//! hosts (Go or plugwire) turn into log entries at the right level with their fields.
//!
//! ```text
//! {"@level":"info","@message":"PrintKV called","@module":"my_plugin","@timestamp":"2026-01-02T15:04:05.123456Z","key":"hello"}
//! ```
//!
//! `@level`, `@message`, `@timestamp` and `@module` are always strings (a Go host panics on
//! anything else), the timestamp has exactly six fractional digits (a Go host's layout), span
//! fields and event fields become extra keys, and lines stay under the 64 KiB a Go host reads in
//! one piece.
//!
//! [`serve`](crate::serve) installs [`HclogLayer`] as the global subscriber when the
//! application has not installed one (go-plugin's default plugin logger does the same); add it
//! to your own subscriber with `tracing_subscriber::registry().with(HclogLayer::new())`.

use std::fmt;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

/// A Go host reads stderr lines of up to this size in one piece.
const MAX_LINE: usize = 64 * 1024 - 1;

/// How much of a long value survives truncation.
const KEEP: usize = 4 * 1024;

/// The default filter [`serve`](crate::serve) installs: everything from the plugin, warnings
/// only from the libraries under it (whose debug output is per frame). `PLUGWIRE_LOG` replaces
/// it, in `tracing-subscriber`'s `Targets` syntax (`level,target=level,...`).
pub const DEFAULT_FILTER: &str = "debug,h2=warn,hyper=warn,hyper_util=warn,tonic=warn,tower=warn,\
     axum=warn,rustls=warn,tokio_yamux=warn,tokio_util=warn,mio=warn";

/// A `tracing-subscriber` layer writing hclog JSON lines to the plugin's real stderr.
#[derive(Debug, Default, Clone, Copy)]
pub struct HclogLayer {
    _private: (),
}

impl HclogLayer {
    /// The layer.
    pub fn new() -> Self {
        HclogLayer::default()
    }
}

/// Installs [`HclogLayer`] with [`DEFAULT_FILTER`] (or `PLUGWIRE_LOG`) as the global subscriber.
/// Fails when a global subscriber is already installed.
pub fn init() -> Result<(), tracing_subscriber::util::TryInitError> {
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    // `Targets`, not `EnvFilter`: the same directives without a regex engine in every plugin.
    let filter: tracing_subscriber::filter::Targets = std::env::var("PLUGWIRE_LOG")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| DEFAULT_FILTER.parse().unwrap_or_default());
    tracing_subscriber::registry()
        .with(HclogLayer::new().with_filter(filter))
        .try_init()
}

/// A span's fields, kept in its extensions.
struct SpanFields(Map<String, Value>);

impl<S> Layer<S> for HclogLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        attrs.record(&mut fields);
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(SpanFields(fields.map));
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id) {
            let mut extensions = span.extensions_mut();
            if let Some(SpanFields(map)) = extensions.get_mut::<SpanFields>() {
                let mut fields = Fields {
                    map: std::mem::take(map),
                    message: None,
                };
                values.record(&mut fields);
                *map = fields.map;
            }
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let mut object = Map::new();
        // Span fields, outermost first; the event's own fields win.
        if let Some(scope) = ctx.event_scope(event) {
            for span in scope.from_root() {
                if let Some(SpanFields(fields)) = span.extensions().get::<SpanFields>() {
                    object.extend(fields.iter().map(|(k, v)| (k.clone(), v.clone())));
                }
            }
        }
        let mut fields = Fields::default();
        event.record(&mut fields);
        object.extend(fields.map);
        let meta = event.metadata();
        object.insert("@level".into(), Value::String(level(meta.level()).into()));
        object.insert(
            "@message".into(),
            Value::String(fields.message.unwrap_or_default()),
        );
        object.insert("@module".into(), Value::String(meta.target().into()));
        object.insert(
            "@timestamp".into(),
            Value::String(
                humantime::format_rfc3339_micros(std::time::SystemTime::now()).to_string(),
            ),
        );
        let mut line = render(object);
        line.push('\n');
        crate::real_stderr::write(line.as_bytes());
    }
}

fn level(level: &Level) -> &'static str {
    match *level {
        Level::TRACE => "trace",
        Level::DEBUG => "debug",
        Level::INFO => "info",
        Level::WARN => "warn",
        Level::ERROR => "error",
    }
}

/// One JSON line, shortened to fit a Go host's reader when needed.
fn render(mut object: Map<String, Value>) -> String {
    let line = Value::Object(object.clone()).to_string();
    if line.len() <= MAX_LINE {
        return line;
    }
    for value in object.values_mut() {
        if let Value::String(s) = value
            && s.len() > KEEP
        {
            let mut cut = KEEP;
            while !s.is_char_boundary(cut) {
                cut -= 1;
            }
            let dropped = s.len() - cut;
            s.truncate(cut);
            s.push_str(&format!("…(truncated {dropped} bytes)"));
        }
    }
    let line = Value::Object(object.clone()).to_string();
    if line.len() <= MAX_LINE {
        return line;
    }
    // Still too long (very many fields): keep what hclog needs.
    object.retain(|k, _| k.starts_with('@'));
    object.insert("@truncated".into(), Value::String("fields dropped".into()));
    Value::Object(object).to_string()
}

/// Collects fields as JSON values; `message` is kept apart.
#[derive(Default)]
struct Fields {
    map: Map<String, Value>,
    message: Option<String>,
}

impl Fields {
    fn put(&mut self, field: &Field, value: Value) {
        if field.name() == "message" {
            self.message = Some(match value {
                Value::String(s) => s,
                other => other.to_string(),
            });
        } else {
            self.map.insert(field.name().to_owned(), value);
        }
    }
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.put(field, Value::String(format!("{value:?}")));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, Value::String(value.to_owned()));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, Value::from(value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, Value::from(value));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(field, Value::from(value));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, Value::Bool(value));
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.put(field, Value::String(value.to_string()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing_subscriber::layer::SubscriberExt as _;

    /// Runs `f` with the layer and returns the lines it wrote.
    fn lines(f: impl FnOnce()) -> Vec<Value> {
        let captured = crate::real_stderr::capture_for_test(|| {
            let subscriber = tracing_subscriber::registry().with(HclogLayer::new());
            tracing::subscriber::with_default(subscriber, f);
        });
        String::from_utf8(captured)
            .expect("UTF-8")
            .lines()
            .map(|l| serde_json::from_str(l).expect("each line is JSON"))
            .collect()
    }

    #[test]
    fn events_become_hclog_lines() {
        let got = lines(|| {
            let span = tracing::info_span!("request", id = 7, name = "kv");
            let _entered = span.enter();
            tracing::warn!(key = "hello", n = 42, ok = true, "PrintKV called");
        });
        assert_eq!(got.len(), 1);
        let line = &got[0];
        assert_eq!(line["@level"], "warn");
        assert_eq!(line["@message"], "PrintKV called");
        assert_eq!(line["key"], "hello");
        assert_eq!(line["n"], 42);
        assert_eq!(line["ok"], true);
        assert_eq!(line["id"], 7, "span fields are included");
        assert_eq!(line["name"], "kv");
        assert!(line["@module"].is_string());
        // Go's layout: 2006-01-02T15:04:05.000000Z07:00, exactly six fractional digits.
        let ts = line["@timestamp"].as_str().expect("string");
        assert_eq!(ts.len(), "2026-01-02T15:04:05.123456Z".len(), "{ts}");
        assert_eq!(&ts[19..20], ".");
        assert!(ts.ends_with('Z'));
    }

    #[test]
    fn long_lines_fit_a_go_host() {
        let big = "x".repeat(200_000);
        let got = lines(|| tracing::error!(blob = %big, "{}", big));
        let text = got[0].to_string();
        assert!(text.len() <= MAX_LINE, "{}", text.len());
        assert_eq!(got[0]["@level"], "error");
        assert!(
            got[0]["@message"]
                .as_str()
                .expect("string")
                .contains("truncated")
        );
    }

    #[test]
    fn message_is_always_a_string() {
        let got = lines(|| tracing::info!(message = 5));
        assert_eq!(got[0]["@message"], "5");
        let got = lines(|| tracing::debug!(answer = 1));
        assert_eq!(got[0]["@message"], "");
        assert_eq!(got[0]["@level"], "debug");
    }
}

//! A stderr line as a Go host reads it (go-plugin's `parseJSON` and `logStderr`): an hclog JSON
//! object, a `[LEVEL]` text line, a plain text line, or something a Go host cannot use.

use serde_json::Value;

/// go-plugin's log buffer (`PluginLogBufferSize`): longer lines arrive in fragments.
pub(crate) const MAX_LINE: usize = 64 * 1024;

/// What a Go host makes of one stderr line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum LineKind {
    /// hclog JSON, logged at this level with its fields.
    Json(&'static str),
    /// A text line with a `[LEVEL]` prefix, logged at that level.
    Tagged(&'static str),
    /// Plain text, logged at debug (or error in a panic trace).
    Text,
    /// Something a Go host cannot parse as the plugin meant it, and why.
    Problem(String),
}

/// Classifies one line (without its newline).
pub(crate) fn classify(line: &str) -> LineKind {
    if line.len() > MAX_LINE {
        return LineKind::Problem(format!(
            "{} bytes long: a Go host reads lines of up to 64 KiB and logs longer ones in \
             unparsed fragments at debug",
            line.len()
        ));
    }
    let trimmed = line.trim_start();
    if trimmed.starts_with('{')
        && let Ok(Value::Object(map)) = serde_json::from_str::<Value>(trimmed)
    {
        return json_line(&map);
    }
    for (tag, level) in [
        ("[TRACE]", "trace"),
        ("[DEBUG]", "debug"),
        ("[INFO]", "info"),
        ("[WARN]", "warn"),
        ("[ERROR]", "error"),
    ] {
        if line.starts_with(tag) {
            return LineKind::Tagged(level);
        }
    }
    LineKind::Text
}

fn json_line(map: &serde_json::Map<String, Value>) -> LineKind {
    for key in ["@message", "@level", "@timestamp"] {
        if let Some(value) = map.get(key)
            && !value.is_string()
        {
            return LineKind::Problem(format!(
                "{key} is {value} (not a string): go-plugin reads it with an unchecked type \
                 assertion, so this line panics a Go host"
            ));
        }
    }
    let Some(level) = map.get("@level").and_then(Value::as_str) else {
        return LineKind::Problem(
            "no @level: a Go host logs the whole line as text at debug level".into(),
        );
    };
    let Some(level) = hclog_level(level) else {
        return LineKind::Problem(format!(
            "@level {level:?} is not an hclog level (trace, debug, info, warn, error): a Go host \
             logs the whole line as text at debug level"
        ));
    };
    if let Some(timestamp) = map.get("@timestamp").and_then(Value::as_str)
        && !is_go_timestamp(timestamp)
    {
        return LineKind::Problem(format!(
            "@timestamp {timestamp:?} is not in the layout 2006-01-02T15:04:05.000000Z07:00 \
             (exactly six fractional digits, Z or ±hh:mm): a Go host cannot parse the line and \
             logs it as text at debug level"
        ));
    }
    LineKind::Json(level)
}

fn hclog_level(level: &str) -> Option<&'static str> {
    match level.trim().to_ascii_lowercase().as_str() {
        "trace" => Some("trace"),
        "debug" => Some("debug"),
        "info" => Some("info"),
        "warn" => Some("warn"),
        "error" => Some("error"),
        _ => None,
    }
}

/// Go's `time.Parse("2006-01-02T15:04:05.000000Z07:00", ...)` accepts it.
fn is_go_timestamp(text: &str) -> bool {
    let bytes = text.as_bytes();
    let digits = |range: std::ops::Range<usize>| {
        bytes
            .get(range)
            .is_some_and(|b| b.iter().all(u8::is_ascii_digit))
    };
    let at = |i: usize, c: u8| bytes.get(i) == Some(&c);
    let date_time = digits(0..4)
        && at(4, b'-')
        && digits(5..7)
        && at(7, b'-')
        && digits(8..10)
        && at(10, b'T')
        && digits(11..13)
        && at(13, b':')
        && digits(14..16)
        && at(16, b':')
        && digits(17..19)
        && at(19, b'.')
        && digits(20..26);
    let zone = match bytes.get(26..) {
        Some(b"Z") => true,
        Some([sign, h1, h2, b':', m1, m2]) => {
            (*sign == b'+' || *sign == b'-') && [h1, h2, m1, m2].iter().all(|b| b.is_ascii_digit())
        }
        _ => false,
    };
    date_time && zone
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_go_hosts_parse() {
        assert_eq!(
            classify(
                r#"{"@level":"debug","@message":"plugin address","@timestamp":"2026-01-02T15:04:05.123456+01:00","network":"unix"}"#
            ),
            LineKind::Json("debug")
        );
        assert_eq!(
            classify(
                r#"{"@level":"INFO","@message":"m","@timestamp":"2026-01-02T15:04:05.123456Z"}"#
            ),
            LineKind::Json("info")
        );
        assert_eq!(classify("[WARN] careful"), LineKind::Tagged("warn"));
        assert_eq!(classify("plain words"), LineKind::Text);
        assert_eq!(classify(r#"["not","an","object"]"#), LineKind::Text);
        for bad in [
            r#"{"@level":"info","@message":5}"#,
            r#"{"@level":7,"@message":"m"}"#,
            r#"{"@message":"no level"}"#,
            r#"{"@level":"loud","@message":"m"}"#,
            r#"{"@level":"info","@message":"m","@timestamp":"2026-01-02T15:04:05.123Z"}"#,
            r#"{"@level":"info","@message":"m","@timestamp":"2026-01-02T15:04:05.123456+0100"}"#,
        ] {
            assert!(matches!(classify(bad), LineKind::Problem(_)), "{bad}");
        }
        assert!(matches!(
            classify(&"x".repeat(MAX_LINE + 1)),
            LineKind::Problem(_)
        ));
    }
}

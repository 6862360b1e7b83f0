//! The plugin's stderr log lines, as strictly as a Go host parses them.

use std::collections::BTreeMap;

use crate::check::context::Ctx;
use crate::check::hclog::{self, LineKind};
use crate::check::outcome::Outcome;

/// Its log lines are hclog JSON a Go host parses (or `[LEVEL]` text).
pub(crate) async fn logs(ctx: &Ctx) -> Outcome {
    // A whole life, as a host sees it: start, a ping, a graceful stop.
    let launched = match ctx.launch(|b| b).await {
        Ok(launched) => launched,
        Err(outcome) => return outcome,
    };
    let _ = launched.plugin.ping().await;
    launched.plugin.kill().await;
    let (bytes, complete) = launched.stderr.head();
    let text = String::from_utf8_lossy(&bytes);
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    if lines.is_empty() {
        return Outcome::not_applicable(
            "it wrote nothing to stderr from its start to its shutdown: there is no log line to \
             check",
        );
    }
    let mut problems = Vec::new();
    let mut levels: BTreeMap<&'static str, usize> = BTreeMap::new();
    let mut tagged = 0;
    let mut text_lines = Vec::new();
    for (number, line) in lines.iter().enumerate() {
        match hclog::classify(line) {
            LineKind::Json(level) => *levels.entry(level).or_default() += 1,
            LineKind::Tagged(_) => tagged += 1,
            LineKind::Text => text_lines.push(*line),
            LineKind::Problem(why) => problems.push(format!(
                "line {}: {why}: {}",
                number + 1,
                crate::capture::truncate(line, 160)
            )),
        }
    }
    let counts = levels
        .iter()
        .map(|(level, n)| format!("{n} {level}"))
        .collect::<Vec<_>>()
        .join(", ");
    let mut notes = Vec::new();
    if tagged > 0 {
        notes.push(format!(
            "{tagged} text lines with a [LEVEL] prefix (a Go host logs them at that level)"
        ));
    }
    if !text_lines.is_empty() {
        notes.push(format!(
            "{} plain text lines, which a Go host logs at debug level, e.g. {:?}",
            text_lines.len(),
            crate::capture::truncate(text_lines[0], 120)
        ));
    }
    if !complete {
        notes.push("only its first 4 MiB of stderr were checked".to_owned());
    }
    if let Some(first) = problems.first() {
        let more = match problems.len() {
            1 => String::new(),
            n => format!(" (and {} more lines)", n - 1),
        };
        return Outcome::fail(format!("{first}{more}")).notes(notes);
    }
    if levels.is_empty() {
        return Outcome::pass(format!(
            "{} lines, none of them hclog JSON, all of them text a Go host can log",
            lines.len()
        ))
        .notes(notes);
    }
    Outcome::pass(format!(
        "{} line{}; the hclog JSON ones ({counts}) parse as a Go host parses them",
        lines.len(),
        if lines.len() == 1 { "" } else { "s" }
    ))
    .notes(notes)
}

//! `check`'s results for people.

use std::io::{self, Write};

use crate::inspect::report::PluginInfo;
use crate::style::Style;

use super::outcome::Status;
use super::{CheckResult, Summary};

/// Where the status column ends.
const STATUS: usize = 11;
/// The width of the name column.
const NAME: usize = 23;

pub(crate) fn header(out: &mut impl Write, plugin: &PluginInfo, style: Style) -> io::Result<()> {
    writeln!(out, "{} {}", style.bold("plugwire check"), plugin.command)?;
    writeln!(
        out,
        "  cookie {} ({}), versions {}, AutoMTLS {}\n",
        plugin.cookie.as_deref().unwrap_or("-"),
        plugin.cookie_from.as_deref().unwrap_or("-"),
        crate::diagnose::list(&plugin.offered_versions),
        if plugin.auto_mtls { "on" } else { "off" }
    )
}

pub(crate) fn result(out: &mut impl Write, result: &CheckResult, style: Style) -> io::Result<()> {
    let status = result.outcome.status;
    let label = format!("{:<STATUS$}", status.label());
    let label = match status {
        Status::Pass => style.green(label),
        Status::Fail => style.red(label),
        Status::Deviation => style.yellow(label),
        Status::NotApplicable => style.dim(label),
    };
    writeln!(
        out,
        "  {label}{}{}",
        style.bold(format!("{:<NAME$}", result.id)),
        style.dim(format!("{:.0} ms", result.duration_ms))
    )?;
    let indent = " ".repeat(2 + STATUS);
    wrap(out, &indent, &result.outcome.reason, "")?;
    for note in &result.outcome.notes {
        wrap(out, &indent, note, "note: ")?;
    }
    if status != Status::Pass {
        wrap(
            out,
            &indent,
            &style
                .dim(format!("go-plugin: {}", result.expected))
                .to_string(),
            "",
        )?;
    }
    Ok(())
}

pub(crate) fn summary(out: &mut impl Write, summary: &Summary, style: Style) -> io::Result<()> {
    let failed = format!("{} failed", summary.failed);
    let failed = if summary.failed > 0 {
        style.red(failed).to_string()
    } else {
        failed
    };
    writeln!(
        out,
        "\n{} passed, {failed}, {} go-plugin deviation{}, {} not applicable ({:.1} s)",
        summary.passed,
        summary.deviations,
        if summary.deviations == 1 { "" } else { "s" },
        summary.not_applicable,
        summary.duration_ms / 1000.0
    )
}

/// Writes `text` indented, wrapped at about 100 columns.
fn wrap(out: &mut impl Write, indent: &str, text: &str, prefix: &str) -> io::Result<()> {
    const WIDTH: usize = 100;
    let mut line = format!("{indent}{prefix}");
    let start = line.len();
    for word in text.split_whitespace() {
        if line.len() > start && line.len() + 1 + word.len() > WIDTH {
            writeln!(out, "{line}")?;
            line = format!("{indent}{}", " ".repeat(prefix.len()));
        }
        if line.len() > indent.len() + prefix.len() && !line.ends_with(' ') {
            line.push(' ');
        }
        line.push_str(word);
    }
    writeln!(out, "{line}")
}

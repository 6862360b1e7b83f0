//! `inspect`'s report for people: aligned sections, coloured on a terminal.

use std::io::{self, Write};

use crate::capture::LogLine;
use crate::diagnose::Diagnosis;
use crate::style::Style;

use super::report::{Report, ServicesInfo};

/// The width of the key column.
const KEY: usize = 18;
/// Where long values wrap.
const WIDTH: usize = 100;

/// Writes the whole report.
pub(crate) fn report(out: &mut impl Write, report: &Report, style: Style) -> io::Result<()> {
    let plugin = &report.plugin;
    let netrpc = report
        .handshake
        .as_ref()
        .is_some_and(|h| h.protocol == "netrpc");
    let pid = plugin
        .pid
        .map(|p| format!(" (pid {p})"))
        .unwrap_or_default();
    row(out, style, 0, "plugin", &format!("{}{pid}", plugin.command))?;
    if let Some(reattach) = &report.reattach {
        let name = reattach
            .name
            .as_ref()
            .map(|n| format!("{n}: "))
            .unwrap_or_default();
        row(
            out,
            style,
            0,
            "reattached",
            &format!(
                "{name}{} version {} at {} {} (pid {}{})",
                reattach.protocol,
                reattach.protocol_version,
                reattach.network,
                reattach.address,
                reattach.pid,
                if reattach.test { ", test mode" } else { "" }
            ),
        )?;
    } else {
        let cookie = match (&plugin.cookie, &plugin.cookie_from) {
            (Some(cookie), Some(from)) => format!("cookie {cookie} ({from})"),
            _ => String::new(),
        };
        row(
            out,
            style,
            0,
            "offered",
            &format!(
                "{cookie}, versions {}, AutoMTLS {}, multiplexing {}",
                crate::diagnose::list(&plugin.offered_versions),
                on_off(plugin.auto_mtls),
                if plugin.multiplex_asked {
                    "asked"
                } else {
                    "not asked"
                }
            ),
        )?;
    }
    for note in &report.notes {
        row(out, style, 0, "note", note)?;
    }
    if let Some(handshake) = &report.handshake {
        writeln!(out)?;
        row(out, style, 0, "handshake", &handshake.line)?;
        row(
            out,
            style,
            1,
            "core version",
            &handshake.core_version.to_string(),
        )?;
        row(
            out,
            style,
            1,
            "app version",
            &handshake.app_version.to_string(),
        )?;
        row(out, style, 1, "network", &handshake.network)?;
        row(out, style, 1, "address", &handshake.address)?;
        let protocol = if netrpc {
            format!(
                "{} (go-plugin's legacy net/rpc protocol: gob-encoded Go values over yamux)",
                style.yellow("netrpc")
            )
        } else {
            handshake.protocol.clone()
        };
        row(out, style, 1, "protocol", &protocol)?;
        if handshake.tls != "-" {
            row(out, style, 1, "tls", &handshake.tls)?;
        }
        let multiplex = match (handshake.multiplex_field, report.plugin.multiplex_asked) {
            (None, false) => "not asked (no field 7)".to_owned(),
            (None, true) => "asked, not answered".to_owned(),
            (Some(answer), _) => format!(
                "field 7 = {answer}{}",
                if handshake.multiplexed {
                    ", brokered connections multiplexed"
                } else {
                    ""
                }
            ),
        };
        row(out, style, 1, "multiplexing", &multiplex)?;
    }
    if let Some(cert) = &report.certificate {
        let s = &cert.summary;
        writeln!(out)?;
        row(
            out,
            style,
            0,
            "certificate",
            &format!("{}, {}", s.key, s.signature),
        )?;
        let mut kind = Vec::new();
        if s.self_signed {
            kind.push("self-signed");
        }
        if s.ca {
            kind.push("CA");
        }
        let kind = if kind.is_empty() {
            String::new()
        } else {
            format!(" ({})", kind.join(", "))
        };
        row(out, style, 1, "subject", &format!("{}{kind}", s.subject))?;
        if !s.self_signed {
            row(out, style, 1, "issuer", &s.issuer)?;
        }
        row(out, style, 1, "SAN", &or_none(&s.san.join(", ")))?;
        row(
            out,
            style,
            1,
            "validity",
            &format!("{} to {} ({})", s.not_before, s.not_after, s.lifetime()),
        )?;
        row(
            out,
            style,
            1,
            "key usages",
            &or_none(&s.extended_key_usage.join(", ")),
        )?;
        row(out, style, 1, "serial", &s.serial)?;
        for objection in &cert.go_host_objections {
            row(out, style, 1, "go hosts", &style.red(objection).to_string())?;
        }
    }
    if let Some(t) = &report.timings {
        writeln!(out)?;
        writeln!(out, "{}", style.bold("timings"))?;
        row(out, style, 1, "spawn", &millis(t.spawn_ms))?;
        row(
            out,
            style,
            1,
            "handshake line",
            &millis(t.handshake_line_ms),
        )?;
        row(out, style, 1, "connect", &millis(t.connect_ms))?;
        if let Some(health) = t.first_health_ms {
            row(out, style, 1, "first health", &millis(health))?;
        }
    }
    if let Some(health) = &report.health {
        writeln!(out)?;
        let status = match health.status.as_str() {
            "SERVING" | "Control.Ping answers" => style.green(&health.status).to_string(),
            _ => style.red(&health.status).to_string(),
        };
        let service = if netrpc { "" } else { " (service \"plugin\")" };
        let error = health
            .error
            .as_ref()
            .map(|e| format!(": {e}"))
            .unwrap_or_default();
        row(
            out,
            style,
            0,
            "health",
            &format!("{status}{service}{error}"),
        )?;
    }
    if let Some(services) = &report.services {
        writeln!(out)?;
        services_section(out, services, style)?;
    } else if netrpc && report.health.is_some() {
        writeln!(out)?;
        row(
            out,
            style,
            0,
            "services",
            "netrpc has no reflection: its plugins are dispensed by name (Dispenser.Dispense) and \
             called as Go methods (Plugin.*)",
        )?;
    }
    if let Some(stdio) = &report.stdio {
        writeln!(out)?;
        row(
            out,
            style,
            0,
            "stdio",
            &format!(
                "{} bytes of stdout, {} bytes of stderr over {}",
                stdio.stdout_bytes,
                stdio.stderr_bytes,
                if netrpc {
                    "the netrpc stdout/stderr streams"
                } else {
                    "plugin.GRPCStdio"
                }
            ),
        )?;
    }
    writeln!(out)?;
    let count = match (report.logs.len(), report.logs_dropped) {
        _ if report.reattach.is_some() => {
            "not seen: its stderr goes to whoever started it".to_owned()
        }
        (n, 0) => format!("{n} line{}", if n == 1 { "" } else { "s" }),
        (n, dropped) => format!("{n} lines shown, {dropped} more not kept"),
    };
    row(out, style, 0, "logs", &style.dim(count).to_string())?;
    for line in &report.logs {
        log_line(out, line, style)?;
    }
    for line in &report.host_warnings {
        row(
            out,
            style,
            0,
            "host warning",
            &format!("{} {}", line.message, style.dim(&line.fields)),
        )?;
    }
    if let Some(shutdown) = &report.shutdown {
        writeln!(out)?;
        let stop = if netrpc {
            "Control.Quit"
        } else {
            "GRPCController/Shutdown"
        };
        let text = if shutdown.left_running {
            "not asked: the plugin keeps running".to_owned()
        } else if shutdown.graceful {
            format!(
                "{}: exited ({}) {} after {stop}",
                style.green("graceful"),
                shutdown.exit_status.as_deref().unwrap_or("status unknown"),
                millis(shutdown.took_ms)
            )
        } else {
            format!(
                "{}: it did not exit within 2 s of {stop} and was killed ({})",
                style.red("forced"),
                shutdown.exit_status.as_deref().unwrap_or("status unknown")
            )
        };
        row(out, style, 0, "shutdown", &text)?;
    }
    if let Some(failure) = &report.failure {
        writeln!(out)?;
        diagnosis(out, failure, style)?;
    }
    Ok(())
}

fn services_section(out: &mut impl Write, services: &ServicesInfo, style: Style) -> io::Result<()> {
    let via = services
        .reflection
        .as_ref()
        .map(|v| format!("listed by reflection {v}"))
        .unwrap_or_default();
    row(out, style, 0, "services", &style.dim(via).to_string())?;
    if let Some(error) = &services.error {
        row(out, style, 1, "error", &style.yellow(error).to_string())?;
    }
    if !services.go_plugin.is_empty() {
        row(
            out,
            style,
            1,
            "go-plugin's",
            &wrap_list(&services.go_plugin),
        )?;
    }
    for service in &services.app {
        writeln!(out, "  {}", style.bold(&service.name))?;
        if let Some(error) = &service.error {
            writeln!(
                out,
                "    {}",
                style.yellow(format!("(methods unknown: {error})"))
            )?;
        }
        let width = service
            .methods
            .iter()
            .map(|m| m.name.len())
            .max()
            .unwrap_or(0);
        for method in &service.methods {
            let kind = if method.kind == "unary" {
                String::new()
            } else {
                format!("  {}", style.dim(format!("({})", method.kind)))
            };
            writeln!(
                out,
                "    {:<width$}  {} -> {}{kind}",
                method.name, method.input, method.output
            )?;
        }
    }
    Ok(())
}

fn log_line(out: &mut impl Write, line: &LogLine, style: Style) -> io::Result<()> {
    let level = match line.level {
        "ERROR" => style.red(format!("{:<5}", line.level)).to_string(),
        "WARN" => style.yellow(format!("{:<5}", line.level)).to_string(),
        "INFO" => style.green(format!("{:<5}", line.level)).to_string(),
        _ => style.dim(format!("{:<5}", line.level)).to_string(),
    };
    let fields = if line.fields.is_empty() {
        String::new()
    } else {
        format!("  {}", style.dim(&line.fields))
    };
    writeln!(out, "  {level} {}{fields}", line.message)
}

/// Writes a failure and what to do about it.
pub(crate) fn diagnosis(out: &mut impl Write, d: &Diagnosis, style: Style) -> io::Result<()> {
    writeln!(
        out,
        "{}{}{}",
        style.red("error"),
        " ".repeat(KEY - "error".len()),
        style.bold(&d.summary)
    )?;
    for hint in &d.hints {
        row(out, style, 1, "hint", hint)?;
    }
    if let Some(status) = &d.exit_status {
        row(out, style, 1, "exit", status)?;
    }
    // The host's text ends with the stderr tail, shown below on its own.
    let host_error = d
        .error
        .split("; the plugin's last stderr lines:")
        .next()
        .unwrap_or(&d.error);
    if host_error != d.summary {
        row(
            out,
            style,
            1,
            "host error",
            &style.dim(host_error).to_string(),
        )?;
    }
    if !d.stderr_tail.is_empty() {
        row(
            out,
            style,
            1,
            "stderr",
            &style.dim("(last lines)").to_string(),
        )?;
        for line in &d.stderr_tail {
            writeln!(out, "    {line}")?;
        }
    }
    Ok(())
}

/// One aligned `key  value` line; `level` 1 is indented under its section. Multi-line values
/// keep the alignment.
pub(crate) fn row(
    out: &mut impl Write,
    style: Style,
    level: usize,
    key: &str,
    value: &str,
) -> io::Result<()> {
    let indent = "  ".repeat(level);
    let width = KEY.saturating_sub(indent.len());
    let key_text = if level == 0 {
        style.bold(key).to_string()
    } else {
        key.to_owned()
    };
    // Escapes do not take room on screen: pad by the visible length.
    let pad = width.saturating_sub(key.chars().count()).max(1);
    let mut lines = value.lines();
    let first = lines.next().unwrap_or_default();
    writeln!(out, "{indent}{key_text}{}{first}", " ".repeat(pad))?;
    for line in lines {
        writeln!(out, "{}{line}", " ".repeat(KEY))?;
    }
    Ok(())
}

/// A comma-separated list broken into lines that fit after the key column.
fn wrap_list(items: &[String]) -> String {
    let mut text = String::new();
    let mut line = 0;
    for (i, item) in items.iter().enumerate() {
        let piece = if i + 1 < items.len() {
            format!("{item},")
        } else {
            item.clone()
        };
        if line > 0 && KEY + line + 1 + piece.len() > WIDTH {
            text.push('\n');
            line = 0;
        } else if line > 0 {
            text.push(' ');
            line += 1;
        }
        line += piece.len();
        text.push_str(&piece);
    }
    text
}

fn millis(ms: f64) -> String {
    if ms >= 1000.0 {
        format!("{:.2} s", ms / 1000.0)
    } else {
        format!("{ms:.1} ms")
    }
}

fn on_off(on: bool) -> &'static str {
    if on { "on" } else { "off" }
}

fn or_none(text: &str) -> String {
    if text.is_empty() {
        "(none)".to_owned()
    } else {
        text.to_owned()
    }
}

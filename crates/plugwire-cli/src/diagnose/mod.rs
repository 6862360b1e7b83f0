//! Why a plugin failed to start, the way its user needs to hear it: which file problem, which
//! cookie or version to pass, what the plugin printed where it should not, what it said on
//! stderr before it died.

pub(crate) mod binary;

use std::path::PathBuf;

use plugwire_host::{ErrorKind, HandshakeError};
use plugwire_protocol::env::{MISCONFIGURED_COOKIE_MESSAGE, NOT_LAUNCHED_BY_HOST_MESSAGE};
use serde::Serialize;

use crate::capture::StderrCapture;
use crate::launch::{CookieSource, Handshake, PluginCommand};
use crate::presets;

/// The longest unix socket path Linux takes (`sun_path` is 108 bytes with its NUL; 104 on
/// macOS).
#[cfg(target_os = "macos")]
pub(crate) const SUN_PATH_MAX: usize = 103;
#[cfg(not(target_os = "macos"))]
pub(crate) const SUN_PATH_MAX: usize = 107;

/// The length of the socket names go-plugin makes: `plugin` and a random decimal of up to ten
/// digits (`os.CreateTemp(dir, "plugin")`).
const SOCKET_NAME_LEN: usize = "/plugin4294967295".len();

/// The failure, classified.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub(crate) enum Problem {
    NotFound,
    NotExecutable { mode: String },
    WrongBinary,
    MissingInterpreter { interpreter: String },
    CookieRefused,
    MisconfiguredCookie,
    VersionMismatch { plugin: u32, offered: Vec<u32> },
    SocketPathTooLong { dir: PathBuf, length: usize },
    StdoutBeforeHandshake { line: String },
    HandshakeRefused,
    NoHandshake,
    Exited,
    Netrpc,
    Connect,
    Other,
}

/// A failure explained.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Diagnosis {
    pub(crate) problem: Problem,
    /// What went wrong, in one sentence.
    pub(crate) summary: String,
    /// What to do about it.
    pub(crate) hints: Vec<String>,
    /// The host's own error text.
    pub(crate) error: String,
    /// How the process ended, when it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) exit_status: Option<String>,
    /// The end of what it wrote to stderr.
    pub(crate) stderr_tail: Vec<String>,
}

/// What is known about the failed launch besides the error.
pub(crate) struct Context<'a> {
    pub(crate) command: &'a PluginCommand,
    pub(crate) handshake: &'a Handshake,
    pub(crate) stderr: &'a StderrCapture,
}

/// [`diagnose`] on a blocking thread: it reads the executable (its header, and when the
/// cookie was refused, its bytes for known cookies).
pub(crate) async fn explain(
    error: plugwire_host::Error,
    command: &PluginCommand,
    handshake: &Handshake,
    stderr: &StderrCapture,
) -> Diagnosis {
    let (command, handshake, stderr) = (command.clone(), handshake.clone(), stderr.clone());
    let work = tokio::task::spawn_blocking(move || {
        let context = Context {
            command: &command,
            handshake: &handshake,
            stderr: &stderr,
        };
        diagnose(&error, &context)
    });
    work.await.unwrap_or_else(|e| Diagnosis {
        problem: Problem::Other,
        summary: format!("the diagnosis failed: {e}"),
        hints: Vec::new(),
        error: e.to_string(),
        exit_status: None,
        stderr_tail: Vec::new(),
    })
}

/// Explains a failed launch.
pub(crate) fn diagnose(error: &plugwire_host::Error, context: &Context<'_>) -> Diagnosis {
    let mut diagnosis = Diagnosis {
        problem: Problem::Other,
        summary: String::new(),
        hints: Vec::new(),
        error: error.to_string(),
        exit_status: error.exit_status().map(describe_status),
        stderr_tail: context.stderr.tail_lines(12),
    };
    let text = error.to_string();
    if error.kind() == ErrorKind::Spawn {
        if !binary_problem(&mut diagnosis, context) && diagnosis.summary.is_empty() {
            diagnosis.summary = format!("cannot start the plugin: {text}");
        }
    } else if error.kind() == ErrorKind::Exited && binary_problem(&mut diagnosis, context) {
        // A file the kernel refuses is run by `sh` (execvp's fallback), which fails (127).
    } else if context
        .stderr
        .contains(first_line(NOT_LAUNCHED_BY_HOST_MESSAGE))
    {
        cookie_refused(&mut diagnosis, context);
    } else if context
        .stderr
        .contains(first_line(MISCONFIGURED_COOKIE_MESSAGE))
    {
        diagnosis.problem = Problem::MisconfiguredCookie;
        diagnosis.summary =
            "the plugin has no magic cookie of its own configured (a bug in the plugin)".into();
        diagnosis.hints.push(
            "go-plugin refuses to serve with an empty MagicCookieKey or MagicCookieValue in the \
             plugin's ServeConfig: report it to the plugin's author"
                .into(),
        );
    } else if text.contains("speaks netrpc")
        || matches!(error.handshake(), Some(HandshakeError::UnsupportedProtocol { protocol, .. }) if protocol == "netrpc")
    {
        diagnosis.problem = Problem::Netrpc;
        diagnosis.summary = "the plugin speaks netrpc, go-plugin's legacy net/rpc protocol, \
                             which plugwire does not speak yet"
            .into();
        diagnosis.hints.push(
            "it is a valid go-plugin plugin: its handshake line says protocol netrpc; plugwire \
             inspects, calls and checks gRPC plugins only for now"
                .into(),
        );
    } else if let Some(handshake) = error.handshake() {
        refused_line(&mut diagnosis, handshake, context);
    } else if text.contains("longer than") && text.contains("handshake line") {
        diagnosis.problem = Problem::StdoutBeforeHandshake {
            line: "(over 64 KiB)".into(),
        };
        diagnosis.summary =
            "the plugin's first stdout line is longer than 64 KiB: not a handshake line".into();
        stdout_hint(&mut diagnosis);
    } else if error.kind() == ErrorKind::StartTimeout && !text.contains("connecting") {
        no_handshake(&mut diagnosis, context, true);
    } else if error.kind() == ErrorKind::Exited
        || text.contains("Failed to read any lines from plugin's stdout")
    {
        no_handshake(&mut diagnosis, context, false);
    } else if matches!(error.kind(), ErrorKind::Connect | ErrorKind::StartTimeout) {
        diagnosis.problem = Problem::Connect;
        diagnosis.summary = "the plugin printed its handshake line, but plugwire could not \
                             connect to the address in it"
            .into();
        if context.handshake.auto_mtls {
            diagnosis.hints.push(
                "AutoMTLS is on: the plugin may not accept the host's certificate \
                 (PLUGIN_CLIENT_CERT) or may not speak TLS 1.3 with ALPN h2; try --no-auto-mtls \
                 to see whether plain gRPC works"
                    .into(),
            );
        }
        socket_dir_hint(&mut diagnosis);
    } else {
        diagnosis.summary = text.clone();
    }
    if diagnosis.summary.is_empty() {
        diagnosis.summary = text;
    }
    // After a refused line or a timeout it is plugwire that stopped the plugin.
    let stopped_by_us = matches!(
        diagnosis.problem,
        Problem::VersionMismatch { .. }
            | Problem::StdoutBeforeHandshake { .. }
            | Problem::HandshakeRefused
            | Problem::NoHandshake
            | Problem::Connect
            | Problem::Netrpc
    );
    if stopped_by_us && let Some(status) = &mut diagnosis.exit_status {
        status.push_str(", stopped by plugwire");
    }
    diagnosis
}

/// What is wrong with the executable file itself, if anything: fills in `diagnosis` and
/// returns true.
fn binary_problem(diagnosis: &mut Diagnosis, context: &Context<'_>) -> bool {
    let path = match context.command.resolve() {
        Ok(path) => path,
        Err(error) => {
            diagnosis.problem = Problem::NotFound;
            diagnosis.summary = format!("cannot start the plugin: {error}");
            return true;
        }
    };
    let exe = match binary::look(&path) {
        Ok(exe) => exe,
        Err(error) => {
            diagnosis.summary = format!("cannot start the plugin: {error}");
            return true;
        }
    };
    if !exe.regular_file {
        diagnosis.problem = Problem::NotExecutable {
            mode: format!("{:o}", exe.mode & 0o7777),
        };
        diagnosis.summary = format!("{} is not a file (a directory?)", path.display());
    } else if !exe.executable {
        diagnosis.problem = Problem::NotExecutable {
            mode: format!("{:o}", exe.mode & 0o7777),
        };
        diagnosis.summary = format!(
            "{} is not executable by this user (mode {:o})",
            path.display(),
            exe.mode & 0o7777
        );
        diagnosis
            .hints
            .push(format!("make it executable: chmod +x {}", path.display()));
    } else if let Some(why) = exe.format.mismatch() {
        diagnosis.problem = Problem::WrongBinary;
        diagnosis.summary = format!("{} cannot run on this machine: {why}", path.display());
    } else if let Some(interpreter) = missing_interpreter(&exe.format) {
        diagnosis.problem = Problem::MissingInterpreter {
            interpreter: interpreter.clone(),
        };
        diagnosis.summary = format!(
            "{} needs {interpreter} to run, and this machine has none",
            path.display()
        );
        diagnosis.hints.push(
            "a binary linked against another C library (musl vs glibc) or a script whose \
             interpreter is not installed fails to start with \"No such file or directory\"; for \
             Go, build it with CGO_ENABLED=0 to get a static binary"
                .into(),
        );
    } else {
        return false;
    }
    true
}

fn missing_interpreter(format: &binary::Format) -> Option<String> {
    let interpreter = match format {
        binary::Format::Elf {
            interpreter: Some(interpreter),
            ..
        } => interpreter.clone(),
        binary::Format::Script { interpreter } => interpreter
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_owned(),
        _ => return None,
    };
    (!interpreter.is_empty() && !std::path::Path::new(&interpreter).exists()).then_some(interpreter)
}

fn cookie_refused(diagnosis: &mut Diagnosis, context: &Context<'_>) {
    diagnosis.problem = Problem::CookieRefused;
    let cookie = &context.handshake.cookie;
    diagnosis.summary = match context.handshake.cookie_source {
        CookieSource::Missing => "the plugin refused to start: it expects its host's magic \
                                  cookie, and none was given"
            .into(),
        _ => format!(
            "the plugin refused to start: it does not accept the magic cookie {}={}",
            cookie.key(),
            cookie.value()
        ),
    };
    let file_name = context.command.file_name();
    if let Some(why) = presets::not_go_plugin(&file_name) {
        diagnosis.hints.push(why.to_owned());
    }
    let in_binary = context
        .command
        .resolve()
        .map(|path| crate::launch::presets_in(&path))
        .unwrap_or_default();
    let mut suggested = false;
    for preset in in_binary {
        if preset.cookie_key != cookie.key() || preset.cookie_value != cookie.value() {
            diagnosis.hints.push(format!(
                "the executable contains the cookie of the {} preset ({}): pass --preset {}",
                preset.name, preset.cookie_key, preset.name
            ));
            suggested = true;
        }
    }
    if !suggested
        && let Some(preset) = presets::by_file_name(&file_name)
        && preset.cookie_key != cookie.key()
    {
        diagnosis.hints.push(format!(
            "its name suggests a {}: pass --preset {}",
            preset.description, preset.name
        ));
        suggested = true;
    }
    if !suggested {
        diagnosis.hints.push(
            "pass --cookie KEY=VALUE with the MagicCookieKey and MagicCookieValue of the \
             HandshakeConfig its host application uses (its SDK defines them), or a --preset \
             (see `plugwire presets`)"
                .into(),
        );
    }
    if diagnosis.exit_status.as_deref() != Some("exit status 1") {
        diagnosis.hints.push(format!(
            "go-plugin plugins exit with status 1 after this message; this one ended with {}",
            diagnosis
                .exit_status
                .as_deref()
                .unwrap_or("an unknown status")
        ));
    }
}

fn refused_line(diagnosis: &mut Diagnosis, handshake: &HandshakeError, context: &Context<'_>) {
    match handshake {
        HandshakeError::IncompatibleAppVersion { plugin, host } => {
            diagnosis.problem = Problem::VersionMismatch {
                plugin: *plugin,
                offered: host.clone(),
            };
            diagnosis.summary = format!(
                "no common app-protocol version: plugwire offered {}, the plugin answered {plugin}",
                list(host)
            );
            diagnosis.hints.push(format!(
                "a go-plugin plugin that has none of the offered versions answers its lowest, so \
                 it speaks {plugin} (and perhaps higher ones): try --versions {plugin}"
            ));
            if let Some(preset) = presets::PRESETS.iter().find(|p| {
                p.versions.contains(plugin) && p.cookie_key == context.handshake.cookie.key()
            }) && context
                .handshake
                .preset
                .is_none_or(|given| given.name != preset.name)
            {
                diagnosis.hints.push(format!(
                    "the {} preset offers {}",
                    preset.name,
                    list(preset.versions)
                ));
            }
        }
        HandshakeError::Unrecognized { line } | HandshakeError::NotUtf8 { line } => {
            diagnosis.problem = Problem::StdoutBeforeHandshake { line: line.clone() };
            diagnosis.summary = format!(
                "the plugin's first line on stdout is not a go-plugin handshake line: {:?}",
                crate::capture::truncate(line, 200)
            );
            stdout_hint(diagnosis);
        }
        HandshakeError::MultiplexNotAnswered | HandshakeError::MultiplexRefused => {
            diagnosis.problem = Problem::HandshakeRefused;
            diagnosis.summary = format!("{handshake}");
            diagnosis
                .hints
                .push("the plugin does not multiplex brokered connections: drop --mux".into());
        }
        other => {
            diagnosis.problem = Problem::HandshakeRefused;
            diagnosis.summary = format!("the plugin's handshake line was refused: {other}");
        }
    }
}

fn stdout_hint(diagnosis: &mut Diagnosis) {
    diagnosis.hints.push(
        "go-plugin hosts take the first line the plugin writes to stdout as its handshake line \
         (CORE|APP|NETWORK|ADDRESS|PROTOCOL|CERT): a plugin must print nothing to stdout before \
         it; logs belong on stderr. If it is not a go-plugin plugin at all, check the command."
            .into(),
    );
}

fn no_handshake(diagnosis: &mut Diagnosis, context: &Context<'_>, timed_out: bool) {
    if let Some((dir, length)) = socket_dir_too_long()
        && (context.stderr.contains("invalid argument")
            || context.stderr.contains("SUN_LEN")
            || context.stderr.contains("too long")
            || context.stderr.tail_lines(1).is_empty())
    {
        diagnosis.problem = Problem::SocketPathTooLong {
            dir: dir.clone(),
            length,
        };
        diagnosis.summary = format!(
            "the plugin's unix socket path would be {length} bytes long, over the {SUN_PATH_MAX} a \
             socket path may have: the temp directory {} is too long",
            dir.display()
        );
        diagnosis.hints.push(
            "go-plugin plugins create their socket in $TMPDIR: run with a short one, e.g. \
             TMPDIR=/tmp"
                .into(),
        );
        return;
    }
    if timed_out {
        diagnosis.problem = Problem::NoHandshake;
        diagnosis.summary = format!(
            "the plugin printed no handshake line within {}",
            humantime::format_duration(context.handshake.start_timeout)
        );
        diagnosis.hints.push(
            "a go-plugin plugin prints its line within milliseconds of starting: this one is \
             hung, waiting for input, slow to start (raise --timeout), or not a go-plugin plugin"
                .into(),
        );
    } else {
        diagnosis.problem = Problem::Exited;
        diagnosis.summary = format!(
            "the plugin exited before printing its handshake line ({})",
            diagnosis.exit_status.as_deref().unwrap_or("status unknown")
        );
        if diagnosis.exit_status.as_deref() == Some("exit status 0")
            && diagnosis.stderr_tail.is_empty()
        {
            diagnosis.hints.push(
                "it exited cleanly without a word: is it a go-plugin plugin? (one whose listener \
                 fails logs \"plugin init error\" and returns)"
                    .into(),
            );
        }
    }
    if diagnosis.stderr_tail.is_empty() {
        diagnosis
            .hints
            .push("it wrote nothing to stderr either".into());
    }
}

fn socket_dir_hint(diagnosis: &mut Diagnosis) {
    if let Some((dir, length)) = socket_dir_too_long() {
        diagnosis.hints.push(format!(
            "the temp directory {} makes socket paths of {length} bytes, over the {SUN_PATH_MAX} \
             allowed: set TMPDIR=/tmp",
            dir.display()
        ));
    }
}

/// The temp directory, when the socket paths go-plugin makes in it are too long.
pub(crate) fn socket_dir_too_long() -> Option<(PathBuf, usize)> {
    let dir = std::env::temp_dir();
    let length = dir.as_os_str().len() + SOCKET_NAME_LEN;
    (length > SUN_PATH_MAX).then_some((dir, length))
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or(text)
}

/// `[1 2]`, as go-plugin prints a list.
pub(crate) fn list(items: &[u32]) -> String {
    let items: Vec<String> = items.iter().map(u32::to_string).collect();
    format!("[{}]", items.join(" "))
}

/// `exit status 1`, `killed by signal 9 (SIGKILL)`.
pub(crate) fn describe_status(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt as _;
    if let Some(code) = status.code() {
        return format!("exit status {code}");
    }
    match status.signal() {
        Some(signal) => {
            let name = nix::sys::signal::Signal::try_from(signal)
                .map(|s| s.as_str().to_owned())
                .unwrap_or_else(|_| format!("signal {signal}"));
            format!("killed by signal {signal} ({name})")
        }
        None => "unknown status".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_read_well() {
        use std::os::unix::process::ExitStatusExt as _;
        assert_eq!(
            describe_status(std::process::ExitStatus::from_raw(1 << 8)),
            "exit status 1"
        );
        assert_eq!(
            describe_status(std::process::ExitStatus::from_raw(9)),
            "killed by signal 9 (SIGKILL)"
        );
        assert_eq!(list(&[5, 6]), "[5 6]");
    }
}

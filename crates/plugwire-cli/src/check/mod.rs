//! `plugwire check`: the conformance suite. Each check runs the plugin afresh, within a time
//! bound, and says pass, fail, deviation (what go-plugin's own plugins do, documented) or not
//! applicable, with what it saw and what go-plugin expects.

pub(crate) mod channel;
mod checks;
pub(crate) mod context;
mod hclog;
pub(crate) mod outcome;
mod render;
pub(crate) mod session;
mod tls;

use std::io::Write as _;
use std::process::ExitCode;
use std::time::Instant;

use serde::Serialize;

use crate::app::App;
use crate::cli::CheckArgs;
use crate::diagnose::{Diagnosis, Problem};
use crate::launch::{Handshake, PluginCommand, UsageError};
use context::Ctx;
use outcome::{Outcome, Status};

/// One check of the suite.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Check {
    Cookie,
    Negotiation,
    HandshakeLine,
    Socket,
    Health,
    Reflection,
    Shutdown,
    Stdio,
    Logs,
    AutoMtlsCert,
    AutoMtlsClientAuth,
    MultiplexField,
    Broker,
    HostGone,
    Sigint,
}

impl Check {
    /// Every check, in the order they run.
    pub(crate) const ALL: [Check; 15] = [
        Check::Cookie,
        Check::Negotiation,
        Check::HandshakeLine,
        Check::Socket,
        Check::Health,
        Check::Reflection,
        Check::Shutdown,
        Check::Stdio,
        Check::Logs,
        Check::AutoMtlsCert,
        Check::AutoMtlsClientAuth,
        Check::MultiplexField,
        Check::Broker,
        Check::HostGone,
        Check::Sigint,
    ];

    /// The name `--only` and `--skip` take.
    pub(crate) fn id(self) -> &'static str {
        match self {
            Check::Cookie => "cookie",
            Check::Negotiation => "negotiation",
            Check::HandshakeLine => "handshake-line",
            Check::Socket => "socket",
            Check::Health => "health",
            Check::Reflection => "reflection",
            Check::Shutdown => "shutdown",
            Check::Stdio => "stdio",
            Check::Logs => "logs",
            Check::AutoMtlsCert => "auto-mtls-cert",
            Check::AutoMtlsClientAuth => "auto-mtls-client-auth",
            Check::MultiplexField => "multiplex-field",
            Check::Broker => "broker",
            Check::HostGone => "host-gone",
            Check::Sigint => "sigint",
        }
    }

    /// What it checks, in a few words.
    pub(crate) fn title(self) -> &'static str {
        match self {
            Check::Cookie => "refuses to run without its magic cookie",
            Check::Negotiation => "negotiates the highest common version, its lowest if none",
            Check::HandshakeLine => "prints a well-formed handshake line",
            Check::Socket => "a unix socket only this user can reach, removed on exit",
            Check::Health => "health service \"plugin\" answers SERVING",
            Check::Reflection => "gRPC reflection lists its services",
            Check::Shutdown => "GRPCController/Shutdown makes it exit within 2 s",
            Check::Stdio => "GRPCStdio is served and stays open",
            Check::Logs => "its log lines are hclog JSON a Go host parses",
            Check::AutoMtlsCert => "AutoMTLS: answers with a certificate Go hosts accept",
            Check::AutoMtlsClientAuth => "AutoMTLS: refuses clients without the host's certificate",
            Check::MultiplexField => "field 7 only when multiplexing is asked for",
            Check::Broker => "GRPCBroker/StartStream is served",
            Check::HostGone => "exits by itself when its host goes away",
            Check::Sigint => "ignores SIGINT, as Go plugins do",
        }
    }

    /// What go-plugin does, or expects, in this respect.
    pub(crate) fn expected(self) -> &'static str {
        match self {
            Check::Cookie => {
                "without its cookie variable (or with another value) a go-plugin plugin prints \
                 \"This binary is a plugin. These are not meant to be executed directly.\" and \
                 two more lines on stderr, nothing on stdout, and exits with status 1"
            }
            Check::Negotiation => {
                "the plugin picks the highest of its versions that PLUGIN_PROTOCOL_VERSIONS \
                 offers, in whatever order they come; with none in common it answers its lowest \
                 version, and the host reports the mismatch"
            }
            Check::HandshakeLine => {
                "one line CORE|APP|NETWORK|ADDRESS|PROTOCOL|CERT, e.g. 1|1|unix|/tmp/plugin123|grpc|, \
                 first on stdout, newline-terminated, under 64 KiB; the address listening when it \
                 is printed"
            }
            Check::Socket => {
                "a socket in $TMPDIR (or PLUGIN_UNIX_SOCKET_DIR) with bind()'s mode, 0777 minus \
                 the umask (checks run with umask 022), so only its user can connect; a group \
                 only with PLUGIN_UNIX_SOCKET_GROUP; removed when the plugin exits"
            }
            Check::Health => {
                "grpc.health.v1.Health answers SERVING for service \"plugin\" (the host's Ping())"
            }
            Check::Reflection => {
                "grpc.reflection.v1 and v1alpha list every service: go-plugin's (health, \
                 reflection, GRPCBroker, GRPCController, GRPCStdio) and the application's"
            }
            Check::Shutdown => {
                "GRPCController/Shutdown stops the server and the process exits (status 0); a Go \
                 host SIGKILLs a plugin still running 2 s after the call"
            }
            Check::Stdio => {
                "plugin.GRPCStdio/StreamStdio is served and stays open while the plugin lives, \
                 carrying what it writes to stdout and stderr after the handshake"
            }
            Check::Logs => {
                "hclog JSON on stderr, one object per line: @level (trace|debug|info|warn|error), \
                 @message and @timestamp (2006-01-02T15:04:05.000000Z07:00) as strings; a \
                 non-string one panics a Go host, a bad level or timestamp makes it log the raw \
                 line at debug"
            }
            Check::AutoMtlsCert => {
                "with PLUGIN_CLIENT_CERT set, field 6 carries the plugin's certificate (base64 \
                 DER, no padding; go-plugin's: ECDSA P-521, self-signed, DNS:localhost, \
                 serverAuth and clientAuth), and it serves TLS 1.3 with ALPN h2"
            }
            Check::AutoMtlsClientAuth => {
                "the plugin requires and verifies a client certificate against PLUGIN_CLIENT_CERT \
                 only (RequireAndVerifyClientCert): no certificate, another one or plaintext are \
                 refused"
            }
            Check::MultiplexField => {
                "field 7 only when PLUGIN_MULTIPLEX_GRPC is set; `true` means it multiplexes \
                 brokered connections over one yamux session"
            }
            Check::Broker => {
                "plugin.GRPCBroker/StartStream is served and stays open: the host opens it right \
                 after connecting, to exchange ConnInfo for brokered connections"
            }
            Check::HostGone => {
                "plugwire plugins exit once their host is gone (its end of their stdout pipe \
                 closes). go-plugin's do not notice: they run until their next write to stdout or \
                 stderr kills them with SIGPIPE, a deviation reported as such"
            }
            Check::Sigint => {
                "Serve ignores SIGINT (it only logs it), so a Ctrl-C in the host's terminal, which \
                 reaches the whole process group, leaves the plugin to its host"
            }
        }
    }

    fn parse(name: &str) -> Option<Check> {
        Check::ALL.into_iter().find(|c| c.id() == name)
    }

    async fn run(self, ctx: &Ctx) -> Outcome {
        use checks::{lifecycle, logs, mtls, multiplex, services, socket, startup};
        match self {
            Check::Cookie => startup::cookie(ctx).await,
            Check::Negotiation => startup::negotiation(ctx).await,
            Check::HandshakeLine => startup::handshake_line(ctx).await,
            Check::Socket => socket::socket(ctx).await,
            Check::Health => services::health(ctx).await,
            Check::Reflection => services::reflection(ctx).await,
            Check::Shutdown => lifecycle::shutdown(ctx).await,
            Check::Stdio => services::stdio(ctx).await,
            Check::Logs => logs::logs(ctx).await,
            Check::AutoMtlsCert => mtls::certificate(ctx).await,
            Check::AutoMtlsClientAuth => mtls::client_auth(ctx).await,
            Check::MultiplexField => multiplex::field(ctx).await,
            Check::Broker => services::broker(ctx).await,
            Check::HostGone => lifecycle::host_gone(ctx).await,
            Check::Sigint => lifecycle::sigint(ctx).await,
        }
    }
}

/// One check's result.
#[derive(Debug, Serialize)]
pub(crate) struct CheckResult {
    pub(crate) id: &'static str,
    pub(crate) title: &'static str,
    #[serde(flatten)]
    pub(crate) outcome: Outcome,
    pub(crate) expected: &'static str,
    pub(crate) duration_ms: f64,
}

/// The counts.
#[derive(Debug, Default, Serialize)]
pub(crate) struct Summary {
    pub(crate) passed: usize,
    pub(crate) failed: usize,
    pub(crate) deviations: usize,
    pub(crate) not_applicable: usize,
    pub(crate) duration_ms: f64,
}

/// The whole run, as `--json` prints it.
#[derive(Debug, Serialize)]
pub(crate) struct CheckReport {
    pub(crate) plugin: crate::inspect::report::PluginInfo,
    /// Why a first launch as a host failed, if it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) preflight: Option<Preflight>,
    pub(crate) checks: Vec<CheckResult>,
    pub(crate) summary: Summary,
}

/// A first launch, as a host, that failed.
#[derive(Debug, Serialize)]
pub(crate) struct Preflight {
    pub(crate) diagnosis: Diagnosis,
    /// Whether the checks were skipped for it: the plugin cannot be run with this command and
    /// handshake at all (not found, another cookie or version, ...). Otherwise they ran, and
    /// say what in the plugin is wrong.
    pub(crate) stopped: bool,
}

/// Whether a failed launch means that no check can tell anything about the plugin: a problem of
/// the command line or the machine, not of the plugin's protocol.
fn stops_everything(problem: &Problem) -> bool {
    matches!(
        problem,
        Problem::NotFound
            | Problem::NotExecutable { .. }
            | Problem::WrongBinary
            | Problem::MissingInterpreter { .. }
            | Problem::CookieRefused
            | Problem::MisconfiguredCookie
            | Problem::VersionMismatch { .. }
            | Problem::SocketPathTooLong { .. }
            | Problem::NoHandshake
    )
}

/// Runs `plugwire check`.
pub(crate) async fn run(args: CheckArgs, app: &App) -> Result<ExitCode, crate::error::CliError> {
    let selected = select(&args.only, &args.skip)?;
    let mut command = PluginCommand::new(&args.command, args.handshake.dir.clone())?;
    let handshake = Handshake::resolve(&args.handshake, &mut command).await?;
    // Sockets get bind()'s mode minus the umask: check with the usual one, not whatever this
    // shell has, so that the verdict is about the plugin.
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o022));
    let mut ctx = Ctx::new(command.clone(), handshake.clone());
    let mut report = CheckReport {
        plugin: crate::inspect::plugin_info(&command, &handshake),
        preflight: None,
        checks: Vec::new(),
        summary: Summary::default(),
    };
    let started = Instant::now();
    let mut out = std::io::stdout().lock();
    // Preflight: the plugin must start with this handshake, or every check fails for one
    // reason; say that reason once.
    match tokio::time::timeout(args.check_timeout, ctx.launch_raw(|b| b)).await {
        Ok(Ok(launched)) => {
            ctx.netrpc = launched.plugin.protocol() == plugwire_host::Protocol::NetRpc
        }
        Ok(Err(diagnosis)) if diagnosis.problem == Problem::Netrpc => ctx.netrpc = true,
        Ok(Err(diagnosis)) => {
            report.preflight = Some(Preflight {
                stopped: stops_everything(&diagnosis.problem),
                diagnosis,
            });
        }
        Err(_) => {
            return Err(crate::error::CliError::Timeout(format!(
                "the plugin did not start within {}",
                humantime::format_duration(args.check_timeout)
            )));
        }
    }
    let _ = app.logs.take();
    if !args.json {
        render::header(&mut out, &report.plugin, app.style)?;
    }
    if let Some(preflight) = &report.preflight {
        if preflight.stopped {
            if args.json {
                serde_json::to_writer_pretty(&mut out, &report)?;
                writeln!(out)?;
            } else {
                writeln!(
                    out,
                    "  The plugin does not start this way, so no check ran:\n"
                )?;
                crate::inspect::render::diagnosis(&mut out, &preflight.diagnosis, app.style)?;
            }
            return Ok(ExitCode::FAILURE);
        }
        if !args.json {
            writeln!(
                out,
                "  A host cannot load it; the checks say where it departs from the protocol:\n"
            )?;
            crate::inspect::render::diagnosis(&mut out, &preflight.diagnosis, app.style)?;
            writeln!(out)?;
        }
    }
    for check in selected {
        let began = Instant::now();
        let outcome = match tokio::time::timeout(args.check_timeout, check.run(&ctx)).await {
            Ok(outcome) => outcome,
            Err(_) => Outcome::fail(format!(
                "the check did not finish within {} (--check-timeout)",
                humantime::format_duration(args.check_timeout)
            )),
        };
        let _ = app.logs.take();
        let result = CheckResult {
            id: check.id(),
            title: check.title(),
            outcome,
            expected: check.expected(),
            duration_ms: crate::inspect::report::ms(began.elapsed()),
        };
        match result.outcome.status {
            Status::Pass => report.summary.passed += 1,
            Status::Fail => report.summary.failed += 1,
            Status::Deviation => report.summary.deviations += 1,
            Status::NotApplicable => report.summary.not_applicable += 1,
        }
        if !args.json {
            render::result(&mut out, &result, app.style)?;
        }
        report.checks.push(result);
    }
    report.summary.duration_ms = crate::inspect::report::ms(started.elapsed());
    if args.json {
        serde_json::to_writer_pretty(&mut out, &report)?;
        writeln!(out)?;
    } else {
        render::summary(&mut out, &report.summary, app.style)?;
    }
    Ok(if report.summary.failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// The checks `--only` and `--skip` leave, in suite order.
fn select(only: &[String], skip: &[String]) -> Result<Vec<Check>, UsageError> {
    for name in only.iter().chain(skip) {
        if Check::parse(name).is_none() {
            return Err(UsageError::Other(format!(
                "unknown check {name:?}; checks: {}",
                Check::ALL.map(Check::id).join(", ")
            )));
        }
    }
    Ok(Check::ALL
        .into_iter()
        .filter(|c| only.is_empty() || only.iter().any(|n| n == c.id()))
        .filter(|c| !skip.iter().any(|n| n == c.id()))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selection_keeps_the_suite_order() {
        let only = vec!["sigint".to_owned(), "cookie".to_owned()];
        assert_eq!(
            select(&only, &[]).expect("valid"),
            vec![Check::Cookie, Check::Sigint]
        );
        let skip = vec!["logs".to_owned()];
        assert_eq!(select(&[], &skip).expect("valid").len(), 14);
        assert!(select(&["nope".to_owned()], &[]).is_err());
        let ids: std::collections::BTreeSet<_> = Check::ALL.iter().map(|c| c.id()).collect();
        assert_eq!(ids.len(), Check::ALL.len());
    }
}

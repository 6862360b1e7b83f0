//! What every check gets: the plugin's command and handshake, and two ways to run it afresh —
//! as a host (`Plugin::launch`) or under the check's own control ([`Session`]).

use std::time::Duration;

use plugwire_host::{Plugin, PluginConfigBuilder};
use plugwire_protocol::HandshakeLine;

use crate::capture::StderrCapture;
use crate::diagnose::{self, Diagnosis, Problem};
use crate::launch::{Handshake, PluginCommand};

use super::outcome::Outcome;
use super::session::{Env, FirstLine, Session, Spec};

/// How long a plugin may take to answer a request in a check.
pub(crate) const ANSWER_TIMEOUT: Duration = Duration::from_secs(3);

/// The plugin under test.
#[derive(Clone, Debug)]
pub(crate) struct Ctx {
    pub(crate) command: PluginCommand,
    pub(crate) handshake: Handshake,
    pub(crate) spec: Spec,
    /// Learned at the preflight: the plugin answers netrpc.
    pub(crate) netrpc: bool,
}

/// A plugin launched by the host, with its stderr and its private temp directory.
pub(crate) struct Launched {
    pub(crate) plugin: Plugin,
    pub(crate) stderr: StderrCapture,
    // Removed after the plugin (fields drop in order).
    _tmpdir: tempfile::TempDir,
}

impl Launched {
    /// The gRPC channel; for a plugin that is not gRPC, the outcome of a check that needs it.
    pub(crate) fn channel(&self) -> Result<tonic::transport::Channel, Outcome> {
        self.plugin
            .channel()
            .map_err(|e| Outcome::not_applicable(format!("this check needs gRPC: {e}")))
    }
}

/// A run under the check's control whose handshake line parsed.
pub(crate) struct Started {
    pub(crate) session: Session,
    pub(crate) line: HandshakeLine,
}

impl Ctx {
    pub(crate) fn new(command: PluginCommand, handshake: Handshake) -> Self {
        let spec = Spec::new(&command, &handshake);
        Ctx {
            command,
            handshake,
            spec,
            netrpc: false,
        }
    }

    /// The start timeout.
    pub(crate) fn timeout(&self) -> Duration {
        self.handshake.start_timeout
    }

    /// Launches the plugin as a host would (the handshake of the command line, changed by
    /// `adjust`), in a private `$TMPDIR`.
    pub(crate) async fn launch_raw(
        &self,
        adjust: impl FnOnce(PluginConfigBuilder) -> PluginConfigBuilder,
    ) -> Result<Launched, Diagnosis> {
        let tmpdir = super::session::private_tmpdir()
            .await
            .map_err(|e| io_diagnosis(&e))?;
        let mut command = self.command.clone();
        command.env.push((
            "TMPDIR".to_owned(),
            tmpdir.path().to_string_lossy().into_owned(),
        ));
        let stderr = StderrCapture::default();
        let config = adjust(self.handshake.builder(&command, &stderr)).build();
        match Plugin::launch(config).await {
            Ok(plugin) => Ok(Launched {
                plugin,
                stderr,
                _tmpdir: tmpdir,
            }),
            Err(error) => {
                Err(diagnose::explain(error, &self.command, &self.handshake, &stderr).await)
            }
        }
    }

    /// [`Ctx::launch_raw`], a failure made the check's outcome: not applicable for a netrpc
    /// plugin, else a failure with the diagnosis.
    pub(crate) async fn launch(
        &self,
        adjust: impl FnOnce(PluginConfigBuilder) -> PluginConfigBuilder,
    ) -> Result<Launched, Outcome> {
        self.launch_raw(adjust)
            .await
            .map_err(|d| launch_outcome(&d))
    }

    /// The outcome for a check that needs gRPC, on a netrpc plugin.
    pub(crate) fn netrpc_outcome(&self) -> Option<Outcome> {
        self.netrpc.then(|| {
            Outcome::not_applicable(
                "the plugin speaks netrpc, which has none of go-plugin's gRPC services (its \
                 stdout, stderr and brokered connections are yamux streams)",
            )
        })
    }

    /// Starts the plugin under the check's control with `env`.
    pub(crate) async fn start(&self, env: &Env) -> Result<Session, Outcome> {
        Session::start(&self.spec, env)
            .await
            .map_err(|e| Outcome::fail(format!("cannot start the plugin: {e}")))
    }

    /// Starts it and reads its handshake line, which must parse.
    pub(crate) async fn start_line(&self, env: &Env) -> Result<Started, Outcome> {
        let mut session = self.start(env).await?;
        let raw = match session.first_line(self.timeout()).await {
            FirstLine::Line(raw) | FirstLine::Unterminated(raw) => raw,
            other => {
                let outcome = no_line(&other, &mut session, self.timeout()).await;
                session.kill().await;
                return Err(outcome);
            }
        };
        match HandshakeLine::parse_bytes(&raw) {
            Ok(line) => Ok(Started { session, line }),
            Err(error) => {
                session.kill().await;
                Err(Outcome::fail(format!(
                    "its first stdout line is not a handshake line Go hosts accept ({error}); \
                     see the handshake-line check"
                )))
            }
        }
    }
}

/// Why there is no line, as an outcome.
pub(crate) async fn no_line(line: &FirstLine, session: &mut Session, timeout: Duration) -> Outcome {
    let status = session
        .wait(Duration::from_millis(500))
        .await
        .map(diagnose::describe_status);
    session.drain_stderr().await;
    let tail = session.stderr().tail_lines(3);
    let said = if tail.is_empty() {
        "nothing on stderr".to_owned()
    } else {
        format!("stderr: {}", tail.join(" / "))
    };
    let what = match line {
        FirstLine::Timeout => format!(
            "no handshake line within {}",
            humantime::format_duration(timeout)
        ),
        FirstLine::TooLong => "a first stdout line over 64 KiB".to_owned(),
        _ => format!(
            "stdout closed without a handshake line{}",
            status.map(|s| format!(" ({s})")).unwrap_or_default()
        ),
    };
    Outcome::fail(format!("{what}; {said}"))
}

pub(crate) fn launch_outcome(diagnosis: &Diagnosis) -> Outcome {
    if diagnosis.problem == Problem::Netrpc {
        return Outcome::not_applicable(
            "the host refused the plugin's netrpc protocol; this check needs a connection",
        );
    }
    Outcome::fail(format!("the launch failed: {}", diagnosis.summary))
        .notes(diagnosis.hints.clone())
}

fn io_diagnosis(error: &std::io::Error) -> Diagnosis {
    Diagnosis {
        problem: Problem::Other,
        summary: format!("cannot make a temp directory: {error}"),
        hints: Vec::new(),
        error: error.to_string(),
        exit_status: None,
        stderr_tail: Vec::new(),
    }
}

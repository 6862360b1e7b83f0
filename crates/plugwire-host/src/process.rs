//! The plugin process: spawned with go-plugin's environment, watched until it exits, killed on
//! request or when its owner goes away, and always reaped.

use std::process::ExitStatus;
use std::time::Duration;

use tokio::process::{Child, ChildStderr, ChildStdout};
use tokio::sync::watch;
use tokio_util::sync::{CancellationToken, DropGuard};

/// How long a SIGKILLed process may take to be reaped before we stop waiting.
pub(crate) const REAP_TIMEOUT: Duration = Duration::from_secs(5);

/// A running (or exited) plugin process.
#[derive(Debug)]
pub(crate) struct Process {
    pid: Option<u32>,
    status: watch::Receiver<Option<ExitStatus>>,
    exited: CancellationToken,
    kill: CancellationToken,
    /// Dropping the owner kills the process.
    _kill_on_drop: DropGuard,
}

impl Process {
    /// Spawns `command` (stdin inherited, stdout and stderr piped) and starts watching it.
    pub(crate) fn spawn(
        mut command: tokio::process::Command,
    ) -> std::io::Result<(Process, ChildStdout, ChildStderr)> {
        command
            .stdin(std::process::Stdio::inherit())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        let mut child = command.spawn()?;
        let (stdout, stderr) = match (child.stdout.take(), child.stderr.take()) {
            (Some(out), Some(err)) => (out, err),
            _ => {
                let _ = child.start_kill();
                return Err(std::io::Error::other(
                    "the plugin's stdout/stderr pipes are missing",
                ));
            }
        };
        let pid = child.id();
        let (status_tx, status) = watch::channel(None);
        let exited = CancellationToken::new();
        let kill = CancellationToken::new();
        tokio::spawn(watch_child(child, status_tx, exited.clone(), kill.clone()));
        Ok((
            Process {
                pid,
                status,
                exited,
                _kill_on_drop: kill.clone().drop_guard(),
                kill,
            },
            stdout,
            stderr,
        ))
    }

    /// The OS process id.
    pub(crate) fn pid(&self) -> Option<u32> {
        self.pid
    }

    /// Fires once the process has exited and been reaped.
    pub(crate) fn exited(&self) -> &CancellationToken {
        &self.exited
    }

    /// The exit status, once exited.
    pub(crate) fn status(&self) -> Option<ExitStatus> {
        *self.status.borrow()
    }

    /// Waits for the exit, at most `timeout`.
    pub(crate) async fn wait_timeout(&self, timeout: Duration) -> Option<ExitStatus> {
        let _ = tokio::time::timeout(timeout, self.exited.cancelled()).await;
        self.status()
    }

    /// Sends SIGKILL (once) and waits for the reap, at most [`REAP_TIMEOUT`].
    pub(crate) async fn kill(&self) -> Option<ExitStatus> {
        self.kill.cancel();
        self.wait_timeout(REAP_TIMEOUT).await
    }
}

async fn watch_child(
    mut child: Child,
    status_tx: watch::Sender<Option<ExitStatus>>,
    exited: CancellationToken,
    kill: CancellationToken,
) {
    let status = tokio::select! {
        status = child.wait() => status,
        () = kill.cancelled() => {
            let _ = child.start_kill();
            child.wait().await
        }
    };
    match status {
        Ok(status) => {
            let _ = status_tx.send(Some(status));
        }
        Err(e) => tracing::error!(error = %e, "waiting for the plugin process failed"),
    }
    exited.cancel();
}

/// Describes an exit status the way a user wants to read it.
pub(crate) fn describe(status: Option<ExitStatus>) -> String {
    use std::os::unix::process::ExitStatusExt;
    match status {
        None => "exit status unknown".into(),
        Some(s) => match (s.code(), s.signal()) {
            (Some(code), _) => format!("exit status {code}"),
            (None, Some(signal)) => format!("killed by signal {signal}"),
            (None, None) => s.to_string(),
        },
    }
}

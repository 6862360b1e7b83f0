//! Stopping a plugin (go-plugin's `Kill`): `Shutdown`, go-plugin's 2 s, SIGKILL to its process
//! group, then its remaining output and the files it left behind.

use std::process::ExitStatus;
use std::time::Duration;

use plugwire_runtime::pb::Empty;
use plugwire_runtime::pb::grpc_controller_client::GrpcControllerClient;
use tokio::task::JoinHandle;
use tonic::transport::Channel;

use crate::plugin::{Plugin, Wire};
use crate::process::{self, Process};

/// How long [`Plugin::kill`] gives a plugin, from the `GRPCController/Shutdown` call to its exit,
/// before it is killed (go-plugin's 2 s).
pub const GRACEFUL_EXIT_TIMEOUT: Duration = Duration::from_secs(2);

/// How long to wait for the plugin's stderr to be fully read once it has exited.
pub(crate) const STDERR_DRAIN_TIMEOUT: Duration = Duration::from_secs(2);

/// How `kill` ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct KillReport {
    /// True when the plugin exited on its own after `Shutdown`; false when it was SIGKILLed, had
    /// already exited, or (reattached) was left running.
    pub graceful: bool,
    /// The exit status, when the process was reaped.
    pub status: Option<ExitStatus>,
}

impl Plugin {
    /// Stops the plugin (go-plugin's `Kill`): asks it to shut down (`GRPCController/Shutdown`)
    /// and gives it [`GRACEFUL_EXIT_TIMEOUT`] (2 s, from the call) to exit, else SIGKILLs it
    /// with everything else in its process group; then waits for its remaining output and
    /// removes a socket file it left behind. Safe to call several times; later calls return the
    /// first result.
    ///
    /// A reattached plugin is asked to shut down the same way but never signalled: it is not
    /// this host's child (and its pid may by now be another process's). One in test mode
    /// (`Test: true`) is left alone entirely, as go-plugin does.
    pub async fn kill(&self) -> KillReport {
        let mut killed = self.killed.lock().await;
        if let Some(report) = *killed {
            return report;
        }
        if self.reattached.as_ref().is_some_and(|r| r.test) {
            // A plugin in test mode ends on its own; the host never stops it (go-plugin).
            let report = KillReport {
                graceful: false,
                status: None,
            };
            *killed = Some(report);
            return report;
        }
        let mut graceful = false;
        if !self.exited() {
            let deadline = tokio::time::Instant::now() + GRACEFUL_EXIT_TIMEOUT;
            // The plugin may stop serving before answering (Go plugins do): the result is
            // irrelevant, only the exit counts.
            match &self.wire {
                Wire::Grpc { channel, broker } => {
                    // As go-plugin: close the broker first, then ask for shutdown.
                    broker.close();
                    let mut controller = GrpcControllerClient::new(channel.clone());
                    let _ = tokio::time::timeout_at(deadline, controller.shutdown(Empty {})).await;
                }
                Wire::NetRpc(netrpc) => {
                    // As go-plugin's `RPCClient.Close`: `Control.Quit`, then close the
                    // connection (a plugwire plugin waits for that to end its session).
                    let _ = tokio::time::timeout_at(deadline, netrpc.quit()).await;
                    netrpc.close();
                }
            }
            graceful = self.exited_by(deadline).await;
            match (graceful, self.process.launched()) {
                (true, _) => {}
                (false, true) => {
                    tracing::warn!(plugin = %self.name, "plugin failed to exit gracefully");
                    self.process.kill().await;
                }
                (false, false) => tracing::warn!(
                    plugin = %self.name,
                    "the reattached plugin did not exit after Shutdown; this host did not start \
                     it, so it is left running"
                ),
            }
        }
        self.wire.close();
        // The forwarded output ends with the connection: take all of it.
        if !drain(&mut *self.stdio_done.lock().await, STDERR_DRAIN_TIMEOUT).await {
            tracing::warn!(plugin = %self.name, "the plugin's forwarded output did not end: stopped reading");
        }
        let report = finish(
            &self.name,
            &self.process,
            &mut *self.stderr_done.lock().await,
            &self.background,
        )
        .await;
        let report = KillReport { graceful, ..report };
        *killed = Some(report);
        report
    }

    /// Whether the process has exited by `deadline`. A reattached plugin without a pid has
    /// exited once it no longer answers.
    async fn exited_by(&self, deadline: tokio::time::Instant) -> bool {
        if self.process.launched() || self.process.pid().is_some() {
            self.process.wait_until(deadline).await;
            return self.exited();
        }
        loop {
            if self.wire.gone().await {
                self.process.mark_exited();
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Whether the plugin behind `channel` is gone: a health check cannot reach it.
pub(crate) async fn gone(channel: &Channel) -> bool {
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    let check = health.check(tonic_health::pb::HealthCheckRequest {
        service: "plugin".into(),
    });
    match tokio::time::timeout(Duration::from_secs(1), check).await {
        Ok(Err(status)) => status.code() == tonic::Code::Unavailable,
        Ok(Ok(_)) | Err(_) => false,
    }
}

pub(crate) async fn finish(
    name: &str,
    process: &Process,
    stderr_task: &mut Option<JoinHandle<()>>,
    background: &[JoinHandle<()>],
) -> KillReport {
    // A process this host did not start is not waited for: it may well keep running.
    let status = if process.launched() {
        process.wait_timeout(process::REAP_TIMEOUT).await
    } else {
        None
    };
    for task in background {
        task.abort();
    }
    if !drain(stderr_task, STDERR_DRAIN_TIMEOUT).await {
        tracing::warn!(plugin = %name, "plugin stderr still open after exit (a child process holds it?): stopped reading");
    }
    match status {
        _ if !process.launched() => {
            if process.exited().is_cancelled() {
                tracing::debug!(plugin = %name, pid = ?process.pid(), "plugin exited");
            }
        }
        Some(status) if status.success() => {
            tracing::info!(plugin = %name, pid = ?process.pid(), "plugin process exited")
        }
        status => tracing::error!(
            plugin = %name,
            pid = ?process.pid(),
            status = %process::describe(status),
            "plugin process exited"
        ),
    }
    KillReport {
        graceful: false,
        status,
    }
}

/// Waits up to `timeout` for a reader task to reach the end of its input; true when it did (or
/// was done already). A reader still running afterwards is stopped.
pub(crate) async fn drain(task: &mut Option<JoinHandle<()>>, timeout: Duration) -> bool {
    let Some(handle) = task.as_mut() else {
        return true;
    };
    let done = tokio::time::timeout(timeout, &mut *handle).await.is_ok();
    if !done {
        handle.abort();
    }
    *task = None;
    done
}

//! Signals, as a Go plugin treats them.

use std::io::{self, Write as _};

use tokio_util::sync::CancellationToken;

/// Ignores SIGINT like a Go plugin (`ignore_interrupt`; in debug mode SIGINT stops the plugin);
/// SIGTERM shuts down cleanly (the socket file is removed).
pub(crate) fn spawn_signal_handlers(shutdown: CancellationToken, ignore_interrupt: bool) {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::interrupt()) {
        Ok(mut interrupts) => {
            let shutdown = shutdown.clone();
            tokio::spawn(async move {
                let mut count = 0u64;
                while interrupts.recv().await.is_some() {
                    if !ignore_interrupt {
                        shutdown.cancel();
                        return;
                    }
                    count += 1;
                    tracing::trace!(count, "plugin received interrupt signal, ignoring");
                }
            });
        }
        Err(e) => tracing::warn!(error = %e, "could not ignore SIGINT"),
    }
    match signal(SignalKind::terminate()) {
        Ok(mut terminate) => {
            tokio::spawn(async move {
                if terminate.recv().await.is_some() {
                    tracing::debug!("SIGTERM: shutting down");
                    let _ = io::stdout().flush();
                    shutdown.cancel();
                }
            });
        }
        Err(e) => tracing::warn!(error = %e, "could not handle SIGTERM"),
    }
}

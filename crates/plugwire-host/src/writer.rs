//! Writing to the application's sinks (`std::io::Write`, which may block) from a thread of
//! their own, never from the runtime.

use std::io::Write;

use tokio::sync::{mpsc, oneshot};

/// A destination for a plugin's output. Written from a dedicated thread, so it may block.
pub type Sink = Box<dyn Write + Send>;

/// A thread writing chunks to sinks, fed through a bounded channel: a slow sink slows the
/// reader (and so the plugin) instead of memory growing.
pub(crate) struct SinkWriter {
    tx: mpsc::Sender<(usize, Vec<u8>)>,
    done: oneshot::Receiver<()>,
}

impl SinkWriter {
    /// Starts the thread for `sinks` (addressed by index); `None` when there is no sink at all
    /// or no thread could be started (then nothing is copied, and that is logged).
    pub(crate) fn start(thread: &str, plugin: &str, mut sinks: Vec<Option<Sink>>) -> Option<Self> {
        if sinks.iter().all(Option::is_none) {
            return None;
        }
        let (tx, mut rx) = mpsc::channel::<(usize, Vec<u8>)>(16);
        let (done_tx, done) = oneshot::channel();
        let plugin_name = plugin.to_owned();
        let spawned = std::thread::Builder::new()
            .name(thread.into())
            .spawn(move || {
                while let Some((index, data)) = rx.blocking_recv() {
                    let Some(slot) = sinks.get_mut(index) else {
                        continue;
                    };
                    if let Some(sink) = slot
                        && let Err(e) = sink.write_all(&data)
                    {
                        tracing::error!(plugin = %plugin_name, error = %e, "failed to copy all bytes: the sink is no longer written to");
                        *slot = None;
                    }
                }
                for sink in sinks.iter_mut().flatten() {
                    let _ = sink.flush();
                }
                let _ = done_tx.send(());
            });
        match spawned {
            Ok(_) => Some(SinkWriter { tx, done }),
            Err(e) => {
                tracing::error!(plugin = %plugin, error = %e, "could not start a writer thread: the plugin's output is not copied");
                None
            }
        }
    }

    /// Queues `data` for sink `index`, waiting while the thread is behind.
    pub(crate) async fn write(&self, index: usize, data: Vec<u8>) {
        let _ = self.tx.send((index, data)).await;
    }

    /// Waits until everything queued is written and the sinks are flushed.
    pub(crate) async fn finish(self) {
        drop(self.tx);
        let _ = self.done.await;
    }
}

//! The plugin's forwarded stdout and stderr (`plugin.GRPCStdio`), written to the host's sinks
//! (go-plugin's `SyncStdout`/`SyncStderr`; discarded when none is set).

use std::io::Write;

use plugwire_protocol::pb::grpc_stdio_client::GrpcStdioClient;
use plugwire_protocol::pb::stdio_data::Channel as StdioChannel;
use plugwire_protocol::transport::MAX_MESSAGE_SIZE;
use tokio::sync::mpsc;
use tonic::transport::Channel;

/// A destination for forwarded output. Written from a dedicated thread, so it may block.
pub type Sink = Box<dyn Write + Send>;

/// Where forwarded output goes.
#[derive(Default)]
pub(crate) struct Sinks {
    pub(crate) stdout: Option<Sink>,
    pub(crate) stderr: Option<Sink>,
}

/// Opens `StreamStdio` (as a Go host does right after connecting) and drains it until it ends,
/// so the plugin never blocks on a full pipe. `closing` silences the error of a stream that
/// fails because the plugin is being stopped.
pub(crate) async fn run(channel: Channel, name: String, sinks: Sinks, closing: impl Fn() -> bool) {
    let mut client = GrpcStdioClient::new(channel).max_decoding_message_size(MAX_MESSAGE_SIZE);
    let mut stream = match client.stream_stdio(()).await {
        Ok(response) => response.into_inner(),
        Err(_) if closing() => return,
        Err(status) => {
            tracing::warn!(plugin = %name, %status, "stdio service not available, stdout/stderr syncing unavailable");
            return;
        }
    };
    let writer = Writer::start(sinks, &name);
    loop {
        match stream.message().await {
            Ok(Some(data)) => match StdioChannel::try_from(data.channel) {
                Ok(channel @ (StdioChannel::Stdout | StdioChannel::Stderr)) => {
                    if let Some(writer) = &writer {
                        writer.write(channel, data.data).await;
                    }
                }
                _ => {
                    tracing::warn!(plugin = %name, channel = data.channel, "unknown channel, dropping");
                }
            },
            Ok(None) => break,
            Err(status) => {
                tracing::debug!(plugin = %name, %status, "stdio stream ended");
                break;
            }
        }
    }
    if let Some(writer) = writer {
        writer.finish().await;
    }
}

/// A thread writing chunks to the sinks, fed through a bounded channel (backpressure reaches the
/// plugin instead of memory growing).
struct Writer {
    tx: mpsc::Sender<(StdioChannel, Vec<u8>)>,
    thread: std::thread::JoinHandle<()>,
}

impl Writer {
    fn start(mut sinks: Sinks, name: &str) -> Option<Writer> {
        if sinks.stdout.is_none() && sinks.stderr.is_none() {
            return None;
        }
        let (tx, mut rx) = mpsc::channel::<(StdioChannel, Vec<u8>)>(16);
        let plugin = name.to_owned();
        let thread = std::thread::Builder::new()
            .name("plugwire-stdio".into())
            .spawn(move || {
                while let Some((channel, data)) = rx.blocking_recv() {
                    let sink = match channel {
                        StdioChannel::Stderr => sinks.stderr.as_mut(),
                        _ => sinks.stdout.as_mut(),
                    };
                    if let Some(sink) = sink
                        && let Err(e) = sink.write_all(&data)
                    {
                        tracing::error!(plugin = %plugin, error = %e, "failed to copy all bytes");
                    }
                }
                for sink in [sinks.stdout.as_mut(), sinks.stderr.as_mut()]
                    .into_iter()
                    .flatten()
                {
                    let _ = sink.flush();
                }
            })
            .ok()?;
        Some(Writer { tx, thread })
    }

    async fn write(&self, channel: StdioChannel, data: Vec<u8>) {
        let _ = self.tx.send((channel, data)).await;
    }

    async fn finish(self) {
        drop(self.tx);
        let _ = tokio::task::spawn_blocking(move || self.thread.join()).await;
    }
}

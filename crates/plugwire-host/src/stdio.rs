//! The plugin's forwarded stdout and stderr (`plugin.GRPCStdio`), written to the host's sinks
//! (go-plugin's `SyncStdout`/`SyncStderr`; discarded when none is set).

use plugwire_runtime::grpc::MAX_MESSAGE_SIZE;
use plugwire_runtime::pb::grpc_stdio_client::GrpcStdioClient;
use plugwire_runtime::pb::stdio_data::Channel as StdioChannel;
use tonic::transport::Channel;

use crate::writer::{Sink, SinkWriter};

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
    let writer = SinkWriter::start("plugwire-stdio", &name, vec![sinks.stdout, sinks.stderr]);
    loop {
        match stream.message().await {
            Ok(Some(data)) => match StdioChannel::try_from(data.channel) {
                Ok(channel @ (StdioChannel::Stdout | StdioChannel::Stderr)) => {
                    if let Some(writer) = &writer {
                        let index = usize::from(channel == StdioChannel::Stderr);
                        writer.write(index, data.data).await;
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

//! A drop-in replacement for go-plugin's `examples/streaming` host: `streamer-host FILE` runs
//! `./plugin/streamer` (the example's plugin path, relative to the working directory; no
//! override, as in Go), has it write `Lorem ipsum dolor sit amet` to `FILE` in 10-byte chunks and
//! streams it back, with gRPC messages limited to 1000 bytes each way. As the Go host's logger,
//! it logs hclog JSON lines on stderr from trace level up; the last says what it read back:
//! `{"@message":"received 26 bytes","bytes":"Lorem ipsum dolor sit amet",...}`.

use std::process::ExitCode;

use plugwire_examples::pb::streamer::streamer_service_client::StreamerServiceClient;
use plugwire_examples::pb::streamer::{configure, read, write};
use plugwire_host::{Channel, Plugin, PluginConfig};

/// The Go host's `msgSizeLimit`, for calls either way.
const MESSAGE_SIZE_LIMIT: usize = 1000;

/// The Go host's `chunkSize`.
const CHUNK_SIZE: usize = 10;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [path] = args.as_slice() else {
        return fatal("expected path to file as an argument");
    };
    plugwire_examples::init_hclog_logging();
    match run(path).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fatal(&format!("{e:#}")),
    }
}

/// The Go host's `log.Fatal`: the message on stderr, exit status 1.
fn fatal(message: &str) -> ExitCode {
    eprintln!("{message}");
    ExitCode::FAILURE
}

async fn run(path: &str) -> anyhow::Result<()> {
    // gRPC only, as the Go host's `AllowedProtocols`.
    let config = PluginConfig::builder(
        plugwire_examples::cookie(),
        std::process::Command::new("./plugin/streamer"),
    )
    .plugins(1, ["streamer"])
    .build();
    tracing::debug!("launching a client");
    let plugin = Plugin::launch(config).await?;
    let result = stream(&plugin, path).await;
    plugin.kill().await;
    result
}

async fn stream(plugin: &Plugin, path: &str) -> anyhow::Result<()> {
    let mut streamer = plugin
        .dispense("streamer", StreamerServiceClient::new)?
        .max_decoding_message_size(MESSAGE_SIZE_LIMIT)
        .max_encoding_message_size(MESSAGE_SIZE_LIMIT);
    streamer
        .configure(configure::Request {
            path: path.to_owned(),
            chunk_size: CHUNK_SIZE as i64,
        })
        .await?;
    write_chunks(&mut streamer, b"Lorem ipsum dolor sit amet").await?;
    tracing::debug!("writing finished");
    let mut chunks = streamer.read(read::Request {}).await?.into_inner();
    let mut received = Vec::new();
    while let Some(chunk) = chunks.message().await? {
        received.extend_from_slice(&chunk.read_bytes);
    }
    tracing::debug!(
        bytes = %String::from_utf8_lossy(&received),
        "received {} bytes",
        received.len()
    );
    Ok(())
}

/// `StreamerGRPCClient.Write`: `data` in chunks of the configured size, one message each.
async fn write_chunks(
    streamer: &mut StreamerServiceClient<Channel>,
    data: &[u8],
) -> anyhow::Result<()> {
    let chunks: Vec<write::RequestChunk> = data
        .chunks(CHUNK_SIZE)
        .map(|chunk| write::RequestChunk {
            bytes_to_write: chunk.to_vec(),
        })
        .collect();
    match streamer.write(tokio_stream::iter(chunks)).await {
        Ok(_) => Ok(()),
        // go-plugin's example plugin ends the call without a reply (its `Write` returns nil
        // without `SendAndClose`): grpc-go's `CloseAndRecv` says io.EOF, which the Go host
        // accepts; tonic says this.
        Err(status)
            if status.code() == tonic::Code::Internal
                && status.message() == "Missing response message." =>
        {
            Ok(())
        }
        Err(status) => Err(status.into()),
    }
}

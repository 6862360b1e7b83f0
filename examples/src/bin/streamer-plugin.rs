//! A drop-in replacement for go-plugin's `examples/streaming/plugin` (`./plugin/streamer`): the
//! gRPC plugin `streamer`, which writes the chunks a host streams to the file it was configured
//! with, and streams the file back in chunks of the configured size. It logs at debug level as
//! the Go plugin's hclog logger does.

use std::process::ExitCode;
use std::sync::{Mutex, PoisonError};

use plugwire_examples::pb::streamer::streamer_service_server::{
    StreamerService, StreamerServiceServer,
};
use plugwire_examples::pb::streamer::{configure, read, write};
use plugwire_plugin::{PluginSet, ServeConfig, serve};
use tonic::{Request, Response, Status, Streaming};

/// go-plugin's `StreamerGRPCServer` around `FileStreamer`: the file and the chunk size from the
/// last `Configure`.
#[derive(Default)]
struct FileStreamer {
    state: Mutex<(String, i64)>,
}

impl FileStreamer {
    fn state(&self) -> (String, i64) {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

#[tonic::async_trait]
impl StreamerService for FileStreamer {
    async fn configure(
        &self,
        request: Request<configure::Request>,
    ) -> Result<Response<configure::Response>, Status> {
        let configure::Request { path, chunk_size } = request.into_inner();
        *self.state.lock().unwrap_or_else(PoisonError::into_inner) = (path, chunk_size);
        Ok(Response::new(configure::Response {}))
    }

    type ReadStream = tokio_stream::Iter<std::vec::IntoIter<Result<read::ResponseChunk, Status>>>;

    async fn read(&self, _: Request<read::Request>) -> Result<Response<Self::ReadStream>, Status> {
        let (path, chunk_size) = self.state();
        tracing::debug!(path = %path, "FileStreamer: Read");
        let content = plugwire_examples::read_file(&path)
            .await
            .map_err(Status::unknown)?;
        // Go's `buf.Next(chunkSize)` loop sends nothing for a chunk size of 0.
        let chunks = match usize::try_from(chunk_size) {
            Ok(size) if size > 0 => content
                .chunks(size)
                .map(|chunk| {
                    Ok(read::ResponseChunk {
                        read_bytes: chunk.to_vec(),
                    })
                })
                .collect(),
            _ => Vec::new(),
        };
        Ok(Response::new(tokio_stream::iter(chunks)))
    }

    async fn write(
        &self,
        request: Request<Streaming<write::RequestChunk>>,
    ) -> Result<Response<write::Response>, Status> {
        let mut chunks = request.into_inner();
        let mut content = Vec::new();
        while let Some(chunk) = chunks.message().await? {
            content.extend_from_slice(&chunk.bytes_to_write);
        }
        let (path, _) = self.state();
        tracing::debug!(path = %path, "FileStreamer: Write");
        plugwire_examples::write_file(&path, &content)
            .await
            .map_err(Status::unknown)?;
        tracing::debug!(
            "bytes written" = content.len(),
            "FileStreamer: Write finished"
        );
        Ok(Response::new(write::Response {}))
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    // hclog JSON on stderr from here on, so the first line reaches the host as the Go plugin's.
    let _ = plugwire_plugin::log::init();
    tracing::debug!("plugin launched, about to be served");
    let config = ServeConfig::builder(plugwire_examples::cookie())
        .plugins(
            1,
            PluginSet::new().add(
                "streamer",
                StreamerServiceServer::new(FileStreamer::default()),
            ),
        )
        .reflection_descriptors(plugwire_examples::pb::streamer::FILE_DESCRIPTOR_SET)
        .build();
    match serve(config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("streamer-plugin: {e}");
            ExitCode::FAILURE
        }
    }
}

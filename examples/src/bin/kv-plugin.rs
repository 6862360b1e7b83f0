//! A drop-in replacement for go-plugin's `examples/grpc/plugin-go-grpc`: a KV store that keeps
//! each value in the file `kv_<key>` in its working directory.

use std::process::ExitCode;

use plugwire_examples::pb::kv::kv_server::{Kv, KvServer};
use plugwire_examples::pb::kv::{Empty, GetRequest, GetResponse, PutRequest};
use plugwire_plugin::{PluginSet, ServeConfig, serve};
use tonic::{Request, Response, Status};

struct FileKv;

#[tonic::async_trait]
impl Kv for FileKv {
    async fn get(&self, request: Request<GetRequest>) -> Result<Response<GetResponse>, Status> {
        let key = request.into_inner().key;
        let value = tokio::fs::read(format!("kv_{key}"))
            .await
            .map_err(|e| Status::unknown(format!("open kv_{key}: {e}")))?;
        Ok(Response::new(GetResponse {
            value: value.into(),
        }))
    }

    async fn put(&self, request: Request<PutRequest>) -> Result<Response<Empty>, Status> {
        let PutRequest { key, value } = request.into_inner();
        let mut value = Vec::from(value);
        value.extend_from_slice(b"\n\nWritten from plugwire kv-plugin");
        tokio::fs::write(format!("kv_{key}"), value)
            .await
            .map_err(|e| Status::unknown(format!("write kv_{key}: {e}")))?;
        Ok(Response::new(Empty {}))
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let config = ServeConfig::builder(plugwire_examples::cookie())
        .plugins(1, PluginSet::new().add("kv_grpc", KvServer::new(FileKv)))
        .reflection_descriptors(plugwire_examples::pb::kv::FILE_DESCRIPTOR_SET)
        .build();
    match serve(config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kv-plugin: {e}");
            ExitCode::FAILURE
        }
    }
}

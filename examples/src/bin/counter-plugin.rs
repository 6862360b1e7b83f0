//! A drop-in replacement for go-plugin's `examples/bidirectional/plugin-go-grpc`: a counter
//! that keeps each count in the file `kv_<key>` as JSON `{"Value":N}` and adds through the
//! host's `AddHelper`, dialled through the broker.

use std::process::ExitCode;

use plugwire_examples::pb::counter::add_helper_client::AddHelperClient;
use plugwire_examples::pb::counter::counter_server::{Counter, CounterServer};
use plugwire_examples::pb::counter::{Empty, GetRequest, GetResponse, PutRequest, SumRequest};
use plugwire_plugin::{Broker, PluginSet, ServeConfig, serve};
use tonic::{Request, Response, Status};

/// The file format go-plugin's example uses.
#[derive(serde::Serialize, serde::Deserialize)]
struct Data {
    #[serde(rename = "Value")]
    value: i64,
}

struct FileCounter {
    broker: Broker,
}

async fn read(key: &str) -> Result<i64, Status> {
    let raw = tokio::fs::read(format!("kv_{key}"))
        .await
        .map_err(|e| Status::unknown(format!("open kv_{key}: {e}")))?;
    let data: Data =
        serde_json::from_slice(&raw).map_err(|e| Status::unknown(format!("kv_{key}: {e}")))?;
    Ok(data.value)
}

#[tonic::async_trait]
impl Counter for FileCounter {
    async fn get(&self, request: Request<GetRequest>) -> Result<Response<GetResponse>, Status> {
        let value = read(&request.into_inner().key).await?;
        Ok(Response::new(GetResponse { value }))
    }

    async fn put(&self, request: Request<PutRequest>) -> Result<Response<Empty>, Status> {
        let PutRequest {
            add_server,
            key,
            value,
        } = request.into_inner();
        let channel = self
            .broker
            .dial(add_server)
            .await
            .map_err(|e| Status::unavailable(plugwire_examples::error_text(&e)))?;
        // As the Go plugin: a missing or unreadable count starts from 0.
        let current = read(&key).await.unwrap_or(0);
        let sum = AddHelperClient::new(channel)
            .sum(SumRequest {
                a: current,
                b: value,
            })
            .await?
            .into_inner()
            .r;
        let json = serde_json::to_vec(&Data { value: sum })
            .map_err(|e| Status::internal(e.to_string()))?;
        tokio::fs::write(format!("kv_{key}"), json)
            .await
            .map_err(|e| Status::unknown(format!("write kv_{key}: {e}")))?;
        Ok(Response::new(Empty {}))
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let set = PluginSet::new().add_with("counter", |broker| {
        CounterServer::new(FileCounter {
            broker: broker.clone(),
        })
    });
    let config = ServeConfig::builder(plugwire_examples::cookie())
        .plugins(1, set)
        .reflection_descriptors(plugwire_examples::pb::counter::FILE_DESCRIPTOR_SET)
        .build();
    match serve(config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("counter-plugin: {e}");
            ExitCode::FAILURE
        }
    }
}

//! go-plugin's own gRPC services, as a host calls them: the messages of
//! `plugin.GRPCController`, `plugin.GRPCStdio` and `plugin.GRPCBroker` (package `plugin`, the
//! field numbers of go-plugin's protos), the health check, and the list of what go-plugin
//! registers itself.

use std::time::Duration;

use futures_util::Stream;
use http::uri::PathAndQuery;
use tonic::client::Grpc;
use tonic::transport::Channel;
use tonic::{Request, Status, Streaming};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

/// The services go-plugin registers next to the application's (§5.1 of the protocol notes).
pub(crate) const GO_PLUGIN_SERVICES: &[&str] = &[
    "grpc.health.v1.Health",
    "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
    "plugin.GRPCBroker",
    "plugin.GRPCController",
    "plugin.GRPCStdio",
];

/// Whether go-plugin itself registers this service.
pub(crate) fn is_go_plugin_service(name: &str) -> bool {
    GO_PLUGIN_SERVICES.contains(&name)
}

/// `plugin.Empty` and `google.protobuf.Empty`: no fields.
#[derive(Clone, Copy, PartialEq, Eq, prost::Message)]
pub(crate) struct Empty {}

/// `plugin.ConnInfo`.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub(crate) struct ConnInfo {
    #[prost(uint32, tag = "1")]
    pub(crate) service_id: u32,
    #[prost(string, tag = "2")]
    pub(crate) network: String,
    #[prost(string, tag = "3")]
    pub(crate) address: String,
    #[prost(message, optional, tag = "4")]
    pub(crate) knock: Option<Knock>,
}

/// `plugin.ConnInfo.Knock`.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub(crate) struct Knock {
    #[prost(bool, tag = "1")]
    pub(crate) knock: bool,
    #[prost(bool, tag = "2")]
    pub(crate) ack: bool,
    #[prost(string, tag = "3")]
    pub(crate) error: String,
}

/// `plugin.StdioData`.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub(crate) struct StdioData {
    /// 1 stdout, 2 stderr.
    #[prost(int32, tag = "1")]
    pub(crate) channel: i32,
    #[prost(bytes = "vec", tag = "2")]
    pub(crate) data: Vec<u8>,
}

fn grpc(channel: Channel) -> Grpc<Channel> {
    Grpc::new(channel).max_decoding_message_size(crate::dyncall::MAX_MESSAGE_SIZE)
}

async fn ready(grpc: &mut Grpc<Channel>) -> Result<(), Status> {
    grpc.ready()
        .await
        .map_err(|e| Status::unavailable(format!("the connection to the plugin failed: {e}")))
}

/// `plugin.GRPCController/Shutdown`.
pub(crate) async fn shutdown(channel: Channel) -> Result<(), Status> {
    let mut grpc = grpc(channel);
    ready(&mut grpc).await?;
    let codec = tonic_prost::ProstCodec::<Empty, Empty>::default();
    grpc.unary(
        Request::new(Empty {}),
        PathAndQuery::from_static("/plugin.GRPCController/Shutdown"),
        codec,
    )
    .await
    .map(|_| ())
}

/// `plugin.GRPCStdio/StreamStdio` (waits for the response headers).
pub(crate) async fn stream_stdio(channel: Channel) -> Result<Streaming<StdioData>, Status> {
    let mut grpc = grpc(channel);
    ready(&mut grpc).await?;
    let codec = tonic_prost::ProstCodec::<Empty, StdioData>::default();
    grpc.server_streaming(
        Request::new(Empty {}),
        PathAndQuery::from_static("/plugin.GRPCStdio/StreamStdio"),
        codec,
    )
    .await
    .map(tonic::Response::into_inner)
}

/// `plugin.GRPCBroker/StartStream`, sending what `outbound` yields (waits for the response
/// headers).
pub(crate) async fn start_stream(
    channel: Channel,
    outbound: impl Stream<Item = ConnInfo> + Send + 'static,
) -> Result<Streaming<ConnInfo>, Status> {
    let mut grpc = grpc(channel);
    ready(&mut grpc).await?;
    let codec = tonic_prost::ProstCodec::<ConnInfo, ConnInfo>::default();
    grpc.streaming(
        Request::new(outbound),
        PathAndQuery::from_static("/plugin.GRPCBroker/StartStream"),
        codec,
    )
    .await
    .map(tonic::Response::into_inner)
}

/// The health status of service `service` (`plugin` is go-plugin's).
pub(crate) async fn health(
    channel: Channel,
    service: &str,
    timeout: Duration,
) -> Result<ServingStatus, Status> {
    let mut client = HealthClient::new(channel);
    let check = client.check(HealthCheckRequest {
        service: service.to_owned(),
    });
    match tokio::time::timeout(timeout, check).await {
        Ok(Ok(reply)) => Ok(
            ServingStatus::try_from(reply.into_inner().status).unwrap_or(ServingStatus::Unknown)
        ),
        Ok(Err(status)) => Err(status),
        Err(_) => Err(Status::deadline_exceeded(format!(
            "no health answer within {}",
            humantime::format_duration(timeout)
        ))),
    }
}

/// The status as grpc-go names it (`SERVING`, ...).
pub(crate) fn serving_status_name(status: ServingStatus) -> &'static str {
    match status {
        ServingStatus::Unknown => "UNKNOWN",
        ServingStatus::Serving => "SERVING",
        ServingStatus::NotServing => "NOT_SERVING",
        ServingStatus::ServiceUnknown => "SERVICE_UNKNOWN",
    }
}

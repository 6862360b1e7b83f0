//! The gRPC plumbing over [`BoxedIo`] connections: tonic channels whose connections come from a
//! function (a unix socket, a TLS session, a multiplexed stream), and tonic servers, both with
//! plugwire's HTTP/2 settings and the application's own ([`EndpointHook`], [`ServerHook`]).

use std::future::Future;
use std::io;
use std::sync::Arc;

use hyper_util::rt::TokioIo;
use tonic::transport::{Channel, Endpoint, Server, Uri};

use crate::transport::BoxedIo;

/// gRPC message size limit go-plugin's host uses in both directions (`math.MaxInt32`).
pub const MAX_MESSAGE_SIZE: usize = i32::MAX as usize;

/// HTTP/2 flow-control windows of every plugwire connection, both directions: the 64 KiB
/// protocol default makes a 1 MiB message wait for a dozen window updates.
pub const STREAM_WINDOW: u32 = 4 << 20;
/// See [`STREAM_WINDOW`].
pub const CONNECTION_WINDOW: u32 = 8 << 20;
/// The largest HTTP/2 frame plugwire accepts (advertised in SETTINGS_MAX_FRAME_SIZE).
pub const MAX_FRAME_SIZE: u32 = 1 << 20;

/// Changes the tonic `Endpoint` every channel to a plugin is made from (go-plugin's
/// `GRPCDialOptions`): timeouts, keepalive, concurrency and rate limits, window sizes, ...
pub type EndpointHook = Arc<dyn Fn(Endpoint) -> Endpoint + Send + Sync>;

/// Changes the tonic `Server` a plugin (or a brokered service) is served with (go-plugin's
/// `GRPCServer` factory): limits, keepalive, timeouts, HTTP/2 settings, ...
pub type ServerHook = Arc<dyn Fn(Server) -> Server + Send + Sync>;

/// The endpoint every plugwire channel starts from: `:authority` `localhost` (never a socket
/// path) and plugwire's windows and frame size; then `hook`, when given.
pub fn endpoint(hook: Option<&EndpointHook>) -> Endpoint {
    let endpoint = Endpoint::from_static("http://localhost")
        .initial_stream_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .max_frame_size(MAX_FRAME_SIZE);
    match hook {
        Some(hook) => hook(endpoint),
        None => endpoint,
    }
}

/// A tonic server with plugwire's HTTP/2 settings (see [`STREAM_WINDOW`]), then `hook`.
pub fn server(hook: Option<&ServerHook>) -> Server {
    let server = Server::builder()
        .initial_stream_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .max_frame_size(MAX_FRAME_SIZE);
    match hook {
        Some(hook) => hook(server),
        None => server,
    }
}

/// Builds a gRPC channel from `endpoint` whose connections come from `connect` (called again if
/// the channel reconnects). Connects eagerly, so an unreachable plugin is an error here, not on
/// first call.
pub async fn channel<F, Fut>(
    endpoint: Endpoint,
    connect: F,
) -> Result<Channel, tonic::transport::Error>
where
    F: Fn() -> Fut + Send + Sync + Clone + 'static,
    Fut: Future<Output = io::Result<BoxedIo>> + Send + 'static,
{
    endpoint.connect_with_connector(connector(connect)).await
}

/// Like [`channel`], connecting on first use instead.
pub fn lazy_channel<F, Fut>(endpoint: Endpoint, connect: F) -> Channel
where
    F: Fn() -> Fut + Send + Sync + Clone + 'static,
    Fut: Future<Output = io::Result<BoxedIo>> + Send + 'static,
{
    endpoint.connect_with_connector_lazy(connector(connect))
}

fn connector<F, Fut>(
    connect: F,
) -> impl tower::Service<
    Uri,
    Response = TokioIo<BoxedIo>,
    Error = io::Error,
    Future = impl Future<Output = io::Result<TokioIo<BoxedIo>>> + Send,
> + Send
+ Clone
+ 'static
where
    F: Fn() -> Fut + Send + Sync + Clone + 'static,
    Fut: Future<Output = io::Result<BoxedIo>> + Send + 'static,
{
    tower::service_fn(move |_: Uri| {
        let connect = connect.clone();
        async move { connect().await.map(TokioIo::new) }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::{self, Listener};

    /// The channel's HTTP/2 `:authority` is `localhost`, never the socket path (grpc-go and other
    /// servers may validate it).
    #[tokio::test]
    async fn channel_authority_is_not_the_socket_path() {
        let dir = tempfile::tempdir().expect("tempdir");
        let listener = Listener::unix(dir.path(), None).expect("listen");
        let address = listener.address().clone();
        let seen = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
        let record = seen.clone();
        let (tx, incoming) = transport::incoming();
        let accept = transport::spawn_accept_loop(listener, None, tx);
        let (_, health) = tonic_health::server::health_reporter();
        let server = tokio::spawn(
            Server::builder()
                .trace_fn(move |req| {
                    if let Ok(mut seen) = record.lock() {
                        seen.push(
                            req.uri()
                                .authority()
                                .map(ToString::to_string)
                                .unwrap_or_default(),
                        );
                    }
                    tracing::Span::none()
                })
                .add_service(health)
                .serve_with_incoming(incoming),
        );
        let dial = address.clone();
        let channel = channel(endpoint(None), move || {
            let dial = dial.clone();
            async move { transport::dial(&dial).await }
        })
        .await
        .expect("connect");
        tonic_health::pb::health_client::HealthClient::new(channel)
            .check(tonic_health::pb::HealthCheckRequest::default())
            .await
            .expect("health check");
        let seen = seen.lock().expect("lock").clone();
        assert_eq!(seen, vec!["localhost".to_owned()]);
        server.abort();
        accept.abort();
    }
}

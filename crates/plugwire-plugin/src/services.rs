//! The go-plugin services every plugin serves besides the app's: controller, stdio, broker.

use std::pin::Pin;

use futures_util::Stream;
use plugwire_runtime::broker::BrokerLink;
use plugwire_runtime::pb::grpc_broker_server::GrpcBroker;
use plugwire_runtime::pb::grpc_controller_server::GrpcController;
use plugwire_runtime::pb::grpc_stdio_server::GrpcStdio;
use plugwire_runtime::pb::{ConnInfo, Empty, StdioData};
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};

use crate::stdio::Output;

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

/// A stream that yields nothing and ends when `shutdown` fires (or the caller goes away).
fn hold_open<T: Send + 'static>(shutdown: CancellationToken) -> BoxStream<T> {
    Box::pin(
        futures_util::stream::once(async move {
            shutdown.cancelled_owned().await;
            None
        })
        .filter_map(futures_util::future::ready),
    )
}

use futures_util::StreamExt as _;

/// `plugin.GRPCController`: `Shutdown` stops the plugin and replies once the plugin's output
/// has reached the host (a Go host closes the connection as soon as it has the reply).
pub(crate) struct Controller {
    shutdown: CancellationToken,
    output: Option<Output>,
}

impl Controller {
    pub(crate) fn new(shutdown: CancellationToken, output: Option<Output>) -> Self {
        Controller { shutdown, output }
    }
}

#[tonic::async_trait]
impl GrpcController for Controller {
    async fn shutdown(&self, _: Request<Empty>) -> Result<Response<Empty>, Status> {
        tracing::debug!("shutdown requested by the host");
        let _ = std::io::Write::flush(&mut std::io::stdout());
        // Graceful shutdown lets this reply reach the host before the connection closes.
        self.shutdown.cancel();
        if let Some(output) = &self.output {
            output
                .wait_delivered(std::time::Duration::from_secs(1))
                .await;
        }
        Ok(Response::new(Empty {}))
    }
}

/// `plugin.GRPCStdio`: the plugin's captured stdout and stderr, or, when not captured, a stream
/// held open until the plugin shuts down.
pub(crate) struct Stdio {
    shutdown: CancellationToken,
    output: Option<Output>,
}

impl Stdio {
    pub(crate) fn new(shutdown: CancellationToken, output: Option<Output>) -> Self {
        Stdio { shutdown, output }
    }
}

#[tonic::async_trait]
impl GrpcStdio for Stdio {
    type StreamStdioStream = BoxStream<StdioData>;

    async fn stream_stdio(
        &self,
        _: Request<()>,
    ) -> Result<Response<Self::StreamStdioStream>, Status> {
        Ok(Response::new(match &self.output {
            Some(output) => Box::pin(crate::stdio::stream(output.clone()).map(Ok)),
            None => hold_open(self.shutdown.clone()),
        }))
    }
}

/// `plugin.GRPCBroker`: the host's control stream feeds the plugin's broker.
pub(crate) struct BrokerService {
    broker: BrokerLink,
}

impl BrokerService {
    pub(crate) fn new(broker: BrokerLink) -> Self {
        BrokerService { broker }
    }
}

#[tonic::async_trait]
impl GrpcBroker for BrokerService {
    type StartStreamStream = BoxStream<ConnInfo>;

    async fn start_stream(
        &self,
        request: Request<Streaming<ConnInfo>>,
    ) -> Result<Response<Self::StartStreamStream>, Status> {
        let mut inbound = request.into_inner();
        let broker = self.broker.clone();
        tokio::spawn(async move {
            while let Ok(Some(info)) = inbound.message().await {
                broker.handle_inbound(info);
            }
        });
        Ok(Response::new(Box::pin(self.broker.outbound().map(Ok))))
    }
}

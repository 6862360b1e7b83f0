//! What accepting a broker id gives: a stream of connections ([`BrokeredListener`]) and, served,
//! a running server ([`BrokeredServer`]).

use std::convert::Infallible;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::{FutureExt as _, Stream};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};
use tonic::service::Routes;

use super::Broker;
use crate::grpc;
use crate::transport::{BoxedIo, Incoming};

/// How long a stopped brokered server lets in-flight calls finish.
const STOP_GRACE: Duration = Duration::from_secs(1);

/// The connections the other side makes to one broker id (go-plugin's brokered
/// `net.Listener`), TLS already done when configured. Ends when the broker closes; dropping it
/// stops accepting (and, in plain mode, removes its socket).
pub struct BrokeredListener {
    id: u32,
    incoming: Incoming,
    accept_loop: Option<tokio::task::JoinHandle<()>>,
    closed: Pin<Box<WaitForCancellationFutureOwned>>,
    broker: Broker,
}

impl std::fmt::Debug for BrokeredListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BrokeredListener")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl BrokeredListener {
    pub(super) fn new(
        id: u32,
        incoming: Incoming,
        accept_loop: Option<tokio::task::JoinHandle<()>>,
        broker: Broker,
    ) -> Self {
        BrokeredListener {
            id,
            incoming,
            accept_loop,
            closed: Box::pin(broker.closed_token().cancelled_owned()),
            broker,
        }
    }

    /// The broker id it accepts for.
    pub fn id(&self) -> u32 {
        self.id
    }
}

impl Stream for BrokeredListener {
    type Item = io::Result<BoxedIo>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.closed.poll_unpin(cx).is_ready() {
            return Poll::Ready(None);
        }
        Pin::new(&mut self.incoming).poll_next(cx)
    }
}

impl Drop for BrokeredListener {
    fn drop(&mut self) {
        if let Some(accept_loop) = self.accept_loop.take() {
            accept_loop.abort();
        }
        self.broker.forget(self.id);
    }
}

/// A brokered server. Dropping it stops the server (in-flight calls get a moment to finish)
/// and closes its listener, so `let _ = broker.accept_and_serve(..)` stops it at once: keep the
/// handle, or call [`BrokeredServer::detach`] to keep it serving until the broker closes
/// (go-plugin's `go broker.AcceptAndServe(..)`).
#[derive(Debug)]
#[must_use = "dropping a BrokeredServer stops it: keep it, or call .detach()"]
pub struct BrokeredServer {
    id: u32,
    stop: CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl BrokeredServer {
    pub(super) fn start(listener: BrokeredListener, routes: Routes) -> Self {
        let id = listener.id;
        let stop = CancellationToken::new();
        let server = grpc::server(listener.broker.server_hook()).add_routes(routes);
        let closed = listener.broker.closed_token();
        let task = tokio::spawn(serve(server, listener, stop.clone(), closed));
        BrokeredServer {
            id,
            stop,
            task: Some(task),
        }
    }

    /// The broker id it serves.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// Keeps serving until the broker closes (go-plugin's `go AcceptAndServe(...)`).
    pub fn detach(mut self) {
        self.task = None;
    }

    /// Stops the server and waits until it has stopped.
    pub async fn stop(mut self) {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for BrokeredServer {
    fn drop(&mut self) {
        if self.task.is_some() {
            self.stop.cancel();
        }
    }
}

/// Serves until stopped or the broker closes, then gives in-flight calls [`STOP_GRACE`].
async fn serve(
    server: tonic::transport::server::Router,
    listener: BrokeredListener,
    stop: CancellationToken,
    closed: CancellationToken,
) {
    let stopping = {
        let (stop, closed) = (stop.clone(), closed.clone());
        async move {
            tokio::select! {
                () = stop.cancelled() => {}
                () = closed.cancelled() => {}
            }
        }
    };
    let serving = server.serve_with_incoming_shutdown(listener, stopping);
    let grace = async {
        tokio::select! {
            () = stop.cancelled() => {}
            () = closed.cancelled() => {}
        }
        tokio::time::sleep(STOP_GRACE).await;
    };
    tokio::select! {
        result = serving => {
            if let Err(e) = result {
                tracing::debug!(error = %e, "brokered server failed");
            }
        }
        () = grace => tracing::debug!("brokered calls still running after the stop grace period"),
    }
}

/// One tonic service, or tonic's `Routes` (several), as the routes a server serves.
pub(super) fn routes<S>(service: S) -> Routes
where
    S: tower::Service<
            http::Request<tonic::body::Body>,
            Response = http::Response<tonic::body::Body>,
            Error = Infallible,
        > + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
{
    let service =
        tower::ServiceExt::map_request(service, |req: http::Request<axum::body::Body>| {
            req.map(tonic::body::Body::new)
        });
    Routes::from(axum::Router::new().fallback_service(service))
}

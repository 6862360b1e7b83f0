//! A service built on its first call, to keep work off the start-up path.

use std::convert::Infallible;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use futures_util::future::BoxFuture;
use tonic::body::Body;
use tonic::server::NamedService;
use tower::ServiceExt as _;

/// Builds the inner service with `make` on the first request (a build failure answers every
/// call with `UNIMPLEMENTED` and its reason).
pub(crate) struct Lazy<S, F> {
    cell: Arc<OnceLock<Result<S, String>>>,
    make: Arc<F>,
}

impl<S, F> Lazy<S, F> {
    pub(crate) fn new(make: F) -> Self {
        Lazy {
            cell: Arc::new(OnceLock::new()),
            make: Arc::new(make),
        }
    }
}

impl<S, F> Clone for Lazy<S, F> {
    fn clone(&self) -> Self {
        Lazy {
            cell: self.cell.clone(),
            make: self.make.clone(),
        }
    }
}

impl<S: NamedService, F> NamedService for Lazy<S, F> {
    const NAME: &'static str = S::NAME;
}

impl<S, F> tower::Service<http::Request<Body>> for Lazy<S, F>
where
    S: tower::Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    F: Fn() -> Result<S, String> + Send + Sync + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<http::Response<Body>, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        match self.cell.get_or_init(|| (self.make)()) {
            Ok(service) => Box::pin(service.clone().oneshot(request)),
            Err(reason) => {
                let response = tonic::Status::unimplemented(reason.clone()).into_http();
                Box::pin(std::future::ready(Ok(response)))
            }
        }
    }
}

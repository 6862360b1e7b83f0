//! Calling methods with JSON requests and JSON replies, for every streaming kind.
//!
//! [`DynamicClient`] calls a [`MethodDescriptor`] found with
//! [`find_method`](super::lookup::find_method). Every message limit is go-plugin's
//! ([`MAX_MESSAGE_SIZE`]).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use futures_util::stream::{Stream, StreamExt};
use http::uri::PathAndQuery;
use prost_reflect::{DynamicMessage, MethodDescriptor, ReflectMessage as _};
use serde_json::Value;
use tokio::time::{Instant, Sleep};
use tonic::client::Grpc;
use tonic::metadata::MetadataMap;
use tonic::transport::Channel;
use tonic::{Request, Status, Streaming};

use super::codec::{DynamicCodec, Outgoing};
use super::json::{self, JsonOptions};
use super::lookup::LookupError;
use super::{MAX_MESSAGE_SIZE, StatusError};

/// Whether each side of a method sends one message or a stream of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum MethodKind {
    /// One request, one reply.
    Unary,
    /// One request, a stream of replies.
    ServerStreaming,
    /// A stream of requests, one reply.
    ClientStreaming,
    /// Streams both ways.
    BidiStreaming,
}

impl MethodKind {
    /// The kind of `method`.
    pub(crate) fn of(method: &MethodDescriptor) -> Self {
        match (method.is_client_streaming(), method.is_server_streaming()) {
            (false, false) => MethodKind::Unary,
            (false, true) => MethodKind::ServerStreaming,
            (true, false) => MethodKind::ClientStreaming,
            (true, true) => MethodKind::BidiStreaming,
        }
    }

    /// `unary`, `server-streaming`, `client-streaming` or `bidi-streaming`.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            MethodKind::Unary => "unary",
            MethodKind::ServerStreaming => "server-streaming",
            MethodKind::ClientStreaming => "client-streaming",
            MethodKind::BidiStreaming => "bidi-streaming",
        }
    }
}

impl fmt::Display for MethodKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What every call of a [`DynamicClient`] sends along.
#[derive(Debug, Clone, Default)]
pub(crate) struct CallOptions {
    /// The deadline of each call, whole streams included: sent as `grpc-timeout` and enforced
    /// here too (`DeadlineExceeded`).
    pub(crate) timeout: Option<Duration>,
    /// Request headers.
    pub(crate) metadata: MetadataMap,
    /// The JSON mapping of requests and replies.
    pub(crate) json: JsonOptions,
}

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CallError {
    /// The method is not in the descriptors.
    #[error(transparent)]
    Lookup(#[from] LookupError),
    /// Called as another kind than it is, e.g. [`DynamicClient::unary`] on a streaming method.
    #[error("{method} is a {actual} method, not {expected}")]
    WrongKind {
        /// The method, `package.Service.Method`.
        method: String,
        /// The kind of call made.
        expected: MethodKind,
        /// The method's kind.
        actual: MethodKind,
    },
    /// A unary or server-streaming method was given no request or more than one
    /// ([`DynamicClient::call`]).
    #[error(
        "{method} is a {kind} method: it takes exactly one request message, got {}",
        if *got == 0 { "none" } else { "more than one" }
    )]
    RequestCount {
        /// The method, `package.Service.Method`.
        method: String,
        /// The method's kind.
        kind: MethodKind,
        /// 0, or 2 for "more than one".
        got: usize,
    },
    /// A request is not valid JSON for the method's request type.
    #[error("{}", invalid_request(*index, message, source))]
    InvalidRequest {
        /// Which message of a request stream (0-based); `None` for the only one.
        index: Option<usize>,
        /// The request type.
        message: String,
        /// What is wrong with it.
        #[source]
        source: serde_json::Error,
    },
    /// A reply has no JSON form (e.g. a `google.protobuf.Any` of an unknown type).
    #[error("a reply ({message}) cannot be written as JSON: {source}")]
    InvalidResponse {
        /// The reply type.
        message: String,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// The channel could not connect.
    #[error("cannot reach the server: {0}")]
    Transport(#[source] tonic::transport::Error),
    /// The server (or the deadline) ended the call with a gRPC status.
    #[error(transparent)]
    Status(#[from] StatusError),
}

fn invalid_request(index: Option<usize>, message: &str, source: &serde_json::Error) -> String {
    match index {
        Some(index) => format!("request #{} is not a valid {message}: {source}", index + 1),
        None => format!("the request is not a valid {message}: {source}"),
    }
}

impl From<Status> for CallError {
    fn from(status: Status) -> Self {
        CallError::Status(status.into())
    }
}

/// Calls methods of one server, with [`CallOptions`].
#[derive(Debug, Clone)]
pub(crate) struct DynamicClient {
    grpc: Grpc<Channel>,
    options: CallOptions,
}

impl DynamicClient {
    /// A client of the server at the other end of `channel`, with go-plugin's message limits.
    pub(crate) fn new(channel: Channel) -> Self {
        let grpc = Grpc::new(channel)
            .max_decoding_message_size(MAX_MESSAGE_SIZE)
            .max_encoding_message_size(MAX_MESSAGE_SIZE);
        DynamicClient {
            grpc,
            options: CallOptions::default(),
        }
    }

    /// The same client with other options.
    pub(crate) fn with_options(mut self, options: CallOptions) -> Self {
        self.options = options;
        self
    }

    /// Calls a unary method.
    pub(crate) async fn unary(
        &mut self,
        method: &MethodDescriptor,
        request: &Value,
    ) -> Result<Value, CallError> {
        expect_kind(method, MethodKind::Unary)?;
        let message = self.request_message(method, request)?;
        let deadline = self.deadline();
        let request = self.request(Ok(message), deadline.as_ref());
        let (path, codec) = (path(method)?, DynamicCodec::new(method.output()));
        let grpc = &mut self.grpc;
        let reply = with_deadline(deadline.as_ref(), async move {
            ready(grpc).await?;
            Ok(grpc.unary(request, path, codec).await?)
        })
        .await?;
        reply_json(&self.options.json, reply.get_ref())
    }

    /// Calls a server-streaming method; the stream yields one JSON value per reply.
    pub(crate) async fn server_streaming(
        &mut self,
        method: &MethodDescriptor,
        request: &Value,
    ) -> Result<ResponseStream, CallError> {
        expect_kind(method, MethodKind::ServerStreaming)?;
        let message = self.request_message(method, request)?;
        let deadline = self.deadline();
        let request = self.request(Ok(message), deadline.as_ref());
        let (path, codec) = (path(method)?, DynamicCodec::new(method.output()));
        let grpc = &mut self.grpc;
        let replies = with_deadline(deadline.as_ref(), async move {
            ready(grpc).await?;
            Ok(grpc.server_streaming(request, path, codec).await?)
        })
        .await?;
        Ok(ResponseStream::streaming(
            replies.into_inner(),
            self.options.json,
            deadline,
            None,
        ))
    }

    /// Calls a client-streaming method with a stream of JSON requests.
    ///
    /// A request that is not valid JSON for the method aborts the call (the server sees it
    /// cancelled, never a complete stream) and is the error returned.
    pub(crate) async fn client_streaming(
        &mut self,
        method: &MethodDescriptor,
        requests: impl Stream<Item = Value> + Send + 'static,
    ) -> Result<Value, CallError> {
        expect_kind(method, MethodKind::ClientStreaming)?;
        let (outgoing, failure) = self.outgoing(method, requests);
        let deadline = self.deadline();
        let request = self.request(outgoing, deadline.as_ref());
        let (path, codec) = (path(method)?, DynamicCodec::new(method.output()));
        let grpc = &mut self.grpc;
        let reply = with_deadline(deadline.as_ref(), async move {
            ready(grpc).await?;
            Ok(grpc.client_streaming(request, path, codec).await?)
        })
        .await;
        if let Some(error) = failure.take() {
            return Err(error);
        }
        reply_json(&self.options.json, reply?.get_ref())
    }

    /// Calls a bidi-streaming method; requests are sent as `requests` yields them, while the
    /// returned stream yields the replies.
    ///
    /// An invalid request aborts the call as in [`client_streaming`](Self::client_streaming);
    /// the reply stream then ends with that error.
    pub(crate) async fn bidi_streaming(
        &mut self,
        method: &MethodDescriptor,
        requests: impl Stream<Item = Value> + Send + 'static,
    ) -> Result<ResponseStream, CallError> {
        expect_kind(method, MethodKind::BidiStreaming)?;
        let (outgoing, failure) = self.outgoing(method, requests);
        let deadline = self.deadline();
        let request = self.request(outgoing, deadline.as_ref());
        let (path, codec) = (path(method)?, DynamicCodec::new(method.output()));
        let grpc = &mut self.grpc;
        let replies = with_deadline(deadline.as_ref(), async move {
            ready(grpc).await?;
            Ok(grpc.streaming(request, path, codec).await?)
        })
        .await;
        if let Some(error) = failure.take() {
            return Err(error);
        }
        Ok(ResponseStream::streaming(
            replies?.into_inner(),
            self.options.json,
            deadline,
            Some(failure),
        ))
    }

    /// Calls a method of any kind, as grpcurl does with the messages it reads: unary and
    /// server-streaming methods take exactly one request from `requests` (read to its end, to
    /// refuse a second one), the others all of them.
    pub(crate) async fn call(
        &mut self,
        method: &MethodDescriptor,
        requests: impl Stream<Item = Value> + Send + 'static,
    ) -> Result<ResponseStream, CallError> {
        let kind = MethodKind::of(method);
        match kind {
            MethodKind::Unary | MethodKind::ServerStreaming => {
                let request = single(method, kind, requests).await?;
                if kind == MethodKind::Unary {
                    Ok(ResponseStream::once(self.unary(method, &request).await?))
                } else {
                    self.server_streaming(method, &request).await
                }
            }
            MethodKind::ClientStreaming => Ok(ResponseStream::once(
                self.client_streaming(method, requests).await?,
            )),
            MethodKind::BidiStreaming => self.bidi_streaming(method, requests).await,
        }
    }

    fn request_message(
        &self,
        method: &MethodDescriptor,
        request: &Value,
    ) -> Result<DynamicMessage, CallError> {
        let input = method.input();
        json::to_message(&input, request, &self.options.json).map_err(|source| {
            CallError::InvalidRequest {
                index: None,
                message: input.full_name().to_owned(),
                source,
            }
        })
    }

    /// The messages of a request stream, each converted as it comes; the first invalid one is
    /// kept in the returned slot and aborts the call.
    fn outgoing(
        &self,
        method: &MethodDescriptor,
        requests: impl Stream<Item = Value> + Send + 'static,
    ) -> (impl Stream<Item = Outgoing> + Send + 'static, Failure) {
        let failure = Failure::default();
        let slot = failure.clone();
        let (input, options) = (method.input(), self.options.json);
        let outgoing = requests
            .enumerate()
            .map(move |(index, value)| {
                json::to_message(&input, &value, &options).map_err(|source| {
                    slot.set(CallError::InvalidRequest {
                        index: Some(index),
                        message: input.full_name().to_owned(),
                        source,
                    });
                    Status::cancelled("invalid request message")
                })
            })
            // Nothing after the aborting item: tonic stops at the first encoding error anyway.
            .scan(false, |failed, item| {
                let stop = *failed;
                *failed = item.is_err();
                std::future::ready((!stop).then_some(item))
            });
        (outgoing, failure)
    }

    fn deadline(&self) -> Option<Deadline> {
        self.options.timeout.map(|after| Deadline {
            at: Instant::now() + after,
            after,
        })
    }

    fn request<T>(&self, message: T, deadline: Option<&Deadline>) -> Request<T> {
        let mut request = Request::new(message);
        *request.metadata_mut() = self.options.metadata.clone();
        if let Some(deadline) = deadline {
            request.set_timeout(deadline.after);
        }
        request
    }
}

/// The replies of a call, as JSON values. Ends after the first error.
#[must_use = "streams do nothing unless polled"]
pub(crate) struct ResponseStream {
    replies: Replies,
    json: JsonOptions,
    deadline: Option<(Pin<Box<Sleep>>, Duration)>,
    failure: Option<Failure>,
    done: bool,
}

enum Replies {
    Once(Option<Value>),
    Streaming(Streaming<DynamicMessage>),
}

impl ResponseStream {
    fn once(reply: Value) -> Self {
        ResponseStream {
            replies: Replies::Once(Some(reply)),
            json: JsonOptions::default(),
            deadline: None,
            failure: None,
            done: false,
        }
    }

    fn streaming(
        replies: Streaming<DynamicMessage>,
        json: JsonOptions,
        deadline: Option<Deadline>,
        failure: Option<Failure>,
    ) -> Self {
        ResponseStream {
            replies: Replies::Streaming(replies),
            json,
            deadline: deadline.map(|d| (Box::pin(tokio::time::sleep_until(d.at)), d.after)),
            failure,
            done: false,
        }
    }

    /// The error that aborted the call from our side, if any: it explains the status the
    /// aborted call ended with.
    fn failure(&self) -> Option<CallError> {
        self.failure.as_ref().and_then(Failure::take)
    }
}

impl fmt::Debug for ResponseStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseStream")
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

impl Stream for ResponseStream {
    type Item = Result<Value, CallError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        if let Some((sleep, after)) = &mut this.deadline
            && sleep.as_mut().poll(cx).is_ready()
        {
            this.done = true;
            return Poll::Ready(Some(Err(deadline_exceeded(*after))));
        }
        let next = match &mut this.replies {
            Replies::Once(reply) => reply.take().map(Ok),
            Replies::Streaming(replies) => match ready!(Pin::new(replies).poll_next(cx)) {
                Some(Ok(message)) => Some(reply_json(&this.json, &message)),
                Some(Err(status)) => Some(Err(this.failure().unwrap_or(status.into()))),
                None => this.failure().map(Err),
            },
        };
        if next.as_ref().is_none_or(Result::is_err) {
            this.done = true;
        }
        Poll::Ready(next)
    }
}

/// Where the request side of a stream leaves the error that made it abort the call.
#[derive(Debug, Clone, Default)]
struct Failure(Arc<Mutex<Option<CallError>>>);

impl Failure {
    fn set(&self, error: CallError) {
        if let Ok(mut slot) = self.0.lock() {
            slot.get_or_insert(error);
        }
    }

    fn take(&self) -> Option<CallError> {
        self.0.lock().ok().and_then(|mut slot| slot.take())
    }
}

#[derive(Debug, Clone, Copy)]
struct Deadline {
    at: Instant,
    after: Duration,
}

async fn with_deadline<T>(
    deadline: Option<&Deadline>,
    call: impl Future<Output = Result<T, CallError>>,
) -> Result<T, CallError> {
    match deadline {
        None => call.await,
        Some(deadline) => tokio::time::timeout_at(deadline.at, call)
            .await
            .unwrap_or_else(|_| Err(deadline_exceeded(deadline.after))),
    }
}

fn deadline_exceeded(after: Duration) -> CallError {
    Status::deadline_exceeded(format!("no complete reply within {after:?}")).into()
}

async fn ready(grpc: &mut Grpc<Channel>) -> Result<(), CallError> {
    grpc.ready().await.map_err(CallError::Transport)
}

/// The one request of a unary or server-streaming call.
async fn single(
    method: &MethodDescriptor,
    kind: MethodKind,
    requests: impl Stream<Item = Value>,
) -> Result<Value, CallError> {
    let mut requests = std::pin::pin!(requests);
    let count_error = |got| CallError::RequestCount {
        method: method.full_name().to_owned(),
        kind,
        got,
    };
    let first = requests.next().await.ok_or_else(|| count_error(0))?;
    match requests.next().await {
        None => Ok(first),
        Some(_) => Err(count_error(2)),
    }
}

fn expect_kind(method: &MethodDescriptor, expected: MethodKind) -> Result<(), CallError> {
    let actual = MethodKind::of(method);
    if actual == expected {
        Ok(())
    } else {
        Err(CallError::WrongKind {
            method: method.full_name().to_owned(),
            expected,
            actual,
        })
    }
}

/// The HTTP/2 path of a method: `/package.Service/Method`.
fn path(method: &MethodDescriptor) -> Result<PathAndQuery, CallError> {
    let path = format!("/{}/{}", method.parent_service().full_name(), method.name());
    PathAndQuery::try_from(path.as_str())
        .map_err(|_| LookupError::BadMethodName(method.full_name().to_owned()).into())
}

fn reply_json(options: &JsonOptions, message: &DynamicMessage) -> Result<Value, CallError> {
    json::to_json(message, options).map_err(|source| CallError::InvalidResponse {
        message: message.descriptor().full_name().to_owned(),
        source,
    })
}

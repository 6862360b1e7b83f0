//! go-plugin's `GRPCBroker`: extra gRPC connections between host and plugin, in either direction,
//! negotiated over the `plugin.GRPCBroker/StartStream` stream.
//!
//! The side that serves picks an id ([`Broker::next_id`]), calls [`Broker::accept_and_serve`]
//! (or [`Broker::accept`]) and passes the id to the other side in one of the app's own calls;
//! that side calls [`Broker::dial`] with it. Each side counts ids on its own, from 1.
//!
//! - **Plain mode**: accepting opens a new listener and sends its address as a `ConnInfo`;
//!   `dial` waits up to 5 s for that `ConnInfo` and connects to it.
//! - **Multiplexed mode** (`PLUGIN_MULTIPLEX_GRPC`): `dial` sends a *knock* for the id and waits
//!   up to 5 s for the acknowledgement, then opens a new yamux stream on the one plugin
//!   connection; the acceptor, on the knock, routes the next inbound stream to that id's server.
//!
//! The bookkeeping (received `ConnInfo`s waiting for dialers, knocks waiting for acceptors) is
//! `plugwire_protocol::broker`'s; this module drives it. A [`Broker`] is what applications use;
//! the [`BrokerLink`] made with it is what the host or plugin wires to `StartStream` and to the
//! multiplexed session.

mod config;
mod served;

use std::collections::HashMap;
use std::convert::Infallible;
use std::io;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use futures_util::Stream;
use plugwire_protocol::broker::{BROKER_TIMEOUT, Claim, Delivery, KnockBox, Mailbox, Role, Ticket};
use plugwire_protocol::handshake::Network;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;
use tonic::transport::{Channel, Endpoint};

pub use config::{AddressTranslator, BrokerConfig, BrokerError, BrokerListen, PeerSocketHook};
pub use served::{BrokeredListener, BrokeredServer};

use crate::grpc;
use crate::mux::{MuxSession, Router};
use crate::pb::ConnInfo;
use crate::pb::conn_info::Knock;
use crate::transport::{self, Address, BoxedIo, Listener};

/// One side's broker (go-plugin's `GRPCBroker`, given to plugin implementations): serve
/// services to the other side under an id, and dial the services it serves. Cheap to clone;
/// clones share state.
///
/// ```no_run
/// # async fn f(broker: plugwire_runtime::broker::Broker) -> Result<(), plugwire_runtime::broker::BrokerError> {
/// # let service = tonic_health::server::health_reporter().1;
/// // This side serves a callback and tells the other side its id in an app call.
/// let id = broker.next_id();
/// broker.accept_and_serve(id, service).await?.detach();
/// // The other side dials an id it was given.
/// let channel = broker.dial(7).await?;
/// # let _ = channel; Ok(()) }
/// ```
#[derive(Clone)]
pub struct Broker {
    shared: Arc<Shared>,
}

/// The host's or plugin's end of a [`Broker`]: what carries its messages over `StartStream`
/// and its streams over the multiplexed session. Not for applications.
#[derive(Clone, Debug)]
pub struct BrokerLink {
    broker: Broker,
}

struct Shared {
    config: BrokerConfig,
    next_id: AtomicU32,
    outbound: mpsc::Sender<ConnInfo>,
    outbound_rx: Arc<tokio::sync::Mutex<mpsc::Receiver<ConnInfo>>>,
    book: Mutex<Book>,
    router: Arc<Mutex<Router>>,
    session: watch::Sender<Option<Arc<MuxSession>>>,
    closed: CancellationToken,
    dial_lock: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct Book {
    mailbox: Mailbox<ConnInfo>,
    knocks: KnockBox,
    /// Where each waiting dialer's message goes.
    waiters: HashMap<Ticket, oneshot::Sender<ConnInfo>>,
}

impl Book {
    /// Delivers `info` to the first dialer still waiting for it, else keeps it; false when it
    /// was dropped (another one already waits for that id).
    fn deliver(&mut self, mut info: ConnInfo, now: Instant) -> bool {
        loop {
            match self.mailbox.deliver(info.service_id, info, now) {
                Delivery::To(ticket, message) => {
                    let Some(tx) = self.waiters.remove(&ticket) else {
                        info = message;
                        continue;
                    };
                    match tx.send(message) {
                        Ok(()) => return true,
                        Err(message) => info = message, // that dialer gave up: the next one
                    }
                }
                Delivery::Held => return true,
                Delivery::Dropped => return false,
            }
        }
    }
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker")
            .field("config", &self.shared.config)
            .field("next_id", &self.shared.next_id)
            .finish_non_exhaustive()
    }
}

impl Broker {
    /// A broker and its link. The link talks to the other side through
    /// [`BrokerLink::outbound`] and [`BrokerLink::handle_inbound`], which the host and plugin
    /// wire to `StartStream`.
    pub fn new(config: BrokerConfig) -> (Broker, BrokerLink) {
        let (outbound, outbound_rx) = mpsc::channel(64);
        let router = Router::new(config.tls.server.clone());
        let broker = Broker {
            shared: Arc::new(Shared {
                config,
                next_id: AtomicU32::new(0),
                outbound,
                outbound_rx: Arc::new(tokio::sync::Mutex::new(outbound_rx)),
                book: Mutex::new(Book::default()),
                router: Arc::new(Mutex::new(router)),
                session: watch::channel(None).0,
                closed: CancellationToken::new(),
                dial_lock: tokio::sync::Mutex::new(()),
            }),
        };
        let link = BrokerLink {
            broker: broker.clone(),
        };
        (broker, link)
    }

    /// The next id for [`Broker::accept_and_serve`] (1, 2, 3, ...; go-plugin's `NextId`).
    pub fn next_id(&self) -> u32 {
        self.shared
            .next_id
            .fetch_add(1, Ordering::Relaxed)
            .wrapping_add(1)
    }

    /// Serves `service` to the other side under `id` (go-plugin's `AcceptAndServe`), until the
    /// returned handle is stopped or dropped, or the broker closes; [`BrokeredServer::detach`]
    /// keeps it running until then. `service` is any tonic service (`AddHelperServer::new(..)`)
    /// or several as tonic's `Routes`.
    pub async fn accept_and_serve<S>(
        &self,
        id: u32,
        service: S,
    ) -> Result<BrokeredServer, BrokerError>
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
        let listener = self.accept(id).await?;
        Ok(BrokeredServer::start(listener, served::routes(service)))
    }

    /// Accepts the other side's connections for `id` (go-plugin's `Accept`): a stream of
    /// connections, TLS already done when configured, to serve with any server, e.g.
    /// `tonic::transport::Server::builder().add_service(s).serve_with_incoming(listener)`.
    /// Dropping it stops accepting.
    pub async fn accept(&self, id: u32) -> Result<BrokeredListener, BrokerError> {
        if self.shared.closed.is_cancelled() {
            return Err(BrokerError::Closed);
        }
        let (tx, incoming) = transport::incoming();
        if self.shared.config.multiplex {
            self.with_router(|r| r.listen(id, tx));
            let open = self.with_book(|b| b.knocks.accept(id, now()));
            if open {
                self.open_door(id);
            }
            return Ok(BrokeredListener::new(id, incoming, None, self.clone()));
        }
        let listener = self.listen().await?;
        let (network, address) = (
            listener.address().network().to_string(),
            listener.address().to_field(),
        );
        let (network, address) = match &self.shared.config.translator {
            Some(t) if self.shared.config.role == Role::Host => t
                .host_to_plugin(&network, &address)
                .map_err(BrokerError::Translate)?,
            _ => (network, address),
        };
        let accept_loop =
            transport::spawn_accept_loop(listener, self.shared.config.tls.server.clone(), tx);
        let listener = BrokeredListener::new(id, incoming, Some(accept_loop), self.clone());
        self.send(ConnInfo {
            service_id: id,
            network,
            address,
            knock: None,
        })
        .await?;
        Ok(listener)
    }

    /// Connects to the service the other side serves under `id` (go-plugin's `Dial`).
    pub async fn dial(&self, id: u32) -> Result<Channel, BrokerError> {
        self.dial_with(id, |endpoint| endpoint).await
    }

    /// [`Broker::dial`] with a changed tonic `Endpoint` (go-plugin's `DialWithOptions`), e.g.
    /// `|e| e.timeout(Duration::from_secs(5))`.
    pub async fn dial_with(
        &self,
        id: u32,
        configure: impl FnOnce(Endpoint) -> Endpoint,
    ) -> Result<Channel, BrokerError> {
        if self.shared.closed.is_cancelled() {
            return Err(BrokerError::Closed);
        }
        let endpoint = configure(grpc::endpoint(self.shared.config.endpoint.as_ref()));
        let dial_error = |cause| BrokerError::Dial { id, cause };
        if self.shared.config.multiplex {
            let broker = self.clone();
            return grpc::channel(endpoint, move || {
                let broker = broker.clone();
                async move { broker.knock_and_open(id).await }
            })
            .await
            .map_err(dial_error);
        }
        let info = self
            .claim(id)
            .await
            .ok_or(BrokerError::ConnInfoTimeout { id })?;
        let (network, address) = match &self.shared.config.translator {
            Some(t) if self.shared.config.role == Role::Host => t
                .plugin_to_host(&info.network, &info.address)
                .map_err(BrokerError::Translate)?,
            _ => (info.network, info.address),
        };
        let network: Network = network.parse().map_err(|_| BrokerError::UnknownNetwork {
            network,
            address: address.clone(),
        })?;
        let address = Address::new(network, &address);
        if let (Address::Unix(path), Some(hook)) = (&address, &self.shared.config.on_peer_socket) {
            hook(path);
        }
        let tls = self.shared.config.tls.client.clone();
        grpc::channel(endpoint, move || {
            let address = address.clone();
            let tls = tls.clone();
            async move {
                let io = transport::dial(&address).await?;
                match tls {
                    Some(config) => transport::tls_connect(io, config).await,
                    None => Ok(io),
                }
            }
        })
        .await
        .map_err(dial_error)
    }

    /// Closes the broker (go-plugin's `Close`): its brokered servers stop and `StartStream`
    /// ends.
    pub fn close(&self) {
        self.shared.closed.cancel();
    }

    async fn knock_and_open(&self, id: u32) -> io::Result<BoxedIo> {
        let knock_failed =
            |e: String| io::Error::other(format!("failed to knock before dialling client: {e}"));
        let _serialized = self.shared.dial_lock.lock().await;
        self.send(ConnInfo {
            service_id: id,
            network: String::new(),
            address: String::new(),
            knock: Some(Knock {
                knock: true,
                ack: false,
                error: String::new(),
            }),
        })
        .await
        .map_err(|e| knock_failed(e.to_string()))?;
        let ack = self.claim(id).await.ok_or_else(|| {
            knock_failed(format!(
                "timeout waiting for multiplexing knock handshake on id {id}"
            ))
        })?;
        match ack.knock {
            Some(Knock {
                knock: true,
                ack: true,
                error,
            }) if error.is_empty() => {}
            Some(Knock {
                knock: true,
                ack: true,
                error,
            }) => {
                return Err(knock_failed(format!(
                    "failed to knock for id {id}: {error}"
                )));
            }
            other => {
                return Err(knock_failed(format!(
                    "handshake failed for multiplexing on id {id}; expected knock and ack, but got {other:?}"
                )));
            }
        }
        self.open_stream().await
    }

    /// A new stream on the multiplexed session, in TLS when configured.
    async fn open_stream(&self) -> io::Result<BoxedIo> {
        let io = self.session().await?.open().await?;
        match &self.shared.config.tls.client {
            Some(config) => transport::tls_connect(io, config.clone()).await,
            None => Ok(io),
        }
    }

    /// The multiplexed session, once the connection is up (waits at most [`BROKER_TIMEOUT`]).
    async fn session(&self) -> io::Result<Arc<MuxSession>> {
        let mut rx = self.shared.session.subscribe();
        let wait = rx.wait_for(Option::is_some);
        match tokio::time::timeout(BROKER_TIMEOUT, wait).await {
            Ok(Ok(session)) => session
                .clone()
                .ok_or_else(|| io::Error::other("no multiplexed session")),
            _ => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "timed out waiting for the multiplexed connection to be established",
            )),
        }
    }

    fn open_door(&self, id: u32) {
        self.with_router(|r| r.open_door(id));
        self.send_now(ConnInfo {
            service_id: id,
            network: String::new(),
            address: String::new(),
            knock: Some(Knock {
                knock: true,
                ack: true,
                error: String::new(),
            }),
        });
    }

    async fn claim(&self, id: u32) -> Option<ConnInfo> {
        let waiting = self.with_book(|b| match b.mailbox.claim(id, now()) {
            Claim::Ready(info) => Err(info),
            Claim::Wait(ticket) => {
                let (tx, rx) = oneshot::channel();
                b.waiters.insert(ticket, tx);
                Ok((ticket, rx))
            }
        });
        let (ticket, rx) = match waiting {
            Ok(waiting) => waiting,
            Err(info) => return Some(info),
        };
        let received = tokio::select! {
            r = tokio::time::timeout(BROKER_TIMEOUT, rx) => r.ok().and_then(Result::ok),
            () = self.shared.closed.cancelled() => None,
        };
        if received.is_none() {
            self.with_book(|b| {
                b.mailbox.abandon(id, ticket);
                b.waiters.remove(&ticket);
            });
        }
        received
    }

    async fn send(&self, info: ConnInfo) -> Result<(), BrokerError> {
        tokio::select! {
            sent = self.shared.outbound.send(info) => sent.map_err(|_| BrokerError::Closed),
            () = self.shared.closed.cancelled() => Err(BrokerError::Closed),
        }
    }

    /// Sends without waiting (from synchronous contexts); queues in a task when the stream is
    /// backed up.
    fn send_now(&self, info: ConnInfo) {
        if let Err(mpsc::error::TrySendError::Full(info)) = self.shared.outbound.try_send(info) {
            let broker = self.clone();
            tokio::spawn(async move { broker.send(info).await });
        }
    }

    async fn listen(&self) -> Result<Listener, BrokerError> {
        match &self.shared.config.listen {
            BrokerListen::Unix { dir, group } => Listener::unix(dir, group.as_deref()),
            BrokerListen::Tcp(ports) => Listener::tcp(ports.clone()).await,
        }
        .map_err(BrokerError::Listen)
    }

    /// Stops routing to `id` and forgets its knocks (a brokered listener went away).
    fn forget(&self, id: u32) {
        if self.shared.config.multiplex {
            self.with_router(|r| r.unlisten(id));
            self.with_book(|b| b.knocks.stop(id));
        }
    }

    fn closed_token(&self) -> CancellationToken {
        self.shared.closed.clone()
    }

    fn server_hook(&self) -> Option<&grpc::ServerHook> {
        self.shared.config.server.as_ref()
    }

    fn with_book<T>(&self, f: impl FnOnce(&mut Book) -> T) -> T {
        let mut book = self
            .shared
            .book
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut book)
    }

    fn with_router<T>(&self, f: impl FnOnce(&mut Router) -> T) -> T {
        let mut router = self
            .shared
            .router
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut router)
    }
}

impl BrokerLink {
    /// The broker this link belongs to.
    pub fn broker(&self) -> &Broker {
        &self.broker
    }

    /// Whether brokered connections are multiplexed.
    pub fn is_multiplexed(&self) -> bool {
        self.broker.shared.config.multiplex
    }

    /// Whether the broker was closed.
    pub fn is_closed(&self) -> bool {
        self.broker.shared.closed.is_cancelled()
    }

    /// Resolves when the broker is closed.
    pub async fn closed(&self) {
        self.broker.shared.closed.cancelled().await;
    }

    /// The TLS configuration brokered dials use (and the host's main connection).
    pub fn client_tls(&self) -> Option<Arc<rustls::ClientConfig>> {
        self.broker.shared.config.tls.client.clone()
    }

    /// The messages this side sends on `StartStream`. Ends when the broker closes. Several
    /// streams may be taken over time; each takes over from the previous one.
    pub fn outbound(&self) -> impl Stream<Item = ConnInfo> + Send + 'static {
        let rx = self.broker.shared.outbound_rx.clone();
        let closed = self.broker.closed_token();
        futures_util::stream::unfold(
            (
                rx,
                closed,
                None::<tokio::sync::OwnedMutexGuard<mpsc::Receiver<ConnInfo>>>,
            ),
            |(rx, closed, guard)| async move {
                let mut guard = match guard {
                    Some(guard) => guard,
                    None => tokio::select! {
                        guard = rx.clone().lock_owned() => guard,
                        () = closed.cancelled() => return None,
                    },
                };
                let next = tokio::select! {
                    next = guard.recv() => next,
                    () = closed.cancelled() => None,
                };
                next.map(|info| (info, (rx, closed, Some(guard))))
            },
        )
    }

    /// A message the other side sent on `StartStream`.
    pub fn handle_inbound(&self, info: ConnInfo) {
        let broker = &self.broker;
        let now = now();
        let id = info.service_id;
        let knock_request = info.knock.as_ref().is_some_and(|k| k.knock && !k.ack);
        if knock_request {
            if broker.with_book(|b| b.knocks.knock(id, now)) {
                broker.open_door(id);
            } else {
                tracing::debug!(id, "knock for an id not accepted (yet)");
            }
        } else if !broker.with_book(|b| b.deliver(info, now)) {
            tracing::debug!(id, "dropped a second broker message for the same id");
        }
    }

    /// Runs the yamux session of multiplexed mode on the plugin connection (`io`: the one raw
    /// connection). Its inbound streams go to knocked brokered servers, else to `default` (the
    /// plugin's main gRPC server; `None` on the host).
    pub fn start_session(
        &self,
        io: BoxedIo,
        default: Option<mpsc::Sender<io::Result<BoxedIo>>>,
    ) -> io::Result<()> {
        let broker = &self.broker;
        if let Some(default) = default {
            broker.with_router(|r| r.set_default(default));
        }
        let session = Arc::new(MuxSession::start(
            io,
            broker.shared.config.role,
            broker.shared.router.clone(),
        )?);
        broker.shared.session.send_replace(Some(session));
        Ok(())
    }

    /// Opens the multiplexed main connection (host side): a new stream, in TLS when configured.
    pub async fn open_main(&self) -> io::Result<BoxedIo> {
        self.broker.open_stream().await
    }

    /// How many ids have pending bookkeeping (for leak checks).
    pub fn pending(&self) -> usize {
        self.broker.with_book(|b| {
            b.mailbox.purge(now());
            b.knocks.purge(now());
            b.mailbox.len() + b.knocks.len()
        })
    }
}

/// The broker's clock: the runtime's (paused in tests), as the bookkeeping's `Instant`.
fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

#[cfg(test)]
mod tests;

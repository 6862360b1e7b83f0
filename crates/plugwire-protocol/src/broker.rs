//! go-plugin's `GRPCBroker`: extra gRPC connections between host and plugin, in either direction,
//! negotiated over the `plugin.GRPCBroker/StartStream` stream.
//!
//! The side that serves picks an id ([`Broker::next_id`]), calls [`Broker::accept_and_serve`]
//! and passes the id to the other side in one of the app's own calls; that side calls
//! [`Broker::dial`] with it. Each side counts ids on its own, from 1.
//!
//! - **Plain mode**: `accept_and_serve` opens a new listener and sends its address as a
//!   `ConnInfo`; `dial` waits up to 5 s for that `ConnInfo` and connects to it.
//! - **Multiplexed mode** ([`crate::mux`]): `dial` sends a *knock* for the id and waits up to 5 s
//!   for the acknowledgement, then opens a new yamux stream on the one plugin connection; the
//!   acceptor, on the knock, routes the next inbound stream to that id's server.
//!
//! Received `ConnInfo`s wait for their dialer in a [`Mailbox`] (one per id, extra ones dropped,
//! unclaimed ones forgotten after 5 s, exactly as go-plugin); knocks for ids not yet accepted wait
//! in a [`KnockBox`]. Both take the time as an argument, so their rules are tested without
//! sleeping.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::Stream;
use std::time::Instant;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;
use tonic::service::Routes;
use tonic::transport::Channel;

use crate::handshake::Network;
use crate::mux::{MuxSession, Role, Router};
use crate::pb::ConnInfo;
use crate::pb::conn_info::Knock;
use crate::tls::TlsConfigs;
use crate::transport::{self, Address, BoxedIo, Listener};

/// How long a dialer waits for an address or a knock acknowledgement, and how long an unclaimed
/// `ConnInfo` or knock is kept (go-plugin's 5 s).
pub const BROKER_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a stopped brokered server lets in-flight calls finish.
const STOP_GRACE: Duration = Duration::from_secs(1);

/// Received `ConnInfo`s waiting for a dialer, by id: at most one per id; extra ones are dropped,
/// unclaimed ones are forgotten [`BROKER_TIMEOUT`] after they arrived. Dialers that come first
/// wait in line, each under a [`Ticket`]: a message goes to the first of them, as in go-plugin
/// (where the first of two dials of one id succeeds and the second times out).
#[derive(Debug, Default)]
pub struct Mailbox {
    slots: HashMap<u32, Slot>,
    next_ticket: u64,
}

#[derive(Debug)]
enum Slot {
    Held { info: ConnInfo, expires: Instant },
    Waiting(VecDeque<Ticket>),
}

/// A dialer waiting in a [`Mailbox`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Ticket(u64);

/// What [`Mailbox::deliver`] did with a message.
#[derive(Debug, PartialEq, Eq)]
pub enum Delivery {
    /// It belongs to this waiting dialer (if that one gave up meanwhile, deliver it again).
    To(Ticket, ConnInfo),
    /// Kept for a dialer to come.
    Held,
    /// Dropped: one is already waiting for that id.
    Dropped,
}

/// What [`Mailbox::claim`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Claim {
    /// The message had already arrived.
    Ready(ConnInfo),
    /// Not yet: it will be delivered to this ticket.
    Wait(Ticket),
}

impl Mailbox {
    /// A message for `info.service_id` arrived at `now`.
    pub fn deliver(&mut self, info: ConnInfo, now: Instant) -> Delivery {
        self.purge(now);
        let id = info.service_id;
        match self.slots.remove(&id) {
            Some(Slot::Waiting(mut line)) => match line.pop_front() {
                Some(ticket) => {
                    if !line.is_empty() {
                        self.slots.insert(id, Slot::Waiting(line));
                    }
                    Delivery::To(ticket, info)
                }
                None => self.hold(info, now),
            },
            Some(held @ Slot::Held { .. }) => {
                self.slots.insert(id, held);
                Delivery::Dropped
            }
            None => self.hold(info, now),
        }
    }

    fn hold(&mut self, info: ConnInfo, now: Instant) -> Delivery {
        self.slots.insert(
            info.service_id,
            Slot::Held {
                info,
                expires: now + BROKER_TIMEOUT,
            },
        );
        Delivery::Held
    }

    /// A dialer wants the message for `id` at `now`.
    pub fn claim(&mut self, id: u32, now: Instant) -> Claim {
        self.purge(now);
        match self.slots.remove(&id) {
            Some(Slot::Held { info, .. }) => Claim::Ready(info),
            waiting => {
                let ticket = Ticket(self.next_ticket);
                self.next_ticket += 1;
                let mut line = match waiting {
                    Some(Slot::Waiting(line)) => line,
                    _ => VecDeque::new(),
                };
                line.push_back(ticket);
                self.slots.insert(id, Slot::Waiting(line));
                Claim::Wait(ticket)
            }
        }
    }

    /// The dialer holding `ticket` for `id` stopped waiting.
    pub fn abandon(&mut self, id: u32, ticket: Ticket) {
        if let Some(Slot::Waiting(line)) = self.slots.get_mut(&id) {
            line.retain(|t| *t != ticket);
            if line.is_empty() {
                self.slots.remove(&id);
            }
        }
    }

    /// Forgets expired messages.
    pub fn purge(&mut self, now: Instant) {
        self.slots.retain(|_, slot| match slot {
            Slot::Held { expires, .. } => *expires > now,
            Slot::Waiting(line) => !line.is_empty(),
        });
    }

    /// How many ids have a message or a dialer waiting.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether nothing is waiting.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }
}

/// Knocks received by the accepting side, by id: a knock for an id that is accepted opens the
/// door at once; one for an id not accepted yet waits (one per id) until it is, or
/// [`BROKER_TIMEOUT`] passes (the dialer has given up by then).
#[derive(Debug, Default)]
pub struct KnockBox {
    slots: HashMap<u32, KnockSlot>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KnockSlot {
    Accepting,
    Pending { expires: Instant },
}

impl KnockBox {
    /// A knock for `id` arrived; true when the door opens now.
    pub fn knock(&mut self, id: u32, now: Instant) -> bool {
        self.purge(now);
        match self.slots.get(&id) {
            Some(KnockSlot::Accepting) => true,
            Some(KnockSlot::Pending { .. }) => false,
            None => {
                self.slots.insert(
                    id,
                    KnockSlot::Pending {
                        expires: now + BROKER_TIMEOUT,
                    },
                );
                false
            }
        }
    }

    /// `id` is accepted from now on; true when a knock was already waiting (the door opens now).
    pub fn accept(&mut self, id: u32, now: Instant) -> bool {
        self.purge(now);
        let waiting = matches!(self.slots.get(&id), Some(KnockSlot::Pending { .. }));
        self.slots.insert(id, KnockSlot::Accepting);
        waiting
    }

    /// `id` is no longer accepted.
    pub fn stop(&mut self, id: u32) {
        self.slots.remove(&id);
    }

    /// Forgets knocks nobody accepted in time.
    pub fn purge(&mut self, now: Instant) {
        self.slots.retain(|_, slot| match slot {
            KnockSlot::Accepting => true,
            KnockSlot::Pending { expires } => *expires > now,
        });
    }

    /// How many ids are accepting or have a knock waiting.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether nothing is tracked.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }
}

/// Rewrites addresses between the plugin's view and the host's (go-plugin's
/// `runner.AddrTranslator`), for plugins that run somewhere else, e.g. in a container. The
/// default methods change nothing.
pub trait AddressTranslator: Send + Sync + 'static {
    /// An address the plugin advertised (handshake line, `ConnInfo`), as the host must dial it.
    fn plugin_to_host(&self, network: &str, address: &str) -> io::Result<(String, String)> {
        Ok((network.to_owned(), address.to_owned()))
    }

    /// An address the host advertises in a `ConnInfo`, as the plugin must dial it.
    fn host_to_plugin(&self, network: &str, address: &str) -> io::Result<(String, String)> {
        Ok((network.to_owned(), address.to_owned()))
    }
}

/// Where plain-mode brokered listeners are created.
#[derive(Clone, Debug)]
pub enum BrokerListen {
    /// Unix sockets in `dir` (the temp dir when `None`), group-writable when `group` is set.
    Unix {
        /// The directory.
        dir: Option<std::path::PathBuf>,
        /// The group.
        group: Option<String>,
    },
    /// TCP on `127.0.0.1` in this port range (0..=0: any free port).
    Tcp(std::ops::RangeInclusive<u16>),
}

/// How a [`Broker`] works on this side.
#[derive(Clone)]
pub struct BrokerConfig {
    /// Host or plugin.
    pub role: Role,
    /// TLS for brokered connections: `client` to dial, `server` to accept. Empty for plaintext.
    pub tls: TlsConfigs,
    /// Where plain-mode listeners go.
    pub listen: BrokerListen,
    /// Address rewriting (host side).
    pub translator: Option<Arc<dyn AddressTranslator>>,
    /// Multiplexed mode.
    pub multiplex: bool,
    /// Told the path of every unix socket the other side gives to be dialled (plain mode). A
    /// host uses it to remove the sockets a plugin leaves behind when it exits (go-plugin's
    /// brokered listeners stay on disk when the plugin exits while one is still serving).
    pub on_peer_socket: Option<PeerSocketHook>,
}

/// See [`BrokerConfig::on_peer_socket`].
pub type PeerSocketHook = Arc<dyn Fn(&std::path::Path) + Send + Sync>;

impl std::fmt::Debug for BrokerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BrokerConfig")
            .field("role", &self.role)
            .field("tls", &self.tls)
            .field("listen", &self.listen)
            .field("translator", &self.translator.is_some())
            .field("multiplex", &self.multiplex)
            .field("on_peer_socket", &self.on_peer_socket.is_some())
            .finish()
    }
}

/// Why a broker operation failed. Texts follow go-plugin's where it has one.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BrokerError {
    /// No address arrived for the id within 5 s (plain mode).
    #[error(
        "timeout waiting for connection info for broker id {id}: the other side did not accept \
         that id within 5 s"
    )]
    ConnInfoTimeout {
        /// The id.
        id: u32,
    },
    /// The other side advertised an address of an unknown network.
    #[error("unknown address type: {address} (network {network:?})")]
    UnknownNetwork {
        /// The network field.
        network: String,
        /// The address field.
        address: String,
    },
    /// A listener could not be created.
    #[error("could not listen for brokered connections")]
    Listen(#[source] io::Error),
    /// Address translation failed.
    #[error("could not translate the brokered address")]
    Translate(#[source] io::Error),
    /// Connecting to the brokered service failed (the cause says why, e.g. a knock timeout).
    #[error("could not dial brokered service {id}")]
    Dial {
        /// The id.
        id: u32,
        /// The cause.
        #[source]
        source: tonic::transport::Error,
    },
    /// The broker was closed.
    #[error("broker closed")]
    Closed,
}

/// One side's broker. Cheap to clone; all clones share state.
#[derive(Clone)]
pub struct Broker {
    shared: Arc<Shared>,
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
    mailbox: Mailbox,
    knocks: KnockBox,
    /// Where each waiting dialer's message goes.
    waiters: HashMap<Ticket, oneshot::Sender<ConnInfo>>,
}

impl Book {
    /// Delivers `info` to the first dialer still waiting for it, else keeps it; false when it
    /// was dropped (another one already waits for that id).
    fn deliver(&mut self, mut info: ConnInfo, now: Instant) -> bool {
        loop {
            match self.mailbox.deliver(info, now) {
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
    /// A broker; it talks to the other side through [`Broker::outbound`] and
    /// [`Broker::handle_inbound`], which the host and plugin wire to `StartStream`.
    pub fn new(config: BrokerConfig) -> Self {
        let (outbound, outbound_rx) = mpsc::channel(64);
        let router = Router::new(config.tls.server.clone());
        Broker {
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
        }
    }

    /// The next id for [`Broker::accept_and_serve`] (1, 2, 3, ...).
    pub fn next_id(&self) -> u32 {
        self.shared
            .next_id
            .fetch_add(1, Ordering::Relaxed)
            .wrapping_add(1)
    }

    /// Whether brokered connections are multiplexed.
    pub fn is_multiplexed(&self) -> bool {
        self.shared.config.multiplex
    }

    /// Serves `routes` (tonic services, e.g. `Routes::new(AddHelperServer::new(..))`) to the
    /// other side under `id`, until the returned handle is dropped or the broker closes.
    pub async fn accept_and_serve(
        &self,
        id: u32,
        routes: Routes,
    ) -> Result<BrokeredServer, BrokerError> {
        if self.shared.closed.is_cancelled() {
            return Err(BrokerError::Closed);
        }
        let stop = CancellationToken::new();
        let (tx, incoming) = transport::incoming();
        let mut accept_loop = None;
        if self.shared.config.multiplex {
            self.with_router(|r| r.listen(id, tx));
            let open = self.with_book(|b| b.knocks.accept(id, now()));
            if open {
                self.open_door(id);
            }
        } else {
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
            accept_loop = Some(transport::spawn_accept_loop(
                listener,
                self.shared.config.tls.server.clone(),
                tx,
            ));
            self.send(ConnInfo {
                service_id: id,
                network,
                address,
                knock: None,
            })
            .await?;
        }
        let task = tokio::spawn(serve_brokered(
            routes,
            incoming,
            stop.clone(),
            self.shared.closed.clone(),
        ));
        Ok(BrokeredServer {
            id,
            stop,
            task: Some(task),
            accept_loop,
            broker: self.clone(),
        })
    }

    /// Connects to the service the other side serves under `id`.
    pub async fn dial(&self, id: u32) -> Result<Channel, BrokerError> {
        if self.shared.closed.is_cancelled() {
            return Err(BrokerError::Closed);
        }
        let dial_error = |source| BrokerError::Dial { id, source };
        if self.shared.config.multiplex {
            let broker = self.clone();
            return transport::channel(move || {
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
        let network: Network = network.parse().map_err(|()| BrokerError::UnknownNetwork {
            network,
            address: address.clone(),
        })?;
        let address = Address::new(network, &address);
        if let (Address::Unix(path), Some(hook)) = (&address, &self.shared.config.on_peer_socket) {
            hook(path);
        }
        let tls = self.shared.config.tls.client.clone();
        transport::channel(move || {
            let address = address.clone();
            let tls = tls.clone();
            async move {
                let io = address.dial().await?;
                match tls {
                    Some(config) => transport::tls_connect(io, config).await,
                    None => Ok(io),
                }
            }
        })
        .await
        .map_err(dial_error)
    }

    /// Closes the broker: its brokered servers stop and `StartStream` ends.
    pub fn close(&self) {
        self.shared.closed.cancel();
    }

    /// Resolves when the broker is closed.
    pub async fn closed(&self) {
        self.shared.closed.cancelled().await;
    }

    /// The TLS configuration brokered dials use (and the host's main connection).
    pub fn client_tls(&self) -> Option<Arc<rustls::ClientConfig>> {
        self.shared.config.tls.client.clone()
    }

    /// Whether [`Broker::close`] was called.
    pub fn is_closed(&self) -> bool {
        self.shared.closed.is_cancelled()
    }

    /// The messages this side sends on `StartStream`. Ends when the broker closes. Several
    /// streams may be taken over time; each takes over from the previous one.
    pub fn outbound(&self) -> impl Stream<Item = ConnInfo> + Send + 'static {
        let rx = self.shared.outbound_rx.clone();
        let closed = self.shared.closed.clone();
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
        let now = now();
        let id = info.service_id;
        let knock_request = info.knock.as_ref().is_some_and(|k| k.knock && !k.ack);
        if knock_request {
            if self.with_book(|b| b.knocks.knock(id, now)) {
                self.open_door(id);
            } else {
                tracing::debug!(id, "knock for an id not accepted (yet)");
            }
        } else {
            if !self.with_book(|b| b.deliver(info, now)) {
                tracing::debug!(id, "dropped a second broker message for the same id");
            }
        }
    }

    /// Runs the yamux session of multiplexed mode on the plugin connection (`io`: the one raw
    /// connection). Its inbound streams go to knocked brokered servers, else to `default` (the
    /// plugin's main gRPC server; `None` on the host).
    pub fn start_session(
        &self,
        io: BoxedIo,
        default: Option<mpsc::Sender<io::Result<BoxedIo>>>,
    ) -> Arc<MuxSession> {
        if let Some(default) = default {
            self.with_router(|r| r.set_default(default));
        }
        let session = Arc::new(MuxSession::start(
            io,
            self.shared.config.role,
            self.shared.router.clone(),
        ));
        self.shared.session.send_replace(Some(session.clone()));
        session
    }

    /// The multiplexed session, once the connection is up (waits at most [`BROKER_TIMEOUT`]).
    pub async fn session(&self) -> io::Result<Arc<MuxSession>> {
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

    /// How many ids have pending bookkeeping (for leak checks).
    pub fn pending(&self) -> usize {
        self.with_book(|b| {
            b.mailbox.purge(now());
            b.knocks.purge(now());
            b.mailbox.len() + b.knocks.len()
        })
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
        let io = self.session().await?.open().await?;
        match &self.shared.config.tls.client {
            Some(config) => transport::tls_connect(io, config.clone()).await,
            None => Ok(io),
        }
    }

    /// Opens the multiplexed main connection (host side): a new stream, in TLS when configured.
    pub async fn open_main(&self) -> io::Result<BoxedIo> {
        let io = self.session().await?.open().await?;
        match &self.shared.config.tls.client {
            Some(config) => transport::tls_connect(io, config.clone()).await,
            None => Ok(io),
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
        let (ticket, rx) = match self.with_book(|b| match b.mailbox.claim(id, now()) {
            Claim::Ready(info) => Err(info),
            Claim::Wait(ticket) => {
                let (tx, rx) = oneshot::channel();
                b.waiters.insert(ticket, tx);
                Ok((ticket, rx))
            }
        }) {
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
            BrokerListen::Unix { dir, group } => Listener::unix(dir.as_deref(), group.as_deref()),
            BrokerListen::Tcp(ports) => Listener::tcp(ports.clone()).await,
        }
        .map_err(BrokerError::Listen)
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

/// A brokered server. Dropping it stops the server (in-flight calls get a moment to finish) and
/// closes its listener; [`BrokeredServer::detach`] keeps it running until the broker closes.
#[derive(Debug)]
pub struct BrokeredServer {
    id: u32,
    stop: CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
    accept_loop: Option<tokio::task::JoinHandle<()>>,
    broker: Broker,
}

impl BrokeredServer {
    /// The broker id it serves.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// Keeps serving until the broker closes (go-plugin's `go AcceptAndServe(...)`).
    pub fn detach(mut self) {
        if let (Some(task), accept_loop) = (self.task.take(), self.accept_loop.take()) {
            let broker = self.broker.clone();
            let id = self.id;
            tokio::spawn(async move {
                let _ = task.await;
                if let Some(accept_loop) = accept_loop {
                    accept_loop.abort();
                }
                broker.forget(id);
            });
        }
    }

    /// Stops the server and waits until it has stopped.
    pub async fn stop(mut self) {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
        self.cleanup();
    }

    fn cleanup(&mut self) {
        if let Some(accept_loop) = self.accept_loop.take() {
            accept_loop.abort();
        }
        self.broker.forget(self.id);
    }
}

impl Drop for BrokeredServer {
    fn drop(&mut self) {
        if self.task.is_some() {
            self.stop.cancel();
            self.cleanup();
        }
    }
}

impl Broker {
    fn forget(&self, id: u32) {
        if self.shared.config.multiplex {
            self.with_router(|r| r.unlisten(id));
            self.with_book(|b| b.knocks.stop(id));
        }
    }
}

/// The broker's clock: the runtime's (paused in tests), as the bookkeeping's `Instant`.
fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

async fn serve_brokered(
    routes: Routes,
    incoming: transport::Incoming,
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
    let server = transport::server()
        .add_routes(routes)
        .serve_with_incoming_shutdown(incoming, stopping);
    let grace = async {
        tokio::select! {
            () = stop.cancelled() => {}
            () = closed.cancelled() => {}
        }
        tokio::time::sleep(STOP_GRACE).await;
    };
    tokio::select! {
        result = server => {
            if let Err(e) = result {
                tracing::debug!(error = %e, "brokered server failed");
            }
        }
        () = grace => tracing::debug!("brokered calls still running after the stop grace period"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(id: u32, address: &str) -> ConnInfo {
        ConnInfo {
            service_id: id,
            network: "unix".into(),
            address: address.into(),
            knock: None,
        }
    }

    #[test]
    fn conninfo_before_dial_is_kept_one_per_id_then_expires() {
        let t0 = Instant::now();
        let mut mailbox = Mailbox::default();
        assert_eq!(mailbox.deliver(info(1, "/a"), t0), Delivery::Held);
        assert_eq!(mailbox.deliver(info(1, "/b"), t0), Delivery::Dropped);
        match mailbox.claim(1, t0 + Duration::from_secs(4)) {
            Claim::Ready(got) => assert_eq!(got.address, "/a", "the first one wins, as in Go"),
            Claim::Wait(_) => panic!("held message not found"),
        }
        // A ConnInfo for an id nobody dials is forgotten after 5 s.
        mailbox.deliver(info(7, "/x"), t0);
        mailbox.purge(t0 + BROKER_TIMEOUT);
        assert!(mailbox.is_empty());
        assert!(matches!(
            mailbox.claim(7, t0 + BROKER_TIMEOUT),
            Claim::Wait(_)
        ));
    }

    #[test]
    fn dial_before_conninfo_receives_it() {
        let t0 = Instant::now();
        let mut mailbox = Mailbox::default();
        let Claim::Wait(ticket) = mailbox.claim(3, t0) else {
            panic!("nothing arrived yet");
        };
        let info3 = info(3, "/c");
        assert_eq!(
            mailbox.deliver(info3.clone(), t0),
            Delivery::To(ticket, info3)
        );
        assert!(mailbox.is_empty());
        // An abandoned wait does not swallow a later message.
        let Claim::Wait(ticket) = mailbox.claim(4, t0) else {
            panic!("nothing arrived yet");
        };
        mailbox.abandon(4, ticket);
        assert_eq!(mailbox.deliver(info(4, "/d"), t0), Delivery::Held);
    }

    /// Two dialers of one id: the first in line gets the message, the second keeps waiting (and
    /// its giving up later does not disturb anything), as go-plugin's first `Dial` succeeds.
    #[test]
    fn two_dials_of_one_id_wait_in_line() {
        let t0 = Instant::now();
        let mut mailbox = Mailbox::default();
        let (Claim::Wait(first), Claim::Wait(second)) =
            (mailbox.claim(1, t0), mailbox.claim(1, t0))
        else {
            panic!("nothing arrived yet");
        };
        assert_ne!(first, second);
        let later = t0 + Duration::from_millis(50);
        let info1 = info(1, "/a");
        assert_eq!(
            mailbox.deliver(info1.clone(), later),
            Delivery::To(first, info1)
        );
        assert_eq!(mailbox.len(), 1, "the second dialer still waits");
        mailbox.abandon(1, first); // a late clean-up of the first one changes nothing
        assert_eq!(mailbox.len(), 1);
        let info2 = info(1, "/b");
        assert_eq!(
            mailbox.deliver(info2.clone(), later),
            Delivery::To(second, info2)
        );
        assert!(mailbox.is_empty());
        // The first gives up: the message goes to the second.
        let (Claim::Wait(first), Claim::Wait(second)) =
            (mailbox.claim(2, t0), mailbox.claim(2, t0))
        else {
            panic!("nothing arrived yet");
        };
        mailbox.abandon(2, first);
        let info3 = info(2, "/c");
        assert_eq!(
            mailbox.deliver(info3.clone(), later),
            Delivery::To(second, info3)
        );
    }

    /// Two dials in flight, the address 50 ms later: the first dial connects, the second times out
    /// after the full 5 s.
    #[tokio::test(start_paused = true)]
    async fn second_dial_of_one_id_times_out_alone() {
        let p = pair(false);
        let (host, plugin) = (p.host.clone(), p.plugin.clone());
        let first = tokio::spawn({
            let plugin = plugin.clone();
            async move { plugin.dial(1).await }
        });
        tokio::task::yield_now().await;
        let second = tokio::spawn(async move {
            let started = tokio::time::Instant::now();
            (plugin.dial(1).await, started.elapsed())
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        let id = host.next_id();
        let _served = host
            .accept_and_serve(id, health_routes())
            .await
            .expect("accept");
        assert!(ping(first.await.expect("join").expect("the first dial connects")).await);
        let (second, waited) = second.await.expect("join");
        assert!(
            matches!(second, Err(BrokerError::ConnInfoTimeout { id: 1 })),
            "{second:?}"
        );
        assert!(waited >= BROKER_TIMEOUT, "gave up after {waited:?}");
    }

    #[test]
    fn knocks_wait_for_accept_and_expire() {
        let t0 = Instant::now();
        let mut knocks = KnockBox::default();
        assert!(!knocks.knock(1, t0), "not accepted yet: the knock waits");
        assert!(
            knocks.accept(1, t0 + Duration::from_secs(1)),
            "accept opens the waiting knock"
        );
        assert!(knocks.knock(1, t0), "accepted ids open at once");
        assert!(!knocks.knock(2, t0));
        knocks.purge(t0 + BROKER_TIMEOUT);
        assert!(
            !knocks.accept(2, t0 + BROKER_TIMEOUT),
            "the old knock expired"
        );
        knocks.stop(1);
        knocks.stop(2);
        assert!(knocks.is_empty());
    }

    struct Pair {
        host: Broker,
        plugin: Broker,
        sockets: tempfile::TempDir,
        _tasks: Vec<tokio::task::JoinHandle<()>>,
    }

    /// Two brokers wired to each other in memory, as host and plugin.
    fn pair(multiplex: bool) -> Pair {
        pair_with(multiplex, tempfile::tempdir().expect("tempdir"), None)
    }

    /// A pair whose listeners go in `sockets`, the host translating addresses with `translator`.
    fn pair_with(
        multiplex: bool,
        sockets: tempfile::TempDir,
        translator: Option<Arc<dyn AddressTranslator>>,
    ) -> Pair {
        use futures_util::StreamExt as _;
        let config = |role| BrokerConfig {
            role,
            tls: TlsConfigs::default(),
            listen: BrokerListen::Unix {
                dir: Some(sockets.path().to_path_buf()),
                group: None,
            },
            translator: if role == Role::Host {
                translator.clone()
            } else {
                None
            },
            multiplex,
            on_peer_socket: None,
        };
        let host = Broker::new(config(Role::Host));
        let plugin = Broker::new(config(Role::Plugin));
        let wire = |from: &Broker, to: &Broker| {
            let mut out = Box::pin(from.outbound());
            let to = to.clone();
            tokio::spawn(async move {
                while let Some(info) = out.next().await {
                    to.handle_inbound(info);
                }
            })
        };
        let mut tasks = vec![wire(&host, &plugin), wire(&plugin, &host)];
        if multiplex {
            let (a, b) = tokio::io::duplex(1 << 20);
            host.start_session(BoxedIo::new(a), None);
            let (tx, mut main) = transport::incoming();
            plugin.start_session(BoxedIo::new(b), Some(tx));
            tasks.push(tokio::spawn(
                async move { while main.next().await.is_some() {} },
            ));
        }
        Pair {
            host,
            plugin,
            sockets,
            _tasks: tasks,
        }
    }

    async fn ping(channel: Channel) -> bool {
        let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
        health
            .check(tonic_health::pb::HealthCheckRequest::default())
            .await
            .is_ok()
    }

    fn health_routes() -> Routes {
        Routes::new(tonic_health::server::health_reporter().1)
    }

    async fn both_directions(multiplex: bool) {
        let p = pair(multiplex);
        let (host, plugin) = (p.host.clone(), p.plugin.clone());
        // The host serves, the plugin dials.
        let id = host.next_id();
        assert_eq!(id, 1);
        let served = host
            .accept_and_serve(id, health_routes())
            .await
            .expect("accept");
        assert!(ping(plugin.dial(id).await.expect("plugin dials")).await);
        drop(served);
        // The plugin serves, the host dials; ids are counted per side.
        let id = plugin.next_id();
        assert_eq!(id, 1);
        plugin
            .accept_and_serve(id, health_routes())
            .await
            .expect("accept")
            .detach();
        assert!(ping(host.dial(id).await.expect("host dials")).await);
        host.close();
        plugin.close();
    }

    #[tokio::test]
    async fn plain_brokering_both_directions() {
        both_directions(false).await;
    }

    #[tokio::test]
    async fn multiplexed_brokering_both_directions() {
        both_directions(true).await;
    }

    /// The plugin sees host sockets through a symlinked directory (as a container would through
    /// a bind mount): the host translates both ways.
    struct ViaLink {
        real: std::path::PathBuf,
        link: std::path::PathBuf,
        calls: AtomicU32,
    }

    impl AddressTranslator for ViaLink {
        fn plugin_to_host(&self, network: &str, address: &str) -> io::Result<(String, String)> {
            self.calls.fetch_add(1, Ordering::Relaxed);
            let real = address.replace(&*self.link.to_string_lossy(), &self.real.to_string_lossy());
            Ok((network.to_owned(), real))
        }
        fn host_to_plugin(&self, network: &str, address: &str) -> io::Result<(String, String)> {
            self.calls.fetch_add(1, Ordering::Relaxed);
            let seen = address.replace(&*self.real.to_string_lossy(), &self.link.to_string_lossy());
            Ok((network.to_owned(), seen))
        }
    }

    #[tokio::test]
    async fn host_translates_brokered_addresses() {
        let sockets = tempfile::tempdir().expect("tempdir");
        let links = tempfile::tempdir().expect("tempdir");
        let link = links.path().join("seen-by-plugin");
        std::os::unix::fs::symlink(sockets.path(), &link).expect("symlink");
        let translator = Arc::new(ViaLink {
            real: sockets.path().to_path_buf(),
            link,
            calls: AtomicU32::new(0),
        });
        let p = pair_with(false, sockets, Some(translator.clone()));
        // The host serves; the plugin only learns the symlinked path.
        let id = p.host.next_id();
        let _served = p
            .host
            .accept_and_serve(id, health_routes())
            .await
            .expect("accept");
        assert!(ping(p.plugin.dial(id).await.expect("the plugin dials the link")).await);
        // The plugin serves; the host maps its address back (identity here).
        let id = p.plugin.next_id();
        p.plugin
            .accept_and_serve(id, health_routes())
            .await
            .expect("accept")
            .detach();
        assert!(ping(p.host.dial(id).await.expect("the host dials")).await);
        assert_eq!(translator.calls.load(Ordering::Relaxed), 2);
    }

    /// A dial for an id nobody accepts fails after 5 s with go-plugin's texts.
    #[tokio::test(start_paused = true)]
    async fn dialing_an_unaccepted_id_times_out() {
        let plain = pair(false);
        let err = plain.host.dial(99).await.expect_err("nobody serves 99");
        assert!(
            matches!(err, BrokerError::ConnInfoTimeout { id: 99 }),
            "{err}"
        );

        let mux = pair(true);
        let err = mux.host.dial(99).await.expect_err("nobody serves 99");
        let chain = crate::error_chain(&err);
        assert!(
            chain.contains(
                "failed to knock before dialling client: timeout waiting for multiplexing knock handshake on id 99"
            ),
            "{chain}"
        );
    }

    /// Many brokered connections in a row leave no bookkeeping, listener or socket behind.
    #[tokio::test]
    async fn repeated_brokering_leaves_nothing_behind() {
        for multiplex in [false, true] {
            let p = pair(multiplex);
            for _ in 0..50 {
                let id = p.host.next_id();
                let served = p
                    .host
                    .accept_and_serve(id, health_routes())
                    .await
                    .expect("accept");
                let channel = p.plugin.dial(id).await.expect("dial");
                assert!(ping(channel).await);
                served.stop().await;
            }
            assert_eq!(p.host.pending(), 0);
            assert_eq!(p.plugin.pending(), 0);
            let left = std::fs::read_dir(p.sockets.path()).expect("dir").count();
            assert_eq!(left, 0, "listeners removed their sockets");
        }
    }
}

//! go-plugin's `MuxBroker`: further yamux streams of a netrpc session, matched by id.
//!
//! The opener writes the id as 4 bytes little-endian; the acceptor, once the application
//! accepts that id, writes the same 4 bytes back, and the opener checks them. A stream whose id
//! nobody accepts within [`BROKER_TIMEOUT`] is closed, and an `accept` that waits that long
//! fails, as in go-plugin. Which stream waits for whom is `plugwire_protocol::broker::Mailbox`'s
//! bookkeeping; this module does the I/O.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use plugwire_protocol::broker::{BROKER_TIMEOUT, Claim, Delivery, Mailbox, Ticket};
use plugwire_protocol::gob::Limits;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::guarded::Guarded;
use crate::yamux::{self, Stream};

/// How long a dialer waits for the acceptor's acknowledgement: the acceptor has
/// [`BROKER_TIMEOUT`] to accept once the stream arrived, then answers at once.
const ACK_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a broker operation failed. The texts of the go-plugin cases are go-plugin's.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MuxBrokerError {
    /// No stream for the id arrived within [`BROKER_TIMEOUT`].
    #[error("timeout waiting for accept")]
    AcceptTimeout,
    /// The acceptor answered with another id.
    #[error("bad ack: {got} (expected {expected})")]
    BadAck {
        /// The id that came back.
        got: u32,
        /// The id dialled.
        expected: u32,
    },
    /// The acceptor did not acknowledge within 10 s.
    #[error("no acknowledgement for broker id {0} within 10 s: is the peer accepting it?")]
    AckTimeout(u32),
    /// The broker (or the session under it) is closed.
    #[error("the plugin connection is closed")]
    Closed,
    /// The session could not open a stream.
    #[error("could not open a stream: {0}")]
    Session(#[from] yamux::Error),
    /// Reading or writing the id failed.
    #[error("broker stream: {0}")]
    Io(#[from] std::io::Error),
}

/// go-plugin's `MuxBroker`, for one netrpc connection: reserve ids, accept and serve streams
/// under them, or dial the peer's. Cheap to clone; clones share the broker.
///
/// ```no_run
/// # async fn f(broker: plugwire_runtime::netrpc::MuxBroker) -> Result<(), Box<dyn std::error::Error>> {
/// use std::sync::Arc;
/// use plugwire_runtime::netrpc::{Server, ServiceError};
///
/// // Serve a callback object under a new id, and pass the id to the peer in a call.
/// let mut server = Server::new();
/// server.register("Plugin.Pong", |n: i64| async move { Ok::<_, ServiceError>(n + 1) });
/// let id = broker.next_id();
/// let serving = tokio::spawn({
///     let broker = broker.clone();
///     async move { broker.accept_and_serve(id, Arc::new(server)).await }
/// });
/// // ... the peer dials `id` ...
/// let client = broker.dial_client(7).await?; // a net/rpc client of what the peer serves as 7
/// let reply: i64 = client.call("Plugin.Ping", &1i64).await?;
/// # let _ = (serving, reply); Ok(()) }
/// ```
#[derive(Clone)]
pub struct MuxBroker {
    shared: Arc<Shared>,
}

struct Shared {
    control: yamux::Control,
    next_id: AtomicU32,
    book: Mutex<Book>,
    closed: CancellationToken,
    limits: Limits,
}

#[derive(Default)]
struct Book {
    mailbox: Mailbox<Stream>,
    waiters: HashMap<Ticket, oneshot::Sender<Stream>>,
}

impl std::fmt::Debug for MuxBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MuxBroker")
            .field("next_id", &self.shared.next_id.load(Ordering::Relaxed))
            .field("closed", &self.is_closed())
            .finish_non_exhaustive()
    }
}

impl MuxBroker {
    /// Brokers `session`'s further inbound streams (after the three a session starts with).
    /// The broker runs until [`MuxBroker::close`] or until the session ends.
    pub fn start(session: yamux::Session, limits: Limits) -> MuxBroker {
        let broker = MuxBroker {
            shared: Arc::new(Shared {
                control: session.control(),
                next_id: AtomicU32::new(0),
                book: Mutex::new(Book::default()),
                closed: CancellationToken::new(),
                limits,
            }),
        };
        tokio::spawn(run(broker.clone(), session));
        broker
    }

    /// A new id to accept under (go-plugin's `NextId`: 1, 2, …).
    pub fn next_id(&self) -> u32 {
        self.shared
            .next_id
            .fetch_add(1, Ordering::Relaxed)
            .wrapping_add(1)
    }

    /// Waits (at most [`BROKER_TIMEOUT`]) for the peer's stream for `id`, and acknowledges it.
    ///
    /// # Errors
    ///
    /// [`MuxBrokerError::AcceptTimeout`] (go-plugin's `timeout waiting for accept`), or
    /// [`MuxBrokerError::Closed`].
    pub async fn accept(&self, id: u32) -> Result<Stream, MuxBrokerError> {
        let waiting = self.with_book(|b| match b.mailbox.claim(id, Instant::now()) {
            Claim::Ready(stream) => Err(stream),
            Claim::Wait(ticket) => {
                let (tx, rx) = oneshot::channel();
                b.waiters.insert(ticket, tx);
                Ok((ticket, rx))
            }
        });
        let mut stream = match waiting {
            Err(stream) => stream,
            Ok((ticket, rx)) => {
                // Leaves the line however this wait ends, the future dropped included.
                let _waiting = Waiting {
                    broker: self,
                    id,
                    ticket,
                };
                let received = tokio::select! {
                    r = tokio::time::timeout(BROKER_TIMEOUT, rx) => r.ok().and_then(Result::ok),
                    () = self.shared.closed.cancelled() => None,
                };
                match received {
                    Some(stream) => stream,
                    None if self.is_closed() => return Err(MuxBrokerError::Closed),
                    None => return Err(MuxBrokerError::AcceptTimeout),
                }
            }
        };
        stream.write_all(&id.to_le_bytes()).await?;
        stream.flush().await?;
        Ok(stream)
    }

    /// Accepts `id` and serves `server` on the stream (go-plugin's `AcceptAndServe`, whose
    /// service is always named `Plugin`), until the peer closes it or the broker closes.
    ///
    /// # Errors
    ///
    /// As [`MuxBroker::accept`]; once serving, the connection's end is not an error.
    pub async fn accept_and_serve(
        &self,
        id: u32,
        server: Arc<go_netrpc::Server>,
    ) -> Result<(), MuxBrokerError> {
        let stream = self.accept(id).await?;
        self.serve(stream, server).await;
        Ok(())
    }

    /// Serves `server` on an accepted stream until either side ends it.
    pub async fn serve(&self, stream: Stream, server: Arc<go_netrpc::Server>) {
        let io = Guarded::new(stream, self.shared.limits.clone());
        tokio::select! {
            r = server.serve(io) => {
                if let Err(e) = r {
                    tracing::debug!(error = %e, "net/rpc connection ended");
                }
            }
            () = self.shared.closed.cancelled() => {}
        }
    }

    /// Opens a stream to the peer's `id` and checks its acknowledgement (go-plugin's `Dial`).
    ///
    /// # Errors
    ///
    /// [`MuxBrokerError::BadAck`] (go-plugin's `bad ack: X (expected Y)`), a closed stream or
    /// session, or no acknowledgement within 10 s.
    pub async fn dial(&self, id: u32) -> Result<Stream, MuxBrokerError> {
        if self.is_closed() {
            return Err(MuxBrokerError::Closed);
        }
        let mut stream = self.shared.control.open().await?;
        stream.write_all(&id.to_le_bytes()).await?;
        stream.flush().await?;
        let mut ack = [0u8; 4];
        tokio::select! {
            r = tokio::time::timeout(ACK_TIMEOUT, stream.read_exact(&mut ack)) => match r {
                Ok(r) => r.map(drop)?,
                Err(_) => return Err(MuxBrokerError::AckTimeout(id)),
            },
            () = self.shared.closed.cancelled() => return Err(MuxBrokerError::Closed),
        }
        let got = u32::from_le_bytes(ack);
        if got != id {
            return Err(MuxBrokerError::BadAck { got, expected: id });
        }
        Ok(stream)
    }

    /// Dials `id` and starts a net/rpc client on the stream, its replies checked by the gob
    /// guard (go-plugin's `rpc.NewClient(broker.Dial(id))`).
    ///
    /// # Errors
    ///
    /// As [`MuxBroker::dial`].
    pub async fn dial_client(&self, id: u32) -> Result<go_netrpc::Client, MuxBrokerError> {
        let stream = self.dial(id).await?;
        Ok(self.client(stream))
    }

    /// A net/rpc client on `stream`, its replies checked by the gob guard.
    pub fn client(&self, stream: Stream) -> go_netrpc::Client {
        go_netrpc::Client::new(Guarded::new(stream, self.shared.limits.clone()))
    }

    /// Stops brokering: waiting accepts and dials fail, served streams end, and streams not yet
    /// accepted are closed. The session itself stays up until its owner closes it.
    pub fn close(&self) {
        self.shared.closed.cancel();
        let held = std::mem::take(&mut *self.lock_book());
        drop(held);
    }

    /// Whether [`MuxBroker::close`] was called or the session ended.
    pub fn is_closed(&self) -> bool {
        self.shared.closed.is_cancelled() || self.shared.control.is_closed()
    }

    /// The limits the gob guard applies to what the peer sends.
    pub fn limits(&self) -> &Limits {
        &self.shared.limits
    }

    /// Streams (and dialers) waiting to be matched.
    pub fn pending(&self) -> usize {
        self.lock_book().mailbox.len()
    }

    fn lock_book(&self) -> std::sync::MutexGuard<'_, Book> {
        self.shared
            .book
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn with_book<T>(&self, f: impl FnOnce(&mut Book) -> T) -> T {
        f(&mut self.lock_book())
    }

    /// A stream for `id` arrived: to its waiting acceptor, else held until one comes.
    fn deliver(&self, id: u32, stream: Stream) {
        let mut book = self.lock_book();
        let mut delivery = book.mailbox.deliver(id, stream, Instant::now());
        // A waiter that went away meanwhile: deliver again (to the next one, or hold it).
        while let Delivery::To(ticket, stream) = delivery {
            let unsent = match book.waiters.remove(&ticket) {
                Some(tx) => match tx.send(stream) {
                    Ok(()) => return,
                    Err(stream) => stream,
                },
                None => stream,
            };
            delivery = book.mailbox.deliver(id, unsent, Instant::now());
        }
        if matches!(delivery, Delivery::Dropped) {
            // go-plugin keeps only the first stream per id too.
            tracing::debug!(id, "a second broker stream for one id was closed");
        }
    }

    fn purge(&self) {
        self.lock_book().mailbox.purge(Instant::now());
    }
}

/// An acceptor in a [`Mailbox`] line; leaves it when dropped.
struct Waiting<'a> {
    broker: &'a MuxBroker,
    id: u32,
    ticket: Ticket,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.broker.with_book(|b| {
            b.mailbox.abandon(self.id, self.ticket);
            b.waiters.remove(&self.ticket);
        });
    }
}

/// go-plugin's `MuxBroker.Run`: every inbound stream starts with its id. Each is read on its own
/// (a stream that never sends its id holds up no other), with a bound.
async fn run(broker: MuxBroker, mut session: yamux::Session) {
    let mut reading = JoinSet::new();
    let mut purge = tokio::time::interval(BROKER_TIMEOUT / 5);
    purge.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            accepted = session.accept() => match accepted {
                Ok(mut stream) => {
                    reading.spawn(async move {
                        let mut id = [0u8; 4];
                        match tokio::time::timeout(BROKER_TIMEOUT, stream.read_exact(&mut id)).await {
                            Ok(Ok(_)) => Some((u32::from_le_bytes(id), stream)),
                            _ => None,
                        }
                    });
                }
                Err(e) => {
                    tracing::debug!(error = %e, "netrpc session ended");
                    break;
                }
            },
            Some(read) = reading.join_next() => {
                if let Ok(Some((id, stream))) = read {
                    broker.deliver(id, stream);
                }
            }
            _ = purge.tick() => broker.purge(),
            () = broker.shared.closed.cancelled() => break,
        }
    }
    broker.shared.closed.cancel();
    broker.close();
}

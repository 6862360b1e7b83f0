//! The session: shared state, and the application's handles [`Session`] (accepts inbound
//! streams) and [`Control`] (opens streams, pings, closes; cheap to clone).
//!
//! All protocol state sits behind one mutex ([`Shared::lock`]), held only for short,
//! non-blocking sections. A single driver task (see `driver.rs`) owns the connection: it reads
//! frames, writes frames and runs the timers. It ends when the session ends, and the session
//! ends (gracefully, with GoAway) once every handle — `Session`, `Control`s and `Stream`s — is
//! dropped.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::future::poll_fn;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{Notify, Semaphore, oneshot, watch};
use tokio::time::Instant;

use super::config::Config;
use super::driver;
use super::error::Error;
use super::frame::{Flags, GoAwayCode, Header};
use super::stream::{HandleState, Stream, StreamState};

/// Session-level frames (ping replies, refusals) queued beyond this make the reader wait for the
/// writer, so a peer that floods pings but does not read cannot grow our memory.
pub(crate) const CTRL_QUEUE_LIMIT: usize = 1024;

/// Where the session is in its life.
pub(crate) enum Phase {
    Open,
    /// Closing gracefully: the writer flushes what is queued (GoAway last), then the session ends;
    /// `deadline` bounds the flush.
    Closing {
        reason: Error,
        deadline: Instant,
    },
    Closed(Error),
}

impl Phase {
    /// Why the session is no longer open, if it is not.
    pub(crate) fn reason(&self) -> Option<&Error> {
        match self {
            Phase::Open => None,
            Phase::Closing { reason, .. } | Phase::Closed(reason) => Some(reason),
        }
    }
}

/// Who waits for a ping reply.
pub(crate) enum PingWaiter {
    Keepalive,
    User(oneshot::Sender<()>),
}

/// All mutable session state.
pub(crate) struct State {
    client: bool,
    next_id: u32,
    next_serial: u64,
    pub(crate) streams: HashMap<u32, StreamState>,
    accept_queue: VecDeque<u32>,
    accept_waker: Option<Waker>,
    acceptor_alive: bool,
    /// Session-level frames to send (pings, GoAway, RST for refused streams).
    pub(crate) ctrl: VecDeque<Header>,
    /// Streams with something to send, in turn order.
    pub(crate) ready: VecDeque<u32>,
    pub(crate) writer_waker: Option<Waker>,
    /// The reader, waiting for `ctrl` to drain below [`CTRL_QUEUE_LIMIT`].
    pub(crate) reader_waker: Option<Waker>,
    /// Open slots (`accept_backlog` outbound streams awaiting their ACK).
    syn_slots: Arc<Semaphore>,
    /// (deadline, id, serial) of outbound streams awaiting their ACK, oldest first.
    pub(crate) open_deadlines: VecDeque<(Instant, u32, u64)>,
    /// (deadline, id, serial) of dropped streams waiting for the peer's FIN, oldest first.
    pub(crate) close_deadlines: VecDeque<(Instant, u32, u64)>,
    pub(crate) pings: HashMap<u32, PingWaiter>,
    next_ping: u32,
    /// When the next keepalive ping is due (`None`: keepalive off).
    pub(crate) keepalive_at: Option<Instant>,
    /// The keepalive ping in flight and its deadline.
    pub(crate) keepalive_outstanding: Option<(u32, Instant)>,
    pub(crate) local_go_away: bool,
    pub(crate) remote_go_away: bool,
    /// The GoAway a graceful close sends after everything else.
    pub(crate) final_go_away: Option<GoAwayCode>,
    pub(crate) phase: Phase,
    accept_backlog: usize,
    max_window: u32,
    write_timeout: Duration,
}

impl State {
    fn new(config: &Config, client: bool) -> Self {
        State {
            client,
            next_id: if client { 1 } else { 2 },
            next_serial: 0,
            streams: HashMap::new(),
            accept_queue: VecDeque::new(),
            accept_waker: None,
            acceptor_alive: true,
            ctrl: VecDeque::new(),
            ready: VecDeque::new(),
            writer_waker: None,
            reader_waker: None,
            syn_slots: Arc::new(Semaphore::new(config.accept_backlog)),
            open_deadlines: VecDeque::new(),
            close_deadlines: VecDeque::new(),
            pings: HashMap::new(),
            next_ping: 0,
            keepalive_at: config
                .enable_keepalive
                .then(|| Instant::now() + config.keepalive_interval),
            keepalive_outstanding: None,
            local_go_away: false,
            remote_go_away: false,
            final_go_away: None,
            phase: Phase::Open,
            accept_backlog: config.accept_backlog,
            max_window: config.max_stream_window,
            write_timeout: config.connection_write_timeout,
        }
    }

    pub(crate) fn wake_writer(&mut self) {
        if let Some(w) = self.writer_waker.take() {
            w.wake();
        }
    }

    /// Queues a session-level frame.
    pub(crate) fn push_ctrl(&mut self, h: Header) {
        self.ctrl.push_back(h);
        self.wake_writer();
    }

    /// Puts stream `id` in the writer's queue if it has something to send.
    pub(crate) fn schedule(&mut self, id: u32) {
        let Some(s) = self.streams.get_mut(&id) else {
            return;
        };
        if !s.queued && s.needs_write() {
            s.queued = true;
            self.ready.push_back(id);
            self.wake_writer();
        }
    }

    /// Gives an open slot back.
    pub(crate) fn release_slot(&self) {
        self.syn_slots.add_permits(1);
    }

    /// Drops the entry of `id` once both the protocol and the application are done with it.
    pub(crate) fn remove_if_finished(&mut self, id: u32) {
        if !self.streams.get(&id).is_some_and(StreamState::is_finished) {
            return;
        }
        if let Some(mut s) = self.streams.remove(&id)
            && s.take_slot()
        {
            self.release_slot();
        }
    }

    pub(crate) fn add_close_deadline(&mut self, timeout: Duration, id: u32, serial: u64) {
        self.close_deadlines
            .push_back((Instant::now() + timeout, id, serial));
    }

    /// A ping id not in use.
    pub(crate) fn alloc_ping_id(&mut self) -> u32 {
        loop {
            let id = self.next_ping;
            self.next_ping = self.next_ping.wrapping_add(1);
            if !self.pings.contains_key(&id) {
                return id;
            }
        }
    }

    /// Whether a new outbound stream may be opened.
    fn check_open(&self) -> Result<(), Error> {
        if let Some(reason) = self.phase.reason() {
            return Err(reason.clone());
        }
        if self.remote_go_away {
            return Err(Error::RemoteGoAway);
        }
        Ok(())
    }

    /// An inbound SYN. Creates the stream and queues its ACK at once (eager ACK, so the peer's
    /// `StreamOpenTimeout` never fires), or refuses it with RST when we sent GoAway, nobody can
    /// accept any more, or the accept backlog is full.
    pub(crate) fn incoming_stream(&mut self, id: u32) -> Result<(), super::error::ProtocolError> {
        let peer_parity = if self.client { 0 } else { 1 };
        if id == 0 || id % 2 != peer_parity {
            return Err(super::error::ProtocolError::InvalidStreamId(id));
        }
        if self.streams.contains_key(&id) {
            return Err(super::error::ProtocolError::DuplicateStream(id));
        }
        let refuse = if self.local_go_away || !matches!(self.phase, Phase::Open) {
            Some("go away sent")
        } else if !self.acceptor_alive {
            Some("session handle dropped, nobody accepts")
        } else if self.accept_queue.len() >= self.accept_backlog {
            Some("backlog exceeded")
        } else {
            None
        };
        if let Some(why) = refuse {
            tracing::warn!(
                stream = id,
                "yamux: refusing inbound stream with RST: {why}"
            );
            self.push_ctrl(Header::window_update(id, Flags::RST, 0));
            return Ok(());
        }
        let serial = self.next_serial;
        self.next_serial += 1;
        self.streams
            .insert(id, StreamState::inbound(serial, self.max_window));
        self.accept_queue.push_back(id);
        if let Some(w) = self.accept_waker.take() {
            w.wake();
        }
        self.schedule(id);
        Ok(())
    }

    /// Starts a graceful close: no new streams; queued frames (stream data included), then
    /// GoAway(`code`), are flushed within `connection_write_timeout`; then the session ends with
    /// `reason`. A GoAway(normal) already sent by `go_away` is not repeated.
    pub(crate) fn begin_close(&mut self, reason: Error, code: GoAwayCode) {
        if !matches!(self.phase, Phase::Open) {
            return;
        }
        tracing::debug!(%reason, "yamux: closing session");
        self.phase = Phase::Closing {
            reason,
            deadline: Instant::now() + self.write_timeout,
        };
        if code != GoAwayCode::Normal || !self.local_go_away {
            self.final_go_away = Some(code);
        }
        self.local_go_away = true;
        self.wake_writer();
        self.syn_slots.close();
        if let Some(w) = self.accept_waker.take() {
            w.wake();
        }
        if let Some(w) = self.reader_waker.take() {
            w.wake();
        }
    }

    /// The end: records `reason` (a graceful close keeps its own), fails every waiter and drops
    /// what no handle needs any more.
    pub(crate) fn finish(&mut self, hard: Error) -> Error {
        let reason = match &self.phase {
            Phase::Closing { reason, .. } | Phase::Closed(reason) => reason.clone(),
            Phase::Open => hard,
        };
        self.phase = Phase::Closed(reason.clone());
        self.syn_slots.close();
        self.ctrl.clear();
        self.ready.clear();
        self.pings.clear();
        self.open_deadlines.clear();
        self.close_deadlines.clear();
        self.accept_queue.clear();
        self.streams.retain(|_, s| {
            s.send_buf.clear();
            s.wake_all();
            s.handle == HandleState::Live
        });
        for w in [
            self.accept_waker.take(),
            self.writer_waker.take(),
            self.reader_waker.take(),
        ]
        .into_iter()
        .flatten()
        {
            w.wake();
        }
        reason
    }
}

/// State shared by the handles and the driver task.
pub(crate) struct Shared {
    pub(crate) config: Config,
    state: Mutex<State>,
    /// Wakes the timer loop when a new deadline appears.
    pub(crate) timers: Notify,
    closed: watch::Sender<Option<Error>>,
    /// Live handles (`Session`, `Control`s, `Stream`s).
    handles: AtomicUsize,
}

impl Shared {
    /// The session lock. A panic while holding it cannot leave the state torn in a way that
    /// matters more than a stuck session, so poisoning is ignored.
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records the end of the session (by the driver; later calls change nothing).
    pub(crate) fn finish(&self, hard: Error) {
        let reason = {
            let mut st = self.lock();
            if matches!(st.phase, Phase::Closed(_)) {
                return;
            }
            st.finish(hard)
        };
        tracing::debug!(%reason, "yamux: session ended");
        self.closed.send_replace(Some(reason));
    }

    fn reason(&self) -> Error {
        let st = self.lock();
        st.phase.reason().cloned().unwrap_or(Error::SessionShutdown)
    }
}

/// A counted reference to the session; when the last one goes, the session closes.
pub(crate) struct HandleRef(Arc<Shared>);

impl HandleRef {
    fn first(shared: Arc<Shared>) -> Self {
        shared.handles.store(1, Ordering::SeqCst);
        HandleRef(shared)
    }

    pub(crate) fn shared(&self) -> &Shared {
        &self.0
    }
}

impl Clone for HandleRef {
    fn clone(&self) -> Self {
        self.0.handles.fetch_add(1, Ordering::SeqCst);
        HandleRef(self.0.clone())
    }
}

impl Drop for HandleRef {
    fn drop(&mut self) {
        if self.0.handles.fetch_sub(1, Ordering::SeqCst) == 1 {
            let mut st = self.0.lock();
            st.begin_close(Error::SessionShutdown, GoAwayCode::Normal);
            drop(st);
            self.0.timers.notify_one();
        }
    }
}

/// A cloneable handle to open streams and manage the session.
#[derive(Clone)]
pub struct Control {
    handle: HandleRef,
}

impl fmt::Debug for Control {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Control").finish_non_exhaustive()
    }
}

impl Control {
    fn shared(&self) -> &Shared {
        self.handle.shared()
    }

    /// Opens a stream. Its SYN is queued at once (before any data; streams are announced in
    /// the order they are opened). Waits while `accept_backlog` opened streams await their ACK.
    /// Fails after the peer's GoAway ([`Error::RemoteGoAway`]) or once the session is closing.
    pub async fn open(&self) -> Result<Stream, Error> {
        let shared = self.shared();
        let slots = {
            let st = shared.lock();
            st.check_open()?;
            st.syn_slots.clone()
        };
        match slots.acquire().await {
            Ok(permit) => permit.forget(),
            Err(_) => return Err(shared.reason()),
        }
        let mut st = shared.lock();
        if let Err(e) = st.check_open() {
            st.release_slot();
            return Err(e);
        }
        let id = st.next_id;
        if id >= u32::MAX - 1 {
            st.release_slot();
            return Err(Error::StreamsExhausted);
        }
        st.next_id = id + 2;
        let serial = st.next_serial;
        st.next_serial += 1;
        st.streams.insert(
            id,
            StreamState::outbound(serial, shared.config.max_stream_window),
        );
        st.schedule(id);
        if let Some(t) = shared.config.stream_open_timeout {
            st.open_deadlines
                .push_back((Instant::now() + t, id, serial));
            drop(st);
            shared.timers.notify_one();
        }
        Ok(Stream::new(self.handle.clone(), id))
    }

    /// Sends a ping and waits for its answer; returns the round-trip time. Fails with
    /// [`Error::PingTimeout`] after `connection_write_timeout`.
    pub async fn ping(&self) -> Result<Duration, Error> {
        let shared = self.shared();
        let (tx, rx) = oneshot::channel();
        let id = {
            let mut st = shared.lock();
            if let Some(reason) = st.phase.reason() {
                return Err(reason.clone());
            }
            let id = st.alloc_ping_id();
            st.pings.insert(id, PingWaiter::User(tx));
            st.push_ctrl(Header::ping(Flags::SYN, id));
            id
        };
        // Forget the entry however this future ends.
        struct Forget<'a>(&'a Shared, u32);
        impl Drop for Forget<'_> {
            fn drop(&mut self) {
                let mut st = self.0.lock();
                if matches!(st.pings.get(&self.1), Some(PingWaiter::User(_))) {
                    st.pings.remove(&self.1);
                }
            }
        }
        let _forget = Forget(shared, id);
        let start = Instant::now();
        match tokio::time::timeout(shared.config.connection_write_timeout, rx).await {
            Ok(Ok(())) => Ok(start.elapsed()),
            Ok(Err(_)) => Err(shared.reason()),
            Err(_) => Err(Error::PingTimeout),
        }
    }

    /// Sends GoAway(normal): the peer may open no more streams (we refuse new SYNs with RST);
    /// existing streams go on. The session stays open.
    pub fn go_away(&self) {
        let mut st = self.shared().lock();
        if matches!(st.phase, Phase::Open) && !st.local_go_away {
            st.local_go_away = true;
            st.push_ctrl(Header::go_away(GoAwayCode::Normal));
        }
    }

    /// Closes the session: pending stream data and a GoAway(normal) are flushed (bounded by
    /// `connection_write_timeout`), the connection is shut down, and every stream fails (or
    /// reads EOF if its peer had sent FIN). Returns when the session has ended.
    pub async fn close(&self) {
        self.start_close();
        self.closed().await;
    }

    /// Starts [`Control::close`] without waiting for the end: the session's driver task
    /// finishes it. For synchronous contexts, such as `Drop`.
    pub fn start_close(&self) {
        {
            let mut st = self.shared().lock();
            st.begin_close(Error::SessionShutdown, GoAwayCode::Normal);
        }
        self.shared().timers.notify_one();
    }

    /// Waits until the session has ended and returns why.
    pub async fn closed(&self) -> Error {
        let mut rx = self.shared().closed.subscribe();
        match rx.wait_for(Option::is_some).await {
            Ok(reason) => reason.clone().unwrap_or(Error::SessionShutdown),
            Err(_) => Error::SessionShutdown,
        }
    }

    /// Whether the session has ended or is closing.
    pub fn is_closed(&self) -> bool {
        !matches!(self.shared().lock().phase, Phase::Open)
    }

    /// Why the session ended or is closing, if it is.
    pub fn close_reason(&self) -> Option<Error> {
        self.shared().lock().phase.reason().cloned()
    }

    /// Number of streams in the session table (open, half-closed or lingering).
    pub fn num_streams(&self) -> usize {
        self.shared().lock().streams.len()
    }
}

/// A yamux session over one connection. It accepts inbound streams; [`control`](Self::control)
/// gives the cloneable handle that opens streams and closes the session.
///
/// Creating one spawns the driver task on the current tokio runtime. The session ends when the
/// connection fails or closes, on a protocol error, a keepalive or open timeout, an explicit
/// [`Control::close`], or when this handle, every [`Control`] and every [`Stream`] are dropped.
/// The driver task never outlives it.
pub struct Session {
    control: Control,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session").finish_non_exhaustive()
    }
}

impl Session {
    /// Starts the client side (odd stream ids; go-plugin's host).
    pub fn client<T>(io: T, config: Config) -> Result<Session, Error>
    where
        T: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        Self::start(io, config, true)
    }

    /// Starts the server side (even stream ids; go-plugin's plugin).
    pub fn server<T>(io: T, config: Config) -> Result<Session, Error>
    where
        T: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        Self::start(io, config, false)
    }

    fn start<T>(io: T, config: Config, client: bool) -> Result<Session, Error>
    where
        T: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        config.validate()?;
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| Error::NoRuntime)?;
        let shared = Arc::new(Shared {
            state: Mutex::new(State::new(&config, client)),
            config,
            timers: Notify::new(),
            closed: watch::Sender::new(None),
            handles: AtomicUsize::new(0),
        });
        runtime.spawn(driver::run(shared.clone(), io));
        Ok(Session {
            control: Control {
                handle: HandleRef::first(shared),
            },
        })
    }

    /// The handle to open streams and close the session.
    pub fn control(&self) -> Control {
        self.control.clone()
    }

    /// Waits for the next inbound stream (already ACKed when it arrived). Fails with the
    /// session's end reason once it is closing or closed.
    pub async fn accept(&mut self) -> Result<Stream, Error> {
        poll_fn(|cx| self.poll_accept(cx)).await
    }

    /// Poll form of [`accept`](Self::accept).
    pub fn poll_accept(&mut self, cx: &mut Context<'_>) -> Poll<Result<Stream, Error>> {
        let shared = self.control.shared();
        let mut st = shared.lock();
        if let Some(reason) = st.phase.reason() {
            return Poll::Ready(Err(reason.clone()));
        }
        if let Some(id) = st.accept_queue.pop_front() {
            if let Some(s) = st.streams.get_mut(&id) {
                s.handle = HandleState::Live;
            }
            drop(st);
            return Poll::Ready(Ok(Stream::new(self.control.handle.clone(), id)));
        }
        st.accept_waker = Some(cx.waker().clone());
        Poll::Pending
    }

    /// See [`Control::open`].
    pub async fn open(&self) -> Result<Stream, Error> {
        self.control.open().await
    }

    /// See [`Control::ping`].
    pub async fn ping(&self) -> Result<Duration, Error> {
        self.control.ping().await
    }

    /// See [`Control::go_away`].
    pub fn go_away(&self) {
        self.control.go_away();
    }

    /// See [`Control::close`].
    pub async fn close(&self) {
        self.control.close().await;
    }

    /// See [`Control::closed`].
    pub async fn closed(&self) -> Error {
        self.control.closed().await
    }

    /// See [`Control::is_closed`].
    pub fn is_closed(&self) -> bool {
        self.control.is_closed()
    }
}

impl Drop for Session {
    /// Nobody can accept any more: streams waiting in the accept queue are reset, and later
    /// inbound streams are refused. Open streams and `Control`s keep working.
    fn drop(&mut self) {
        let mut st = self.control.shared().lock();
        st.acceptor_alive = false;
        let queued: Vec<u32> = st.accept_queue.drain(..).collect();
        for id in queued {
            if let Some(s) = st.streams.get_mut(&id) {
                s.handle = HandleState::Dropped;
                s.local_reset();
            }
            st.schedule(id);
            st.remove_if_finished(id);
        }
    }
}

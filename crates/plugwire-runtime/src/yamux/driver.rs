//! The session driver: one task that owns the connection and runs three loops concurrently.
//!
//! * **reader** — parses frames and applies them to the session state. It never waits for a
//!   stream: data goes into the stream's buffer, which the window bounds. It only waits when
//!   too many session-level replies are queued for a writer that cannot write (backpressure
//!   against a peer that sends but does not read).
//! * **writer** — batches queued frames (session-level first, then streams in turn, one data
//!   frame each) into one buffer and writes it.
//! * **timers** — keepalive pings, the stream open timeout, the close timeout of dropped streams
//!   and the deadline of a graceful close.
//!
//! The task ends when the writer has flushed a graceful close, or at once on a transport error,
//! EOF, a fatal GoAway from the peer, a keepalive timeout or an overdue close.

use std::future::poll_fn;
use std::sync::Arc;
use std::task::Poll;

use bytes::BytesMut;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::time::Instant;

use super::error::{Error, ProtocolError};
use super::frame::{FrameType, GoAwayCode, HEADER_LEN, Header};
use super::session::{CTRL_QUEUE_LIMIT, Phase, PingWaiter, Shared, State};
use super::stream::MAX_DATA_FRAME;

/// Target size of one write to the connection.
const WRITE_BATCH: usize = 256 * 1024;

/// Capacity of the write buffer: a batch plus one more data frame.
const OUT_CAPACITY: usize = WRITE_BATCH + MAX_DATA_FRAME + 2 * HEADER_LEN;

/// Read buffer of the connection.
const READ_BUFFER: usize = 64 * 1024;

/// Fails every waiter when dropped, so that a driver future dropped early (runtime shutdown,
/// even before its first poll) or panicking never leaves handles hanging.
struct FinishOnDrop(Arc<Shared>);

impl Drop for FinishOnDrop {
    fn drop(&mut self) {
        self.0.finish(Error::SessionShutdown);
    }
}

/// The driver future: runs the session on `io` until it ends.
pub(crate) fn run<T>(shared: Arc<Shared>, io: T) -> impl Future<Output = ()> + Send + 'static
where
    T: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let guard = FinishOnDrop(shared);
    async move {
        let shared = &guard.0;
        drive(shared, io).await;
    }
}

async fn drive<T>(shared: &Shared, io: T)
where
    T: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (r, w) = tokio::io::split(io);
    let reader = reader(shared, BufReader::with_capacity(READ_BUFFER, r));
    let writer = writer(shared, w);
    let timers = timers(shared);
    tokio::pin!(reader, writer, timers);
    let mut reading = true;
    let end = loop {
        tokio::select! {
            end = &mut reader, if reading => match end {
                ReadEnd::Protocol(e) => {
                    tracing::warn!(error = %e, "yamux: protocol error, sending GoAway");
                    shared.lock().begin_close(Error::Protocol(e), GoAwayCode::ProtocolError);
                    shared.timers.notify_one();
                    reading = false;
                }
                ReadEnd::Fatal(e) => break e,
            },
            end = &mut writer => break match end {
                Ok(()) => Error::SessionShutdown,
                Err(e) => e,
            },
            e = &mut timers => break e,
        }
    };
    shared.finish(end);
}

enum ReadEnd {
    /// The peer broke the protocol: close gracefully with GoAway(protocol error).
    Protocol(ProtocolError),
    /// Stop at once.
    Fatal(Error),
}

impl From<ProtocolError> for ReadEnd {
    fn from(e: ProtocolError) -> Self {
        ReadEnd::Protocol(e)
    }
}

impl From<std::io::Error> for ReadEnd {
    fn from(e: std::io::Error) -> Self {
        ReadEnd::Fatal(Error::io(e))
    }
}

async fn reader<R>(shared: &Shared, mut r: R) -> ReadEnd
where
    R: AsyncBufRead + Unpin,
{
    loop {
        // Backpressure: wait while the writer is behind on session-level replies.
        poll_fn(|cx| {
            let mut st = shared.lock();
            if st.ctrl.len() < CTRL_QUEUE_LIMIT {
                Poll::Ready(())
            } else {
                st.reader_waker = Some(cx.waker().clone());
                Poll::Pending
            }
        })
        .await;
        let h = match read_header(&mut r).await {
            Ok(Some(b)) => match Header::decode(&b) {
                Ok(h) => h,
                Err(e) => return e.into(),
            },
            Ok(None) => return ReadEnd::Fatal(Error::ConnectionClosed),
            Err(e) => return e.into(),
        };
        tracing::trace!(?h, "yamux: frame in");
        let result = match h.typ {
            FrameType::Data | FrameType::WindowUpdate => stream_frame(shared, h, &mut r).await,
            FrameType::Ping => {
                ping_frame(shared, h);
                Ok(())
            }
            FrameType::GoAway => go_away_frame(shared, h),
        };
        if let Err(end) = result {
            return end;
        }
    }
}

/// Reads one header; `None` on a clean EOF between frames.
async fn read_header<R>(r: &mut R) -> std::io::Result<Option<[u8; HEADER_LEN]>>
where
    R: AsyncBufRead + Unpin,
{
    let mut b = [0u8; HEADER_LEN];
    let mut got = 0;
    while got < HEADER_LEN {
        let buf = r.fill_buf().await?;
        if buf.is_empty() {
            if got == 0 {
                return Ok(None);
            }
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let n = buf.len().min(HEADER_LEN - got);
        b[got..got + n].copy_from_slice(&buf[..n]);
        r.consume(n);
        got += n;
    }
    Ok(Some(b))
}

/// What to do with a data frame's payload.
enum Sink {
    Discard,
    Stream,
}

/// A Data or WindowUpdate frame: SYN, ACK, RST first, then the window or the payload, then FIN
/// (after the payload, so a reader never sees EOF before the last bytes).
async fn stream_frame<R>(shared: &Shared, h: Header, r: &mut R) -> Result<(), ReadEnd>
where
    R: AsyncBufRead + Unpin,
{
    use super::frame::Flags;
    let id = h.stream_id;
    let is_data = h.typ == FrameType::Data;
    let len = if is_data { h.length } else { 0 };
    let sink = {
        let mut guard = shared.lock();
        let st = &mut *guard;
        if h.flags.contains(Flags::SYN) {
            st.incoming_stream(id)?;
        }
        match st.streams.get_mut(&id) {
            None => {
                if len > 0 {
                    tracing::debug!(
                        stream = id,
                        len,
                        "yamux: discarding data for missing stream"
                    );
                } else {
                    tracing::debug!(?h, "yamux: frame for missing stream");
                }
                Sink::Discard
            }
            Some(s) => {
                let mut release = false;
                if h.flags.contains(Flags::ACK) && s.outbound && !s.acked {
                    s.acked = true;
                    release = s.take_slot();
                }
                if h.flags.contains(Flags::RST) {
                    s.on_remote_reset();
                    release |= s.take_slot();
                }
                if !is_data && h.length > 0 {
                    // A peer granting beyond u32 is broken; saturating keeps us sane.
                    s.send_window = s.send_window.saturating_add(h.length);
                    if let Some(w) = s.write_waker.take() {
                        w.wake();
                    }
                }
                let sink = if len > 0 {
                    if len > s.recv_window {
                        return Err(ProtocolError::RecvWindowExceeded {
                            stream: id,
                            window: s.recv_window,
                            len,
                        }
                        .into());
                    }
                    s.recv_window -= len;
                    Sink::Stream
                } else {
                    Sink::Discard
                };
                if h.flags.contains(Flags::FIN) && len == 0 {
                    s.on_remote_fin();
                }
                if release {
                    st.release_slot();
                }
                st.remove_if_finished(id);
                sink
            }
        }
    };

    let max_window = shared.config.max_stream_window;
    let mut remaining = len as usize;
    while remaining > 0 {
        let buf = r.fill_buf().await?;
        if buf.is_empty() {
            return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into());
        }
        let n = buf.len().min(remaining);
        if let Sink::Stream = sink {
            let mut st = shared.lock();
            let due = st
                .streams
                .get_mut(&id)
                .is_some_and(|s| s.on_data(&buf[..n], max_window));
            if due {
                st.schedule(id);
            }
        }
        r.consume(n);
        remaining -= n;
    }
    if len > 0 && h.flags.contains(Flags::FIN) {
        let mut st = shared.lock();
        if let Some(s) = st.streams.get_mut(&id) {
            s.on_remote_fin();
        }
        st.remove_if_finished(id);
    }
    Ok(())
}

/// A ping: answer requests at once with the same value; match replies to waiters.
fn ping_frame(shared: &Shared, h: Header) {
    use super::frame::Flags;
    let mut st = shared.lock();
    if h.flags.contains(Flags::SYN) {
        st.push_ctrl(Header::ping(Flags::ACK, h.length));
    } else if h.flags.contains(Flags::ACK) {
        match st.pings.remove(&h.length) {
            Some(PingWaiter::Keepalive) => {
                if st
                    .keepalive_outstanding
                    .is_some_and(|(id, _)| id == h.length)
                {
                    st.keepalive_outstanding = None;
                    st.keepalive_at = Some(Instant::now() + shared.config.keepalive_interval);
                    drop(st);
                    // The timer loop sleeps until the answer deadline: move it to the next ping.
                    shared.timers.notify_one();
                }
            }
            Some(PingWaiter::User(tx)) => {
                let _ = tx.send(());
            }
            None => tracing::debug!(value = h.length, "yamux: unexpected ping reply"),
        }
    }
}

/// GoAway: normal only stops new outbound streams; anything else ends the session (as in
/// hashicorp's `handleGoAway`).
fn go_away_frame(shared: &Shared, h: Header) -> Result<(), ReadEnd> {
    let e = match h.length {
        0 => {
            tracing::debug!("yamux: peer sent GoAway, no new streams");
            shared.lock().remote_go_away = true;
            return Ok(());
        }
        1 => Error::RemoteProtocolError,
        2 => Error::RemoteInternalError,
        code => Error::RemoteGoAwayCode(code),
    };
    tracing::warn!(error = %e, "yamux: session ended by peer GoAway");
    Err(ReadEnd::Fatal(e))
}

/// Moves queued frames into `out` (up to about [`WRITE_BATCH`] bytes).
fn fill(st: &mut State, out: &mut BytesMut) {
    while out.len() < WRITE_BATCH {
        let Some(h) = st.ctrl.pop_front() else {
            break;
        };
        tracing::trace!(?h, "yamux: frame out");
        out.extend_from_slice(&h.encode());
    }
    if st.ctrl.len() < CTRL_QUEUE_LIMIT
        && let Some(w) = st.reader_waker.take()
    {
        w.wake();
    }
    while out.len() < WRITE_BATCH {
        let Some(id) = st.ready.pop_front() else {
            break;
        };
        let Some(s) = st.streams.get_mut(&id) else {
            continue;
        };
        s.queued = false;
        s.emit(id, out);
        if s.needs_write() {
            s.queued = true;
            st.ready.push_back(id);
        } else {
            st.remove_if_finished(id);
        }
    }
}

async fn writer<W>(shared: &Shared, mut w: W) -> Result<(), Error>
where
    W: AsyncWrite + Unpin,
{
    let mut out = BytesMut::with_capacity(OUT_CAPACITY);
    loop {
        let closing = poll_fn(|cx| {
            let mut st = shared.lock();
            fill(&mut st, &mut out);
            if out.is_empty()
                && !matches!(st.phase, Phase::Open)
                && let Some(code) = st.final_go_away.take()
            {
                // Closing: GoAway goes after everything else that was queued.
                out.extend_from_slice(&Header::go_away(code).encode());
            }
            if !out.is_empty() {
                return Poll::Ready(false);
            }
            match st.phase {
                Phase::Open => {
                    st.writer_waker = Some(cx.waker().clone());
                    Poll::Pending
                }
                Phase::Closing { .. } | Phase::Closed(_) => Poll::Ready(true),
            }
        })
        .await;
        if closing {
            // Everything queued, GoAway included, is written.
            w.shutdown().await.map_err(Error::io)?;
            return Ok(());
        }
        w.write_all(&out).await.map_err(Error::io)?;
        w.flush().await.map_err(Error::io)?;
        out.clear();
    }
}

/// Keepalive, open timeouts, close timeouts, the graceful-close deadline. Returns only to end
/// the session at once.
async fn timers(shared: &Shared) -> Error {
    loop {
        let notified = shared.timers.notified();
        let next = {
            let mut st = shared.lock();
            match on_timers(&mut st, shared) {
                Ok(next) => next,
                Err(e) => return e,
            }
        };
        match next {
            Some(deadline) => {
                tokio::select! {
                    _ = tokio::time::sleep_until(deadline) => {}
                    _ = notified => {}
                }
            }
            None => notified.await,
        }
    }
}

/// Handles every expired deadline; returns the next one.
fn on_timers(st: &mut State, shared: &Shared) -> Result<Option<Instant>, Error> {
    use super::frame::Flags;
    let now = Instant::now();
    let mut next: Option<Instant> = None;
    let mut at = |t: Instant| next = Some(next.map_or(t, |n| n.min(t)));

    if let Phase::Closing { deadline, .. } = st.phase {
        if now >= deadline {
            tracing::warn!("yamux: could not flush the close in time");
            return Err(Error::WriteTimeout);
        }
        at(deadline);
    }

    if matches!(st.phase, Phase::Open) {
        if let Some((_, deadline)) = st.keepalive_outstanding {
            if now >= deadline {
                tracing::warn!("yamux: keepalive failed: ping not answered in time");
                return Err(Error::KeepAliveTimeout);
            }
            at(deadline);
        } else if let Some(due) = st.keepalive_at {
            if now >= due {
                let id = st.alloc_ping_id();
                st.pings.insert(id, PingWaiter::Keepalive);
                st.push_ctrl(Header::ping(Flags::SYN, id));
                let deadline = now + shared.config.connection_write_timeout;
                st.keepalive_outstanding = Some((id, deadline));
                at(deadline);
            } else {
                at(due);
            }
        }
    }

    while let Some(&(deadline, id, serial)) = st.open_deadlines.front() {
        let waiting = st
            .streams
            .get(&id)
            .is_some_and(|s| s.serial == serial && s.awaiting_ack());
        if !waiting {
            st.open_deadlines.pop_front();
            continue;
        }
        if now >= deadline {
            tracing::error!(
                stream = id,
                "yamux: aborted stream open: not acknowledged in time"
            );
            st.open_deadlines.clear();
            st.begin_close(Error::StreamOpenTimeout(id), GoAwayCode::Normal);
            if let Phase::Closing { deadline, .. } = st.phase {
                at(deadline);
            }
        } else {
            at(deadline);
        }
        break;
    }

    while let Some(&(deadline, id, serial)) = st.close_deadlines.front() {
        let lingering = st
            .streams
            .get(&id)
            .is_some_and(|s| s.serial == serial && s.lingering());
        if !lingering {
            st.close_deadlines.pop_front();
            continue;
        }
        if now < deadline {
            at(deadline);
            break;
        }
        st.close_deadlines.pop_front();
        tracing::debug!(stream = id, "yamux: close timeout, resetting stream");
        if let Some(s) = st.streams.get_mut(&id) {
            s.local_reset();
            if s.take_slot() {
                st.release_slot();
            }
        }
        st.schedule(id);
        st.remove_if_finished(id);
    }

    Ok(next)
}

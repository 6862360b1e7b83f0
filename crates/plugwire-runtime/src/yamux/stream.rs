//! One logical stream: its protocol state ([`StreamState`], kept in the session table) and the
//! application's handle ([`Stream`], `AsyncRead + AsyncWrite`).
//!
//! Flow control follows hashicorp/yamux: each direction starts with a 256 KiB window. Received
//! data goes into a buffer that can never exceed the window we granted, so the session reader
//! never waits for the application; window updates go out as the application consumes data, once
//! the consumed amount reaches half of the maximum window. Writes are accepted up to the peer's
//! window and handed to the session writer, which turns them into data frames.

use std::fmt;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use bytes::{Buf, BufMut, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::config::INITIAL_STREAM_WINDOW;
use super::frame::{Flags, HEADER_LEN, Header};
use super::session::{HandleRef, Phase};

/// Most bytes one stream may have buffered for sending (already within the peer's window).
pub(crate) const SEND_BUFFER_MAX: usize = 256 * 1024;

/// Largest payload of one data frame we send; streams take turns frame by frame.
pub(crate) const MAX_DATA_FRAME: usize = 64 * 1024;

/// Who reset a stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ResetBy {
    /// The peer sent RST (or refused the stream).
    Remote,
    /// We did ([`Stream::reset`], close timeout, refusal, session drop).
    Local,
}

/// Who owns the application side of a stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum HandleState {
    /// Inbound, waiting in the accept queue.
    Queued,
    /// A [`Stream`] exists.
    Live,
    /// The [`Stream`] was dropped; the entry only finishes the protocol.
    Dropped,
}

/// Protocol state of one stream. Lives in the session table, under the session lock.
pub(crate) struct StreamState {
    /// Distinguishes streams that reuse an id (deadline bookkeeping).
    pub(crate) serial: u64,
    /// Whether we opened it.
    pub(crate) outbound: bool,
    /// Outbound only: whether the peer's ACK arrived.
    pub(crate) acked: bool,
    /// Outbound only: whether this stream holds one of the `accept_backlog` open slots.
    pub(crate) holds_slot: bool,
    pub(crate) handle: HandleState,

    /// Received, not yet read.
    pub(crate) recv_buf: BytesMut,
    /// Bytes the peer may still send (window granted minus bytes received).
    pub(crate) recv_window: u32,
    /// Window growth still to announce (already counted in `recv_window`).
    pub(crate) window_delta: u32,
    pub(crate) remote_fin: bool,

    /// Bytes we may still send (the peer's window minus what we accepted for sending).
    pub(crate) send_window: u32,
    /// Accepted from the application, not yet framed.
    pub(crate) send_buf: BytesMut,
    pub(crate) fin_requested: bool,
    pub(crate) fin_sent: bool,
    /// SYN or ACK still to send.
    pub(crate) flags: Flags,
    pub(crate) reset: Option<ResetBy>,
    pub(crate) rst_pending: bool,

    pub(crate) read_waker: Option<Waker>,
    pub(crate) write_waker: Option<Waker>,
    /// Whether the id is in the writer's ready queue.
    pub(crate) queued: bool,
}

impl StreamState {
    fn new(serial: u64, max_window: u32, outbound: bool) -> Self {
        StreamState {
            serial,
            outbound,
            acked: !outbound,
            holds_slot: outbound,
            handle: if outbound {
                HandleState::Live
            } else {
                HandleState::Queued
            },
            recv_buf: BytesMut::new(),
            // The window beyond the initial one is granted right away, with the SYN / ACK.
            recv_window: max_window,
            window_delta: max_window - INITIAL_STREAM_WINDOW,
            remote_fin: false,
            send_window: INITIAL_STREAM_WINDOW,
            send_buf: BytesMut::new(),
            fin_requested: false,
            fin_sent: false,
            flags: if outbound { Flags::SYN } else { Flags::ACK },
            reset: None,
            rst_pending: false,
            read_waker: None,
            write_waker: None,
            queued: false,
        }
    }

    /// A stream we open: SYN pending, holds an open slot until ACKed.
    pub(crate) fn outbound(serial: u64, max_window: u32) -> Self {
        Self::new(serial, max_window, true)
    }

    /// A stream the peer opened: ACK pending (sent eagerly, before `accept`).
    pub(crate) fn inbound(serial: u64, max_window: u32) -> Self {
        Self::new(serial, max_window, false)
    }

    /// Whether the writer has something to send for this stream.
    pub(crate) fn needs_write(&self) -> bool {
        if self.reset.is_some() {
            return self.rst_pending;
        }
        !self.flags.is_empty()
            || self.window_delta > 0
            || !self.send_buf.is_empty()
            || (self.fin_requested && !self.fin_sent)
    }

    /// Whether the entry can leave the session table.
    pub(crate) fn is_finished(&self) -> bool {
        self.handle == HandleState::Dropped
            && !self.needs_write()
            && (self.reset.is_some() || (self.fin_sent && self.remote_fin))
    }

    /// Outbound, announced, and still waiting for the peer's ACK (what `stream_open_timeout`
    /// watches; a local close or reset stops the watch, as in hashicorp).
    pub(crate) fn awaiting_ack(&self) -> bool {
        self.outbound && !self.acked && self.reset.is_none() && !self.fin_requested
    }

    /// Gives back the open slot, once. Returns whether the caller must release it.
    pub(crate) fn take_slot(&mut self) -> bool {
        std::mem::take(&mut self.holds_slot)
    }

    /// Waiting for the peer's FIN after our handle went away (what `stream_close_timeout` watches).
    pub(crate) fn lingering(&self) -> bool {
        self.handle == HandleState::Dropped && self.reset.is_none() && !self.remote_fin
    }

    /// hashicorp's window rule: once the peer could be granted at least half of the maximum
    /// window again (`max - buffered - window`), grant all of it. Returns whether a window
    /// update became due. Nothing is granted after the peer's FIN or a reset: it sends no more.
    pub(crate) fn grant(&mut self, max_window: u32) -> bool {
        if self.remote_fin || self.reset.is_some() {
            return false;
        }
        let buffered = u32::try_from(self.recv_buf.len()).unwrap_or(u32::MAX);
        let delta = max_window
            .saturating_sub(buffered)
            .saturating_sub(self.recv_window);
        if delta < max_window / 2 {
            return false;
        }
        self.recv_window += delta;
        // Unsent grants never exceed the maximum for a peer that respects the window; the cap
        // only matters for one that does not, while our writer is blocked.
        self.window_delta = self.window_delta.saturating_add(delta).min(max_window);
        true
    }

    /// A chunk of a data frame's payload (already counted against the window). Returns whether a
    /// window update became due.
    pub(crate) fn on_data(&mut self, chunk: &[u8], max_window: u32) -> bool {
        if self.reset.is_some() || self.remote_fin {
            // After a reset, or data after FIN (a peer bug hashicorp would buffer): discard.
            return false;
        }
        if self.handle == HandleState::Dropped {
            // Nobody will read it: count it as consumed so the peer's writer never stalls.
            return self.grant(max_window);
        }
        self.recv_buf.extend_from_slice(chunk);
        if let Some(w) = self.read_waker.take() {
            w.wake();
        }
        false
    }

    /// The peer's FIN.
    pub(crate) fn on_remote_fin(&mut self) {
        if self.remote_fin {
            // hashicorp ends the session on a second FIN; a duplicate changes nothing, so we
            // only note it.
            tracing::debug!("yamux: duplicate FIN ignored");
            return;
        }
        self.remote_fin = true;
        // No more data can come, so a pending window update is pointless.
        self.window_delta = 0;
        self.wake_all();
    }

    /// The peer's RST. Buffered data stays readable; then reads fail.
    pub(crate) fn on_remote_reset(&mut self) {
        if self.reset.is_none() {
            self.reset = Some(ResetBy::Remote);
        }
        self.rst_pending = false;
        self.send_buf.clear();
        self.wake_all();
    }

    /// Resets the stream from our side; an RST goes out unless the peer never heard of it.
    pub(crate) fn local_reset(&mut self) {
        if self.reset.is_some() {
            return;
        }
        self.reset = Some(ResetBy::Local);
        // A stream whose SYN is still unsent was never seen by the peer: nothing to tell it.
        self.rst_pending = !self.flags.contains(Flags::SYN);
        self.flags = Flags::NONE;
        self.window_delta = 0;
        self.send_buf.clear();
        self.recv_buf.clear();
        self.wake_all();
    }

    pub(crate) fn wake_all(&mut self) {
        if let Some(w) = self.read_waker.take() {
            w.wake();
        }
        if let Some(w) = self.write_waker.take() {
            w.wake();
        }
    }

    /// Appends this stream's next frames to `out`: SYN/ACK and window updates as a WindowUpdate
    /// frame, then at most one data frame, then FIN once all data is out.
    ///
    /// Flags never ride on a data frame with payload, exactly as hashicorp sends them. This
    /// matters for FIN: hashicorp's `readData` applies the flags (state "remote closed", readers
    /// woken) *before* it buffers the payload, so a Go reader can see EOF and lose the data of
    /// a `Data|FIN` frame.
    pub(crate) fn emit(&mut self, id: u32, out: &mut BytesMut) {
        if self.reset.is_some() {
            if std::mem::take(&mut self.rst_pending) {
                put_header(out, Header::window_update(id, Flags::RST, 0));
            }
            return;
        }
        let mut flags = std::mem::take(&mut self.flags);
        let mut delta = std::mem::take(&mut self.window_delta);
        if !self.send_buf.is_empty() {
            if !flags.is_empty() || delta > 0 {
                put_header(out, Header::window_update(id, flags, delta));
                flags = Flags::NONE;
                delta = 0;
            }
            let n = self.send_buf.len().min(MAX_DATA_FRAME);
            // n <= MAX_DATA_FRAME, so the cast is lossless.
            put_header(out, Header::data(id, Flags::NONE, n as u32));
            out.put_slice(&self.send_buf[..n]);
            self.send_buf.advance(n);
            self.wake_writer();
            if !self.send_buf.is_empty() {
                return;
            }
        }
        if self.fin_requested && !self.fin_sent {
            put_header(out, Header::window_update(id, flags | Flags::FIN, delta));
            self.fin_sent = true;
            self.wake_writer();
        } else if !flags.is_empty() || delta > 0 {
            put_header(out, Header::window_update(id, flags, delta));
        }
    }

    fn wake_writer(&mut self) {
        if let Some(w) = self.write_waker.take() {
            w.wake();
        }
    }
}

fn put_header(out: &mut BytesMut, h: Header) {
    let b: [u8; HEADER_LEN] = h.encode();
    out.put_slice(&b);
}

fn reset_error(by: ResetBy) -> io::Error {
    match by {
        ResetBy::Remote => io::Error::new(io::ErrorKind::ConnectionReset, "yamux stream reset"),
        ResetBy::Local => io::Error::new(
            io::ErrorKind::ConnectionAborted,
            "yamux stream reset locally",
        ),
    }
}

fn gone() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "yamux stream state missing")
}

/// A yamux stream: a full-duplex byte pipe inside a session.
///
/// * Reads return buffered data first, then `Ok(0)` after the peer's FIN. Without a FIN they
///   fail once the stream is reset (`ConnectionReset` when the peer reset it) or the session
///   ends (`ConnectionAborted`, `TimedOut`, … with the session [`Error`](super::Error) inside).
/// * Writes are accepted up to the peer's window (they wait for window updates) and are sent in
///   order by the session. After [`poll_shutdown`](AsyncWrite::poll_shutdown) they fail with
///   `BrokenPipe`.
/// * `poll_flush` waits until the written data has been handed to the connection writer.
/// * `poll_shutdown` sends FIN (a half-close: reading goes on) and waits until it is handed to
///   the connection writer.
/// * Dropping the stream closes it gracefully: FIN if not sent yet; data still arriving is
///   discarded while window updates keep the peer's writer going; the entry goes away once the
///   peer's FIN arrives, or after `stream_close_timeout` with an RST.
/// * [`reset`](Stream::reset) aborts it with RST.
pub struct Stream {
    id: u32,
    handle: HandleRef,
}

impl Stream {
    pub(crate) fn new(handle: HandleRef, id: u32) -> Self {
        Stream { id, handle }
    }

    /// The stream id (odd for client-opened streams, even for server-opened ones).
    pub fn id(&self) -> u32 {
        self.id
    }

    /// Aborts the stream: unsent and unread data is dropped and an RST is sent. Later reads and
    /// writes fail.
    pub fn reset(&mut self) {
        let shared = self.handle.shared();
        let mut st = shared.lock();
        let Some(s) = st.streams.get_mut(&self.id) else {
            return;
        };
        s.local_reset();
        let slot = s.take_slot();
        if slot {
            st.release_slot();
        }
        st.schedule(self.id);
    }
}

impl fmt::Debug for Stream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stream").field("id", &self.id).finish()
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let id = self.id;
        let shared = self.handle.shared();
        let max_window = shared.config.max_stream_window;
        let mut guard = shared.lock();
        let st = &mut *guard;
        let Some(s) = st.streams.get_mut(&id) else {
            return Poll::Ready(Err(gone()));
        };
        if !s.recv_buf.is_empty() {
            let n = buf.remaining().min(s.recv_buf.len());
            buf.put_slice(&s.recv_buf[..n]);
            s.recv_buf.advance(n);
            if s.grant(max_window) {
                st.schedule(id);
            }
            return Poll::Ready(Ok(()));
        }
        if buf.remaining() == 0 || s.remote_fin {
            return Poll::Ready(Ok(()));
        }
        if let Some(by) = s.reset {
            return Poll::Ready(Err(reset_error(by)));
        }
        s.read_waker = Some(cx.waker().clone());
        if let Phase::Closed(reason) = &st.phase {
            return Poll::Ready(Err(reason.to_io()));
        }
        Poll::Pending
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let id = self.id;
        let shared = self.handle.shared();
        let mut guard = shared.lock();
        let st = &mut *guard;
        if let Some(reason) = st.phase.reason() {
            return Poll::Ready(Err(reason.to_io()));
        }
        let Some(s) = st.streams.get_mut(&id) else {
            return Poll::Ready(Err(gone()));
        };
        if let Some(by) = s.reset {
            return Poll::Ready(Err(reset_error(by)));
        }
        if s.fin_requested {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "yamux stream write after shutdown",
            )));
        }
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let space = SEND_BUFFER_MAX.saturating_sub(s.send_buf.len());
        let n = buf.len().min(space).min(s.send_window as usize);
        if n == 0 {
            s.write_waker = Some(cx.waker().clone());
            return Poll::Pending;
        }
        s.send_buf.extend_from_slice(&buf[..n]);
        // n <= send_window, a u32.
        s.send_window -= n as u32;
        st.schedule(id);
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let id = self.id;
        let shared = self.handle.shared();
        let mut guard = shared.lock();
        let st = &mut *guard;
        let Some(s) = st.streams.get_mut(&id) else {
            return Poll::Ready(Err(gone()));
        };
        if let Some(by) = s.reset {
            return Poll::Ready(Err(reset_error(by)));
        }
        if s.send_buf.is_empty() {
            return Poll::Ready(Ok(()));
        }
        s.write_waker = Some(cx.waker().clone());
        if let Phase::Closed(reason) = &st.phase {
            return Poll::Ready(Err(reason.to_io()));
        }
        Poll::Pending
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let id = self.id;
        let shared = self.handle.shared();
        let mut guard = shared.lock();
        let st = &mut *guard;
        let Some(s) = st.streams.get_mut(&id) else {
            return Poll::Ready(Err(gone()));
        };
        if s.fin_sent {
            return Poll::Ready(Ok(()));
        }
        if let Some(by) = s.reset {
            return Poll::Ready(Err(reset_error(by)));
        }
        s.write_waker = Some(cx.waker().clone());
        if let Phase::Closed(reason) = &st.phase {
            return Poll::Ready(Err(reason.to_io()));
        }
        if !s.fin_requested {
            s.fin_requested = true;
            st.schedule(id);
        }
        Poll::Pending
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        let id = self.id;
        let shared = self.handle.shared();
        let max_window = shared.config.max_stream_window;
        let close_timeout = shared.config.stream_close_timeout;
        let mut guard = shared.lock();
        let st = &mut *guard;
        let closed = matches!(st.phase, Phase::Closed(_));
        let Some(s) = st.streams.get_mut(&id) else {
            return;
        };
        s.handle = HandleState::Dropped;
        s.read_waker = None;
        s.write_waker = None;
        if closed {
            st.streams.remove(&id);
            return;
        }
        let mut linger = None;
        if s.reset.is_none() {
            // Graceful close: FIN after whatever is still buffered for sending.
            s.fin_requested = true;
            s.recv_buf = BytesMut::new();
            s.grant(max_window);
            if !s.remote_fin {
                linger = close_timeout.map(|t| (t, s.serial));
            }
        }
        if let Some((timeout, serial)) = linger {
            st.add_close_deadline(timeout, id, serial);
        }
        st.schedule(id);
        st.remove_if_finished(id);
        drop(guard);
        if linger.is_some() {
            shared.timers.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: u32 = INITIAL_STREAM_WINDOW;

    #[test]
    fn window_update_at_half_of_max() {
        let mut s = StreamState::inbound(0, MAX);
        s.handle = HandleState::Live;
        s.flags = Flags::NONE;
        // Peer sends 200 KiB; nothing consumed yet: no update.
        s.recv_window -= 200 * 1024;
        s.on_data(&vec![0u8; 200 * 1024], MAX);
        assert!(!s.grant(MAX));
        // Consume 127 KiB: delta = 127 KiB < 128 KiB.
        s.recv_buf.advance(127 * 1024);
        assert!(!s.grant(MAX));
        // One more KiB: delta = 128 KiB, the whole of it is granted.
        s.recv_buf.advance(1024);
        assert!(s.grant(MAX));
        assert_eq!(s.window_delta, 128 * 1024);
        assert_eq!(s.recv_window, 56 * 1024 + 128 * 1024);
        assert_eq!(s.recv_window as usize + s.recv_buf.len(), MAX as usize);
    }

    #[test]
    fn larger_window_is_announced_with_syn() {
        let s = StreamState::outbound(0, 1024 * 1024);
        assert_eq!(s.window_delta, 1024 * 1024 - MAX);
        assert_eq!(s.recv_window, 1024 * 1024);
        let mut out = BytesMut::new();
        let mut s = s;
        s.emit(1, &mut out);
        let hdr: [u8; HEADER_LEN] = out[..HEADER_LEN].try_into().expect("12 bytes");
        assert_eq!(
            Header::decode(&hdr),
            Ok(Header::window_update(1, Flags::SYN, 1024 * 1024 - MAX))
        );
    }

    #[test]
    fn emit_orders_syn_data_fin() {
        let mut s = StreamState::outbound(0, MAX);
        s.send_buf.extend_from_slice(&[7u8; MAX_DATA_FRAME + 10]);
        s.fin_requested = true;
        let mut out = BytesMut::new();
        s.emit(3, &mut out);
        let mut frames = vec![];
        let mut b = &out[..];
        while !b.is_empty() {
            let hdr: [u8; HEADER_LEN] = b[..HEADER_LEN].try_into().expect("12 bytes");
            let h = Header::decode(&hdr).expect("valid");
            b = &b[HEADER_LEN..];
            if h.typ == super::super::frame::FrameType::Data {
                b = &b[h.length as usize..];
            }
            frames.push(h);
        }
        assert_eq!(
            frames,
            vec![
                Header::window_update(3, Flags::SYN, 0),
                Header::data(3, Flags::NONE, MAX_DATA_FRAME as u32)
            ]
        );
        assert!(s.needs_write());
        out.clear();
        s.emit(3, &mut out);
        let hdr: [u8; HEADER_LEN] = out[..HEADER_LEN].try_into().expect("12 bytes");
        assert_eq!(Header::decode(&hdr), Ok(Header::data(3, Flags::NONE, 10)));
        // FIN on its own window update right after the data, never on the data frame.
        let hdr: [u8; HEADER_LEN] = out[HEADER_LEN + 10..].try_into().expect("12 bytes");
        assert_eq!(
            Header::decode(&hdr),
            Ok(Header::window_update(3, Flags::FIN, 0))
        );
        assert!(s.fin_sent && !s.needs_write());
    }

    #[test]
    fn reset_before_syn_sends_nothing() {
        let mut s = StreamState::outbound(0, MAX);
        s.local_reset();
        assert!(!s.needs_write());
        let mut s = StreamState::inbound(0, MAX);
        s.local_reset();
        assert!(s.needs_write());
        let mut out = BytesMut::new();
        s.emit(2, &mut out);
        assert_eq!(out.len(), HEADER_LEN);
    }

    #[test]
    fn dropped_stream_keeps_granting_window() {
        let mut s = StreamState::inbound(0, MAX);
        s.handle = HandleState::Dropped;
        s.flags = Flags::NONE;
        s.recv_window -= 100 * 1024;
        assert!(!s.on_data(&[0u8; 100 * 1024], MAX));
        s.recv_window -= 28 * 1024;
        assert!(s.on_data(&[0u8; 28 * 1024], MAX));
        assert_eq!(s.recv_window, MAX);
        assert!(s.recv_buf.is_empty());
    }
}

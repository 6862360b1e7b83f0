//! The read side of a net/rpc connection, checked by the gob guard before the net/rpc codec sees
//! a byte.
//!
//! go-netrpc reads gob messages straight from its connection into gobwire, which trusts the
//! peer's type definitions (see `plugwire_protocol::gob`). [`Guarded`] frames the incoming
//! bytes into gob messages itself, runs each through a [`StreamGuard`], and only then lets the
//! codec read it, so gobwire never decodes a message the guard refused. A refused message ends
//! the connection with an [`io::ErrorKind::InvalidData`] error that says why; the codec cannot
//! resynchronise a gob stream anyway. Writes pass through untouched.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes, BytesMut};
use plugwire_protocol::gob::{GuardError, Limits, StreamGuard, parse_length_prefix};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// How much more room to make at a time while a message is incomplete: a large message grows the
/// buffer as its bytes arrive, never by the length it announces.
const READ_CHUNK: usize = 64 * 1024;

/// A connection whose incoming gob messages are checked before they are read.
#[derive(Debug)]
pub struct Guarded<T> {
    inner: T,
    guard: StreamGuard,
    /// Received, not yet framed.
    incoming: BytesMut,
    /// The length prefix of the message being received, once seen: (prefix width, body length).
    pending: Option<(usize, usize)>,
    /// A checked message, not yet read by the codec.
    ready: Bytes,
    /// The guard refused the stream (returned again on every later read).
    failed: Option<GuardError>,
}

impl<T> Guarded<T> {
    /// Guards `inner`'s incoming gob stream within `limits`.
    pub fn new(inner: T, limits: Limits) -> Self {
        Guarded {
            inner,
            guard: StreamGuard::new(limits),
            incoming: BytesMut::new(),
            pending: None,
            ready: Bytes::new(),
            failed: None,
        }
    }

    fn refuse(&mut self, e: GuardError) -> io::Error {
        self.guard.poison();
        self.failed = Some(e.clone());
        refused(e)
    }

    /// Takes the next complete message from `incoming` into `ready`, if there is one, after the
    /// guard has checked it.
    fn frame(&mut self) -> io::Result<bool> {
        let (width, len) = match self.pending {
            Some(p) => p,
            None => match parse_length_prefix(&self.incoming) {
                Ok(None) => return Ok(false),
                Ok(Some((width, len))) => {
                    if let Err(e) = self.guard.check_length(len) {
                        return Err(self.refuse(e));
                    }
                    // Checked against the guard's limit, so it fits in memory terms too.
                    let len = usize::try_from(len).map_err(|_| {
                        self.refuse(GuardError::MessageTooLarge {
                            len,
                            limit: self.guard.limits().max_message_bytes,
                        })
                    })?;
                    self.pending = Some((width, len));
                    (width, len)
                }
                Err(e) => return Err(self.refuse(e)),
            },
        };
        if self.incoming.len() < width + len {
            return Ok(false);
        }
        let message = self.incoming.split_to(width + len).freeze();
        self.pending = None;
        if let Err(e) = self.guard.check_message(&message[width..]) {
            return Err(self.refuse(e));
        }
        self.ready = message;
        Ok(true)
    }

    /// How much to read next: up to the end of the pending message, at most [`READ_CHUNK`].
    fn want(&self) -> usize {
        match self.pending {
            Some((width, len)) => (width + len)
                .saturating_sub(self.incoming.len())
                .clamp(1, READ_CHUNK),
            None => READ_CHUNK,
        }
    }
}

fn refused(e: GuardError) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

impl<T: AsyncRead + Unpin> AsyncRead for Guarded<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if !this.ready.is_empty() {
                let n = this.ready.len().min(buf.remaining());
                buf.put_slice(&this.ready[..n]);
                this.ready.advance(n);
                if this.ready.is_empty() {
                    // Let go of the message, so `incoming` can reuse its allocation.
                    this.ready = Bytes::new();
                }
                return Poll::Ready(Ok(()));
            }
            if let Some(e) = &this.failed {
                return Poll::Ready(Err(refused(e.clone())));
            }
            if this.frame()? {
                continue;
            }
            // Reads into the spare capacity: nothing is zeroed per read (at one read per small
            // call, zeroing a 64 KiB chunk cost more than the call's own work).
            this.incoming.reserve(this.want());
            let got = ready!(tokio_util::io::poll_read_buf(
                Pin::new(&mut this.inner),
                cx,
                &mut this.incoming
            ))?;
            if got == 0 {
                if this.incoming.is_empty() {
                    return Poll::Ready(Ok(()));
                }
                // The peer stopped inside a message: say so rather than end cleanly, which
                // the codec would take for the end of the conversation.
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the connection ended inside a gob message",
                )));
            }
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Guarded<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

//! Error types. Session-level failures are [`Error`]; stream I/O reports `std::io::Error`s whose
//! kind tells what happened (see [`Stream`](super::Stream)) and whose inner error is an
//! [`Error`] when the session is the cause.

use std::io;
use std::sync::Arc;

/// Why a session operation failed or why the session ended.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The [`Config`](super::Config) failed [`Config::validate`](super::Config::validate).
    #[error("invalid yamux config: {0}")]
    InvalidConfig(&'static str),
    /// The session was created outside a tokio runtime.
    #[error("yamux session must be created inside a tokio runtime")]
    NoRuntime,
    /// The session was closed locally (explicit close, or every handle was dropped).
    #[error("yamux session shutdown")]
    SessionShutdown,
    /// The peer closed the connection (EOF, or a broken pipe / reset on the transport).
    #[error("yamux connection closed by peer")]
    ConnectionClosed,
    /// Reading or writing the underlying transport failed.
    #[error("yamux connection i/o error: {0}")]
    Io(#[source] Arc<io::Error>),
    /// The peer violated the protocol; we sent GoAway(protocol error) and closed.
    #[error("yamux protocol error: {0}")]
    Protocol(#[from] ProtocolError),
    /// Opening refused: the peer sent GoAway(normal) and accepts no new streams.
    #[error("remote end is not accepting connections")]
    RemoteGoAway,
    /// The peer ended the session with GoAway(protocol error).
    #[error("remote yamux reported a protocol error")]
    RemoteProtocolError,
    /// The peer ended the session with GoAway(internal error).
    #[error("remote yamux internal error")]
    RemoteInternalError,
    /// The peer sent GoAway with an unknown code; treated as an error, as hashicorp does.
    #[error("unexpected go away code {0} received")]
    RemoteGoAwayCode(u32),
    /// A keepalive ping was not answered in time.
    #[error("yamux keepalive timeout")]
    KeepAliveTimeout,
    /// An outbound stream was not acknowledged within `stream_open_timeout`.
    #[error("yamux stream {0} not acknowledged in time; session closed")]
    StreamOpenTimeout(u32),
    /// A ping was not answered within `connection_write_timeout`.
    #[error("yamux ping timed out")]
    PingTimeout,
    /// Closing could not flush the final frames within `connection_write_timeout`.
    #[error("yamux connection write timeout")]
    WriteTimeout,
    /// All stream ids of our parity are used up.
    #[error("yamux streams exhausted")]
    StreamsExhausted,
}

impl Error {
    /// This error as an `io::Error` for stream I/O; the kind says what happened.
    pub(crate) fn to_io(&self) -> io::Error {
        let kind = match self {
            Error::Io(e) => e.kind(),
            Error::KeepAliveTimeout | Error::PingTimeout | Error::WriteTimeout => {
                io::ErrorKind::TimedOut
            }
            Error::ConnectionClosed => io::ErrorKind::UnexpectedEof,
            _ => io::ErrorKind::ConnectionAborted,
        };
        io::Error::new(kind, self.clone())
    }

    /// A transport error. The ways a peer's close shows up (EOF inside a frame, a write to a
    /// closed socket, a reset) all become [`Error::ConnectionClosed`].
    pub(crate) fn io(e: io::Error) -> Self {
        match e.kind() {
            io::ErrorKind::UnexpectedEof
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionReset => Error::ConnectionClosed,
            _ => Error::Io(Arc::new(e)),
        }
    }
}

/// A protocol violation by the peer. Each one ends the session with GoAway(protocol error).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// A frame header with a version other than 0.
    #[error("invalid protocol version {0}")]
    InvalidVersion(u8),
    /// A frame header with an unknown type.
    #[error("invalid message type {0}")]
    InvalidType(u8),
    /// A SYN for a stream id that is in use.
    #[error("duplicate stream {0} initiated")]
    DuplicateStream(u32),
    /// A SYN for id 0 or for an id of our own parity.
    #[error("invalid stream id {0} for an inbound stream")]
    InvalidStreamId(u32),
    /// A data frame larger than the receive window we granted.
    #[error("recv window exceeded on stream {stream}: window {window}, frame {len}")]
    RecvWindowExceeded {
        /// The stream.
        stream: u32,
        /// The window left.
        window: u32,
        /// The frame's payload length.
        len: u32,
    },
}

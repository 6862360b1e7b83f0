//! A yamux implementation wire-compatible with [hashicorp/yamux] v0.1.2, the multiplexer of
//! go-plugin (netrpc, and gRPC broker multiplexing).
//!
//! ```no_run
//! # async fn demo(io: tokio::net::UnixStream) -> Result<(), Box<dyn std::error::Error>> {
//! use tokio::io::{AsyncReadExt, AsyncWriteExt};
//! let mut session = plugwire_runtime::yamux::Session::client(io, plugwire_runtime::yamux::Config::default())?;
//! let control = session.control();
//! let mut stream = control.open().await?; // SYN goes out at once
//! stream.write_all(b"hello").await?;
//! stream.shutdown().await?; // FIN (half-close)
//! let mut reply = Vec::new();
//! stream.read_to_end(&mut reply).await?;
//! let _inbound = session.accept().await?; // ACKed as soon as it arrived
//! control.close().await;
//! # Ok(()) }
//! ```
//!
//! Semantics follow hashicorp's `session.go` / `stream.go`, with these deliberate choices:
//!
//! * inbound streams are ACKed when their SYN arrives, not when the application accepts them, so
//!   a Go peer's 75 s `StreamOpenTimeout` cannot fire on streams that never carry data;
//! * the reader never waits for the application: each stream's buffer is bounded by its window;
//! * dropping a [`Stream`] sends FIN (not RST); [`Stream::reset`] sends RST;
//! * [`Control::close`] flushes pending data and sends GoAway(normal) before closing.
//!
//! [hashicorp/yamux]: https://github.com/hashicorp/yamux

//!
//! We wrote it rather than use a crate: `tokio-yamux` 0.3 (what plugwire used before) stalls a
//! stream that is only written once its window is used up, ignores window updates and RST after
//! the peer's FIN, and lets one unread stream stop the whole session (pings included), which a Go
//! peer answers by closing the session; the `yamux` crate (libp2p) opens streams lazily. Each of
//! these breaks go-plugin (see `../shared/docs/go-plugin-protocol.md` §9.2).

mod config;
mod driver;
mod error;
mod frame;
mod session;
mod stream;

pub use config::{Config, INITIAL_STREAM_WINDOW};
pub use error::{Error, ProtocolError};
pub use session::{Control, Session};
pub use stream::Stream;

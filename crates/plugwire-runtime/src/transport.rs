//! Byte streams between host and plugin: listeners as go-plugin creates them, dialing, and TLS
//! on either end.
//!
//! Every connection is a [`BoxedIo`], whatever carries it (unix socket, TCP, a TLS session, a
//! multiplexed stream), so the host's channel and the plugin's server never care.

use std::io;
use std::ops::RangeInclusive;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

pub use plugwire_protocol::Address;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use tokio::sync::mpsc;

use crate::tls;

/// How long a TLS handshake may take, either side.
pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Anything a connection can be carried over.
pub trait Io: AsyncRead + AsyncWrite + Send + Unpin + 'static {}

impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Io for T {}

/// A type-erased connection.
pub struct BoxedIo(Box<dyn Io>);

impl BoxedIo {
    /// Wraps any connection.
    pub fn new(io: impl Io) -> Self {
        BoxedIo(Box::new(io))
    }
}

impl std::fmt::Debug for BoxedIo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BoxedIo")
    }
}

impl AsyncRead for BoxedIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for BoxedIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.0).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0).poll_shutdown(cx)
    }
}

impl tonic::transport::server::Connected for BoxedIo {
    type ConnectInfo = ();

    fn connect_info(&self) -> Self::ConnectInfo {}
}

/// Connects to `address` (TCP with `TCP_NODELAY`).
pub async fn dial(address: &Address) -> io::Result<BoxedIo> {
    match address {
        Address::Unix(path) => UnixStream::connect(path).await.map(BoxedIo::new),
        Address::Tcp(addr) => {
            let stream = TcpStream::connect(addr.as_str()).await?;
            stream.set_nodelay(true)?;
            Ok(BoxedIo::new(stream))
        }
    }
}

/// A listening socket created as go-plugin's `serverListener` creates one. A unix socket file is
/// removed when the listener is dropped.
#[derive(Debug)]
pub struct Listener {
    inner: ListenerKind,
    address: Address,
}

#[derive(Debug)]
enum ListenerKind {
    Unix {
        listener: UnixListener,
        /// Removes the socket file when dropped.
        _path: tempfile::TempPath,
    },
    Tcp(TcpListener),
}

impl Listener {
    /// A unix socket `<dir>/plugin<random>`, as go-plugin names them (the caller picks the
    /// directory: `PLUGIN_UNIX_SOCKET_DIR` or the OS temp dir). With a group, the socket's group
    /// is set and its mode made 0660 so that group may connect.
    ///
    /// Must be called within a tokio runtime.
    pub fn unix(dir: &Path, group: Option<&str>) -> io::Result<Self> {
        let named = tempfile::Builder::new()
            .prefix("plugin")
            .rand_bytes(10)
            .make_in(dir, |path| std::os::unix::net::UnixListener::bind(path))
            .map_err(|e| {
                // sun_path holds 108 bytes on Linux, 104 on macOS.
                let hint = if dir.as_os_str().len() > 80 {
                    "; socket paths are limited to about 100 bytes, so choose a shorter directory"
                } else {
                    ""
                };
                io::Error::new(
                    e.kind(),
                    format!(
                        "could not create a unix socket in {} ({e}){hint}",
                        dir.display()
                    ),
                )
            })?;
        let (std_listener, path) = named.into_parts();
        if let Some(group) = group {
            set_group_writable(&path, group, 0o660)?;
        }
        std_listener.set_nonblocking(true)?;
        let listener = UnixListener::from_std(std_listener)?;
        let address = Address::Unix(path.to_path_buf());
        Ok(Listener {
            inner: ListenerKind::Unix {
                listener,
                _path: path,
            },
            address,
        })
    }

    /// A TCP listener on `127.0.0.1`, on the first free port of `ports` (port 0: any free port).
    pub async fn tcp(ports: RangeInclusive<u16>) -> io::Result<Self> {
        for port in ports {
            if let Ok(listener) = TcpListener::bind(("127.0.0.1", port)).await {
                let address = Address::Tcp(listener.local_addr()?.to_string());
                return Ok(Listener {
                    inner: ListenerKind::Tcp(listener),
                    address,
                });
            }
        }
        Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            "couldn't bind plugin TCP listener: every port in PLUGIN_MIN_PORT..PLUGIN_MAX_PORT is taken",
        ))
    }

    /// Where peers connect.
    pub fn address(&self) -> &Address {
        &self.address
    }

    /// Waits for the next connection.
    pub async fn accept(&self) -> io::Result<BoxedIo> {
        match &self.inner {
            ListenerKind::Unix { listener, .. } => {
                listener.accept().await.map(|(s, _)| BoxedIo::new(s))
            }
            ListenerKind::Tcp(listener) => {
                let (stream, _) = listener.accept().await?;
                stream.set_nodelay(true)?;
                Ok(BoxedIo::new(stream))
            }
        }
    }
}

/// go-plugin's `setGroupWritable`: chgrp to a group name or numeric gid, then chmod.
pub fn set_group_writable(path: &Path, group: &str, mode: u32) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let gid = match group.parse::<u32>() {
        Ok(gid) => nix::unistd::Gid::from_raw(gid),
        Err(_) => {
            nix::unistd::Group::from_name(group)
                .map_err(io::Error::from)?
                .ok_or_else(|| {
                    io::Error::new(
                        io::ErrorKind::NotFound,
                        format!("failed to find gid from {group:?}: no such group"),
                    )
                })?
                .gid
        }
    };
    nix::unistd::chown(path, None, Some(gid)).map_err(io::Error::from)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

/// Wraps a dialed connection in TLS as the client (SNI `localhost`, ALPN `h2`), bounded by
/// [`TLS_HANDSHAKE_TIMEOUT`].
pub async fn tls_connect(io: BoxedIo, config: Arc<rustls::ClientConfig>) -> io::Result<BoxedIo> {
    let connect = tokio_rustls::TlsConnector::from(config).connect(tls::server_name(), io);
    match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, connect).await {
        Ok(stream) => Ok(BoxedIo::new(stream?)),
        Err(_) => Err(tls_timeout()),
    }
}

fn tls_timeout() -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        "the peer did not finish the TLS handshake in time",
    )
}

/// Wraps an accepted connection in TLS as the server, bounded by [`TLS_HANDSHAKE_TIMEOUT`].
pub async fn tls_accept(io: BoxedIo, config: Arc<rustls::ServerConfig>) -> io::Result<BoxedIo> {
    let accept = tokio_rustls::TlsAcceptor::from(config).accept(io);
    match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, accept).await {
        Ok(stream) => Ok(BoxedIo::new(stream?)),
        Err(_) => Err(tls_timeout()),
    }
}

/// The stream of accepted connections a tonic server consumes.
pub type Incoming = tokio_stream::wrappers::ReceiverStream<io::Result<BoxedIo>>;

/// Creates an [`Incoming`] stream and the sender that feeds it.
pub fn incoming() -> (mpsc::Sender<io::Result<BoxedIo>>, Incoming) {
    let (tx, rx) = mpsc::channel(16);
    (tx, tokio_stream::wrappers::ReceiverStream::new(rx))
}

/// Accepts connections from `listener` until the returned task is aborted or nobody reads
/// `tx`, doing TLS handshakes concurrently so a slow peer never blocks the others.
pub fn spawn_accept_loop(
    listener: Listener,
    tls: Option<Arc<rustls::ServerConfig>>,
    tx: mpsc::Sender<io::Result<BoxedIo>>,
) -> tokio::task::JoinHandle<()> {
    let closed = tx.clone();
    spawn_accept_loop_with(listener, closed, move |io| {
        forward(io, tls.clone(), tx.clone())
    })
}

/// Accepts connections from `listener` and gives each to `handle`, until the returned task is
/// aborted or `until` (the server's incoming sender) has no receiver any more.
pub fn spawn_accept_loop_with(
    listener: Listener,
    until: mpsc::Sender<io::Result<BoxedIo>>,
    mut handle: impl FnMut(BoxedIo) + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let io = tokio::select! {
                io = listener.accept() => io,
                () = until.closed() => return,
            };
            match io {
                Ok(io) => handle(io),
                Err(e) => {
                    tracing::debug!(error = %e, "accept failed");
                    // Out of file descriptors and the like: back off instead of spinning.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
    })
}

/// Hands one accepted connection to the server, after a TLS handshake when configured.
pub fn forward(
    io: BoxedIo,
    tls: Option<Arc<rustls::ServerConfig>>,
    tx: mpsc::Sender<io::Result<BoxedIo>>,
) {
    match tls {
        None => {
            if let Err(mpsc::error::TrySendError::Full(item)) = tx.try_send(Ok(io)) {
                tokio::spawn(async move { tx.send(item).await });
            }
        }
        Some(config) => {
            tokio::spawn(async move {
                match tls_accept(io, config).await {
                    Ok(io) => {
                        let _ = tx.send(Ok(io)).await;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "refused a connection: TLS handshake failed")
                    }
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn unix_listener_is_removed_on_drop() {
        let dir = tempfile::tempdir().expect("tempdir");
        let listener = Listener::unix(dir.path(), None).expect("listen");
        let Address::Unix(path) = listener.address().clone() else {
            panic!("unix address expected");
        };
        assert!(path.starts_with(dir.path()));
        assert!(
            path.file_name()
                .expect("name")
                .to_string_lossy()
                .starts_with("plugin")
        );
        let accept = tokio::spawn(async move {
            let mut io = listener.accept().await.expect("accept");
            let mut buf = [0u8; 2];
            io.read_exact(&mut buf).await.expect("read");
            buf
        });
        let mut conn = dial(&Address::Unix(path.clone())).await.expect("dial");
        conn.write_all(b"hi").await.expect("write");
        assert_eq!(&accept.await.expect("join"), b"hi");
        assert!(
            !path.exists(),
            "socket file removed when the listener is dropped"
        );
    }

    #[tokio::test]
    async fn unix_socket_group_permissions() {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let dir = tempfile::tempdir().expect("tempdir");
        let gid = nix::unistd::getegid().as_raw();
        let listener = Listener::unix(dir.path(), Some(&gid.to_string())).expect("listen");
        let Address::Unix(path) = listener.address() else {
            panic!("unix address expected");
        };
        let meta = std::fs::metadata(path).expect("stat");
        assert_eq!(meta.permissions().mode() & 0o777, 0o660);
        assert_eq!(meta.gid(), gid);
        let err =
            Listener::unix(dir.path(), Some("no-such-group-plugwire")).expect_err("bad group");
        assert!(err.to_string().contains("failed to find gid"), "{err}");
    }

    #[tokio::test]
    async fn tcp_listener_takes_first_free_port_in_range() {
        let first = Listener::tcp(0..=0).await.expect("ephemeral");
        let Address::Tcp(addr) = first.address().clone() else {
            panic!("tcp address expected");
        };
        let port: u16 = addr
            .rsplit_once(':')
            .expect("port")
            .1
            .parse()
            .expect("number");
        // The range starts at a taken port: the next free one is used.
        let second = Listener::tcp(port..=port.saturating_add(50))
            .await
            .expect("next port");
        assert_ne!(second.address(), first.address());
        assert!(Listener::tcp(port..=port).await.is_err());
    }

    /// A peer that accepts the connection but never answers the TLS handshake cannot hang a
    /// dial: both ends give up after [`TLS_HANDSHAKE_TIMEOUT`].
    #[tokio::test(start_paused = true)]
    async fn tls_handshakes_are_bounded_both_ways() {
        let identity = tls::Identity::generate().expect("identity");
        let peer = tls::PinnedPeer::new([identity.cert().clone()]).expect("peer");
        let configs = tls::TlsConfigs::pinned(&identity, &peer).expect("configs");
        let client = configs.client.clone().expect("client config");
        let server = configs.server.clone().expect("server config");
        let (silent, _keep_open) = tokio::io::duplex(1 << 16);
        let started = tokio::time::Instant::now();
        let err = tls_connect(BoxedIo::new(silent), client)
            .await
            .expect_err("nobody answers");
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(started.elapsed(), TLS_HANDSHAKE_TIMEOUT);
        let (silent, _keep_open) = tokio::io::duplex(1 << 16);
        let err = tls_accept(BoxedIo::new(silent), server)
            .await
            .expect_err("nobody speaks");
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    }
}

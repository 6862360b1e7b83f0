//! A gRPC channel to a plugin the check started itself: over its unix socket (or TCP), in
//! plaintext or with a TLS client configuration of the check's choosing.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use plugwire_protocol::Address;
use tokio::io::{AsyncRead, AsyncWrite};
use tonic::transport::{Channel, Endpoint};

/// A byte stream of any kind.
pub(crate) trait Io: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

type BoxedIo = Pin<Box<dyn Io>>;

/// Connects to `address`; with `tls`, does a TLS handshake (server name `localhost`) first.
pub(crate) async fn connect(
    address: &Address,
    tls: Option<Arc<rustls::ClientConfig>>,
    timeout: Duration,
) -> Result<Channel, tonic::transport::Error> {
    let address = address.clone();
    let endpoint = Endpoint::from_static("http://localhost")
        .connect_timeout(timeout)
        .timeout(timeout);
    endpoint
        .connect_with_connector(tower::service_fn(move |_| {
            let address = address.clone();
            let tls = tls.clone();
            async move {
                let raw = dial(&address).await?;
                let io: BoxedIo = match tls {
                    Some(config) => {
                        let name = rustls::pki_types::ServerName::try_from("localhost")
                            .map_err(std::io::Error::other)?;
                        Box::pin(
                            tokio_rustls::TlsConnector::from(config)
                                .connect(name, raw)
                                .await?,
                        )
                    }
                    None => raw,
                };
                Ok::<_, std::io::Error>(TokioIo::new(io))
            }
        }))
        .await
}

/// A raw connection to `address`.
pub(crate) async fn dial(address: &Address) -> std::io::Result<BoxedIo> {
    Ok(match address {
        Address::Unix(path) => Box::pin(tokio::net::UnixStream::connect(path).await?),
        Address::Tcp(addr) => Box::pin(tokio::net::TcpStream::connect(addr.as_str()).await?),
    })
}

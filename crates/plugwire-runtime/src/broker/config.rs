//! How a broker works on one side, and how its operations fail.

use std::io;
use std::sync::Arc;

use plugwire_protocol::broker::Role;

use crate::grpc::{EndpointHook, ServerHook};
use crate::tls::TlsConfigs;

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
#[non_exhaustive]
pub enum BrokerListen {
    /// Unix sockets in `dir`, group-writable when `group` is set.
    Unix {
        /// The directory (`PLUGIN_UNIX_SOCKET_DIR` or the OS temp dir).
        dir: std::path::PathBuf,
        /// The group.
        group: Option<String>,
    },
    /// TCP on `127.0.0.1` in this port range (0..=0: any free port).
    Tcp(std::ops::RangeInclusive<u16>),
}

/// How a broker works on this side.
#[derive(Clone)]
#[non_exhaustive]
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
    /// The application's changes to brokered channels.
    pub endpoint: Option<EndpointHook>,
    /// The application's changes to brokered servers.
    pub server: Option<ServerHook>,
}

impl BrokerConfig {
    /// A plaintext, plain-mode configuration for `role` whose listeners go to `listen`.
    pub fn new(role: Role, listen: BrokerListen) -> Self {
        BrokerConfig {
            role,
            tls: TlsConfigs::default(),
            listen,
            translator: None,
            multiplex: false,
            on_peer_socket: None,
            endpoint: None,
            server: None,
        }
    }
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
            .field("endpoint", &self.endpoint.is_some())
            .field("server", &self.server.is_some())
            .finish()
    }
}

/// Why a broker operation failed. Texts follow go-plugin's where it has one, and include their
/// causes (so `source()` is `None` and error reporters print each cause once).
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
    #[error("could not listen for brokered connections: {0}")]
    Listen(io::Error),
    /// Address translation failed.
    #[error("could not translate the brokered address: {0}")]
    Translate(io::Error),
    /// Connecting to the brokered service failed (the cause says why, e.g. a knock timeout).
    #[error(
        "could not dial brokered service {id}: {}",
        plugwire_protocol::error_chain(cause)
    )]
    Dial {
        /// The id.
        id: u32,
        /// The cause.
        cause: tonic::transport::Error,
    },
    /// The broker was closed.
    #[error("broker closed")]
    Closed,
}

//! Plugins that speak go-plugin's net/rpc protocol (`netrpc`): the connection (go-plugin's
//! `RPCClient`), dispensing net/rpc clients, and the plugin's stdout and stderr streams.
//!
//! Allow the protocol with [`PluginConfigBuilder::allowed_protocols`], then use
//! [`Plugin::netrpc`]:
//!
//! ```no_run
//! use plugwire_host::netrpc::gobwire::Interface;
//! use plugwire_host::{MagicCookie, Plugin, PluginConfig, Protocol};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! // go-plugin's examples/basic: a netrpc "greeter".
//! let config = PluginConfig::builder(
//!     MagicCookie::new("BASIC_PLUGIN", "hello"),
//!     std::process::Command::new("./greeter-plugin"),
//! )
//! .plugins(1, ["greeter"])
//! .allowed_protocols([Protocol::NetRpc])
//! .build();
//! let plugin = Plugin::launch(config).await?;
//! let greeter = plugin.netrpc()?.dispense("greeter").await?;
//! // go-plugin registers every plugin's methods as `Plugin.<Method>`; `Greet` takes the
//! // example's `new(interface{})`, a nil interface.
//! let greeting: String = greeter.call("Plugin.Greet", &None::<Interface>).await?;
//! println!("{greeting}");
//! plugin.kill().await;
//! # Ok(()) }
//! ```
//!
//! Arguments and replies are gob values: Rust types that derive [`gobwire::Gob`] (field names
//! as the Go struct's), or `gobwire::Dynamic` for anything. Every reply is checked by the gob
//! guard before it is decoded (see [`Limits`]).
//!
//! [`PluginConfigBuilder::allowed_protocols`]: crate::PluginConfigBuilder::allowed_protocols
//! [`Plugin::netrpc`]: crate::Plugin::netrpc

use std::collections::BTreeSet;
use std::sync::Arc;

use plugwire_runtime::netrpc::HostSession;
use plugwire_runtime::transport::{self, Address};
use plugwire_runtime::yamux;
use tokio::io::AsyncReadExt;
use tokio::task::JoinHandle;

use crate::error::{Error, ErrorKind};
use crate::stdio::Sinks;
use crate::writer::SinkWriter;

pub use plugwire_runtime::netrpc::{
    Client, InvalidRequest, Limits, MuxBroker, MuxBrokerError, RpcError, Server, ServiceError,
    gobwire,
};

/// The net/rpc connection to a plugin (go-plugin's `RPCClient`): dispense plugins, reach its
/// broker. Get it from [`Plugin::netrpc`](crate::Plugin::netrpc). Cheap to clone; clones share
/// the connection.
#[derive(Clone)]
pub struct NetRpc {
    control: Client,
    broker: MuxBroker,
    session: yamux::Control,
    plugins: BTreeSet<String>,
    version: u32,
}

impl std::fmt::Debug for NetRpc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetRpc")
            .field("plugins", &self.plugins)
            .field("broker", &self.broker)
            .finish_non_exhaustive()
    }
}

impl NetRpc {
    /// A net/rpc client of plugin `name` (go-plugin's `Dispense`): the plugin serves it on a
    /// new broker stream, whose methods are `Plugin.<Method>`.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::UnknownPlugin`] for a name the configuration does not list for the
    /// negotiated version (checked before anything is sent, as go-plugin does) or the plugin
    /// does not know (its `unknown plugin type: <name>`); [`ErrorKind::Rpc`] when the call or
    /// the broker stream fails.
    pub async fn dispense(&self, name: &str) -> Result<Client, Error> {
        if !self.plugins.contains(name) {
            return Err(Error::new(
                ErrorKind::UnknownPlugin,
                format!(
                    "unknown plugin type: {name} (version {} offers {:?})",
                    self.version, self.plugins
                ),
            ));
        }
        let id: u32 = match self.control.call("Dispenser.Dispense", name).await {
            Ok(id) => id,
            Err(RpcError::Server(message)) if message.starts_with("unknown plugin type") => {
                return Err(Error::new(ErrorKind::UnknownPlugin, message));
            }
            Err(e) => {
                return Err(Error::with_source(
                    ErrorKind::Rpc,
                    format!("could not dispense {name}"),
                    e,
                ));
            }
        };
        self.broker.dial_client(id).await.map_err(|e| {
            Error::with_source(
                ErrorKind::Rpc,
                format!("could not connect to the dispensed {name} (broker id {id})"),
                e,
            )
        })
    }

    /// The broker of this connection (go-plugin's `MuxBroker`, given to a netrpc plugin's
    /// `Client`): serve callbacks to the plugin, or dial what it serves.
    pub fn broker(&self) -> &MuxBroker {
        &self.broker
    }

    /// `Control.Ping`.
    pub(crate) async fn ping(&self) -> Result<(), RpcError> {
        self.control
            .call::<_, InvalidRequest>("Control.Ping", &true)
            .await
            .map(drop)
    }

    /// `Control.Quit`: the plugin's `Serve` returns (its reply may race with its exit).
    pub(crate) async fn quit(&self) -> Result<(), RpcError> {
        self.control
            .call::<_, InvalidRequest>("Control.Quit", &true)
            .await
            .map(drop)
    }

    /// Whether the connection is gone: the session ended, or the plugin does not answer a ping.
    pub(crate) async fn gone(&self) -> bool {
        self.session.is_closed()
            || tokio::time::timeout(std::time::Duration::from_secs(1), self.ping())
                .await
                .map_or(true, |r| r.is_err())
    }

    /// Closes the broker and the session (after [`NetRpc::quit`], as go-plugin's `Close`). Safe
    /// in `Drop`: nothing is awaited.
    pub(crate) fn close(&self) {
        self.broker.close();
        self.session.start_close();
    }
}

/// Dials the plugin (TLS when configured) and starts the netrpc session: go-plugin's
/// `newRPCClient`.
pub(crate) async fn connect(
    address: &Address,
    tls: Option<Arc<rustls::ClientConfig>>,
    limits: Limits,
) -> Result<HostSession, Error> {
    let connect_error = |e: &dyn std::fmt::Display| {
        format!("could not connect to the plugin at {address} (netrpc): {e}")
    };
    let io = transport::dial(address)
        .await
        .map_err(|e| Error::new(ErrorKind::Connect, connect_error(&e)))?;
    let io = match tls {
        Some(config) => transport::tls_connect(io, config)
            .await
            .map_err(|e| Error::new(ErrorKind::Connect, connect_error(&e)))?,
        None => io,
    };
    plugwire_runtime::netrpc::connect(io, limits)
        .await
        .map_err(|e| Error::new(ErrorKind::Connect, connect_error(&e)))
}

/// The handle and the task copying the plugin's stdout and stderr streams to the host's sinks
/// (go-plugin's `SyncStreams`; drained when there is no sink, so the plugin never blocks).
pub(crate) fn start(
    session: HostSession,
    plugins: BTreeSet<String>,
    version: u32,
    name: &str,
    sinks: Sinks,
) -> (NetRpc, JoinHandle<()>) {
    let HostSession {
        control,
        stdout,
        stderr,
        broker,
        session,
    } = session;
    let writer = SinkWriter::start("plugwire-stdio", name, vec![sinks.stdout, sinks.stderr]);
    let stdio = tokio::spawn(async move {
        tokio::join!(
            copy(stdout, 0, writer.as_ref()),
            copy(stderr, 1, writer.as_ref())
        );
        if let Some(writer) = writer {
            writer.finish().await;
        }
    });
    let netrpc = NetRpc {
        control,
        broker,
        session,
        plugins,
        version,
    };
    (netrpc, stdio)
}

/// Copies one stream to sink `index` until it ends.
async fn copy(mut stream: yamux::Stream, index: usize, writer: Option<&SinkWriter>) {
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if let Some(writer) = writer {
                    writer.write(index, buf[..n].to_vec()).await;
                }
            }
        }
    }
}

//! Serving plugins over go-plugin's net/rpc protocol (`netrpc`), for hosts that load netrpc
//! plugins (go-plugin's default when a host sets no `AllowedProtocols`).
//!
//! A version whose set is a [`NetRpcPluginSet`] ([`ServeConfigBuilder::netrpc_plugins`]) is
//! served over netrpc: the handshake line says `netrpc`, and each host connection is a yamux
//! session whose first streams are `Control`/`Dispenser`, stdout and stderr, as go-plugin's
//! `RPCServer` serves them. Each `Dispense` builds the plugin's net/rpc [`Server`] for that
//! connection's [`MuxBroker`] and serves it on a new broker stream; go-plugin names its
//! service `Plugin`, so register methods as `"Plugin.<Method>"`.
//!
//! ```no_run
//! use plugwire_plugin::netrpc::gobwire::Interface;
//! use plugwire_plugin::netrpc::{NetRpcPluginSet, Server, ServiceError};
//! use plugwire_plugin::{MagicCookie, ServeConfig, serve};
//!
//! #[tokio::main(flavor = "current_thread")]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     // go-plugin's examples/basic greeter, for its Go host.
//!     let greeter = NetRpcPluginSet::new().add("greeter", |_broker| {
//!         let mut server = Server::new();
//!         // The host's argument is `new(interface{})`: a nil interface.
//!         server.register("Plugin.Greet", |_: Option<Interface>| async {
//!             Ok::<_, ServiceError>("Hello!".to_owned())
//!         });
//!         server
//!     });
//!     let config = ServeConfig::builder(MagicCookie::new("BASIC_PLUGIN", "hello"))
//!         .netrpc_plugins(1, greeter)
//!         .build();
//!     serve(config).await?;
//!     Ok(())
//! }
//! ```
//!
//! Arguments and replies are gob values: Rust types that derive [`gobwire::Gob`] with the Go
//! struct's field names, or `gobwire::Dynamic`. Every call's gob stream is checked by the gob
//! guard before it is decoded ([`Limits`]).
//!
//! [`ServeConfigBuilder::netrpc_plugins`]: crate::ServeConfigBuilder::netrpc_plugins

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt as _;
use plugwire_runtime::netrpc::{Dispense, PluginSession};
use plugwire_runtime::pb::stdio_data::Channel;
use plugwire_runtime::transport::{self, BoxedIo, Listener};
use plugwire_runtime::yamux;
use tokio::io::AsyncWriteExt as _;
use tokio_util::sync::CancellationToken;

use crate::serve::{SHUTDOWN_GRACE, stop_accepting};
use crate::stdio::Output;

pub use plugwire_runtime::netrpc::{
    Client, InvalidRequest, Limits, MuxBroker, MuxBrokerError, RpcError, Server, ServiceError,
    gobwire,
};

/// How long `Control.Quit` waits for the plugin's output to reach the host before replying (a
/// Go host closes the connection as soon as it has the reply).
pub(crate) const QUIT_DELIVERY: Duration = Duration::from_secs(1);

/// Builds a plugin's net/rpc server for one `Dispense` on one connection.
type Make = Arc<dyn Fn(&MuxBroker) -> Server + Send + Sync>;

/// The netrpc plugins served for one app-protocol version, each under its name (go-plugin's
/// `PluginSet` of `Plugin`s whose `Server` returns the RPC object).
#[derive(Clone, Default)]
pub struct NetRpcPluginSet {
    plugins: BTreeMap<String, Make>,
}

impl NetRpcPluginSet {
    /// An empty set.
    pub fn new() -> Self {
        NetRpcPluginSet::default()
    }

    /// Serves plugin `name`: each time a host dispenses it, `make` builds its net/rpc server,
    /// given the connection's broker (go-plugin's `Plugin.Server(broker)`), e.g. to dial
    /// objects the host serves for callbacks. Register methods as `"Plugin.<Method>"`.
    pub fn add(
        mut self,
        name: impl Into<String>,
        make: impl Fn(&MuxBroker) -> Server + Send + Sync + 'static,
    ) -> Self {
        self.plugins.insert(name.into(), Arc::new(make));
        self
    }

    /// The plugin names in this set.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.plugins.keys().map(String::as_str)
    }

    /// `Dispenser.Dispense`: the server of a known plugin, or go-plugin's error.
    fn dispense(self) -> Dispense {
        Arc::new(move |name: &str, broker: &MuxBroker| {
            self.plugins
                .get(name)
                .map(|make| Arc::new(make(broker)))
                .ok_or_else(|| format!("unknown plugin type: {name}"))
        })
    }
}

/// One version's netrpc plugins, ready to serve. Made by [`NetRpcPluginSet::into_serving`] (so by
/// [`ServeConfigBuilder::netrpc_plugins`](crate::ServeConfigBuilder::netrpc_plugins)) and called
/// through a trait object, so the netrpc server (yamux, gob, net/rpc) is linked only into
/// plugins that serve netrpc: a gRPC-only plugin is ~0.4 MB smaller and touches fewer pages.
pub(crate) type NetRpcServing = Box<dyn ServeNetRpc>;

/// What serving netrpc needs from `serve`.
pub(crate) struct ServeArgs {
    pub(crate) listener: Listener,
    pub(crate) server_tls: Option<Arc<rustls::ServerConfig>>,
    pub(crate) shutdown: CancellationToken,
    pub(crate) output: Option<Output>,
    pub(crate) limits: Limits,
}

pub(crate) trait ServeNetRpc: Send + fmt::Debug {
    /// Serves the host's netrpc connections until shutdown.
    fn serve(self: Box<Self>, args: ServeArgs) -> Pin<Box<dyn Future<Output = ()> + Send>>;
}

impl ServeNetRpc for NetRpcPluginSet {
    fn serve(self: Box<Self>, args: ServeArgs) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        let connections = Connections::new(*self, args.shutdown.clone(), args.output, args.limits);
        Box::pin(serve_connections(
            args.listener,
            args.server_tls,
            connections,
            args.shutdown,
        ))
    }
}

impl NetRpcPluginSet {
    pub(crate) fn into_serving(self) -> NetRpcServing {
        Box::new(self)
    }
}

/// Serves the host's netrpc connections (each a session of its own, as go-plugin's
/// `RPCServer.Serve`) until shutdown; each then gets a bounded time to deliver the remaining
/// output and close.
async fn serve_connections(
    listener: Listener,
    server_tls: Option<Arc<rustls::ServerConfig>>,
    connections: Connections,
    shutdown: CancellationToken,
) {
    let (tx, mut incoming) = transport::incoming();
    let accept = transport::spawn_accept_loop(listener, server_tls, tx);
    let mut serving = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            io = incoming.next() => match io {
                Some(Ok(io)) => {
                    serving.spawn(connections.clone().serve(io));
                }
                Some(Err(e)) => tracing::debug!(error = %e, "netrpc connection refused"),
                None => break,
            },
            Some(_) = serving.join_next(), if !serving.is_empty() => {}
            () = shutdown.cancelled() => break,
        }
    }
    stop_accepting(accept).await;
    let _ = tokio::time::timeout(SHUTDOWN_GRACE + QUIT_DELIVERY, async {
        while serving.join_next().await.is_some() {}
    })
    .await;
    serving.shutdown().await;
}

impl fmt::Debug for NetRpcPluginSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.plugins.keys()).finish()
    }
}

/// What every connection of one serve shares.
#[derive(Clone)]
pub(crate) struct Connections {
    dispense: Dispense,
    shutdown: CancellationToken,
    output: Option<Output>,
    limits: Limits,
}

impl Connections {
    pub(crate) fn new(
        set: NetRpcPluginSet,
        shutdown: CancellationToken,
        output: Option<Output>,
        limits: Limits,
    ) -> Self {
        Connections {
            dispense: set.dispense(),
            shutdown,
            output,
            limits,
        }
    }

    /// Serves one host connection (TLS done) until it ends or the plugin shuts down: go-plugin's
    /// `RPCServer.ServeConn`. On shutdown, the output still queued goes out and the session is
    /// closed gracefully.
    pub(crate) async fn serve(self, io: BoxedIo) {
        let session = match plugwire_runtime::netrpc::accept(io, self.limits.clone()).await {
            Ok(session) => session,
            Err(e) => {
                tracing::error!(error = %e, "plugin: error accepting the netrpc connection");
                return;
            }
        };
        let PluginSession {
            control,
            stdout,
            stderr,
            broker,
            session,
        } = session;
        let shutdown = self.shutdown.clone();
        let output = self.output.clone();
        let server = plugwire_runtime::netrpc::control_server(&broker, self.dispense, move || {
            let (shutdown, output) = (shutdown.clone(), output.clone());
            async move {
                tracing::debug!("quit requested by the host");
                let _ = io::Write::flush(&mut io::stdout());
                shutdown.cancel();
                if let Some(output) = output {
                    output.wait_delivered(QUIT_DELIVERY).await;
                }
            }
        });
        let mut forward = tokio::spawn(forward_output(self.output, stdout, stderr));
        let control = broker.serve(control, Arc::new(server));
        tokio::pin!(control);
        let ended = tokio::select! {
            () = &mut control => true,
            () = self.shutdown.cancelled() => false,
        };
        if !ended {
            // The `Control.Quit` reply (and calls in flight) must go out first: a host closes
            // the connection once it has the reply, which ends `control`. Then the rest of the
            // output (the capture drains on shutdown). Both bounded.
            let _ = tokio::time::timeout(QUIT_DELIVERY, &mut control).await;
            let _ = tokio::time::timeout(QUIT_DELIVERY, &mut forward).await;
        }
        forward.abort();
        broker.close();
        session.close().await;
    }
}

/// Writes the captured output to the host's stdout and stderr streams until it ends (go-plugin's
/// `copyStream`); without capture, holds the streams open.
async fn forward_output(output: Option<Output>, stdout: yamux::Stream, stderr: yamux::Stream) {
    let Some(output) = output else {
        // Dropped (FIN) with the session.
        std::future::pending::<()>().await;
        return;
    };
    let mut streams = [Some(stdout), Some(stderr)];
    let chunks = crate::stdio::stream(output);
    tokio::pin!(chunks);
    while let Some(chunk) = chunks.next().await {
        let index = usize::from(chunk.channel == Channel::Stderr as i32);
        let Some(stream) = streams[index].as_mut() else {
            continue;
        };
        if let Err(e) = write_chunk(stream, &chunk.data).await {
            tracing::debug!(error = %e, "the host's stdio stream closed: output dropped");
            streams[index] = None;
        }
    }
    for stream in streams.iter_mut().flatten() {
        let _ = stream.shutdown().await;
    }
}

async fn write_chunk(stream: &mut yamux::Stream, data: &[u8]) -> io::Result<()> {
    stream.write_all(data).await?;
    stream.flush().await
}

//! A connected plugin (go-plugin's `Client` once started): what was negotiated, dispensing
//! clients, ping, exit. Launching, attaching and killing are in their own modules; the netrpc
//! connection is in `netrpc.rs`.

use std::collections::BTreeSet;
use std::process::ExitStatus;
use std::sync::Arc;

use plugwire_protocol::Protocol;
use plugwire_protocol::handshake::HandshakeLine;
use plugwire_protocol::reattach::ReattachConfig;
use plugwire_runtime::broker::Broker;
use plugwire_runtime::grpc::MAX_MESSAGE_SIZE;
use plugwire_runtime::transport::Address;
use tokio::sync::Mutex;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

use crate::client::GrpcClient;
use crate::error::{Error, ErrorKind};
use crate::kill::KillReport;
use crate::netrpc::NetRpc;
use crate::process::Process;

/// A running plugin process and the connection to it: gRPC (tonic clients from
/// [`Plugin::dispense`]) or, for a plugin that speaks go-plugin's net/rpc protocol, netrpc
/// ([`Plugin::netrpc`]).
///
/// Dropping a `Plugin` SIGKILLs the process if it is still running (with its process group) and
/// stops what the host serves through its broker; call [`Plugin::kill`] for a graceful stop.
#[derive(Debug)]
pub struct Plugin {
    pub(crate) name: String,
    pub(crate) timings: Option<Timings>,
    pub(crate) negotiated: Negotiated,
    pub(crate) plugins: BTreeSet<String>,
    pub(crate) address: Address,
    pub(crate) handshake: Option<HandshakeLine>,
    pub(crate) wire: Wire,
    pub(crate) process: Arc<Process>,
    pub(crate) stderr_done: Mutex<Option<JoinHandle<()>>>,
    pub(crate) stdio_done: Mutex<Option<JoinHandle<()>>>,
    pub(crate) background: Vec<JoinHandle<()>>,
    pub(crate) killed: Mutex<Option<KillReport>>,
    /// Set for a reattached plugin (its configuration, as given).
    pub(crate) reattached: Option<ReattachConfig>,
}

/// The connection, by protocol.
#[derive(Debug)]
pub(crate) enum Wire {
    Grpc { channel: Channel, broker: Broker },
    NetRpc(NetRpc),
}

impl Wire {
    /// Stops what the host serves through its broker (and, for netrpc, the session).
    pub(crate) fn close(&self) {
        match self {
            Wire::Grpc { broker, .. } => broker.close(),
            Wire::NetRpc(netrpc) => netrpc.close(),
        }
    }

    /// Whether the plugin is gone: it cannot be reached any more.
    pub(crate) async fn gone(&self) -> bool {
        match self {
            Wire::Grpc { channel, .. } => crate::kill::gone(channel).await,
            Wire::NetRpc(netrpc) => netrpc.gone().await,
        }
    }
}

/// What host and plugin agreed on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Negotiated {
    /// The protocol the plugin speaks.
    pub protocol: Protocol,
    /// The app-protocol version.
    pub version: u32,
    /// How the connection is secured.
    pub tls: TlsMode,
    /// Whether brokered connections are multiplexed over the plugin connection.
    pub multiplexed: bool,
}

/// How long each phase of a launch took.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Timings {
    /// Starting the process (fork and exec).
    pub spawn: std::time::Duration,
    /// From the start to the handshake line.
    pub handshake_line: std::time::Duration,
    /// From the handshake line to the connected gRPC channel (TLS included).
    pub connect: std::time::Duration,
}

/// How the connection to a plugin is secured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TlsMode {
    /// No TLS.
    Plaintext,
    /// go-plugin's AutoMTLS: certificates exchanged at launch, each side pinning the other's.
    AutoMtls,
    /// The application's own TLS configuration.
    Manual,
}

impl Plugin {
    /// The negotiated app-protocol version (go-plugin's `NegotiatedVersion()`).
    pub fn version(&self) -> u32 {
        self.negotiated.version
    }

    /// The protocol the plugin answered with (go-plugin's `Protocol()`).
    pub fn protocol(&self) -> Protocol {
        self.negotiated.protocol
    }

    /// What host and plugin agreed on: protocol, version, TLS, broker multiplexing.
    pub fn negotiated(&self) -> Negotiated {
        self.negotiated
    }

    /// How long each phase of the launch took (`None` for a reattached plugin).
    pub fn timings(&self) -> Option<Timings> {
        self.timings
    }

    /// The handshake line the plugin printed, as parsed (`None` for a reattached plugin).
    pub fn handshake(&self) -> Option<&HandshakeLine> {
        self.handshake.as_ref()
    }

    /// Where the plugin listens.
    pub fn address(&self) -> &Address {
        &self.address
    }

    /// The plugin's process id.
    pub fn pid(&self) -> Option<u32> {
        self.process.pid()
    }

    /// What another host needs to attach to this plugin (go-plugin's `ReattachConfig()`); for a
    /// reattached plugin, the configuration it was attached with.
    pub fn reattach_config(&self) -> ReattachConfig {
        self.reattached.clone().unwrap_or_else(|| {
            ReattachConfig::new(
                self.negotiated.protocol,
                self.negotiated.version,
                &self.address,
                self.pid().unwrap_or(0),
            )
        })
    }

    /// The host's broker for this plugin (go-plugin's `GRPCBroker`): serve callbacks to the
    /// plugin ([`Broker::accept_and_serve`]) or dial services it serves ([`Broker::dial`]).
    /// A netrpc plugin's broker is [`NetRpc::broker`].
    ///
    /// ```no_run
    /// # async fn f(plugin: plugwire_host::Plugin) -> Result<(), Box<dyn std::error::Error>> {
    /// # let add_helper = tonic_health::server::health_reporter().1;
    /// // go-plugin's examples/bidirectional: serve AddHelper for one call, pass its id.
    /// let broker = plugin.broker()?;
    /// let id = broker.next_id();
    /// let served = broker.accept_and_serve(id, add_helper).await?;
    /// // counter.put(PutRequest { add_server: id, .. }).await?;
    /// served.stop().await;
    /// // Dial a service the plugin serves under an id it returned.
    /// let channel = broker.dial(1).await?;
    /// # let _ = channel; Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Protocol`] for a netrpc plugin.
    pub fn broker(&self) -> Result<&Broker, Error> {
        match &self.wire {
            Wire::Grpc { broker, .. } => Ok(broker),
            Wire::NetRpc(_) => Err(self.wrong_protocol("broker()", "netrpc()?.broker()")),
        }
    }

    /// The gRPC channel to the plugin, for any tonic client.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Protocol`] for a netrpc plugin.
    pub fn channel(&self) -> Result<Channel, Error> {
        match &self.wire {
            Wire::Grpc { channel, .. } => Ok(channel.clone()),
            Wire::NetRpc(_) => Err(self.wrong_protocol("channel()", "netrpc()")),
        }
    }

    /// The net/rpc connection to a plugin that speaks go-plugin's netrpc protocol: dispense
    /// net/rpc clients from it (see [`crate::netrpc`]).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Protocol`] for a gRPC plugin.
    pub fn netrpc(&self) -> Result<&NetRpc, Error> {
        match &self.wire {
            Wire::NetRpc(netrpc) => Ok(netrpc),
            Wire::Grpc { .. } => Err(Error::new(
                ErrorKind::Protocol,
                format!(
                    "plugin {} speaks gRPC, not netrpc: use dispense(), channel() and broker()",
                    self.name
                ),
            )),
        }
    }

    fn wrong_protocol(&self, call: &str, instead: &str) -> Error {
        Error::new(
            ErrorKind::Protocol,
            format!(
                "plugin {} speaks netrpc (go-plugin's net/rpc protocol), so it has no gRPC {call}: \
                 use {instead}",
                self.name
            ),
        )
    }

    /// A typed client for plugin `name` of the negotiated version, made by `make` from the
    /// channel (go-plugin's `Dispense`), e.g. `plugin.dispense("kv", KvClient::new)`. Nothing goes
    /// on the wire: gRPC plugin names are checked locally, as in go-plugin.
    ///
    /// The client gets go-plugin's message limits, [`MAX_MESSAGE_SIZE`] each way (tonic's own
    /// default refuses replies over 4 MiB); set others on the client it returns. Generated
    /// clients take part through [`GrpcClient`], implemented with [`grpc_client!`].
    ///
    /// For a netrpc plugin this is [`ErrorKind::Protocol`]: dispense from [`Plugin::netrpc`].
    ///
    /// [`MAX_MESSAGE_SIZE`]: crate::MAX_MESSAGE_SIZE
    /// [`grpc_client!`]: crate::grpc_client
    pub fn dispense<T: GrpcClient>(
        &self,
        name: &str,
        make: impl FnOnce(Channel) -> T,
    ) -> Result<T, Error> {
        let channel = match &self.wire {
            Wire::Grpc { channel, .. } => channel.clone(),
            Wire::NetRpc(_) => {
                return Err(self.wrong_protocol("dispense()", "netrpc()?.dispense(name).await"));
            }
        };
        if !self.plugins.contains(name) {
            return Err(Error::new(
                ErrorKind::UnknownPlugin,
                format!(
                    "unknown plugin type: {name} (version {} offers {:?})",
                    self.negotiated.version, self.plugins
                ),
            ));
        }
        Ok(make(channel).message_limits(MAX_MESSAGE_SIZE, MAX_MESSAGE_SIZE))
    }

    /// Checks the plugin answers: a health check of service `plugin` (gRPC; as in go-plugin, a
    /// `NOT_SERVING` answer passes, only a failed call counts as failure), or `Control.Ping`
    /// (netrpc).
    pub async fn ping(&self) -> Result<(), Error> {
        let channel = match &self.wire {
            Wire::Grpc { channel, .. } => channel.clone(),
            Wire::NetRpc(netrpc) => {
                return netrpc
                    .ping()
                    .await
                    .map_err(|e| Error::with_source(ErrorKind::Rpc, "plugin ping failed", e));
            }
        };
        let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
        health
            .check(tonic_health::pb::HealthCheckRequest {
                service: "plugin".into(),
            })
            .await
            .map(|_| ())
            .map_err(|status| Error::with_source(ErrorKind::Rpc, "plugin ping failed", status))
    }

    /// Whether the process has exited.
    pub fn exited(&self) -> bool {
        self.process.exited().is_cancelled()
    }

    /// The exit status, once the process has exited.
    pub fn exit_status(&self) -> Option<ExitStatus> {
        self.process.status()
    }

    /// A token cancelled when the process exits (go-plugin's `doneCtx`): give it to work that
    /// should stop with the plugin. Cancelling it yourself only cancels that work.
    pub fn exit_token(&self) -> CancellationToken {
        self.process.exited().child_token()
    }

    /// Waits until the process exits, and returns its status.
    pub async fn wait(&self) -> Option<ExitStatus> {
        self.process.exited().cancelled().await;
        self.process.status()
    }
}

impl Drop for Plugin {
    fn drop(&mut self) {
        // Brokered servers the host serves stop and remove their sockets.
        self.wire.close();
        for task in &self.background {
            task.abort();
        }
        if let Ok(mut stdio) = self.stdio_done.try_lock()
            && let Some(task) = stdio.take()
        {
            task.abort();
        }
        // `process` kills the child when its last reference goes.
    }
}

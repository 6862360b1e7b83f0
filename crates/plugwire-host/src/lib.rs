//! Load go-plugin plugins from Rust: launch a plugin process, talk to it with tonic clients.
//!
//! [`Plugin::launch`] does what go-plugin's `Client` does: it starts the plugin with go-plugin's
//! environment, reads and checks its handshake line, connects over the unix socket (or TCP),
//! opens the broker and stdio streams, and hands out tonic clients. [`Plugin::kill`] asks the
//! plugin to shut down, waits up to 2 s, then SIGKILLs it. It works with plugins written with Go's
//! [go-plugin] (v1.8.0) and with `plugwire-plugin`.
//!
//! ```no_run
//! use plugwire_host::{MagicCookie, Plugin, PluginConfig};
//! use tonic_health::pb::health_client::HealthClient;
//!
//! # async fn run() -> Result<(), plugwire_host::Error> {
//! let config = PluginConfig::builder(
//!     MagicCookie::new("BASIC_PLUGIN", "hello"),
//!     std::process::Command::new("./kv-plugin"),
//! )
//! .plugins(1, ["kv_grpc"])
//! .build();
//! let plugin = Plugin::launch(config).await?;
//! // any tonic client, e.g. `KvClient::new`
//! let _client = plugin.dispense("kv_grpc", HealthClient::new)?;
//! plugin.ping().await?;
//! plugin.kill().await;
//! # Ok(()) }
//! ```
//!
//! | go-plugin | plugwire-host |
//! |---|---|
//! | `plugin.NewClient(&ClientConfig{...})` + `Start` + `Client()` | [`Plugin::launch`]`(config).await` |
//! | `ClientConfig{Cmd, HandshakeConfig, VersionedPlugins, ...}` | [`PluginConfig::builder`] |
//! | `rpcClient.Dispense(name)` | [`Plugin::dispense`]`(name, KvClient::new)` (gRPC), [`Plugin::netrpc`]`()?.dispense(name)` ([netrpc]) |
//! | `Ping()` / `Kill()` / `Exited()` | [`Plugin::ping`] / [`Plugin::kill`] / [`Plugin::exited`] |
//! | `NegotiatedVersion()` | [`Plugin::version`] |
//! | the `GRPCBroker` given to `GRPCClient` | [`Plugin::broker`] |
//! | `Managed` + `CleanupClients()` | [`ManagedPlugins`] + [`ManagedPlugins::kill_all`] |
//! | `ClientConfig{Reattach}` / `ReattachConfig()` | [`PluginConfig::reattach`] / [`Plugin::reattach_config`] |
//! | `AutoMTLS`, `TLSConfig`, `SecureConfig`, `GRPCBrokerMultiplex` | [`PluginConfigBuilder`] |
//!
//! [`Plugin::kill`] gives the plugin go-plugin's 2 s, counted from the `Shutdown` call, then
//! SIGKILLs it. The plugin runs in a process group of its own (see
//! [`PluginConfigBuilder::own_process_group`]), so a plugin started through a wrapper such as
//! `sh -c "$PLUGIN"` is killed with the wrapper, and whatever it leaves running in its group is
//! killed when it exits. A reattached plugin is never signalled: it is not this host's child.
//!
//! Build applications with `AWS_LC_SYS_NO_JITTER_ENTROPY=1` (in `.cargo/config.toml`'s
//! `[env]`): otherwise aws-lc seeds its random generator from CPU jitter, which costs a host
//! about 45–70 ms at its first AutoMTLS launch (measured: 64 ms median, 0.27 ms without).
//!
//! The plugin's stderr becomes `tracing` events (target `plugwire::plugin`) at the levels its
//! hclog JSON or `[LEVEL]` prefixes say; see [`LogParser`].
//!
//! Clients from [`Plugin::dispense`] accept messages up to 2 GiB each way, as go-plugin's do
//! (see [`GrpcClient`]); a client made directly from [`Plugin::channel`] keeps tonic's default
//! 4 MiB receive limit unless raised with `.max_decoding_message_size(MAX_MESSAGE_SIZE)`.
//!
//! [go-plugin]: https://github.com/hashicorp/go-plugin

mod attach;
mod client;
mod config;
mod connect;
mod error;
mod kill;
mod launch;
mod lines;
mod log;
mod managed;
pub mod netrpc;
mod plugin;
mod process;
mod secure;
mod stdio;
#[cfg(target_os = "linux")]
mod vfork;
mod writer;

pub use client::GrpcClient;
pub use config::{DEFAULT_START_TIMEOUT, PluginConfig, PluginConfigBuilder};
pub use error::{Error, ErrorKind};
pub use kill::{GRACEFUL_EXIT_TIMEOUT, KillReport};
pub use log::{Level, LogEntry, LogParser, RawSink};
pub use managed::ManagedPlugins;
pub use plugin::{Negotiated, Plugin, Timings, TlsMode};
pub use plugwire_protocol::handshake::HandshakeLine;
pub use plugwire_protocol::reattach::{ReattachAddr, ReattachConfig, ReattachError};
pub use plugwire_protocol::{Address, HandshakeError, MagicCookie, Network, Protocol, error_chain};
pub use plugwire_runtime::broker::{
    AddressTranslator, Broker, BrokerError, BrokeredListener, BrokeredServer,
};
pub use plugwire_runtime::grpc::MAX_MESSAGE_SIZE;
pub use plugwire_runtime::tls::{Identity, TlsConfigs, TlsError};
pub use secure::SecureConfig;
pub use tonic::transport::Channel;
pub use writer::Sink;

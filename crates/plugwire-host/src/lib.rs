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
//! | `rpcClient.Dispense(name)` | [`Plugin::dispense`]`(name, KvClient::new)` |
//! | `Ping()` / `Kill()` / `Exited()` | [`Plugin::ping`] / [`Plugin::kill`] / [`Plugin::exited`] |
//! | `NegotiatedVersion()` | [`Plugin::version`] |
//! | the `GRPCBroker` given to `GRPCClient` | [`Plugin::broker`] |
//! | `Managed` + `CleanupClients()` | [`ManagedPlugins`] + [`ManagedPlugins::kill_all`] |
//! | `ClientConfig{Reattach}` / `ReattachConfig()` | [`PluginConfig::reattach`] / [`Plugin::reattach_config`] |
//! | `AutoMTLS`, `TLSConfig`, `SecureConfig`, `GRPCBrokerMultiplex` | [`PluginConfigBuilder`] |
//!
//! The plugin's stderr becomes `tracing` events (target `plugwire::plugin`) at the levels its
//! hclog JSON or `[LEVEL]` prefixes say; see [`LogParser`].
//!
//! Typed clients made from [`Plugin::channel`] keep tonic's default 4 MiB receive limit; go-plugin
//! hosts allow 2 GiB. Raise it on clients that receive large messages with
//! `.max_decoding_message_size(plugwire_host::MAX_MESSAGE_SIZE)`.
//!
//! [go-plugin]: https://github.com/hashicorp/go-plugin

mod config;
mod error;
mod lines;
mod log;
mod managed;
mod plugin;
mod process;
mod secure;
mod stdio;

pub use config::{DEFAULT_START_TIMEOUT, PluginConfig, PluginConfigBuilder};
pub use error::{Error, ErrorKind};
pub use log::{Level, LogEntry, LogParser, RawSink};
pub use managed::ManagedPlugins;
pub use plugin::{GRACEFUL_EXIT_TIMEOUT, KillReport, Plugin};
pub use plugwire_protocol::broker::{AddressTranslator, Broker, BrokerError, BrokeredServer};
pub use plugwire_protocol::reattach::{ReattachAddr, ReattachConfig};
pub use plugwire_protocol::tls::TlsConfigs;
pub use plugwire_protocol::transport::{Address, MAX_MESSAGE_SIZE};
pub use plugwire_protocol::{HandshakeError, MagicCookie, Network, Protocol};
pub use secure::SecureConfig;
pub use stdio::Sink;
pub use tonic::transport::Channel;

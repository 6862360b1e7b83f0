//! Be a go-plugin plugin in Rust: [`serve`] tonic services to any go-plugin host.
//!
//! A Go host built with HashiCorp's [go-plugin] (v1.8.0), or a plugwire host, launches this
//! process, and [`serve`] does what go-plugin's `plugin.Serve` does: checks the magic cookie,
//! negotiates the app-protocol version, listens on a unix socket (or TCP), sets up AutoMTLS when
//! the host asks, prints the handshake line, and serves the app's tonic services next to
//! go-plugin's own (health, reflection, broker, controller, stdio) until the host shuts it down.
//!
//! ```no_run
//! use plugwire_plugin::{MagicCookie, PluginSet, ServeConfig, serve};
//! # use tonic_health::pb::health_server::{Health, HealthServer};
//! # fn kv_service() -> HealthServer<impl Health> { tonic_health::server::health_reporter().1 }
//!
//! #[tokio::main(flavor = "current_thread")]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let config = ServeConfig::builder(MagicCookie::new("BASIC_PLUGIN", "hello"))
//!         // any tonic service, e.g. `KvServer::new(MyKv)`
//!         .plugins(1, PluginSet::new().add("kv_grpc", kv_service()))
//!         .build();
//!     serve(config).await?;
//!     Ok(())
//! }
//! ```
//!
//! | go-plugin | plugwire-plugin |
//! |---|---|
//! | `plugin.Serve(&ServeConfig{...})` | [`serve`]`(config).await` |
//! | `HandshakeConfig{MagicCookieKey, MagicCookieValue}` | [`MagicCookie`] |
//! | `Plugins` / `VersionedPlugins` | [`ServeConfigBuilder::plugins`] with a [`PluginSet`] per version |
//! | `GRPCPlugin.GRPCServer` registering services | [`PluginSet::add`] with a tonic service |
//! | `GRPCServer(broker, s)` using the broker | [`PluginSet::add_with`], given the [`Broker`] |
//! | `broker.AcceptAndServe` / `broker.Dial` | [`Broker::accept_and_serve`] / [`Broker::dial`] |
//! | `TLSProvider` | [`ServeConfigBuilder::tls_provider`] |
//! | `ServeConfig{Test: ...}` (debug mode, reattach) | [`serve_debug`] |
//! | a `Plugin` (net/rpc) with `Server(broker)` | [`ServeConfigBuilder::netrpc_plugins`] with a [`netrpc::NetRpcPluginSet`] |
//!
//! Whatever the plugin's code writes to stdout and stderr after the handshake, from any thread or
//! task, goes to the host over `plugin.GRPCStdio`, byte for byte; log lines from [`log`] and
//! panic messages go to the host's log instead, as a Go plugin's do.
//!
//! Build plugins with `AWS_LC_SYS_NO_JITTER_ENTROPY=1` (in `.cargo/config.toml`'s `[env]`):
//! otherwise aws-lc seeds its random generator from CPU jitter, which costs every AutoMTLS start
//! of the plugin about 45–70 ms (measured: 64 ms median, 0.27 ms without).
//!
//! [go-plugin]: https://github.com/hashicorp/go-plugin

mod announce;
mod config;
mod fd;
mod host_watch;
mod lazy;
pub mod log;
pub mod netrpc;
mod panic;
mod real_stderr;
mod routes;
mod serve;
mod services;
mod signals;
mod stdio;
mod test_mode;
mod tls_setup;

pub use config::{PluginSet, ServeConfig, ServeConfigBuilder, TlsProvider, Transport};
pub use plugwire_protocol::reattach::ReattachConfig;
pub use plugwire_protocol::{MagicCookie, error_chain};
pub use plugwire_runtime::broker::{Broker, BrokerError, BrokeredListener, BrokeredServer};
pub use plugwire_runtime::tls::{Identity, TlsConfigs, TlsError};
pub use plugwire_runtime::transport::Listener;
pub use serve::{ServeError, serve, serve_debug};
pub use test_mode::{TestConfig, TestServer, serve_test};
pub use tokio_util::sync::CancellationToken;

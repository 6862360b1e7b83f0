//! What a plugin serves and how: [`ServeConfig`] and [`PluginSet`].

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::fmt;

use std::sync::Arc;

use plugwire_protocol::MagicCookie;
use plugwire_runtime::broker::Broker;
use plugwire_runtime::grpc::ServerHook;
use plugwire_runtime::tls::TlsConfigs;
use tokio_util::sync::CancellationToken;

use crate::netrpc::{Limits, NetRpcPluginSet, NetRpcServing};
use tonic::body::Body;
use tonic::server::NamedService;
use tonic::service::{Routes, RoutesBuilder};

/// Registers one plugin's services on the server being built, given the plugin's broker.
type Register = Box<dyn FnOnce(&mut RoutesBuilder, &Broker) + Send>;

/// The plugins served for one app-protocol version, each under its name.
///
/// In gRPC mode plugin names never cross the wire (the host dispenses locally); they document
/// what is served and match go-plugin's `PluginSet`.
#[derive(Default)]
pub struct PluginSet {
    plugins: Vec<(String, Vec<&'static str>, Register)>,
}

impl PluginSet {
    /// An empty set.
    pub fn new() -> Self {
        PluginSet::default()
    }

    /// Serves a tonic service (for example `KvServer::new(MyKv)`) as plugin `name`. Call again with
    /// the same name to serve several services under one plugin.
    pub fn add<S>(self, name: impl Into<String>, service: S) -> Self
    where
        S: tower::Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>
            + NamedService
            + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
    {
        self.add_with(name, move |_| service)
    }

    /// Serves the tonic service `make` builds, given the plugin's [`Broker`] (go-plugin's
    /// `GRPCServer(broker, server)`): for services that dial the host's brokered services or serve
    /// their own.
    ///
    /// ```
    /// use plugwire_plugin::{Broker, PluginSet};
    /// # use tonic_health::pb::health_server::{Health, HealthServer};
    /// # fn counter_server(_: Counter) -> HealthServer<impl Health> { tonic_health::server::health_reporter().1 }
    ///
    /// /// go-plugin's examples/bidirectional: `Put` adds through the host's `AddHelper`.
    /// struct Counter {
    ///     broker: Broker,
    /// }
    ///
    /// impl Counter {
    ///     async fn add(&self, helper_id: u32) -> Result<(), plugwire_plugin::BrokerError> {
    ///         let channel = self.broker.dial(helper_id).await?;
    ///         // AddHelperClient::new(channel).sum(..).await
    /// #       let _ = channel;
    ///         Ok(())
    ///     }
    /// }
    ///
    /// let set = PluginSet::new()
    ///     .add_with("counter", |broker| counter_server(Counter { broker: broker.clone() }));
    /// # let _ = set;
    /// ```
    pub fn add_with<S, F>(mut self, name: impl Into<String>, make: F) -> Self
    where
        F: FnOnce(&Broker) -> S + Send + 'static,
        S: tower::Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>
            + NamedService
            + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
    {
        let register: Register = Box::new(move |routes: &mut RoutesBuilder, broker: &Broker| {
            routes.add_service(make(broker));
        });
        self.plugins.push((name.into(), vec![S::NAME], register));
        self
    }

    /// The plugin names in this set.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.plugins.iter().map(|(name, _, _)| name.as_str())
    }

    /// The gRPC service names this set registers.
    pub(crate) fn service_names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.plugins
            .iter()
            .flat_map(|(_, services, _)| services.iter().copied())
    }

    pub(crate) fn register(self, routes: &mut RoutesBuilder, broker: &Broker) {
        for (_, _, register) in self.plugins {
            register(routes, broker);
        }
    }
}

impl fmt::Debug for PluginSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(
                self.plugins
                    .iter()
                    .map(|(name, services, _)| (name, services)),
            )
            .finish()
    }
}

/// Where the plugin listens.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Transport {
    /// A unix socket in `PLUGIN_UNIX_SOCKET_DIR` or the temp dir (go-plugin's choice outside
    /// Windows).
    #[default]
    Unix,
    /// TCP on `127.0.0.1`, within `PLUGIN_MIN_PORT..=PLUGIN_MAX_PORT` (go-plugin's choice on
    /// Windows).
    Tcp,
}

/// Builds the application's own TLS configuration (go-plugin's `TLSProvider`).
pub type TlsProvider =
    Box<dyn FnOnce() -> Result<TlsConfigs, Box<dyn std::error::Error + Send + Sync>> + Send>;

/// The plugins of one version, and so the protocol they are served with.
#[derive(Debug)]
pub(crate) enum Set {
    Grpc(PluginSet),
    NetRpc(NetRpcServing),
}

/// Everything [`serve`](crate::serve) needs. Built with [`ServeConfig::builder`].
pub struct ServeConfig {
    pub(crate) cookie: MagicCookie,
    pub(crate) sets: BTreeMap<u32, Set>,
    pub(crate) transport: Transport,
    pub(crate) tls_provider: Option<TlsProvider>,
    pub(crate) descriptor_sets: Vec<&'static [u8]>,
    pub(crate) multiplex: bool,
    pub(crate) capture_stdio: bool,
    pub(crate) exit_with_host: bool,
    pub(crate) server_hook: Option<ServerHook>,
    pub(crate) layer: Option<RoutesLayer>,
    pub(crate) shutdown: Option<CancellationToken>,
    pub(crate) gob_limits: Limits,
}

/// Wraps the plugin's routes (see [`ServeConfigBuilder::layer`]).
pub(crate) type RoutesLayer = Box<dyn FnOnce(Routes) -> Routes + Send>;

impl fmt::Debug for ServeConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServeConfig")
            .field("cookie", &self.cookie)
            .field("sets", &self.sets)
            .field("transport", &self.transport)
            .field("tls_provider", &self.tls_provider.is_some())
            .finish_non_exhaustive()
    }
}

impl ServeConfig {
    /// Starts a configuration for a plugin that answers to `cookie`.
    pub fn builder(cookie: MagicCookie) -> ServeConfigBuilder {
        ServeConfigBuilder {
            config: ServeConfig {
                cookie,
                sets: BTreeMap::new(),
                transport: Transport::default(),
                tls_provider: None,
                descriptor_sets: Vec::new(),
                multiplex: true,
                capture_stdio: true,
                exit_with_host: true,
                server_hook: None,
                layer: None,
                shutdown: None,
                gob_limits: Limits::default(),
            },
        }
    }
}

/// Builder for [`ServeConfig`].
#[derive(Debug)]
pub struct ServeConfigBuilder {
    config: ServeConfig,
}

impl ServeConfigBuilder {
    /// Serves `set` for app-protocol version `version` (go-plugin's `VersionedPlugins`; a plugin
    /// with a single version is go-plugin's `ProtocolVersion` + `Plugins`). The host and plugin
    /// agree on the highest version both have. The set is served over gRPC.
    pub fn plugins(mut self, version: u32, set: PluginSet) -> Self {
        self.config.sets.insert(version, Set::Grpc(set));
        self
    }

    /// Serves `set` for app-protocol version `version` over go-plugin's net/rpc protocol (see
    /// [`crate::netrpc`]). Versions may differ in protocol (go-plugin's examples/negotiated:
    /// netrpc for version 2, gRPC for 3); the negotiated version decides. A plugin that never
    /// calls this links none of the netrpc server.
    pub fn netrpc_plugins(mut self, version: u32, set: NetRpcPluginSet) -> Self {
        self.config
            .sets
            .insert(version, Set::NetRpc(set.into_serving()));
        self
    }

    /// Budgets for the gob values a host sends to netrpc plugins (default [`Limits::default`]:
    /// messages up to 64 MiB, values nested up to 256 levels). A call beyond them ends the
    /// connection with an error that names the limit, before anything is decoded.
    pub fn gob_limits(mut self, limits: Limits) -> Self {
        self.config.gob_limits = limits;
        self
    }

    /// Listens on TCP instead of a unix socket.
    pub fn transport(mut self, transport: Transport) -> Self {
        self.config.transport = transport;
        self
    }

    /// Uses the application's TLS configuration (go-plugin's `TLSProvider`). The plugin then
    /// ignores the host's AutoMTLS certificate and prints an empty certificate field.
    pub fn tls_provider<F, E>(mut self, provider: F) -> Self
    where
        F: FnOnce() -> Result<TlsConfigs, E> + Send + 'static,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        self.config.tls_provider = Some(Box::new(move || provider().map_err(Into::into)));
        self
    }

    /// Adds an encoded `FileDescriptorSet` so gRPC reflection can describe the app's services
    /// (tonic-prost-build writes one with `file_descriptor_set_path`).
    pub fn reflection_descriptors(mut self, encoded: &'static [u8]) -> Self {
        self.config.descriptor_sets.push(encoded);
        self
    }

    /// Whether to multiplex brokered connections when the host asks (`PLUGIN_MULTIPLEX_GRPC`);
    /// on by default. Off, the plugin answers `false` and a host that requires multiplexing
    /// refuses it.
    pub fn multiplex(mut self, supported: bool) -> Self {
        self.config.multiplex = supported;
        self
    }

    /// Whether what the plugin writes to stdout and stderr after the handshake goes to the host
    /// over `plugin.GRPCStdio`, as go-plugin does (default: yes). Log lines from
    /// [`crate::log`] and panic messages still go to the real stderr, where the host logs them.
    pub fn capture_stdio(mut self, capture: bool) -> Self {
        self.config.capture_stdio = capture;
        self
    }

    /// Whether the plugin shuts down when its host goes away (the host's end of the plugin's
    /// stdout pipe closes, even if the host was killed). Default: yes. Go plugins keep running.
    pub fn exit_with_host(mut self, exit: bool) -> Self {
        self.config.exit_with_host = exit;
        self
    }

    /// Changes the tonic `Server` the plugin is served with, and its brokered servers
    /// (go-plugin's `GRPCServer` factory): limits, keepalive, timeouts, HTTP/2 settings.
    ///
    /// ```
    /// # use plugwire_plugin::{MagicCookie, ServeConfig};
    /// use std::time::Duration;
    ///
    /// let config = ServeConfig::builder(MagicCookie::new("BASIC_PLUGIN", "hello"))
    ///     .grpc_server(|server| {
    ///         server
    ///             .concurrency_limit_per_connection(256)
    ///             .timeout(Duration::from_secs(60))
    ///     })
    ///     .build();
    /// # let _ = config;
    /// ```
    pub fn grpc_server(
        mut self,
        hook: impl Fn(tonic::transport::Server) -> tonic::transport::Server + Send + Sync + 'static,
    ) -> Self {
        self.config.server_hook = Some(Arc::new(hook));
        self
    }

    /// Wraps every gRPC service of the plugin (go-plugin's server and interceptor options
    /// for the whole server) in a tower layer: tracing, metrics, authentication,
    /// `tower_http` middleware. Interceptors for one service go on it instead, e.g.
    /// `KvServer::with_interceptor(kv, check)` in [`PluginSet::add`].
    ///
    /// ```
    /// # use plugwire_plugin::{MagicCookie, ServeConfig};
    /// let config = ServeConfig::builder(MagicCookie::new("BASIC_PLUGIN", "hello"))
    ///     .layer(tower::layer::layer_fn(|service| service)) // any tower Layer
    ///     .build();
    /// # let _ = config;
    /// ```
    pub fn layer<L>(mut self, layer: L) -> Self
    where
        L: tower::Layer<axum::routing::Route> + Clone + Send + Sync + 'static,
        L::Service: tower::Service<
                axum::extract::Request,
                Response = axum::response::Response,
                Error = Infallible,
            > + Clone
            + Send
            + Sync
            + 'static,
        <L::Service as tower::Service<axum::extract::Request>>::Future: Send + 'static,
    {
        self.config.layer = Some(Box::new(move |routes: Routes| {
            Routes::from(routes.into_axum_router().layer(layer))
        }));
        self
    }

    /// Ties the plugin's life to `token`: [`serve`](crate::serve) cancels it when the plugin
    /// shuts down for any reason (the host's `Shutdown`, the host going away, `SIGTERM`), so the
    /// plugin's own tasks can finish their work; cancelling it shuts the plugin down.
    pub fn shutdown(mut self, token: CancellationToken) -> Self {
        self.config.shutdown = Some(token);
        self
    }

    /// The finished configuration.
    pub fn build(self) -> ServeConfig {
        self.config
    }
}

//! How to launch a plugin: [`PluginConfig`], built with [`PluginConfig::builder`].

use std::collections::{BTreeMap, BTreeSet};

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use std::sync::Arc;

use plugwire_protocol::env::{DEFAULT_MAX_PORT, DEFAULT_MIN_PORT};
use plugwire_protocol::reattach::ReattachConfig;
use plugwire_protocol::{MagicCookie, Protocol};
use plugwire_runtime::broker::AddressTranslator;
use plugwire_runtime::grpc::EndpointHook;
use plugwire_runtime::tls::TlsConfigs;

use crate::log::RawSink;
use crate::netrpc::Limits;
use crate::secure::SecureConfig;
use crate::writer::Sink;

/// go-plugin's default `StartTimeout`.
pub const DEFAULT_START_TIMEOUT: Duration = Duration::from_secs(60);

/// Everything needed to launch one plugin, or attach to one (go-plugin's `ClientConfig`).
pub struct PluginConfig {
    /// Taken by the launch.
    pub(crate) source: Option<Source>,
    pub(crate) versions: BTreeMap<u32, BTreeSet<String>>,
    pub(crate) allowed_protocols: Vec<Protocol>,
    pub(crate) start_timeout: Duration,
    pub(crate) skip_host_env: bool,
    pub(crate) min_port: u16,
    pub(crate) max_port: u16,
    pub(crate) unix_socket_group: Option<String>,
    pub(crate) unix_socket_dir: Option<PathBuf>,
    pub(crate) stderr: Option<RawSink>,
    pub(crate) sync_stdout: Option<Sink>,
    pub(crate) sync_stderr: Option<Sink>,
    pub(crate) name: String,
    pub(crate) auto_mtls: bool,
    pub(crate) tls: Option<TlsConfigs>,
    pub(crate) secure: Option<SecureConfig>,
    pub(crate) multiplex: bool,
    pub(crate) kill_with_host: bool,
    pub(crate) own_process_group: bool,
    pub(crate) translator: Option<Arc<dyn AddressTranslator>>,
    pub(crate) endpoint: Option<EndpointHook>,
    pub(crate) gob_limits: Limits,
}

/// Where the plugin comes from.
pub(crate) enum Source {
    /// A command to run, with the host's magic cookie (go-plugin's `Cmd`).
    Command {
        command: std::process::Command,
        cookie: MagicCookie,
    },
    /// A plugin already running (go-plugin's `Reattach`).
    Reattach(ReattachConfig),
}

impl fmt::Debug for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Command { command, cookie } => f
                .debug_struct("Command")
                .field("command", command)
                .field("cookie_key", &cookie.key())
                .finish(),
            Source::Reattach(reattach) => f.debug_tuple("Reattach").field(reattach).finish(),
        }
    }
}

impl fmt::Debug for PluginConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PluginConfig")
            .field("source", &self.source)
            .field("versions", &self.versions)
            .field("allowed_protocols", &self.allowed_protocols)
            .field("start_timeout", &self.start_timeout)
            .field("skip_host_env", &self.skip_host_env)
            .field("auto_mtls", &self.auto_mtls)
            .field("tls", &self.tls)
            .field("secure", &self.secure)
            .field("multiplex", &self.multiplex)
            .finish_non_exhaustive()
    }
}

impl PluginConfig {
    /// Starts a configuration that launches `command` with the host's magic `cookie`.
    ///
    /// The command keeps its arguments, working directory and environment; go-plugin's variables
    /// are added on top (see [`PluginConfigBuilder::skip_host_env`] for the precedence). Its
    /// stdin is the host's, stdout and stderr are read by the host.
    pub fn builder(cookie: MagicCookie, command: std::process::Command) -> PluginConfigBuilder {
        let name = Path::new(command.get_program()).file_name().map_or_else(
            || command.get_program().to_string_lossy().into_owned(),
            |n| n.to_string_lossy().into_owned(),
        );
        Self::with_source(Source::Command { command, cookie }, name)
    }

    fn with_source(source: Source, name: String) -> PluginConfigBuilder {
        PluginConfigBuilder {
            config: PluginConfig {
                source: Some(source),
                versions: BTreeMap::new(),
                allowed_protocols: vec![Protocol::Grpc],
                start_timeout: DEFAULT_START_TIMEOUT,
                skip_host_env: false,
                min_port: DEFAULT_MIN_PORT,
                max_port: DEFAULT_MAX_PORT,
                unix_socket_group: None,
                unix_socket_dir: None,
                stderr: None,
                sync_stdout: None,
                sync_stderr: None,
                name,
                auto_mtls: false,
                tls: None,
                secure: None,
                multiplex: false,
                kill_with_host: true,
                own_process_group: true,
                translator: None,
                endpoint: None,
                gob_limits: Limits::default(),
            },
        }
    }

    /// Starts a configuration that attaches to a plugin already running (go-plugin's
    /// `Reattach`): nothing is launched, no handshake takes place, and a plugin in test mode
    /// (`Test: true`) is never stopped by the host. SecureConfig and broker multiplexing cannot
    /// be combined with it; AutoMTLS is ignored (no certificates are exchanged), as in go-plugin.
    /// Offer the plugin's version with [`PluginConfigBuilder::plugins`] as for a launch.
    ///
    /// ```no_run
    /// use plugwire_host::{Plugin, PluginConfig, ReattachConfig};
    ///
    /// # async fn f() -> Result<(), Box<dyn std::error::Error>> {
    /// // What a plugin in debug mode printed, e.g. from TF_REATTACH_PROVIDERS.
    /// let json = r#"{"Protocol":"grpc","ProtocolVersion":5,"Pid":4242,"Test":true,
    ///               "Addr":{"Network":"unix","String":"/tmp/plugin123"}}"#;
    /// let config = PluginConfig::reattach(ReattachConfig::from_json(json)?)
    ///     .plugins(5, ["provider"])
    ///     .build();
    /// let plugin = Plugin::launch(config).await?;
    /// plugin.ping().await?;
    /// plugin.kill().await; // a plugin in test mode is left running
    /// # Ok(()) }
    /// ```
    pub fn reattach(reattach: ReattachConfig) -> PluginConfigBuilder {
        let name = Path::new(&reattach.addr.string).file_name().map_or_else(
            || "reattached".to_owned(),
            |n| n.to_string_lossy().into_owned(),
        );
        Self::with_source(Source::Reattach(reattach), name)
    }

    /// The versions offered, each with its plugin names.
    pub fn versions(&self) -> &BTreeMap<u32, BTreeSet<String>> {
        &self.versions
    }
}

/// Builder for [`PluginConfig`].
#[derive(Debug)]
pub struct PluginConfigBuilder {
    config: PluginConfig,
}

impl PluginConfigBuilder {
    /// Offers app-protocol `version`, under which the plugin provides the plugins `names`
    /// (go-plugin's `VersionedPlugins`; `ProtocolVersion` + `Plugins` for a single version).
    /// Call once per version; the plugin picks the highest version both sides have.
    pub fn plugins<I, S>(mut self, version: u32, names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.config
            .versions
            .insert(version, names.into_iter().map(Into::into).collect());
        self
    }

    /// The protocols accepted in the plugin's handshake line (go-plugin's `AllowedProtocols`;
    /// default `[Grpc]`, where go-plugin's is netrpc only, since nearly every plugin today speaks
    /// gRPC). A plugin that answers with a protocol not in the list is refused with go-plugin's
    /// "unsupported plugin protocol" error. Allow [`Protocol::NetRpc`] to load plugins that speak
    /// go-plugin's net/rpc protocol, then talk to them through [`Plugin::netrpc`]; allow both to
    /// take whichever the plugin picks (go-plugin's examples/negotiated).
    ///
    /// [`Plugin::netrpc`]: crate::Plugin::netrpc
    pub fn allowed_protocols(mut self, protocols: impl IntoIterator<Item = Protocol>) -> Self {
        self.config.allowed_protocols = protocols.into_iter().collect();
        self
    }

    /// Budgets for the gob values a netrpc plugin sends (default [`Limits::default`]: messages
    /// up to 64 MiB, values nested up to 256 levels). Replies beyond them end the connection
    /// with an error that names the limit, before anything is decoded.
    pub fn gob_limits(mut self, limits: Limits) -> Self {
        self.config.gob_limits = limits;
        self
    }

    /// How long the plugin has to print its handshake line (default 1 minute).
    pub fn start_timeout(mut self, timeout: Duration) -> Self {
        self.config.start_timeout = timeout;
        self
    }

    /// Does not pass the host's environment to the plugin: it gets only the command's own
    /// variables and go-plugin's. Without this, the environment is, in order of increasing
    /// precedence: the command's variables, the host's environment, go-plugin's variables (the
    /// same quirky order as go-plugin, where the host's environment overrides the command's).
    pub fn skip_host_env(mut self, skip: bool) -> Self {
        self.config.skip_host_env = skip;
        self
    }

    /// `PLUGIN_MIN_PORT`/`PLUGIN_MAX_PORT`, for plugins that listen on TCP (default 10000–25000).
    pub fn port_range(mut self, min: u16, max: u16) -> Self {
        self.config.min_port = min;
        self.config.max_port = max;
        self
    }

    /// Asks the plugin to give this group access to its unix socket (`PLUGIN_UNIX_SOCKET_GROUP`).
    pub fn unix_socket_group(mut self, group: impl Into<String>) -> Self {
        self.config.unix_socket_group = Some(group.into());
        self
    }

    /// Asks the plugin to create its unix socket in `dir` (`PLUGIN_UNIX_SOCKET_DIR`).
    pub fn unix_socket_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.config.unix_socket_dir = Some(dir.into());
        self
    }

    /// Copies the plugin's raw stderr, byte-exact, to `sink` (go-plugin's `Stderr`), besides
    /// logging it. Written from a dedicated thread, so the writer may block; a slow one slows
    /// the plugin, nothing is dropped.
    pub fn stderr(mut self, sink: impl std::io::Write + Send + 'static) -> Self {
        self.config.stderr = Some(Box::new(sink));
        self
    }

    /// AutoMTLS (go-plugin's `AutoMTLS`): the host makes a fresh ECDSA P-521 certificate, passes
    /// it to the plugin in `PLUGIN_CLIENT_CERT`, and talks TLS 1.3 to the plugin trusting only
    /// the certificate the plugin returns in its handshake line. Takes precedence over
    /// [`PluginConfigBuilder::tls`], as in go-plugin.
    pub fn auto_mtls(mut self, enabled: bool) -> Self {
        self.config.auto_mtls = enabled;
        self
    }

    /// Manual TLS (go-plugin's `TLSConfig`): dial the plugin with `configs.client` (required)
    /// and serve brokered callbacks with `configs.server`. Build them with
    /// [`TlsConfigs::custom`]; ALPN `h2` is added for you.
    pub fn tls(mut self, configs: TlsConfigs) -> Self {
        self.config.tls = Some(configs);
        self
    }

    /// Checks the plugin executable's checksum before launching it (go-plugin's
    /// `SecureConfig`).
    pub fn secure_config(mut self, secure: SecureConfig) -> Self {
        self.config.secure = Some(secure);
        self
    }

    /// gRPC broker multiplexing (go-plugin's `GRPCBrokerMultiplex`): brokered connections ride
    /// the one plugin connection (yamux) instead of new sockets. The plugin must answer `true`
    /// in its handshake line, else the launch fails.
    pub fn multiplex(mut self, enabled: bool) -> Self {
        self.config.multiplex = enabled;
        self
    }

    /// Whether the OS kills the plugin when the host dies without stopping it (SIGKILL, a crash),
    /// via Linux `PR_SET_PDEATHSIG` on the process the host starts (default: yes). A plugin
    /// started through a wrapper such as `sh -c` is not covered; plugwire plugins exit by
    /// themselves when their host is gone.
    ///
    /// On Linux the host then starts the plugin the way Go does (`clone` with `CLONE_VFORK`,
    /// the signal set in the child before `exec`), which costs the same however much memory the
    /// host uses; std's `fork` would copy the host's page tables on every launch. That start
    /// runs the command's program, arguments, environment and working directory; a command
    /// with settings std does not report back (`uid`, `gid`, `groups`, `arg0`) is started by
    /// std with `fork` instead. `CommandExt::pre_exec` hooks on the command are not run while
    /// this is on: turn it off to use them.
    pub fn kill_with_host(mut self, enabled: bool) -> Self {
        self.config.kill_with_host = enabled;
        self
    }

    /// Whether the plugin runs in a process group of its own (default: yes), so that stopping it
    /// stops everything it stands for: when it is started through a wrapper (`sh -c "$PLUGIN"`,
    /// as go-plugin's examples do, or a script) that does not `exec` it, [`Plugin::kill`] and
    /// dropping the [`Plugin`] kill the whole group, and when it exits, what it left running in
    /// the group is killed too. go-plugin kills only the process it started.
    ///
    /// In its own group the plugin does not receive the terminal's Ctrl-C (Go plugins ignore it
    /// anyway), and a plugin that reads a terminal on stdin is stopped by `SIGTTIN`: turn this
    /// off for such a plugin.
    ///
    /// [`Plugin::kill`]: crate::Plugin::kill
    /// [`Plugin`]: crate::Plugin
    pub fn own_process_group(mut self, enabled: bool) -> Self {
        self.config.own_process_group = enabled;
        self
    }

    /// Changes the tonic `Endpoint` of the channel to the plugin and of every brokered dial
    /// (go-plugin's `GRPCDialOptions`): timeouts, keepalive (a Go plugin's server sends GOAWAY
    /// for pings more often than every 5 minutes), concurrency or rate limits, window sizes.
    /// Interceptors and tower layers go on the clients made from the channel, e.g.
    /// `plugin.dispense("kv", |ch| KvClient::with_interceptor(ch, add_token))`.
    ///
    /// ```no_run
    /// # use plugwire_host::{MagicCookie, PluginConfig};
    /// use std::time::Duration;
    ///
    /// let config = PluginConfig::builder(
    ///     MagicCookie::new("BASIC_PLUGIN", "hello"),
    ///     std::process::Command::new("./kv-plugin"),
    /// )
    /// .plugins(1, ["kv_grpc"])
    /// .grpc_endpoint(|endpoint| endpoint.timeout(Duration::from_secs(30)).concurrency_limit(64))
    /// .build();
    /// # let _ = config;
    /// ```
    pub fn grpc_endpoint(
        mut self,
        hook: impl Fn(tonic::transport::Endpoint) -> tonic::transport::Endpoint + Send + Sync + 'static,
    ) -> Self {
        self.config.endpoint = Some(Arc::new(hook));
        self
    }

    /// Rewrites addresses between the plugin's view and the host's (go-plugin's runner
    /// `AddrTranslator`), e.g. for a plugin in a container: applied to the handshake address and
    /// to every brokered address.
    pub fn address_translator(mut self, translator: impl AddressTranslator) -> Self {
        self.config.translator = Some(Arc::new(translator));
        self
    }

    /// Where the plugin's own stdout goes (go-plugin's `SyncStdout`): what it writes after the
    /// handshake, forwarded over `plugin.GRPCStdio`. Discarded by default. Written from a
    /// dedicated thread, so the writer may block; a slow one slows the plugin, nothing is dropped.
    pub fn sync_stdout(mut self, sink: impl std::io::Write + Send + 'static) -> Self {
        self.config.sync_stdout = Some(Box::new(sink));
        self
    }

    /// Where the plugin's own stderr output goes (go-plugin's `SyncStderr`); see
    /// [`PluginConfigBuilder::sync_stdout`]. The plugin's log lines are not part of it: they are
    /// logged through `tracing`.
    pub fn sync_stderr(mut self, sink: impl std::io::Write + Send + 'static) -> Self {
        self.config.sync_stderr = Some(Box::new(sink));
        self
    }

    /// Forwards the plugin's stdout and stderr output to this process's stdout and stderr.
    pub fn forward_stdio(self) -> Self {
        self.sync_stdout(std::io::stdout())
            .sync_stderr(std::io::stderr())
    }

    /// The name the plugin's log lines carry (default: the executable's file name).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.config.name = name.into();
        self
    }

    /// The finished configuration.
    pub fn build(self) -> PluginConfig {
        self.config
    }
}

//! go-plugin's `Serve`: check the cookie, negotiate, listen, print the handshake line, serve.

use std::io::{self, Write as _};
use std::sync::Arc;
use std::time::Duration;

use plugwire_protocol::PluginEnv;
use plugwire_protocol::broker::Role;
use plugwire_protocol::env::{EnvError, negotiate_version};
use plugwire_protocol::handshake::{HandshakeLine, Protocol};
use plugwire_runtime::broker::{Broker, BrokerConfig, BrokerLink, BrokerListen};
use plugwire_runtime::grpc;
use plugwire_runtime::transport::{self, Listener};
use tokio_util::sync::CancellationToken;

use crate::config::{ServeConfig, Set, Transport};
use crate::host_watch::host_gone;
use crate::stdio::Capture;

/// How long in-flight calls get to finish once shutdown starts. A Go host force-kills after 2 s.
pub(crate) const SHUTDOWN_GRACE: Duration = Duration::from_secs(1);

/// Why [`serve`] could not serve. The text includes the cause.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// The configuration has no plugin set.
    #[error("no plugins configured: call ServeConfigBuilder::plugins at least once")]
    NoPlugins,
    /// `PLUGIN_MIN_PORT`/`PLUGIN_MAX_PORT` are unusable.
    #[error("plugin init error: {0}")]
    Env(EnvError),
    /// The listener could not be created.
    #[error("plugin init error: could not listen: {0}")]
    Listen(io::Error),
    /// AutoMTLS or the TLS provider failed.
    #[error("plugin tls init: {0}")]
    Tls(Box<dyn std::error::Error + Send + Sync>),
    /// The handshake line could not be written.
    #[error("could not write the handshake line to stdout: {0}")]
    Stdout(io::Error),
    /// The gRPC server stopped with an error.
    #[error("grpc server: {}", plugwire_protocol::error_chain(.0))]
    Server(tonic::transport::Error),
}

impl From<EnvError> for ServeError {
    fn from(e: EnvError) -> Self {
        ServeError::Env(e)
    }
}

/// Serves the configured plugins to the host that launched this process, until the host shuts
/// the plugin down, goes away, or `SIGTERM` (or the [`ServeConfigBuilder::shutdown`] token).
///
/// Like go-plugin's `Serve`, a process not launched by its host (wrong or missing magic cookie)
/// gets go-plugin's message on stderr and **exits with status 1** without printing anything on
/// stdout. `SIGINT` is ignored while serving, so a Ctrl-C meant for the host's terminal does not
/// kill its plugins.
///
/// [`ServeConfigBuilder::shutdown`]: crate::ServeConfigBuilder::shutdown
pub async fn serve(config: ServeConfig) -> Result<(), ServeError> {
    let env = PluginEnv::from_vars(std::env::vars_os());
    if let Err(e) = env.check_cookie(&config.cookie) {
        let _ = io::stderr().write_all(e.stderr_message().as_bytes());
        std::process::exit(1);
    }
    let mode = Mode {
        announce: Announce::HandshakeLine,
        process: true,
    };
    let prepared = prepare(config, &env, None).await?;
    prepared.run(mode).await
}

/// Serves in debug mode, for a plugin started by hand (go-plugin's test mode, what Terraform
/// providers' `-debug` flag does): no cookie check, no handshake line, Ctrl-C stops it. Prints,
/// as one line on stdout, the JSON map `{"<name>": <reattach configuration>}` to give a host
/// (e.g. in `TF_REATTACH_PROVIDERS`, or to `PluginConfig::reattach` in a plugwire host), and how
/// to use it on stderr. The host never stops a plugin attached this way.
///
/// ```no_run
/// use plugwire_plugin::{MagicCookie, PluginSet, ServeConfig};
/// # fn provider() -> tonic_health::pb::health_server::HealthServer<impl tonic_health::pb::health_server::Health> { tonic_health::server::health_reporter().1 }
///
/// #[tokio::main(flavor = "current_thread")]
/// async fn main() -> Result<(), Box<dyn std::error::Error>> {
///     let config = ServeConfig::builder(MagicCookie::new("TF_PLUGIN_MAGIC_COOKIE", "d602bf8f"))
///         .plugins(5, PluginSet::new().add("provider", provider()))
///         .build();
///     if std::env::args().any(|a| a == "-debug") {
///         plugwire_plugin::serve_debug(config, "registry.terraform.io/example/example").await?;
///     } else {
///         plugwire_plugin::serve(config).await?;
///     }
///     Ok(())
/// }
/// ```
pub async fn serve_debug(mut config: ServeConfig, name: &str) -> Result<(), ServeError> {
    config.capture_stdio = false;
    config.exit_with_host = false;
    let env = PluginEnv::from_vars(std::env::vars_os());
    let mode = Mode {
        announce: Announce::Reattach(name.to_owned()),
        process: false,
    };
    let prepared = prepare(config, &env, None).await?;
    prepared.run(mode).await
}

/// How a serve talks to the world around it.
pub(crate) struct Mode {
    pub(crate) announce: Announce,
    /// Act as the plugin process: panic hook, signals, stdio capture, watching the host.
    pub(crate) process: bool,
}

/// What the plugin prints once it listens.
pub(crate) enum Announce {
    /// go-plugin's handshake line on stdout.
    HandshakeLine,
    /// A reattach configuration under this name (debug mode).
    Reattach(String),
    /// Nothing (in-process test mode).
    Nothing,
}

/// A plugin listening, not yet announced or serving.
pub(crate) struct Prepared {
    config: ServeConfig,
    set: Set,
    listener: Listener,
    line: HandshakeLine,
    broker: (Broker, BrokerLink),
    tls: plugwire_runtime::tls::TlsConfigs,
    pub(crate) shutdown: CancellationToken,
}

/// Negotiates, listens (on `listener` when given), sets up TLS and the broker.
pub(crate) async fn prepare(
    mut config: ServeConfig,
    env: &PluginEnv,
    listener: Option<Listener>,
) -> Result<Prepared, ServeError> {
    let offered = env.host_versions();
    for token in &offered.invalid {
        eprintln!("server sent invalid plugin version {token:?}");
    }
    let version = negotiate_version(config.sets.keys().copied(), &offered.versions)
        .ok_or(ServeError::NoPlugins)?;
    let set = config.sets.remove(&version).ok_or(ServeError::NoPlugins)?;
    let broker_listen = match config.transport {
        Transport::Unix => BrokerListen::Unix {
            dir: env.unix_socket_dir().unwrap_or_else(std::env::temp_dir),
            group: env.unix_socket_group(),
        },
        Transport::Tcp => BrokerListen::Tcp(env.port_range()?),
    };
    let listener = match (listener, &broker_listen) {
        (Some(listener), _) => listener,
        (None, BrokerListen::Unix { dir, group }) => {
            Listener::unix(dir, group.as_deref()).map_err(ServeError::Listen)?
        }
        (None, BrokerListen::Tcp(ports)) => Listener::tcp(ports.clone())
            .await
            .map_err(ServeError::Listen)?,
        (None, _) => return Err(ServeError::Listen(io::Error::other("no listener kind"))),
    };
    let (tls, server_cert) = crate::tls_setup::tls_setup(config.tls_provider.take(), env)?;

    // Multiplex only when asked with a true value and supported; answer whenever asked at all.
    let multiplex = config.multiplex && env.multiplex_enabled();
    let protocol = match set {
        Set::Grpc(_) => Protocol::Grpc,
        Set::NetRpc(_) => Protocol::NetRpc,
    };
    let mut line = HandshakeLine::new(
        version,
        listener.address().network(),
        listener.address().to_field(),
        protocol,
    );
    line.server_cert = server_cert;
    line.multiplex = env.multiplex_requested().then_some(multiplex);
    let mut broker_config = BrokerConfig::new(Role::Plugin, broker_listen);
    broker_config.tls = tls.clone();
    broker_config.multiplex = multiplex;
    broker_config.server = config.server_hook.clone();
    let shutdown = config.shutdown.take().unwrap_or_default();
    Ok(Prepared {
        config,
        set,
        listener,
        line,
        broker: Broker::new(broker_config),
        tls,
        shutdown,
    })
}

impl Prepared {
    /// Where the plugin listens and what it negotiated.
    pub(crate) fn line(&self) -> &HandshakeLine {
        &self.line
    }

    /// Announces the plugin, then serves until shutdown.
    pub(crate) async fn run(self, mode: Mode) -> Result<(), ServeError> {
        let Prepared {
            config,
            set,
            listener,
            line,
            broker,
            tls,
            shutdown,
        } = self;
        match &mode.announce {
            Announce::HandshakeLine => crate::announce::announce(&line, None, std::process::id())?,
            Announce::Reattach(name) => {
                crate::announce::announce(&line, Some(name), std::process::id())?
            }
            Announce::Nothing => {}
        }
        // Like go-plugin's default plugin logger: hclog JSON on stderr, unless the app has its
        // own. Set up once the handshake line is out: nothing before it may delay the host.
        let debug = matches!(mode.announce, Announce::Reattach(_));
        if (mode.process || debug) && !tracing::dispatcher::has_been_set() {
            let _ = crate::log::init();
        }
        tracing::debug!(address = %listener.address(), version = line.app_version, "plugin address");
        if mode.process {
            crate::panic::install_hook();
            crate::signals::spawn_signal_handlers(shutdown.clone(), true);
        } else if debug {
            crate::signals::spawn_signal_handlers(shutdown.clone(), false);
        }
        let capture = if mode.process && config.capture_stdio {
            start_capture(&shutdown)
        } else {
            None
        };
        if mode.process && config.exit_with_host {
            watch_host(capture.as_ref(), shutdown.clone());
        }
        let (broker, link) = broker;
        let output = capture.as_ref().map(Capture::output);
        let result = match set {
            Set::Grpc(set) => {
                let routes = crate::routes::routes(
                    &shutdown,
                    (&broker, &link),
                    output,
                    set,
                    config.descriptor_sets,
                )
                .await;
                let routes = match config.layer {
                    Some(layer) => layer(routes),
                    None => routes,
                };
                let (tx, incoming) = transport::incoming();
                let accept = spawn_accept(listener, &link, tls.server.clone(), tx);
                let server = grpc::server(config.server_hook.as_ref())
                    .add_routes(routes)
                    .serve_with_incoming_shutdown(incoming, shutdown.clone().cancelled_owned());
                let grace = async {
                    shutdown.cancelled().await;
                    tokio::time::sleep(SHUTDOWN_GRACE).await;
                };
                let result = tokio::select! {
                    result = server => result.map_err(ServeError::Server),
                    () = grace => {
                        tracing::debug!("in-flight calls did not finish within the shutdown grace period");
                        Ok(())
                    }
                };
                stop_accepting(accept).await;
                result
            }
            Set::NetRpc(serving) => {
                serving
                    .serve(crate::netrpc::ServeArgs {
                        listener,
                        server_tls: tls.server.clone(),
                        shutdown: shutdown.clone(),
                        output,
                        limits: config.gob_limits,
                    })
                    .await;
                Ok(())
            }
        };
        // Whatever ended serving, the plugin's code learns it is shutting down.
        shutdown.cancel();
        broker.close();
        if let Some(capture) = capture {
            capture.finish().await;
        }
        result
    }
}

/// Dropping the accept loop drops the listener, which removes the socket file.
pub(crate) async fn stop_accepting(accept: tokio::task::JoinHandle<()>) {
    accept.abort();
    let _ = accept.await;
}

/// Starts forwarding fd 1/2 to the host; a failure only costs the forwarding.
fn start_capture(shutdown: &CancellationToken) -> Option<Capture> {
    Capture::start(shutdown)
        .map_err(|e| tracing::warn!(error = %e, "stdout/stderr are not forwarded to the host"))
        .ok()
}

/// Shuts the plugin down when its host is gone (its stdout pipe reader closed).
fn watch_host(capture: Option<&Capture>, shutdown: CancellationToken) {
    let stdout = match capture {
        Some(capture) => capture.real_stdout().try_clone(),
        None => crate::fd::dup_cloexec(io::stdout()),
    };
    let Ok(stdout) = stdout else {
        return;
    };
    tokio::spawn(async move {
        tokio::select! {
            () = host_gone(stdout) => {
                tracing::debug!("the host is gone: shutting down");
                shutdown.cancel();
            }
            () = shutdown.cancelled() => {}
        }
    });
}

/// Accepts the host's connections. Multiplexed, the first one carries the yamux session, whose
/// un-knocked streams reach the main server; later raw connections (Go hosts make none) are
/// served directly.
fn spawn_accept(
    listener: Listener,
    link: &BrokerLink,
    server_tls: Option<Arc<rustls::ServerConfig>>,
    tx: tokio::sync::mpsc::Sender<io::Result<transport::BoxedIo>>,
) -> tokio::task::JoinHandle<()> {
    if !link.is_multiplexed() {
        return transport::spawn_accept_loop(listener, server_tls, tx);
    }
    let mut session_started = false;
    let (link, main) = (link.clone(), tx.clone());
    transport::spawn_accept_loop_with(listener, tx, move |io| {
        if session_started {
            transport::forward(io, server_tls.clone(), main.clone());
        } else {
            session_started = true;
            if let Err(e) = link.start_session(io, Some(main.clone())) {
                tracing::warn!(error = %e, "could not start the multiplexed session");
            }
        }
    })
}

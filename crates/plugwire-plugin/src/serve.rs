//! go-plugin's `Serve`: check the cookie, negotiate, listen, print the handshake line, serve.

use std::io::{self, Write as _};
use std::sync::Arc;
use std::time::Duration;

use plugwire_protocol::PluginEnv;
use plugwire_protocol::broker::{Broker, BrokerConfig, BrokerListen};
use plugwire_protocol::env::{EnvError, negotiate_version};
use plugwire_protocol::handshake::{HandshakeLine, Protocol};
use plugwire_protocol::mux::Role;
use plugwire_protocol::pb::grpc_broker_server::GrpcBrokerServer;
use plugwire_protocol::pb::grpc_controller_server::GrpcControllerServer;
use plugwire_protocol::pb::grpc_stdio_server::GrpcStdioServer;
use plugwire_protocol::reattach::{self, ReattachConfig};
use plugwire_protocol::tls::{Identity, PinnedPeer, TlsConfigs, TlsError};
use plugwire_protocol::transport::{self, Listener};
use rustls::pki_types::CertificateDer;
use tokio_util::sync::CancellationToken;
use tonic::service::RoutesBuilder;

use crate::config::{ServeConfig, TlsProvider, Transport};
use crate::host_watch::host_gone;
use crate::lazy::Lazy;
use crate::services::{BrokerService, Controller, Stdio};
use crate::stdio::Capture;

/// How long in-flight calls get to finish once shutdown starts. A Go host force-kills after 2 s.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(1);

/// Why [`serve`] could not serve.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// The configuration has no plugin set.
    #[error("no plugins configured: call ServeConfigBuilder::plugins at least once")]
    NoPlugins,
    /// `PLUGIN_MIN_PORT`/`PLUGIN_MAX_PORT` are unusable.
    #[error("plugin init error: {0}")]
    Env(#[from] EnvError),
    /// The listener could not be created.
    #[error("plugin init error: could not listen: {0}")]
    Listen(#[source] io::Error),
    /// AutoMTLS or the TLS provider failed.
    #[error("plugin tls init: {0}")]
    Tls(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The handshake line could not be written.
    #[error("could not write the handshake line to stdout: {0}")]
    Stdout(#[source] io::Error),
    /// The gRPC server stopped with an error.
    #[error("grpc server: {0}")]
    Server(#[from] tonic::transport::Error),
}

/// Serves the configured plugins to the host that launched this process, until the host shuts
/// the plugin down (or `SIGTERM`).
///
/// Like go-plugin's `Serve`, a process not launched by its host (wrong or missing magic cookie)
/// gets go-plugin's message on stderr and **exits with status 1** without printing anything on
/// stdout. `SIGINT` is ignored while serving, so a Ctrl-C meant for the host's terminal does not
/// kill its plugins.
pub async fn serve(config: ServeConfig) -> Result<(), ServeError> {
    let env = PluginEnv::from_vars(std::env::vars_os());
    if let Err(e) = env.check_cookie(&config.cookie) {
        let _ = io::stderr().write_all(e.stderr_message().as_bytes());
        std::process::exit(1);
    }
    serve_with_env(config, env, None).await
}

/// Serves in debug mode, for a plugin started by hand (go-plugin's test mode, what Terraform
/// providers' `-debug` flag does): no cookie check, no handshake line, Ctrl-C stops it. Prints,
/// as one line on stdout, the JSON map `{"<name>": <reattach configuration>}` to give a host
/// (e.g. in `TF_REATTACH_PROVIDERS`, or to `PluginConfig::reattach` in a plugwire host), and how
/// to use it on stderr. The host never stops a plugin attached this way.
pub async fn serve_debug(mut config: ServeConfig, name: &str) -> Result<(), ServeError> {
    config.capture_stdio = false;
    config.exit_with_host = false;
    let env = PluginEnv::from_vars(std::env::vars_os());
    serve_with_env(config, env, Some(name)).await
}

async fn serve_with_env(
    mut config: ServeConfig,
    env: PluginEnv,
    debug: Option<&str>,
) -> Result<(), ServeError> {
    let offered = env.host_versions();
    for token in &offered.invalid {
        eprintln!("server sent invalid plugin version {token:?}");
    }
    let version = negotiate_version(config.sets.keys().copied(), &offered.versions)
        .ok_or(ServeError::NoPlugins)?;
    let set = config.sets.remove(&version).ok_or(ServeError::NoPlugins)?;
    let broker_listen = match config.transport {
        Transport::Unix => BrokerListen::Unix {
            dir: env.unix_socket_dir(),
            group: env.unix_socket_group(),
        },
        Transport::Tcp => BrokerListen::Tcp(env.port_range()?),
    };
    let listener = match &broker_listen {
        BrokerListen::Unix { dir, group } => Listener::unix(dir.as_deref(), group.as_deref()),
        BrokerListen::Tcp(ports) => Listener::tcp(ports.clone()).await,
    }
    .map_err(ServeError::Listen)?;
    let (tls, server_cert) = tls_setup(config.tls_provider.take(), &env)?;

    // Multiplex only when asked with a true value and supported; answer whenever asked at all.
    let multiplex = config.multiplex && env.multiplex_enabled();
    let line = HandshakeLine {
        app_version: version,
        network: listener.address().network(),
        address: listener.address().to_field(),
        protocol: Protocol::Grpc,
        server_cert,
        multiplex: env.multiplex_requested().then_some(multiplex),
    };
    announce(&line, debug, std::process::id())?;

    // Like go-plugin's default plugin logger: hclog JSON on stderr, unless the app has its own.
    // Set up once the handshake line is out: nothing before it may delay the host.
    if !tracing::dispatcher::has_been_set() {
        let _ = crate::log::init();
    }
    tracing::debug!(address = %listener.address(), version, "plugin address");
    if debug.is_none() {
        crate::panic::install_hook();
    }
    let shutdown = CancellationToken::new();
    spawn_signal_handlers(shutdown.clone(), debug.is_none());
    let capture = if config.capture_stdio {
        start_capture(&shutdown)
    } else {
        None
    };
    if config.exit_with_host {
        watch_host(capture.as_ref(), shutdown.clone());
    }
    let broker = Broker::new(BrokerConfig {
        role: Role::Plugin,
        tls: tls.clone(),
        listen: broker_listen,
        translator: None,
        multiplex,
        on_peer_socket: None,
    });
    let routes = routes(
        &shutdown,
        &broker,
        capture.as_ref().map(Capture::output),
        set,
        config.descriptor_sets,
    )
    .await;

    let (tx, incoming) = transport::incoming();
    let accept = spawn_accept(listener, &broker, tls.server.clone(), tx);
    let server = transport::server()
        .add_routes(routes)
        .serve_with_incoming_shutdown(incoming, shutdown.clone().cancelled_owned());
    let grace = async {
        shutdown.cancelled().await;
        tokio::time::sleep(SHUTDOWN_GRACE).await;
    };
    let result = tokio::select! {
        result = server => result.map_err(ServeError::from),
        () = grace => {
            tracing::debug!("in-flight calls did not finish within the shutdown grace period");
            Ok(())
        }
    };
    broker.close();
    // Dropping the accept loop drops the listener, which removes the socket file.
    accept.abort();
    let _ = accept.await;
    if let Some(capture) = capture {
        capture.finish().await;
    }
    result
}

/// The TLS configurations and the certificate for field 6: the application's (TLS provider,
/// empty field 6), AutoMTLS when the host sent its certificate, or none.
fn tls_setup(
    provider: Option<TlsProvider>,
    env: &PluginEnv,
) -> Result<(TlsConfigs, Option<CertificateDer<'static>>), ServeError> {
    if let Some(provider) = provider {
        let configs = provider().map_err(ServeError::Tls)?;
        if configs.server.is_none() {
            return Err(ServeError::Tls(
                "the TLS provider returned no server configuration".into(),
            ));
        }
        return Ok((configs, None));
    }
    match env.client_cert_pem() {
        Some(pem) => {
            let (configs, cert) = auto_mtls(&pem).map_err(|e| ServeError::Tls(e.into()))?;
            Ok((configs, Some(cert)))
        }
        None => Ok((TlsConfigs::default(), None)),
    }
}

/// Prints the handshake line, or in debug mode the reattach configuration (and how to use it
/// on stderr), on stdout, flushed.
fn announce(line: &HandshakeLine, debug: Option<&str>, pid: u32) -> Result<(), ServeError> {
    let announcement = match debug {
        None => line.to_string(),
        Some(name) => {
            let address = transport::Address::new(line.network, &line.address);
            let mut reattach = ReattachConfig::new(Protocol::Grpc, line.app_version, &address, pid);
            reattach.test = true;
            let map = reattach::format_map(&[(name.to_owned(), reattach)].into_iter().collect());
            eprintln!(
                "Plugin {name} started in debug mode; stop it with Ctrl-C. To attach a host, \
                 give it this reattach configuration (e.g. TF_REATTACH_PROVIDERS='<it>'):\n\t{map}"
            );
            map
        }
    };
    let mut stdout = io::stdout().lock();
    writeln!(stdout, "{announcement}")
        .and_then(|()| stdout.flush())
        .map_err(ServeError::Stdout)
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
        None => nix::unistd::dup(io::stdout()).map_err(io::Error::from),
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

/// go-plugin's services (health, reflection, broker, controller, stdio) and the app's.
async fn routes(
    shutdown: &CancellationToken,
    broker: &Broker,
    output: Option<crate::stdio::Output>,
    set: crate::config::PluginSet,
    descriptor_sets: Vec<&'static [u8]>,
) -> tonic::service::Routes {
    let service_names: Vec<&'static str> = set.service_names().collect();
    let mut routes = RoutesBuilder::default();
    routes
        .add_service(health(shutdown).await)
        .add_service(GrpcBrokerServer::new(BrokerService::new(broker.clone())))
        .add_service(GrpcControllerServer::new(Controller::new(
            shutdown.clone(),
            output.clone(),
        )))
        .add_service(GrpcStdioServer::new(Stdio::new(shutdown.clone(), output)));
    add_reflection(&mut routes, descriptor_sets, service_names);
    set.register(&mut routes, broker);
    routes.routes()
}

/// Accepts the host's connections. Multiplexed, the first one carries the yamux session, whose
/// un-knocked streams reach the main server; later raw connections (Go hosts make none) are
/// served directly.
fn spawn_accept(
    listener: Listener,
    broker: &Broker,
    server_tls: Option<Arc<rustls::ServerConfig>>,
    tx: tokio::sync::mpsc::Sender<io::Result<transport::BoxedIo>>,
) -> tokio::task::JoinHandle<()> {
    if !broker.is_multiplexed() {
        return transport::spawn_accept_loop(listener, server_tls, tx);
    }
    let mut session_started = false;
    let (broker, main) = (broker.clone(), tx.clone());
    transport::spawn_accept_loop_with(listener, tx, move |io| {
        if session_started {
            transport::forward(io, server_tls.clone(), main.clone());
        } else {
            session_started = true;
            broker.start_session(io, Some(main.clone()));
        }
    })
}

/// AutoMTLS, plugin side: trust the host's PEM certificate, answer with a fresh one.
fn auto_mtls(host_pem: &str) -> Result<(TlsConfigs, CertificateDer<'static>), TlsError> {
    let host = PinnedPeer::from_pem(host_pem, "PLUGIN_CLIENT_CERT")?;
    let identity = Identity::generate()?;
    let configs = TlsConfigs::pinned(&identity, &host)?;
    Ok((configs, identity.cert().clone()))
}

async fn health(
    shutdown: &CancellationToken,
) -> tonic_health::pb::health_server::HealthServer<impl tonic_health::pb::health_server::Health> {
    let (reporter, service) = tonic_health::server::health_reporter();
    reporter
        .set_service_status("plugin", tonic_health::ServingStatus::Serving)
        .await;
    let shutdown = shutdown.clone();
    tokio::spawn(async move {
        shutdown.cancelled().await;
        reporter
            .set_service_status("plugin", tonic_health::ServingStatus::NotServing)
            .await;
    });
    service
}

/// Reflection v1 and v1alpha listing exactly the registered services, as grpc-go does. Built on
/// first use: decoding the descriptor sets would otherwise delay the first call of every launch.
fn add_reflection(
    routes: &mut RoutesBuilder,
    app_sets: Vec<&'static [u8]>,
    app_services: Vec<&'static str>,
) {
    const INTERNAL: [&str; 6] = [
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
        "plugin.GRPCBroker",
        "plugin.GRPCController",
        "plugin.GRPCStdio",
    ];
    let builder = Arc::new(move || {
        let mut builder = tonic_reflection::server::Builder::configure()
            .include_reflection_service(false)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(
                tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
            )
            .register_encoded_file_descriptor_set(plugwire_protocol::pb::FILE_DESCRIPTOR_SET);
        for set in &app_sets {
            builder = builder.register_encoded_file_descriptor_set(set);
        }
        for name in INTERNAL.iter().chain(&app_services) {
            builder = builder.with_service_name(*name);
        }
        builder
    });
    let invalid = |e: tonic_reflection::server::Error| {
        format!("gRPC reflection is unavailable: a descriptor set is invalid ({e})")
    };
    let v1 = builder.clone();
    routes
        .add_service(Lazy::new(move || v1().build_v1().map_err(invalid)))
        .add_service(Lazy::new(move || {
            builder().build_v1alpha().map_err(invalid)
        }));
}

/// Ignores SIGINT like a Go plugin (`ignore_interrupt`; in debug mode SIGINT stops the plugin);
/// SIGTERM shuts down cleanly (the socket file is removed).
fn spawn_signal_handlers(shutdown: CancellationToken, ignore_interrupt: bool) {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::interrupt()) {
        Ok(mut interrupts) => {
            let shutdown = shutdown.clone();
            tokio::spawn(async move {
                let mut count = 0u64;
                while interrupts.recv().await.is_some() {
                    if !ignore_interrupt {
                        shutdown.cancel();
                        return;
                    }
                    count += 1;
                    tracing::trace!(count, "plugin received interrupt signal, ignoring");
                }
            });
        }
        Err(e) => tracing::warn!(error = %e, "could not ignore SIGINT"),
    }
    match signal(SignalKind::terminate()) {
        Ok(mut terminate) => {
            tokio::spawn(async move {
                if terminate.recv().await.is_some() {
                    tracing::debug!("SIGTERM: shutting down");
                    let _ = io::stdout().flush();
                    shutdown.cancel();
                }
            });
        }
        Err(e) => tracing::warn!(error = %e, "could not handle SIGTERM"),
    }
}

//! A launched plugin (go-plugin's `Client`): launch, handshake, connect, dispense, ping, kill.

use std::collections::BTreeSet;
use std::process::ExitStatus;
use std::sync::Arc;
use std::time::Duration;

use plugwire_protocol::Protocol;
use plugwire_protocol::broker::{AddressTranslator, Broker, BrokerConfig, BrokerListen};
use plugwire_protocol::env::HostEnv;
use plugwire_protocol::handshake::{HandshakeLine, HostExpectations, MAX_HANDSHAKE_LINE};
use plugwire_protocol::mux::Role;
use plugwire_protocol::pb::Empty;
use plugwire_protocol::pb::grpc_broker_client::GrpcBrokerClient;
use plugwire_protocol::pb::grpc_controller_client::GrpcControllerClient;
use plugwire_protocol::reattach::ReattachConfig;
use plugwire_protocol::tls::{Identity, PinnedPeer, TlsConfigs};
use plugwire_protocol::transport::{self, Address, MAX_MESSAGE_SIZE};
use tokio::io::AsyncBufReadExt;
use tokio::sync::{Mutex, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

use crate::client::GrpcClient;
use crate::config::PluginConfig;
use crate::error::{Error, ErrorKind};
use crate::lines::BoundedLines;
use crate::log::{self, Tail};
use crate::process::{self, Process, SpawnOptions};

/// How long [`Plugin::kill`] gives a plugin, from the `GRPCController/Shutdown` call to its exit,
/// before it is killed (go-plugin's 2 s).
pub const GRACEFUL_EXIT_TIMEOUT: Duration = Duration::from_secs(2);

/// How often a reattached plugin whose pid is unknown is checked for being gone.
const NO_PID_POLL: Duration = Duration::from_secs(1);

/// How long to wait for the plugin's stderr to be fully read once it has exited.
const STDERR_DRAIN_TIMEOUT: Duration = Duration::from_secs(2);

/// How `kill` ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct KillReport {
    /// True when the plugin exited on its own after `Shutdown`; false when it was SIGKILLed, had
    /// already exited, or (reattached) was left running.
    pub graceful: bool,
    /// The exit status, when the process was reaped.
    pub status: Option<ExitStatus>,
}

/// A running plugin process and the gRPC connection to it.
///
/// Dropping a `Plugin` SIGKILLs the process if it is still running; call [`Plugin::kill`] for a
/// graceful stop.
#[derive(Debug)]
pub struct Plugin {
    name: String,
    version: u32,
    protocol: Protocol,
    plugins: BTreeSet<String>,
    address: Address,
    channel: Channel,
    process: Arc<Process>,
    stderr_done: Mutex<Option<JoinHandle<()>>>,
    stdio_done: Mutex<Option<JoinHandle<()>>>,
    background: Vec<JoinHandle<()>>,
    broker: Broker,
    killed: Mutex<Option<KillReport>>,
    /// Set for a reattached plugin (its configuration, as given).
    reattached: Option<ReattachConfig>,
}

impl Plugin {
    /// Launches the plugin, waits for its handshake line, checks it, and connects.
    ///
    /// Every failure after the process started kills and reaps it before returning.
    pub async fn launch(mut config: PluginConfig) -> Result<Plugin, Error> {
        check_config(&config)?;
        if let Some(reattach) = config.reattach.take() {
            return attach(config, reattach).await;
        }
        if let Some(secure) = &config.secure {
            secure.check(&config.command).await?;
        }
        let identity = if config.auto_mtls {
            Some(Identity::generate().map_err(|e| {
                Error::with_source(
                    ErrorKind::Config,
                    "could not make the AutoMTLS certificate",
                    e,
                )
            })?)
        } else {
            None
        };
        let name = std::mem::take(&mut config.name);
        let versions: Vec<u32> = config.versions.keys().copied().collect();
        let cert_pem = identity.as_ref().map(Identity::cert_pem);
        let command = build_command(&mut config, &versions, cert_pem.as_deref());
        // Program and arguments only: the environment can hold secrets.
        tracing::debug!(
            plugin = %name,
            path = ?command.as_std().get_program(),
            args = ?command.as_std().get_args().collect::<Vec<_>>(),
            "starting plugin"
        );
        let mut socket_dirs = vec![std::env::temp_dir()];
        socket_dirs.extend(config.unix_socket_dir.clone());
        let options = SpawnOptions {
            socket_dirs,
            kill_with_host: config.kill_with_host,
            own_group: config.own_process_group,
        };
        let spawned = Process::spawn(command, options).await;
        let (process, stdout, stderr) = spawned.map_err(|e| {
            Error::with_source(
                ErrorKind::Spawn,
                format!(
                    "could not start plugin {:?}; check that it exists and is executable",
                    config.program()
                ),
                e,
            )
        })?;
        let process = Arc::new(process);
        tracing::debug!(plugin = %name, pid = ?process.pid(), "plugin started");

        let tail = Tail::default();
        let stderr_task = tokio::spawn(log::bridge(
            stderr,
            name.clone(),
            tail.clone(),
            config.stderr.take(),
        ));
        let (line_tx, line_rx) = oneshot::channel();
        let stdout_task = tokio::spawn(read_stdout(stdout, line_tx, name.clone()));

        let started = Started {
            name,
            process,
            tail,
            stderr_task: Some(stderr_task),
            stdout_task,
        };
        started
            .handshake(config, identity, &versions, line_rx)
            .await
    }

    /// The negotiated app-protocol version.
    pub fn version(&self) -> u32 {
        self.version
    }

    /// The protocol the plugin answered with (go-plugin's `Protocol()`).
    pub fn protocol(&self) -> Protocol {
        self.protocol
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
                self.protocol,
                self.version,
                &self.address,
                self.pid().unwrap_or(0),
            )
        })
    }

    /// The host's broker for this plugin: serve callbacks to the plugin
    /// ([`Broker::accept_and_serve`]) or dial services it serves ([`Broker::dial`]).
    pub fn broker(&self) -> &Broker {
        &self.broker
    }

    /// The gRPC channel to the plugin, for any tonic client.
    pub fn channel(&self) -> Channel {
        self.channel.clone()
    }

    /// A typed client for plugin `name` of the negotiated version, made by `make` from the
    /// channel (go-plugin's `Dispense`), e.g. `plugin.dispense("kv", KvClient::new)`. Nothing goes
    /// on the wire: gRPC plugin names are checked locally, as in go-plugin.
    ///
    /// The client gets go-plugin's message limits, [`MAX_MESSAGE_SIZE`] each way (tonic's own
    /// default refuses replies over 4 MiB); set others on the client it returns. Generated
    /// clients take part through [`GrpcClient`], implemented with [`grpc_client!`].
    ///
    /// [`MAX_MESSAGE_SIZE`]: crate::MAX_MESSAGE_SIZE
    /// [`grpc_client!`]: crate::grpc_client
    pub fn dispense<T: GrpcClient>(
        &self,
        name: &str,
        make: impl FnOnce(Channel) -> T,
    ) -> Result<T, Error> {
        if !self.plugins.contains(name) {
            return Err(Error::new(
                ErrorKind::UnknownPlugin,
                format!(
                    "unknown plugin type: {name} (version {} offers {:?})",
                    self.version, self.plugins
                ),
            ));
        }
        Ok(make(self.channel.clone()).message_limits(MAX_MESSAGE_SIZE, MAX_MESSAGE_SIZE))
    }

    /// Checks the plugin answers: a health check of service `plugin`. Only a failed call counts as
    /// failure (as in go-plugin, a `NOT_SERVING` answer passes).
    pub async fn ping(&self) -> Result<(), Error> {
        let mut health = tonic_health::pb::health_client::HealthClient::new(self.channel.clone());
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

    /// Stops the plugin (go-plugin's `Kill`): asks it to shut down (`GRPCController/Shutdown`)
    /// and gives it [`GRACEFUL_EXIT_TIMEOUT`] (2 s, from the call) to exit, else SIGKILLs it
    /// with everything else in its process group; then waits for its remaining output and
    /// removes a socket file it left behind. Safe to call several times; later calls return the
    /// first result.
    ///
    /// A reattached plugin is asked to shut down the same way but never signalled: it is not
    /// this host's child (and its pid may by now be another process's). One in test mode
    /// (`Test: true`) is left alone entirely, as go-plugin does.
    pub async fn kill(&self) -> KillReport {
        let mut killed = self.killed.lock().await;
        if let Some(report) = *killed {
            return report;
        }
        if self.reattached.as_ref().is_some_and(|r| r.test) {
            // A plugin in test mode ends on its own; the host never stops it (go-plugin).
            let report = KillReport {
                graceful: false,
                status: None,
            };
            *killed = Some(report);
            return report;
        }
        // As go-plugin: close the broker first, then ask for shutdown.
        self.broker.close();
        let mut graceful = false;
        if !self.exited() {
            let deadline = tokio::time::Instant::now() + GRACEFUL_EXIT_TIMEOUT;
            let mut controller = GrpcControllerClient::new(self.channel.clone());
            // The plugin may stop serving before answering (Go plugins do): the result is
            // irrelevant, only the exit counts.
            let _ = tokio::time::timeout_at(deadline, controller.shutdown(Empty {})).await;
            graceful = self.exited_by(deadline).await;
            match (graceful, self.process.launched()) {
                (true, _) => {}
                (false, true) => {
                    tracing::warn!(plugin = %self.name, "plugin failed to exit gracefully");
                    self.process.kill().await;
                }
                (false, false) => tracing::warn!(
                    plugin = %self.name,
                    "the reattached plugin did not exit after Shutdown; this host did not start \
                     it, so it is left running"
                ),
            }
        }
        // The forwarded output ends with the connection: take all of it.
        if !drain(&mut *self.stdio_done.lock().await, STDERR_DRAIN_TIMEOUT).await {
            tracing::warn!(plugin = %self.name, "the plugin's forwarded output did not end: stopped reading");
        }
        let report = finish(
            &self.name,
            &self.process,
            &mut *self.stderr_done.lock().await,
            &self.background,
        )
        .await;
        let report = KillReport { graceful, ..report };
        *killed = Some(report);
        report
    }

    /// Whether the process has exited by `deadline`. A reattached plugin without a pid has
    /// exited once it no longer answers.
    async fn exited_by(&self, deadline: tokio::time::Instant) -> bool {
        if self.process.launched() || self.process.pid().is_some() {
            self.process.wait_until(deadline).await;
            return self.exited();
        }
        loop {
            if gone(&self.channel).await {
                self.process.mark_exited();
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Whether the plugin behind `channel` is gone: a health check cannot reach it.
async fn gone(channel: &Channel) -> bool {
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    let check = health.check(tonic_health::pb::HealthCheckRequest {
        service: "plugin".into(),
    });
    match tokio::time::timeout(Duration::from_secs(1), check).await {
        Ok(Err(status)) => status.code() == tonic::Code::Unavailable,
        Ok(Ok(_)) | Err(_) => false,
    }
}

impl Drop for Plugin {
    fn drop(&mut self) {
        // Brokered servers the host serves stop and remove their sockets.
        self.broker.close();
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

/// A started process whose handshake is not done yet.
struct Started {
    name: String,
    process: Arc<Process>,
    tail: Tail,
    stderr_task: Option<JoinHandle<()>>,
    stdout_task: JoinHandle<()>,
}

impl Started {
    async fn handshake(
        self,
        config: PluginConfig,
        identity: Option<Identity>,
        versions: &[u32],
        line_rx: oneshot::Receiver<StdoutLine>,
    ) -> Result<Plugin, Error> {
        let deadline = tokio::time::Instant::now() + config.start_timeout;
        if let Some(identity) = &identity {
            // Load the AutoMTLS key while the plugin starts (an error shows again, later).
            let _ = identity.certified_key();
        }
        tracing::debug!(plugin = %self.name, "waiting for RPC address");
        let line = tokio::select! {
            biased;
            line = line_rx => line.unwrap_or(StdoutLine::Closed),
            () = self.process.exited().cancelled() => StdoutLine::Closed,
            () = tokio::time::sleep_until(deadline) => {
                return Err(self.fail(Error::new(
                    ErrorKind::StartTimeout,
                    format!(
                        "timeout while waiting for plugin to start: no handshake line within {:?}; \
                         the plugin is hung or slow to start (raise the start timeout)",
                        config.start_timeout
                    ),
                )).await);
            }
        };
        let line = match line {
            StdoutLine::Line(line) => line,
            StdoutLine::TooLong => {
                return Err(self
                    .fail(Error::new(
                        ErrorKind::Handshake,
                        format!(
                            "the plugin's first stdout line is longer than {MAX_HANDSHAKE_LINE} bytes: \
                             it is not a go-plugin handshake line"
                        ),
                    ))
                    .await);
            }
            StdoutLine::Closed => return Err(self.closed_before_handshake().await),
        };

        let expect = HostExpectations {
            versions,
            allowed_protocols: &config.allowed_protocols,
            multiplex: config.multiplex,
        };
        // Remember where the plugin listens even if the line is refused, to clean up after it.
        if let Ok(HandshakeLine {
            network: plugwire_protocol::Network::Unix,
            address,
            ..
        }) = HandshakeLine::parse_bytes(&line)
        {
            self.process.add_socket(std::path::Path::new(&address));
        }
        let line = match expect.accept_bytes(&line) {
            Ok(line) => line,
            Err(e) => {
                let unrecognized =
                    matches!(e, plugwire_protocol::HandshakeError::Unrecognized { .. });
                let mut message = String::from("the plugin's handshake was refused");
                if unrecognized {
                    message.push_str(
                        "; this usually means the program is not a go-plugin plugin, was not built \
                         for this machine, or printed to stdout before its handshake line",
                    );
                }
                return Err(self
                    .fail(Error::with_source(ErrorKind::Handshake, message, e))
                    .await);
            }
        };
        tracing::debug!(plugin = %self.name, version = line.app_version, "using plugin");
        if line.protocol == Protocol::NetRpc {
            return Err(self.fail(netrpc_unsupported(ErrorKind::Handshake)).await);
        }

        let tls = match (identity, &config.tls) {
            (Some(identity), _) => match auto_mtls(&identity, &line) {
                Ok(tls) => tls,
                Err(e) => return Err(self.fail(e).await),
            },
            (None, tls) => tls.clone().unwrap_or_default(),
        };
        let address = match translate(config.translator.as_deref(), &line) {
            Ok(address) => address,
            Err(e) => return Err(self.fail(e).await),
        };
        let broker = Broker::new(BrokerConfig {
            role: Role::Host,
            tls,
            listen: BrokerListen::Unix {
                dir: config.unix_socket_dir.clone(),
                group: config.unix_socket_group.clone(),
            },
            translator: config.translator.clone(),
            multiplex: config.multiplex,
            on_peer_socket: Some(self.process.socket_hook()),
        });
        let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
        match tokio::time::timeout(remaining, connect(&address, &broker)).await {
            Ok(Ok(channel)) => Ok(self.connected(config, line, address, channel, broker)),
            Ok(Err(e)) => Err(self.fail(e).await),
            Err(_) => Err(self
                .fail(Error::new(
                    ErrorKind::StartTimeout,
                    format!("timeout while connecting to the plugin at {address}"),
                ))
                .await),
        }
    }

    fn connected(
        mut self,
        mut config: PluginConfig,
        line: HandshakeLine,
        address: Address,
        channel: Channel,
        broker: Broker,
    ) -> Plugin {
        let plugins = config
            .versions
            .remove(&line.app_version)
            .unwrap_or_default();
        // The stdout reader keeps draining on its own until EOF.
        assemble(Assembly {
            name: std::mem::take(&mut self.name),
            version: line.app_version,
            protocol: line.protocol,
            plugins,
            address,
            channel,
            process: self.process.clone(),
            stderr_task: self.stderr_task.take(),
            broker,
            config,
            reattached: None,
        })
    }

    /// stdout ended (or the process exited) without a line.
    async fn closed_before_handshake(mut self) -> Error {
        // Give the process a moment to be reaped so the error can say how it ended.
        let status = self.process.wait_timeout(Duration::from_secs(1)).await;
        let stderr = self.stderr_text().await;
        let error = match status {
            Some(status) => Error::new(
                ErrorKind::Exited,
                format!(
                    "plugin exited before we could connect ({}){stderr}",
                    process::describe(Some(status))
                ),
            ),
            None => Error::new(
                ErrorKind::Handshake,
                format!(
                    "Unrecognized remote plugin message: \nFailed to read any lines from plugin's \
                     stdout: the plugin closed its stdout without printing a handshake line{stderr}"
                ),
            ),
        };
        self.fail(error).await
    }

    /// The end of stderr for an error message, once the reader has caught up.
    async fn stderr_text(&mut self) -> String {
        if self.process.exited().is_cancelled() {
            drain(&mut self.stderr_task, Duration::from_millis(500)).await;
        }
        let tail = self.tail.render();
        if tail.is_empty() {
            String::new()
        } else {
            format!("; the plugin's last stderr lines:{tail}")
        }
    }

    /// Kills and reaps the process, then returns `error` with the stderr tail when useful.
    async fn fail(mut self, mut error: Error) -> Error {
        if !self.process.exited().is_cancelled() {
            self.process.kill().await;
        }
        self.stdout_task.abort();
        let report = finish(&self.name, &self.process, &mut self.stderr_task, &[]).await;
        error.set_exit_status(report.status);
        error
    }
}

/// The parts of a connected plugin.
struct Assembly {
    name: String,
    version: u32,
    protocol: Protocol,
    plugins: BTreeSet<String>,
    address: Address,
    channel: Channel,
    process: Arc<Process>,
    stderr_task: Option<JoinHandle<()>>,
    broker: Broker,
    config: PluginConfig,
    reattached: Option<ReattachConfig>,
}

/// Starts the broker and stdio streams and builds the handle.
fn assemble(mut parts: Assembly) -> Plugin {
    let sinks = crate::stdio::Sinks {
        stdout: parts.config.sync_stdout.take(),
        stderr: parts.config.sync_stderr.take(),
    };
    let closing = parts.broker.clone();
    let stdio = tokio::spawn(crate::stdio::run(
        parts.channel.clone(),
        parts.name.clone(),
        sinks,
        move || closing.is_closed(),
    ));
    let mut background = vec![tokio::spawn(run_broker_stream(
        parts.channel.clone(),
        parts.broker.clone(),
    ))];
    if !parts.process.launched() && parts.process.pid().is_none() {
        background.push(tokio::spawn(watch_without_pid(
            parts.channel.clone(),
            parts.process.clone(),
        )));
    }
    Plugin {
        name: parts.name,
        version: parts.version,
        protocol: parts.protocol,
        plugins: parts.plugins,
        address: parts.address,
        channel: parts.channel,
        process: parts.process,
        stderr_done: Mutex::new(parts.stderr_task),
        stdio_done: Mutex::new(Some(stdio)),
        background,
        broker: parts.broker,
        killed: Mutex::new(None),
        reattached: parts.reattached,
    }
}

/// Attaches to a running plugin (go-plugin's `reattach`): it must exist and answer at its
/// address, else `ErrorKind::NotFound` ("reattachment process not found").
async fn attach(mut config: PluginConfig, reattach: ReattachConfig) -> Result<Plugin, Error> {
    let config_error = |message: &str| Error::new(ErrorKind::Config, message.to_owned());
    if config.secure.is_some() {
        return Err(config_error(
            "only one of Reattach or SecureConfig can be set",
        ));
    }
    if config.multiplex {
        return Err(config_error(
            "gRPC broker multiplexing is not supported with Reattach config",
        ));
    }
    match reattach.protocol() {
        Ok(Protocol::Grpc) => {}
        Ok(_netrpc) => return Err(netrpc_unsupported(ErrorKind::Config)),
        Err(e) => {
            return Err(Error::with_source(
                ErrorKind::Config,
                "invalid reattach configuration",
                e,
            ));
        }
    }
    let line = HandshakeLine {
        app_version: reattach.protocol_version,
        network: reattach
            .address()
            .map_err(|e| {
                Error::with_source(ErrorKind::Config, "invalid reattach configuration", e)
            })?
            .network(),
        address: reattach.addr.string.clone(),
        protocol: Protocol::Grpc,
        server_cert: None,
        multiplex: None,
    };
    let address = translate(config.translator.as_deref(), &line)?;
    let not_found = |why: String| {
        Error::new(
            ErrorKind::NotFound,
            format!("reattachment process not found: {why}"),
        )
    };
    if reattach.pid != 0 && !process::is_alive(reattach.pid) {
        return Err(not_found(format!("no process with pid {}", reattach.pid)));
    }
    if let Err(e) = address.dial().await {
        return Err(not_found(format!("nothing answers at {address} ({e})")));
    }
    if config.auto_mtls {
        tracing::debug!("AutoMTLS is ignored when reattaching: no certificates are exchanged");
    }
    let broker = Broker::new(BrokerConfig {
        role: Role::Host,
        tls: config.tls.clone().unwrap_or_default(),
        listen: BrokerListen::Unix {
            dir: config.unix_socket_dir.clone(),
            group: config.unix_socket_group.clone(),
        },
        translator: config.translator.clone(),
        multiplex: false,
        on_peer_socket: None,
    });
    let channel = connect(&address, &broker).await?;
    let plugins = config
        .versions
        .get(&reattach.protocol_version)
        .cloned()
        .unwrap_or_else(|| config.versions.values().flatten().cloned().collect());
    Ok(assemble(Assembly {
        name: std::mem::take(&mut config.name),
        version: reattach.protocol_version,
        protocol: Protocol::Grpc,
        plugins,
        address,
        channel,
        process: Arc::new(Process::attach(reattach.pid)),
        stderr_task: None,
        broker,
        config,
        reattached: Some(reattach),
    }))
}

/// A reattached plugin without a pid is gone when it no longer answers (go-plugin cannot tell
/// at all); checked every [`NO_PID_POLL`] for as long as the `Plugin` lives.
async fn watch_without_pid(channel: Channel, process: Arc<Process>) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(NO_PID_POLL) => {}
            () = process.exited().cancelled() => return,
        }
        if gone(&channel).await {
            process.mark_exited();
            return;
        }
    }
}

/// The error for a plugin that answers (or is configured) with go-plugin's net/rpc protocol.
fn netrpc_unsupported(kind: ErrorKind) -> Error {
    Error::new(
        kind,
        "the plugin speaks netrpc (go-plugin's net/rpc protocol), which plugwire does not speak \
         yet: only gRPC plugins can be loaded; rebuild the plugin for gRPC if it supports both",
    )
}

/// AutoMTLS, host side: trust exactly the certificate the plugin sent in its handshake line.
fn auto_mtls(identity: &Identity, line: &HandshakeLine) -> Result<TlsConfigs, Error> {
    let cert = line.server_cert.clone().ok_or_else(|| {
        Error::new(
            ErrorKind::Handshake,
            "AutoMTLS is on but the plugin sent no certificate in its handshake line: the plugin \
             does not support AutoMTLS (or serves its own TLS); turn AutoMTLS off or configure \
             manual TLS",
        )
    })?;
    let peer = PinnedPeer::new([cert]).map_err(|e| {
        Error::with_source(
            ErrorKind::Handshake,
            "the plugin's certificate is unusable",
            e,
        )
    })?;
    TlsConfigs::pinned(identity, &peer)
        .map_err(|e| Error::with_source(ErrorKind::Connect, "could not set up AutoMTLS", e))
}

fn check_config(config: &PluginConfig) -> Result<(), Error> {
    if config.reattach.is_some() {
        return Ok(());
    }
    if !config.auto_mtls && config.tls.as_ref().is_some_and(|t| t.client.is_none()) {
        return Err(Error::new(
            ErrorKind::Config,
            "manual TLS needs a client configuration to dial the plugin: pass one to TlsConfigs::custom",
        ));
    }
    if config.versions.is_empty() {
        return Err(Error::new(
            ErrorKind::Config,
            "no plugin versions configured: call PluginConfigBuilder::plugins at least once",
        ));
    }
    if !config.allowed_protocols.contains(&Protocol::Grpc) {
        return Err(Error::new(
            ErrorKind::Config,
            "plugwire hosts speak gRPC only: allowed_protocols must include Protocol::Grpc",
        ));
    }
    Ok(())
}

/// Sets go-plugin's environment on the command, in go-plugin's order.
fn build_command(
    config: &mut PluginConfig,
    versions: &[u32],
    client_cert_pem: Option<&str>,
) -> tokio::process::Command {
    let mut command = std::mem::replace(&mut config.command, std::process::Command::new(""));
    let own: Vec<_> = command
        .get_envs()
        .filter_map(|(k, v)| Some((k.to_owned(), v?.to_owned())))
        .collect();
    command.env_clear();
    command.envs(own);
    if !config.skip_host_env {
        command.envs(std::env::vars_os());
    }
    let vars = HostEnv {
        cookie: &config.cookie,
        versions,
        min_port: config.min_port,
        max_port: config.max_port,
        multiplex: config.multiplex,
        client_cert_pem,
        unix_socket_group: config.unix_socket_group.as_deref(),
        unix_socket_dir: config
            .unix_socket_dir
            .as_deref()
            .map(std::path::Path::as_os_str),
    }
    .vars();
    command.envs(vars);
    tokio::process::Command::from(command)
}

/// The handshake address as the host must dial it (go-plugin's `PluginToHost`).
fn translate(
    translator: Option<&dyn AddressTranslator>,
    line: &HandshakeLine,
) -> Result<Address, Error> {
    let Some(translator) = translator else {
        return Ok(Address::new(line.network, &line.address));
    };
    let (network, address) = translator
        .plugin_to_host(line.network.as_str(), &line.address)
        .map_err(|e| {
            Error::with_source(
                ErrorKind::Handshake,
                "could not translate the plugin's address",
                e,
            )
        })?;
    let network = network.parse().map_err(|()| {
        Error::new(
            ErrorKind::Handshake,
            format!("unknown address type: {address} (translated network {network:?})"),
        )
    })?;
    Ok(Address::new(network, &address))
}

/// Connects the main gRPC channel: directly (TLS when configured), or, multiplexed, as the
/// first stream of a yamux session on one raw connection.
async fn connect(address: &Address, broker: &Broker) -> Result<Channel, Error> {
    let connect_error = |e: &dyn std::fmt::Display| {
        format!(
            "could not connect to the plugin at {address}{}{}",
            if broker.is_multiplexed() {
                " (multiplexed)"
            } else {
                ""
            },
            e
        )
    };
    let channel = if broker.is_multiplexed() {
        // A Go plugin waits only ~5 s for this connection after printing its handshake line.
        let raw = address
            .dial()
            .await
            .map_err(|e| Error::with_source(ErrorKind::Connect, connect_error(&""), e))?;
        broker.start_session(raw, None);
        let broker = broker.clone();
        transport::channel(move || {
            let broker = broker.clone();
            async move { broker.open_main().await }
        })
        .await
    } else {
        let tls = broker.client_tls();
        let address = address.clone();
        transport::channel(move || {
            let address = address.clone();
            let tls = tls.clone();
            async move {
                let io = address.dial().await?;
                match tls {
                    Some(config) => transport::tls_connect(io, config).await,
                    None => Ok(io),
                }
            }
        })
        .await
    };
    channel.map_err(|e| Error::with_source(ErrorKind::Connect, connect_error(&""), e))
}

/// What stdout gave before the handshake.
enum StdoutLine {
    Line(Vec<u8>),
    TooLong,
    Closed,
}

/// Reads the handshake line, then drains stdout until EOF so the plugin never blocks on it.
async fn read_stdout(
    stdout: tokio::process::ChildStdout,
    line_tx: oneshot::Sender<StdoutLine>,
    name: String,
) {
    let reader = tokio::io::BufReader::with_capacity(8 * 1024, stdout);
    let mut lines = BoundedLines::new(reader, MAX_HANDSHAKE_LINE);
    let first = match lines.next().await {
        Ok(Some(segment)) if segment.end_of_line => StdoutLine::Line(segment.data),
        Ok(Some(_)) => StdoutLine::TooLong,
        Ok(None) | Err(_) => StdoutLine::Closed,
    };
    let _ = line_tx.send(first);
    // Later stdout is not part of the protocol: go-plugin drops it.
    let mut reader = lines.into_inner();
    let mut discarded = 0u64;
    loop {
        let n = match reader.fill_buf().await {
            Ok([]) | Err(_) => break,
            Ok(buf) => buf.len(),
        };
        reader.consume(n);
        discarded += n as u64;
    }
    if discarded > 0 {
        tracing::trace!(plugin = %name, bytes = discarded, "discarded plugin stdout after the handshake");
    }
}

/// Waits for the exit (after which the process watcher has removed a socket the plugin left
/// behind), for stderr to be read completely, and stops background tasks.
async fn finish(
    name: &str,
    process: &Process,
    stderr_task: &mut Option<JoinHandle<()>>,
    background: &[JoinHandle<()>],
) -> KillReport {
    // A process this host did not start is not waited for: it may well keep running.
    let status = if process.launched() {
        process.wait_timeout(process::REAP_TIMEOUT).await
    } else {
        None
    };
    for task in background {
        task.abort();
    }
    if !drain(stderr_task, STDERR_DRAIN_TIMEOUT).await {
        tracing::warn!(plugin = %name, "plugin stderr still open after exit (a child process holds it?): stopped reading");
    }
    match status {
        _ if !process.launched() => {
            if process.exited().is_cancelled() {
                tracing::debug!(plugin = %name, pid = ?process.pid(), "plugin exited");
            }
        }
        Some(status) if status.success() => {
            tracing::info!(plugin = %name, pid = ?process.pid(), "plugin process exited")
        }
        status => tracing::error!(
            plugin = %name,
            pid = ?process.pid(),
            status = %process::describe(status),
            "plugin process exited"
        ),
    }
    KillReport {
        graceful: false,
        status,
    }
}

/// Waits up to `timeout` for a reader task to reach the end of its input; true when it did (or
/// was done already). A reader still running afterwards is stopped.
async fn drain(task: &mut Option<JoinHandle<()>>, timeout: Duration) -> bool {
    let Some(handle) = task.as_mut() else {
        return true;
    };
    let done = tokio::time::timeout(timeout, &mut *handle).await.is_ok();
    if !done {
        handle.abort();
    }
    *task = None;
    done
}

/// Opens `plugin.GRPCBroker/StartStream` right after connecting, as a Go host does, and feeds
/// the broker until it is closed.
async fn run_broker_stream(channel: Channel, broker: Broker) {
    let mut client = GrpcBrokerClient::new(channel);
    let call = async {
        match client.start_stream(broker.outbound()).await {
            Ok(response) => {
                let mut inbound = response.into_inner();
                while let Ok(Some(info)) = inbound.message().await {
                    broker.handle_inbound(info);
                }
            }
            Err(status) => tracing::debug!(%status, "plugin has no broker stream"),
        }
    };
    tokio::select! {
        () = call => {}
        () = broker.closed() => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use plugwire_protocol::Network;

    #[test]
    fn environment_follows_go_plugin_precedence() {
        let mut command = std::process::Command::new("/bin/true");
        command
            .env("PLUGWIRE_TEST_OWN", "mine")
            .env("PLUGIN_PROTOCOL_VERSIONS", "99");
        let mut config =
            PluginConfig::builder(plugwire_protocol::MagicCookie::new("K", "V"), command)
                .plugins(1, ["a"])
                .plugins(3, ["b"])
                .skip_host_env(true)
                .build();
        let command = build_command(&mut config, &[1, 3], Some("PEM"));
        let envs: Vec<_> = command
            .as_std()
            .get_envs()
            .map(|(k, v)| {
                (
                    k.to_string_lossy().into_owned(),
                    v.map(|v| v.to_string_lossy().into_owned()),
                )
            })
            .collect();
        let get = |name: &str| {
            envs.iter()
                .find(|(k, _)| k == name)
                .and_then(|(_, v)| v.clone())
        };
        assert_eq!(get("PLUGWIRE_TEST_OWN").as_deref(), Some("mine"));
        assert_eq!(
            get("PLUGIN_PROTOCOL_VERSIONS").as_deref(),
            Some("1,3"),
            "go-plugin's variables win"
        );
        assert_eq!(get("K").as_deref(), Some("V"));
        assert_eq!(get("PLUGIN_MIN_PORT").as_deref(), Some("10000"));
        assert_eq!(get("PLUGIN_CLIENT_CERT").as_deref(), Some("PEM"));
        assert!(
            get("PATH").is_none(),
            "skip_host_env leaves the host's environment out"
        );
    }

    #[tokio::test]
    async fn reattach_refuses_what_go_plugin_refuses() {
        let reattach = || {
            ReattachConfig::from_json(
                r#"{"Protocol":"grpc","ProtocolVersion":1,"Pid":1,"Addr":{"Network":"unix","String":"/tmp/p"}}"#,
            )
            .expect("valid")
        };
        let err = Plugin::launch(
            PluginConfig::reattach(reattach())
                .secure_config(crate::SecureConfig::sha256(vec![0; 32]))
                .build(),
        )
        .await
        .expect_err("reattach + SecureConfig");
        assert_eq!(
            err.to_string(),
            "only one of Reattach or SecureConfig can be set"
        );
        let err = Plugin::launch(PluginConfig::reattach(reattach()).multiplex(true).build())
            .await
            .expect_err("reattach + multiplexing");
        assert_eq!(
            err.to_string(),
            "gRPC broker multiplexing is not supported with Reattach config"
        );
        let mut netrpc = reattach();
        netrpc.protocol = String::new();
        let err = Plugin::launch(PluginConfig::reattach(netrpc).build())
            .await
            .expect_err("empty protocol means netrpc");
        assert_eq!(err.kind(), ErrorKind::Config);
        assert!(err.to_string().contains("speaks netrpc"), "{err}");
    }

    #[test]
    fn handshake_address_is_translated() {
        struct Container;
        impl AddressTranslator for Container {
            fn plugin_to_host(&self, _: &str, address: &str) -> std::io::Result<(String, String)> {
                Ok(("unix".into(), format!("/var/lib/plugins/mnt{address}")))
            }
        }
        let line = HandshakeLine::parse("1|1|unix|/tmp/plugin1|grpc|").expect("valid");
        assert_eq!(
            translate(Some(&Container), &line).expect("translated"),
            Address::Unix("/var/lib/plugins/mnt/tmp/plugin1".into())
        );
        assert_eq!(
            translate(None, &line).expect("identity"),
            Address::Unix("/tmp/plugin1".into())
        );
        struct Broken;
        impl AddressTranslator for Broken {
            fn plugin_to_host(&self, _: &str, a: &str) -> std::io::Result<(String, String)> {
                Ok(("carrier-pigeon".into(), a.into()))
            }
        }
        let err = translate(Some(&Broken), &line).expect_err("unknown network");
        assert!(err.to_string().contains("unknown address type"), "{err}");
    }

    #[test]
    fn network_field_round_trip() {
        let line = HandshakeLine::parse("1|1|tcp|:1234|grpc|").expect("valid");
        assert_eq!(
            Address::new(line.network, &line.address),
            Address::Tcp("127.0.0.1:1234".into())
        );
        assert_eq!(
            Address::new(Network::Unix, "/tmp/x").network(),
            Network::Unix
        );
    }
}

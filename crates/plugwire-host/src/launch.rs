//! Launching a plugin (go-plugin's `Client.Start`): spawn it with go-plugin's environment, read
//! and check its handshake line, then connect.

use std::sync::Arc;
use std::time::Duration;

use plugwire_protocol::env::HostEnv;
use plugwire_protocol::handshake::{HandshakeLine, HostExpectations, MAX_HANDSHAKE_LINE};
use plugwire_protocol::{Address, MagicCookie, Protocol};
use plugwire_runtime::tls::{Identity, PinnedPeer, TlsConfigs};
use tokio::io::AsyncBufReadExt;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::attach::attach;
use crate::config::{PluginConfig, Source};
use crate::connect::{self, Assembly, Connected, Link};
use crate::error::{Error, ErrorKind};
use crate::kill::{drain, finish};
use crate::lines::BoundedLines;
use crate::log::{self, Tail};
use crate::plugin::Plugin;
use crate::plugin::{Timings, TlsMode};
use crate::process::{self, Process, SpawnOptions};

impl Plugin {
    /// Launches the plugin, waits for its handshake line, checks it, and connects.
    ///
    /// Every failure after the process started kills and reaps it before returning.
    ///
    /// ```no_run
    /// use plugwire_host::{MagicCookie, Plugin, PluginConfig};
    ///
    /// # async fn f() -> Result<(), plugwire_host::Error> {
    /// let config = PluginConfig::builder(
    ///     MagicCookie::new("BASIC_PLUGIN", "hello"),
    ///     std::process::Command::new("./kv-plugin"),
    /// )
    /// .plugins(1, ["kv_grpc"])
    /// .auto_mtls(true)
    /// .build();
    /// let plugin = Plugin::launch(config).await?;
    /// println!("version {} over {}", plugin.version(), plugin.address());
    /// plugin.kill().await;
    /// # Ok(()) }
    /// ```
    pub async fn launch(mut config: PluginConfig) -> Result<Plugin, Error> {
        let (command, cookie) = match config.source.take() {
            Some(Source::Command { command, cookie }) => (command, cookie),
            Some(Source::Reattach(reattach)) => return attach(config, reattach).await,
            None => {
                return Err(Error::new(
                    ErrorKind::Config,
                    "this configuration was already used to launch a plugin",
                ));
            }
        };
        check_config(&config)?;
        if let Some(secure) = &config.secure {
            secure.check(&command).await?;
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
        let command = build_command(command, &cookie, &config, &versions, cert_pem.as_deref());
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
        let program = command.as_std().get_program().to_owned();
        let spawn_started = std::time::Instant::now();
        let spawned = Process::spawn(command, options).await;
        let (process, stdout, stderr) = spawned.map_err(|e| {
            Error::with_source(
                ErrorKind::Spawn,
                format!(
                    "could not start plugin {:?}; check that it exists and is executable",
                    program
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

        let spawned_at = std::time::Instant::now();
        let started = Started {
            name,
            process,
            tail,
            timings: Timings {
                spawn: spawned_at - spawn_started,
                ..Timings::default()
            },
            spawned_at,
            stderr_task: Some(stderr_task),
            stdout_task,
        };
        started
            .handshake(config, identity, &versions, line_rx)
            .await
    }
}

struct Started {
    name: String,
    process: Arc<Process>,
    tail: Tail,
    timings: Timings,
    spawned_at: std::time::Instant,
    stderr_task: Option<JoinHandle<()>>,
    stdout_task: JoinHandle<()>,
}

impl Started {
    async fn handshake(
        mut self,
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
        let line_at = std::time::Instant::now();
        self.timings.handshake_line = line_at - self.spawned_at;
        tracing::debug!(plugin = %self.name, version = line.app_version, "using plugin");

        let (tls, tls_mode) = match (identity, &config.tls) {
            (Some(identity), _) => match auto_mtls(&identity, &line) {
                Ok(tls) => (tls, TlsMode::AutoMtls),
                Err(e) => return Err(self.fail(e).await),
            },
            (None, Some(tls)) => (tls.clone(), TlsMode::Manual),
            (None, None) => (TlsConfigs::default(), TlsMode::Plaintext),
        };
        let address = match connect::translate(config.translator.as_deref(), &line) {
            Ok(address) => address,
            Err(e) => return Err(self.fail(e).await),
        };
        let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
        let link = async {
            if line.protocol == Protocol::NetRpc {
                return crate::netrpc::connect(&address, tls.client, config.gob_limits.clone())
                    .await
                    .map(Link::NetRpc);
            }
            let (broker, link) = connect::broker(
                &config,
                tls,
                config.multiplex,
                Some(self.process.socket_hook()),
            );
            let channel = connect::channel(&address, &link, config.endpoint.as_ref()).await?;
            Ok(Link::Grpc {
                channel,
                broker,
                link,
            })
        };
        match tokio::time::timeout(remaining, link).await {
            Ok(Ok(link)) => Ok(self.connected_after(line_at).connected(
                config,
                line,
                address,
                Connected {
                    link,
                    tls: tls_mode,
                },
            )),
            Ok(Err(e)) => Err(self.fail(e).await),
            Err(_) => Err(self
                .fail(Error::new(
                    ErrorKind::StartTimeout,
                    format!("timeout while connecting to the plugin at {address}"),
                ))
                .await),
        }
    }

    fn connected_after(mut self, line_at: std::time::Instant) -> Self {
        self.timings.connect = line_at.elapsed();
        self
    }

    fn connected(
        mut self,
        mut config: PluginConfig,
        line: HandshakeLine,
        address: Address,
        connected: Connected,
    ) -> Plugin {
        let plugins = config
            .versions
            .remove(&line.app_version)
            .unwrap_or_default();
        // The stdout reader keeps draining on its own until EOF.
        connect::assemble(Assembly {
            timings: Some(self.timings),
            name: std::mem::take(&mut self.name),
            version: line.app_version,
            protocol: line.protocol,
            plugins,
            address,
            connected,
            process: self.process.clone(),
            stderr_task: self.stderr_task.take(),
            config,
            handshake: Some(line),
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
    if config.allowed_protocols.is_empty() {
        return Err(Error::new(
            ErrorKind::Config,
            "allowed_protocols is empty: allow Protocol::Grpc, Protocol::NetRpc or both",
        ));
    }
    Ok(())
}

/// Sets go-plugin's environment on the command, in go-plugin's order.
fn build_command(
    mut command: std::process::Command,
    cookie: &MagicCookie,
    config: &PluginConfig,
    versions: &[u32],
    client_cert_pem: Option<&str>,
) -> tokio::process::Command {
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
        cookie,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environment_follows_go_plugin_precedence() {
        let mut command = std::process::Command::new("/bin/true");
        command
            .env("PLUGWIRE_TEST_OWN", "mine")
            .env("PLUGIN_PROTOCOL_VERSIONS", "99");
        let cookie = MagicCookie::new("K", "V");
        let config = PluginConfig::builder(cookie.clone(), std::process::Command::new("unused"))
            .plugins(1, ["a"])
            .plugins(3, ["b"])
            .skip_host_env(true)
            .build();
        let command = build_command(command, &cookie, &config, &[1, 3], Some("PEM"));
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
}

//! Serving a plugin inside the test that exercises it (go-plugin's `ServeTestConfig`): no
//! process, no handshake line, no stdio capture, no signals; the test gets the reattach
//! configuration a host attaches with, and stops the plugin when it is done.

use plugwire_protocol::Address;
use plugwire_protocol::PluginEnv;
use plugwire_protocol::reattach::ReattachConfig;
use plugwire_runtime::transport::Listener;
use tokio_util::sync::CancellationToken;

use crate::config::ServeConfig;
use crate::serve::{Announce, Mode, ServeError, prepare};

/// How [`serve_test`] serves.
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct TestConfig {
    listener: Option<Listener>,
    env: Option<PluginEnv>,
}

impl TestConfig {
    /// Serve on a new unix socket in the temp dir, as a host would launch the plugin without
    /// any of go-plugin's variables (so the plugin's lowest version, plaintext).
    pub fn new() -> Self {
        TestConfig::default()
    }

    /// Serve on `listener`, which the test made (e.g. `Listener::unix(dir, None)`).
    pub fn listener(mut self, listener: Listener) -> Self {
        self.listener = Some(listener);
        self
    }

    /// The environment the plugin reads as if its host had set it, e.g.
    /// `[("PLUGIN_PROTOCOL_VERSIONS", "2,3")]`. The magic cookie is not checked.
    pub fn env<K, V>(mut self, vars: impl IntoIterator<Item = (K, V)>) -> Self
    where
        K: Into<std::ffi::OsString>,
        V: Into<std::ffi::OsString>,
    {
        self.env = Some(PluginEnv::from_vars(vars));
        self
    }
}

/// A plugin served by [`serve_test`]. Dropping it stops the plugin; [`TestServer::stop`] also
/// waits until it has stopped.
#[derive(Debug)]
#[must_use = "dropping a TestServer stops the plugin"]
pub struct TestServer {
    reattach: ReattachConfig,
    shutdown: CancellationToken,
    task: Option<tokio::task::JoinHandle<Result<(), ServeError>>>,
}

impl TestServer {
    /// What a host attaches with (`Test: true`, so the host never stops it), e.g.
    /// `PluginConfig::reattach(server.reattach_config().clone())` in a plugwire host.
    pub fn reattach_config(&self) -> &ReattachConfig {
        &self.reattach
    }

    /// Cancelled when the plugin shuts down (as when a host asks it to); cancel it to stop it.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Stops the plugin and waits until it has stopped (its socket removed).
    pub async fn stop(mut self) -> Result<(), ServeError> {
        self.shutdown.cancel();
        self.finished().await
    }

    /// Waits until the plugin stops by itself (a host asked it to) or is stopped.
    pub async fn finished(&mut self) -> Result<(), ServeError> {
        match self.task.take() {
            Some(task) => task.await.unwrap_or(Ok(())),
            None => Ok(()),
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Serves `config` inside this process for a test (go-plugin's `ServeTestConfig`), on a
/// runtime task, and returns once it listens.
///
/// ```no_run
/// use plugwire_plugin::{MagicCookie, PluginSet, ServeConfig, TestConfig, serve_test};
/// # fn kv() -> tonic_health::pb::health_server::HealthServer<impl tonic_health::pb::health_server::Health> { tonic_health::server::health_reporter().1 }
///
/// # async fn f() -> Result<(), Box<dyn std::error::Error>> {
/// let config = ServeConfig::builder(MagicCookie::new("BASIC_PLUGIN", "hello"))
///     .plugins(1, PluginSet::new().add("kv_grpc", kv()))
///     .build();
/// let server = serve_test(config, TestConfig::new()).await?;
/// let reattach = server.reattach_config().clone();
/// // ... a host attaches with `PluginConfig::reattach(reattach)` and calls the plugin ...
/// # let _ = reattach;
/// server.stop().await?;
/// # Ok(()) }
/// ```
pub async fn serve_test(config: ServeConfig, test: TestConfig) -> Result<TestServer, ServeError> {
    let env = test
        .env
        .unwrap_or_else(|| PluginEnv::from_vars(std::iter::empty::<(String, String)>()));
    let prepared = prepare(config, &env, test.listener).await?;
    let line = prepared.line();
    let mut reattach = ReattachConfig::new(
        line.protocol,
        line.app_version,
        &Address::new(line.network, &line.address),
        std::process::id(),
    );
    reattach.test = true;
    let shutdown = prepared.shutdown.clone();
    let task = tokio::spawn(prepared.run(Mode {
        announce: Announce::Nothing,
        process: false,
    }));
    Ok(TestServer {
        reattach,
        shutdown,
        task: Some(task),
    })
}

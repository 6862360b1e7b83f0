//! A set of plugins stopped together (go-plugin's `Managed` clients and `CleanupClients`).

use std::sync::{Arc, Mutex};

use crate::config::PluginConfig;
use crate::error::Error;
use crate::kill::KillReport;
use crate::plugin::Plugin;

/// Plugins launched through it are stopped together by [`ManagedPlugins::kill_all`], in
/// parallel; dropping the set (with the last handle of each plugin) SIGKILLs those still running.
///
/// ```no_run
/// use plugwire_host::{MagicCookie, ManagedPlugins, PluginConfig};
///
/// # async fn f() -> Result<(), plugwire_host::Error> {
/// let plugins = ManagedPlugins::new();
/// for path in ["./provider-a", "./provider-b"] {
///     let config = PluginConfig::builder(
///         MagicCookie::new("TF_PLUGIN_MAGIC_COOKIE", "d602bf8f"),
///         std::process::Command::new(path),
///     )
///     .plugins(5, ["provider"])
///     .build();
///     let plugin = plugins.launch(config).await?;
///     plugin.ping().await?;
/// }
/// // At exit (go-plugin's CleanupClients):
/// let reports = plugins.kill_all().await;
/// assert!(reports.iter().all(|r| r.graceful));
/// # Ok(()) }
/// ```
#[derive(Debug, Default)]
pub struct ManagedPlugins {
    plugins: Mutex<Vec<Arc<Plugin>>>,
}

impl ManagedPlugins {
    /// An empty set.
    pub fn new() -> Self {
        ManagedPlugins::default()
    }

    /// Launches a plugin and adds it to the set.
    pub async fn launch(&self, config: PluginConfig) -> Result<Arc<Plugin>, Error> {
        Ok(self.add(Plugin::launch(config).await?))
    }

    /// Adds a running plugin to the set.
    pub fn add(&self, plugin: Plugin) -> Arc<Plugin> {
        let plugin = Arc::new(plugin);
        if let Ok(mut plugins) = self.plugins.lock() {
            plugins.push(plugin.clone());
        }
        plugin
    }

    /// How many plugins the set holds.
    pub fn len(&self) -> usize {
        self.plugins.lock().map(|p| p.len()).unwrap_or(0)
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Stops every plugin in the set at once (each as [`Plugin::kill`]) and empties the set.
    pub async fn kill_all(&self) -> Vec<KillReport> {
        let plugins = self
            .plugins
            .lock()
            .map(|mut p| std::mem::take(&mut *p))
            .unwrap_or_default();
        futures_util::future::join_all(plugins.iter().map(|p| p.kill())).await
    }
}

//! What `inspect` (and `reattach`) found, as data: rendered for people by `render`, or as
//! JSON with `--json`.

use serde::Serialize;

use crate::capture::LogLine;
use crate::cert::CertSummary;
use crate::diagnose::Diagnosis;

/// Everything `inspect` learned about one plugin.
#[derive(Debug, Default, Serialize)]
pub(crate) struct Report {
    pub(crate) plugin: PluginInfo,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) reattach: Option<ReattachInfo>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) handshake: Option<HandshakeInfo>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) certificate: Option<CertificateInfo>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) timings: Option<TimingsInfo>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) health: Option<HealthInfo>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) services: Option<ServicesInfo>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) stdio: Option<StdioInfo>,
    /// The plugin's log lines (its stderr, as the host parsed it).
    pub(crate) logs: Vec<LogLine>,
    /// Lines past the limit that were not kept.
    #[serde(skip_serializing_if = "is_zero")]
    pub(crate) logs_dropped: usize,
    /// What the host warned about (a plugin that did not exit, a missing stdio service, ...).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) host_warnings: Vec<LogLine>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) shutdown: Option<ShutdownInfo>,
    /// Why the launch failed, when it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) failure: Option<Diagnosis>,
    /// Notes about how plugwire went about it (a detected preset, a second run, ...).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) notes: Vec<String>,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// The plugin and what it was offered.
#[derive(Debug, Default, Serialize)]
pub(crate) struct PluginInfo {
    pub(crate) command: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) pid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) cookie: Option<String>,
    /// `--cookie`, `preset terraform`, `detected preset terraform`, `none given`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) cookie_from: Option<String>,
    pub(crate) offered_versions: Vec<u32>,
    pub(crate) auto_mtls: bool,
    pub(crate) multiplex_asked: bool,
}

/// A reattached plugin's configuration.
#[derive(Debug, Default, Serialize)]
pub(crate) struct ReattachInfo {
    pub(crate) name: Option<String>,
    pub(crate) protocol: String,
    pub(crate) protocol_version: u32,
    pub(crate) network: String,
    pub(crate) address: String,
    pub(crate) pid: u32,
    /// Test/debug mode: the plugin ends on its own.
    pub(crate) test: bool,
}

/// The handshake line, field by field.
#[derive(Debug, Default, Serialize)]
pub(crate) struct HandshakeInfo {
    /// The line as go-plugin prints it (the certificate shortened).
    pub(crate) line: String,
    pub(crate) core_version: u32,
    pub(crate) app_version: u32,
    pub(crate) network: String,
    pub(crate) address: String,
    pub(crate) protocol: String,
    /// Whether field 6 carried a certificate.
    pub(crate) certificate: bool,
    /// Field 7: the plugin's answer to a multiplexing request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) multiplex_field: Option<bool>,
    /// `plaintext`, `automtls` or `manual`.
    pub(crate) tls: String,
    /// Whether brokered connections are multiplexed.
    pub(crate) multiplexed: bool,
}

/// The AutoMTLS certificate.
#[derive(Debug, Serialize)]
pub(crate) struct CertificateInfo {
    #[serde(flatten)]
    pub(crate) summary: CertSummary,
    /// Why a Go host would refuse it.
    pub(crate) go_host_objections: Vec<String>,
}

/// How long each phase took, in milliseconds.
#[derive(Debug, Default, Serialize)]
pub(crate) struct TimingsInfo {
    pub(crate) spawn_ms: f64,
    pub(crate) handshake_line_ms: f64,
    pub(crate) connect_ms: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) first_health_ms: Option<f64>,
}

/// The health service's answer for service `plugin`.
#[derive(Debug, Default, Serialize)]
pub(crate) struct HealthInfo {
    /// `SERVING`, `NOT_SERVING`, ... or `error`.
    pub(crate) status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) error: Option<String>,
}

/// What reflection says the plugin serves.
#[derive(Debug, Default, Serialize)]
pub(crate) struct ServicesInfo {
    /// The reflection version that answered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) reflection: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) error: Option<String>,
    /// go-plugin's own services the plugin serves.
    pub(crate) go_plugin: Vec<String>,
    /// The application's services.
    pub(crate) app: Vec<ServiceInfo>,
}

/// One application service.
#[derive(Debug, Default, Serialize)]
pub(crate) struct ServiceInfo {
    pub(crate) name: String,
    pub(crate) methods: Vec<MethodInfo>,
    /// Why its methods are unknown, when they are.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) error: Option<String>,
}

/// One method.
#[derive(Debug, Default, Serialize)]
pub(crate) struct MethodInfo {
    pub(crate) name: String,
    pub(crate) input: String,
    pub(crate) output: String,
    /// `unary`, `server-streaming`, `client-streaming` or `bidi-streaming`.
    pub(crate) kind: String,
}

/// What arrived over `plugin.GRPCStdio`.
#[derive(Debug, Default, Serialize)]
pub(crate) struct StdioInfo {
    pub(crate) stdout_bytes: u64,
    pub(crate) stderr_bytes: u64,
}

/// How the graceful shutdown went.
#[derive(Debug, Default, Serialize)]
pub(crate) struct ShutdownInfo {
    /// The plugin exited by itself after `GRPCController/Shutdown`.
    pub(crate) graceful: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) exit_status: Option<String>,
    pub(crate) took_ms: f64,
    /// For a reattached plugin: left running.
    pub(crate) left_running: bool,
}

/// Milliseconds, for reports.
pub(crate) fn ms(duration: std::time::Duration) -> f64 {
    (duration.as_secs_f64() * 1000.0 * 100.0).round() / 100.0
}

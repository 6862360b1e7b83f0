//! `plugwire inspect`: launch a plugin as a host would, look at everything, shut it down.

pub(crate) mod render;
pub(crate) mod report;

use std::io::Write as _;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use plugwire_host::{Plugin, TlsMode};
use tonic::transport::Channel;

use crate::app::App;
use crate::capture::{Source, StderrCapture};
use crate::cert::CertSummary;
use crate::cli::InspectArgs;
use crate::diagnose;
use crate::dyncall::call::MethodKind;
use crate::dyncall::reflection::ReflectionClient;
use crate::goplugin;
use crate::launch::{CookieSource, Handshake, PluginCommand};
use report::{
    CertificateInfo, HandshakeInfo, HealthInfo, MethodInfo, PluginInfo, Report, ServiceInfo,
    ServicesInfo, ShutdownInfo, StdioInfo, TimingsInfo, ms,
};

/// How long the health check and each reflection exchange may take.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);

/// Runs `plugwire inspect`.
pub(crate) async fn run(args: InspectArgs, app: &App) -> Result<ExitCode, crate::error::CliError> {
    let mut command = PluginCommand::new(&args.command, args.handshake.dir.clone())?;
    let handshake = Handshake::resolve(&args.handshake, &mut command).await?;
    let mut report = Report {
        plugin: plugin_info(&command, &handshake),
        ..Report::default()
    };
    if let CookieSource::Detected(preset) = handshake.cookie_source {
        report.notes.push(format!(
            "no --cookie or --preset given: the executable contains the {preset} preset's cookie, \
             so its handshake is used"
        ));
    }
    let stderr = StderrCapture::default();
    let stdio = StdioCounter::default();
    let config = handshake
        .builder(&command, &stderr)
        .sync_stdout(stdio.writer(0))
        .sync_stderr(stdio.writer(1))
        .build();
    match Plugin::launch(config).await {
        Ok(plugin) => {
            report.plugin.pid = plugin.pid();
            gather(&mut report, &plugin).await;
            let started = Instant::now();
            let killed = plugin.kill().await;
            report.shutdown = Some(ShutdownInfo {
                graceful: killed.graceful,
                exit_status: killed.status.map(diagnose::describe_status),
                took_ms: ms(started.elapsed()),
                left_running: false,
            });
            report.stdio = Some(stdio.info());
        }
        Err(error) => {
            report.failure = Some(diagnose::explain(error, &command, &handshake, &stderr).await);
        }
    }
    let (lines, dropped) = app.logs.take();
    let (plugin_lines, host_lines): (Vec<_>, Vec<_>) =
        lines.into_iter().partition(|l| l.source == Source::Plugin);
    report.logs = plugin_lines;
    report.logs_dropped = dropped;
    // The host's record of a process it killed after a failed launch says nothing new.
    report.host_warnings = host_lines
        .into_iter()
        .filter(|l| report.failure.is_none() || l.message != "plugin process exited")
        .collect();
    let failed = report.failure.is_some();
    let mut out = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &report)?;
        writeln!(out)?;
    } else {
        render::report(&mut out, &report, app.style)?;
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

pub(crate) fn plugin_info(command: &PluginCommand, handshake: &Handshake) -> PluginInfo {
    PluginInfo {
        command: command.display(),
        pid: None,
        cookie: Some(match handshake.cookie_source {
            CookieSource::Missing => "(none)".to_owned(),
            _ => format!("{}={}", handshake.cookie.key(), handshake.cookie.value()),
        }),
        cookie_from: Some(match handshake.cookie_source {
            CookieSource::Flag => "--cookie".to_owned(),
            CookieSource::Preset(p) => format!("preset {p}"),
            CookieSource::Detected(p) => format!("preset {p}, detected in the executable"),
            CookieSource::Missing => "none given".to_owned(),
        }),
        offered_versions: handshake.versions.clone(),
        auto_mtls: handshake.auto_mtls,
        multiplex_asked: handshake.multiplex,
    }
}

/// Fills in what a connected plugin tells: handshake, certificate, timings, health, services.
async fn gather(report: &mut Report, plugin: &Plugin) {
    let negotiated = plugin.negotiated();
    if let Some(line) = plugin.handshake() {
        let certificate = line.server_cert.is_some();
        let text = line_text(line);
        report.handshake = Some(HandshakeInfo {
            line: text,
            core_version: plugwire_protocol::handshake::CORE_PROTOCOL_VERSION,
            app_version: line.app_version,
            network: line.network.to_string(),
            address: line.address.clone(),
            protocol: line.protocol.to_string(),
            certificate,
            multiplex_field: line.multiplex,
            tls: match negotiated.tls {
                TlsMode::Plaintext => "plaintext",
                TlsMode::AutoMtls => "automtls",
                _ => "manual",
            }
            .to_owned(),
            multiplexed: negotiated.multiplexed,
        });
        if let Some(der) = &line.server_cert {
            report.certificate = CertSummary::of(der).ok().map(|summary| CertificateInfo {
                go_host_objections: summary.go_host_objections(SystemTime::now()),
                summary,
            });
        }
    }
    let health_started = Instant::now();
    let channel = plugin.channel().ok();
    let health = match &channel {
        Some(channel) => health_info(channel.clone()).await,
        // netrpc: the host's ping is Control.Ping.
        None => match plugin.ping().await {
            Ok(()) => HealthInfo {
                status: "Control.Ping answers".to_owned(),
                error: None,
            },
            Err(e) => HealthInfo {
                status: "error".to_owned(),
                error: Some(e.to_string()),
            },
        },
    };
    let first_health = health_started.elapsed();
    if let Some(timings) = plugin.timings() {
        report.timings = Some(TimingsInfo {
            spawn_ms: ms(timings.spawn),
            handshake_line_ms: ms(timings.handshake_line),
            connect_ms: ms(timings.connect),
            first_health_ms: health.error.is_none().then(|| ms(first_health)),
        });
    }
    report.health = Some(health);
    if let Some(channel) = channel {
        report.services = Some(services(channel).await);
    }
}

/// The handshake line as the plugin printed it, the certificate (hundreds of base64
/// characters) replaced by `<certificate>`.
pub(crate) fn line_text(line: &plugwire_protocol::HandshakeLine) -> String {
    let mut text = format!(
        "{}|{}|{}|{}|{}|",
        plugwire_protocol::handshake::CORE_PROTOCOL_VERSION,
        line.app_version,
        line.network,
        line.address,
        line.protocol
    );
    if line.server_cert.is_some() {
        text.push_str("<certificate>");
    }
    if let Some(multiplex) = line.multiplex {
        text.push('|');
        text.push_str(if multiplex { "true" } else { "false" });
    }
    text
}

/// The health status of service `plugin`.
pub(crate) async fn health_info(channel: Channel) -> HealthInfo {
    match goplugin::health(channel, "plugin", ANSWER_TIMEOUT).await {
        Ok(status) => HealthInfo {
            status: goplugin::serving_status_name(status).to_owned(),
            error: None,
        },
        Err(status) => HealthInfo {
            status: "error".to_owned(),
            error: Some(crate::dyncall::StatusError::from(status).to_string()),
        },
    }
}

/// The services reflection lists, with the methods of the application's.
pub(crate) async fn services(channel: Channel) -> ServicesInfo {
    let mut client = ReflectionClient::new(channel);
    let names = match client.list_services().await {
        Ok(names) => names,
        Err(error) => {
            return ServicesInfo {
                error: Some(error.to_string()),
                ..ServicesInfo::default()
            };
        }
    };
    let (go_plugin, app): (Vec<String>, Vec<String>) = names
        .into_iter()
        .partition(|name| goplugin::is_go_plugin_service(name));
    let mut info = ServicesInfo {
        reflection: client.version_name().map(str::to_owned),
        go_plugin,
        ..ServicesInfo::default()
    };
    let described = client.descriptors_for(app.iter().map(String::as_str)).await;
    match described {
        Ok(pools) => {
            for (name, pool) in pools {
                info.app.push(match pool {
                    Ok(pool) => service_info(&name, &pool),
                    Err(error) => ServiceInfo {
                        name,
                        error: Some(error.to_string()),
                        ..ServiceInfo::default()
                    },
                });
            }
        }
        Err(error) => {
            info.error = Some(error.to_string());
            info.app = app
                .into_iter()
                .map(|name| ServiceInfo {
                    name,
                    ..ServiceInfo::default()
                })
                .collect();
        }
    }
    info
}

fn service_info(name: &str, pool: &prost_reflect::DescriptorPool) -> ServiceInfo {
    match crate::dyncall::lookup::find_service(pool, name) {
        Ok(service) => ServiceInfo {
            name: name.to_owned(),
            methods: service
                .methods()
                .map(|m| MethodInfo {
                    name: m.name().to_owned(),
                    input: m.input().full_name().to_owned(),
                    output: m.output().full_name().to_owned(),
                    kind: MethodKind::of(&m).as_str().to_owned(),
                })
                .collect(),
            error: None,
        },
        Err(error) => ServiceInfo {
            name: name.to_owned(),
            error: Some(error.to_string()),
            ..ServiceInfo::default()
        },
    }
}

/// Counts what arrives over `plugin.GRPCStdio`.
#[derive(Clone, Debug, Default)]
struct StdioCounter(Arc<[AtomicU64; 2]>);

impl StdioCounter {
    fn writer(&self, index: usize) -> CountingWriter {
        CountingWriter(self.clone(), index)
    }

    fn info(&self) -> StdioInfo {
        StdioInfo {
            stdout_bytes: self.0[0].load(Ordering::Relaxed),
            stderr_bytes: self.0[1].load(Ordering::Relaxed),
        }
    }
}

#[derive(Debug)]
struct CountingWriter(StdioCounter, usize);

impl std::io::Write for CountingWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Some(counter) = self.0.0.get(self.1) {
            counter.fetch_add(buf.len() as u64, Ordering::Relaxed);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

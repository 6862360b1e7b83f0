//! `plugwire reattach`: attach to a plugin that is already running (debug mode, or one whose
//! reattach configuration another host printed), inspect it or call it, and leave it running.

use std::io::Write as _;
use std::process::ExitCode;

use plugwire_host::{Plugin, PluginConfig, ReattachConfig};

use crate::app::App;
use crate::call;
use crate::cli::ReattachArgs;
use crate::inspect::{self, render, report};
use crate::launch::{PLUGIN_NAME, UsageError};

/// Runs `plugwire reattach`.
pub(crate) async fn run(args: ReattachArgs, app: &App) -> Result<ExitCode, crate::error::CliError> {
    let mut words = args.args.iter();
    let json = match &args.from_env {
        Some(var) => std::env::var(var).map_err(|_| {
            UsageError::Other(format!(
                "{var} is not set: run the plugin in debug mode and export what it prints"
            ))
        })?,
        None => words.next().cloned().ok_or_else(|| {
            UsageError::Other(
                "give the reattach configuration as JSON, or --from-env VAR (e.g. \
                 TF_REATTACH_PROVIDERS)"
                    .into(),
            )
        })?,
    };
    let (name, config) = pick(&json, args.name.as_deref())?;
    let method = words.next().cloned();
    let request = words.next().cloned();
    if let Some(extra) = words.next() {
        return Err(UsageError::Other(format!(
            "unexpected {extra:?}: after the configuration come only a method and its JSON request"
        ))
        .into());
    }
    let requests = match &method {
        Some(_) => Some(call::read_requests(request.as_deref()).await?),
        None => None,
    };
    let host_config = PluginConfig::reattach(config.clone())
        .plugins(config.protocol_version, [PLUGIN_NAME])
        .build();
    let plugin = match Plugin::launch(host_config).await {
        Ok(plugin) => plugin,
        Err(error) => {
            let style = app.err_style;
            writeln!(
                std::io::stderr().lock(),
                "{} cannot attach to {} {}: {error}\n  is the plugin still running, and is this \
                 its current configuration? A plugin in debug mode prints a new one each time it \
                 starts.",
                style.red("error"),
                config.addr.network,
                config.addr.string,
            )?;
            return Ok(ExitCode::FAILURE);
        }
    };
    // `plugin` is never killed: dropping it only closes the connection (and for a plugin in
    // test mode not even `kill` would stop it).
    let channel = plugin.channel()?;
    if let (Some(method), Some(requests)) = (method, requests) {
        let outcome = call::call(channel, &args.options, &method, requests).await;
        return call::finish(outcome, app);
    }
    let mut report = report::Report {
        plugin: report::PluginInfo {
            command: "already running".to_owned(),
            pid: Some(config.pid).filter(|p| *p != 0),
            offered_versions: vec![config.protocol_version],
            ..report::PluginInfo::default()
        },
        reattach: Some(report::ReattachInfo {
            name,
            protocol: config.protocol.clone(),
            protocol_version: config.protocol_version,
            network: config.addr.network.clone(),
            address: config.addr.string.clone(),
            pid: config.pid,
            test: config.test,
        }),
        health: Some(inspect::health_info(channel.clone()).await),
        services: Some(inspect::services(channel).await),
        shutdown: Some(report::ShutdownInfo {
            left_running: true,
            ..report::ShutdownInfo::default()
        }),
        ..report::Report::default()
    };
    let (lines, _) = app.logs.take();
    report.host_warnings = lines;
    let mut out = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &report)?;
        writeln!(out)?;
    } else {
        render::report(&mut out, &report, app.style)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The configuration: the JSON itself, or one entry of a `{"name": {...}}` map.
fn pick(json: &str, name: Option<&str>) -> Result<(Option<String>, ReattachConfig), UsageError> {
    if let Ok(config) = ReattachConfig::from_json(json) {
        return Ok((None, config));
    }
    let map = plugwire_protocol::reattach::parse_map(json).map_err(|e| {
        UsageError::Other(format!(
            "not a reattach configuration ({{\"Protocol\":..., \"Addr\":{{...}}}}) nor a map of \
             them: {e}"
        ))
    })?;
    let names: Vec<&str> = map.keys().map(String::as_str).collect();
    let chosen = match name {
        Some(name) => map.get_key_value(name),
        None if map.len() == 1 => map.iter().next(),
        None => None,
    };
    match chosen {
        Some((name, config)) => Ok((Some(name.clone()), config.clone())),
        None => Err(UsageError::Other(match name {
            Some(name) => format!(
                "no plugin {name:?} in the map; it has: {}",
                names.join(", ")
            ),
            None => format!(
                "the map has {} plugins: choose one with --name ({})",
                map.len(),
                names.join(", ")
            ),
        })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ONE: &str = r#"{"Protocol":"grpc","ProtocolVersion":5,"Pid":42,"Test":true,"Addr":{"Network":"unix","String":"/tmp/plugin1"}}"#;

    #[test]
    fn configurations_and_maps() {
        let (name, config) = pick(ONE, None).expect("single");
        assert_eq!((name, config.pid), (None, 42));
        let map = format!(r#"{{"registry.terraform.io/hashicorp/null":{ONE}}}"#);
        let (name, _) = pick(&map, None).expect("one entry");
        assert_eq!(
            name.as_deref(),
            Some("registry.terraform.io/hashicorp/null")
        );
        let two = format!(r#"{{"a":{ONE},"b":{ONE}}}"#);
        assert!(pick(&two, None).is_err());
        assert_eq!(
            pick(&two, Some("b")).expect("named").0.as_deref(),
            Some("b")
        );
        assert!(pick(&two, Some("c")).is_err());
        assert!(pick("nonsense", None).is_err());
    }
}

//! `plugwire presets`: the handshake presets and where each value was read.

use std::io::Write as _;
use std::process::ExitCode;

use serde::Serialize;

use crate::app::App;
use crate::cli::PresetsArgs;
use crate::presets::PRESETS;

#[derive(Serialize)]
struct PresetJson<'a> {
    name: &'a str,
    description: &'a str,
    cookie_key: &'a str,
    cookie_value: &'a str,
    versions: &'a [u32],
    auto_mtls: bool,
    env: Vec<String>,
    source: &'a str,
}

/// Runs `plugwire presets`.
pub(crate) fn run(args: &PresetsArgs, app: &App) -> Result<ExitCode, crate::error::CliError> {
    let mut out = std::io::stdout().lock();
    if args.json {
        let presets: Vec<PresetJson<'_>> = PRESETS
            .iter()
            .map(|p| PresetJson {
                name: p.name,
                description: p.description,
                cookie_key: p.cookie_key,
                cookie_value: p.cookie_value,
                versions: p.versions,
                auto_mtls: p.auto_mtls,
                env: p.env.iter().map(|(k, v)| format!("{k}={v}")).collect(),
                source: p.source,
            })
            .collect();
        serde_json::to_writer_pretty(&mut out, &presets)?;
        writeln!(out)?;
        return Ok(ExitCode::SUCCESS);
    }
    for preset in PRESETS {
        writeln!(
            out,
            "{}  {}",
            app.style.bold(format!("{:<19}", preset.name)),
            preset.description
        )?;
        writeln!(
            out,
            "{:21}cookie    {}={}",
            "", preset.cookie_key, preset.cookie_value
        )?;
        writeln!(
            out,
            "{:21}versions  {}, AutoMTLS {}{}",
            "",
            crate::diagnose::list(preset.versions),
            if preset.auto_mtls { "on" } else { "off" },
            preset
                .env
                .iter()
                .map(|(k, v)| format!(", {k}={v}"))
                .collect::<String>()
        )?;
        writeln!(
            out,
            "{:21}{}",
            "",
            app.style.dim(format!("from {}", preset.source))
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

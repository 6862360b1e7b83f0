//! `plugwire`: inspect, call and conformance-check go-plugin plugins, written in Go or in any
//! other language.
//!
//! - `plugwire inspect -- <plugin command...>` launches a plugin as a go-plugin host would and
//!   shows its handshake, AutoMTLS certificate, phase timings, services, health and logs, then
//!   shuts it down gracefully.
//! - `plugwire call -- <plugin command...> <package.Service/Method> [JSON]` calls one method with
//!   a JSON request built from the plugin's reflection descriptors (or `--proto` files).
//! - `plugwire reattach '<JSON>'` inspects or calls a plugin already running in debug mode.
//! - `plugwire check -- <plugin command...>` runs the conformance checks, each on a fresh run of
//!   the plugin, and exits non-zero when one fails.
//!
//! Everything is built on `plugwire-host`; the checks that need more control than a host has
//! (no cookie, closing the plugin's pipes, signals) start the plugin themselves.

mod app;
mod call;
mod capture;
mod cert;
mod check;
mod cli;
mod diagnose;
mod dyncall;
mod error;
mod goplugin;
mod inspect;
mod launch;
mod presets;
mod presets_cmd;
mod reattach;
mod style;

use std::process::ExitCode;

use clap::Parser as _;

use crate::app::App;
use crate::cli::{Cli, Command};
use crate::error::CliError;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build();
    let result = match runtime {
        Ok(runtime) => runtime.block_on(run(cli)),
        Err(e) => Err(CliError::Io(e)),
    };
    match result {
        Ok(code) => code,
        Err(error) => report(error),
    }
}

async fn run(cli: Cli) -> Result<ExitCode, CliError> {
    let app = App::init(cli.color, cli.verbose);
    match cli.command {
        Command::Inspect(args) => inspect::run(args, &app).await,
        Command::Call(args) => call::run(args, &app).await,
        Command::Reattach(args) => reattach::run(args, &app).await,
        Command::Check(args) => check::run(args, &app).await,
        Command::Presets(args) => presets_cmd::run(&args, &app),
    }
}

/// Prints a top-level error; usage errors exit 2, a closed stdout (`plugwire ... | head`) 0.
fn report(error: CliError) -> ExitCode {
    let broken_pipe = match &error {
        CliError::Io(e) => e.kind() == std::io::ErrorKind::BrokenPipe,
        CliError::Json(e) => e.io_error_kind() == Some(std::io::ErrorKind::BrokenPipe),
        _ => false,
    };
    if broken_pipe {
        return ExitCode::SUCCESS;
    }
    let usage = error.is_usage();
    let error = anyhow::Error::new(error);
    let style = style::Style::stderr(style::ColorChoice::Auto);
    let _ = std::io::Write::write_fmt(
        &mut std::io::stderr().lock(),
        format_args!("{} {error:#}\n", style.red("plugwire:")),
    );
    if usage {
        ExitCode::from(2)
    } else {
        ExitCode::FAILURE
    }
}

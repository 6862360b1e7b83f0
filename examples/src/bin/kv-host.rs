//! A drop-in replacement for go-plugin's `examples/grpc` host:
//! `KV_PROTO=grpc|netrpc KV_PLUGIN=<command> kv-host put KEY VALUE` and `... kv-host get KEY`.
//! `KV_PLUGIN` is run with `sh -c`; the plugin may speak either protocol, and `KV_PROTO` picks the
//! plugin to dispense, `kv_grpc` (gRPC) or `kv` (net/rpc), as in the Go host.
//! `--auto-mtls` before the subcommand turns on go-plugin's AutoMTLS.

use std::ffi::OsString;
use std::io::Write as _;
use std::os::unix::ffi::OsStringExt as _;
use std::process::ExitCode;

use anyhow::{Context, bail};
use plugwire_examples::kv::{KvStore, PLUGIN_GRPC, PLUGIN_NETRPC};
use plugwire_host::{Plugin, PluginConfig, Protocol};

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    plugwire_examples::init_logging("KV_LOG");
    // Arguments as bytes: the Go host stores any bytes as a value.
    let args: Vec<Vec<u8>> = std::env::args_os()
        .skip(1)
        .map(OsString::into_vec)
        .collect();
    #[allow(clippy::print_stdout)] // the CLI's output, as go-plugin's example prints it
    match run(&args).await {
        Ok(Outcome::Done) => ExitCode::SUCCESS,
        Ok(Outcome::NoProto) => {
            println!("must set KV_PROTO to netrpc or grpc");
            ExitCode::FAILURE
        }
        Err(e) => {
            println!("Error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// How a run ended, when not with an error.
enum Outcome {
    Done,
    /// `KV_PROTO` is neither `netrpc` nor `grpc`.
    NoProto,
}

async fn run(mut args: &[Vec<u8>]) -> anyhow::Result<Outcome> {
    let auto_mtls = args.first().is_some_and(|a| a == b"--auto-mtls");
    if auto_mtls {
        args = &args[1..];
    }
    let command = std::env::var("KV_PLUGIN").context("set KV_PLUGIN to the plugin command")?;
    // The Go host's `shared.PluginMap`: both plugins, either protocol.
    let config = PluginConfig::builder(
        plugwire_examples::cookie(),
        plugwire_examples::shell_command(&command),
    )
    .plugins(1, [PLUGIN_GRPC, PLUGIN_NETRPC])
    .allowed_protocols([Protocol::NetRpc, Protocol::Grpc])
    .auto_mtls(auto_mtls)
    .build();
    let plugin = Plugin::launch(config).await?;
    // As in the Go host, `KV_PROTO` is looked at once the plugin runs.
    let kind = match std::env::var("KV_PROTO").as_deref() {
        Ok("netrpc") => Some((PLUGIN_NETRPC, Protocol::NetRpc)),
        Ok("grpc") => Some((PLUGIN_GRPC, Protocol::Grpc)),
        _ => None,
    };
    let result = match kind {
        Some((name, kind)) => call(&plugin, name, kind, args)
            .await
            .map(|()| Outcome::Done),
        // The Go host exits here without killing the plugin, which keeps running.
        None => Ok(Outcome::NoProto),
    };
    plugin.kill().await;
    result
}

async fn call(plugin: &Plugin, name: &str, kind: Protocol, args: &[Vec<u8>]) -> anyhow::Result<()> {
    let mut kv = KvStore::dispense(plugin, name, kind).await?;
    let text = |arg: &[u8]| {
        String::from_utf8(arg.to_vec()).with_context(|| format!("{arg:?} is not UTF-8"))
    };
    match args {
        [op, key] if op == b"get" => {
            let value = kv.get(&text(key)?).await?;
            let mut stdout = std::io::stdout().lock();
            stdout.write_all(&value)?;
            stdout.write_all(b"\n")?;
        }
        [op, key, value] if op == b"put" => kv.put(&text(key)?, value).await?,
        [op, ..] => bail!(
            "please only use 'get' or 'put', given: {:?}",
            String::from_utf8_lossy(op)
        ),
        [] => bail!("usage: kv-host get KEY | kv-host put KEY VALUE"),
    }
    Ok(())
}

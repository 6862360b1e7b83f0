//! A drop-in replacement for go-plugin's `examples/negotiated` host: runs `./kv-plugin` (the
//! example's plugin path, relative to the working directory; no override, as in Go) offering
//! app-protocol version 2 with the net/rpc KV plugin (`KV_PROTO=netrpc`) or version 3 with the
//! gRPC one (`KV_PROTO=grpc`), then `negotiated-host put KEY VALUE` or `negotiated-host get KEY`.
//! `KV_LOG=negotiated_host=debug` shows the version and protocol the plugin picked.

use std::ffi::OsString;
use std::io::Write as _;
use std::os::unix::ffi::OsStringExt as _;
use std::process::ExitCode;

use anyhow::Context as _;
use plugwire_examples::kv::{KvStore, PLUGIN_NETRPC};
use plugwire_host::{Plugin, PluginConfig, Protocol};

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    plugwire_examples::init_logging("KV_LOG");
    // Both versions are served by the example's plugin under the name "kv"; the host offers one.
    let (version, kind) = match std::env::var("KV_PROTO").as_deref() {
        Ok("netrpc") => (2, Protocol::NetRpc),
        Ok("grpc") => (3, Protocol::Grpc),
        _ => return fail("must set KV_PROTO to netrpc or grpc"),
    };
    let args: Vec<Vec<u8>> = std::env::args_os()
        .skip(1)
        .map(OsString::into_vec)
        .collect();
    let config = PluginConfig::builder(
        plugwire_examples::cookie(),
        std::process::Command::new("./kv-plugin"),
    )
    .plugins(version, [PLUGIN_NETRPC])
    .allowed_protocols([Protocol::NetRpc, Protocol::Grpc])
    .build();
    let plugin = match Plugin::launch(config).await {
        Ok(plugin) => plugin,
        Err(e) => return fail(&format!("Error: {e}")),
    };
    tracing::debug!(
        version = plugin.version(),
        protocol = plugin.protocol().as_str(),
        "negotiated"
    );
    let result = call(&plugin, kind, &args).await;
    // The Go host exits on errors without killing the plugin, which keeps running.
    plugin.kill().await;
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => fail("Please only use 'get' or 'put'"),
        Err(e) => fail(&format!("Error: {e:#}")),
    }
}

/// Prints `text` on stdout and exits 1, as the Go host does.
fn fail(text: &str) -> ExitCode {
    #[allow(clippy::print_stdout)] // the CLI's output, as go-plugin's example prints it
    {
        println!("{text}");
    }
    ExitCode::FAILURE
}

/// Runs the subcommand; `false` for an unknown one.
async fn call(plugin: &Plugin, kind: Protocol, args: &[Vec<u8>]) -> anyhow::Result<bool> {
    let mut kv = KvStore::dispense(plugin, PLUGIN_NETRPC, kind).await?;
    let text = |arg: &[u8]| {
        String::from_utf8(arg.to_vec()).with_context(|| format!("{arg:?} is not UTF-8"))
    };
    match args {
        [op, key, ..] if op == b"get" => {
            let value = kv.get(&text(key)?).await?;
            let mut stdout = std::io::stdout().lock();
            stdout.write_all(&value)?;
            stdout.write_all(b"\n")?;
        }
        [op, key, value, ..] if op == b"put" => kv.put(&text(key)?, value).await?,
        _ => return Ok(false),
    }
    Ok(true)
}

//! A drop-in replacement for go-plugin's `examples/grpc` host:
//! `KV_PLUGIN=<command> kv-host put KEY VALUE` and `KV_PLUGIN=<command> kv-host get KEY`.
//! `--auto-mtls` before the subcommand turns on go-plugin's AutoMTLS.

use std::io::Write as _;
use std::process::ExitCode;

use anyhow::{Context, bail};
use plugwire_examples::pb::kv::kv_client::KvClient;
use plugwire_examples::pb::kv::{GetRequest, PutRequest};
use plugwire_host::{Plugin, PluginConfig};

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    plugwire_examples::init_logging("KV_LOG");
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            #[allow(clippy::print_stdout)] // the CLI's output, as go-plugin's example prints it
            {
                println!("Error: {e:#}");
            }
            ExitCode::FAILURE
        }
    }
}

async fn run(mut args: &[String]) -> anyhow::Result<()> {
    let auto_mtls = args.first().is_some_and(|a| a == "--auto-mtls");
    if auto_mtls {
        args = &args[1..];
    }
    let command = std::env::var("KV_PLUGIN").context("set KV_PLUGIN to the plugin command")?;
    if let Ok(proto) = std::env::var("KV_PROTO")
        && proto != "grpc"
    {
        bail!("KV_PROTO={proto:?}: this host speaks grpc only");
    }
    let config = PluginConfig::builder(
        plugwire_examples::cookie(),
        plugwire_examples::shell_command(&command),
    )
    .plugins(1, ["kv_grpc"])
    .auto_mtls(auto_mtls)
    .build();
    let plugin = Plugin::launch(config).await?;
    let result = call(&plugin, args).await;
    plugin.kill().await;
    result
}

async fn call(plugin: &Plugin, args: &[String]) -> anyhow::Result<()> {
    let mut kv = plugin.dispense("kv_grpc", KvClient::new)?;
    match args {
        [op, key] if op == "get" => {
            let value = kv
                .get(GetRequest { key: key.clone() })
                .await?
                .into_inner()
                .value;
            let mut stdout = std::io::stdout().lock();
            stdout.write_all(&value)?;
            stdout.write_all(b"\n")?;
        }
        [op, key, value] if op == "put" => {
            kv.put(PutRequest {
                key: key.clone(),
                value: value.clone().into_bytes(),
            })
            .await?;
        }
        [op, ..] => bail!("please only use 'get' or 'put', given: {op:?}"),
        [] => bail!("usage: kv-host get KEY | kv-host put KEY VALUE"),
    }
    Ok(())
}

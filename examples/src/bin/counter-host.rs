//! A drop-in replacement for go-plugin's `examples/bidirectional` host:
//! `COUNTER_PLUGIN=<command> counter-host put KEY N` adds N to KEY through the plugin, which
//! calls back into this host's `AddHelper` through the broker; `... get KEY` prints the number.
//! `--mux` (broker multiplexing) and `--auto-mtls` go before the subcommand.

use std::process::ExitCode;

use anyhow::{Context, bail};
use plugwire_examples::pb::counter::add_helper_server::{AddHelper, AddHelperServer};
use plugwire_examples::pb::counter::counter_client::CounterClient;
use plugwire_examples::pb::counter::{GetRequest, PutRequest, SumRequest, SumResponse};
use plugwire_host::{Plugin, PluginConfig};
use tonic::service::Routes;
use tonic::{Request, Response, Status};

struct Adder;

#[tonic::async_trait]
impl AddHelper for Adder {
    async fn sum(&self, request: Request<SumRequest>) -> Result<Response<SumResponse>, Status> {
        let SumRequest { a, b } = request.into_inner();
        let r = a
            .checked_add(b)
            .ok_or_else(|| Status::out_of_range("the sum overflows"))?;
        Ok(Response::new(SumResponse { r }))
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    plugwire_examples::init_logging("COUNTER_LOG");
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
    let (mut mux, mut auto_mtls) = (false, false);
    while let Some(flag) = args.first() {
        match flag.as_str() {
            "--mux" => mux = true,
            "--auto-mtls" => auto_mtls = true,
            _ => break,
        }
        args = &args[1..];
    }
    let command =
        std::env::var("COUNTER_PLUGIN").context("set COUNTER_PLUGIN to the plugin command")?;
    let config = PluginConfig::builder(
        plugwire_examples::cookie(),
        plugwire_examples::shell_command(&command),
    )
    .plugins(1, ["counter"])
    .multiplex(mux)
    .auto_mtls(auto_mtls)
    .build();
    let plugin = Plugin::launch(config).await?;
    let result = call(&plugin, args).await;
    plugin.kill().await;
    result
}

async fn call(plugin: &Plugin, args: &[String]) -> anyhow::Result<()> {
    let mut counter = plugin.dispense("counter", CounterClient::new)?;
    match args {
        [op, key] if op == "get" => {
            let value = counter
                .get(GetRequest { key: key.clone() })
                .await?
                .into_inner()
                .value;
            #[allow(clippy::print_stdout)] // the CLI's output
            {
                println!("{value}");
            }
        }
        [op, key, value] if op == "put" => {
            let value: i64 = value
                .parse()
                .with_context(|| format!("{value:?} is not a number"))?;
            // Serve AddHelper to the plugin for the duration of the call.
            let broker = plugin.broker()?;
            let id = broker.next_id();
            let helper = broker
                .accept_and_serve(id, Routes::new(AddHelperServer::new(Adder)))
                .await?;
            let put = counter
                .put(PutRequest {
                    add_server: id,
                    key: key.clone(),
                    value,
                })
                .await;
            helper.stop().await;
            put?;
        }
        _ => bail!("Please only use 'get' or 'put'"),
    }
    Ok(())
}

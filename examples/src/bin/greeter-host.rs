//! A drop-in replacement for go-plugin's `examples/basic` host: runs `./plugin/greeter` (the
//! basic example's plugin path, relative to the working directory; no override, as in Go),
//! dispenses `greeter` over netrpc and prints its greeting. Like the Go host's hclog logger, it
//! logs at debug level on stdout, the plugin's log lines included.

use std::process::ExitCode;

use plugwire_host::netrpc::gobwire::Interface;
use plugwire_host::{Plugin, PluginConfig, Protocol};

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    plugwire_examples::init_logging_to("debug", std::io::stdout);
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // The Go host's `log.Fatal(err)`.
            eprintln!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> anyhow::Result<()> {
    // No `AllowedProtocols` in the Go host: go-plugin's default, netrpc only.
    let config = PluginConfig::builder(
        plugwire_examples::cookie(),
        std::process::Command::new("./plugin/greeter"),
    )
    .plugins(1, ["greeter"])
    .allowed_protocols([Protocol::NetRpc])
    .build();
    let plugin = Plugin::launch(config).await?;
    let result = greet(&plugin).await;
    plugin.kill().await;
    result
}

async fn greet(plugin: &Plugin) -> anyhow::Result<()> {
    let greeter = plugin.netrpc()?.dispense("greeter").await?;
    // `GreeterRPC.Greet`: the argument is `new(interface{})`, a nil interface.
    let greeting: String = greeter.call("Plugin.Greet", &None::<Interface>).await?;
    #[allow(clippy::print_stdout)] // the program's output, as the Go host prints it
    {
        println!("{greeting}");
    }
    Ok(())
}

//! A drop-in replacement for go-plugin's `examples/basic/plugin` (`./plugin/greeter`): the netrpc
//! plugin `greeter`, whose `Greet` answers `Hello!`, logging at debug level as the Go plugin's
//! hclog logger does.

use std::process::ExitCode;

use plugwire_plugin::netrpc::gobwire::Interface;
use plugwire_plugin::netrpc::{NetRpcPluginSet, Server, ServiceError};
use plugwire_plugin::{ServeConfig, serve};

/// go-plugin's `GreeterRPCServer` around `GreeterHello`.
fn greeter() -> Server {
    let mut server = Server::new();
    // `Greet(args interface{}, resp *string)`: the host sends a nil interface.
    server.register("Plugin.Greet", |_: Option<Interface>| async {
        tracing::debug!("message from GreeterHello.Greet");
        Ok::<_, ServiceError>("Hello!".to_owned())
    });
    server
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    // hclog JSON on stderr from here on (serve would install it only when it starts), so the
    // first line reaches the host as the Go plugin's does.
    let _ = plugwire_plugin::log::init();
    tracing::debug!(foo = "bar", "message from plugin");
    let config = ServeConfig::builder(plugwire_examples::cookie())
        .netrpc_plugins(1, NetRpcPluginSet::new().add("greeter", |_| greeter()))
        .build();
    match serve(config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("greeter-plugin: {e}");
            ExitCode::FAILURE
        }
    }
}

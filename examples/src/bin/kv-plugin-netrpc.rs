//! A drop-in replacement for go-plugin's `examples/grpc/plugin-go-netrpc`: the KV store as the
//! net/rpc plugin `kv` (`KV_PROTO=netrpc` in the hosts), keeping each value in the file
//! `kv_<key>` of its working directory.

use std::process::ExitCode;

use plugwire_examples::kv::{FileStore, PLUGIN_NETRPC};
use plugwire_plugin::netrpc::NetRpcPluginSet;
use plugwire_plugin::{ServeConfig, serve};

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let store = FileStore::new("\n\nWritten from plugwire kv-plugin-netrpc", "");
    let config = ServeConfig::builder(plugwire_examples::cookie())
        .netrpc_plugins(
            1,
            NetRpcPluginSet::new().add(PLUGIN_NETRPC, move |_| store.netrpc_server()),
        )
        .build();
    match serve(config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kv-plugin-netrpc: {e}");
            ExitCode::FAILURE
        }
    }
}

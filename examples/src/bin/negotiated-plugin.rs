//! A drop-in replacement for go-plugin's `examples/negotiated/plugin-go` (`./kv-plugin`): the KV
//! store `kv` for app-protocol version 2 over net/rpc and version 3 over gRPC; the host's offer
//! decides. Each version signs what it writes and what it reads, so the output shows which one
//! served each call.

use std::process::ExitCode;

use plugwire_examples::kv::{FileStore, PLUGIN_NETRPC};
use plugwire_examples::pb::kv::kv_server::KvServer;
use plugwire_plugin::netrpc::NetRpcPluginSet;
use plugwire_plugin::{PluginSet, ServeConfig, serve};

/// The store of one version, as the Go plugin's `KV` (2) and `KVGRPC` (3) sign their data.
fn store(version: u32) -> FileStore {
    FileStore::new(
        format!("\n\nWritten from plugwire plugin version {version}\n"),
        format!("Read by plugwire plugin version {version}\n"),
    )
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let v2 = store(2);
    let config = ServeConfig::builder(plugwire_examples::cookie())
        // Version 2 only uses net/rpc.
        .netrpc_plugins(
            2,
            NetRpcPluginSet::new().add(PLUGIN_NETRPC, move |_| v2.netrpc_server()),
        )
        // Version 3 only uses gRPC.
        .plugins(
            3,
            PluginSet::new().add(PLUGIN_NETRPC, KvServer::new(store(3))),
        )
        .reflection_descriptors(plugwire_examples::pb::kv::FILE_DESCRIPTOR_SET)
        .build();
    match serve(config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("negotiated-plugin: {e}");
            ExitCode::FAILURE
        }
    }
}

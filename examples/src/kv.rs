//! go-plugin's `examples/grpc/shared` package in Rust, shared by the KV hosts and plugins
//! (`kv-host`, `kv-plugin-netrpc`, `negotiated-host`, `negotiated-plugin`): the plugin names, the
//! net/rpc calls (`Plugin.Put` takes Go's `map[string]interface{}`), a host-side client over
//! either protocol, and the `kv_<key>` file store the example plugins keep.

use std::collections::BTreeMap;

use anyhow::bail;
use gobwire::{Interface, Type, Value};
use plugwire_host::{Channel, Plugin, Protocol};
use tonic::{Request, Response, Status};

use crate::pb::kv::kv_client::KvClient;
use crate::pb::kv::kv_server::Kv;
use crate::pb::kv::{Empty, GetRequest, GetResponse, PutRequest};

/// `shared.PluginNetRPC`: the KV plugin served over net/rpc.
pub const PLUGIN_NETRPC: &str = "kv";

/// `shared.PluginGRPC`: the KV plugin served over gRPC.
pub const PLUGIN_GRPC: &str = "kv_grpc";

/// `Plugin.Put`'s argument, Go's `map[string]interface{}` (gob sends the map type itself, so
/// a Go plugin's `RPCServer.Put` decodes it as it does a Go host's).
pub type PutArgs = BTreeMap<String, Option<Interface>>;

/// `map[string]interface{}{"key": key, "value": value}`, as go-plugin's `RPCClient.Put` sends it:
/// a `string` and a `[]byte`.
pub fn put_args(key: &str, value: &[u8]) -> PutArgs {
    let bytes = Interface {
        name: gobwire::names::BYTES.into(),
        ty: Type::Bytes,
        value: Value::Bytes(value.to_vec()),
    };
    BTreeMap::from([
        ("key".to_owned(), Some(Interface::string(key))),
        ("value".to_owned(), Some(bytes)),
    ])
}

/// The key (`args["key"].(string)`) and value (`args["value"].([]byte)`) of `Plugin.Put`'s
/// argument. Go's server panics on a wrong type; this says which entry is wrong.
pub fn parse_put_args(args: &PutArgs) -> Result<(String, Vec<u8>), String> {
    let value = |name: &str| args.get(name).and_then(Option::as_ref).map(|i| &i.value);
    let Some(Value::String(key)) = value("key") else {
        return Err("Plugin.Put: args[\"key\"] is not a string".into());
    };
    let Some(Value::Bytes(bytes)) = value("value") else {
        return Err("Plugin.Put: args[\"value\"] is not a []byte".into());
    };
    Ok((key.clone(), bytes.clone()))
}

/// A dispensed KV plugin (go-plugin's `shared.KV`): `GRPCClient` or `RPCClient`.
pub enum KvStore {
    /// The `KV` gRPC service.
    Grpc(KvClient<Channel>),
    /// The net/rpc `Plugin.Put` and `Plugin.Get` methods.
    NetRpc(plugwire_host::netrpc::Client),
}

impl KvStore {
    /// Dispenses plugin `name`, which the host's plugin map declares as a plugin of protocol
    /// `kind` (go-plugin's `KVPlugin` for netrpc, `KVGRPCPlugin` for gRPC), over the protocol
    /// the plugin negotiated, with go-plugin's errors for a mismatch.
    ///
    /// # Errors
    ///
    /// An unknown plugin (the host's or the plugin's `unknown plugin type`), a netrpc plugin
    /// type on a gRPC connection (go-plugin's `plugin "kv" doesn't support gRPC`) or the reverse,
    /// and a failed dispense.
    pub async fn dispense(plugin: &Plugin, name: &str, kind: Protocol) -> anyhow::Result<Self> {
        match plugin.protocol() {
            Protocol::NetRpc => {
                let client = plugin.netrpc()?.dispense(name).await?;
                if kind != Protocol::NetRpc {
                    // go-plugin's netrpc client would call the gRPC plugin's nil `Client`.
                    bail!("plugin {name:?} doesn't support netrpc");
                }
                Ok(KvStore::NetRpc(client))
            }
            _ => {
                if kind != Protocol::Grpc {
                    // Checked after the name, as go-plugin's `GRPCClient.Dispense` does.
                    plugin.dispense(name, KvClient::new)?;
                    bail!("plugin {name:?} doesn't support gRPC");
                }
                Ok(KvStore::Grpc(plugin.dispense(name, KvClient::new)?))
            }
        }
    }

    /// `Put(key, value)`.
    ///
    /// # Errors
    ///
    /// The plugin's error, or a failed call.
    pub async fn put(&mut self, key: &str, value: &[u8]) -> anyhow::Result<()> {
        match self {
            KvStore::Grpc(kv) => {
                kv.put(PutRequest {
                    key: key.to_owned(),
                    value: value.to_vec().into(),
                })
                .await?;
            }
            KvStore::NetRpc(client) => {
                // `var resp interface{}`: the plugin replies with a nil interface.
                client
                    .call::<_, Option<Interface>>("Plugin.Put", &put_args(key, value))
                    .await?;
            }
        }
        Ok(())
    }

    /// `Get(key)`.
    ///
    /// # Errors
    ///
    /// The plugin's error, or a failed call.
    pub async fn get(&mut self, key: &str) -> anyhow::Result<Vec<u8>> {
        Ok(match self {
            KvStore::Grpc(kv) => kv
                .get(GetRequest {
                    key: key.to_owned(),
                })
                .await?
                .into_inner()
                .value
                .into(),
            KvStore::NetRpc(client) => client.call::<_, Vec<u8>>("Plugin.Get", key).await?,
        })
    }
}

/// The store go-plugin's example KV plugins keep: the value of `key` in the file `kv_<key>` of
/// the working directory, with a signature appended when it is written (`written`, e.g.
/// `"\n\nWritten from plugin-go-netrpc"`) and another when it is read (`read`, empty for most).
/// Errors are Go's `*PathError` texts (`open kv_x: no such file or directory`).
#[derive(Clone, Debug)]
pub struct FileStore {
    written: String,
    read: String,
}

impl FileStore {
    /// A store that appends `written` to each value it writes and `read` to each it reads.
    pub fn new(written: impl Into<String>, read: impl Into<String>) -> Self {
        FileStore {
            written: written.into(),
            read: read.into(),
        }
    }

    /// Writes `value` and the signature to `kv_<key>` (Go's `os.WriteFile(.., 0644)`).
    ///
    /// # Errors
    ///
    /// Go's text of the failed open or write.
    pub async fn put(&self, key: &str, value: &[u8]) -> Result<(), String> {
        let mut content = value.to_vec();
        content.extend_from_slice(self.written.as_bytes());
        crate::write_file(&format!("kv_{key}"), &content).await
    }

    /// The content of `kv_<key>` and the read signature (Go's `os.ReadFile`).
    ///
    /// # Errors
    ///
    /// Go's text of the failed open or read.
    pub async fn get(&self, key: &str) -> Result<Vec<u8>, String> {
        let mut content = crate::read_file(&format!("kv_{key}")).await?;
        content.extend_from_slice(self.read.as_bytes());
        Ok(content)
    }

    /// go-plugin's `shared.RPCServer` over this store: `Plugin.Put` and `Plugin.Get`.
    pub fn netrpc_server(&self) -> plugwire_plugin::netrpc::Server {
        use plugwire_plugin::netrpc::ServiceError;
        let mut server = plugwire_plugin::netrpc::Server::new();
        let store = self.clone();
        server.register("Plugin.Put", move |args: PutArgs| {
            let store = store.clone();
            async move {
                let (key, value) = parse_put_args(&args).map_err(ServiceError)?;
                store.put(&key, &value).await.map_err(ServiceError)?;
                // `resp *interface{}` stays nil.
                Ok::<_, ServiceError>(None::<Interface>)
            }
        });
        let store = self.clone();
        server.register("Plugin.Get", move |key: String| {
            let store = store.clone();
            async move { store.get(&key).await.map_err(ServiceError) }
        });
        server
    }
}

/// go-plugin's `shared.GRPCServer` over the store; errors are `Unknown`, as grpc-go makes a
/// plain Go error.
#[tonic::async_trait]
impl Kv for FileStore {
    async fn get(&self, request: Request<GetRequest>) -> Result<Response<GetResponse>, Status> {
        let value = FileStore::get(self, &request.into_inner().key)
            .await
            .map_err(Status::unknown)?;
        Ok(Response::new(GetResponse {
            value: value.into(),
        }))
    }

    async fn put(&self, request: Request<PutRequest>) -> Result<Response<Empty>, Status> {
        let PutRequest { key, value } = request.into_inner();
        FileStore::put(self, &key, &value)
            .await
            .map_err(Status::unknown)?;
        Ok(Response::new(Empty {}))
    }
}

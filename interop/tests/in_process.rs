//! A plugin served inside the test process (`serve_test`, go-plugin's `ServeTestConfig`) and a
//! plugwire host attached to it: what plugin authors do to test a plugin without spawning it.
//! Also the hooks go-plugin users reach for: the host's `Endpoint`, the plugin's `Server` and a
//! tower layer around every service, and the plugin's code learning that the host asked it to
//! shut down. No Go here.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use plugwire_examples::pb::kv::kv_client::KvClient;
use plugwire_examples::pb::kv::kv_server::{Kv, KvServer};
use plugwire_examples::pb::kv::{Empty, GetRequest, GetResponse, PutRequest};
use plugwire_host::{Plugin, PluginConfig, ReattachConfig};
use plugwire_plugin::{
    CancellationToken, MagicCookie, PluginSet, ServeConfig, TestConfig, TestServer, serve_test,
};
use tonic::{Request, Response, Status};

#[derive(Default)]
struct MemoryKv(Mutex<HashMap<String, bytes::Bytes>>);

#[tonic::async_trait]
impl Kv for MemoryKv {
    async fn get(&self, request: Request<GetRequest>) -> Result<Response<GetResponse>, Status> {
        let key = request.into_inner().key;
        let value = self
            .0
            .lock()
            .map_err(|_| Status::internal("poisoned"))?
            .get(&key)
            .cloned()
            .ok_or_else(|| Status::not_found(key))?;
        Ok(Response::new(GetResponse { value }))
    }

    async fn put(&self, request: Request<PutRequest>) -> Result<Response<Empty>, Status> {
        let PutRequest { key, value } = request.into_inner();
        self.0
            .lock()
            .map_err(|_| Status::internal("poisoned"))?
            .insert(key, value);
        Ok(Response::new(Empty {}))
    }
}

/// Counts what passes through a hook.
#[derive(Clone, Default)]
struct Count(Arc<AtomicUsize>);

impl Count {
    fn bump(&self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
    fn get(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

/// A tower layer counting the requests the plugin serves.
#[derive(Clone)]
struct CountRequests(Count);

impl<S> tower::Layer<S> for CountRequests {
    type Service = Counted<S>;
    fn layer(&self, inner: S) -> Counted<S> {
        Counted(inner, self.0.clone())
    }
}

#[derive(Clone)]
struct Counted<S>(S, Count);

impl<S, R> tower::Service<R> for Counted<S>
where
    S: tower::Service<R>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;
    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), S::Error>> {
        self.0.poll_ready(cx)
    }
    fn call(&mut self, request: R) -> S::Future {
        self.1.bump();
        self.0.call(request)
    }
}

struct Hooks {
    server: Count,
    layer: Count,
}

async fn serve(shutdown: Option<CancellationToken>) -> (TestServer, Hooks) {
    let hooks = Hooks {
        server: Count::default(),
        layer: Count::default(),
    };
    let server_count = hooks.server.clone();
    let mut config = ServeConfig::builder(MagicCookie::new("BASIC_PLUGIN", "hello"))
        .plugins(
            1,
            PluginSet::new().add("kv_grpc", KvServer::new(MemoryKv::default())),
        )
        .grpc_server(move |server| {
            server_count.bump();
            server.timeout(Duration::from_secs(30))
        })
        .layer(CountRequests(hooks.layer.clone()));
    if let Some(token) = shutdown {
        config = config.shutdown(token);
    }
    let server = serve_test(config.build(), TestConfig::new())
        .await
        .expect("serves in process");
    (server, hooks)
}

fn attach(reattach: ReattachConfig, endpoint: Count) -> PluginConfig {
    PluginConfig::reattach(reattach)
        .plugins(1, ["kv_grpc"])
        .grpc_endpoint(move |e| {
            endpoint.bump();
            e.timeout(Duration::from_secs(30))
        })
        .build()
}

fn socket_of(reattach: &ReattachConfig) -> std::path::PathBuf {
    std::path::PathBuf::from(&reattach.addr.string)
}

/// The test serves, a host attaches and calls; the host leaves a test-mode plugin running; the
/// test stops it and its socket goes. Every hook saw the traffic.
#[tokio::test]
async fn a_host_attaches_to_a_plugin_served_by_the_test() {
    let (server, hooks) = serve(None).await;
    let reattach = server.reattach_config().clone();
    assert!(reattach.test, "test mode: the host never stops it");
    assert_eq!(reattach.pid, std::process::id());
    let endpoint = Count::default();
    let plugin = Plugin::launch(attach(reattach.clone(), endpoint.clone()))
        .await
        .expect("attaches");
    let mut kv = plugin.dispense("kv_grpc", KvClient::new).expect("dispense");
    kv.put(PutRequest {
        key: "k".into(),
        value: bytes::Bytes::from_static(b"in process"),
    })
    .await
    .expect("put");
    let got = kv.get(GetRequest { key: "k".into() }).await.expect("get");
    assert_eq!(got.into_inner().value, &b"in process"[..]);
    let report = plugin.kill().await;
    assert!(!report.graceful, "a test-mode plugin is left alone");
    plugin
        .ping()
        .await
        .expect("still serving after the host's kill");
    assert!(endpoint.get() >= 1, "the host's Endpoint hook was used");
    assert!(hooks.server.get() >= 1, "the plugin's Server hook was used");
    assert!(hooks.layer.get() >= 2, "the layer saw the calls");
    let socket = socket_of(&reattach);
    assert!(socket.exists());
    tokio::time::timeout(Duration::from_secs(10), server.stop())
        .await
        .expect("stops in time")
        .expect("stops cleanly");
    assert!(!socket.exists(), "the socket is removed when it stops");
}

/// A host that owns the plugin (not test mode) asks it to shut down: the plugin's code sees its
/// shutdown token cancelled, serving ends, and the host sees a graceful exit.
#[tokio::test]
async fn the_plugin_learns_that_the_host_asked_it_to_shut_down() {
    let token = CancellationToken::new();
    let (mut server, _hooks) = serve(Some(token.clone())).await;
    let mut reattach = server.reattach_config().clone();
    reattach.test = false;
    // Not the test's own pid: the host must judge the exit by the connection.
    reattach.pid = 0;
    let plugin = Plugin::launch(attach(reattach, Count::default()))
        .await
        .expect("attaches");
    assert!(!token.is_cancelled());
    let report = plugin.kill().await;
    assert!(report.graceful, "the plugin went when asked");
    tokio::time::timeout(Duration::from_secs(5), token.cancelled())
        .await
        .expect("the plugin's code was told");
    tokio::time::timeout(Duration::from_secs(5), server.finished())
        .await
        .expect("serving ends")
        .expect("cleanly");
}

/// The same for a netrpc plugin: `serve_test` with a netrpc set, a host attached with
/// `Protocol: "netrpc"` calls it and uses the `MuxBroker` both ways; dropping the host's
/// `Plugin` closes its connection (the plugin serves the next host), and stopping the plugin
/// removes its socket.
#[tokio::test]
async fn a_host_attaches_to_a_netrpc_plugin_served_by_the_test() {
    use plugwire_host::Protocol;
    use plugwire_host::netrpc::gobwire::Interface;
    use plugwire_plugin::netrpc::NetRpcPluginSet;
    let bounded = Duration::from_secs(20);
    let config = ServeConfig::builder(MagicCookie::new("BASIC_PLUGIN", "hello"))
        .netrpc_plugins(
            1,
            NetRpcPluginSet::new().add("test", plugwire_interop::netrpc::server),
        )
        .build();
    let server = serve_test(config, TestConfig::new())
        .await
        .expect("serving");
    let reattach = server.reattach_config().clone();
    assert_eq!(reattach.protocol, "netrpc");
    let socket = socket_of(&reattach);
    for round in 0..2 {
        let plugin = tokio::time::timeout(
            bounded,
            Plugin::launch(
                PluginConfig::reattach(reattach.clone())
                    .plugins(1, ["test"])
                    .allowed_protocols([Protocol::NetRpc])
                    .build(),
            ),
        )
        .await
        .expect("bounded")
        .expect("attached");
        assert_eq!(plugin.protocol(), Protocol::NetRpc);
        let netrpc = plugin.netrpc().expect("netrpc");
        let client = netrpc.dispense("test").await.expect("dispensed");
        let doubled: i64 = tokio::time::timeout(bounded, client.call("Plugin.Double", &21i64))
            .await
            .expect("bounded")
            .expect("called");
        assert_eq!(doubled, 42, "round {round}");
        // The plugin calls back the host's Pong.
        let broker = netrpc.broker().clone();
        let id = broker.next_id();
        let serving = tokio::spawn({
            let broker = broker.clone();
            async move {
                broker
                    .accept_and_serve(id, Arc::new(plugwire_interop::netrpc::pong()))
                    .await
            }
        });
        let answer: String = tokio::time::timeout(bounded, client.call("Plugin.Callback", &id))
            .await
            .expect("bounded")
            .expect("called back");
        assert_eq!(answer, "pong");
        serving.abort();
        // And the host calls the plugin's.
        let served: u32 = client
            .call("Plugin.Serve", &None::<Interface>)
            .await
            .expect("served");
        let pong = broker.dial_client(served).await.expect("dialled");
        let answer: String = pong
            .call("Plugin.Ping", &None::<Interface>)
            .await
            .expect("pinged");
        assert_eq!(answer, "pong");
        assert!(
            plugin.dispense("test", KvClient::new).is_err(),
            "gRPC dispense of a netrpc plugin is an error"
        );
        drop(plugin);
        // The dropped host's connection ends: its net/rpc clients fail instead of hanging.
        let after = tokio::time::timeout(bounded, client.call::<_, i64>("Plugin.Double", &1i64))
            .await
            .expect("a call on a dropped connection ends");
        assert!(after.is_err(), "{after:?}");
    }
    assert!(socket.exists());
    tokio::time::timeout(bounded, server.stop())
        .await
        .expect("bounded")
        .expect("stopped");
    assert!(!socket.exists(), "the socket file is removed");
}

//! The Rust side of the interop matrix: a plugwire plugin whose behaviour is chosen by its first
//! argument (the mode), with the same mode names as the Go fixture plugin.

use std::collections::HashMap;
use std::io::{Read as _, Write as _};
use std::pin::Pin;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{Stream, StreamExt as _};
use plugwire_examples::pb::counter::add_helper_client::AddHelperClient;
use plugwire_examples::pb::counter::counter_server::{Counter, CounterServer};
use plugwire_examples::pb::counter::{self, SumRequest};
use plugwire_examples::pb::kv::kv_server::{Kv, KvServer};
use plugwire_examples::pb::kv::{self, GetRequest, GetResponse, PutRequest};
use plugwire_interop::pb::ping_pong_client::PingPongClient;
use plugwire_interop::pb::ping_pong_server::PingPongServer;
use plugwire_interop::pb::test_server::{Test, TestServer};
use plugwire_interop::pb::{
    BidirectionalRequest, BidirectionalResponse, PanicRequest, PingRequest, PrintKvRequest,
    PrintKvResponse, PrintStdioRequest, TestRequest, TestResponse, print_kv_request,
};
use plugwire_plugin::{Broker, PluginSet, ServeConfig, Transport, serve};
use tonic::{Request, Response, Status, Streaming};

/// The longest a misbehaving mode lingers; the host kills it long before.
const LINGER: Duration = Duration::from_secs(60);

fn main() -> ExitCode {
    let mode = std::env::args().nth(1).unwrap_or_else(|| "serve".into());
    let mut stdout = std::io::stdout().lock();
    let misbehave = |out: &mut std::io::StdoutLock<'_>, bytes: &[u8]| {
        let _ = out.write_all(bytes);
        let _ = out.flush();
        std::thread::sleep(LINGER);
        ExitCode::from(3)
    };
    match mode.as_str() {
        "never" => return misbehave(&mut stdout, b""),
        "print-line" => {
            let line = std::env::var("FIXTURE_LINE").unwrap_or_default();
            return misbehave(&mut stdout, format!("{line}\n").as_bytes());
        }
        "garbage" => return misbehave(&mut stdout, b"hello from a program that is not a plugin\n"),
        "long-line" => return misbehave(&mut stdout, &vec![b'x'; 70 * 1024]),
        "non-utf8" => return misbehave(&mut stdout, b"1|1|unix|/tmp/plugin\xff\xfe|grpc|\n"),
        "exit-early" => {
            eprintln!("fixture-plugin: exiting early on purpose");
            return ExitCode::from(3);
        }
        _ => {}
    }
    drop(stdout);

    let kv = Arc::new(MemoryKv::default());
    let mut versions: &[u32] = &[1];
    // Versions served over netrpc (go-plugin's net/rpc protocol) instead.
    let mut netrpc_versions: &[u32] = &[];
    let mut transport = Transport::Unix;
    let mut manual_tls = false;
    let mut multiplex = true;
    let mut debug = false;
    let mut catch_panics = false;
    // Accept requests over tonic's (and grpc-go's) default 4 MiB, for the benchmark.
    let mut big = false;
    match mode.as_str() {
        "serve" | "crash" => {}
        "serve-big" => big = true,
        "catch-panics" => catch_panics = true,
        "debug" => debug = true,
        "netrpc" => (versions, netrpc_versions) = (&[], &[1]),
        "netrpc-manual-tls" => {
            (versions, netrpc_versions) = (&[], &[1]);
            manual_tls = true;
        }
        // As go-plugin's examples/negotiated: version 2 over netrpc, version 3 over gRPC.
        "negotiated" => (versions, netrpc_versions) = (&[3], &[2]),
        "netrpc-debug" => {
            (versions, netrpc_versions) = (&[], &[1]);
            debug = true;
        }
        "no-mux" => multiplex = false,
        "manual-tls" => manual_tls = true,
        "mitm-cert" => return run(mitm_cert()),
        "versioned" => versions = &[2, 3, 5],
        "mismatch" => versions = &[2],
        "tcp" => transport = Transport::Tcp,
        "stdin" => {
            let mut data = Vec::new();
            if let Err(e) = std::io::stdin().take(1 << 20).read_to_end(&mut data) {
                eprintln!("reading stdin: {e}");
                return ExitCode::from(2);
            }
            kv.insert("stdin", data.into());
        }
        other => {
            eprintln!("fixture-plugin: unknown mode {other:?}");
            return ExitCode::from(2);
        }
    }
    // A panic in a handler takes the whole process down, as in a Go plugin (unless the mode
    // wants to see the plugin live on, as tokio lets it).
    if !catch_panics {
        let default_hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            default_hook(info);
            std::process::abort();
        }));
    }

    let mut builder = ServeConfig::builder(plugwire_interop::cookie())
        .transport(transport)
        .multiplex(multiplex)
        .reflection_descriptors(plugwire_interop::pb::FILE_DESCRIPTOR_SET)
        .reflection_descriptors(kv::FILE_DESCRIPTOR_SET)
        .reflection_descriptors(counter::FILE_DESCRIPTOR_SET)
        .reflection_descriptors(plugwire_interop::bench_pb::FILE_DESCRIPTOR_SET);
    if manual_tls {
        let dir = std::env::var_os(plugwire_interop::tls::TLS_DIR_VAR).unwrap_or_default();
        builder =
            builder.tls_provider(move || plugwire_interop::tls::configs(dir.as_ref(), "plugin"));
    }
    let counts = Arc::new(MemoryCounter::default());
    for &version in versions {
        let counts = counts.clone();
        let set = PluginSet::new()
            .add_with(plugwire_interop::PLUGIN_NAME, |broker| {
                TestServer::new(TestImpl {
                    broker: broker.clone(),
                })
            })
            .add(
                plugwire_interop::PLUGIN_NAME,
                plugwire_interop::bench_pb::bench_server::BenchServer::new(BenchImpl),
            )
            .add_with(plugwire_interop::PLUGIN_NAME, move |broker| {
                CounterServer::from_arc(Arc::new(MemoryCounter {
                    broker: Some(broker.clone()),
                    values: counts.values.clone(),
                }))
            })
            .add(
                plugwire_interop::PLUGIN_NAME,
                KvServer::from_arc(kv.clone()).max_decoding_message_size(if big {
                    usize::MAX
                } else {
                    4 << 20
                }),
            );
        builder = builder.plugins(version, set);
    }
    for &version in netrpc_versions {
        let set = plugwire_plugin::netrpc::NetRpcPluginSet::new().add(
            plugwire_interop::PLUGIN_NAME,
            plugwire_interop::netrpc::server,
        );
        builder = builder.netrpc_plugins(version, set);
    }
    run(async move {
        if debug {
            plugwire_plugin::serve_debug(builder.build(), "fixture").await?;
        } else {
            serve(builder.build()).await?;
        }
        Ok(())
    })
}

/// Runs `future` on a current-thread runtime (what plugwire recommends for `serve()`), or a
/// multi-thread one with `PLUGWIRE_FIXTURE_RUNTIME=multi-thread` (the benchmark compares them).
fn run(future: impl Future<Output = anyhow::Result<()>>) -> ExitCode {
    let mut builder = match std::env::var("PLUGWIRE_FIXTURE_RUNTIME").as_deref() {
        Ok("multi-thread") => tokio::runtime::Builder::new_multi_thread(),
        _ => tokio::runtime::Builder::new_current_thread(),
    };
    let result = builder
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|runtime| runtime.block_on(future));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fixture-plugin: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// An impostor under AutoMTLS: advertises one certificate in its handshake line but serves TLS
/// with another (a valid P-521 one that trusts the host). Hosts must refuse it.
async fn mitm_cert() -> anyhow::Result<()> {
    use plugwire_protocol::handshake::{HandshakeLine, Protocol};
    use plugwire_runtime::tls::{Identity, PinnedPeer, TlsConfigs};
    use plugwire_runtime::transport::{self, Listener};
    let host_pem = std::env::var("PLUGIN_CLIENT_CERT")?;
    let host = PinnedPeer::from_pem(&host_pem, "PLUGIN_CLIENT_CERT")?;
    let advertised = Identity::generate()?;
    let served = Identity::generate()?;
    let listener = Listener::unix(&std::env::temp_dir(), None)?;
    let mut line = HandshakeLine::new(
        1,
        listener.address().network(),
        listener.address().to_field(),
        Protocol::Grpc,
    );
    line.server_cert = Some(advertised.cert().clone());
    let tls = TlsConfigs::pinned(&served, &host)?;
    let (tx, incoming) = transport::incoming();
    let _accept = transport::spawn_accept_loop(listener, tls.server, tx);
    {
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "{line}")?;
        stdout.flush()?;
    }
    let (_, health) = tonic_health::server::health_reporter();
    let serve = tonic::transport::Server::builder()
        .add_service(health)
        .serve_with_incoming(incoming);
    // The host gives up at once; linger a bounded time so it is the one ending this.
    let _ = tokio::time::timeout(LINGER, serve).await;
    Ok(())
}

#[derive(Default)]
struct MemoryKv(Mutex<HashMap<String, bytes::Bytes>>);

impl MemoryKv {
    fn insert(&self, key: &str, value: bytes::Bytes) {
        if let Ok(mut map) = self.0.lock() {
            map.insert(key.to_owned(), value);
        }
    }
}

#[tonic::async_trait]
impl Kv for MemoryKv {
    async fn get(&self, request: Request<GetRequest>) -> Result<Response<GetResponse>, Status> {
        let key = request.into_inner().key;
        let map = self.0.lock().map_err(|_| Status::internal("poisoned"))?;
        let value = map
            .get(&key)
            .cloned()
            .ok_or_else(|| Status::unknown(format!("no value for key {key:?}")))?;
        Ok(Response::new(GetResponse { value }))
    }

    async fn put(&self, request: Request<PutRequest>) -> Result<Response<kv::Empty>, Status> {
        let PutRequest { key, value } = request.into_inner();
        if key == "flood" {
            // "<stdout bytes>,<stderr bytes>" of the flood pattern, written in the background.
            let sizes = String::from_utf8_lossy(&value).into_owned();
            let (out, err) = sizes
                .split_once(',')
                .and_then(|(o, e)| Some((o.parse::<u64>().ok()?, e.parse::<u64>().ok()?)))
                .ok_or_else(|| Status::invalid_argument("flood wants \"<stdout>,<stderr>\""))?;
            std::thread::spawn(move || {
                let stderr = std::thread::spawn(move || {
                    plugwire_interop::write_flood(&mut std::io::stderr(), err)
                });
                let _ = plugwire_interop::write_flood(&mut std::io::stdout(), out);
                let _ = stderr.join();
            });
            return Ok(Response::new(kv::Empty {}));
        }
        self.insert(&key, value);
        Ok(Response::new(kv::Empty {}))
    }
}

struct TestImpl {
    broker: Broker,
}

fn status(e: impl std::fmt::Display) -> Status {
    Status::unknown(e.to_string())
}

/// The bidirectional example's Counter, in memory. `Get` of `plugwire:fds` and `plugwire:tasks`
/// answers this process's open file descriptors and live tokio tasks, for leak checks.
#[derive(Default)]
struct MemoryCounter {
    broker: Option<Broker>,
    values: Arc<Mutex<HashMap<String, i64>>>,
}

impl MemoryCounter {
    fn value(&self, key: &str) -> i64 {
        self.values
            .lock()
            .map(|m| m.get(key).copied().unwrap_or(0))
            .unwrap_or(0)
    }
}

#[tonic::async_trait]
impl Counter for MemoryCounter {
    async fn get(
        &self,
        request: Request<counter::GetRequest>,
    ) -> Result<Response<counter::GetResponse>, Status> {
        let key = request.into_inner().key;
        let value = match key.as_str() {
            "plugwire:fds" => std::fs::read_dir("/proc/self/fd").map_or(-1, |d| d.count() as i64),
            "plugwire:tasks" => tokio::runtime::Handle::current()
                .metrics()
                .num_alive_tasks() as i64,
            _ => self.value(&key),
        };
        Ok(Response::new(counter::GetResponse { value }))
    }

    async fn put(
        &self,
        request: Request<counter::PutRequest>,
    ) -> Result<Response<counter::Empty>, Status> {
        let request = request.into_inner();
        let broker = self
            .broker
            .as_ref()
            .ok_or_else(|| Status::internal("no broker"))?;
        let channel = broker.dial(request.add_server).await.map_err(status)?;
        let sum = AddHelperClient::new(channel)
            .sum(SumRequest {
                a: self.value(&request.key),
                b: request.value,
            })
            .await?
            .into_inner();
        if let Ok(mut values) = self.values.lock() {
            values.insert(request.key, sum.r);
        }
        Ok(Response::new(counter::Empty {}))
    }
}

/// The benchmark's bulk stream: `"<chunk>,<total>"` bytes of zeros.
struct BenchImpl;

#[tonic::async_trait]
impl plugwire_interop::bench_pb::bench_server::Bench for BenchImpl {
    type DownloadStream = Pin<Box<dyn Stream<Item = Result<Vec<u8>, Status>> + Send>>;

    async fn download(
        &self,
        request: Request<String>,
    ) -> Result<Response<Self::DownloadStream>, Status> {
        let spec = request.into_inner();
        let (chunk, total) = spec
            .split_once(',')
            .and_then(|(c, t)| Some((c.parse::<usize>().ok()?, t.parse::<usize>().ok()?)))
            .filter(|(c, _)| *c > 0)
            .ok_or_else(|| {
                Status::invalid_argument(format!("download wants \"<chunk>,<total>\": {spec:?}"))
            })?;
        let block = vec![0u8; chunk];
        let count = total.div_ceil(chunk);
        let stream = futures_util::stream::iter((0..count).map(move |_| Ok(block.clone())));
        Ok(Response::new(Box::pin(stream)))
    }
}

/// Answers "pong"; served through the broker.
struct PingPongImpl;

#[tonic::async_trait]
impl plugwire_interop::pb::ping_pong_server::PingPong for PingPongImpl {
    async fn ping(
        &self,
        _: Request<PingRequest>,
    ) -> Result<Response<plugwire_interop::pb::PongResponse>, Status> {
        Ok(Response::new(plugwire_interop::pb::PongResponse {
            msg: "pong".into(),
        }))
    }
}

type ResponseStream = Pin<Box<dyn Stream<Item = Result<TestResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Test for TestImpl {
    async fn double(
        &self,
        request: Request<TestRequest>,
    ) -> Result<Response<TestResponse>, Status> {
        Ok(Response::new(TestResponse {
            output: request.into_inner().input * 2,
        }))
    }

    async fn print_kv(
        &self,
        request: Request<PrintKvRequest>,
    ) -> Result<Response<PrintKvResponse>, Status> {
        let request = request.into_inner();
        let span = tracing::info_span!("print_kv", request = "PrintKV");
        let _entered = span.enter();
        match request.value {
            Some(print_kv_request::Value::ValueString(v)) => {
                tracing::info!(key = %request.key, value = %v, "PrintKV called");
            }
            Some(print_kv_request::Value::ValueInt(v)) => {
                tracing::info!(key = %request.key, value = v, "PrintKV called");
            }
            None => return Err(Status::invalid_argument("PrintKV: no value")),
        }
        Ok(Response::new(PrintKvResponse {}))
    }

    /// go-plugin's own broker test: dial the host's PingPong, then serve ours.
    async fn bidirectional(
        &self,
        request: Request<BidirectionalRequest>,
    ) -> Result<Response<BidirectionalResponse>, Status> {
        let channel = self
            .broker
            .dial(request.into_inner().id)
            .await
            .map_err(|e| status(format!("server dial error: {e}")))?;
        let pong = PingPongClient::new(channel)
            .ping(PingRequest {})
            .await?
            .into_inner();
        if pong.msg != "pong" {
            return Err(Status::unknown("server Bad PingPong"));
        }
        let next = self.broker.next_id();
        self.broker
            .accept_and_serve(
                next,
                tonic::service::Routes::new(PingPongServer::new(PingPongImpl)),
            )
            .await
            .map_err(status)?
            .detach();
        Ok(Response::new(BidirectionalResponse { id: next }))
    }

    type StreamStream = ResponseStream;

    async fn stream(
        &self,
        request: Request<Streaming<TestRequest>>,
    ) -> Result<Response<Self::StreamStream>, Status> {
        let inbound = request.into_inner();
        let echo = inbound.map(|item| item.map(|req| TestResponse { output: req.input }));
        Ok(Response::new(Box::pin(echo)))
    }

    async fn print_stdio(
        &self,
        request: Request<PrintStdioRequest>,
    ) -> Result<Response<()>, Status> {
        let request = request.into_inner();
        let _ = std::io::stdout().write_all(&request.stdout);
        let _ = std::io::stdout().flush();
        let _ = std::io::stderr().write_all(&request.stderr);
        Ok(Response::new(()))
    }

    async fn panic(&self, request: Request<PanicRequest>) -> Result<Response<()>, Status> {
        panic!("{}", request.into_inner().message);
    }
}

//! The benchmark workloads (scenario `bench:<name>`), the same as the Go fixture host's. Each
//! prints one `result=<json>` line of raw measurements; the driver (`benches/`) computes the
//! statistics and the ratios.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use plugwire_examples::pb::counter::counter_client::CounterClient;
use plugwire_examples::pb::kv::{GetRequest, PutRequest};
use plugwire_host::{MAX_MESSAGE_SIZE, Plugin};
use plugwire_interop::pb::TestRequest;
use plugwire_interop::{PLUGIN_NAME, report};
use serde_json::json;

use super::{Collector, Launch, clients, counter_put};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|v| *v > 0)
        .unwrap_or(default)
}

fn nanos(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// A `<field>: N kB` line of `/proc/<pid>/<file>`.
fn proc_kb(pid: Option<u32>, file: &str, field: &str) -> i64 {
    let Some(pid) = pid else { return -1 };
    std::fs::read_to_string(format!("/proc/{pid}/{file}"))
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
                .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(-1)
}

pub(super) async fn run(name: &str, launch: &mut Launch<'_>) -> anyhow::Result<()> {
    let n = env_usize("BENCH_N", 20);
    match name {
        "cold" => {
            let (mut cold, mut kill) = (Vec::with_capacity(n), Vec::with_capacity(n));
            for _ in 0..n {
                let start = Instant::now();
                let plugin = launch.start().await?;
                let (mut test, _) = clients(&plugin)?;
                test.double(TestRequest { input: 1 }).await?;
                cold.push(nanos(start));
                let stop = Instant::now();
                let outcome = plugin.kill().await;
                anyhow::ensure!(outcome.graceful, "the plugin did not stop gracefully");
                kill.push(nanos(stop));
            }
            report("result", json!({"cold_ns": cold, "kill_ns": kill}));
        }
        "unary" => {
            let plugin = launch.start().await?;
            let (_, mut kv) = clients(&plugin)?;
            kv.put(PutRequest {
                key: "k".into(),
                value: vec![0; 16].into(),
            })
            .await?;
            for _ in 0..n / 10 + 100 {
                kv.get(GetRequest { key: "k".into() }).await?;
            }
            let mut lat = Vec::with_capacity(n);
            for _ in 0..n {
                let start = Instant::now();
                kv.get(GetRequest { key: "k".into() }).await?;
                lat.push(nanos(start));
            }
            let rss = proc_kb(plugin.pid(), "status", "VmRSS");
            report("result", json!({"lat_ns": lat, "idle_rss_kb": rss}));
            plugin.kill().await;
        }
        "concurrent" => {
            let plugin = launch.start().await?;
            let (_, mut kv) = clients(&plugin)?;
            kv.put(PutRequest {
                key: "k".into(),
                value: vec![0; 16].into(),
            })
            .await?;
            let duration = Duration::from_millis(env_usize("BENCH_MILLIS", 2000) as u64);
            let calls = Arc::new(AtomicU64::new(0));
            let start = Instant::now();
            let deadline = start + duration;
            let callers = (0..16).map(|_| {
                let mut kv = kv.clone();
                let calls = calls.clone();
                tokio::spawn(async move {
                    while Instant::now() < deadline {
                        if kv.get(GetRequest { key: "k".into() }).await.is_ok() {
                            calls.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                })
            });
            futures_util::future::join_all(callers).await;
            report(
                "result",
                json!({"calls": calls.load(Ordering::Relaxed), "elapsed_ns": nanos(start)}),
            );
            plugin.kill().await;
        }
        "bulk" => {
            let plugin = launch.start().await?;
            let (_, kv) = clients(&plugin)?;
            let mut kv = kv
                .max_decoding_message_size(MAX_MESSAGE_SIZE)
                .max_encoding_message_size(MAX_MESSAGE_SIZE);
            let size = env_usize("BENCH_SIZE", 1 << 20);
            // The request as a Go host sends it: the same payload every time, shared (the
            // examples' `value` fields are `Bytes`), not copied per call.
            let value = bytes::Bytes::from(vec![0u8; size]);
            let start = Instant::now();
            for _ in 0..n {
                kv.put(PutRequest {
                    key: "big".into(),
                    value: value.clone(),
                })
                .await?;
            }
            let up = nanos(start);
            let start = Instant::now();
            for _ in 0..n {
                kv.get(GetRequest { key: "big".into() }).await?;
            }
            report(
                "result",
                json!({"bytes": n * size, "size": size, "up_ns": up, "down_ns": nanos(start)}),
            );
            plugin.kill().await;
        }
        "stream" => {
            let plugin = launch.start().await?;
            let total = env_usize("BENCH_BYTES", 256 << 20);
            let mut bench = plugin
                .dispense(
                    PLUGIN_NAME,
                    plugwire_interop::bench_pb::bench_client::BenchClient::new,
                )?
                .max_decoding_message_size(MAX_MESSAGE_SIZE);
            let start = Instant::now();
            let mut stream = bench
                .download(format!("{},{total}", 64 << 10))
                .await?
                .into_inner();
            let mut received = 0usize;
            while let Some(chunk) = stream.message().await? {
                received += chunk.len();
            }
            report(
                "result",
                json!({"bytes": received, "elapsed_ns": nanos(start)}),
            );
            plugin.kill().await;
        }
        "netrpc-cold" => {
            launch.netrpc = true;
            let (mut cold, mut kill) = (Vec::with_capacity(n), Vec::with_capacity(n));
            for _ in 0..n {
                let start = Instant::now();
                let plugin = launch.start().await?;
                let client = plugin.netrpc()?.dispense(PLUGIN_NAME).await?;
                client.call::<_, i64>("Plugin.Double", &1i64).await?;
                cold.push(nanos(start));
                let stop = Instant::now();
                let outcome = plugin.kill().await;
                anyhow::ensure!(outcome.graceful, "the plugin did not stop gracefully");
                kill.push(nanos(stop));
            }
            report("result", json!({"cold_ns": cold, "kill_ns": kill}));
        }
        "netrpc-unary" => {
            launch.netrpc = true;
            let plugin = launch.start().await?;
            let client = plugin.netrpc()?.dispense(PLUGIN_NAME).await?;
            let put = super::netrpc::put_args_with("k", vec![0; 16]);
            client
                .call::<_, Option<gobwire::Interface>>("Plugin.Put", &put)
                .await?;
            for _ in 0..n / 10 + 100 {
                client.call::<_, Vec<u8>>("Plugin.Get", "k").await?;
            }
            let mut lat = Vec::with_capacity(n);
            for _ in 0..n {
                let start = Instant::now();
                client.call::<_, Vec<u8>>("Plugin.Get", "k").await?;
                lat.push(nanos(start));
            }
            let rss = proc_kb(plugin.pid(), "status", "VmRSS");
            report("result", json!({"lat_ns": lat, "idle_rss_kb": rss}));
            plugin.kill().await;
        }
        "broker" => {
            let plugin = launch.start().await?;
            let mut counter = plugin.dispense(PLUGIN_NAME, CounterClient::new)?;
            counter_put(&plugin, &mut counter, "b", 1).await?;
            let mut lat = Vec::with_capacity(n);
            for _ in 0..n {
                let start = Instant::now();
                counter_put(&plugin, &mut counter, "b", 1).await?;
                lat.push(nanos(start));
            }
            report("result", json!({"lat_ns": lat}));
            plugin.kill().await;
        }
        "stdio" => {
            let total = env_usize("BENCH_BYTES", 256 << 20) as u64;
            let (out, err) = (
                Collector::new(Duration::ZERO),
                Collector::new(Duration::ZERO),
            );
            launch.sync = Some((out.clone(), err));
            let plugin = launch.start().await?;
            let (_, mut kv) = clients(&plugin)?;
            let start = Instant::now();
            kv.put(PutRequest {
                key: "flood".into(),
                value: format!("{total},0").into_bytes().into(),
            })
            .await?;
            let got = out.wait_for(total, Duration::from_secs(120)).await;
            report(
                "result",
                json!({"bytes": got, "elapsed_ns": nanos(start), "intact": out.intact()}),
            );
            plugin.kill().await;
        }
        "fleet" => {
            let count = env_usize("BENCH_FLEET", 50);
            let start = Instant::now();
            let launches = (0..count).map(|_| async {
                let plugin = launch.start().await?;
                let (mut test, _) = clients(&plugin)?;
                test.double(TestRequest { input: 1 }).await?;
                anyhow::Ok(plugin)
            });
            let plugins: Vec<Plugin> = futures_util::future::try_join_all(launches).await?;
            let elapsed = nanos(start);
            let pss: Vec<i64> = plugins
                .iter()
                .map(|p| proc_kb(p.pid(), "smaps_rollup", "Pss"))
                .collect();
            futures_util::future::join_all(plugins.iter().map(Plugin::kill)).await;
            report("result", json!({"elapsed_ns": elapsed, "pss_kb": pss}));
        }
        "crypto" => {
            use plugwire_runtime::tls::{Identity, PinnedPeer, TlsConfigs, server_name};
            let (mut certgen, mut handshake) = (Vec::with_capacity(n), Vec::with_capacity(n));
            for _ in 0..n {
                let start = Instant::now();
                let a = Identity::generate()?;
                certgen.push(nanos(start));
                let b = Identity::generate()?;
                let client = TlsConfigs::pinned(&a, &PinnedPeer::new([b.cert().clone()])?)?;
                let server = TlsConfigs::pinned(&b, &PinnedPeer::new([a.cert().clone()])?)?;
                let (client, server) = (
                    client.client.context("client config")?,
                    server.server.context("server config")?,
                );
                let (x, y) = tokio::net::UnixStream::pair()?;
                let start = Instant::now();
                let (c, s) = tokio::join!(
                    tokio_rustls::TlsConnector::from(client).connect(server_name(), x),
                    tokio_rustls::TlsAcceptor::from(server).accept(y)
                );
                c?;
                s?;
                handshake.push(nanos(start));
            }
            report(
                "result",
                json!({"certgen_ns": certgen, "handshake_ns": handshake}),
            );
        }
        other => anyhow::bail!("unknown benchmark {other:?}"),
    }
    Ok(())
}

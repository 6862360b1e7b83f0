//! The netrpc scenarios (go-plugin's net/rpc protocol), with the Go fixture host's names and
//! observation keys.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use gobwire::Interface;
use plugwire_host::netrpc::Client;
use plugwire_host::{Plugin, PluginConfig, Protocol};
use plugwire_interop::netrpc::{Empty, StdioArgs, describe, pong, values};
use plugwire_interop::{FloodCheck, PLUGIN_NAME, report};

use super::{Collector, Launch, Options, kill, plugin_logs, status_text};

/// Runs `options.scenario` if it is a netrpc one.
pub(crate) async fn run(options: &Options, launch: &mut Launch<'_>) -> Option<anyhow::Result<()>> {
    let scenario = options.scenario.as_str();
    let known = matches!(
        scenario,
        "netrpc-calls"
            | "netrpc-unknown"
            | "netrpc-broker"
            | "netrpc-stdio"
            | "netrpc-logs"
            | "netrpc-ping"
            | "netrpc-crash"
            | "negotiated"
            | "netrpc-reattach"
    );
    if !known {
        return None;
    }
    launch.netrpc = true;
    Some(match scenario {
        "netrpc-reattach" => reattach().await,
        "negotiated" => negotiated(launch).await,
        _ => scenario_run(scenario, launch).await,
    })
}

/// Launches and dispenses `name` over netrpc.
async fn dispense(launch: &Launch<'_>, name: &str) -> anyhow::Result<(Plugin, Option<Client>)> {
    let plugin = launch.start().await?;
    let client = plugin.netrpc()?.dispense(name).await;
    match client {
        Ok(client) => Ok((plugin, Some(client))),
        Err(e) if name != PLUGIN_NAME => {
            report("dispense", format!("error: {e}"));
            Ok((plugin, None))
        }
        Err(e) => Err(e).context("dispense"),
    }
}

async fn scenario_run(scenario: &str, launch: &mut Launch<'_>) -> anyhow::Result<()> {
    if scenario == "netrpc-unknown" {
        let (plugin, client) = dispense(launch, "nope").await?;
        if client.is_some() {
            report("dispense", "ok");
        }
        kill(&plugin).await;
        return Ok(());
    }
    if scenario == "netrpc-stdio" {
        return stdio(launch).await;
    }
    let (plugin, client) = dispense(launch, PLUGIN_NAME).await?;
    let c = client.context("no client")?;
    match scenario {
        "netrpc-calls" => {
            let doubled = c.call::<_, i64>("Plugin.Double", &21i64).await;
            report("double_call", status_text(doubled.as_ref()));
            report("double", doubled.unwrap_or_default());
            let sent = values();
            let echoed = c
                .call::<_, plugwire_interop::netrpc::Values>("Plugin.Echo", &sent)
                .await;
            report("echo_call", status_text(echoed.as_ref()));
            let echoed = echoed.unwrap_or_default();
            report("echo_equal", describe(&echoed) == describe(&sent));
            report("echo", describe(&echoed));
            report(
                "fail",
                status_text(c.call::<_, Empty>("Plugin.Fail", "boom").await),
            );
            let put = put_args_with("k", b"v\x00\xff".to_vec());
            report(
                "put",
                status_text(c.call::<_, Option<Interface>>("Plugin.Put", &put).await),
            );
            let got = c.call::<_, Vec<u8>>("Plugin.Get", "k").await;
            report("get_call", status_text(got.as_ref()));
            report("get", go_quote(&got.unwrap_or_default()));
            report(
                "unknown_method",
                status_text(c.call::<_, i64>("Plugin.Nope", &1i64).await),
            );
            kill(&plugin).await;
        }
        "netrpc-broker" => {
            let broker = plugin.netrpc()?.broker().clone();
            let id = broker.next_id();
            let serving = tokio::spawn({
                let broker = broker.clone();
                async move { broker.accept_and_serve(id, Arc::new(pong())).await }
            });
            let answer = c.call::<_, String>("Plugin.Callback", &id).await;
            report("plugin_dialed_host", status_text(answer.as_ref()));
            report("plugin_got", answer.unwrap_or_default());
            let served = c.call::<_, u32>("Plugin.Serve", &None::<Interface>).await;
            report("serve_call", status_text(served.as_ref()));
            match broker.dial_client(served.unwrap_or_default()).await {
                Err(e) => report("host_dialed_plugin", format!("error: {e}")),
                Ok(client) => {
                    let pong = client
                        .call::<_, String>("Plugin.Ping", &None::<Interface>)
                        .await;
                    report("host_dialed_plugin", status_text(pong.as_ref()));
                    report("host_got", pong.unwrap_or_default());
                    let _ = client.close().await;
                }
            }
            serving.abort();
            kill(&plugin).await;
        }
        "netrpc-logs" => {
            for key in ["hello", "answer"] {
                c.call::<_, Empty>("Plugin.Log", key).await?;
            }
            kill(&plugin).await;
            report("log_lines", plugin_logs(|l| l.contains("PrintKV called")));
        }
        "netrpc-ping" => {
            report("ping", status_text(plugin.ping().await));
            kill(&plugin).await;
            report("ping_after_kill", status_text(plugin.ping().await));
        }
        "netrpc-crash" => {
            let start = Instant::now();
            let call = c.call::<_, Empty>("Plugin.Panic", "fixture crash").await;
            report("call", status_text(call));
            let exited = tokio::time::timeout(Duration::from_secs(10), plugin.wait()).await;
            report("exit_observed", exited.is_ok());
            report("elapsed_ms", start.elapsed().as_millis() as u64);
            plugin.kill().await;
            report("exited", plugin.exited());
        }
        other => anyhow::bail!("not a netrpc scenario: {other}"),
    }
    Ok(())
}

/// The plugin's stdout and stderr streams: exact bytes, then a flood.
async fn stdio(launch: &mut Launch<'_>) -> anyhow::Result<()> {
    const FIRST: u64 = 256 << 10;
    let (out, err) = (
        Collector::checking(Duration::ZERO, FloodCheck::twice(FIRST)),
        Collector::checking(Duration::ZERO, FloodCheck::twice(FIRST)),
    );
    launch.sync = Some((out.clone(), err.clone()));
    let (plugin, client) = dispense(launch, PLUGIN_NAME).await?;
    let c = client.context("no client")?;
    let flood: Vec<u8> = (0..FIRST).map(plugwire_interop::flood_byte).collect();
    let args = StdioArgs {
        stdout: flood.clone(),
        stderr: flood,
    };
    report(
        "call",
        status_text(c.call::<_, Empty>("Plugin.PrintStdio", &args).await),
    );
    let sizes = std::env::var("FIXTURE_FLOOD").unwrap_or_else(|_| "16777216,16777216".into());
    let (out_len, err_len) = sizes
        .split_once(',')
        .and_then(|(o, e)| Some((o.parse::<u64>().ok()?, e.parse::<u64>().ok()?)))
        .context("FIXTURE_FLOOD")?;
    report(
        "flood_call",
        status_text(c.call::<_, Empty>("Plugin.Flood", &sizes).await),
    );
    let limit = Duration::from_secs(60);
    report("stdout_bytes", out.wait_for(FIRST + out_len, limit).await);
    report("stderr_bytes", err.wait_for(FIRST + err_len, limit).await);
    report("stdout_intact", out.intact());
    report("stderr_intact", err.intact());
    kill(&plugin).await;
    Ok(())
}

/// go-plugin's examples/negotiated: version 2 over netrpc, 3 over gRPC; the host offers
/// `FIXTURE_VERSIONS` (default "2,3") and calls Double whichever the plugin picks.
async fn negotiated(launch: &mut Launch<'_>) -> anyhow::Result<()> {
    let versions: Vec<u32> = std::env::var("FIXTURE_VERSIONS")
        .unwrap_or_else(|_| "2,3".into())
        .split(',')
        .map(str::parse)
        .collect::<Result<_, _>>()
        .context("FIXTURE_VERSIONS")?;
    let versions: &'static [u32] = versions.leak();
    launch.versions = versions;
    let plugin = match launch.start().await {
        Ok(plugin) => plugin,
        Err(e) => {
            launch.report_failure(&e);
            return Ok(());
        }
    };
    let doubled = match plugin.protocol() {
        Protocol::NetRpc => {
            let c = plugin.netrpc()?.dispense(PLUGIN_NAME).await?;
            c.call::<_, i64>("Plugin.Double", &21i64)
                .await
                .map_err(anyhow::Error::from)
        }
        _ => {
            let mut test = plugin.dispense(
                PLUGIN_NAME,
                plugwire_interop::pb::test_client::TestClient::new,
            )?;
            test.double(plugwire_interop::pb::TestRequest { input: 21 })
                .await
                .map(|r| i64::from(r.into_inner().output))
                .map_err(anyhow::Error::from)
        }
    };
    report("double_call", status_text(doubled.as_ref()));
    report("double", doubled.unwrap_or_default());
    kill(&plugin).await;
    Ok(())
}

/// `FIXTURE_REATTACH` holds `{"name": <reattach configuration>}` of a netrpc plugin in debug
/// mode: attach, call, leave it running (test mode), notice when it ends.
async fn reattach() -> anyhow::Result<()> {
    let json = std::env::var("FIXTURE_REATTACH").context("FIXTURE_REATTACH")?;
    let map = plugwire_protocol::reattach::parse_map(&json)?;
    let (_, reattach) = map.into_iter().next().context("empty reattach map")?;
    let version = reattach.protocol_version;
    let config = PluginConfig::reattach(reattach)
        .plugins(version, [PLUGIN_NAME])
        .allowed_protocols([Protocol::NetRpc])
        .build();
    let plugin = match Plugin::launch(config).await {
        Ok(plugin) => plugin,
        Err(e) => {
            report("error", e.to_string());
            return Ok(());
        }
    };
    let c = plugin.netrpc()?.dispense(PLUGIN_NAME).await?;
    let doubled = c.call::<_, i64>("Plugin.Double", &21i64).await;
    report("double_call", status_text(doubled.as_ref()));
    report("double", doubled.unwrap_or_default());
    plugin.kill().await;
    report("alive_after_kill", plugin.ping().await.is_ok());
    let pid = plugin.pid().context("no pid")?;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(pid)?),
        nix::sys::signal::Signal::SIGTERM,
    )?;
    let exited = tokio::time::timeout(Duration::from_secs(10), plugin.wait()).await;
    report("exit_observed", exited.is_ok());
    Ok(())
}

/// `map[string]interface{}{"key": key, "value": value}` (`[]byte`).
pub(crate) fn put_args_with(key: &str, value: Vec<u8>) -> gobwire::Dynamic {
    use gobwire::{Type, Value};
    let entry = |k: &str, v: Interface| {
        (
            Value::String(k.to_owned()),
            Value::Interface(Some(Box::new(v))),
        )
    };
    let bytes = Interface {
        name: gobwire::names::BYTES.into(),
        ty: Type::Bytes,
        value: Value::Bytes(value),
    };
    gobwire::Dynamic {
        ty: Type::Map(Arc::new(Type::String), Arc::new(Type::Interface)),
        value: Value::Map(vec![
            entry("key", Interface::string(key)),
            entry("value", bytes),
        ]),
    }
}

/// Go's `%q` of a byte string (printable ASCII as is, the rest as `\xNN`).
fn go_quote(bytes: &[u8]) -> String {
    let mut out = String::from("\"");
    for &b in bytes {
        match b {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            0x20..=0x7e => out.push(char::from(b)),
            _ => out.push_str(&format!("\\x{b:02x}")),
        }
    }
    out.push('"');
    out
}

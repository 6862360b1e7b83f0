//! The Rust side of the interop matrix: a plugwire host that runs one named scenario against the
//! plugin given by `-plugin` and prints what it observed as `key=<json>` lines on stdout, exactly
//! like the Go fixture host. Exit status 0: the scenario ran to the end; 1: the fixture itself
//! could not run it.

use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use plugwire_examples::pb::counter::add_helper_server::{AddHelper, AddHelperServer};
use plugwire_examples::pb::counter::counter_client::CounterClient;
use plugwire_examples::pb::counter::{self, SumRequest, SumResponse};
use plugwire_examples::pb::kv::kv_client::KvClient;
use plugwire_examples::pb::kv::{GetRequest, PutRequest};
use plugwire_host::{Channel, Error, MagicCookie, Plugin, PluginConfig};
use plugwire_interop::pb::ping_pong_client::PingPongClient;
use plugwire_interop::pb::ping_pong_server::{PingPong, PingPongServer};
use plugwire_interop::pb::test_client::TestClient;
use plugwire_interop::pb::{
    BidirectionalRequest, PanicRequest, PingRequest, PongResponse, PrintStdioRequest, TestRequest,
};
use plugwire_interop::{PLUGIN_NAME, report};
use tonic::service::Routes;
use tonic::{Request, Response, Status};

struct Options {
    plugin: String,
    mode: String,
    scenario: String,
    /// AutoMTLS.
    mtls: bool,
    /// Manual TLS from the material in `FIXTURE_TLS_DIR`.
    tls: bool,
    /// gRPC broker multiplexing.
    mux: bool,
}

fn parse_args() -> anyhow::Result<Options> {
    let mut options = Options {
        plugin: String::new(),
        mode: "serve".into(),
        scenario: String::new(),
        mtls: false,
        tls: false,
        mux: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().with_context(|| format!("{flag} needs a value"));
        match flag.trim_start_matches('-') {
            "plugin" => options.plugin = value()?,
            "mode" => options.mode = value()?,
            "scenario" => options.scenario = value()?,
            "mtls" => options.mtls = true,
            "tls" => options.tls = true,
            "mux" => options.mux = true,
            other => bail!("unknown flag -{other}"),
        }
    }
    if options.plugin.is_empty() || options.scenario.is_empty() {
        bail!(
            "usage: plugwire-fixture-host -plugin PATH [-mode MODE] -scenario NAME [-mtls] [-tls]"
        );
    }
    Ok(options)
}

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut v) = self.0.lock() {
            v.extend_from_slice(buf);
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        self.0
            .lock()
            .map(|v| String::from_utf8_lossy(&v).into_owned())
            .unwrap_or_default()
    }
}

/// A `sync_stdout`/`sync_stderr` sink that keeps (up to 1 MiB of) what it gets or checks the
/// flood pattern, counts bytes for waiters, and can be slow.
#[derive(Clone)]
struct Collector {
    kept: Arc<Mutex<Vec<u8>>>,
    check: Arc<Mutex<plugwire_interop::FloodCheck>>,
    count: Arc<tokio::sync::watch::Sender<u64>>,
    delay: Duration,
}

impl Collector {
    fn new(delay: Duration) -> Self {
        Self::checking(delay, plugwire_interop::FloodCheck::new())
    }

    fn checking(delay: Duration, check: plugwire_interop::FloodCheck) -> Self {
        Collector {
            kept: Arc::default(),
            check: Arc::new(Mutex::new(check)),
            count: Arc::new(tokio::sync::watch::channel(0).0),
            delay,
        }
    }

    /// Waits until `len` bytes arrived (at most `limit`); the bytes seen.
    async fn wait_for(&self, len: u64, limit: Duration) -> u64 {
        let mut rx = self.count.subscribe();
        let _ = tokio::time::timeout(limit, rx.wait_for(|n| *n >= len)).await;
        *rx.borrow()
    }

    fn text(&self) -> String {
        self.kept
            .lock()
            .map(|v| String::from_utf8_lossy(&v).into_owned())
            .unwrap_or_default()
    }

    fn intact(&self) -> bool {
        self.check.lock().map(|c| c.intact).unwrap_or(false)
    }
}

impl std::io::Write for Collector {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if !self.delay.is_zero() {
            std::thread::sleep(self.delay); // a deliberately slow host
        }
        if let Ok(mut kept) = self.kept.lock()
            && kept.len() < 1 << 20
        {
            kept.extend_from_slice(buf);
        }
        if let Ok(mut check) = self.check.lock() {
            check.feed(buf);
        }
        self.count.send_modify(|n| *n += buf.len() as u64);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

struct Launch<'a> {
    options: &'a Options,
    versions: &'a [u32],
    /// Allow netrpc (and gRPC); versions other than 3 also name a plugin `nope` the plugin
    /// does not have, as the Go fixture host does.
    netrpc: bool,
    cookie: MagicCookie,
    start_timeout: Option<Duration>,
    socket_dir: Option<std::path::PathBuf>,
    tls: Option<plugwire_host::TlsConfigs>,
    secure: Option<plugwire_host::SecureConfig>,
    sync: Option<(Collector, Collector)>,
    stderr: Captured,
}

impl<'a> Launch<'a> {
    fn new(options: &'a Options) -> Self {
        Launch {
            options,
            versions: &[1],
            netrpc: false,
            cookie: plugwire_interop::cookie(),
            start_timeout: None,
            socket_dir: None,
            tls: None,
            secure: None,
            sync: None,
            stderr: Captured::default(),
        }
    }

    async fn start(&self) -> Result<Plugin, Error> {
        let mut builder = PluginConfig::builder(self.cookie.clone(), plugin_command(self.options))
            .stderr(self.stderr.clone());
        for &version in self.versions {
            builder = match self.netrpc && version != 3 {
                true => builder.plugins(version, [PLUGIN_NAME, "nope"]),
                false => builder.plugins(version, [PLUGIN_NAME]),
            };
        }
        if self.netrpc {
            use plugwire_host::Protocol;
            builder = builder.allowed_protocols([Protocol::NetRpc, Protocol::Grpc]);
        }
        if let Some(timeout) = self.start_timeout {
            builder = builder.start_timeout(timeout);
        }
        if let Some(dir) = &self.socket_dir {
            builder = builder.unix_socket_dir(dir);
        }
        builder = builder
            .auto_mtls(self.options.mtls)
            .multiplex(self.options.mux);
        if let Some(configs) = &self.tls {
            builder = builder.tls(configs.clone());
        }
        if let Some(secure) = &self.secure {
            builder = builder.secure_config(secure.clone());
        }
        if let Some((out, err)) = &self.sync {
            builder = builder.sync_stdout(out.clone()).sync_stderr(err.clone());
        }
        let plugin = Plugin::launch(builder.build()).await;
        if let Ok(plugin) = &plugin {
            report("version", plugin.version());
            let negotiated = plugin.negotiated();
            report("negotiated_tls", format!("{:?}", negotiated.tls));
            report("negotiated_mux", negotiated.multiplexed);
            if self.netrpc {
                report("protocol", negotiated.protocol.as_str());
            }
        }
        plugin
    }

    fn report_failure(&self, error: &Error) {
        report("error", error.to_string());
        report("exited", error.exit_status().is_some());
        if let Some(code) = error.exit_status().and_then(|s| s.code()) {
            report("exit_status", code);
        }
        report("stderr", self.stderr.text());
    }
}

/// The plugin's command: `<plugin> <mode>`, or, with `FIXTURE_SHELL`, that shell script run by
/// `sh -c` with `$PLUGIN` and `$MODE` set (a wrapper, as go-plugin's example hosts use).
fn plugin_command(options: &Options) -> std::process::Command {
    match std::env::var("FIXTURE_SHELL") {
        Ok(script) => {
            let mut command = std::process::Command::new("sh");
            command
                .arg("-c")
                .arg(script)
                .env("PLUGIN", &options.plugin)
                .env("MODE", &options.mode);
            command
        }
        Err(_) => {
            let mut command = std::process::Command::new(&options.plugin);
            command.arg(&options.mode);
            command
        }
    }
}

/// Awaits a call for at most 20 s: "ok", its error, or "timed out".
async fn bounded_call<T>(call: impl Future<Output = Result<T, Status>>) -> String {
    match tokio::time::timeout(Duration::from_secs(20), call).await {
        Ok(result) => status_text(result),
        Err(_) => "timed out".into(),
    }
}

fn json_number(n: usize) -> serde_json::Value {
    serde_json::Value::from(n as u64)
}

fn pid_alive(pid: u32) -> bool {
    i32::try_from(pid).is_ok_and(plugwire_interop::harness::is_running)
}

fn host_errors() -> Vec<String> {
    HOST_ERRORS.lock().map(|e| e.clone()).unwrap_or_default()
}

/// A raw stderr sink whose first write blocks until [`Gate::open`].
#[derive(Clone, Default)]
struct Gate(Arc<GateState>);

#[derive(Default)]
struct GateState {
    /// (a write is blocked, the gate is open)
    flags: Mutex<(bool, bool)>,
    opened: std::sync::Condvar,
    entered: tokio::sync::Notify,
}

impl Gate {
    /// Resolves once a write is blocked in the gate.
    async fn entered(&self) {
        loop {
            let notified = self.0.entered.notified();
            if self.0.flags.lock().map(|s| s.0).unwrap_or(true) {
                return;
            }
            notified.await;
        }
    }

    fn open(&self) {
        if let Ok(mut flags) = self.0.flags.lock() {
            flags.1 = true;
        }
        self.0.opened.notify_all();
    }
}

impl std::io::Write for Gate {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let poisoned = |_| std::io::Error::other("poisoned");
        let mut flags = self.0.flags.lock().map_err(poisoned)?;
        flags.0 = true;
        self.0.entered.notify_waiters();
        self.0.entered.notify_one();
        while !flags.1 {
            flags = self
                .0
                .opened
                .wait_timeout(flags, Duration::from_secs(30))
                .map_err(|_| std::io::Error::other("poisoned"))?
                .0;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn clients(plugin: &Plugin) -> anyhow::Result<(TestClient<Channel>, KvClient<Channel>)> {
    Ok((
        plugin.dispense(PLUGIN_NAME, TestClient::new)?,
        plugin.dispense(PLUGIN_NAME, KvClient::new)?,
    ))
}

async fn kill(plugin: &Plugin) {
    let outcome = plugin.kill().await;
    report("graceful", outcome.graceful);
    report("exit_ok", outcome.status.is_some_and(|s| s.success()));
    report("exited", plugin.exited());
}

fn status_text<T>(result: Result<T, impl std::fmt::Display>) -> String {
    match result {
        Ok(_) => "ok".into(),
        Err(e) => format!("error: {e}"),
    }
}

mod bench;
mod netrpc;

async fn run(options: &Options) -> anyhow::Result<()> {
    let mut launch = Launch::new(options);
    if let Some(name) = options.scenario.strip_prefix("bench:") {
        return bench::run(name, &mut launch).await;
    }
    if options.tls {
        let dir = std::env::var_os(plugwire_interop::tls::TLS_DIR_VAR).unwrap_or_default();
        launch.tls = Some(plugwire_interop::tls::configs(dir.as_ref(), "host")?);
    }
    if let Some(done) = netrpc::run(options, &mut launch).await {
        return done;
    }
    match options.scenario.as_str() {
        "kv" => {
            let plugin = launch.start().await?;
            let (mut test, mut kv) = clients(&plugin)?;
            kv.put(PutRequest {
                key: "hello".into(),
                value: b"world".to_vec().into(),
            })
            .await?;
            let got = kv
                .get(GetRequest {
                    key: "hello".into(),
                })
                .await?
                .into_inner();
            report("get", String::from_utf8_lossy(&got.value));
            let doubled = test.double(TestRequest { input: 21 }).await?.into_inner();
            report("double", doubled.output);
            let requests = tokio_stream::iter((21..26).map(|input| TestRequest { input }));
            let mut responses = test.stream(requests).await?.into_inner();
            let mut echoed = Vec::new();
            while let Some(response) = responses.message().await? {
                echoed.push(response.output);
            }
            report("stream", echoed);
            kill(&plugin).await;
        }
        "negotiate" => {
            launch.versions = &[1, 3, 4];
            let plugin = launch.start().await?;
            let (mut test, _) = clients(&plugin)?;
            report(
                "double",
                test.double(TestRequest { input: 4 })
                    .await?
                    .into_inner()
                    .output,
            );
            kill(&plugin).await;
        }
        "start" | "mismatch" | "cookie-wrong" | "cookie-missing" | "start-timeout" => {
            match options.scenario.as_str() {
                "cookie-wrong" => launch.cookie = MagicCookie::new("TEST_MAGIC_COOKIE", "wrong"),
                "cookie-missing" => {
                    launch.cookie = MagicCookie::new("PLUGWIRE_OTHER_COOKIE", "test")
                }
                "start-timeout" => launch.start_timeout = Some(Duration::from_millis(500)),
                _ => {}
            }
            let start = Instant::now();
            match launch.start().await {
                Ok(plugin) => {
                    report("error", serde_json::Value::Null);
                    kill(&plugin).await;
                }
                Err(e) => {
                    report("elapsed_ms", start.elapsed().as_millis() as u64);
                    launch.report_failure(&e);
                }
            }
        }
        "ping" => {
            let plugin = launch.start().await?;
            report("ping", status_text(plugin.ping().await));
            kill(&plugin).await;
            report("ping_after_kill", status_text(plugin.ping().await));
        }
        "crash" | "broker-crash" => {
            let plugin = launch.start().await?;
            let (mut test, _) = clients(&plugin)?;
            // broker-crash: the plugin dies while it serves a brokered listener (and holds a
            // connection to the host's); the host removes the socket it leaves.
            let _held = match options.scenario.as_str() {
                "broker-crash" => Some(bidirectional(&plugin, &mut test).await?),
                _ => None,
            };
            let start = Instant::now();
            let call = test
                .panic(PanicRequest {
                    message: "fixture crash".into(),
                })
                .await;
            report("call", status_text(call));
            let exited = tokio::time::timeout(Duration::from_secs(10), plugin.wait()).await;
            report("exit_observed", exited.is_ok());
            report("elapsed_ms", start.elapsed().as_millis() as u64);
            plugin.kill().await;
            report("exited", plugin.exited());
        }
        "stdin" => {
            let plugin = launch.start().await?;
            let (_, mut kv) = clients(&plugin)?;
            let got = kv
                .get(GetRequest {
                    key: "stdin".into(),
                })
                .await?
                .into_inner();
            report("stdin", String::from_utf8_lossy(&got.value));
            kill(&plugin).await;
        }
        "tcp" => {
            let plugin = launch.start().await?;
            report("network", plugin.address().network().as_str());
            let (mut test, _) = clients(&plugin)?;
            report(
                "double",
                test.double(TestRequest { input: 21 })
                    .await?
                    .into_inner()
                    .output,
            );
            kill(&plugin).await;
        }
        "drop" => {
            // Dropping the handle without kill() must not leave the process behind.
            let plugin = launch.start().await?;
            let pid = plugin.pid().context("no pid")?;
            let token = plugin.exit_token();
            drop(plugin);
            let gone = tokio::time::timeout(Duration::from_secs(5), token.cancelled()).await;
            report("exited", gone.is_ok());
            report(
                "pid_alive",
                std::path::Path::new(&format!("/proc/{pid}")).exists(),
            );
        }
        "socket-dir" => {
            let dir = std::env::temp_dir().join("sockets");
            std::fs::create_dir_all(&dir)?;
            launch.socket_dir = Some(dir.clone());
            let plugin = launch.start().await?;
            let in_dir = match plugin.address() {
                plugwire_host::Address::Unix(path) => path.parent() == Some(dir.as_path()),
                plugwire_host::Address::Tcp(_) => false,
            };
            report("socket_in_dir", in_dir);
            kill(&plugin).await;
            std::fs::remove_dir(&dir)?;
        }
        "bidirectional" => {
            let plugin = launch.start().await?;
            let (mut test, _) = clients(&plugin)?;
            let _served = bidirectional(&plugin, &mut test).await?;
            kill(&plugin).await;
        }
        "counter" => {
            let plugin = launch.start().await?;
            let mut counter = plugin.dispense(PLUGIN_NAME, CounterClient::new)?;
            for value in [2, 3] {
                counter_put(&plugin, &mut counter, "k", value).await?;
            }
            let got = counter.get(counter::GetRequest { key: "k".into() }).await?;
            report("count", got.into_inner().value);
            kill(&plugin).await;
        }
        "churn" => {
            // Many brokered connections in a row: what both sides hold before and after.
            let plugin = launch.start().await?;
            let mut counter = plugin.dispense(PLUGIN_NAME, CounterClient::new)?;
            counter_put(&plugin, &mut counter, "churn", 1).await?;
            let before = (count_fds(), count_tasks(), count_sockets());
            let plugin_before = plugin_stats(&mut counter).await;
            for _ in 0..200 {
                counter_put(&plugin, &mut counter, "churn", 1).await?;
            }
            let got = counter
                .get(counter::GetRequest {
                    key: "churn".into(),
                })
                .await?;
            report("count", got.into_inner().value);
            report("host_fds_grew", count_fds() - before.0);
            report("host_tasks_grew", count_tasks() - before.1);
            report("host_sockets_grew", count_sockets() - before.2);
            if let (Some(b), Some(a)) = (plugin_before, plugin_stats(&mut counter).await) {
                report("plugin_fds_grew", a.0 - b.0);
                report("plugin_tasks_grew", a.1 - b.1);
            }
            kill(&plugin).await;
        }
        "knock-unaccepted" => {
            let plugin = launch.start().await?;
            let start = Instant::now();
            let dialed = plugin.broker()?.dial(999).await;
            report(
                "error",
                match dialed {
                    Ok(_) => "ok".into(),
                    Err(e) => format!("error: {}", plugwire_protocol::error_chain(&e)),
                },
            );
            report("elapsed_ms", start.elapsed().as_millis() as u64);
            kill(&plugin).await;
        }
        "stdio" => {
            // go-plugin's TestClient_grpcSyncStdio: what the plugin writes arrives exactly.
            let (out, err) = (
                Collector::new(Duration::ZERO),
                Collector::new(Duration::ZERO),
            );
            launch.sync = Some((out.clone(), err.clone()));
            let plugin = launch.start().await?;
            let (mut test, _) = clients(&plugin)?;
            let (want_out, want_err) = ("stdout from the plugin\n", "stderr from the plugin\n");
            test.print_stdio(PrintStdioRequest {
                stdout: want_out.into(),
                stderr: want_err.into(),
            })
            .await?;
            out.wait_for(want_out.len() as u64, Duration::from_secs(10))
                .await;
            err.wait_for(want_err.len() as u64, Duration::from_secs(10))
                .await;
            report("stdout", out.text());
            report("stderr", err.text());
            kill(&plugin).await;
        }
        "flood" => {
            // FIXTURE_FLOOD="<stdout bytes>,<stderr bytes>"; FIXTURE_SLOW_SINK_US slows the sinks.
            let sizes = std::env::var("FIXTURE_FLOOD").unwrap_or_else(|_| "1048576,1048576".into());
            let (out_len, err_len) = sizes
                .split_once(',')
                .and_then(|(o, e)| Some((o.parse::<u64>().ok()?, e.parse::<u64>().ok()?)))
                .context("FIXTURE_FLOOD")?;
            let delay = std::env::var("FIXTURE_SLOW_SINK_US")
                .ok()
                .and_then(|v| v.parse().ok())
                .map_or(Duration::ZERO, Duration::from_micros);
            let (out, err) = (Collector::new(delay), Collector::new(delay));
            launch.sync = Some((out.clone(), err.clone()));
            let plugin = launch.start().await?;
            let (_, mut kv) = clients(&plugin)?;
            let start = Instant::now();
            kv.put(PutRequest {
                key: "flood".into(),
                value: sizes.clone().into_bytes().into(),
            })
            .await?;
            let got_out = out.wait_for(out_len, Duration::from_secs(120)).await;
            let got_err = err.wait_for(err_len, Duration::from_secs(120)).await;
            let elapsed = start.elapsed();
            report("stdout_bytes", got_out);
            report("stderr_bytes", got_err);
            report("stdout_intact", out.intact());
            report("stderr_intact", err.intact());
            report("elapsed_ms", elapsed.as_millis() as u64);
            kill(&plugin).await;
        }
        "logs" => {
            // The plugin's log lines reach the host's log at their level, with their fields.
            let plugin = launch.start().await?;
            let (mut test, _) = clients(&plugin)?;
            use plugwire_interop::pb::{PrintKvRequest, print_kv_request::Value};
            for (key, value) in [
                ("hello", Value::ValueString("world".into())),
                ("answer", Value::ValueInt(42)),
            ] {
                test.print_kv(PrintKvRequest {
                    key: key.into(),
                    value: Some(value),
                })
                .await?;
            }
            kill(&plugin).await;
            report("log_lines", plugin_logs(|l| l.contains("PrintKV called")));
        }
        "panic-logs" => {
            // A plugin that panics: its crash trace reaches the host's log at error level.
            let plugin = launch.start().await?;
            let (mut test, _) = clients(&plugin)?;
            let _ = test
                .panic(PanicRequest {
                    message: "fixture crash".into(),
                })
                .await;
            let _ = tokio::time::timeout(Duration::from_secs(10), plugin.wait()).await;
            plugin.kill().await;
            report("error_lines", plugin_logs(|l| l.starts_with("[ERROR]")));
        }
        "reattach" | "reattach-missing" => {
            // FIXTURE_REATTACH holds `{"name": <reattach configuration>}` from a plugin's debug mode.
            let json = std::env::var("FIXTURE_REATTACH").context("FIXTURE_REATTACH")?;
            let map = plugwire_protocol::reattach::parse_map(&json)?;
            let (_, mut reattach) = map.into_iter().next().context("empty reattach map")?;
            if options.scenario == "reattach-missing" {
                // A process that is gone and an address nobody listens on.
                reattach.pid = 0x3fff_fff0;
                reattach.addr.string = std::env::temp_dir()
                    .join("plugin-gone")
                    .display()
                    .to_string();
            }
            let version = reattach.protocol_version;
            let config = PluginConfig::reattach(reattach)
                .plugins(version, [PLUGIN_NAME])
                .build();
            let plugin = match Plugin::launch(config).await {
                Ok(plugin) => plugin,
                Err(e) => {
                    report("error", e.to_string());
                    report("error_kind", format!("{:?}", e.kind()));
                    return Ok(());
                }
            };
            report("version", plugin.version());
            let (mut test, _) = clients(&plugin)?;
            report(
                "double",
                test.double(TestRequest { input: 21 })
                    .await?
                    .into_inner()
                    .output,
            );
            // Killing a plugin in test mode is the plugin's business: it keeps running.
            plugin.kill().await;
            report("alive_after_kill", plugin.ping().await.is_ok());
            // When it does end, the reattached host notices.
            let pid = plugin.pid().context("no pid")?;
            nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(i32::try_from(pid)?),
                nix::sys::signal::Signal::SIGTERM,
            )?;
            let exited = tokio::time::timeout(Duration::from_secs(10), plugin.wait()).await;
            report("exit_observed", exited.is_ok());
        }
        "host-dies" | "host-panics" => {
            // The host goes away without stopping its plugin: SIGKILL, or a panic.
            let plugin = launch.start().await?;
            report("plugin_pid", plugin.pid().context("no pid")?);
            std::io::Write::flush(&mut std::io::stdout())?;
            if options.scenario == "host-panics" {
                panic!("the fixture host panics on purpose");
            }
            nix::sys::signal::kill(nix::unistd::getpid(), nix::sys::signal::Signal::SIGKILL)?;
        }
        "soak" => {
            // FIXTURE_SOAK launch/call/kill cycles (default 500): nothing may accumulate.
            let cycles: u32 = std::env::var("FIXTURE_SOAK")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(500);
            let cycle = async || -> anyhow::Result<()> {
                let plugin = launch.start().await?;
                let (mut test, _) = clients(&plugin)?;
                test.double(TestRequest { input: 1 }).await?;
                let report = plugin.kill().await;
                anyhow::ensure!(report.graceful, "a cycle did not stop gracefully");
                Ok(())
            };
            cycle().await?;
            let before = (count_fds(), count_children(), count_sockets());
            let start = Instant::now();
            for _ in 0..cycles {
                cycle().await?;
            }
            report("cycles", cycles);
            report("elapsed_ms", start.elapsed().as_millis() as u64);
            report("fds_grew", count_fds() - before.0);
            report("children_grew", count_children() - before.1);
            report("sockets_grew", count_sockets() - before.2);
            report("tasks", count_tasks());
        }
        "managed" => {
            // go-plugin's CleanupClients: several plugins stopped at once.
            let managed = plugwire_host::ManagedPlugins::new();
            for _ in 0..3 {
                let mut command = std::process::Command::new(&options.plugin);
                command.arg(&options.mode);
                let config = PluginConfig::builder(plugwire_interop::cookie(), command)
                    .plugins(1, [PLUGIN_NAME])
                    .build();
                managed.launch(config).await?;
            }
            report("managed", managed.len());
            let reports = managed.kill_all().await;
            report("graceful", reports.iter().all(|r| r.graceful));
            report(
                "exit_ok",
                reports
                    .iter()
                    .all(|r| r.status.is_some_and(|s| s.success())),
            );
            report("exited", reports.len() == 3);
        }
        "refused" => {
            // The plugin must not be reachable: the launch or the first call fails.
            match launch.start().await {
                Ok(plugin) => {
                    let ping = plugin.ping().await;
                    report("refused", ping.is_err());
                    report("error", status_text(ping));
                    plugin.kill().await;
                }
                Err(e) => {
                    report("refused", true);
                    report("error", e.to_string());
                }
            }
        }
        "stdio-large" => {
            // A handler writes more than a pipe holds, inline: every byte arrives, nothing hangs.
            let len: u64 = std::env::var("FIXTURE_STDIO_BYTES")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(256 << 10);
            let (out, err) = (
                Collector::new(Duration::ZERO),
                Collector::new(Duration::ZERO),
            );
            launch.sync = Some((out.clone(), err.clone()));
            let plugin = launch.start().await?;
            let (mut test, _) = clients(&plugin)?;
            let pattern: Vec<u8> = (0..len).map(plugwire_interop::flood_byte).collect();
            let call = test.print_stdio(PrintStdioRequest {
                stdout: pattern.clone(),
                stderr: pattern,
            });
            report("call", bounded_call(call).await);
            report(
                "stdout_bytes",
                out.wait_for(len, Duration::from_secs(20)).await,
            );
            report(
                "stderr_bytes",
                err.wait_for(len, Duration::from_secs(20)).await,
            );
            report("stdout_intact", out.intact());
            report("stderr_intact", err.intact());
            kill(&plugin).await;
        }
        "panic-once" => {
            // A handler panics and the plugin lives on: the trace reaches the host's log once,
            // and none of it arrives as forwarded stderr.
            let (out, err) = (
                Collector::new(Duration::ZERO),
                Collector::new(Duration::ZERO),
            );
            launch.sync = Some((out.clone(), err.clone()));
            let plugin = launch.start().await?;
            let (mut test, _) = clients(&plugin)?;
            let panicked = test
                .panic(PanicRequest {
                    message: "fixture crash".into(),
                })
                .await;
            report("panic_call", status_text(panicked));
            // A marker after the panic: once it is in, everything before it is too.
            let marker = "after the panic\n";
            let call = test.print_stdio(PrintStdioRequest {
                stdout: Vec::new(),
                stderr: marker.into(),
            });
            report("marker_call", bounded_call(call).await);
            err.wait_for(marker.len() as u64, Duration::from_secs(10))
                .await;
            kill(&plugin).await;
            report("forwarded_stderr", err.text());
            report(
                "panic_lines",
                plugin_logs(|l| l.contains("panic: fixture crash")).len(),
            );
        }
        "dial-twice" => {
            // Two dials of the plugin's first broker id before the plugin serves it (50 ms
            // later): go-plugin's first one connects, the second times out after 5 s.
            let plugin = launch.start().await?;
            let (mut test, _) = clients(&plugin)?;
            let broker = plugin.broker()?.clone();
            let dial = |broker: plugwire_host::Broker| {
                tokio::spawn(async move {
                    let start = Instant::now();
                    let channel = broker.dial(1).await;
                    let outcome = match channel {
                        Ok(channel) => {
                            match PingPongClient::new(channel).ping(PingRequest {}).await {
                                Ok(pong) => pong.into_inner().msg,
                                Err(e) => format!("error: {e}"),
                            }
                        }
                        Err(e) => format!("error: {}", plugwire_protocol::error_chain(&e)),
                    };
                    (outcome, start.elapsed().as_millis() as u64)
                })
            };
            let first = dial(broker.clone());
            tokio::task::yield_now().await;
            let second = dial(broker.clone());
            tokio::time::sleep(Duration::from_millis(50)).await;
            // The plugin serves its PingPong under its first id while answering this call.
            let id = broker.next_id();
            let _served = broker
                .accept_and_serve(id, Routes::new(PingPongServer::new(Pong)))
                .await?;
            let answer = test.bidirectional(BidirectionalRequest { id }).await?;
            report("plugin_id", answer.into_inner().id);
            let (first, second) = (first.await?, second.await?);
            report("dials", [&first.0, &second.0]);
            report("dial_ms", [first.1, second.1]);
            kill(&plugin).await;
        }
        "kill-timed" => {
            // How long kill takes, and how it ends, for whatever plugin (and wrapper) is given.
            let plugin = launch.start().await?;
            report("ping", status_text(plugin.ping().await));
            let start = Instant::now();
            let outcome = plugin.kill().await;
            report("kill_ms", start.elapsed().as_millis() as u64);
            report("graceful", outcome.graceful);
            report("exited", plugin.exited());
        }
        "exit-token" => {
            // Cancelling the token handed out does not make the plugin look gone.
            let plugin = launch.start().await?;
            let token = plugin.exit_token();
            token.cancel();
            report("exited_after_cancel", plugin.exited());
            report("ping", status_text(plugin.ping().await));
            kill(&plugin).await;
        }
        "drop-brokered" => {
            // Dropping the plugin without kill also stops what the host serves through the
            // broker, and removes its sockets.
            let before = (count_sockets(), count_tasks());
            let plugin = launch.start().await?;
            let broker = plugin.broker()?.clone();
            let id = broker.next_id();
            broker
                .accept_and_serve(id, Routes::new(PingPongServer::new(Pong)))
                .await?
                .detach();
            let held = broker
                .accept_and_serve(broker.next_id(), Routes::new(PingPongServer::new(Pong)))
                .await?;
            report("host_sockets_serving", count_sockets() - before.0);
            drop(plugin);
            let deadline = Instant::now() + Duration::from_secs(5);
            while count_sockets() > before.0 && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            report("host_sockets_left", count_sockets() - before.0);
            drop(held);
            let deadline = Instant::now() + Duration::from_secs(5);
            while count_tasks() > before.1 && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            report("host_tasks_left", count_tasks() - before.1);
        }
        "blocked-stderr-sink" => {
            // A raw stderr sink that blocks does not stop the host from talking to the plugin.
            let gate = Gate::default();
            let plugin = {
                let mut command = std::process::Command::new(&options.plugin);
                command.arg(&options.mode);
                let config = PluginConfig::builder(plugwire_interop::cookie(), command)
                    .plugins(1, [PLUGIN_NAME])
                    .stderr(gate.clone())
                    .build();
                Plugin::launch(config).await?
            };
            let (mut test, _) = clients(&plugin)?;
            let entered = tokio::time::timeout(Duration::from_secs(10), gate.entered()).await;
            report("sink_blocked", entered.is_ok());
            let call = test.double(TestRequest { input: 21 });
            report("double_while_blocked", bounded_call(call).await);
            gate.open();
            kill(&plugin).await;
        }
        "big-reply" => {
            // A reply over tonic's 4 MiB default reaches a dispensed client (go-plugin allows 2 GiB).
            let plugin = launch.start().await?;
            let mut bench = plugin.dispense(
                PLUGIN_NAME,
                plugwire_interop::bench_pb::bench_client::BenchClient::new,
            )?;
            let size = 6 << 20;
            let received = async {
                let mut stream = bench.download(format!("{size},{size}")).await?.into_inner();
                let mut total = 0usize;
                while let Some(chunk) = stream.message().await? {
                    total += chunk.len();
                }
                Ok::<_, Status>(total)
            };
            report(
                "reply_bytes",
                match received.await {
                    Ok(n) => json_number(n),
                    Err(e) => serde_json::Value::String(format!("error: {e}")),
                },
            );
            kill(&plugin).await;
        }
        "reattach-owned" | "reattach-pid0" => {
            // A reattached plugin that is not in test mode: kill asks it to shut down, but never
            // signals it (it is not our child); with pid 0 nothing keeps watching it once dropped.
            let json = std::env::var("FIXTURE_REATTACH").context("FIXTURE_REATTACH")?;
            let map = plugwire_protocol::reattach::parse_map(&json)?;
            let (_, mut reattach) = map.into_iter().next().context("empty reattach map")?;
            reattach.test = false;
            let pid = reattach.pid;
            let version = reattach.protocol_version;
            let attach = |reattach: plugwire_host::ReattachConfig| {
                let config = PluginConfig::reattach(reattach)
                    .plugins(version, [PLUGIN_NAME])
                    .build();
                Plugin::launch(config)
            };
            if options.scenario == "reattach-pid0" {
                reattach.pid = 0;
                let before = count_tasks();
                for _ in 0..20 {
                    let plugin = attach(reattach.clone()).await?;
                    plugin.ping().await?;
                }
                let deadline = Instant::now() + Duration::from_secs(5);
                while count_tasks() > before && Instant::now() < deadline {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                report("tasks_left", count_tasks() - before);
            }
            let plugin = attach(reattach).await?;
            report("ping", status_text(plugin.ping().await));
            let start = Instant::now();
            let outcome = plugin.kill().await;
            report("kill_ms", start.elapsed().as_millis() as u64);
            report("graceful", outcome.graceful);
            report("exited", plugin.exited());
            report("pid_alive_after_kill", pid != 0 && pid_alive(pid));
            report("host_errors", host_errors());
        }
        "tls-rejections" => tls_rejections(options).await?,
        "secure" => {
            // The right SHA-256 launches; a wrong one launches nothing.
            use sha2::Digest as _;
            let digest = sha2::Sha256::digest(std::fs::read(&options.plugin)?).to_vec();
            launch.secure = Some(plugwire_host::SecureConfig::sha256(digest.clone()));
            let plugin = launch.start().await?;
            report("right_checksum", "ok");
            plugin.kill().await;
            let mut wrong = digest;
            wrong[0] ^= 0xff;
            launch.secure = Some(plugwire_host::SecureConfig::sha256(wrong));
            match launch.start().await {
                Ok(plugin) => {
                    report("wrong_checksum", "launched");
                    plugin.kill().await;
                }
                Err(e) => {
                    report("wrong_checksum", format!("{:?}", e.kind()));
                    report("error", e.to_string());
                    report("launched", e.exit_status().is_some());
                }
            }
        }
        other => bail!("unknown scenario {other:?}"),
    }
    Ok(())
}

struct Pong;

#[tonic::async_trait]
impl PingPong for Pong {
    async fn ping(&self, _: Request<PingRequest>) -> Result<Response<PongResponse>, Status> {
        Ok(Response::new(PongResponse { msg: "pong".into() }))
    }
}

struct Adder;

#[tonic::async_trait]
impl AddHelper for Adder {
    async fn sum(&self, request: Request<SumRequest>) -> Result<Response<SumResponse>, Status> {
        let request = request.into_inner();
        Ok(Response::new(SumResponse {
            r: request.a + request.b,
        }))
    }
}

/// go-plugin's own broker test (`TestGRPC_App`): the host serves PingPong, the plugin dials it,
/// serves its own, and the host dials that. Returns what keeps both brokered services up.
async fn bidirectional(
    plugin: &Plugin,
    test: &mut TestClient<Channel>,
) -> anyhow::Result<(plugwire_host::BrokeredServer, Option<Channel>)> {
    let broker = plugin.broker()?;
    let id = broker.next_id();
    let served = broker
        .accept_and_serve(id, Routes::new(PingPongServer::new(Pong)))
        .await?;
    let response = test.bidirectional(BidirectionalRequest { id }).await;
    report("plugin_dialed_host", status_text(response.as_ref()));
    let Ok(response) = response else {
        return Ok((served, None));
    };
    let channel = broker.dial(response.into_inner().id).await?;
    let pong = PingPongClient::new(channel.clone())
        .ping(PingRequest {})
        .await?;
    report("host_dialed_plugin", pong.into_inner().msg);
    Ok((served, Some(channel)))
}

/// Adds `value` to `key` through the plugin, serving AddHelper for the call as go-plugin's
/// bidirectional example does.
async fn counter_put(
    plugin: &Plugin,
    counter: &mut CounterClient<Channel>,
    key: &str,
    value: i64,
) -> anyhow::Result<()> {
    let id = plugin.broker()?.next_id();
    let served = plugin
        .broker()?
        .accept_and_serve(id, Routes::new(AddHelperServer::new(Adder)))
        .await?;
    counter
        .put(counter::PutRequest {
            add_server: id,
            key: key.into(),
            value,
        })
        .await?;
    served.stop().await;
    Ok(())
}

/// The Rust fixture plugin's open file descriptors and tasks; `None` for other plugins.
async fn plugin_stats(counter: &mut CounterClient<Channel>) -> Option<(i64, i64)> {
    let mut get = async |key: &str| {
        counter
            .get(counter::GetRequest { key: key.into() })
            .await
            .ok()
            .map(|r| r.into_inner().value)
    };
    let fds = get("plugwire:fds").await.filter(|v| *v > 0)?;
    let tasks = get("plugwire:tasks").await.filter(|v| *v > 0)?;
    Some((fds, tasks))
}

fn count_fds() -> i64 {
    std::fs::read_dir("/proc/self/fd").map_or(-1, |d| d.count() as i64)
}

fn count_tasks() -> i64 {
    tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks() as i64
}

/// Child processes of this process, zombies included (an unreaped child is a leak too).
fn count_children() -> i64 {
    let me = std::process::id().to_string();
    std::fs::read_dir("/proc").map_or(-1, |entries| {
        entries
            .filter_map(Result::ok)
            .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
            .filter(|stat| {
                stat.rsplit_once(')')
                    .and_then(|(_, rest)| rest.split_whitespace().nth(1).map(|ppid| ppid == me))
                    .unwrap_or(false)
            })
            .count() as i64
    })
}

fn count_sockets() -> i64 {
    std::fs::read_dir(std::env::temp_dir()).map_or(-1, |d| {
        d.filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().starts_with("plugin"))
            .count() as i64
    })
}

/// Drives an AutoMTLS plugin by hand: a host that presents a certificate other than the one it
/// passed in `PLUGIN_CLIENT_CERT`, and a plaintext host, must both be refused; the right
/// certificate must work (which also shuts the plugin down gracefully).
async fn tls_rejections(options: &Options) -> anyhow::Result<()> {
    use plugwire_protocol::handshake::HandshakeLine;
    use plugwire_runtime::tls::{Identity, PinnedPeer, TlsConfigs};
    use plugwire_runtime::transport::{self, Address};
    use tokio::io::AsyncBufReadExt as _;

    let announced = Identity::generate()?;
    let stranger = Identity::generate()?;
    let mut child = tokio::process::Command::new(&options.plugin)
        .arg(&options.mode)
        .env("TEST_MAGIC_COOKIE", "test")
        .env("PLUGIN_PROTOCOL_VERSIONS", "1")
        .env("PLUGIN_CLIENT_CERT", announced.cert_pem())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let stdout = child.stdout.take().context("no stdout")?;
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let line = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
        .await??
        .context("no handshake line")?;
    let line = HandshakeLine::parse(&line)?;
    let plugin_cert = line
        .server_cert
        .clone()
        .context("no certificate in the handshake line")?;
    let pinned = PinnedPeer::new([plugin_cert])?;
    let address = Address::new(line.network, &line.address);

    let attempt = |tls: Option<TlsConfigs>| {
        let address = address.clone();
        async move {
            let endpoint = plugwire_runtime::grpc::endpoint(None);
            let channel = plugwire_runtime::grpc::lazy_channel(endpoint, move || {
                let address = address.clone();
                let client = tls.as_ref().and_then(|t| t.client.clone());
                async move {
                    let io = transport::dial(&address).await?;
                    match client {
                        Some(config) => transport::tls_connect(io, config).await,
                        None => Ok(io),
                    }
                }
            });
            let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
            let checked = tokio::time::timeout(
                Duration::from_secs(10),
                health.check(tonic_health::pb::HealthCheckRequest {
                    service: "plugin".into(),
                }),
            )
            .await;
            (matches!(checked, Ok(Ok(_))), channel)
        }
    };
    let (stranger_ok, _) = attempt(Some(TlsConfigs::pinned(&stranger, &pinned)?)).await;
    report("stranger_refused", !stranger_ok);
    let (plaintext_ok, _) = attempt(None).await;
    report("plaintext_refused", !plaintext_ok);
    let (right_ok, channel) = attempt(Some(TlsConfigs::pinned(&announced, &pinned)?)).await;
    report("right_cert_ok", right_ok);
    let mut controller =
        plugwire_runtime::pb::grpc_controller_client::GrpcControllerClient::new(channel);
    let _ = controller.shutdown(plugwire_runtime::pb::Empty {}).await;
    let status = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
    report("exit_ok", matches!(status, Ok(Ok(s)) if s.success()));
    Ok(())
}

/// The plugin's log lines as the host logged them: `[LEVEL] message key=value ...`.
static PLUGIN_LOGS: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// The host library's own error events (their source location).
static HOST_ERRORS: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Collects the host's `plugwire::plugin` events into [`PLUGIN_LOGS`], and the host library's
/// errors into [`HOST_ERRORS`].
struct PluginLogs;

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for PluginLogs {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        let target = event.metadata().target();
        if target.starts_with("plugwire_host") && *event.metadata().level() == tracing::Level::ERROR
        {
            if let Ok(mut errors) = HOST_ERRORS.lock() {
                errors.push(event.metadata().name().to_owned());
            }
            return;
        }
        if target != "plugwire::plugin" {
            return;
        }
        #[derive(Default)]
        struct Text(String, String);
        impl tracing::field::Visit for Text {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                match field.name() {
                    "message" => self.0 = format!("{value:?}"),
                    "fields" => self.1 = format!("{value:?}"),
                    _ => {}
                }
            }
        }
        let mut text = Text::default();
        event.record(&mut text);
        if let Ok(mut logs) = PLUGIN_LOGS.lock() {
            logs.push(format!(
                "[{}] {} {}",
                event.metadata().level(),
                text.0,
                text.1
            ));
        }
    }
}

fn plugin_logs(filter: impl Fn(&str) -> bool) -> Vec<String> {
    PLUGIN_LOGS
        .lock()
        .map(|logs| logs.iter().filter(|l| filter(l)).cloned().collect())
        .unwrap_or_default()
}

fn main() -> ExitCode {
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    // Benchmarks measure the library, not the log formatting.
    let default = if std::env::args().any(|a| a.starts_with("bench:")) {
        "warn"
    } else {
        "debug"
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("PLUGWIRE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
        .with(PluginLogs)
        .try_init();
    let result = parse_args().and_then(|options| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        runtime.block_on(run(&options))
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("plugwire-fixture-host: {e:#}");
            ExitCode::FAILURE
        }
    }
}

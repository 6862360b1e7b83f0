//! plugwire's benchmark driver: the scenarios of `../shared/docs/performance.md` for the four
//! host/plugin pairings (Go/Go, Go/Rust, Rust/Go, Rust/Rust), interleaved round after round so
//! that machine drift cancels, unpinned and pinned to one CPU, with the floor (S11) measured in
//! the same run. Each figure is reported with `ratio_vs_go` (to Go host + Go plugin) and
//! `ratio_vs_floor`.
//!
//! The workloads run inside the fixture hosts (`-scenario bench:<name>`, the same in Go and
//! Rust), which print raw samples; this driver computes the statistics and writes
//! `report.json`, `report.md` and `ratios.svg`.
//!
//! `plugwire-bench [--quick | --smoke] [--rounds N] [--plugin-runtime current-thread|multi-thread]
//! [--bin-dir DIR] [--go-dir DIR] [--out DIR]`
//!
//! `--plugin-runtime multi-thread` runs the Rust fixture plugin's `serve()` on a multi-thread
//! tokio runtime instead of the current-thread one plugwire recommends, to measure that choice.

#![allow(clippy::print_stdout, clippy::print_stderr)] // a command-line tool

use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};

mod report;

/// How much work each run does.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Profile {
    /// `make bench`: 5 rounds, unpinned and pinned.
    Full,
    /// `make bench QUICK=1`: one round, smaller workloads, unpinned and pinned, < 3 minutes.
    Quick,
    /// `make test`: the smallest workloads, unpinned, to keep the driver from rotting.
    Smoke,
}

struct Args {
    profile: Profile,
    rounds: usize,
    bin_dir: PathBuf,
    go_dir: PathBuf,
    out: PathBuf,
    plugin_runtime: String,
}

fn parse_args() -> anyhow::Result<Args> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("workspace root")?
        .to_path_buf();
    let mut args = Args {
        profile: Profile::Full,
        rounds: 0,
        bin_dir: root.join("target/release"),
        go_dir: root.join("target/go-fixtures"),
        out: root.join("target/bench"),
        plugin_runtime: "current-thread".into(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--quick" => args.profile = Profile::Quick,
            "--smoke" => args.profile = Profile::Smoke,
            "--rounds" => args.rounds = value()?.parse()?,
            "--bin-dir" => args.bin_dir = value()?.into(),
            "--go-dir" => args.go_dir = value()?.into(),
            "--out" => args.out = value()?.into(),
            "--plugin-runtime" => match value()?.as_str() {
                r @ ("current-thread" | "multi-thread") => args.plugin_runtime = r.into(),
                r => bail!("--plugin-runtime is current-thread or multi-thread, not {r:?}"),
            },
            other => bail!("unknown argument {other:?}"),
        }
    }
    if args.rounds == 0 {
        args.rounds = match args.profile {
            Profile::Full => 5,
            Profile::Quick | Profile::Smoke => 1,
        };
    }
    Ok(args)
}

/// A host or plugin implementation.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Lang {
    Go,
    Rust,
}

/// Host language, plugin language.
const PAIRINGS: [(Lang, Lang); 4] = [
    (Lang::Go, Lang::Go),
    (Lang::Go, Lang::Rust),
    (Lang::Rust, Lang::Go),
    (Lang::Rust, Lang::Rust),
];

fn label((host, plugin): (Lang, Lang)) -> &'static str {
    match (host, plugin) {
        (Lang::Go, Lang::Go) => "GG",
        (Lang::Go, Lang::Rust) => "GR",
        (Lang::Rust, Lang::Go) => "RG",
        (Lang::Rust, Lang::Rust) => "RR",
    }
}

/// One workload of a fixture host.
struct Workload {
    bench: &'static str,
    /// The fixture plugin's mode.
    mode: &'static str,
    tls: bool,
    env: Vec<(&'static str, String)>,
    /// Measures the host's language alone (no plugin): run as GG and RR only.
    host_only: bool,
}

fn workloads(profile: Profile) -> Vec<Workload> {
    let pick = |full: usize, quick: usize, smoke: usize| {
        match profile {
            Profile::Full => full,
            Profile::Quick => quick,
            Profile::Smoke => smoke,
        }
        .to_string()
    };
    let w = |bench, tls, env: Vec<(&'static str, String)>| Workload {
        bench,
        mode: if bench.starts_with("netrpc-") {
            "netrpc"
        } else {
            "serve"
        },
        tls,
        env,
        host_only: false,
    };
    vec![
        w("cold", false, vec![("BENCH_N", pick(30, 10, 3))]),
        w("cold", true, vec![("BENCH_N", pick(30, 10, 3))]),
        w("unary", false, vec![("BENCH_N", pick(10_000, 2_000, 200))]),
        w("netrpc-cold", false, vec![("BENCH_N", pick(30, 10, 3))]),
        w(
            "netrpc-unary",
            false,
            vec![("BENCH_N", pick(10_000, 2_000, 200))],
        ),
        w(
            "concurrent",
            false,
            vec![("BENCH_MILLIS", pick(2_000, 700, 200))],
        ),
        w("bulk", false, vec![("BENCH_N", pick(128, 32, 4))]),
        // Terraform-sized states: 8 and 64 MiB each way, to plugins that accept such requests
        // (grpc-go and tonic servers refuse over 4 MiB by default; Terraform's raise it).
        Workload {
            mode: "serve-big",
            ..w(
                "bulk",
                false,
                vec![
                    ("BENCH_N", pick(24, 8, 2)),
                    ("BENCH_SIZE", (8 << 20).to_string()),
                ],
            )
        },
        Workload {
            mode: "serve-big",
            ..w(
                "bulk",
                false,
                vec![
                    ("BENCH_N", pick(6, 3, 1)),
                    ("BENCH_SIZE", (64 << 20).to_string()),
                ],
            )
        },
        w(
            "stream",
            false,
            vec![("BENCH_BYTES", pick(256 << 20, 64 << 20, 4 << 20))],
        ),
        w("broker", false, vec![("BENCH_N", pick(300, 100, 10))]),
        w("broker", true, vec![("BENCH_N", pick(300, 100, 10))]),
        w(
            "stdio",
            false,
            vec![("BENCH_BYTES", pick(256 << 20, 64 << 20, 4 << 20))],
        ),
        w("fleet", false, vec![("BENCH_FLEET", pick(50, 50, 5))]),
        w("fleet", true, vec![("BENCH_FLEET", pick(50, 50, 5))]),
        Workload {
            bench: "crypto",
            mode: "serve",
            tls: false,
            env: vec![("BENCH_N", pick(50, 20, 3))],
            host_only: true,
        },
    ]
}

/// Where the fixture executables are.
struct Binaries {
    rust_host: PathBuf,
    rust_plugin: PathBuf,
    go_host: PathBuf,
    go_plugin: PathBuf,
    noop: PathBuf,
    /// The example plugins, for the binary-size figure.
    rust_kv_plugin: PathBuf,
    go_kv_plugin: PathBuf,
    /// The Rust fixture plugin's runtime (`PLUGWIRE_FIXTURE_RUNTIME`).
    rust_plugin_runtime: String,
}

impl Binaries {
    fn locate(args: &Args) -> anyhow::Result<Self> {
        let b = Binaries {
            rust_host: args.bin_dir.join("plugwire-fixture-host"),
            rust_plugin: args.bin_dir.join("plugwire-fixture-plugin"),
            go_host: args.go_dir.join("fixture-host"),
            go_plugin: args.go_dir.join("fixture-plugin"),
            noop: args.go_dir.join("noop"),
            rust_kv_plugin: args.bin_dir.join("kv-plugin"),
            go_kv_plugin: args.go_dir.join("kv-go-plugin-stripped"),
            rust_plugin_runtime: args.plugin_runtime.clone(),
        };
        for path in [
            &b.rust_host,
            &b.rust_plugin,
            &b.go_host,
            &b.go_plugin,
            &b.noop,
        ] {
            if !path.exists() {
                bail!(
                    "{} is missing: `make bench` builds everything it needs",
                    path.display()
                );
            }
        }
        Ok(b)
    }

    fn host(&self, lang: Lang) -> &Path {
        match lang {
            Lang::Go => &self.go_host,
            Lang::Rust => &self.rust_host,
        }
    }

    fn plugin(&self, lang: Lang) -> &Path {
        match lang {
            Lang::Go => &self.go_plugin,
            Lang::Rust => &self.rust_plugin,
        }
    }
}

/// The raw measurements: per figure, per pin mode, per pairing, samples (latencies, all rounds
/// pooled) or per-round values.
#[derive(Default)]
pub(crate) struct Store {
    pub(crate) samples: BTreeMap<(String, &'static str, &'static str), Vec<f64>>,
}

impl Store {
    fn add(&mut self, figure: &str, pin: &'static str, pairing: &'static str, values: &[f64]) {
        self.samples
            .entry((figure.to_owned(), pin, pairing))
            .or_default()
            .extend_from_slice(values);
    }
}

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("\nplugwire-bench: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<()> {
    let args = parse_args()?;
    let bins = Binaries::locate(&args)?;
    let pinning = args.profile != Profile::Smoke && taskset_available();
    let pins: &[&'static str] = if pinning {
        &["unpinned", "pinned"]
    } else {
        &["unpinned"]
    };
    let workloads = workloads(args.profile);
    let started = Instant::now();
    let mut store = Store::default();
    for round in 1..=args.rounds {
        for &pin in pins {
            floor(&bins, pin, args.profile, &mut store)?;
            for workload in &workloads {
                for pairing in PAIRINGS {
                    if workload.host_only && pairing.0 != pairing.1 {
                        continue;
                    }
                    progress(&format!(
                        "[round {round}/{} {pin}] {}{} {} ({:.0?} so far)",
                        args.rounds,
                        workload.bench,
                        if workload.tls { " mtls" } else { "" },
                        label(pairing),
                        started.elapsed()
                    ));
                    let result = run_workload(&bins, workload, pairing, pin)?;
                    record(&mut store, workload, label(pairing), pin, &result)?;
                }
            }
        }
    }
    progress("");
    let sizes = [
        ("GG", file_size(&bins.go_kv_plugin)),
        ("RR", file_size(&bins.rust_kv_plugin)),
    ];
    for (pairing, size) in sizes {
        if let Some(size) = size {
            store.add(
                "S9 stripped plugin binary (MB)",
                "unpinned",
                pairing,
                &[size / 1e6],
            );
        }
    }
    std::fs::create_dir_all(&args.out)?;
    let report = report::build(
        &store,
        args.profile == Profile::Full,
        &args.plugin_runtime,
        started.elapsed(),
    );
    let json_path = args.out.join("report.json");
    std::fs::write(&json_path, serde_json::to_string_pretty(&report.json)?)?;
    std::fs::write(args.out.join("report.md"), &report.markdown)?;
    std::fs::write(args.out.join("ratios.svg"), &report.svg)?;
    println!("{}", report.markdown);
    println!(
        "wrote {} (and report.md, ratios.svg) in {:.0?}",
        json_path.display(),
        started.elapsed()
    );
    Ok(())
}

/// One progress line, redrawn in place (only on a terminal: CI logs get nothing).
fn progress(line: &str) {
    use std::io::IsTerminal as _;
    if !std::io::stderr().is_terminal() {
        return;
    }
    let mut stderr = std::io::stderr().lock();
    let _ = write!(stderr, "\r\x1b[K{line}");
    let _ = stderr.flush();
}

fn taskset_available() -> bool {
    Command::new("taskset")
        .args(["-c", "0", "true"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn file_size(path: &Path) -> Option<f64> {
    std::fs::metadata(path).ok().map(|m| m.len() as f64)
}

/// Runs one workload in a fresh temp dir, bounded in time; returns its `result=` JSON.
fn run_workload(
    bins: &Binaries,
    workload: &Workload,
    (host, plugin): (Lang, Lang),
    pin: &str,
) -> anyhow::Result<Value> {
    let tmp = std::env::temp_dir().join(format!("plugwire-bench-{}", std::process::id()));
    std::fs::create_dir_all(&tmp)?;
    let mut command = if pin == "pinned" {
        let mut c = Command::new("taskset");
        c.args(["-c", "0"]).arg(bins.host(host));
        c.env("GOMAXPROCS", "1");
        c
    } else {
        Command::new(bins.host(host))
    };
    command
        .arg("-plugin")
        .arg(bins.plugin(plugin))
        .args(["-mode", workload.mode])
        .args(["-scenario", &format!("bench:{}", workload.bench)])
        .env("TMPDIR", &tmp)
        .env("PLUGWIRE_FIXTURE_RUNTIME", &bins.rust_plugin_runtime)
        .envs(workload.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if workload.tls {
        command.arg("-mtls");
    }
    let output = run_bounded(command, Duration::from_secs(300))
        .with_context(|| format!("bench:{} {}", workload.bench, label((host, plugin))))?;
    let _ = std::fs::remove_dir_all(&tmp);
    let line = output
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("result="))
        .with_context(|| {
            format!(
                "bench:{} {} printed no result (exit {:?}); stderr:\n{}",
                workload.bench,
                label((host, plugin)),
                output.status,
                output.stderr
            )
        })?;
    Ok(serde_json::from_str(line)?)
}

struct Output {
    status: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Runs a command to completion, killing it after `limit`.
fn run_bounded(mut command: Command, limit: Duration) -> anyhow::Result<Output> {
    let mut child = command.spawn()?;
    let (mut out, mut err) = (
        child.stdout.take().context("stdout")?,
        child.stderr.take().context("stderr")?,
    );
    let readers = (
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = out.read_to_string(&mut s);
            s
        }),
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = err.read_to_string(&mut s);
            s
        }),
    );
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("timed out after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    Ok(Output {
        status: status.code(),
        stdout: readers.0.join().unwrap_or_default(),
        stderr: readers.1.join().unwrap_or_default(),
    })
}

fn samples_us(result: &Value, key: &str) -> anyhow::Result<Vec<f64>> {
    let list = result[key]
        .as_array()
        .with_context(|| format!("no {key} in {result}"))?;
    Ok(list
        .iter()
        .filter_map(Value::as_f64)
        .map(|ns| ns / 1e3)
        .collect())
}

fn number(result: &Value, key: &str) -> anyhow::Result<f64> {
    result[key]
        .as_f64()
        .with_context(|| format!("no {key} in {result}"))
}

fn mbps(bytes: f64, ns: f64) -> f64 {
    bytes / 1e6 / (ns / 1e9)
}

/// Files one workload's result under its figures.
fn record(
    store: &mut Store,
    workload: &Workload,
    pairing: &'static str,
    pin: &'static str,
    r: &Value,
) -> anyhow::Result<()> {
    let tls = if workload.tls { ", AutoMTLS" } else { "" };
    match workload.bench {
        "cold" => {
            store.add(
                &format!("S1 cold start to first reply{tls} (µs)"),
                pin,
                pairing,
                &samples_us(r, "cold_ns")?,
            );
            if !workload.tls {
                store.add(
                    "Kill → process gone (µs)",
                    pin,
                    pairing,
                    &samples_us(r, "kill_ns")?,
                );
            }
        }
        "unary" => {
            store.add(
                "S2 unary 16 B (µs)",
                pin,
                pairing,
                &samples_us(r, "lat_ns")?,
            );
            store.add(
                "S9 idle RSS of one plugin (MiB)",
                pin,
                pairing,
                &[number(r, "idle_rss_kb")? / 1024.0],
            );
        }
        "netrpc-cold" => store.add(
            "N1 netrpc cold start to first reply (µs)",
            pin,
            pairing,
            &samples_us(r, "cold_ns")?,
        ),
        "netrpc-unary" => store.add(
            "N2 netrpc unary 16 B (µs)",
            pin,
            pairing,
            &samples_us(r, "lat_ns")?,
        ),
        "concurrent" => {
            let rps = number(r, "calls")? / (number(r, "elapsed_ns")? / 1e9);
            store.add("S3 16 concurrent callers (rps)", pin, pairing, &[rps]);
        }
        "bulk" => {
            let bytes = number(r, "bytes")?;
            let mib = number(r, "size")? / f64::from(1u32 << 20);
            store.add(
                &format!("S4 {mib} MiB unary host→plugin (MB/s)"),
                pin,
                pairing,
                &[mbps(bytes, number(r, "up_ns")?)],
            );
            store.add(
                &format!("S4 {mib} MiB unary plugin→host (MB/s)"),
                pin,
                pairing,
                &[mbps(bytes, number(r, "down_ns")?)],
            );
        }
        "stream" => {
            let rate = mbps(number(r, "bytes")?, number(r, "elapsed_ns")?);
            store.add("S5 streaming 64 KiB messages (MB/s)", pin, pairing, &[rate]);
        }
        "broker" => {
            store.add(
                &format!("S6 broker round trip{tls} (µs)"),
                pin,
                pairing,
                &samples_us(r, "lat_ns")?,
            );
        }
        "stdio" => {
            if r["intact"] != json!(true) {
                bail!("stdio output was not intact: {r}");
            }
            let rate = mbps(number(r, "bytes")?, number(r, "elapsed_ns")?);
            store.add("S7 stdio forwarding (MB/s)", pin, pairing, &[rate]);
        }
        "fleet" => {
            let ms = number(r, "elapsed_ns")? / 1e6;
            store.add(
                &format!("S8 plugins started at once{tls} (ms)"),
                pin,
                pairing,
                &[ms],
            );
            if !workload.tls {
                let pss: Vec<f64> = r["pss_kb"]
                    .as_array()
                    .context("pss_kb")?
                    .iter()
                    .filter_map(Value::as_f64)
                    .filter(|v| *v > 0.0)
                    .map(|kb| kb / 1024.0)
                    .collect();
                store.add("S9 PSS per plugin, all running (MiB)", pin, pairing, &pss);
            }
        }
        "crypto" => {
            store.add(
                "S10 P-521 certificate generation (µs)",
                pin,
                pairing,
                &samples_us(r, "certgen_ns")?,
            );
            store.add(
                "S10 mutual TLS handshake, P-521 (µs)",
                pin,
                pairing,
                &samples_us(r, "handshake_ns")?,
            );
        }
        other => bail!("no figures for {other}"),
    }
    Ok(())
}

/// S11, the floor: a raw unix-socket round trip, socket-pair throughput, and spawning a static
/// no-op binary, on this machine now, in the same pin mode.
fn floor(
    bins: &Binaries,
    pin: &'static str,
    profile: Profile,
    store: &mut Store,
) -> anyhow::Result<()> {
    use std::os::unix::net::UnixStream;
    progress(&format!("[{pin}] S11 floor"));
    let pinned = pin == "pinned";
    let pin_here = move || {
        if pinned {
            let mut set = nix::sched::CpuSet::new();
            let _ = set.set(0);
            let _ = nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set);
        }
    };
    let n = if profile == Profile::Smoke {
        2_000
    } else {
        20_000
    };
    let (mut a, mut b) = UnixStream::pair()?;
    let echo = std::thread::spawn(move || {
        pin_here();
        let mut byte = [0u8; 1];
        while b.read_exact(&mut byte).is_ok() {
            if b.write_all(&byte).is_err() {
                break;
            }
        }
    });
    let mut rtt = Vec::with_capacity(n);
    std::thread::scope(|s| {
        s.spawn(|| {
            pin_here();
            let mut byte = [1u8; 1];
            for _ in 0..n {
                let start = Instant::now();
                if a.write_all(&byte).is_err() || a.read_exact(&mut byte).is_err() {
                    break;
                }
                rtt.push(start.elapsed().as_nanos() as f64 / 1e3);
            }
        });
    });
    drop(a);
    let _ = echo.join();
    store.add("S11 floor: unix socket round trip (µs)", pin, "floor", &rtt);

    let total: usize = if profile == Profile::Smoke {
        64 << 20
    } else {
        1 << 30
    };
    let (mut tx, mut rx) = UnixStream::pair()?;
    let start = Instant::now();
    let writer = std::thread::spawn(move || {
        pin_here();
        let chunk = vec![0u8; 64 << 10];
        let mut sent = 0;
        while sent < total && tx.write_all(&chunk).is_ok() {
            sent += chunk.len();
        }
    });
    pin_here();
    let mut buf = vec![0u8; 64 << 10];
    let mut got = 0usize;
    while got < total {
        match rx.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got += n,
        }
    }
    let _ = writer.join();
    let rate = mbps(got as f64, start.elapsed().as_nanos() as f64);
    store.add(
        "S11 floor: socket pair throughput (MB/s)",
        pin,
        "floor",
        &[rate],
    );

    let spawns = if profile == Profile::Smoke { 10 } else { 100 };
    let mut spawn = Vec::with_capacity(spawns);
    for _ in 0..spawns {
        let mut command = if pinned {
            let mut c = Command::new("taskset");
            c.args(["-c", "0"]).arg(&bins.noop);
            c
        } else {
            Command::new(&bins.noop)
        };
        let start = Instant::now();
        command.status()?;
        spawn.push(start.elapsed().as_nanos() as f64 / 1e3);
    }
    store.add(
        "S11 floor: spawn + exit of a static binary (µs)",
        pin,
        "floor",
        &spawn,
    );
    Ok(())
}

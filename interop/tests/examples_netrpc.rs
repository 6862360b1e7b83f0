//! go-plugin v1.8.0's own example programs against plugwire's drop-in peers, both directions and
//! Rust with Rust: `examples/basic` (the netrpc greeter), `examples/grpc` over net/rpc
//! (`KV_PROTO=netrpc`, `plugin-go-netrpc`), `examples/negotiated` (version 2 over netrpc, 3 over
//! gRPC) and `examples/streaming`. Each program runs as go-plugin's does: the same command line,
//! environment variables, plugin paths (`./plugin/greeter`, `./kv-plugin`, `./plugin/streamer`,
//! made in a fresh directory) and files.

// Needs the Go fixtures; without them `needs_go.rs` says what did not run.
#![cfg(not(plugwire_no_go))]

use std::path::{Path, PathBuf};

use plugwire_interop::harness::{Expect, Fixtures, Outcome, Run, example_binary, verdict};
use serde_json::Value;

fn fixtures() -> Fixtures {
    Fixtures::new(
        env!("CARGO_BIN_EXE_plugwire-fixture-host"),
        env!("CARGO_BIN_EXE_plugwire-fixture-plugin"),
    )
}

/// A go-plugin example's binary.
fn go(name: &str) -> PathBuf {
    fixtures().go(name)
}

/// A fresh directory where `plugin` answers to `path` (`plugin/greeter`, `kv-plugin`, ...), as
/// the example hosts that run a fixed path expect.
fn dir_with_plugin(path: &str, plugin: &Path) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    let link = dir.path().join(path);
    if let Some(parent) = link.parent() {
        std::fs::create_dir_all(parent).expect("plugin directory");
    }
    std::os::unix::fs::symlink(plugin, &link).expect("plugin link");
    dir
}

/// Runs `host args...` in `dir` with `env` (bounded by the harness: 60 s, then killed).
async fn run_in(dir: &Path, host: &Path, env: &[(&str, &str)], args: &[&str]) -> Outcome {
    let mut run = Run::command(host, args);
    for (key, value) in env {
        run = run.env(key, *value);
    }
    run.dir = Some(dir.to_path_buf());
    run.run().await
}

fn ran_clean(outcome: &Outcome, e: &mut Expect) {
    e.that(outcome.success(), || "the host failed".into())
        .that(!outcome.leaked, || "a process outlived its host".into())
        .that(outcome.leftovers.is_empty(), || {
            format!("left behind: {:?}", outcome.leftovers)
        });
}

/// Exit status 1 and exactly `stdout`.
fn failed_with(outcome: &Outcome, stdout: &str, e: &mut Expect) {
    e.that(outcome.status.and_then(|s| s.code()) == Some(1), || {
        format!("exit status {:?}, want 1", outcome.status)
    })
    .that(outcome.stdout == stdout, || {
        format!("stdout {:?}, want {stdout:?}", outcome.stdout)
    });
}

/// The stderr lines that are hclog JSON objects.
fn json_lines(stderr: &str) -> Vec<Value> {
    stderr
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(Value::is_object)
        .collect()
}

/// The first JSON log line whose `@message` is `message`.
fn json_line(stderr: &str, message: &str) -> Option<Value> {
    json_lines(stderr)
        .into_iter()
        .find(|line| line["@message"] == message)
}

// --- examples/basic: the netrpc greeter ---------------------------------------------------------

/// Runs `host` in a directory where `plugin` is `./plugin/greeter`; checks that it greeted with
/// the plugin's `Hello!` and that the plugin's log lines reached the host's log (stdout, at debug
/// level, in both hosts).
async fn greet(cell: &str, host: &Path, plugin: &Path) {
    let dir = dir_with_plugin("plugin/greeter", plugin);
    let outcome = run_in(dir.path(), host, &[], &[]).await;
    let mut e = Expect::default();
    ran_clean(&outcome, &mut e);
    e.that(outcome.stdout.lines().any(|l| l == "Hello!"), || {
        "no line `Hello!` on stdout".into()
    })
    .that(
        outcome
            .stdout
            .lines()
            .any(|l| l.contains("message from GreeterHello.Greet")),
        || "the plugin's log line from Greet is not in the host's log".into(),
    )
    .that(
        outcome
            .stdout
            .lines()
            .any(|l| l.contains("message from plugin") && l.contains("foo=bar")),
        || "the plugin's first log line (foo=bar) is not in the host's log".into(),
    );
    verdict(cell, &outcome, e.result());
}

/// plugwire's `greeter-host` with go-plugin's `examples/basic/plugin`.
#[tokio::test]
async fn rust_greeter_host_with_go_example_plugin() {
    greet(
        "greeter-host/basic-plugin",
        &example_binary("greeter-host"),
        &go("greeter-go-plugin"),
    )
    .await;
}

/// go-plugin's `examples/basic` host with plugwire's `greeter-plugin`.
#[tokio::test]
async fn go_example_greeter_host_with_rust_plugin() {
    greet(
        "basic/greeter-plugin",
        &go("greeter-go-host"),
        &example_binary("greeter-plugin"),
    )
    .await;
}

/// plugwire's greeter host and plugin.
#[tokio::test]
async fn rust_greeter_host_with_rust_plugin() {
    greet(
        "greeter-host/greeter-plugin",
        &example_binary("greeter-host"),
        &example_binary("greeter-plugin"),
    )
    .await;
}

/// Both greeter hosts allow netrpc only (go-plugin's default): a gRPC plugin at
/// `./plugin/greeter` is refused with go-plugin's error, exit status 1; plugwire's host stops it.
#[tokio::test]
async fn greeter_hosts_refuse_a_grpc_plugin() {
    for (cell, host) in [
        ("greeter-host/grpc-plugin", example_binary("greeter-host")),
        ("basic/grpc-plugin", go("greeter-go-host")),
    ] {
        let dir = dir_with_plugin("plugin/greeter", &example_binary("kv-plugin"));
        let outcome = run_in(dir.path(), &host, &[], &[]).await;
        let mut e = Expect::default();
        e.that(outcome.status.and_then(|s| s.code()) == Some(1), || {
            format!("exit status {:?}, want 1", outcome.status)
        })
        .that(
            outcome
                .stderr
                .contains("unsupported plugin protocol \"grpc\". Supported: [netrpc]"),
            || "go-plugin's error is not on stderr".into(),
        )
        .that(!outcome.stdout.contains("Hello!"), || "it greeted".into());
        if !host.starts_with(fixtures().go_dir) {
            e.that(!outcome.leaked, || {
                "the refused plugin outlived its host".into()
            });
        }
        verdict(cell, &outcome, e.result());
    }
}

// --- examples/grpc over net/rpc: KV_PROTO=netrpc, plugin-go-netrpc -----------------------------

/// A value that is not ASCII: the netrpc `[]byte` and the files carry it byte for byte.
const VALUE: &str = "grüße ✓";

/// `KV_PROTO=<proto> KV_PLUGIN=<plugin> host [flags] args...` in `dir`.
async fn kv(dir: &Path, host: &Path, proto: &str, plugin: &Path, args: &[&str]) -> Outcome {
    let plugin = plugin.display().to_string();
    run_in(
        dir,
        host,
        &[("KV_PROTO", proto), ("KV_PLUGIN", &plugin)],
        args,
    )
    .await
}

/// `put hello VALUE` then `get hello` over net/rpc in a fresh directory: the host prints the
/// value with the plugin's signature, which is also what `kv_hello` holds.
async fn kv_netrpc_round_trip(cell: &str, host: &Path, plugin: &Path, signature: &str) {
    let dir = tempfile::tempdir().expect("temp dir");
    let flag_sets: &[&[&str]] = if host.starts_with(fixtures().go_dir) {
        &[&[]]
    } else {
        // plugwire's kv-host also speaks AutoMTLS, which go-plugin's netrpc plugins answer.
        &[&[], &["--auto-mtls"]]
    };
    for flags in flag_sets {
        let cell = format!("{cell}{}", flags.concat());
        let args =
            |rest: &[&'static str]| -> Vec<&str> { flags.iter().chain(rest).copied().collect() };
        let put = kv(
            dir.path(),
            host,
            "netrpc",
            plugin,
            &args(&["put", "hello", VALUE]),
        )
        .await;
        let mut e = Expect::default();
        ran_clean(&put, &mut e);
        e.that(put.stdout.is_empty(), || {
            format!("put printed {:?}", put.stdout)
        });
        verdict(&format!("{cell}/put"), &put, e.result());

        let get = kv(dir.path(), host, "netrpc", plugin, &args(&["get", "hello"])).await;
        let mut e = Expect::default();
        ran_clean(&get, &mut e);
        let stored = format!("{VALUE}\n\nWritten from {signature}");
        let want = format!("{stored}\n");
        e.that(get.stdout == want, || {
            format!("get printed {:?}, want {want:?}", get.stdout)
        });
        let file = std::fs::read_to_string(dir.path().join("kv_hello")).unwrap_or_default();
        e.that(file == stored, || {
            format!("kv_hello holds {file:?}, want {stored:?}")
        });
        verdict(&format!("{cell}/get"), &get, e.result());
    }
}

/// plugwire's `kv-host` (`KV_PROTO=netrpc`) loads go-plugin's `plugin-go-netrpc`.
#[tokio::test]
async fn rust_kv_host_with_go_netrpc_plugin() {
    kv_netrpc_round_trip(
        "kv-host/plugin-go-netrpc",
        &example_binary("kv-host"),
        &go("kv-go-plugin-netrpc"),
        "plugin-go-netrpc",
    )
    .await;
}

/// go-plugin's `examples/grpc` host (`KV_PROTO=netrpc`) loads plugwire's `kv-plugin-netrpc`.
#[tokio::test]
async fn go_kv_host_with_rust_netrpc_plugin() {
    kv_netrpc_round_trip(
        "kv-go-host/kv-plugin-netrpc",
        &go("kv-go-host"),
        &example_binary("kv-plugin-netrpc"),
        "plugwire kv-plugin-netrpc",
    )
    .await;
}

/// plugwire's `kv-host` with `kv-plugin-netrpc`.
#[tokio::test]
async fn rust_kv_host_with_rust_netrpc_plugin() {
    kv_netrpc_round_trip(
        "kv-host/kv-plugin-netrpc",
        &example_binary("kv-host"),
        &example_binary("kv-plugin-netrpc"),
        "plugwire kv-plugin-netrpc",
    )
    .await;
}

/// Go and Rust plugins, netrpc and gRPC, under either host, share the `kv_<key>` files: each
/// reads what the last one wrote.
#[tokio::test]
async fn kv_plugins_of_both_protocols_take_turns() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (rust_host, go_host) = (example_binary("kv-host"), go("kv-go-host"));
    let turns = [
        (
            &go_host,
            "netrpc",
            example_binary("kv-plugin-netrpc"),
            "plugwire kv-plugin-netrpc",
        ),
        (
            &rust_host,
            "netrpc",
            go("kv-go-plugin-netrpc"),
            "plugin-go-netrpc",
        ),
        (
            &rust_host,
            "grpc",
            example_binary("kv-plugin"),
            "plugwire kv-plugin",
        ),
        (&go_host, "grpc", go("kv-go-plugin"), "plugin-go-grpc"),
    ];
    for (i, (host, proto, plugin, signature)) in turns.iter().enumerate() {
        let value = format!("turn {i}");
        let cell = format!("kv/turns/{i}");
        let put = kv(dir.path(), host, proto, plugin, &["put", "t", &value]).await;
        let mut e = Expect::default();
        ran_clean(&put, &mut e);
        verdict(&format!("{cell}/put"), &put, e.result());
        // The next plugin reads it.
        let (next_host, next_proto, next_plugin, _) = &turns[(i + 1) % turns.len()];
        let get = kv(
            dir.path(),
            next_host,
            next_proto,
            next_plugin,
            &["get", "t"],
        )
        .await;
        let mut e = Expect::default();
        ran_clean(&get, &mut e);
        let want = format!("{value}\n\nWritten from {signature}\n");
        e.that(get.stdout == want, || {
            format!("get printed {:?}, want {want:?}", get.stdout)
        });
        verdict(&format!("{cell}/get"), &get, e.result());
    }
}

/// go-plugin's host and plugwire's give the same errors, exit status 1 (plugwire's kv-host says
/// `Error:` where go-plugin's says `error:`): the wrong plugin for the protocol the plugin
/// speaks, either way, and a missing key over net/rpc, with each side's plugins.
#[tokio::test]
async fn kv_hosts_report_the_same_errors() {
    let rust_netrpc = example_binary("kv-plugin-netrpc");
    let go_netrpc = go("kv-go-plugin-netrpc");
    let cases = [
        // KV_PROTO=grpc dispenses kv_grpc, which a netrpc plugin does not have.
        (
            "grpc",
            &rust_netrpc,
            &["get", "k"][..],
            "unknown plugin type: kv_grpc",
        ),
        (
            "grpc",
            &go_netrpc,
            &["get", "k"],
            "unknown plugin type: kv_grpc",
        ),
        // KV_PROTO=netrpc dispenses kv, a netrpc plugin type, from a gRPC plugin.
        (
            "netrpc",
            &example_binary("kv-plugin"),
            &["get", "k"],
            "plugin \"kv\" doesn't support gRPC",
        ),
        (
            "netrpc",
            &go("kv-go-plugin"),
            &["get", "k"],
            "plugin \"kv\" doesn't support gRPC",
        ),
        // The plugin's error, as Go's os package words it.
        (
            "netrpc",
            &rust_netrpc,
            &["get", "missing"],
            "open kv_missing: no such file or directory",
        ),
        (
            "netrpc",
            &go_netrpc,
            &["get", "missing"],
            "open kv_missing: no such file or directory",
        ),
    ];
    for (proto, plugin, args, message) in cases {
        let name = plugin.file_name().map(|n| n.to_string_lossy().into_owned());
        for (host, prefix) in [
            (example_binary("kv-host"), "Error"),
            (go("kv-go-host"), "error"),
        ] {
            let dir = tempfile::tempdir().expect("temp dir");
            let outcome = kv(dir.path(), &host, proto, plugin, args).await;
            let mut e = Expect::default();
            failed_with(&outcome, &format!("{prefix}: {message}\n"), &mut e);
            e.that(!outcome.leaked, || "a process outlived its host".into());
            let cell = format!(
                "kv-errors/{}/{proto}/{}/{}",
                host.display(),
                name.as_deref().unwrap_or("?"),
                args.join(" ")
            );
            verdict(&cell, &outcome, e.result());
        }
    }
}

/// Without `KV_PROTO` both hosts say so and exit 1, once the plugin has started (as go-plugin's
/// host looks at it then); plugwire's host stops the plugin (go-plugin's exits without killing
/// it, and its plugins keep running).
#[tokio::test]
async fn kv_host_without_kv_proto() {
    let f = fixtures();
    for plugin in [example_binary("kv-plugin-netrpc"), f.go("kv-go-plugin")] {
        let dir = tempfile::tempdir().expect("temp dir");
        let command = plugin.display().to_string();
        let outcome = run_in(
            dir.path(),
            &example_binary("kv-host"),
            &[("KV_PLUGIN", &command)],
            &["get", "k"],
        )
        .await;
        let mut e = Expect::default();
        failed_with(&outcome, "must set KV_PROTO to netrpc or grpc\n", &mut e);
        e.that(!outcome.leaked, || "the plugin outlived its host".into());
        verdict(
            &format!("kv-host/no-kv-proto/{command}"),
            &outcome,
            e.result(),
        );
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let command = f.go("kv-go-plugin").display().to_string();
    let outcome = run_in(
        dir.path(),
        &f.go("kv-go-host"),
        &[("KV_PLUGIN", &command)],
        &["get", "k"],
    )
    .await;
    let mut e = Expect::default();
    failed_with(&outcome, "must set KV_PROTO to netrpc or grpc\n", &mut e);
    verdict("kv-go-host/no-kv-proto", &outcome, e.result());
}

// --- examples/negotiated: version 2 over netrpc, 3 over gRPC ---------------------------------

/// `KV_PROTO=<proto> host args...` in `dir`, with plugwire's host logging what it negotiated.
async fn negotiated(dir: &Path, host: &Path, proto: &str, args: &[&str]) -> Outcome {
    run_in(
        dir,
        host,
        &[("KV_PROTO", proto), ("KV_LOG", "negotiated_host=debug")],
        args,
    )
    .await
}

/// The version and protocol a host's log says it negotiated: plugwire's `negotiated` line, or
/// go-plugin's `using plugin: version=N` (whose protocol the plugin's version decides).
fn negotiated_version(outcome: &Outcome) -> Option<(u32, Option<String>)> {
    outcome.stderr.lines().find_map(|line| {
        if line.contains("negotiated_host: negotiated") {
            let field = |name: &str| {
                line.split_whitespace()
                    .find_map(|w| w.strip_prefix(&format!("{name}=")))
                    .map(|v| v.trim_matches('"').to_owned())
            };
            Some((field("version")?.parse().ok()?, field("protocol")))
        } else {
            let version = line.split("using plugin: version=").nth(1)?;
            Some((version.trim().parse().ok()?, None))
        }
    })
}

/// Writes over gRPC (version 3), reads over net/rpc (version 2), as go-plugin's README shows:
/// each version of the plugin signs what it serves, and the host's log names the version (and,
/// for plugwire's host, the protocol).
async fn negotiated_round_trip(cell: &str, host: &Path, plugin: &Path, signer: &str) {
    let dir = dir_with_plugin("kv-plugin", plugin);
    for (proto, args, version) in [
        ("grpc", &["put", "hello", "world"][..], 3),
        ("netrpc", &["get", "hello"], 2),
    ] {
        let outcome = negotiated(dir.path(), host, proto, args).await;
        let mut e = Expect::default();
        ran_clean(&outcome, &mut e);
        let got = negotiated_version(&outcome);
        e.that(got.as_ref().is_some_and(|(v, _)| *v == version), || {
            format!("negotiated {got:?}, want version {version}")
        });
        if let Some((_, Some(protocol))) = &got {
            e.that(protocol == proto, || {
                format!("negotiated protocol {protocol}, want {proto}")
            });
        }
        if args[0] == "get" {
            let want =
                format!("world\n\nWritten from {signer} version 3\nRead by {signer} version 2\n\n");
            e.that(outcome.stdout == want, || {
                format!("get printed {:?}, want {want:?}", outcome.stdout)
            });
        }
        verdict(&format!("{cell}/{proto}/{}", args[0]), &outcome, e.result());
    }
    let file = std::fs::read_to_string(dir.path().join("kv_hello")).unwrap_or_default();
    assert_eq!(
        file,
        format!("world\n\nWritten from {signer} version 3\n"),
        "{cell}"
    );
}

/// plugwire's `negotiated-host` with go-plugin's `examples/negotiated/plugin-go`.
#[tokio::test]
async fn rust_negotiated_host_with_go_example_plugin() {
    negotiated_round_trip(
        "negotiated-host/plugin-go",
        &example_binary("negotiated-host"),
        &go("negotiated-go-plugin"),
        "plugin",
    )
    .await;
}

/// go-plugin's `examples/negotiated` host with plugwire's `negotiated-plugin`.
#[tokio::test]
async fn go_negotiated_host_with_rust_plugin() {
    negotiated_round_trip(
        "negotiated/negotiated-plugin",
        &go("negotiated-go-host"),
        &example_binary("negotiated-plugin"),
        "plugwire plugin",
    )
    .await;
}

/// plugwire's negotiated host and plugin.
#[tokio::test]
async fn rust_negotiated_host_with_rust_plugin() {
    negotiated_round_trip(
        "negotiated-host/negotiated-plugin",
        &example_binary("negotiated-host"),
        &example_binary("negotiated-plugin"),
        "plugwire plugin",
    )
    .await;
}

/// Go's version 3 writes, plugwire's version 2 reads, under either host.
#[tokio::test]
async fn negotiated_plugins_share_their_files() {
    for host in [example_binary("negotiated-host"), go("negotiated-go-host")] {
        let dir = tempfile::tempdir().expect("temp dir");
        let link = dir.path().join("kv-plugin");
        std::os::unix::fs::symlink(go("negotiated-go-plugin"), &link).expect("link");
        let put = negotiated(dir.path(), &host, "grpc", &["put", "k", "v"]).await;
        let mut e = Expect::default();
        ran_clean(&put, &mut e);
        verdict("negotiated/shared/put", &put, e.result());
        std::fs::remove_file(&link).expect("unlink");
        std::os::unix::fs::symlink(example_binary("negotiated-plugin"), &link).expect("link");
        let get = negotiated(dir.path(), &host, "netrpc", &["get", "k"]).await;
        let mut e = Expect::default();
        ran_clean(&get, &mut e);
        let want = "v\n\nWritten from plugin version 3\nRead by plugwire plugin version 2\n\n";
        e.that(get.stdout == want, || {
            format!("get printed {:?}, want {want:?}", get.stdout)
        });
        verdict("negotiated/shared/get", &get, e.result());
    }
}

/// Both negotiated hosts print the same errors and exit 1: no `KV_PROTO` (before any plugin
/// starts), an unknown subcommand, a missing key over net/rpc (with either plugin). plugwire's
/// host stops its plugin (go-plugin's exits without killing it).
#[tokio::test]
async fn negotiated_hosts_report_the_same_errors() {
    let missing = "Error: open kv_missing: no such file or directory\n";
    let cases: [(Option<&str>, &[&str], &str); 3] = [
        (None, &["get", "k"], "must set KV_PROTO to netrpc or grpc\n"),
        (Some("grpc"), &["frob"], "Please only use 'get' or 'put'\n"),
        (Some("netrpc"), &["get", "missing"], missing),
    ];
    for plugin in [
        example_binary("negotiated-plugin"),
        go("negotiated-go-plugin"),
    ] {
        for (proto, args, want) in cases {
            for host in [example_binary("negotiated-host"), go("negotiated-go-host")] {
                let dir = dir_with_plugin("kv-plugin", &plugin);
                let env: Vec<(&str, &str)> = proto.map(|p| ("KV_PROTO", p)).into_iter().collect();
                let outcome = run_in(dir.path(), &host, &env, args).await;
                let mut e = Expect::default();
                failed_with(&outcome, want, &mut e);
                if !host.starts_with(fixtures().go_dir) {
                    e.that(!outcome.leaked, || "the plugin outlived its host".into());
                }
                let cell = format!(
                    "negotiated-errors/{}/{}/{proto:?}/{}",
                    host.display(),
                    plugin.display(),
                    args.join(" ")
                );
                verdict(&cell, &outcome, e.result());
            }
        }
    }
}

// --- examples/streaming ---------------------------------------------------------------------

/// The text go-plugin's streaming host writes through the plugin and reads back.
const LOREM: &str = "Lorem ipsum dolor sit amet";

/// `host myfile` in a directory where `plugin` is `./plugin/streamer`: the plugin wrote the text
/// to `myfile`, the host's last hclog JSON line says it received it back, byte for byte, and the
/// plugin's log lines reached the host's log.
async fn stream(cell: &str, host: &Path, plugin: &Path) {
    let dir = dir_with_plugin("plugin/streamer", plugin);
    let outcome = run_in(dir.path(), host, &[], &["myfile"]).await;
    let mut e = Expect::default();
    ran_clean(&outcome, &mut e);
    let file = std::fs::read_to_string(dir.path().join("myfile")).unwrap_or_default();
    e.that(file == LOREM, || format!("myfile holds {file:?}"));
    let received = json_line(&outcome.stderr, &format!("received {} bytes", LOREM.len()));
    e.that(
        received.as_ref().is_some_and(|l| l["bytes"] == LOREM),
        || format!("the host's log says it received {received:?}"),
    );
    e.that(
        json_line(&outcome.stderr, "writing finished").is_some(),
        || "no `writing finished` line".into(),
    );
    // The plugin's line, forwarded: go-plugin's host keeps its fields, plugwire's puts them in
    // `fields`.
    let written = json_line(&outcome.stderr, "FileStreamer: Write finished");
    e.that(
        written.as_ref().is_some_and(|l| {
            l["bytes written"] == 26
                || l["fields"]
                    .as_str()
                    .is_some_and(|f| f.contains("bytes written=26"))
        }),
        || format!("the plugin's `Write finished` line: {written:?}"),
    );
    verdict(cell, &outcome, e.result());
}

/// plugwire's `streamer-host` with go-plugin's `examples/streaming/plugin` (whose `Write` ends
/// without a reply message, which the Go host takes as success).
#[tokio::test]
async fn rust_streamer_host_with_go_example_plugin() {
    stream(
        "streamer-host/streaming-plugin",
        &example_binary("streamer-host"),
        &go("streamer-go-plugin"),
    )
    .await;
}

/// go-plugin's `examples/streaming` host with plugwire's `streamer-plugin`.
#[tokio::test]
async fn go_streamer_host_with_rust_plugin() {
    stream(
        "streaming/streamer-plugin",
        &go("streamer-go-host"),
        &example_binary("streamer-plugin"),
    )
    .await;
}

/// plugwire's streamer host and plugin.
#[tokio::test]
async fn rust_streamer_host_with_rust_plugin() {
    stream(
        "streamer-host/streamer-plugin",
        &example_binary("streamer-host"),
        &example_binary("streamer-plugin"),
    )
    .await;
}

/// Both streamer hosts want exactly one argument (the file), else exit 1 with go-plugin's text
/// and start nothing.
#[tokio::test]
async fn streamer_hosts_want_a_file() {
    for host in [example_binary("streamer-host"), go("streamer-go-host")] {
        let dir = dir_with_plugin("plugin/streamer", &example_binary("streamer-plugin"));
        let outcome = run_in(dir.path(), &host, &[], &[]).await;
        let mut e = Expect::default();
        e.that(outcome.status.and_then(|s| s.code()) == Some(1), || {
            format!("exit status {:?}, want 1", outcome.status)
        })
        .that(
            outcome
                .stderr
                .trim_end()
                .ends_with("expected path to file as an argument"),
            || "go-plugin's message is not on stderr".into(),
        )
        .that(!outcome.leaked, || "a process outlived its host".into());
        verdict(
            &format!("streamer-no-file/{}", host.display()),
            &outcome,
            e.result(),
        );
    }
}

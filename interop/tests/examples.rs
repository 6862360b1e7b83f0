//! go-plugin v1.8.0's own example programs against plugwire's drop-in peers, both directions:
//! `examples/grpc` (kv) and, with the broker, `examples/bidirectional` (counter).

// Needs the Go fixtures; without them `needs_go.rs` says what did not run.
#![cfg(not(plugwire_no_go))]

use std::path::{Path, PathBuf};

use plugwire_interop::harness::{Expect, Fixtures, Outcome, Run, example_binary, verdict};

fn fixtures() -> Fixtures {
    Fixtures::new(
        env!("CARGO_BIN_EXE_plugwire-fixture-host"),
        env!("CARGO_BIN_EXE_plugwire-fixture-plugin"),
    )
}

/// Runs `host args...` in `dir` with `var` (`KV_PLUGIN`/`COUNTER_PLUGIN`) naming the plugin.
async fn run_in(dir: &Path, host: &Path, var: &str, plugin: &Path, args: &[&str]) -> Outcome {
    let mut run = Run::command(host, args)
        .env(var, plugin.display().to_string())
        .env("KV_PROTO", "grpc");
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

/// `put hello interop` then `get hello`, in a fresh directory, with `flags` before the
/// subcommand.
async fn kv_round_trip(
    cell: &str,
    host: PathBuf,
    plugin: PathBuf,
    written_by: &str,
    flags: &[&str],
) {
    let dir = tempfile::tempdir().expect("temp dir");
    let args = |rest: &[&'static str]| -> Vec<&str> { flags.iter().chain(rest).copied().collect() };
    let put = run_in(
        dir.path(),
        &host,
        "KV_PLUGIN",
        &plugin,
        &args(&["put", "hello", "interop"]),
    )
    .await;
    let mut e = Expect::default();
    ran_clean(&put, &mut e);
    verdict(&format!("{cell}/put"), &put, e.result());

    let get = run_in(
        dir.path(),
        &host,
        "KV_PLUGIN",
        &plugin,
        &args(&["get", "hello"]),
    )
    .await;
    let mut e = Expect::default();
    ran_clean(&get, &mut e);
    let want = format!("interop\n\nWritten from {written_by}\n");
    e.that(get.stdout == want, || {
        format!("get printed {:?}, want {want:?}", get.stdout)
    });
    verdict(&format!("{cell}/get"), &get, e.result());
}

/// plugwire's `kv-host` loads go-plugin's `plugin-go-grpc`.
#[tokio::test]
async fn rust_kv_host_with_go_example_plugin() {
    let f = fixtures();
    kv_round_trip(
        "kv-host/plugin-go-grpc",
        example_binary("kv-host"),
        f.go("kv-go-plugin"),
        "plugin-go-grpc",
        &[],
    )
    .await;
}

/// The same over AutoMTLS (`kv-host --auto-mtls`): go-plugin's example plugin answers with its
/// own P-521 certificate.
#[tokio::test]
async fn rust_kv_host_with_go_example_plugin_auto_mtls() {
    let f = fixtures();
    kv_round_trip(
        "kv-host/plugin-go-grpc/mtls",
        example_binary("kv-host"),
        f.go("kv-go-plugin"),
        "plugin-go-grpc",
        &["--auto-mtls"],
    )
    .await;
}

/// `kv-host --auto-mtls` with plugwire's `kv-plugin`.
#[tokio::test]
async fn rust_kv_host_with_rust_kv_plugin_auto_mtls() {
    kv_round_trip(
        "kv-host/kv-plugin/mtls",
        example_binary("kv-host"),
        example_binary("kv-plugin"),
        "plugwire kv-plugin",
        &["--auto-mtls"],
    )
    .await;
}

/// go-plugin's example host loads plugwire's `kv-plugin`.
#[tokio::test]
async fn go_example_host_with_rust_kv_plugin() {
    let f = fixtures();
    kv_round_trip(
        "kv-go-host/kv-plugin",
        f.go("kv-go-host"),
        example_binary("kv-plugin"),
        "plugwire kv-plugin",
        &[],
    )
    .await;
}

/// `kv-host` errors print `Error: ...` and exit 1.
#[tokio::test]
async fn rust_kv_host_reports_errors() {
    let f = fixtures();
    let dir = tempfile::tempdir().expect("temp dir");
    let outcome = run_in(
        dir.path(),
        &example_binary("kv-host"),
        "KV_PLUGIN",
        &f.go("kv-go-plugin"),
        &["get", "missing"],
    )
    .await;
    let mut e = Expect::default();
    e.that(outcome.status.and_then(|s| s.code()) == Some(1), || {
        "exit status is not 1".into()
    })
    .that(outcome.stdout.starts_with("Error: "), || {
        format!("stdout: {:?}", outcome.stdout)
    })
    .that(outcome.stdout.contains("kv_missing"), || {
        "the plugin's error is not shown".into()
    })
    .that(!outcome.leaked, || "a process outlived its host".into());
    verdict("kv-host/errors", &outcome, e.result());
}

/// Runs `counter-host`/`counter-go-host` `args` against `plugin` in `dir`; returns what it
/// printed, after checking it ran clean.
async fn counter(cell: &str, dir: &Path, host: &Path, plugin: &Path, args: &[&str]) -> String {
    let outcome = run_in(dir, host, "COUNTER_PLUGIN", plugin, args).await;
    let mut e = Expect::default();
    ran_clean(&outcome, &mut e);
    verdict(&format!("{cell}/{}", args.join(" ")), &outcome, e.result());
    outcome.stdout
}

/// plugwire's `counter-host` with go-plugin's bidirectional `plugin-go-grpc`: repeated puts
/// accumulate through the host's AddHelper, in every broker and TLS mode.
#[tokio::test]
async fn rust_counter_host_with_go_example_plugin() {
    let f = fixtures();
    let host = example_binary("counter-host");
    let plugin = f.go("counter-go-plugin");
    for flags in [
        &[][..],
        &["--mux"],
        &["--auto-mtls"],
        &["--mux", "--auto-mtls"],
    ] {
        let dir = tempfile::tempdir().expect("temp dir");
        let cell = format!("counter-host/plugin-go-grpc{}", flags.concat());
        let with =
            |rest: &[&'static str]| -> Vec<&str> { flags.iter().chain(rest).copied().collect() };
        counter(&cell, dir.path(), &host, &plugin, &with(&["put", "n", "2"])).await;
        counter(&cell, dir.path(), &host, &plugin, &with(&["put", "n", "3"])).await;
        let got = counter(&cell, dir.path(), &host, &plugin, &with(&["get", "n"])).await;
        assert_eq!(got, "5\n", "{cell}");
        let file = std::fs::read_to_string(dir.path().join("kv_n")).expect("kv_n");
        assert_eq!(file, r#"{"Value":5}"#, "the Go plugin's file format");
    }
}

/// go-plugin's bidirectional host with plugwire's `counter-plugin`.
#[tokio::test]
async fn go_example_counter_host_with_rust_plugin() {
    let f = fixtures();
    let host = f.go("counter-go-host");
    let plugin = example_binary("counter-plugin");
    let dir = tempfile::tempdir().expect("temp dir");
    counter(
        "counter-go-host/counter-plugin",
        dir.path(),
        &host,
        &plugin,
        &["put", "n", "2"],
    )
    .await;
    counter(
        "counter-go-host/counter-plugin",
        dir.path(),
        &host,
        &plugin,
        &["put", "n", "3"],
    )
    .await;
    let got = counter(
        "counter-go-host/counter-plugin",
        dir.path(),
        &host,
        &plugin,
        &["get", "n"],
    )
    .await;
    assert_eq!(got, "5\n");
    let file = std::fs::read_to_string(dir.path().join("kv_n")).expect("kv_n");
    assert_eq!(
        file, r#"{"Value":5}"#,
        "the same file format as the Go plugin"
    );
}

/// Go and Rust counter plugins take turns on the same data, under either host.
#[tokio::test]
async fn go_and_rust_counter_plugins_take_turns() {
    let f = fixtures();
    let dir = tempfile::tempdir().expect("temp dir");
    let (rust_host, go_host) = (example_binary("counter-host"), f.go("counter-go-host"));
    let (rust_plugin, go_plugin) = (example_binary("counter-plugin"), f.go("counter-go-plugin"));
    let cell = "counter/turns";
    counter(cell, dir.path(), &go_host, &go_plugin, &["put", "t", "1"]).await;
    counter(
        cell,
        dir.path(),
        &rust_host,
        &rust_plugin,
        &["put", "t", "10"],
    )
    .await;
    counter(
        cell,
        dir.path(),
        &go_host,
        &rust_plugin,
        &["put", "t", "100"],
    )
    .await;
    counter(
        cell,
        dir.path(),
        &rust_host,
        &go_plugin,
        &["--mux", "put", "t", "1000"],
    )
    .await;
    let got = counter(cell, dir.path(), &go_host, &go_plugin, &["get", "t"]).await;
    assert_eq!(got, "1111\n");
}

/// go-plugin's `examples/basic` plugin speaks netrpc. A plugwire host that allows netrpc loads
/// it and greets through it as go-plugin's example host does; one that does not allow it refuses
/// it with go-plugin's error, and the plugin process is stopped.
#[tokio::test]
async fn netrpc_example_plugin_greets_or_is_refused() {
    use plugwire_host::netrpc::gobwire::Interface;
    use plugwire_host::{MagicCookie, Plugin, PluginConfig, Protocol};
    let f = fixtures();
    for allowed in [vec![Protocol::NetRpc, Protocol::Grpc], vec![Protocol::Grpc]] {
        let config = PluginConfig::builder(
            MagicCookie::new("BASIC_PLUGIN", "hello"),
            std::process::Command::new(f.go("greeter-go-plugin")),
        )
        .plugins(1, ["greeter"])
        .allowed_protocols(allowed.clone())
        .build();
        let bounded = std::time::Duration::from_secs(30);
        let launched = tokio::time::timeout(bounded, Plugin::launch(config))
            .await
            .expect("the launch is bounded");
        if allowed.contains(&Protocol::NetRpc) {
            let plugin = launched.expect("a netrpc host loads the netrpc plugin");
            assert_eq!(plugin.protocol(), Protocol::NetRpc);
            let greeter = plugin
                .netrpc()
                .expect("a netrpc connection")
                .dispense("greeter")
                .await
                .expect("dispensed");
            // The example host's `new(interface{})` argument.
            let greeting: String =
                tokio::time::timeout(bounded, greeter.call("Plugin.Greet", &None::<Interface>))
                    .await
                    .expect("the call is bounded")
                    .expect("greeted");
            assert_eq!(greeting, "Hello!");
            assert!(
                plugin
                    .dispense(
                        "greeter",
                        plugwire_interop::pb::test_client::TestClient::new
                    )
                    .is_err()
            );
            let report = plugin.kill().await;
            assert!(report.graceful, "Control.Quit stops the plugin: {report:?}");
            continue;
        }
        let err = launched.expect_err("a gRPC-only host refuses a netrpc plugin");
        let text = err.to_string();
        assert!(
            text.contains("unsupported plugin protocol \"netrpc\". Supported: [grpc]"),
            "{text}"
        );
        assert!(
            err.exit_status().is_some(),
            "the plugin was not stopped: {text}"
        );
    }
}

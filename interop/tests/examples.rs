//! go-plugin v1.8.0's own example programs against plugwire's drop-in peers, both directions:
//! `examples/grpc` (kv) and, with the broker, `examples/bidirectional` (counter).

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

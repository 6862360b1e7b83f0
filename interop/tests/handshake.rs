//! The Rust host against plugins that misbehave before or during the handshake: every bad line
//! gets its own clear error within its timeout, never a panic or a hang, and no process or socket
//! file is left behind.

use plugwire_interop::harness::{Expect, Fixtures, Run, verdict};

fn fixtures() -> Fixtures {
    Fixtures::new(
        env!("CARGO_BIN_EXE_plugwire-fixture-host"),
        env!("CARGO_BIN_EXE_plugwire-fixture-plugin"),
    )
}

/// (plugin mode, handshake line for `print-line`, what the error must say)
const CASES: &[(&str, &str, &str)] = &[
    ("print-line", "", "Unrecognized remote plugin message: "),
    (
        "print-line",
        "hello",
        "Unrecognized remote plugin message: hello",
    ),
    (
        "print-line",
        "1|1|unix",
        "Unrecognized remote plugin message: 1|1|unix",
    ),
    (
        "print-line",
        "x|1|unix|/p|grpc|",
        "error parsing core protocol version",
    ),
    (
        "print-line",
        "2|1|unix|/p|grpc|",
        "incompatible core API version with plugin. Plugin version: 2, Core version: 1",
    ),
    (
        "print-line",
        "1|one|unix|/p|grpc|",
        "Error parsing protocol version \"one\"",
    ),
    (
        "print-line",
        "1|7|unix|/p|grpc|",
        "incompatible API version with plugin. Plugin version: 7, Client versions: [1]",
    ),
    ("print-line", "1|1|udp|/p|grpc|", "unknown address type: /p"),
    ("print-line", "1|1|unix||grpc|", "the socket path is empty"),
    (
        "print-line",
        "1|1|tcp|127.0.0.1|grpc|",
        "missing port in address",
    ),
    (
        "print-line",
        "1|1|unix|/p|http|",
        "unsupported plugin protocol \"http\". Supported: [grpc]",
    ),
    (
        "print-line",
        "1|1|unix|/p|netrpc|",
        "unsupported plugin protocol \"netrpc\". Supported: [grpc]",
    ),
    (
        "print-line",
        "1|1|unix|/p",
        "unsupported plugin protocol \"netrpc\"",
    ),
    (
        "print-line",
        "1|1|unix|/p|grpc|!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!",
        "error parsing server cert: the certificate field is not base64",
    ),
    (
        "print-line",
        "1|1|unix|/p|grpc|QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFB",
        "error parsing server cert: the certificate field is not a DER X.509 certificate",
    ),
    (
        "print-line",
        "1|1|unix|/nonexistent/plugwire-test.sock|grpc|",
        "could not connect to the plugin at unix /nonexistent/plugwire-test.sock",
    ),
    (
        "print-line",
        "1|1|tcp|127.0.0.1:1|grpc|",
        "could not connect to the plugin at tcp 127.0.0.1:1",
    ),
    (
        "garbage",
        "",
        "Unrecognized remote plugin message: hello from a program that is not a plugin",
    ),
    (
        "long-line",
        "",
        "the plugin's first stdout line is longer than 65536 bytes",
    ),
    (
        "non-utf8",
        "",
        "the plugin's handshake line is not valid UTF-8",
    ),
    (
        "exit-early",
        "",
        "plugin exited before we could connect (exit status 3); the plugin's last stderr lines:\n  fixture-plugin: exiting early on purpose",
    ),
];

/// The same, for a host that asked for broker multiplexing.
const MUX_CASES: &[(&str, &str, &str)] = &[
    (
        "print-line",
        "1|1|unix|/p|grpc|",
        "client requested gRPC broker multiplexing but plugin does not support the feature; for Go plugins, you will need to update the github.com/hashicorp/go-plugin dependency and recompile",
    ),
    (
        "print-line",
        "1|1|unix|/p|grpc||maybe",
        "error parsing \"maybe\" as a boolean for gRPC broker multiplexing support",
    ),
    (
        "print-line",
        "1|1|unix|/p|grpc||false",
        "client requested gRPC broker multiplexing but plugin does not support the feature",
    ),
];

#[tokio::test]
async fn every_bad_handshake_gets_its_own_error() {
    assert!(CASES.len() >= 20);
    let f = fixtures();
    let cases = CASES
        .iter()
        .map(|c| (c, false))
        .chain(MUX_CASES.iter().map(|c| (c, true)));
    let runs = cases.map(|(&(mode, line, want), mux)| {
        let mut run =
            Run::host(&f.rust_host, &f.rust_plugin, mode, "start").env("FIXTURE_LINE", line);
        if mux {
            run.args.push("-mux".into());
        }
        async move { (mode, line, want, run.run().await) }
    });
    for (mode, line, want, outcome) in futures_util::future::join_all(runs).await {
        let mut e = Expect::default();
        e.that(outcome.success(), || {
            "the host fixture did not finish".into()
        })
        .that(!outcome.leaked, || "a process outlived its host".into())
        .that(outcome.leftovers.is_empty(), || {
            format!("left behind: {:?}", outcome.leftovers)
        })
        .contains(&outcome, "error", want)
        .that(outcome.get("exited") == &serde_json::json!(true), || {
            "process not reaped".into()
        })
        .that(!outcome.stderr.contains("panicked"), || {
            "the host panicked".into()
        })
        .that(outcome.elapsed.as_secs() < 20, || {
            format!("took {:?}", outcome.elapsed)
        });
        verdict(
            &format!("rust-host/handshake/{mode}/{line}"),
            &outcome,
            e.result(),
        );
    }
}

//! `plugwire inspect` against go-plugin v1.8.0's own example plugins and plugwire's.

mod support;

use serde_json::Value;
use support::{example, go, plugwire};

fn path(p: &std::path::Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

fn methods(report: &Value, service: &str) -> Vec<(String, String)> {
    let app = report["services"]["app"].as_array().expect("app services");
    let service = app
        .iter()
        .find(|s| s["name"] == service)
        .unwrap_or_else(|| panic!("{service} not in {app:?}"));
    service["methods"]
        .as_array()
        .expect("methods")
        .iter()
        .map(|m| {
            (
                m["name"].as_str().unwrap_or_default().to_owned(),
                m["kind"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// The parts every healthy gRPC plugin's report has.
fn assert_healthy(report: &Value, version: u64) {
    let handshake = &report["handshake"];
    assert_eq!(handshake["core_version"], 1);
    assert_eq!(handshake["app_version"], version);
    assert_eq!(handshake["network"], "unix");
    assert_eq!(handshake["protocol"], "grpc");
    assert!(
        handshake["address"]
            .as_str()
            .is_some_and(|a| a.contains("/plugin")),
        "{handshake}"
    );
    assert_eq!(report["health"]["status"], "SERVING");
    let timings = &report["timings"];
    for phase in [
        "spawn_ms",
        "handshake_line_ms",
        "connect_ms",
        "first_health_ms",
    ] {
        assert!(
            timings[phase].as_f64().is_some_and(|t| t >= 0.0),
            "{phase}: {timings}"
        );
    }
    let go_plugin = report["services"]["go_plugin"]
        .as_array()
        .expect("go-plugin services");
    for service in [
        "grpc.health.v1.Health",
        "plugin.GRPCBroker",
        "plugin.GRPCController",
        "plugin.GRPCStdio",
    ] {
        assert!(
            go_plugin.iter().any(|s| s == service),
            "{service} in {go_plugin:?}"
        );
    }
    assert_eq!(
        report["shutdown"]["graceful"], true,
        "{}",
        report["shutdown"]
    );
    assert_eq!(report["shutdown"]["exit_status"], "exit status 0");
    assert!(report.get("failure").is_none(), "{report}");
}

#[test]
fn go_grpc_kv_example() {
    let run = plugwire(&[
        "inspect",
        "--json",
        "--cookie",
        "BASIC_PLUGIN=hello",
        "--",
        path(&go("kv-go-plugin")),
    ]);
    let report = run.expect_code(0).json();
    assert_healthy(&report, 1);
    assert_eq!(report["handshake"]["tls"], "plaintext");
    assert!(report["handshake"].get("multiplex_field").is_none());
    assert_eq!(
        methods(&report, "proto.KV"),
        vec![
            ("Get".into(), "unary".into()),
            ("Put".into(), "unary".into())
        ]
    );
    assert_eq!(report["services"]["reflection"], "v1");
    // go-plugin's Serve logs where it listens, in hclog JSON, at debug.
    let logs = report["logs"].as_array().expect("logs");
    assert!(
        logs.iter()
            .any(|l| l["message"] == "plugin address" && l["level"] == "DEBUG"),
        "{logs:?}"
    );
}

#[test]
fn go_plugin_with_automtls_and_multiplexing() {
    let run = plugwire(&[
        "inspect",
        "--json",
        "--auto-mtls",
        "--mux",
        "--cookie",
        "BASIC_PLUGIN=hello",
        "--",
        path(&go("kv-go-plugin")),
    ]);
    let report = run.expect_code(0).json();
    assert_healthy(&report, 1);
    let handshake = &report["handshake"];
    assert_eq!(handshake["tls"], "automtls");
    assert_eq!(handshake["certificate"], true);
    assert_eq!(handshake["multiplex_field"], true);
    assert_eq!(handshake["multiplexed"], true);
    assert!(
        handshake["line"]
            .as_str()
            .is_some_and(|l| l.ends_with("|grpc|<certificate>|true")),
        "{handshake}"
    );
    let cert = &report["certificate"];
    assert_eq!(cert["key"], "ECDSA P-521");
    assert_eq!(cert["signature"], "ecdsa-with-SHA512");
    assert_eq!(cert["san"], serde_json::json!(["DNS:localhost"]));
    assert_eq!(cert["self_signed"], true);
    assert!(
        cert["subject"]
            .as_str()
            .is_some_and(|s| s.contains("CN=localhost"))
    );
    assert_eq!(cert["go_host_objections"], serde_json::json!([]));
}

#[test]
fn go_bidirectional_example() {
    let run = plugwire(&[
        "inspect",
        "--json",
        "--cookie",
        "BASIC_PLUGIN=hello",
        "--",
        path(&go("counter-go-plugin")),
    ]);
    let report = run.expect_code(0).json();
    assert_healthy(&report, 1);
    assert_eq!(
        methods(&report, "proto.Counter"),
        vec![
            ("Get".into(), "unary".into()),
            ("Put".into(), "unary".into())
        ]
    );
}

#[test]
fn go_negotiated_example_picks_the_grpc_version() {
    let run = plugwire(&[
        "inspect",
        "--json",
        "--cookie",
        "BASIC_PLUGIN=hello",
        "--versions",
        "2,3",
        "--",
        path(&go("negotiated-go-plugin")),
    ]);
    let report = run.expect_code(0).json();
    assert_healthy(&report, 3);
    assert_eq!(
        report["plugin"]["offered_versions"],
        serde_json::json!([2, 3])
    );
}

#[test]
fn go_negotiated_example_at_its_netrpc_version() {
    // Version 2 of go-plugin's negotiated example is netrpc only.
    let run = plugwire(&[
        "inspect",
        "--json",
        "--cookie",
        "BASIC_PLUGIN=hello",
        "--versions",
        "2",
        "--",
        path(&go("negotiated-go-plugin")),
    ]);
    let report = run.expect_code(0).json();
    assert_eq!(report["handshake"]["protocol"], "netrpc");
    assert_eq!(report["handshake"]["app_version"], 2);
    // netrpc's ping is Control.Ping; it has no reflection.
    assert_eq!(report["health"]["status"], "Control.Ping answers");
    assert!(report.get("services").is_none(), "{report}");
    assert_eq!(report["shutdown"]["graceful"], true);
}

#[test]
fn go_streaming_example() {
    let run = plugwire(&[
        "inspect",
        "--json",
        "--cookie",
        "BASIC_PLUGIN=hello",
        "--",
        path(&go("streamer-go-plugin")),
    ]);
    let report = run.expect_code(0).json();
    assert_healthy(&report, 1);
    assert_eq!(
        methods(&report, "proto.StreamerService"),
        vec![
            ("Configure".into(), "unary".into()),
            ("Read".into(), "server-streaming".into()),
            ("Write".into(), "client-streaming".into())
        ]
    );
    // The streaming example's plugin logs with a logger of its own, before serving.
    let logs = report["logs"].as_array().expect("logs");
    assert!(
        logs.iter()
            .any(|l| l["message"] == "plugin launched, about to be served"),
        "{logs:?}"
    );
}

#[test]
fn go_basic_example_speaks_netrpc() {
    let run = plugwire(&[
        "inspect",
        "--cookie",
        "BASIC_PLUGIN=hello",
        "--",
        path(&go("greeter-go-plugin")),
    ]);
    run.expect_code(0);
    let out = &run.stdout;
    for line in [
        "  protocol        netrpc (go-plugin's legacy net/rpc protocol: gob-encoded Go values over yamux)",
        "health            Control.Ping answers",
        "services          netrpc has no reflection",
        "shutdown          graceful: exited (exit status 0)",
        // go-plugin's basic example logs through hclog, with a field.
        "  DEBUG message from plugin  foo=bar",
    ] {
        assert!(out.contains(line), "{line:?} not in:\n{out}");
    }
    assert!(out.contains("after Control.Quit"), "{out}");
}

#[test]
fn rust_kv_example() {
    let run = plugwire(&[
        "inspect",
        "--json",
        "--cookie",
        "BASIC_PLUGIN=hello",
        "--",
        path(&example("kv-plugin")),
    ]);
    let report = run.expect_code(0).json();
    assert_healthy(&report, 1);
    assert_eq!(
        methods(&report, "proto.KV"),
        vec![
            ("Get".into(), "unary".into()),
            ("Put".into(), "unary".into())
        ]
    );
    let logs = report["logs"].as_array().expect("logs");
    assert!(
        logs.iter()
            .any(|l| l["message"] == "shutdown requested by the host"),
        "{logs:?}"
    );
}

#[test]
fn rust_counter_example_with_automtls() {
    let run = plugwire(&[
        "inspect",
        "--json",
        "--auto-mtls",
        "--cookie",
        "BASIC_PLUGIN=hello",
        "--",
        path(&example("counter-plugin")),
    ]);
    let report = run.expect_code(0).json();
    assert_healthy(&report, 1);
    assert_eq!(report["handshake"]["tls"], "automtls");
    assert_eq!(report["certificate"]["key"], "ECDSA P-521");
    assert!(methods(&report, "proto.Counter").len() >= 2);
}

#[test]
fn human_output_is_aligned_and_plain_when_piped() {
    let run = plugwire(&[
        "inspect",
        "--cookie",
        "BASIC_PLUGIN=hello",
        "--",
        path(&go("kv-go-plugin")),
    ]);
    run.expect_code(0);
    let out = &run.stdout;
    assert!(!out.contains('\x1b'), "no colours when piped:\n{out}");
    for line in [
        "  app version     1",
        "  network         unix",
        "  protocol        grpc",
        "  tls             plaintext",
        "health            SERVING (service \"plugin\")",
        "services          listed by reflection v1",
        "  proto.KV",
        "    Get  proto.GetRequest -> proto.GetResponse",
        "    Put  proto.PutRequest -> proto.Empty",
    ] {
        assert!(out.contains(line), "{line:?} not in:\n{out}");
    }
    assert!(
        out.lines()
            .any(|l| l.starts_with("shutdown          graceful: exited (exit status 0)")),
        "{out}"
    );
    let colored = plugwire(&[
        "--color",
        "always",
        "inspect",
        "--cookie",
        "BASIC_PLUGIN=hello",
        "--",
        path(&go("kv-go-plugin")),
    ]);
    assert!(
        colored.stdout.contains("\x1b[32mSERVING\x1b[0m"),
        "{}",
        colored.stdout
    );
}

#[test]
fn the_cookie_is_found_in_the_executable_when_none_is_given() {
    let run = plugwire(&["inspect", "--json", "--", path(&go("kv-go-plugin"))]);
    let report = run.expect_code(0).json();
    assert_eq!(report["plugin"]["cookie"], "BASIC_PLUGIN=hello");
    assert!(
        report["notes"][0]
            .as_str()
            .is_some_and(|n| n.contains("go-plugin-examples")),
        "{report}"
    );
}

//! `plugwire reattach`: a plugin already running, inspected and called, and left running.

mod support;

use std::ffi::OsStr;

use support::{Running, example, go, plugwire, plugwire_env, plugwire_in};

/// go-plugin's streaming example, started by hand as its host would, and its reattach
/// configuration (as `Client.ReattachConfig()` gives it).
fn streamer() -> (Running, String) {
    let plugin = Running::start(
        &go("streamer-go-plugin"),
        &[],
        &[("BASIC_PLUGIN", "hello"), ("PLUGIN_PROTOCOL_VERSIONS", "1")],
    );
    let fields: Vec<&str> = plugin.first_line.split('|').collect();
    assert_eq!(fields.get(4), Some(&"grpc"), "{}", plugin.first_line);
    let json = serde_json::json!({
        "Protocol": "grpc",
        "ProtocolVersion": 1,
        "Pid": plugin.pid(),
        "Addr": {"Network": fields[2], "String": fields[3]},
    })
    .to_string();
    (plugin, json)
}

fn reattach(json: &str, rest: &[&str], stdin: &str) -> support::Run {
    let dir = tempfile::tempdir().expect("tempdir");
    let args: Vec<&OsStr> = std::iter::once("reattach")
        .chain(std::iter::once(json))
        .chain(rest.iter().copied())
        .map(OsStr::new)
        .collect();
    plugwire_in(dir.path(), &args, stdin)
}

#[test]
fn go_streaming_example_inspected_and_called_without_stopping_it() {
    let (mut plugin, json) = streamer();
    let inspect = reattach(&json, &["--json"], "");
    let report = inspect.expect_code(0).json();
    assert_eq!(report["reattach"]["protocol"], "grpc");
    assert_eq!(report["reattach"]["pid"], plugin.pid());
    assert_eq!(report["health"]["status"], "SERVING");
    assert_eq!(report["shutdown"]["left_running"], true);
    let app = report["services"]["app"].as_array().expect("services");
    assert_eq!(app[0]["name"], "proto.StreamerService");
    assert!(plugin.alive(), "reattach must not stop the plugin");

    // Its state lives in the process: configure, write a stream, read it back in chunks.
    let data = plugin.dir().join("data");
    let configure = format!(
        r#"{{"path":{:?},"chunkSize":"3"}}"#,
        data.to_str().expect("UTF-8")
    );
    reattach(&json, &["proto.StreamerService/Configure", &configure], "").expect_code(0);
    // "hel" and "lo", base64, as a client stream from stdin. The example's Write never sends
    // its reply message (its Go host ignores that): the call says so, with Internal's code.
    let write = reattach(
        &json,
        &["proto.StreamerService/Write", "-"],
        r#"{"bytesToWrite":"aGVs"} {"bytesToWrite":"bG8="}"#,
    );
    write.expect_code(64 + 13);
    assert!(
        write.stderr.contains("Message: Missing response message.")
            && write.stderr.contains("sent no reply message"),
        "{}",
        write.stderr
    );
    assert_eq!(std::fs::read(&data).expect("written"), b"hello");
    let read = reattach(&json, &["proto.StreamerService/Read", "{}"], "");
    // Server-streaming: one JSON object per line.
    assert_eq!(
        read.expect_code(0).stdout,
        "{\"readBytes\":\"aGVs\"}\n{\"readBytes\":\"bG8=\"}\n"
    );
    assert!(plugin.alive(), "still running after the calls");
}

#[test]
fn from_an_environment_variable_with_a_name() {
    let (mut plugin, json) = streamer();
    let map = format!(r#"{{"example/streamer":{json},"example/other":{json}}}"#);
    let dir = tempfile::tempdir().expect("tempdir");
    let args: Vec<&OsStr> = [
        "reattach",
        "--from-env",
        "TF_REATTACH_PROVIDERS",
        "--name",
        "example/streamer",
    ]
    .iter()
    .map(OsStr::new)
    .collect();
    let run = plugwire_env(
        dir.path(),
        &args,
        "",
        &[("TF_REATTACH_PROVIDERS", OsStr::new(&map))],
    );
    run.expect_code(0);
    assert!(
        run.stdout
            .contains("reattached        example/streamer: grpc version 1"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("proto.StreamerService"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("not asked: the plugin keeps running"),
        "{}",
        run.stdout
    );
    // Without --name, a map of two is ambiguous.
    let args: Vec<&OsStr> = ["reattach", "--from-env", "TF_REATTACH_PROVIDERS"]
        .iter()
        .map(OsStr::new)
        .collect();
    let run = plugwire_env(
        dir.path(),
        &args,
        "",
        &[("TF_REATTACH_PROVIDERS", OsStr::new(&map))],
    );
    run.expect_code(2);
    assert!(
        run.stderr.contains("choose one with --name"),
        "{}",
        run.stderr
    );
    assert!(plugin.alive());
}

#[test]
fn a_rust_plugin_in_debug_mode() {
    // The interop fixture's debug mode prints its reattach map (Test: true) on stdout.
    let mut plugin = Running::start(&example("plugwire-fixture-plugin"), &["debug"], &[]);
    let map = plugin.first_line.clone();
    assert!(map.contains(r#""Test":true"#), "{map}");
    let run = reattach(&map, &["grpctest.Test/Double", r#"{"Input":4}"#], "");
    assert_eq!(run.expect_code(0).stdout, "{\n  \"Output\": 8\n}\n");
    let run = reattach(&map, &[], "");
    run.expect_code(0);
    assert!(run.stdout.contains("test mode"), "{}", run.stdout);
    assert!(
        plugin.alive(),
        "a plugin in test mode is never stopped by its host"
    );
}

#[test]
fn nothing_running_at_the_address() {
    let json = r#"{"Protocol":"grpc","ProtocolVersion":1,"Pid":0,"Addr":{"Network":"unix","String":"/nonexistent/plugin1"}}"#;
    let run = plugwire(&["reattach", json]);
    run.expect_code(1);
    assert!(
        run.stderr
            .contains("cannot attach to unix /nonexistent/plugin1"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("reattachment process not found"),
        "{}",
        run.stderr
    );
}

#[test]
fn kv_examples_started_by_their_host_and_reattached() {
    // Not in debug mode: a plugin another host launched (Test false). plugwire never stops it.
    for (plugin, versions) in [(go("kv-go-plugin"), "1"), (example("kv-plugin"), "1")] {
        let mut running = Running::start(
            &plugin,
            &[],
            &[
                ("BASIC_PLUGIN", "hello"),
                ("PLUGIN_PROTOCOL_VERSIONS", versions),
            ],
        );
        let fields: Vec<&str> = running.first_line.split('|').collect();
        let json = serde_json::json!({
            "Protocol": fields.get(4).copied().unwrap_or_default(),
            "ProtocolVersion": 1,
            "Pid": running.pid(),
            "Addr": {"Network": fields[2], "String": fields[3]},
        })
        .to_string();
        reattach(
            &json,
            &["proto.KV/Put", r#"{"key":"r","value":"cg=="}"#],
            "",
        )
        .expect_code(0);
        assert!(running.dir().join("kv_r").exists(), "{}", plugin.display());
        let report = reattach(&json, &["--json"], "").expect_code(0).json();
        assert_eq!(report["services"]["app"][0]["name"], "proto.KV");
        assert!(running.alive(), "{} must keep running", plugin.display());
    }
}

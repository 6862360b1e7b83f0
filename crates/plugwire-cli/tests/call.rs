//! `plugwire call`: JSON in, JSON out, against go-plugin's examples and plugwire's.

mod support;

use std::ffi::OsStr;
use std::path::Path;

use support::{Run, example, go, plugwire_in};

/// `plugwire call --cookie BASIC_PLUGIN=hello [extra...] -- <plugin> <method> <json>` in `dir`.
fn call(dir: &Path, plugin: &Path, extra: &[&str], method: &str, json: &str) -> Run {
    let mut args: Vec<&OsStr> = ["call", "--cookie", "BASIC_PLUGIN=hello"]
        .iter()
        .map(OsStr::new)
        .collect();
    args.extend(extra.iter().map(OsStr::new));
    args.push(OsStr::new("--"));
    args.push(plugin.as_os_str());
    args.push(OsStr::new(method));
    args.push(OsStr::new(json));
    plugwire_in(dir, &args, "")
}

#[test]
fn go_grpc_kv_put_then_get() {
    let dir = tempfile::tempdir().expect("tempdir");
    let kv = go("kv-go-plugin");
    // "hello" in base64: bytes fields are base64 in proto3 JSON.
    let put = call(
        dir.path(),
        &kv,
        &[],
        "proto.KV/Put",
        r#"{"key":"greeting","value":"aGVsbG8="}"#,
    );
    assert_eq!(put.expect_code(0).stdout, "{}\n");
    let stored = std::fs::read(dir.path().join("kv_greeting")).expect("the plugin wrote its file");
    assert_eq!(stored, b"hello\n\nWritten from plugin-go-grpc");
    let get = call(
        dir.path(),
        &kv,
        &[],
        "proto.KV/Get",
        r#"{"key":"greeting"}"#,
    );
    // "hello\n\nWritten from plugin-go-grpc", base64.
    assert_eq!(
        get.expect_code(0).stdout,
        "{\n  \"value\": \"aGVsbG8KCldyaXR0ZW4gZnJvbSBwbHVnaW4tZ28tZ3JwYw==\"\n}\n"
    );
}

#[test]
fn a_grpc_error_is_printed_with_its_code_and_exits_64_plus_the_code() {
    let dir = tempfile::tempdir().expect("tempdir");
    let get = call(
        dir.path(),
        &go("kv-go-plugin"),
        &[],
        "proto.KV/Get",
        r#"{"key":"absent"}"#,
    );
    // The Go example returns os.ReadFile's error as is: code Unknown (2).
    get.expect_code(66);
    assert_eq!(get.stdout, "");
    assert!(
        get.stderr.contains(
            "ERROR:\n  Code: Unknown\n  Message: open kv_absent: no such file or directory"
        ),
        "{}",
        get.stderr
    );
}

#[test]
fn go_bidirectional_get() {
    let dir = tempfile::tempdir().expect("tempdir");
    // The counter keeps {"Value": N} in kv_<key>; Put needs a broker callback from its host.
    std::fs::write(dir.path().join("kv_hits"), r#"{"Value":41}"#).expect("write");
    let get = call(
        dir.path(),
        &go("counter-go-plugin"),
        &[],
        "proto.Counter/Get",
        r#"{"key":"hits"}"#,
    );
    // int64 is a string in proto3 JSON.
    assert_eq!(get.expect_code(0).stdout, "{\n  \"value\": \"41\"\n}\n");
}

#[test]
fn go_negotiated_kv_at_version_3() {
    let dir = tempfile::tempdir().expect("tempdir");
    let plugin = go("negotiated-go-plugin");
    let extra = ["--versions", "3"];
    call(
        dir.path(),
        &plugin,
        &extra,
        "proto.KV/Put",
        r#"{"key":"k","value":"dg=="}"#,
    )
    .expect_code(0);
    let get = call(
        dir.path(),
        &plugin,
        &extra,
        "proto.KV/Get",
        r#"{"key":"k"}"#,
    );
    let value: serde_json::Value = serde_json::from_str(&get.expect_code(0).stdout).expect("JSON");
    assert!(
        value["value"].as_str().is_some_and(|v| !v.is_empty()),
        "{value}"
    );
}

#[test]
fn go_streaming_configure_is_unary() {
    let dir = tempfile::tempdir().expect("tempdir");
    let run = call(
        dir.path(),
        &go("streamer-go-plugin"),
        &[],
        "proto.StreamerService/Configure",
        r#"{"path":"data","chunkSize":"4"}"#,
    );
    assert_eq!(run.expect_code(0).stdout, "{}\n");
}

#[test]
fn rust_kv_put_then_get() {
    let dir = tempfile::tempdir().expect("tempdir");
    let kv = example("kv-plugin");
    call(
        dir.path(),
        &kv,
        &[],
        "proto.KV/Put",
        r#"{"key":"a","value":"aGk="}"#,
    )
    .expect_code(0);
    let get = call(dir.path(), &kv, &[], "proto.KV/Get", r#"{"key":"a"}"#);
    let value: serde_json::Value = serde_json::from_str(&get.expect_code(0).stdout).expect("JSON");
    // "hi\n\nWritten from plugwire kv-plugin", base64.
    assert_eq!(
        value["value"],
        "aGkKCldyaXR0ZW4gZnJvbSBwbHVnd2lyZSBrdi1wbHVnaW4="
    );
}

#[test]
fn rust_counter_get_with_a_proto_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("kv_n"), r#"{"Value":7}"#).expect("write");
    let proto = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../proto/examples/counter.proto");
    let proto = proto.to_str().expect("UTF-8");
    let get = call(
        dir.path(),
        &example("counter-plugin"),
        &["--proto", proto],
        "proto.Counter/Get",
        r#"{"key":"n"}"#,
    );
    assert_eq!(get.expect_code(0).stdout, "{\n  \"value\": \"7\"\n}\n");
}

#[test]
fn a_proto_file_where_reflection_cannot_describe_the_service() {
    // The Go fixture links both of go-plugin's example protos under one file name, so its
    // reflection cannot describe proto.KV; the .proto file can.
    let dir = tempfile::tempdir().expect("tempdir");
    let fixture = go("fixture-plugin");
    let mut args: Vec<&OsStr> = ["call", "--cookie", "TEST_MAGIC_COOKIE=test", "--"]
        .iter()
        .map(OsStr::new)
        .collect();
    args.extend([
        fixture.as_os_str(),
        OsStr::new("serve"),
        OsStr::new("grpctest.Test/Double"),
    ]);
    args.push(OsStr::new(r#"{"Input":21}"#));
    let double = plugwire_in(dir.path(), &args, "");
    // grpctest's JSON names are its field names, capitalised.
    assert_eq!(double.expect_code(0).stdout, "{\n  \"Output\": 42\n}\n");
    let proto = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../proto/examples/kv.proto");
    let mut args: Vec<&OsStr> = ["call", "--cookie", "TEST_MAGIC_COOKIE=test", "--proto"]
        .iter()
        .map(OsStr::new)
        .collect();
    args.extend([
        proto.as_os_str(),
        OsStr::new("--"),
        fixture.as_os_str(),
        OsStr::new("serve"),
    ]);
    args.extend([
        OsStr::new("proto.KV/Put"),
        OsStr::new(r#"{"key":"x","value":"eQ=="}"#),
    ]);
    plugwire_in(dir.path(), &args, "").expect_code(0);
}

#[test]
fn requests_from_stdin_and_unknown_methods() {
    let dir = tempfile::tempdir().expect("tempdir");
    let kv = go("kv-go-plugin");
    let args: Vec<&OsStr> = ["call", "--cookie", "BASIC_PLUGIN=hello", "--"]
        .iter()
        .map(OsStr::new)
        .chain([kv.as_os_str(), OsStr::new("proto.KV/Put"), OsStr::new("-")])
        .collect();
    plugwire_in(dir.path(), &args, r#"{"key":"s","value":"cw=="}"#).expect_code(0);
    assert!(dir.path().join("kv_s").exists());
    let nope = call(dir.path(), &kv, &[], "proto.KV/Delete", "{}");
    nope.expect_code(1);
    assert!(
        nope.stderr
            .contains("service proto.KV has no method Delete; its methods: Get, Put"),
        "{}",
        nope.stderr
    );
    let bad = call(dir.path(), &kv, &[], "proto.KV/Get", r#"{"nokey":1}"#);
    bad.expect_code(1);
    assert!(
        bad.stderr
            .contains("the request is not a valid proto.GetRequest"),
        "{}",
        bad.stderr
    );
}

#[test]
fn a_bidi_stream_from_stdin_against_go_and_rust_fixtures() {
    // grpctest.Test/Stream echoes each request; one reply per line.
    let dir = tempfile::tempdir().expect("tempdir");
    for plugin in [go("fixture-plugin"), example("plugwire-fixture-plugin")] {
        let args: Vec<&OsStr> = ["call", "--cookie", "TEST_MAGIC_COOKIE=test", "--"]
            .iter()
            .map(OsStr::new)
            .chain([
                plugin.as_os_str(),
                OsStr::new("serve"),
                OsStr::new("grpctest.Test/Stream"),
                OsStr::new("-"),
            ])
            .collect();
        let run = plugwire_in(dir.path(), &args, r#"{"Input":21} {"Input":22}"#);
        assert_eq!(
            run.expect_code(0).stdout,
            "{\"Output\":21}\n{\"Output\":22}\n",
            "{}",
            plugin.display()
        );
    }
}

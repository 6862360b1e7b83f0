//! `plugwire check`: it passes on go-plugin's own plugins (with go-plugin's one documented
//! deviation) and on plugwire's, and each check fails, for the right reason, on the broken
//! fixture made for it.

mod support;

use std::path::Path;

use serde_json::Value;
use support::{cli_fixture, example, go, plugwire};

fn path(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

/// `check --json` with `args` before `--` and `command` after.
fn check(args: &[&str], command: &[&str]) -> (Option<i32>, Value) {
    let mut all = vec!["check", "--json"];
    all.extend_from_slice(args);
    all.push("--");
    all.extend_from_slice(command);
    let run = plugwire(&all);
    let code = run.code;
    (code, run.json())
}

fn status<'a>(report: &'a Value, id: &str) -> &'a Value {
    report["checks"]
        .as_array()
        .and_then(|checks| checks.iter().find(|c| c["id"] == id))
        .unwrap_or_else(|| panic!("no check {id} in {report}"))
}

/// Every check passes, but for `deviations` (go-plugin's own behaviour where the check asks
/// more).
fn assert_conforms(report: &Value, deviations: &[&str]) {
    let checks = report["checks"].as_array().expect("checks");
    assert_eq!(checks.len(), 15, "{report}");
    for check in checks {
        let id = check["id"].as_str().unwrap_or_default();
        let expected = if deviations.contains(&id) {
            "deviation"
        } else {
            "pass"
        };
        assert_eq!(check["status"], expected, "{id}: {check}");
    }
    assert_eq!(report["summary"]["failed"], 0);
}

/// go-plugin's plugins never notice their host is gone; they die of SIGPIPE at their next
/// write to stderr. The check says so, and does not count it as a failure.
fn assert_go_plugin_deviation(report: &Value) {
    let host_gone = status(report, "host-gone");
    assert!(
        host_gone["reason"]
            .as_str()
            .is_some_and(|r| r.contains("as go-plugin's own plugins") && r.contains("SIGPIPE")),
        "{host_gone}"
    );
}

const EXAMPLES: &[&str] = &["--cookie", "BASIC_PLUGIN=hello"];

#[test]
fn go_grpc_kv_example_conforms() {
    let (code, report) = check(EXAMPLES, &[path(&go("kv-go-plugin"))]);
    assert_conforms(&report, &["host-gone"]);
    assert_go_plugin_deviation(&report);
    assert_eq!(code, Some(0));
}

#[test]
fn go_bidirectional_example_conforms() {
    let (code, report) = check(EXAMPLES, &[path(&go("counter-go-plugin"))]);
    assert_conforms(&report, &["host-gone"]);
    assert_go_plugin_deviation(&report);
    assert_eq!(code, Some(0));
}

#[test]
fn go_streaming_example_conforms() {
    let (code, report) = check(EXAMPLES, &[path(&go("streamer-go-plugin"))]);
    assert_conforms(&report, &["host-gone"]);
    assert_eq!(code, Some(0));
}

#[test]
fn go_negotiated_example_conforms_at_version_3() {
    let (code, report) = check(
        &["--cookie", "BASIC_PLUGIN=hello", "--versions", "3"],
        &[path(&go("negotiated-go-plugin"))],
    );
    assert_conforms(&report, &["host-gone"]);
    // Offered nothing it has, it answers its lowest version: 2, its netrpc one.
    assert!(
        status(&report, "negotiation")["reason"]
            .as_str()
            .is_some_and(|r| r.contains("offered only 999 it answered 2, its lowest")),
        "{report}"
    );
    assert_eq!(code, Some(0));
}

#[test]
fn rust_examples_conform() {
    for plugin in ["kv-plugin", "counter-plugin"] {
        let (code, report) = check(EXAMPLES, &[path(&example(plugin))]);
        assert_conforms(&report, &[]);
        assert_eq!(code, Some(0), "{plugin}");
    }
}

#[test]
fn the_healthy_fixture_passes_every_check() {
    let (code, report) = check(EXAMPLES, &[path(&cli_fixture()), "serve"]);
    assert_conforms(&report, &[]);
    assert_eq!(code, Some(0));
}

#[test]
fn a_netrpc_plugin_gets_the_checks_that_apply_to_netrpc() {
    // go-plugin's basic example: netrpc only.
    let (code, report) = check(EXAMPLES, &[path(&go("greeter-go-plugin"))]);
    for id in [
        "cookie",
        "negotiation",
        "handshake-line",
        "socket",
        "health",
        "shutdown",
        "logs",
        "auto-mtls-cert",
        "multiplex-field",
        "sigint",
    ] {
        assert_eq!(status(&report, id)["status"], "pass", "{id}: {report}");
    }
    assert_eq!(status(&report, "host-gone")["status"], "deviation");
    assert!(
        status(&report, "health")["reason"]
            .as_str()
            .is_some_and(|r| r.contains("Control.Ping answers"))
    );
    for id in ["reflection", "stdio", "broker", "auto-mtls-client-auth"] {
        let check = status(&report, id);
        assert_eq!(check["status"], "not-applicable", "{id}: {check}");
        assert!(
            check["reason"]
                .as_str()
                .is_some_and(|r| r.contains("netrpc"))
        );
    }
    assert_eq!(code, Some(0));
}

#[test]
fn a_plugin_that_cannot_start_this_way_stops_the_run() {
    let run = plugwire(&[
        "check",
        "--cookie",
        "BASIC_PLUGIN=nope",
        "--",
        path(&go("kv-go-plugin")),
    ]);
    run.expect_code(1);
    assert!(
        run.stdout
            .contains("The plugin does not start this way, so no check ran"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("pass --preset go-plugin-examples"),
        "{}",
        run.stdout
    );
}

#[test]
fn human_output_lists_each_check_and_a_summary() {
    let run = plugwire(&[
        "check",
        "--only",
        "cookie,handshake-line,host-gone",
        "--cookie",
        "BASIC_PLUGIN=hello",
        "--",
        path(&go("kv-go-plugin")),
    ]);
    run.expect_code(0);
    let out = &run.stdout;
    assert!(
        out.lines().any(|l| l.starts_with("  PASS       cookie ")),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.starts_with("  PASS       handshake-line ")),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.starts_with("  DEVIATION  host-gone ")),
        "{out}"
    );
    // What go-plugin expects is shown where the plugin departs from it.
    assert!(
        out.contains("go-plugin: plugwire plugins exit once their host is gone"),
        "{out}"
    );
    assert!(
        out.contains("2 passed, 0 failed, 1 go-plugin deviation, 0 not applicable"),
        "{out}"
    );
}

/// Each check is shown to be able to fail: its broken fixture fails it, with this reason.
fn assert_fails(mode: &str, id: &str, extra: &[&str], reason: &str) {
    let mut args = vec!["--only", id, "--cookie", "BASIC_PLUGIN=hello"];
    args.extend_from_slice(extra);
    let (code, report) = check(&args, &[path(&cli_fixture()), mode]);
    let result = status(&report, id);
    assert_eq!(result["status"], "fail", "{mode}: {result}");
    assert!(
        result["reason"]
            .as_str()
            .is_some_and(|r| r.contains(reason)),
        "{mode}: expected {reason:?} in {result}"
    );
    assert!(result["expected"].as_str().is_some_and(|e| !e.is_empty()));
    assert_eq!(code, Some(1), "a failed check fails the run");
}

#[test]
fn cookie_fails_on_a_plugin_that_does_not_check_it() {
    assert_fails(
        "no-cookie-check",
        "cookie",
        &[],
        "it started without the cookie",
    );
}

#[test]
fn negotiation_fails_on_a_plugin_that_picks_the_lowest() {
    assert_fails(
        "picks-lowest",
        "negotiation",
        &["--versions", "1,2"],
        "offered [1 2] it answered 1, though it has 2",
    );
}

#[test]
fn handshake_line_fails_on_output_before_it() {
    assert_fails(
        "stdout-banner",
        "handshake-line",
        &[],
        "its first stdout line, \"kv plugin starting up...\", is refused",
    );
}

#[test]
fn socket_fails_on_a_group_writable_socket() {
    assert_fails(
        "socket-group-writable",
        "socket",
        &[],
        "has mode 660: its group may connect",
    );
}

#[test]
fn health_fails_when_not_serving() {
    assert_fails(
        "health-not-serving",
        "health",
        &[],
        "service \"plugin\" answers NOT_SERVING",
    );
}

#[test]
fn reflection_fails_without_reflection() {
    assert_fails(
        "no-reflection",
        "reflection",
        &[],
        "neither grpc.reflection.v1 nor v1alpha answers",
    );
}

#[test]
fn shutdown_fails_when_the_plugin_goes_on() {
    assert_fails(
        "shutdown-ignored",
        "shutdown",
        &[],
        "still running 2.0 s after GRPCController/Shutdown",
    );
}

#[test]
fn stdio_fails_when_the_stream_ends_at_once() {
    assert_fails("stdio-ends", "stdio", &[], "StreamStdio ended at once");
}

#[test]
fn logs_fail_on_a_line_that_panics_go_hosts() {
    assert_fails(
        "bad-log-json",
        "logs",
        &[],
        "@message is 5 (not a string): go-plugin reads it with an unchecked type assertion",
    );
}

#[test]
fn auto_mtls_cert_fails_without_a_certificate() {
    assert_fails(
        "ignores-auto-mtls",
        "auto-mtls-cert",
        &[],
        "with PLUGIN_CLIENT_CERT set it printed no certificate in field 6",
    );
}

#[test]
fn auto_mtls_client_auth_fails_when_any_client_gets_in() {
    assert_fails(
        "mtls-any-client",
        "auto-mtls-client-auth",
        &[],
        "it accepts a client with no certificate",
    );
}

#[test]
fn multiplex_field_fails_when_printed_unasked() {
    assert_fails(
        "mux-field-always",
        "multiplex-field",
        &[],
        "without PLUGIN_MULTIPLEX_GRPC it printed a 7th field",
    );
}

#[test]
fn broker_fails_without_a_broker() {
    assert_fails("no-broker", "broker", &[], "it serves no plugin.GRPCBroker");
}

#[test]
fn host_gone_fails_on_a_plugin_that_outlives_its_host() {
    assert_fails(
        "outlives-host",
        "host-gone",
        &[],
        "still running 5.0 s after its host went away, and after a SIGINT",
    );
}

#[test]
fn sigint_fails_on_a_plugin_that_dies_of_it() {
    assert_fails(
        "dies-on-sigint",
        "sigint",
        &[],
        "SIGINT ended it (exit status 130)",
    );
}

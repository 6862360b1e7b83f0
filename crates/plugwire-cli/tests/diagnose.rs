//! Failures explained: each of the ways a plugin fails to start, and what `plugwire` says.

mod support;

use std::ffi::OsStr;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use serde_json::Value;
use support::{cli_fixture, example, go, plugwire, plugwire_env};

fn path(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

/// `inspect --json` with `args` before `--` and `command` after; the failure.
fn inspect_failure(args: &[&str], command: &[&str]) -> Value {
    let mut all = vec!["inspect", "--json"];
    all.extend_from_slice(args);
    all.push("--");
    all.extend_from_slice(command);
    let run = plugwire(&all);
    let report = run.expect_code(1).json();
    report["failure"].clone()
}

fn kind(failure: &Value) -> &str {
    failure["problem"]["kind"].as_str().unwrap_or_default()
}

fn hints(failure: &Value) -> String {
    failure["hints"]
        .as_array()
        .map(|h| {
            h.iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default()
}

fn script(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let file = dir.join(name);
    std::fs::write(&file, text).expect("write");
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    file
}

#[test]
fn a_wrong_cookie_names_the_preset_the_binary_contains() {
    let failure = inspect_failure(
        &["--cookie", "BASIC_PLUGIN=nope"],
        &[path(&go("kv-go-plugin"))],
    );
    assert_eq!(kind(&failure), "cookie-refused", "{failure}");
    assert!(
        failure["summary"]
            .as_str()
            .is_some_and(|s| s.contains("does not accept the magic cookie BASIC_PLUGIN=nope")),
        "{failure}"
    );
    assert!(
        hints(&failure).contains("pass --preset go-plugin-examples"),
        "{failure}"
    );
    assert_eq!(failure["exit_status"], "exit status 1");
    assert!(
        failure["stderr_tail"][0]
            .as_str()
            .is_some_and(|l| l.starts_with("This binary is a plugin.")),
        "{failure}"
    );
}

#[test]
fn a_missing_cookie_names_the_preset_the_file_name_suggests() {
    let dir = tempfile::tempdir().expect("tempdir");
    let provider = script(
        dir.path(),
        "terraform-provider-example_v1.0.0",
        "#!/bin/sh\necho 'This binary is a plugin. These are not meant to be executed directly.' >&2\nexit 1\n",
    );
    let failure = inspect_failure(&[], &[path(&provider)]);
    assert_eq!(kind(&failure), "cookie-refused", "{failure}");
    assert!(
        failure["summary"]
            .as_str()
            .is_some_and(|s| s.contains("none was given"))
    );
    assert!(
        hints(&failure).contains("pass --preset terraform"),
        "{failure}"
    );
}

#[test]
fn a_version_mismatch_shows_both_sides() {
    let failure = inspect_failure(
        &["--cookie", "BASIC_PLUGIN=hello", "--versions", "7,8"],
        &[path(&go("negotiated-go-plugin"))],
    );
    assert_eq!(
        failure["problem"],
        serde_json::json!({"kind": "version-mismatch", "plugin": 2, "offered": [7, 8]})
    );
    assert!(
        failure["summary"]
            .as_str()
            .is_some_and(|s| s.contains("plugwire offered [7 8], the plugin answered 2")),
        "{failure}"
    );
    assert!(hints(&failure).contains("try --versions 2"), "{failure}");
}

#[test]
fn a_file_that_is_not_executable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let copy = dir.path().join("kv-go-plugin");
    std::fs::copy(go("kv-go-plugin"), &copy).expect("copy");
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let failure = inspect_failure(&["--cookie", "BASIC_PLUGIN=hello"], &[path(&copy)]);
    assert_eq!(
        failure["problem"],
        serde_json::json!({"kind": "not-executable", "mode": "644"})
    );
    assert!(hints(&failure).contains("chmod +x"), "{failure}");
}

#[test]
fn a_binary_for_another_architecture() {
    // An ELF header for another machine than this one: aarch64 here, x86_64 on aarch64.
    let machine: u16 = if std::env::consts::ARCH == "aarch64" {
        62
    } else {
        183
    };
    let mut elf = vec![0x7f, b'E', b'L', b'F', 2, 1, 1, 0];
    elf.resize(64, 0);
    elf[16] = 2; // ET_EXEC
    elf[18..20].copy_from_slice(&machine.to_le_bytes());
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("plugin-for-elsewhere");
    std::fs::write(&file, &elf).expect("write");
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let failure = inspect_failure(&["--cookie", "K=v"], &[path(&file)]);
    assert_eq!(kind(&failure), "wrong-binary", "{failure}");
    let other = if machine == 62 { "x86_64" } else { "aarch64" };
    assert!(
        failure["summary"]
            .as_str()
            .is_some_and(|s| s.contains(&format!("64-bit {other} ELF binary"))),
        "{failure}"
    );
}

#[test]
fn a_script_whose_interpreter_is_missing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = script(
        dir.path(),
        "plugin.py",
        "#!/nonexistent/python3\nprint('hi')\n",
    );
    let failure = inspect_failure(&["--cookie", "K=v"], &[path(&file)]);
    assert_eq!(
        failure["problem"],
        serde_json::json!({"kind": "missing-interpreter", "interpreter": "/nonexistent/python3"})
    );
}

#[test]
fn a_command_that_does_not_exist() {
    let failure = inspect_failure(&["--cookie", "K=v"], &["./no-such-plugin"]);
    assert_eq!(kind(&failure), "not-found", "{failure}");
    let failure = inspect_failure(&["--cookie", "K=v"], &["no-such-plugin-anywhere"]);
    assert_eq!(kind(&failure), "not-found", "{failure}");
    assert!(
        failure["summary"]
            .as_str()
            .is_some_and(|s| s.contains("is not in PATH")),
        "{failure}"
    );
}

#[test]
fn output_on_stdout_before_the_handshake_line() {
    let failure = inspect_failure(
        &["--cookie", "BASIC_PLUGIN=hello"],
        &[path(&cli_fixture()), "stdout-banner"],
    );
    assert_eq!(
        failure["problem"],
        serde_json::json!({"kind": "stdout-before-handshake", "line": "kv plugin starting up..."})
    );
    assert!(
        hints(&failure).contains("must print nothing to stdout before it"),
        "{failure}"
    );
}

#[test]
fn a_plugin_that_never_prints_a_line() {
    let started = std::time::Instant::now();
    let failure = inspect_failure(
        &["--cookie", "TEST_MAGIC_COOKIE=test", "--timeout", "1s"],
        &[path(&example("plugwire-fixture-plugin")), "never"],
    );
    assert_eq!(kind(&failure), "no-handshake", "{failure}");
    assert!(
        failure["summary"]
            .as_str()
            .is_some_and(|s| s.contains("within 1s"))
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(20));
}

#[test]
fn a_plugin_that_exits_shows_its_stderr() {
    let failure = inspect_failure(
        &["--cookie", "TEST_MAGIC_COOKIE=test"],
        &[path(&example("plugwire-fixture-plugin")), "exit-early"],
    );
    assert_eq!(kind(&failure), "exited", "{failure}");
    assert_eq!(failure["exit_status"], "exit status 3");
    assert_eq!(
        failure["stderr_tail"],
        serde_json::json!(["fixture-plugin: exiting early on purpose"])
    );
}

#[test]
fn a_socket_path_too_long() {
    let base = tempfile::tempdir().expect("tempdir");
    let long = base.path().join("d".repeat(100));
    std::fs::create_dir(&long).expect("mkdir");
    let kv = go("kv-go-plugin");
    let args: Vec<&OsStr> = ["inspect", "--json", "--cookie", "BASIC_PLUGIN=hello", "--"]
        .iter()
        .map(OsStr::new)
        .chain(std::iter::once(kv.as_os_str()))
        .collect();
    let run = plugwire_env(base.path(), &args, "", &[("TMPDIR", long.as_os_str())]);
    let failure = run.expect_code(1).json()["failure"].clone();
    assert_eq!(kind(&failure), "socket-path-too-long", "{failure}");
    assert!(hints(&failure).contains("TMPDIR=/tmp"), "{failure}");
}

#[test]
fn failures_read_well_for_people() {
    let run = plugwire(&[
        "inspect",
        "--cookie",
        "BASIC_PLUGIN=nope",
        "--",
        path(&go("kv-go-plugin")),
    ]);
    run.expect_code(1);
    let out = &run.stdout;
    for line in [
        "error             the plugin refused to start: it does not accept the magic cookie BASIC_PLUGIN=nope",
        "  hint            the executable contains the cookie of the go-plugin-examples preset (BASIC_PLUGIN): pass --preset go-plugin-examples",
        "  exit            exit status 1",
        "    This binary is a plugin. These are not meant to be executed directly.",
    ] {
        assert!(out.contains(line), "{line:?} not in:\n{out}");
    }
}

//! The command line itself: help, presets, usage errors.

mod support;

use support::plugwire;

#[test]
fn help_shows_examples() {
    let run = plugwire(&["--help"]);
    run.expect_code(0);
    for text in [
        "plugwire inspect --cookie BASIC_PLUGIN=hello -- ./kv-go-plugin",
        "plugwire check",
        "Exit status: 0 success",
    ] {
        assert!(run.stdout.contains(text), "{text:?} in {}", run.stdout);
    }
    let run = plugwire(&["check", "--help"]);
    assert!(
        run.stdout.contains("auto-mtls-client-auth"),
        "{}",
        run.stdout
    );
}

#[test]
fn presets_say_where_their_values_come_from() {
    let run = plugwire(&["presets", "--json"]);
    let presets = run.expect_code(0).json();
    let terraform = presets
        .as_array()
        .and_then(|p| p.iter().find(|p| p["name"] == "terraform"))
        .expect("terraform");
    assert_eq!(terraform["cookie_key"], "TF_PLUGIN_MAGIC_COOKIE");
    assert_eq!(
        terraform["cookie_value"],
        "d602bf8f470bc67ca7faa0386276bbdd4330efaf76d1a219cb4d6991ca9872b2"
    );
    assert_eq!(terraform["versions"], serde_json::json!([5, 6]));
    assert_eq!(terraform["auto_mtls"], true);
    assert!(
        terraform["source"]
            .as_str()
            .is_some_and(|s| s.contains("hashicorp/terraform"))
    );
    let text = plugwire(&["presets"]);
    assert!(
        text.stdout
            .contains("cookie    VAULT_BACKEND_PLUGIN=6669da05-b1c8-4f49-97d9-c8e5bed98e20")
    );
}

#[test]
fn usage_errors_exit_2() {
    let run = plugwire(&["check", "--only", "nope", "--", "/bin/true"]);
    run.expect_code(2);
    assert!(
        run.stderr.contains("unknown check \"nope\""),
        "{}",
        run.stderr
    );
    let run = plugwire(&["inspect", "--preset", "nope", "--", "/bin/true"]);
    run.expect_code(2);
    assert!(
        run.stderr
            .contains("unknown preset \"nope\"; presets: terraform"),
        "{}",
        run.stderr
    );
    let run = plugwire(&["call", "--", "./kv", "not-a-method"]);
    run.expect_code(2);
    assert!(
        run.stderr.contains("is not a method name"),
        "{}",
        run.stderr
    );
}

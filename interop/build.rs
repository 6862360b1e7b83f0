//! Finds out whether the Go fixtures are built. Without them (a machine without Go, a plain
//! `cargo test`), the tests that need Go are compiled out and one ignored test, and a build
//! warning, say so; `make test` builds them first, and with `PLUGWIRE_REQUIRE_GO=1` (set by
//! `make test` and CI) their absence is an error instead.

use std::path::PathBuf;

fn main() {
    println!("cargo::rustc-check-cfg=cfg(plugwire_no_go)");
    println!("cargo::rerun-if-env-changed=PLUGWIRE_GO_FIXTURES");
    println!("cargo::rerun-if-env-changed=PLUGWIRE_REQUIRE_GO");
    let dir = std::env::var_os("PLUGWIRE_GO_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/go-fixtures"));
    let marker = dir.join("fixture-host");
    println!("cargo::rerun-if-changed={}", marker.display());
    if marker.exists() {
        return;
    }
    if std::env::var_os("PLUGWIRE_REQUIRE_GO").is_some_and(|v| v == "1") {
        panic!(
            "the Go fixtures are missing ({}): run `make go-fixtures` (needs Go)",
            marker.display()
        );
    }
    println!("cargo::rustc-cfg=plugwire_no_go");
    println!(
        "cargo::warning=the Go fixtures are not built ({}): the interop tests against Go are \
         left out; `make test` builds them and runs everything",
        marker.display()
    );
}

//! Replays the fuzz targets' seed corpus (`fuzz/corpus/<target>/*`) on stable, so `make test`
//! keeps them passing; `make fuzz` explores from the same seeds with cargo-fuzz.

#[path = "../../fuzz/src/targets.rs"]
#[allow(dead_code, unreachable_pub)]
mod targets;

use std::path::Path;

fn replay(target: &str, run: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target);
    let mut count = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.expect("corpus entry").path();
        let data = std::fs::read(&path).expect("corpus file");
        run(&data);
        count += 1;
    }
    assert!(
        count >= 3,
        "{target}: only {count} seeds in {}",
        dir.display()
    );
}

#[test]
fn handshake_line_corpus() {
    replay("handshake_line", targets::handshake_line);
}

#[test]
fn protocol_versions_corpus() {
    replay("protocol_versions", targets::protocol_versions);
}

#[test]
fn cert_field_corpus() {
    replay("cert_field", targets::cert_field);
}

#[test]
fn hclog_line_corpus() {
    replay("hclog_line", targets::hclog_line);
}

#[test]
fn gob_stream_corpus() {
    replay("gob_stream", targets::gob_stream);
}

#[test]
fn netrpc_framing_corpus() {
    replay("netrpc_framing", targets::netrpc_framing);
}

#[test]
fn yamux_session_corpus() {
    replay("yamux_session", targets::yamux_session);
}

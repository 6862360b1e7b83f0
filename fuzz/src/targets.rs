//! The bodies of plugwire's fuzz targets. Shared by the cargo-fuzz binaries (`make fuzz`) and
//! by the replay test that runs the seed corpus on stable in `make test`
//! (`interop/tests/fuzz_corpus.rs`).

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt as _;

use plugwire_protocol::env::{PROTOCOL_VERSIONS, PluginEnv, negotiate_version};
use plugwire_protocol::handshake::{
    HandshakeLine, HostExpectations, Protocol, decode_cert_field, encode_cert_field,
};

/// A handshake line from a plugin: never panics; what parses prints and parses back the same.
pub fn handshake_line(data: &[u8]) {
    let host = HostExpectations {
        versions: &[1, 2, 5],
        allowed_protocols: &[Protocol::Grpc],
        multiplex: true,
    };
    let _ = host.accept_bytes(data);
    if let Ok(line) = HandshakeLine::parse_bytes(data) {
        let printed = line.to_string();
        let again = HandshakeLine::parse(&printed)
            .unwrap_or_else(|e| panic!("{printed:?} (printed from {line:?}) does not parse: {e}"));
        assert_eq!(again, line, "round trip of {printed:?}");
    }
}

/// `PLUGIN_PROTOCOL_VERSIONS` from a host: never panics; negotiation picks an offered version or
/// the plugin's lowest.
pub fn protocol_versions(data: &[u8]) {
    let env = PluginEnv::from_vars([(OsStr::new(PROTOCOL_VERSIONS), OsStr::from_bytes(data))]);
    let offered = env.host_versions();
    let mine = [1, 3, 7];
    let chosen = negotiate_version(mine, &offered.versions);
    match chosen {
        Some(v) if offered.versions.contains(&v) => {
            assert!(
                mine.iter()
                    .filter(|m| offered.versions.contains(m))
                    .all(|m| *m <= v)
            );
        }
        Some(v) => assert_eq!(v, 1, "no common version: the lowest"),
        None => panic!("the plugin has versions"),
    }
}

/// Field 6: never panics; what decodes re-encodes to an equivalent field.
pub fn cert_field(data: &[u8]) {
    if let Ok(field) = std::str::from_utf8(data)
        && let Ok(cert) = decode_cert_field(field)
    {
        let again = decode_cert_field(&encode_cert_field(&cert)).expect("re-encoded field decodes");
        assert_eq!(again, cert);
    }
}

/// A plugin's stderr line: never panics, whatever the bytes.
pub fn hclog_line(data: &[u8]) {
    let mut parser = plugwire_host::LogParser::new();
    for line in data.split(|b| *b == b'\n') {
        let entry = parser.parse_line(line);
        let _ = entry.fields_text();
    }
    let _ = parser.fragment(data);
}

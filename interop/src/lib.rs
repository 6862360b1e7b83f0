//! plugwire's interop harness: runs fixture hosts against fixture plugins, Go and Rust, and
//! collects what each host observed.
//!
//! Every cell of the matrix is one host process (Go or Rust fixture host, or an example host)
//! given one plugin executable, a plugin mode and a scenario name. Hosts print `key=<json>`
//! observation lines; the tests in `tests/` hold the expectations, the same for every pairing.

#![allow(clippy::print_stdout)] // fixtures report on stdout by design

pub mod harness;
pub mod tls;

/// The generated code of `proto/test/grpctest.proto` (go-plugin's `test/grpc`).
#[allow(missing_docs, unreachable_pub, clippy::all, unused_qualifications)]
pub mod pb {
    include!("pb/grpctest.rs");
    /// Encoded `FileDescriptorSet`, for gRPC reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!("pb/grpctest_descriptor.bin");
}

/// The fixtures' handshake cookie: go-plugin's own test cookie.
pub fn cookie() -> plugwire_host::MagicCookie {
    plugwire_host::MagicCookie::new("TEST_MAGIC_COOKIE", "test")
}

/// The plugin name the fixtures serve and dispense.
pub const PLUGIN_NAME: &str = "test";

/// Prints one observation as `key=<json>`.
pub fn report(key: &str, value: impl serde::Serialize) {
    let json = serde_json::to_string(&value).unwrap_or_else(|e| format!("\"<{e}>\""));
    println!("{key}={json}");
}

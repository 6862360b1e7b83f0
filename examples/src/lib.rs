//! Rust peers of go-plugin v1.8.0's examples, interchangeable with the Go programs:
//!
//! | Binary | Peer of | Run with |
//! |---|---|---|
//! | `kv-host` | `examples/grpc` (the host) | `KV_PLUGIN=<command> kv-host put KEY VALUE`, `... get KEY` |
//! | `kv-plugin` | `examples/grpc/plugin-go-grpc` | launched by either host |
//! | `counter-host` | `examples/bidirectional` (the host) | `COUNTER_PLUGIN=<command> counter-host [--mux] [--auto-mtls] put KEY N`, `... get KEY` |
//! | `counter-plugin` | `examples/bidirectional/plugin-go-grpc` | launched by either host |
//!
//! They use the same protos (package `proto`), handshake (cookie `BASIC_PLUGIN=hello`, version 1)
//! and plugin names (`kv_grpc`, `counter`) as go-plugin's examples.

/// The generated protobuf code of the examples.
#[allow(missing_docs, unreachable_pub, clippy::all, unused_qualifications)]
pub mod pb {
    /// `examples/kv.proto` (package `proto`): the `KV` service.
    pub mod kv {
        include!("pb/kv.rs");
        /// Encoded `FileDescriptorSet`, for gRPC reflection.
        pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!("pb/kv_descriptor.bin");
    }
    /// `examples/counter.proto` (package `proto`): `Counter` and the host's `AddHelper`.
    pub mod counter {
        include!("pb/counter.rs");
        /// Encoded `FileDescriptorSet`, for gRPC reflection.
        pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!("pb/counter_descriptor.bin");
    }
}

plugwire_host::grpc_client!(
    pb::kv::kv_client::KvClient<plugwire_host::Channel>,
    pb::counter::counter_client::CounterClient<plugwire_host::Channel>,
    pb::counter::add_helper_client::AddHelperClient<plugwire_host::Channel>,
);

/// The handshake cookie of go-plugin's examples.
pub fn cookie() -> plugwire_host::MagicCookie {
    plugwire_host::MagicCookie::new("BASIC_PLUGIN", "hello")
}

/// A `sh -c <command>` command, as go-plugin's example hosts launch their plugin.
pub fn shell_command(command: &str) -> std::process::Command {
    let mut cmd = std::process::Command::new("sh");
    cmd.arg("-c").arg(command);
    cmd
}

/// Logs to stderr at the level in `var` (default `warn`), for the example programs.
pub fn init_logging(var: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env(var)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// An error with its causes, for messages sent back over gRPC.
pub fn error_text(error: &dyn std::error::Error) -> String {
    plugwire_plugin::error_chain(error)
}

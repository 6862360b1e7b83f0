//! Rust peers of go-plugin v1.8.0's examples, interchangeable with the Go programs (same command
//! lines, environment variables, plugin paths and files):
//!
//! | Binary | Peer of | Run with |
//! |---|---|---|
//! | `greeter-host` | `examples/basic` (the host) | `greeter-host`: runs `./plugin/greeter` over netrpc |
//! | `greeter-plugin` | `examples/basic/plugin` | launched by either host |
//! | `kv-host` | `examples/grpc` (the host) | `KV_PROTO=grpc\|netrpc KV_PLUGIN=<command> kv-host put KEY VALUE`, `... get KEY` |
//! | `kv-plugin` | `examples/grpc/plugin-go-grpc` | launched by either host (`KV_PROTO=grpc`) |
//! | `kv-plugin-netrpc` | `examples/grpc/plugin-go-netrpc` | launched by either host (`KV_PROTO=netrpc`) |
//! | `negotiated-host` | `examples/negotiated` (the host) | `KV_PROTO=grpc\|netrpc negotiated-host put KEY VALUE`, `... get KEY`: runs `./kv-plugin` |
//! | `negotiated-plugin` | `examples/negotiated/plugin-go` | launched by either host: version 2 over netrpc, 3 over gRPC |
//! | `streamer-host` | `examples/streaming` (the host) | `streamer-host FILE`: runs `./plugin/streamer` |
//! | `streamer-plugin` | `examples/streaming/plugin` | launched by either host |
//! | `counter-host` | `examples/bidirectional` (the host) | `COUNTER_PLUGIN=<command> counter-host [--mux] [--auto-mtls] put KEY N`, `... get KEY` |
//! | `counter-plugin` | `examples/bidirectional/plugin-go-grpc` | launched by either host |
//!
//! They use the same protos (package `proto`), handshake (cookie `BASIC_PLUGIN=hello`, version 1;
//! 2 and 3 for the negotiated example), plugin names (`greeter`, `kv`, `kv_grpc`, `streamer`,
//! `counter`) and net/rpc methods (`Plugin.Greet`, `Plugin.Put`, `Plugin.Get`) as go-plugin's
//! examples.

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
    /// `examples/streamer.proto` (package `proto`): the `StreamerService`.
    pub mod streamer {
        include!("pb/streamer.rs");
        /// Encoded `FileDescriptorSet`, for gRPC reflection.
        pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!("pb/streamer_descriptor.bin");
    }
}

pub mod kv;

plugwire_host::grpc_client!(
    pb::kv::kv_client::KvClient<plugwire_host::Channel>,
    pb::counter::counter_client::CounterClient<plugwire_host::Channel>,
    pb::counter::add_helper_client::AddHelperClient<plugwire_host::Channel>,
    pb::streamer::streamer_service_client::StreamerServiceClient<plugwire_host::Channel>,
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

/// Libraries whose debug output is per frame: `warn` in the examples' verbose logs.
const QUIET_LIBRARIES: &str = "h2=warn,hyper=warn,hyper_util=warn,tonic=warn,tower=warn,\
     rustls=warn,tokio_util=warn,mio=warn";

/// Logs from `level` up (but per-frame library chatter) in text lines to `writer`: the hclog
/// logger go-plugin's basic host sets up (`Level: hclog.Debug, Output: os.Stdout`).
pub fn init_logging_to<W>(level: &str, writer: W)
where
    W: for<'a> tracing_subscriber::fmt::MakeWriter<'a> + Send + Sync + 'static,
{
    let filter = tracing_subscriber::EnvFilter::new(format!("{level},{QUIET_LIBRARIES}"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .try_init();
}

/// Logs from `trace` up (but per-frame library chatter) as hclog JSON lines on stderr: the logger
/// go-plugin's streaming host sets up (`Level: hclog.Trace, Output: os.Stderr, JSONFormat: true`).
/// The lines are those of plugwire-plugin's [`HclogLayer`](plugwire_plugin::log::HclogLayer),
/// which writes to stderr in a process that does not redirect it.
pub fn init_hclog_logging() {
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let filter: tracing_subscriber::filter::Targets = format!("trace,{QUIET_LIBRARIES}")
        .parse()
        .unwrap_or_default();
    let _ = tracing_subscriber::registry()
        .with(tracing_subscriber::Layer::with_filter(
            plugwire_plugin::log::HclogLayer::new(),
            filter,
        ))
        .try_init();
}

/// Go's `*fs.PathError` text for `error`, e.g. `open kv_x: no such file or directory`: Go's
/// errno texts are the C library's in lower case, without std's ` (os error N)`.
pub fn go_path_error(op: &str, path: &str, error: &std::io::Error) -> String {
    let text = error.to_string();
    let text = match error.raw_os_error() {
        Some(code) => {
            let text = text
                .strip_suffix(&format!(" (os error {code})"))
                .unwrap_or(&text);
            let mut chars = text.chars();
            chars.next().map_or_else(String::new, |first| {
                first.to_lowercase().chain(chars).collect()
            })
        }
        None => text,
    };
    format!("{op} {path}: {text}")
}

/// Go's `os.WriteFile(path, content, 0644)`, with Go's error texts.
///
/// # Errors
///
/// The failed open or write, as Go words it.
pub async fn write_file(path: &str, content: &[u8]) -> Result<(), String> {
    use tokio::io::AsyncWriteExt as _;
    let mut file = tokio::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o644)
        .open(path)
        .await
        .map_err(|e| go_path_error("open", path, &e))?;
    file.write_all(content)
        .await
        .map_err(|e| go_path_error("write", path, &e))?;
    // A tokio file writes in the background: done only once flushed.
    file.flush()
        .await
        .map_err(|e| go_path_error("write", path, &e))
}

/// Go's `os.ReadFile(path)`, with Go's error texts.
///
/// # Errors
///
/// The failed open or read, as Go words it.
pub async fn read_file(path: &str) -> Result<Vec<u8>, String> {
    use tokio::io::AsyncReadExt as _;
    let mut file = tokio::fs::File::open(path)
        .await
        .map_err(|e| go_path_error("open", path, &e))?;
    let mut content = Vec::new();
    file.read_to_end(&mut content)
        .await
        .map_err(|e| go_path_error("read", path, &e))?;
    Ok(content)
}

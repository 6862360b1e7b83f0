//! plugwire's interop harness: runs fixture hosts against fixture plugins, Go and Rust, and
//! collects what each host observed.
//!
//! Every cell of the matrix is one host process (Go or Rust fixture host, or an example host)
//! given one plugin executable, a plugin mode and a scenario name. Hosts print `key=<json>`
//! observation lines; the tests in `tests/` hold the expectations, the same for every pairing.

#![allow(clippy::print_stdout)] // fixtures report on stdout by design

pub mod harness;
pub mod netrpc;
pub mod tls;

/// The generated code of `proto/test/grpctest.proto` (go-plugin's `test/grpc`).
#[allow(missing_docs, unreachable_pub, clippy::all, unused_qualifications)]
pub mod pb {
    include!("pb/grpctest.rs");
    /// Encoded `FileDescriptorSet`, for gRPC reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!("pb/grpctest_descriptor.bin");
}

/// The generated code of `proto/bench/bench.proto` (the benchmark's streaming service).
#[allow(missing_docs, unreachable_pub, clippy::all, unused_qualifications)]
pub mod bench_pb {
    include!("pb/bench.rs");
    /// Encoded `FileDescriptorSet`, for gRPC reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!("pb/bench_descriptor.bin");
}

plugwire_host::grpc_client!(
    pb::test_client::TestClient<plugwire_host::Channel>,
    pb::ping_pong_client::PingPongClient<plugwire_host::Channel>,
    bench_pb::bench_client::BenchClient<plugwire_host::Channel>,
);

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

/// The byte at `offset` of a flood stream: a pattern any loss, duplication or reordering breaks.
pub fn flood_byte(offset: u64) -> u8 {
    (offset % 251) as u8
}

/// Writes `len` bytes of the flood pattern to `out`.
pub fn write_flood(out: &mut impl std::io::Write, len: u64) -> std::io::Result<()> {
    let block: Vec<u8> = (0..251 * 256).map(flood_byte).collect();
    let mut written = 0u64;
    while written < len {
        let start = (written % 251) as usize;
        let n = (len - written).min((block.len() - start) as u64) as usize;
        out.write_all(&block[start..start + n])?;
        written += n as u64;
    }
    out.flush()
}

/// Checks a flood stream chunk by chunk.
#[derive(Debug, Default)]
pub struct FloodCheck {
    /// Bytes seen.
    pub len: u64,
    /// False once a byte was not the expected one.
    pub intact: bool,
    /// Where the pattern (re)started.
    origin: u64,
    /// Where it starts again from 0 (a second run after a first of this length).
    restart: Option<u64>,
}

impl FloodCheck {
    /// A check at offset 0.
    pub fn new() -> Self {
        FloodCheck {
            len: 0,
            intact: true,
            origin: 0,
            restart: None,
        }
    }

    /// A check of two runs of the pattern: `first` bytes, then another from 0.
    pub fn twice(first: u64) -> Self {
        FloodCheck {
            restart: Some(first),
            ..FloodCheck::new()
        }
    }

    /// Checks the next chunk (against a precomputed block, so it is fast even unoptimized).
    pub fn feed(&mut self, chunk: &[u8]) {
        static BLOCK: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
        let block = BLOCK.get_or_init(|| (0..251 * 256).map(flood_byte).collect());
        let mut rest = chunk;
        while self.intact && !rest.is_empty() {
            if self.restart == Some(self.len) {
                (self.origin, self.restart) = (self.len, None);
            }
            let until_restart = self.restart.map_or(usize::MAX, |r| {
                usize::try_from(r - self.len).unwrap_or(usize::MAX)
            });
            let start = ((self.len - self.origin) % 251) as usize;
            let n = rest.len().min(block.len() - start).min(until_restart);
            self.intact = rest[..n] == block[start..start + n];
            self.len += n as u64;
            rest = &rest[n..];
        }
        self.len += rest.len() as u64;
    }
}

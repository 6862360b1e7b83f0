//! Test helpers: session pairs, a deterministic byte stream, a raw frame peer.
#![allow(dead_code, unreachable_pub, missing_docs, clippy::unwrap_used)]

use std::time::Duration;

use plugwire_runtime::yamux::{Config, Session};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream};

/// Every test body runs under this bound.
pub const TEST_TIMEOUT: Duration = Duration::from_secs(60);

pub async fn bounded<F: Future>(f: F) -> F::Output {
    tokio::time::timeout(TEST_TIMEOUT, f)
        .await
        .expect("test timed out")
}

/// A client and a server session over an in-memory pipe.
pub fn duplex_pair(client: Config, server: Config) -> (Session, Session) {
    let (a, b) = tokio::io::duplex(256 * 1024);
    (
        Session::client(a, client).unwrap(),
        Session::server(b, server).unwrap(),
    )
}

/// A client and a server session over a unix socket pair.
pub fn unix_pair(client: Config, server: Config) -> (Session, Session) {
    let (a, b) = tokio::net::UnixStream::pair().unwrap();
    (
        Session::client(a, client).unwrap(),
        Session::server(b, server).unwrap(),
    )
}

/// xorshift64* byte stream; both ends regenerate it to check every byte.
pub struct Pattern {
    state: u64,
    word: u64,
    left: u32,
}

impl Pattern {
    pub fn new(seed: u64) -> Self {
        Pattern {
            state: seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1,
            word: 0,
            left: 0,
        }
    }

    pub fn next_byte(&mut self) -> u8 {
        if self.left == 0 {
            self.state ^= self.state >> 12;
            self.state ^= self.state << 25;
            self.state ^= self.state >> 27;
            self.word = self.state.wrapping_mul(0x2545_F491_4F6C_DD1D);
            self.left = 8;
        }
        let b = self.word as u8;
        self.word >>= 8;
        self.left -= 1;
        b
    }

    pub fn fill(&mut self, buf: &mut [u8]) {
        for b in buf {
            *b = self.next_byte();
        }
    }
}

/// FNV-1a 64 (also computed by the Go peer).
pub struct Fnv(pub u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv {
    pub fn update(&mut self, data: &[u8]) {
        for &b in data {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
}

/// Writes `total` pattern bytes from `seed` in `chunk`-sized writes.
pub async fn write_pattern<W: AsyncWrite + Unpin>(
    w: &mut W,
    seed: u64,
    total: usize,
    chunk: usize,
) -> std::io::Result<()> {
    let mut p = Pattern::new(seed);
    let mut buf = vec![0u8; chunk];
    let mut sent = 0;
    while sent < total {
        let n = chunk.min(total - sent);
        p.fill(&mut buf[..n]);
        w.write_all(&buf[..n]).await?;
        sent += n;
    }
    Ok(())
}

/// Reads to EOF, checking every byte against the pattern; returns the byte count.
pub async fn read_pattern<R: AsyncRead + Unpin>(r: &mut R, seed: u64) -> std::io::Result<usize> {
    let mut p = Pattern::new(seed);
    let mut buf = vec![0u8; 64 * 1024];
    let mut got = 0usize;
    loop {
        let n = r.read(&mut buf).await?;
        if n == 0 {
            return Ok(got);
        }
        for (i, &b) in buf[..n].iter().enumerate() {
            let want = p.next_byte();
            if b != want {
                return Err(std::io::Error::other(format!(
                    "mismatch at byte {}: got {b:#x} want {want:#x}",
                    got + i
                )));
            }
        }
        got += n;
    }
}

/// A raw frame header.
pub fn hdr(typ: u8, flags: u16, id: u32, len: u32) -> [u8; 12] {
    let mut b = [0u8; 12];
    b[1] = typ;
    b[2..4].copy_from_slice(&flags.to_be_bytes());
    b[4..8].copy_from_slice(&id.to_be_bytes());
    b[8..12].copy_from_slice(&len.to_be_bytes());
    b
}

pub const DATA: u8 = 0;
pub const WINDOW: u8 = 1;
pub const PING: u8 = 2;
pub const GOAWAY: u8 = 3;
pub const SYN: u16 = 1;
pub const ACK: u16 = 2;
pub const FIN: u16 = 4;
pub const RST: u16 = 8;

/// A decoded frame read by a raw peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub typ: u8,
    pub flags: u16,
    pub id: u32,
    pub len: u32,
    pub payload: Vec<u8>,
}

/// The raw side of a session under test: writes hand-made frames, reads ours.
pub struct RawPeer {
    pub io: DuplexStream,
}

impl RawPeer {
    /// A session of the given side (client = true) whose peer is raw.
    pub fn new(client: bool, config: Config) -> (Session, RawPeer) {
        let (a, b) = tokio::io::duplex(1 << 20);
        let s = if client {
            Session::client(a, config).unwrap()
        } else {
            Session::server(a, config).unwrap()
        };
        (s, RawPeer { io: b })
    }

    pub async fn send(&mut self, typ: u8, flags: u16, id: u32, len: u32) {
        self.io.write_all(&hdr(typ, flags, id, len)).await.unwrap();
    }

    pub async fn send_data(&mut self, flags: u16, id: u32, data: &[u8]) {
        self.io
            .write_all(&hdr(DATA, flags, id, data.len() as u32))
            .await
            .unwrap();
        self.io.write_all(data).await.unwrap();
    }

    /// Next frame, or `None` on EOF.
    pub async fn recv(&mut self) -> Option<Frame> {
        let mut b = [0u8; 12];
        match self.io.read_exact(&mut b).await {
            Ok(_) => {}
            Err(_) => return None,
        }
        assert_eq!(b[0], 0, "version");
        let typ = b[1];
        let flags = u16::from_be_bytes([b[2], b[3]]);
        let id = u32::from_be_bytes([b[4], b[5], b[6], b[7]]);
        let len = u32::from_be_bytes([b[8], b[9], b[10], b[11]]);
        let mut payload = Vec::new();
        if typ == DATA {
            payload = vec![0u8; len as usize];
            self.io.read_exact(&mut payload).await.ok()?;
        }
        Some(Frame {
            typ,
            flags,
            id,
            len,
            payload,
        })
    }

    /// Next frame that is not a ping request, answering pings on the way.
    pub async fn recv_skip_pings(&mut self) -> Option<Frame> {
        loop {
            let f = self.recv().await?;
            if f.typ == PING && f.flags & SYN != 0 {
                self.send(PING, ACK, 0, f.len).await;
                continue;
            }
            return Some(f);
        }
    }
}

/// A config with keepalive off (for tests that do not want ping frames in the way).
pub fn quiet() -> Config {
    Config {
        enable_keepalive: false,
        ..Config::default()
    }
}

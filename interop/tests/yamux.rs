//! plugwire's yamux against real hashicorp/yamux v0.1.2 (go-plugin's), both roles: the Go peer
//! `go-fixtures/cmd/yamux-peer`, built by `make go-fixtures`.
//!
//! Each test binds a unix socket, starts the Go peer in one mode (it dials in), plays the Rust
//! side of that mode and then requires the peer's `PASS` line and exit status 0. Go's yamux log
//! (stderr) must hold no `[ERR]` line and no `[WARN]` line except those a mode expects.

// Needs the Go fixtures; without them `needs_go.rs` says what did not run.
#![cfg(not(plugwire_no_go))]
#![allow(missing_docs, clippy::unwrap_used, clippy::print_stdout)]

// The yamux test helpers the runtime's own session tests use (session pairs, a raw frame peer).
#[path = "../../crates/plugwire-runtime/tests/common/mod.rs"]
mod common;

use std::future::Future;
use std::io::ErrorKind;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use common::*;
use plugwire_runtime::yamux::{Config, Error, Session, Stream};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::process::{Child, Command};

struct GoPeer {
    child: Child,
    mode: String,
    sock: std::path::PathBuf,
}

/// Go warnings that are inherent races, allowed in every mode: a window update of ours that
/// crosses the peer's final FIN (hashicorp itself does this Go<->Go).
const ALWAYS_ALLOWED: &[&str] = &["frame for missing stream"];

fn go_peer() -> Option<String> {
    let fixtures = plugwire_interop::harness::Fixtures::new(
        env!("CARGO_BIN_EXE_plugwire-fixture-host"),
        env!("CARGO_BIN_EXE_plugwire-fixture-plugin"),
    );
    Some(fixtures.go("yamux-peer").display().to_string())
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// Starts the Go peer (Go's yamux role `go_role`) and returns it with the connection.
async fn start(mode: &str, go_role: &str, extra: &[&str]) -> Option<(GoPeer, UnixStream)> {
    let Some(bin) = go_peer() else {
        unreachable!("the Go peer is always found, or go() panics: {mode}");
    };
    let sock = std::env::temp_dir().join(format!(
        "yamux-it-{}-{}.sock",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    ));
    let _ = std::fs::remove_file(&sock);
    let listener = UnixListener::bind(&sock).unwrap();
    let child = Command::new(bin)
        .args([
            "-sock",
            sock.to_str().unwrap(),
            "-role",
            go_role,
            "-mode",
            mode,
        ])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let (io, _) = tokio::time::timeout(Duration::from_secs(10), listener.accept())
        .await
        .expect("Go peer connects")
        .unwrap();
    Some((
        GoPeer {
            child,
            mode: mode.to_string(),
            sock,
        },
        io,
    ))
}

impl GoPeer {
    /// Waits for the peer to exit and prints its output. With `rust_ok`, also requires its PASS
    /// line and a clean yamux log. Returns its stdout.
    async fn finish(self, allowed_warnings: &[&str], rust_ok: bool) -> String {
        let out = tokio::time::timeout(Duration::from_secs(60), self.child.wait_with_output())
            .await
            .expect("Go peer exits")
            .unwrap();
        let _ = std::fs::remove_file(&self.sock);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        println!("---- go peer [{}] stdout\n{stdout}", self.mode);
        if !stderr.is_empty() {
            println!("---- go peer [{}] stderr\n{stderr}", self.mode);
        }
        if !rust_ok {
            return stdout;
        }
        assert!(
            out.status.success() && stdout.contains(&format!("PASS {}", self.mode)),
            "Go peer failed in mode {}: {stdout}",
            self.mode
        );
        for line in stderr.lines() {
            if line.contains("[ERR]") || line.contains("[WARN]") {
                let ok = ALWAYS_ALLOWED
                    .iter()
                    .chain(allowed_warnings)
                    .any(|a| line.contains(a));
                assert!(ok, "unexpected Go yamux log line: {line}");
            }
        }
        stdout
    }
}

/// Polls a future, turning its panic into an `Err` (so the Go side's output is still shown).
struct CatchUnwind<F>(Pin<Box<F>>);

impl<F: Future> Future for CatchUnwind<F> {
    type Output = std::thread::Result<F::Output>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let fut = self.0.as_mut();
        match std::panic::catch_unwind(AssertUnwindSafe(|| fut.poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(v)) => Poll::Ready(Ok(v)),
            Err(p) => Poll::Ready(Err(p)),
        }
    }
}

/// Plays the Rust side `f` (bounded in time), then finishes the Go peer; a failure on either
/// side fails the test, with the Go output printed.
async fn play<T, F: Future<Output = T>>(peer: GoPeer, allowed: &[&str], f: F) -> (T, String) {
    let result = CatchUnwind(Box::pin(bounded(f))).await;
    let stdout = peer.finish(allowed, result.is_ok()).await;
    match result {
        Ok(v) => (v, stdout),
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

async fn read_line<R: AsyncRead + Unpin>(r: &mut R) -> String {
    let mut v = Vec::new();
    let mut b = [0u8; 1];
    loop {
        let n = r.read(&mut b).await.unwrap();
        assert_eq!(
            n,
            1,
            "EOF inside a line (got {:?})",
            String::from_utf8_lossy(&v)
        );
        if b[0] == b'\n' {
            return String::from_utf8(v).unwrap();
        }
        v.push(b[0]);
    }
}

async fn write_line<W: AsyncWrite + Unpin>(w: &mut W, line: &str) {
    w.write_all(format!("{line}\n").as_bytes()).await.unwrap();
    w.flush().await.unwrap();
}

async fn echo_line(s: &mut Stream) -> String {
    let l = read_line(s).await;
    write_line(s, &l).await;
    l
}

fn field<'a>(stdout: &'a str, key: &str) -> &'a str {
    let start = stdout
        .find(key)
        .unwrap_or_else(|| panic!("{key} in Go output"))
        + key.len();
    stdout[start..]
        .split(|c: char| c.is_whitespace() || c == ';' || c == ',')
        .next()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn go_opens_streams_without_data_and_they_are_acked_at_once() {
    let Some((peer, io)) = start("ack-nodata", "client", &[]).await else {
        return;
    };
    play(peer, &[], async {
        let mut session = Session::server(io, Config::default()).unwrap();
        // Accept only the first; the others sit in the accept queue (already ACKed).
        let mut s1 = session.accept().await.unwrap();
        assert_eq!(echo_line(&mut s1).await, "late 1");
        for id in [3, 5] {
            let mut s = session.accept().await.unwrap();
            assert_eq!(s.id(), id);
            assert_eq!(echo_line(&mut s).await, format!("late {id}"));
        }
        let reason = session.closed().await;
        assert!(matches!(reason, Error::ConnectionClosed), "{reason:?}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_opens_three_streams_go_accepts_them_in_order() {
    let Some((peer, io)) = start("open3", "server", &[]).await else {
        return;
    };
    play(peer, &[], async {
        let mut session = Session::client(io, Config::default()).unwrap();
        let mut streams = vec![];
        for _ in 0..3 {
            streams.push(session.open().await.unwrap());
        }
        for s in &mut streams {
            assert_eq!(read_line(s).await, format!("hello {}", s.id()));
        }
        let mut from_go = session.accept().await.unwrap();
        assert_eq!(from_go.id(), 2);
        assert_eq!(echo_line(&mut from_go).await, "from-go");
        for s in &mut streams {
            let id = s.id();
            write_line(s, &format!("bye {id}")).await;
        }
        session.closed().await;
    })
    .await;
}

async fn bulk(go_role: &str) {
    const TOTAL: usize = 64 << 20;
    let Some((peer, io)) = start("bulk", go_role, &[]).await else {
        return;
    };
    let ((recv_hash, sent_hash), out) = play(peer, &[], async {
        let mut session = if go_role == "client" {
            Session::server(io, Config::default()).unwrap()
        } else {
            Session::client(io, Config::default()).unwrap()
        };
        let stream = if go_role == "client" {
            session.accept().await.unwrap()
        } else {
            session.open().await.unwrap()
        };
        let start = std::time::Instant::now();
        let (mut r, mut w) = tokio::io::split(stream);
        let writer = tokio::spawn(async move {
            let mut p = Pattern::new(2002);
            let mut h = Fnv::default();
            let mut buf = vec![0u8; 100_000];
            let mut sent = 0;
            while sent < TOTAL {
                let n = buf.len().min(TOTAL - sent);
                p.fill(&mut buf[..n]);
                h.update(&buf[..n]);
                w.write_all(&buf[..n]).await.unwrap();
                sent += n;
            }
            w.shutdown().await.unwrap();
            (h.0, w)
        });
        let mut p = Pattern::new(1001);
        let mut h = Fnv::default();
        let mut buf = vec![0u8; 128 * 1024];
        let mut got = 0;
        loop {
            let n = r.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            for (i, &b) in buf[..n].iter().enumerate() {
                assert_eq!(b, p.next_byte(), "byte {}", got + i);
            }
            h.update(&buf[..n]);
            got += n;
        }
        assert_eq!(got, TOTAL);
        let (sent_hash, _w) = writer.await.unwrap();
        let el = start.elapsed();
        println!(
            "rust: received {got} bytes checked (fnv {:016x}), sent fnv {sent_hash:016x}, {:.0} MiB/s each way",
            h.0,
            TOTAL as f64 / (1 << 20) as f64 / el.as_secs_f64()
        );
        session.closed().await;
        (h.0, sent_hash)
    })
    .await;
    assert_eq!(field(&out, "sentfnv="), format!("{recv_hash:016x}"));
    assert_eq!(field(&out, "recvfnv="), format!("{sent_hash:016x}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_64mib_both_ways_go_client() {
    bulk("client").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_64mib_both_ways_go_server() {
    bulk("server").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_write_only_stream_beyond_the_window() {
    let Some((peer, io)) = start("writeonly", "server", &[]).await else {
        return;
    };
    play(peer, &[], async {
        let session = Session::client(io, Config::default()).unwrap();
        let mut s = session.open().await.unwrap();
        write_pattern(&mut s, 3003, 8 << 20, 64 * 1024)
            .await
            .unwrap();
        s.shutdown().await.unwrap();
        // Never read `s`. Go closes the session once it has verified everything.
        session.closed().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_close_then_the_other_direction_sends_1mib() {
    let Some((peer, io)) = start("halfclose", "client", &[]).await else {
        return;
    };
    play(peer, &[], async {
        let mut session = Session::server(io, Config::default()).unwrap();
        // (a) Go FINs first; we answer with 1 MiB (needs Go's window updates after its FIN).
        let mut a = session.accept().await.unwrap();
        let mut req = Vec::new();
        a.read_to_end(&mut req).await.unwrap();
        assert_eq!(req, b"request");
        write_pattern(&mut a, 4004, 1 << 20, 30_000).await.unwrap();
        a.shutdown().await.unwrap();
        // (b) We FIN first; Go answers with 1 MiB.
        let mut b = session.open().await.unwrap();
        b.write_all(b"request2").await.unwrap();
        b.shutdown().await.unwrap();
        let n = read_pattern(&mut b, 5005).await.unwrap();
        let mut ctl = session.open().await.unwrap();
        write_line(&mut ctl, &format!("got {n}")).await;
        drop((a, b));
        session.closed().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_reader_does_not_stall_the_session() {
    let Some((peer, io)) = start("slowreader", "client", &[]).await else {
        return;
    };
    play(peer, &[], async {
        let cfg = Config {
            keepalive_interval: Duration::from_millis(200),
            ..Config::default()
        };
        let mut session = Session::server(io, cfg).unwrap();
        let mut a = session.accept().await.unwrap();
        let mut b = session.accept().await.unwrap();
        loop {
            let l = read_line(&mut b).await;
            if l == "read-a" {
                break;
            }
            write_line(&mut b, &l).await;
        }
        let mut buf = vec![0u8; 65536];
        let mut total = 0;
        loop {
            let n = a.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            assert!(buf[..n].iter().all(|&c| c == b'a'));
            total += n;
        }
        write_line(&mut b, &format!("got {total}")).await;
        session.closed().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_and_fin_semantics() {
    let Some((peer, io)) = start("rst", "server", &[]).await else {
        return;
    };
    play(peer, &["Discarding data for stream"], async {
        let mut session = Session::client(io, Config::default()).unwrap();
        let mut ctl = session.open().await.unwrap();
        // (a) write then reset.
        let mut a = session.open().await.unwrap();
        a.write_all(b"x").await.unwrap();
        a.flush().await.unwrap();
        a.reset();
        // (b) write then drop without shutdown: a graceful FIN.
        let mut b = session.open().await.unwrap();
        b.write_all(b"y").await.unwrap();
        drop(b);
        // (c) Go writes "z" and FINs; we never FIN. Our write beyond the window blocks until
        // Go's StreamCloseTimeout RST, which must fail it.
        let mut c = session.accept().await.unwrap();
        let mut z = Vec::new();
        c.read_to_end(&mut z).await.unwrap();
        assert_eq!(z, b"z");
        let e = c.write_all(&vec![0u8; 1 << 20]).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ConnectionReset);
        write_line(&mut ctl, "reset-seen").await;
        session.closed().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn go_away_both_ways() {
    let Some((peer, io)) = start("goaway", "server", &[]).await else {
        return;
    };
    play(peer, &[], async {
        let mut session = Session::client(io, Config::default()).unwrap();
        let mut ctl = session.open().await.unwrap();
        assert_eq!(read_line(&mut ctl).await, "goaway");
        assert!(matches!(session.open().await, Err(Error::RemoteGoAway)));
        write_line(&mut ctl, "refused").await;
        let mut s = session.accept().await.unwrap();
        assert_eq!(echo_line(&mut s).await, "hi");
        session.go_away();
        write_line(&mut ctl, "rust-goaway").await;
        assert_eq!(read_line(&mut ctl).await, "bye");
        session.close().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_streams_each_way() {
    const N: u64 = 200;
    let Some((peer, io)) = start("many", "client", &["-n", "200"]).await else {
        return;
    };
    play(peer, &[], async {
        let mut session = Session::server(io, Config::default()).unwrap();
        for _ in 0..N {
            let mut s = session.accept().await.unwrap();
            tokio::spawn(async move {
                let mut v = Vec::new();
                s.read_to_end(&mut v).await.unwrap();
                s.write_all(&v).await.unwrap();
                s.shutdown().await.unwrap();
            });
        }
        let mut ctl = session.accept().await.unwrap();
        assert_eq!(read_line(&mut ctl).await, "reverse");
        let control = session.control();
        let tasks: Vec<_> = (0..N)
            .map(|i| {
                let control = control.clone();
                tokio::spawn(async move {
                    let s = control.open().await.unwrap();
                    let size = 1000 + (i as usize * 997) % 20_000;
                    let (mut r, mut w) = tokio::io::split(s);
                    let wt = tokio::spawn(async move {
                        write_pattern(&mut w, i, size, 4096).await.unwrap();
                        w.shutdown().await.unwrap();
                        w
                    });
                    assert_eq!(read_pattern(&mut r, i).await.unwrap(), size);
                    wt.await.unwrap();
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        write_line(&mut ctl, "done").await;
        session.closed().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_waits_for_acks_beyond_the_backlog() {
    let Some((peer, io)) = start("backlog", "server", &[]).await else {
        return;
    };
    play(peer, &[], async {
        let session = Session::client(io, Config::default()).unwrap();
        for i in 0..300u32 {
            let mut s = session.open().await.unwrap();
            s.write_all(&i.to_le_bytes()).await.unwrap();
            s.shutdown().await.unwrap();
        }
        session.closed().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_closes_the_session() {
    let Some((peer, io)) = start("close-by-rust", "server", &[]).await else {
        return;
    };
    play(peer, &[], async {
        let session = Session::client(io, Config::default()).unwrap();
        let mut s = session.open().await.unwrap();
        s.write_all(b"x\n").await.unwrap();
        assert_eq!(read_line(&mut s).await, "got-x");
        session.close().await;
        assert!(matches!(session.closed().await, Error::SessionShutdown));
        let mut b = [0u8; 1];
        assert!(s.read(&mut b).await.is_err());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn go_closes_the_session() {
    let Some((peer, io)) = start("close-by-go", "client", &[]).await else {
        return;
    };
    play(peer, &[], async {
        let mut session = Session::server(io, Config::default()).unwrap();
        let mut s = session.accept().await.unwrap();
        assert_eq!(echo_line(&mut s).await, "x");
        let mut b = [0u8; 1];
        let e = s.read(&mut b).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::UnexpectedEof);
        assert!(matches!(session.closed().await, Error::ConnectionClosed));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_open_timeout_against_a_peer_that_never_accepts() {
    let Some((peer, io)) = start("noaccept", "server", &[]).await else {
        return;
    };
    play(peer, &[], async {
        let cfg = Config {
            stream_open_timeout: Some(Duration::from_secs(1)),
            ..Config::default()
        };
        let session = Session::client(io, cfg).unwrap();
        let start = std::time::Instant::now();
        let _s = session.open().await.unwrap();
        let reason = session.closed().await;
        assert!(matches!(reason, Error::StreamOpenTimeout(1)), "{reason:?}");
        assert!(start.elapsed() >= Duration::from_secs(1));
    })
    .await;
}

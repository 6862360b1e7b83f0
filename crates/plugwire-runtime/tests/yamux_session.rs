//! In-process tests: client and server sessions of this crate over duplex pipes and unix sockets.
#![allow(missing_docs, clippy::unwrap_used)]

mod common;

use std::io::ErrorKind;
use std::time::Duration;

use common::*;
use plugwire_runtime::yamux::{Config, Error, Session};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn open_accept_echo_both_directions() {
    bounded(async {
        let (mut client, mut server) = duplex_pair(quiet(), quiet());
        let ctl = client.control();
        let mut a = ctl.open().await.unwrap();
        assert_eq!(a.id(), 1);
        a.write_all(b"ping").await.unwrap();
        let mut b = server.accept().await.unwrap();
        assert_eq!(b.id(), 1);
        let mut buf = [0u8; 4];
        b.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"ping");
        b.write_all(b"pong").await.unwrap();
        a.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"pong");

        // Server-opened streams get even ids.
        let mut c = server.open().await.unwrap();
        assert_eq!(c.id(), 2);
        c.write_all(b"x").await.unwrap();
        c.shutdown().await.unwrap();
        let mut d = client.accept().await.unwrap();
        assert_eq!(d.id(), 2);
        let mut v = Vec::new();
        d.read_to_end(&mut v).await.unwrap();
        assert_eq!(v, b"x");
        assert!(client.ping().await.unwrap() < Duration::from_secs(5));
        assert!(server.ping().await.unwrap() < Duration::from_secs(5));
    })
    .await;
}

#[tokio::test]
async fn streams_are_announced_eagerly_and_in_order() {
    bounded(async {
        let (client, mut server) = duplex_pair(quiet(), quiet());
        let ctl = client.control();
        let _s1 = ctl.open().await.unwrap();
        let _s2 = ctl.open().await.unwrap();
        let _s3 = ctl.open().await.unwrap();
        // No data written: the server still sees all three, in order.
        let mut ids = vec![];
        for _ in 0..3 {
            ids.push(server.accept().await.unwrap().id());
        }
        assert_eq!(ids, vec![1, 3, 5]);
    })
    .await;
}

#[tokio::test]
async fn inbound_streams_are_acked_before_accept() {
    bounded(async {
        // Server never calls accept; the client must still see the ACK (raw peer observes).
        let (_server, mut peer) = RawPeer::new(false, quiet());
        peer.send(WINDOW, SYN, 1, 0).await;
        peer.send(WINDOW, SYN, 3, 0).await;
        let f1 = peer.recv().await.unwrap();
        let f2 = peer.recv().await.unwrap();
        assert_eq!((f1.typ, f1.flags, f1.id, f1.len), (WINDOW, ACK, 1, 0));
        assert_eq!((f2.typ, f2.flags, f2.id, f2.len), (WINDOW, ACK, 3, 0));
    })
    .await;
}

async fn bulk_both_ways(client: Session, mut server: Session, total: usize) {
    let ctl = client.control();
    let a = ctl.open().await.unwrap();
    let b = server.accept().await.unwrap();
    let (mut ar, mut aw) = tokio::io::split(a);
    let (mut br, mut bw) = tokio::io::split(b);
    let t1 = tokio::spawn(async move {
        write_pattern(&mut aw, 1, total, 50_000).await.unwrap();
        aw.shutdown().await.unwrap();
        aw
    });
    let t2 = tokio::spawn(async move {
        write_pattern(&mut bw, 2, total, 70_001).await.unwrap();
        bw.shutdown().await.unwrap();
        bw
    });
    let t3 = tokio::spawn(async move { read_pattern(&mut br, 1).await.unwrap() });
    let t4 = tokio::spawn(async move { read_pattern(&mut ar, 2).await.unwrap() });
    assert_eq!(t3.await.unwrap(), total);
    assert_eq!(t4.await.unwrap(), total);
    t1.await.unwrap();
    t2.await.unwrap();
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_16mib_both_ways_duplex() {
    bounded(async {
        let (c, s) = duplex_pair(quiet(), quiet());
        bulk_both_ways(c, s, 16 << 20).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_16mib_both_ways_unix_with_keepalive() {
    bounded(async {
        let cfg = Config {
            keepalive_interval: Duration::from_millis(50),
            ..Config::default()
        };
        let (c, s) = unix_pair(cfg.clone(), cfg);
        bulk_both_ways(c, s, 16 << 20).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn larger_window_config_interoperates() {
    bounded(async {
        let big = Config {
            max_stream_window: 4 << 20,
            ..quiet()
        };
        let (c, s) = unix_pair(big, quiet());
        bulk_both_ways(c, s, 8 << 20).await;
    })
    .await;
}

#[tokio::test]
async fn write_only_stream_beyond_the_window() {
    bounded(async {
        let (client, mut server) = duplex_pair(quiet(), quiet());
        let mut a = client.open().await.unwrap();
        // Never read `a`: window updates from the peer must still reach the writer.
        let writer = tokio::spawn(async move {
            write_pattern(&mut a, 7, 3 << 20, 32 * 1024).await.unwrap();
            a.shutdown().await.unwrap();
            a
        });
        let mut b = server.accept().await.unwrap();
        assert_eq!(read_pattern(&mut b, 7).await.unwrap(), 3 << 20);
        writer.await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn half_close_then_other_direction_sends_a_lot() {
    bounded(async {
        let (client, mut server) = duplex_pair(quiet(), quiet());
        // Client FINs first, then reads a 1 MiB answer.
        let mut a = client.open().await.unwrap();
        a.write_all(b"request").await.unwrap();
        a.shutdown().await.unwrap();
        assert!(a.write_all(b"more").await.unwrap_err().kind() == ErrorKind::BrokenPipe);
        let mut b = server.accept().await.unwrap();
        let mut req = Vec::new();
        b.read_to_end(&mut req).await.unwrap();
        assert_eq!(req, b"request");
        let srv = tokio::spawn(async move {
            write_pattern(&mut b, 3, 1 << 20, 10_000).await.unwrap();
            b.shutdown().await.unwrap();
            b
        });
        assert_eq!(read_pattern(&mut a, 3).await.unwrap(), 1 << 20);
        srv.await.unwrap();

        // Now the acceptor FINs first and the opener keeps sending 1 MiB.
        let mut c = client.open().await.unwrap();
        let mut d = server.accept().await.unwrap();
        d.shutdown().await.unwrap();
        let mut end = [0u8; 1];
        assert_eq!(
            c.read(&mut end).await.unwrap(),
            0,
            "EOF after the peer's FIN"
        );
        let cli = tokio::spawn(async move {
            write_pattern(&mut c, 4, 1 << 20, 10_000).await.unwrap();
            c.shutdown().await.unwrap();
            c
        });
        assert_eq!(read_pattern(&mut d, 4).await.unwrap(), 1 << 20);
        cli.await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn slow_reader_blocks_only_its_own_stream() {
    bounded(async {
        let (client, mut server) = duplex_pair(quiet(), quiet());
        let ctl = client.control();
        let mut unread = ctl.open().await.unwrap();
        let mut echo = ctl.open().await.unwrap();
        let _unread_srv = server.accept().await.unwrap(); // never read
        let mut echo_srv = server.accept().await.unwrap();
        // Fill the unread stream's window exactly.
        let window = 256 * 1024;
        unread.write_all(&vec![1u8; window]).await.unwrap();
        // The next write must wait for a window update that never comes.
        let blocked =
            tokio::time::timeout(Duration::from_millis(200), unread.write_all(&[1u8])).await;
        assert!(blocked.is_err(), "write beyond the window must wait");
        tokio::spawn(async move {
            let mut buf = [0u8; 64];
            loop {
                let n = echo_srv.read(&mut buf).await.unwrap();
                if n == 0 {
                    break;
                }
                echo_srv.write_all(&buf[..n]).await.unwrap();
            }
        });
        for i in 0..100u32 {
            let msg = i.to_be_bytes();
            echo.write_all(&msg).await.unwrap();
            let mut got = [0u8; 4];
            echo.read_exact(&mut got).await.unwrap();
            assert_eq!(got, msg);
        }
        ctl.ping().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn reset_is_seen_by_the_peer() {
    bounded(async {
        let (client, mut server) = duplex_pair(quiet(), quiet());
        let mut a = client.open().await.unwrap();
        a.write_all(b"hello").await.unwrap();
        let mut b = server.accept().await.unwrap();
        let mut buf = [0u8; 5];
        b.read_exact(&mut buf).await.unwrap();
        b.reset();
        let e = a.read(&mut buf).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ConnectionReset);
        let e = a.write_all(b"x").await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ConnectionReset);
        assert!(b.read(&mut buf).await.is_err());
        // The session itself is fine.
        client.ping().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn dropping_a_stream_sends_fin_after_its_data() {
    bounded(async {
        let (client, mut server) = duplex_pair(quiet(), quiet());
        let mut a = client.open().await.unwrap();
        // More than the window: the writer waits for the reader, then drops without shutdown.
        let t = tokio::spawn(async move {
            a.write_all(&vec![9u8; 600 * 1024]).await.unwrap();
            a.write_all(b"tail").await.unwrap();
            drop(a);
        });
        let mut b = server.accept().await.unwrap();
        let mut v = Vec::new();
        b.read_to_end(&mut v).await.unwrap();
        assert_eq!(v.len(), 600 * 1024 + 4);
        assert_eq!(&v[v.len() - 4..], b"tail");
        t.await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn dropped_stream_drains_the_peer_writer() {
    bounded(async {
        let (client, mut server) = duplex_pair(quiet(), quiet());
        let a = client.open().await.unwrap();
        let mut b = server.accept().await.unwrap();
        drop(a);
        // The peer can still write far beyond the window: we discard but keep granting.
        write_pattern(&mut b, 5, 4 << 20, 64 * 1024).await.unwrap();
        let mut end = [0u8; 1];
        assert_eq!(b.read(&mut end).await.unwrap(), 0);
        b.shutdown().await.unwrap();
        drop(b);
        // Both sides forget the stream.
        for _ in 0..100 {
            if client.control().num_streams() == 0 && server.control().num_streams() == 0 {
                return;
            }
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!(
            "stream entries left: client {} server {}",
            client.control().num_streams(),
            server.control().num_streams()
        );
    })
    .await;
}

#[tokio::test]
async fn go_away_only_refuses_new_streams() {
    bounded(async {
        let (mut client, mut server) = duplex_pair(quiet(), quiet());
        let mut a = client.open().await.unwrap();
        let mut b = server.accept().await.unwrap();
        server.go_away();
        // Wait until the client has seen it.
        let mut refused = false;
        for _ in 0..200 {
            client.ping().await.unwrap();
            match client.open().await {
                Err(Error::RemoteGoAway) => {
                    refused = true;
                    break;
                }
                Ok(mut s) => {
                    // Raced the GoAway: the server refuses it with RST.
                    let mut x = [0u8; 1];
                    assert!(s.read(&mut x).await.is_err());
                }
                Err(e) => panic!("{e}"),
            }
        }
        assert!(refused);
        // Existing stream works both ways.
        a.write_all(b"still").await.unwrap();
        let mut buf = [0u8; 5];
        b.read_exact(&mut buf).await.unwrap();
        b.write_all(b"there").await.unwrap();
        a.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"there");
        // The side that sent GoAway can still open streams to the other.
        let mut c = server.open().await.unwrap();
        c.write_all(b"z").await.unwrap();
        let mut d = client.accept().await.unwrap();
        d.read_exact(&mut buf[..1]).await.unwrap();
        assert!(!client.is_closed() && !server.is_closed());
    })
    .await;
}

#[tokio::test]
async fn accept_backlog_overflow_is_reset() {
    bounded(async {
        let small = Config {
            accept_backlog: 4,
            ..quiet()
        };
        let (client, mut server) = duplex_pair(quiet(), small);
        let ctl = client.control();
        let mut streams = vec![];
        for _ in 0..10 {
            streams.push(ctl.open().await.unwrap());
        }
        ctl.ping().await.unwrap(); // all SYNs processed, RSTs queued before the pong
        let mut reset = vec![];
        for s in &mut streams {
            let mut x = [0u8; 1];
            // A zero timeout polls the read exactly once.
            match tokio::time::timeout(Duration::ZERO, s.read(&mut x)).await {
                Ok(Err(e)) => {
                    assert_eq!(e.kind(), ErrorKind::ConnectionReset);
                    reset.push(s.id());
                }
                Ok(Ok(n)) => panic!("unexpected read of {n}"),
                Err(_) => {}
            }
        }
        assert_eq!(reset, vec![9, 11, 13, 15, 17, 19]);
        let mut accepted = vec![];
        for _ in 0..4 {
            accepted.push(server.accept().await.unwrap().id());
        }
        assert_eq!(accepted, vec![1, 3, 5, 7]);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_streams() {
    bounded(async {
        let (client, mut server) = unix_pair(Config::default(), Config::default());
        let srv = tokio::spawn(async move {
            let mut tasks = vec![];
            for _ in 0..200 {
                let mut s = server.accept().await.unwrap();
                tasks.push(tokio::spawn(async move {
                    let mut v = Vec::new();
                    s.read_to_end(&mut v).await.unwrap();
                    s.write_all(&v).await.unwrap();
                    s.shutdown().await.unwrap();
                }));
            }
            for t in tasks {
                t.await.unwrap();
            }
            server
        });
        let ctl = client.control();
        let mut tasks = vec![];
        for i in 0..200u64 {
            let ctl = ctl.clone();
            tasks.push(tokio::spawn(async move {
                let mut s = ctl.open().await.unwrap();
                let len = 1000 + (i as usize * 997) % 20_000;
                write_pattern(&mut s, i, len, 4096).await.unwrap();
                s.shutdown().await.unwrap();
                assert_eq!(read_pattern(&mut s, i).await.unwrap(), len);
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let server = srv.await.unwrap();
        // Everything closed cleanly on both sides.
        for _ in 0..200 {
            if ctl.num_streams() == 0 && server.control().num_streams() == 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!(
            "streams left: {} / {}",
            ctl.num_streams(),
            server.control().num_streams()
        );
    })
    .await;
}

#[tokio::test]
async fn close_ends_both_sides() {
    bounded(async {
        let (client, mut server) = duplex_pair(quiet(), quiet());
        let mut a = client.open().await.unwrap();
        a.write_all(b"last words").await.unwrap();
        let mut b = server.accept().await.unwrap();
        client.close().await;
        assert!(client.is_closed());
        assert!(matches!(client.open().await, Err(Error::SessionShutdown)));
        // Data sent before the close arrives; then the stream fails (no FIN was sent).
        let mut buf = [0u8; 10];
        b.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"last words");
        let e = b.read(&mut buf).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::UnexpectedEof);
        let reason = server.closed().await;
        assert!(matches!(reason, Error::ConnectionClosed), "{reason}");
        assert!(server.accept().await.is_err());
        assert!(a.read(&mut buf).await.is_err());
    })
    .await;
}

#[tokio::test]
async fn dropping_every_handle_ends_the_driver() {
    bounded(async {
        let metrics = tokio::runtime::Handle::current().metrics();
        let before = metrics.num_alive_tasks();
        let (client, server) = duplex_pair(Config::default(), Config::default());
        let s = client.open().await.unwrap();
        assert_eq!(metrics.num_alive_tasks(), before + 2);
        let server_ctl = server.control();
        drop(client);
        // A stream keeps the session alive.
        assert!(!server_ctl.is_closed());
        server_ctl.ping().await.unwrap();
        drop(s);
        // Now the client closes gracefully: the server sees GoAway then EOF.
        let reason = server_ctl.closed().await;
        assert!(matches!(reason, Error::ConnectionClosed), "{reason}");
        drop(server);
        drop(server_ctl);
        for _ in 0..100 {
            if metrics.num_alive_tasks() == before {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("driver tasks still alive");
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn keepalive_keeps_a_quiet_session_alive() {
    bounded(async {
        let cfg = Config {
            keepalive_interval: Duration::from_secs(1),
            connection_write_timeout: Duration::from_millis(500),
            ..Config::default()
        };
        let (client, server) = duplex_pair(cfg.clone(), cfg);
        tokio::time::sleep(Duration::from_secs(30)).await;
        assert!(!client.is_closed() && !server.is_closed());
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn keepalive_timeout_closes_the_session() {
    bounded(async {
        let cfg = Config {
            keepalive_interval: Duration::from_secs(1),
            connection_write_timeout: Duration::from_secs(2),
            ..Config::default()
        };
        let (client, mut peer) = RawPeer::new(true, cfg);
        // The raw peer reads our ping but never answers.
        let f = peer.recv().await.unwrap();
        assert_eq!((f.typ, f.flags, f.id), (PING, SYN, 0));
        let start = tokio::time::Instant::now();
        let reason = client.closed().await;
        assert!(matches!(reason, Error::KeepAliveTimeout), "{reason}");
        assert!(start.elapsed() >= Duration::from_secs(2));
        assert!(peer.recv().await.is_none(), "connection closed");
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn pings_are_answered_with_the_same_value() {
    bounded(async {
        let (_client, mut peer) = RawPeer::new(true, quiet());
        for v in [0u32, 1, 0xdead_beef, u32::MAX] {
            peer.send(PING, SYN, 0, v).await;
            let f = peer.recv().await.unwrap();
            assert_eq!((f.typ, f.flags, f.id, f.len), (PING, ACK, 0, v));
        }
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn stream_open_timeout_closes_the_session() {
    bounded(async {
        let cfg = Config {
            stream_open_timeout: Some(Duration::from_secs(2)),
            ..quiet()
        };
        let (client, mut peer) = RawPeer::new(true, cfg);
        let _s = client.open().await.unwrap();
        let f = peer.recv().await.unwrap();
        assert_eq!((f.typ, f.flags, f.id, f.len), (WINDOW, SYN, 1, 0));
        let reason = client.closed().await;
        assert!(matches!(reason, Error::StreamOpenTimeout(1)), "{reason}");
        let f = peer.recv().await.unwrap();
        assert_eq!((f.typ, f.len), (GOAWAY, 0));
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn acked_stream_does_not_time_out() {
    bounded(async {
        let cfg = Config {
            stream_open_timeout: Some(Duration::from_secs(2)),
            ..quiet()
        };
        let (client, mut peer) = RawPeer::new(true, cfg);
        let _s = client.open().await.unwrap();
        peer.recv().await.unwrap();
        peer.send(WINDOW, ACK, 1, 0).await;
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert!(!client.is_closed());
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn dropped_stream_is_reset_after_close_timeout() {
    bounded(async {
        let cfg = Config {
            stream_close_timeout: Some(Duration::from_secs(3)),
            ..quiet()
        };
        let (mut server, mut peer) = RawPeer::new(false, cfg);
        peer.send(WINDOW, SYN, 1, 0).await;
        let s = server.accept().await.unwrap();
        drop(s);
        // ACK (eager) and FIN (drop) may share one frame.
        let mut flags = 0;
        while flags & FIN == 0 {
            let f = peer.recv().await.unwrap();
            assert_eq!((f.typ, f.id), (WINDOW, 1));
            flags |= f.flags;
        }
        assert_eq!(flags, ACK | FIN);
        let rst = peer.recv().await.unwrap();
        assert_eq!((rst.typ, rst.flags, rst.id), (WINDOW, RST, 1));
        assert_eq!(server.control().num_streams(), 0);
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn keepalive_pings_every_interval_once_answered() {
    bounded(async {
        let cfg = Config {
            keepalive_interval: Duration::from_secs(1),
            connection_write_timeout: Duration::from_secs(10),
            ..Config::default()
        };
        let (client, mut peer) = RawPeer::new(true, cfg);
        let start = tokio::time::Instant::now();
        for i in 0..10u32 {
            let f = peer.recv().await.unwrap();
            assert_eq!((f.typ, f.flags, f.len), (PING, SYN, i));
            peer.send(PING, ACK, 0, f.len).await;
        }
        // One ping per interval (measured from the previous answer), not per write timeout.
        let el = start.elapsed();
        assert!(
            el >= Duration::from_secs(10) && el < Duration::from_secs(11),
            "{el:?}"
        );
        assert!(!client.is_closed());
    })
    .await;
}

#[test]
fn runtime_shutdown_fails_streams_instead_of_hanging() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (client, server, mut stream) = rt.block_on(async {
        let (client, server) = duplex_pair(quiet(), quiet());
        let stream = client.open().await.unwrap();
        (client, server, stream)
    });
    drop(rt); // drops the driver tasks
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut b = [0u8; 1];
        let r = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut b))
            .await
            .expect("read fails instead of hanging");
        assert!(r.is_err());
        assert!(client.is_closed() && server.is_closed());
        assert!(matches!(client.open().await, Err(Error::SessionShutdown)));
    });
}

#[tokio::test]
async fn close_sends_pending_stream_frames_then_one_go_away() {
    bounded(async {
        let (client, mut peer) = RawPeer::new(true, quiet());
        let mut s = client.open().await.unwrap();
        s.write_all(b"bye").await.unwrap();
        client.go_away();
        client.close().await;
        let mut frames = vec![];
        while let Some(f) = peer.recv().await {
            frames.push((f.typ, f.flags, f.id, f.len));
        }
        // go_away()'s GoAway may precede the stream's frames; close() adds no second one.
        let go_aways = frames.iter().filter(|f| f.0 == GOAWAY).count();
        assert_eq!(go_aways, 1, "{frames:?}");
        let mut rest: Vec<_> = frames.into_iter().filter(|f| f.0 != GOAWAY).collect();
        rest.sort();
        assert_eq!(rest, vec![(DATA, 0, 1, 3), (WINDOW, SYN, 1, 0)]);

        let (client, mut peer) = RawPeer::new(true, quiet());
        let mut s = client.open().await.unwrap();
        s.write_all(b"bye").await.unwrap();
        client.close().await;
        let mut frames = vec![];
        while let Some(f) = peer.recv().await {
            frames.push((f.typ, f.flags, f.id, f.len));
        }
        assert_eq!(
            frames,
            vec![(WINDOW, SYN, 1, 0), (DATA, 0, 1, 3), (GOAWAY, 0, 0, 0)]
        );
    })
    .await;
}

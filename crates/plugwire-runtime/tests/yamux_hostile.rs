//! A hand-driven raw peer sends invalid, hostile or unusual frames.
#![allow(missing_docs, clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;
use plugwire_runtime::yamux::{Config, Error, ProtocolError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Reads frames until GoAway; returns its code.
async fn expect_go_away(peer: &mut RawPeer) -> u32 {
    loop {
        let f = peer.recv().await.expect("GoAway before EOF");
        if f.typ == GOAWAY {
            return f.len;
        }
    }
}

#[tokio::test]
async fn bad_version_is_a_protocol_error() {
    bounded(async {
        let (server, mut peer) = RawPeer::new(false, quiet());
        let mut h = hdr(PING, SYN, 0, 1);
        h[0] = 1;
        peer.io.write_all(&h).await.unwrap();
        assert_eq!(expect_go_away(&mut peer).await, 1);
        let reason = server.closed().await;
        assert!(
            matches!(reason, Error::Protocol(ProtocolError::InvalidVersion(1))),
            "{reason}"
        );
        assert!(peer.recv().await.is_none());
    })
    .await;
}

#[tokio::test]
async fn bad_type_is_a_protocol_error() {
    bounded(async {
        let (server, mut peer) = RawPeer::new(false, quiet());
        peer.send(9, 0, 0, 0).await;
        assert_eq!(expect_go_away(&mut peer).await, 1);
        assert!(matches!(
            server.closed().await,
            Error::Protocol(ProtocolError::InvalidType(9))
        ));
    })
    .await;
}

#[tokio::test]
async fn duplicate_syn_is_a_protocol_error() {
    bounded(async {
        let (server, mut peer) = RawPeer::new(false, quiet());
        peer.send(WINDOW, SYN, 1, 0).await;
        peer.send(WINDOW, SYN, 1, 0).await;
        assert_eq!(expect_go_away(&mut peer).await, 1);
        assert!(matches!(
            server.closed().await,
            Error::Protocol(ProtocolError::DuplicateStream(1))
        ));
    })
    .await;
}

#[tokio::test]
async fn syn_with_our_parity_or_zero_is_a_protocol_error() {
    bounded(async {
        for id in [0u32, 2] {
            let (server, mut peer) = RawPeer::new(false, quiet());
            peer.send(WINDOW, SYN, id, 0).await;
            assert_eq!(expect_go_away(&mut peer).await, 1);
            assert!(matches!(
                server.closed().await,
                Error::Protocol(ProtocolError::InvalidStreamId(i)) if i == id
            ));
        }
    })
    .await;
}

#[tokio::test]
async fn exceeding_the_window_is_a_protocol_error() {
    bounded(async {
        // One frame too large.
        let (_server, mut peer) = RawPeer::new(false, quiet());
        peer.send(WINDOW, SYN, 1, 0).await;
        peer.send(DATA, 0, 1, 256 * 1024 + 1).await;
        assert_eq!(expect_go_away(&mut peer).await, 1);

        // Two frames that together exceed it (nothing read in between).
        let (server, mut peer) = RawPeer::new(false, quiet());
        peer.send(WINDOW, SYN, 1, 0).await;
        peer.send_data(0, 1, &vec![0u8; 200 * 1024]).await;
        peer.send(DATA, 0, 1, 100 * 1024).await;
        assert_eq!(expect_go_away(&mut peer).await, 1);
        let reason = server.closed().await;
        assert!(
            matches!(
                reason,
                Error::Protocol(ProtocolError::RecvWindowExceeded {
                    stream: 1,
                    window: 57344,
                    len: 102400
                })
            ),
            "{reason}"
        );
    })
    .await;
}

#[tokio::test]
async fn frames_for_unknown_streams_are_discarded() {
    bounded(async {
        let (server, mut peer) = RawPeer::new(false, quiet());
        peer.send_data(0, 99, &vec![1u8; 1 << 20]).await;
        peer.send(WINDOW, 0, 77, 1000).await;
        peer.send(WINDOW, RST, 55, 0).await;
        peer.send(WINDOW, FIN, 53, 0).await;
        peer.send(PING, SYN, 0, 42).await;
        let f = peer.recv().await.unwrap();
        assert_eq!((f.typ, f.flags, f.len), (PING, ACK, 42));
        assert!(!server.is_closed());
    })
    .await;
}

#[tokio::test]
async fn window_updates_saturate_instead_of_overflowing() {
    bounded(async {
        let (mut server, mut peer) = RawPeer::new(false, quiet());
        peer.send(WINDOW, SYN, 1, u32::MAX).await;
        peer.send(WINDOW, 0, 1, u32::MAX).await;
        peer.send(WINDOW, 0, 1, u32::MAX).await;
        let mut s = server.accept().await.unwrap();
        s.write_all(&[5u8; 100_000]).await.unwrap();
        s.flush().await.unwrap();
        let mut got = 0;
        while got < 100_000 {
            let f = peer.recv().await.unwrap();
            if f.typ == DATA {
                got += f.payload.len();
            }
        }
        assert!(!server.is_closed());
    })
    .await;
}

#[tokio::test]
async fn go_away_error_codes_end_the_session() {
    bounded(async {
        for (code, check) in [
            (
                1u32,
                (|e: &Error| matches!(e, Error::RemoteProtocolError)) as fn(&Error) -> bool,
            ),
            (2, |e| matches!(e, Error::RemoteInternalError)),
            (7, |e| matches!(e, Error::RemoteGoAwayCode(7))),
        ] {
            let (client, mut peer) = RawPeer::new(true, quiet());
            let mut s = client.open().await.unwrap();
            peer.send(GOAWAY, 0, 0, code).await;
            let reason = client.closed().await;
            assert!(check(&reason), "{code}: {reason}");
            let mut b = [0u8; 1];
            assert!(s.read(&mut b).await.is_err());
        }
    })
    .await;
}

#[tokio::test]
async fn syn_flood_is_bounded_by_the_backlog() {
    bounded(async {
        let (server, peer) = RawPeer::new(false, quiet());
        let (mut rd, mut wr) = tokio::io::split(peer.io);
        let writer = tokio::spawn(async move {
            for i in 0..10_000u32 {
                wr.write_all(&hdr(WINDOW, SYN, 2 * i + 1, 0)).await.unwrap();
            }
            wr.write_all(&hdr(PING, SYN, 0, 7)).await.unwrap();
            wr
        });
        let (mut acks, mut rsts) = (0, 0);
        loop {
            let mut b = [0u8; 12];
            rd.read_exact(&mut b).await.unwrap();
            match (b[1], u16::from_be_bytes([b[2], b[3]])) {
                (1, 2) => acks += 1,
                (1, 8) => rsts += 1,
                (2, 2) => break,
                other => panic!("{other:?}"),
            }
        }
        // The pong follows every refusal (same queue); ACKs may still be in flight.
        assert_eq!(rsts, 10_000 - 256);
        while acks < 256 {
            let mut b = [0u8; 12];
            rd.read_exact(&mut b).await.unwrap();
            assert_eq!((b[1], u16::from_be_bytes([b[2], b[3]])), (1, 2));
            acks += 1;
        }
        assert_eq!(server.control().num_streams(), 256);
        writer.await.unwrap();
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn ping_flood_from_a_peer_that_does_not_read_is_backpressured() {
    bounded(async {
        let (server, peer) = RawPeer::new(false, quiet());
        let (mut rd, mut wr) = tokio::io::split(peer.io);
        const N: u32 = 300_000; // 3.6 MB of pings, 3.6 MB of pongs; the pipe holds 1 MiB
        let writer = tokio::spawn(async move {
            for i in 0..N {
                wr.write_all(&hdr(PING, SYN, 0, i)).await.unwrap();
            }
            wr
        });
        // The peer does not read: its writes stop once our reader stops.
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert!(
            !writer.is_finished(),
            "reader must stop when replies cannot be written"
        );
        assert!(!server.is_closed());
        // Now read everything: every ping is answered, in order.
        for i in 0..N {
            let mut b = [0u8; 12];
            rd.read_exact(&mut b).await.unwrap();
            assert_eq!(b, hdr(PING, ACK, 0, i));
        }
        writer.await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn data_after_fin_and_duplicate_fin_are_ignored() {
    bounded(async {
        let (mut server, mut peer) = RawPeer::new(false, quiet());
        peer.send(WINDOW, SYN, 1, 0).await;
        peer.send_data(FIN, 1, b"abc").await;
        peer.send_data(0, 1, b"late").await;
        peer.send(WINDOW, FIN, 1, 0).await;
        let mut s = server.accept().await.unwrap();
        let mut v = Vec::new();
        s.read_to_end(&mut v).await.unwrap();
        assert_eq!(v, b"abc");
        peer.send(PING, SYN, 0, 1).await;
        loop {
            let f = peer.recv().await.unwrap();
            if f.typ == PING {
                break;
            }
        }
        assert!(!server.is_closed());
    })
    .await;
}

#[tokio::test]
async fn data_frame_with_syn_opens_a_stream() {
    bounded(async {
        let (mut server, mut peer) = RawPeer::new(false, quiet());
        peer.send_data(SYN, 1, b"lazy open").await;
        let mut s = server.accept().await.unwrap();
        let mut b = [0u8; 9];
        s.read_exact(&mut b).await.unwrap();
        assert_eq!(&b, b"lazy open");
    })
    .await;
}

#[tokio::test]
async fn truncated_frames_end_the_session_cleanly() {
    bounded(async {
        let (server, mut peer) = RawPeer::new(false, quiet());
        peer.io.write_all(&hdr(PING, SYN, 0, 1)[..5]).await.unwrap();
        peer.io.shutdown().await.unwrap();
        let reason = server.closed().await;
        assert!(matches!(reason, Error::ConnectionClosed), "{reason}");

        let (server, mut peer) = RawPeer::new(false, quiet());
        peer.send(WINDOW, SYN, 1, 0).await;
        peer.send(DATA, 0, 1, 1000).await;
        peer.io.write_all(&[0u8; 10]).await.unwrap();
        peer.io.shutdown().await.unwrap();
        let reason = server.closed().await;
        assert!(matches!(reason, Error::ConnectionClosed), "{reason}");
    })
    .await;
}

/// Frames with random (mostly valid) headers and random payloads: the session must end or
/// survive without panicking, and every stream accepted must behave.
#[tokio::test]
async fn random_frames_never_panic() {
    bounded(async {
        let mut x: u64 = 0x1234_5678_9abc_def1;
        let mut rnd = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for case in 0..300 {
            let cfg = Config {
                accept_backlog: 8,
                ..quiet()
            };
            let (mut server, peer) = RawPeer::new(case % 2 == 0, cfg);
            let (mut rd, mut wr) = tokio::io::split(peer.io);
            let drain = tokio::spawn(async move {
                let mut sink = vec![0u8; 65536];
                while rd.read(&mut sink).await.unwrap_or(0) > 0 {}
            });
            let mut bytes = Vec::new();
            for _ in 0..(rnd() % 40) {
                let r = rnd();
                let typ = if r % 50 == 0 {
                    (r >> 8) as u8
                } else {
                    (r % 4) as u8
                };
                let flags = ((r >> 16) % 16) as u16;
                let id = ((r >> 24) % 12) as u32;
                let len = match (r >> 40) % 4 {
                    0 => 0,
                    1 => ((r >> 44) % 300) as u32,
                    2 => ((r >> 44) % 400_000) as u32,
                    _ => (r >> 32) as u32,
                };
                let mut h = hdr(typ, flags, id, len);
                if r % 97 == 0 {
                    h[0] = 3;
                }
                bytes.extend_from_slice(&h);
                if typ == DATA && len < 400_000 {
                    bytes.extend(std::iter::repeat_n(0xa5u8, len as usize));
                }
            }
            let accept = tokio::spawn(async move {
                while let Ok(mut s) = server.accept().await {
                    tokio::spawn(async move {
                        let mut b = vec![0u8; 4096];
                        while let Ok(n) = s.read(&mut b).await {
                            if n == 0 || s.write_all(&b[..n]).await.is_err() {
                                break;
                            }
                        }
                    });
                }
                server
            });
            let _ = wr.write_all(&bytes).await;
            let _ = wr.shutdown().await;
            let server = tokio::time::timeout(Duration::from_secs(10), accept)
                .await
                .expect("session ended")
                .unwrap();
            assert!(server.is_closed());
            drain.abort();
        }
    })
    .await;
}

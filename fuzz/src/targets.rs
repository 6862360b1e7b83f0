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

/// A typed destination with an `interface{}` field: gobwire's dynamic decoder runs inside an
/// ordinary struct too.
#[derive(gobwire::Gob, Debug, Default)]
pub struct Typed {
    /// `Name`.
    pub name: String,
    /// `Count`.
    pub count: i64,
    /// `Any`.
    pub any: Option<gobwire::Interface>,
    /// `Items`.
    pub items: Vec<String>,
}

/// A gob stream from a peer (a net/rpc connection's one direction): the guard and gobwire never
/// panic, overflow the stack or run away, whatever the bytes; values alternate between the
/// dynamic and a typed destination.
pub fn gob_stream(data: &[u8]) {
    use plugwire_protocol::gob::gobwire::{Dynamic, Progress};
    use plugwire_protocol::gob::{GuardedDecoder, Limits, parse_length_prefix};
    let mut decoder = GuardedDecoder::new(Limits::default());
    let mut rest = data;
    let mut values = 0u32;
    while let Ok(Some((width, len))) = parse_length_prefix(rest) {
        if decoder.check_length(len).is_err() {
            return;
        }
        let Some(body) = usize::try_from(len)
            .ok()
            .and_then(|len| rest.get(width..width.checked_add(len)?))
        else {
            return;
        };
        rest = &rest[width + body.len()..];
        match decoder.push_message(body) {
            Ok(Progress::Ready) => {
                values += 1;
                let decoded = if values % 2 == 1 {
                    decoder.decode::<Dynamic>().map(drop)
                } else {
                    decoder.decode::<Typed>().map(drop)
                };
                if decoded.is_err() {
                    return;
                }
            }
            Ok(_) => {}
            Err(_) => return,
        }
    }
}

/// The first byte picks a side, the rest is what the peer sends it. Even: a net/rpc server
/// (the input is a client's requests). Odd: a net/rpc client with two calls pending (the input
/// is a server's replies). Never panics, and always ends once the input has (a hang fails).
pub fn netrpc_framing(data: &[u8]) {
    use plugwire_runtime::netrpc::{Client, Guarded, Limits, Server, ServiceError, gobwire};
    use std::sync::Arc;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let Some((&side, input)) = data.split_first() else {
        return;
    };
    let input = input.to_vec();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let ended = runtime.block_on(async move {
        let (ours, theirs) = tokio::io::duplex(64 * 1024);
        let (mut their_read, mut their_write) = tokio::io::split(theirs);
        let peer = async move {
            let _ = their_write.write_all(&input).await;
            let _ = their_write.shutdown().await;
        };
        let drain = async move {
            let mut sink = Vec::new();
            let _ = (&mut their_read).take(1 << 20).read_to_end(&mut sink).await;
            // Keep reading (discarding) so our side never blocks on a full pipe.
            let mut buf = [0u8; 4096];
            while matches!(their_read.read(&mut buf).await, Ok(n) if n > 0) {}
        };
        let io = Guarded::new(ours, Limits::default());
        let ours = async move {
            if side % 2 == 0 {
                let mut server = Server::new();
                server.register("Plugin.Echo", |v: gobwire::Dynamic| async move {
                    Ok::<_, ServiceError>(v)
                });
                server.register("Plugin.Double", |n: i64| async move {
                    Ok::<_, ServiceError>(2 * n)
                });
                server.register("Control.Ping", |_: bool| async {
                    Ok::<_, ServiceError>(plugwire_runtime::netrpc::InvalidRequest {})
                });
                let _ = Arc::new(server).serve(io).await;
            } else {
                let client = Client::new(io);
                let _ = tokio::join!(
                    client.call::<_, gobwire::Dynamic>("Plugin.Echo", &1i64),
                    client.call::<_, i64>("Plugin.Double", &21i64),
                );
            }
        };
        tokio::time::timeout(std::time::Duration::from_secs(10), async {
            tokio::join!(peer, drain, ours);
        })
        .await
        .is_ok()
    });
    assert!(ended, "net/rpc did not end after the peer's input did");
}

/// The first byte picks a role (even: yamux server, as a plugin; odd: client, as a host), the
/// rest is the peer's frames. Every inbound stream is read to its end. Never panics, and the
/// session always ends once the input has (a hang fails).
pub fn yamux_session(data: &[u8]) {
    use plugwire_runtime::yamux::{Config, Session};
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let Some((&role, input)) = data.split_first() else {
        return;
    };
    let input = input.to_vec();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let ended = runtime.block_on(async move {
        let (ours, theirs) = tokio::io::duplex(64 * 1024);
        let (mut their_read, mut their_write) = tokio::io::split(theirs);
        let peer = async move {
            let _ = their_write.write_all(&input).await;
            let _ = their_write.shutdown().await;
        };
        let drain = async move {
            let mut buf = [0u8; 4096];
            while matches!(their_read.read(&mut buf).await, Ok(n) if n > 0) {}
        };
        let session = if role % 2 == 0 {
            Session::server(ours, Config::default())
        } else {
            Session::client(ours, Config::default())
        };
        let Ok(mut session) = session else {
            return true;
        };
        let ours = async move {
            let mut readers = tokio::task::JoinSet::new();
            while let Ok(mut stream) = session.accept().await {
                readers.spawn(async move {
                    let mut sink = Vec::new();
                    let _ = stream.read_to_end(&mut sink).await;
                });
            }
            while readers.join_next().await.is_some() {}
        };
        tokio::time::timeout(std::time::Duration::from_secs(10), async {
            tokio::join!(peer, drain, ours);
        })
        .await
        .is_ok()
    });
    assert!(
        ended,
        "the yamux session did not end after the peer's input did"
    );
}

//! The broker driver between two in-memory sides.

use std::sync::atomic::AtomicU32;
use std::time::Duration;

use super::*;
use crate::tls::TlsConfigs;

struct Pair {
    host: Broker,
    plugin: Broker,
    host_link: BrokerLink,
    plugin_link: BrokerLink,
    sockets: tempfile::TempDir,
    _tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// Two brokers wired to each other in memory, as host and plugin.
fn pair(multiplex: bool) -> Pair {
    pair_with(multiplex, tempfile::tempdir().expect("tempdir"), None)
}

/// A pair whose listeners go in `sockets`, the host translating addresses with `translator`.
fn pair_with(
    multiplex: bool,
    sockets: tempfile::TempDir,
    translator: Option<Arc<dyn AddressTranslator>>,
) -> Pair {
    use futures_util::StreamExt as _;
    let config = |role| {
        let mut config = BrokerConfig::new(
            role,
            BrokerListen::Unix {
                dir: sockets.path().to_path_buf(),
                group: None,
            },
        );
        config.tls = TlsConfigs::default();
        config.translator = if role == Role::Host {
            translator.clone()
        } else {
            None
        };
        config.multiplex = multiplex;
        config
    };
    let (host, host_link) = Broker::new(config(Role::Host));
    let (plugin, plugin_link) = Broker::new(config(Role::Plugin));
    let wire = |from: &BrokerLink, to: &BrokerLink| {
        let mut out = Box::pin(from.outbound());
        let to = to.clone();
        tokio::spawn(async move {
            while let Some(info) = out.next().await {
                to.handle_inbound(info);
            }
        })
    };
    let mut tasks = vec![
        wire(&host_link, &plugin_link),
        wire(&plugin_link, &host_link),
    ];
    if multiplex {
        let (a, b) = tokio::io::duplex(1 << 20);
        host_link
            .start_session(BoxedIo::new(a), None)
            .expect("session");
        let (tx, mut main) = transport::incoming();
        plugin_link
            .start_session(BoxedIo::new(b), Some(tx))
            .expect("session");
        tasks.push(tokio::spawn(
            async move { while main.next().await.is_some() {} },
        ));
    }
    Pair {
        host,
        plugin,
        host_link,
        plugin_link,
        sockets,
        _tasks: tasks,
    }
}

async fn ping(channel: Channel) -> bool {
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    health
        .check(tonic_health::pb::HealthCheckRequest::default())
        .await
        .is_ok()
}

fn health_routes() -> tonic::service::Routes {
    tonic::service::Routes::new(tonic_health::server::health_reporter().1)
}

async fn both_directions(multiplex: bool) {
    let p = pair(multiplex);
    let (host, plugin) = (p.host.clone(), p.plugin.clone());
    // The host serves, the plugin dials.
    let id = host.next_id();
    assert_eq!(id, 1);
    let served = host
        .accept_and_serve(id, health_routes())
        .await
        .expect("accept");
    assert!(ping(plugin.dial(id).await.expect("plugin dials")).await);
    drop(served);
    // The plugin serves, the host dials; ids are counted per side.
    let id = plugin.next_id();
    assert_eq!(id, 1);
    plugin
        .accept_and_serve(id, health_routes())
        .await
        .expect("accept")
        .detach();
    assert!(ping(host.dial(id).await.expect("host dials")).await);
    host.close();
    plugin.close();
}

#[tokio::test]
async fn plain_brokering_both_directions() {
    both_directions(false).await;
}

#[tokio::test]
async fn multiplexed_brokering_both_directions() {
    both_directions(true).await;
}

/// The plugin sees host sockets through a symlinked directory (as a container would through
/// a bind mount): the host translates both ways.
struct ViaLink {
    real: std::path::PathBuf,
    link: std::path::PathBuf,
    calls: AtomicU32,
}

impl AddressTranslator for ViaLink {
    fn plugin_to_host(&self, network: &str, address: &str) -> io::Result<(String, String)> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        let real = address.replace(&*self.link.to_string_lossy(), &self.real.to_string_lossy());
        Ok((network.to_owned(), real))
    }
    fn host_to_plugin(&self, network: &str, address: &str) -> io::Result<(String, String)> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        let seen = address.replace(&*self.real.to_string_lossy(), &self.link.to_string_lossy());
        Ok((network.to_owned(), seen))
    }
}

#[tokio::test]
async fn host_translates_brokered_addresses() {
    let sockets = tempfile::tempdir().expect("tempdir");
    let links = tempfile::tempdir().expect("tempdir");
    let link = links.path().join("seen-by-plugin");
    std::os::unix::fs::symlink(sockets.path(), &link).expect("symlink");
    let translator = Arc::new(ViaLink {
        real: sockets.path().to_path_buf(),
        link,
        calls: AtomicU32::new(0),
    });
    let p = pair_with(false, sockets, Some(translator.clone()));
    // The host serves; the plugin only learns the symlinked path.
    let id = p.host.next_id();
    let _served = p
        .host
        .accept_and_serve(id, health_routes())
        .await
        .expect("accept");
    assert!(ping(p.plugin.dial(id).await.expect("the plugin dials the link")).await);
    // The plugin serves; the host maps its address back (identity here).
    let id = p.plugin.next_id();
    p.plugin
        .accept_and_serve(id, health_routes())
        .await
        .expect("accept")
        .detach();
    assert!(ping(p.host.dial(id).await.expect("the host dials")).await);
    assert_eq!(translator.calls.load(Ordering::Relaxed), 2);
}

/// A dial for an id nobody accepts fails after 5 s with go-plugin's texts.
#[tokio::test(start_paused = true)]
async fn dialing_an_unaccepted_id_times_out() {
    let plain = pair(false);
    let err = plain.host.dial(99).await.expect_err("nobody serves 99");
    assert!(
        matches!(err, BrokerError::ConnInfoTimeout { id: 99 }),
        "{err}"
    );

    let mux = pair(true);
    let err = mux.host.dial(99).await.expect_err("nobody serves 99");
    let chain = err.to_string();
    assert!(
        chain.contains(
            "failed to knock before dialling client: timeout waiting for multiplexing knock handshake on id 99"
        ),
        "{chain}"
    );
}

/// Many brokered connections in a row leave no bookkeeping, listener or socket behind.
#[tokio::test]
async fn repeated_brokering_leaves_nothing_behind() {
    for multiplex in [false, true] {
        let p = pair(multiplex);
        for _ in 0..50 {
            let id = p.host.next_id();
            let served = p
                .host
                .accept_and_serve(id, health_routes())
                .await
                .expect("accept");
            let channel = p.plugin.dial(id).await.expect("dial");
            assert!(ping(channel).await);
            served.stop().await;
        }
        assert_eq!(p.host_link.pending(), 0);
        assert_eq!(p.plugin_link.pending(), 0);
        let left = std::fs::read_dir(p.sockets.path()).expect("dir").count();
        assert_eq!(left, 0, "listeners removed their sockets");
    }
}

/// Two dials in flight, the address 50 ms later: the first dial connects, the second times out
/// after the full 5 s.
#[tokio::test(start_paused = true)]
async fn second_dial_of_one_id_times_out_alone() {
    let p = pair(false);
    let (host, plugin) = (p.host.clone(), p.plugin.clone());
    let first = tokio::spawn({
        let plugin = plugin.clone();
        async move { plugin.dial(1).await }
    });
    tokio::task::yield_now().await;
    let second = tokio::spawn(async move {
        let started = tokio::time::Instant::now();
        (plugin.dial(1).await, started.elapsed())
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let id = host.next_id();
    let _served = host
        .accept_and_serve(id, health_routes())
        .await
        .expect("accept");
    assert!(ping(first.await.expect("join").expect("the first dial connects")).await);
    let (second, waited) = second.await.expect("join");
    assert!(
        matches!(second, Err(BrokerError::ConnInfoTimeout { id: 1 })),
        "{second:?}"
    );
    assert!(waited >= BROKER_TIMEOUT, "gave up after {waited:?}");
}

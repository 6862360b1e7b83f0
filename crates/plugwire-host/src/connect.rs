//! Connecting to a plugin whose handshake line was accepted (or that is reattached to): the main
//! gRPC channel, the broker, the `GRPCBroker` and `GRPCStdio` streams a Go host opens at once
//! (or, for netrpc, the session of `netrpc.rs`), and the [`Plugin`] handle.

use std::collections::BTreeSet;
use std::sync::Arc;

use plugwire_protocol::Protocol;
use plugwire_protocol::broker::Role;
use plugwire_protocol::handshake::HandshakeLine;
use plugwire_protocol::reattach::ReattachConfig;
use plugwire_runtime::broker::{
    AddressTranslator, Broker, BrokerConfig, BrokerLink, BrokerListen, PeerSocketHook,
};
use plugwire_runtime::grpc::{self, EndpointHook};
use plugwire_runtime::netrpc::HostSession;
use plugwire_runtime::pb::grpc_broker_client::GrpcBrokerClient;
use plugwire_runtime::tls::TlsConfigs;
use plugwire_runtime::transport::{self, Address};
use tokio::sync::Mutex;
use tokio::task::JoinHandle;
use tonic::transport::Channel;

use crate::attach::watch_without_pid;
use crate::config::PluginConfig;
use crate::error::{Error, ErrorKind};
use crate::plugin::{Negotiated, Plugin, Timings, TlsMode, Wire};
use crate::process::Process;

/// The host's broker for one plugin: brokered listeners go where the plugin's socket may
/// (`unix_socket_dir`, else the temp dir), in the socket group when set.
pub(crate) fn broker(
    config: &PluginConfig,
    tls: TlsConfigs,
    multiplex: bool,
    on_peer_socket: Option<PeerSocketHook>,
) -> (Broker, BrokerLink) {
    let dir = config
        .unix_socket_dir
        .clone()
        .unwrap_or_else(std::env::temp_dir);
    let mut broker = BrokerConfig::new(
        Role::Host,
        BrokerListen::Unix {
            dir,
            group: config.unix_socket_group.clone(),
        },
    );
    broker.tls = tls;
    broker.translator = config.translator.clone();
    broker.multiplex = multiplex;
    broker.on_peer_socket = on_peer_socket;
    broker.endpoint = config.endpoint.clone();
    Broker::new(broker)
}

/// The handshake address as the host must dial it (go-plugin's `PluginToHost`).
pub(crate) fn translate(
    translator: Option<&dyn AddressTranslator>,
    line: &HandshakeLine,
) -> Result<Address, Error> {
    let Some(translator) = translator else {
        return Ok(Address::new(line.network, &line.address));
    };
    let (network, address) = translator
        .plugin_to_host(line.network.as_str(), &line.address)
        .map_err(|e| {
            Error::with_source(
                ErrorKind::Handshake,
                "could not translate the plugin's address",
                e,
            )
        })?;
    let network = network.parse().map_err(|_| {
        Error::new(
            ErrorKind::Handshake,
            format!("unknown address type: {address} (translated network {network:?})"),
        )
    })?;
    Ok(Address::new(network, &address))
}

/// Connects the main gRPC channel: directly (TLS when configured), or, multiplexed, as the
/// first stream of a yamux session on one raw connection.
pub(crate) async fn channel(
    address: &Address,
    broker: &BrokerLink,
    endpoint: Option<&EndpointHook>,
) -> Result<Channel, Error> {
    let endpoint = grpc::endpoint(endpoint);
    let connect_error = |e: &dyn std::fmt::Display| {
        format!(
            "could not connect to the plugin at {address}{}{}",
            if broker.is_multiplexed() {
                " (multiplexed)"
            } else {
                ""
            },
            e
        )
    };
    let channel = if broker.is_multiplexed() {
        // A Go plugin waits only ~5 s for this connection after printing its handshake line.
        let raw = transport::dial(address)
            .await
            .map_err(|e| Error::with_source(ErrorKind::Connect, connect_error(&""), e))?;
        broker
            .start_session(raw, None)
            .map_err(|e| Error::with_source(ErrorKind::Connect, connect_error(&""), e))?;
        let broker = broker.clone();
        grpc::channel(endpoint, move || {
            let broker = broker.clone();
            async move { broker.open_main().await }
        })
        .await
    } else {
        let tls = broker.client_tls();
        let address = address.clone();
        grpc::channel(endpoint, move || {
            let address = address.clone();
            let tls = tls.clone();
            async move {
                let io = transport::dial(&address).await?;
                match tls {
                    Some(config) => transport::tls_connect(io, config).await,
                    None => Ok(io),
                }
            }
        })
        .await
    };
    channel.map_err(|e| Error::with_source(ErrorKind::Connect, connect_error(&""), e))
}

/// What connecting produced.
pub(crate) struct Connected {
    pub(crate) link: Link,
    pub(crate) tls: TlsMode,
}

/// The connection, by protocol, before the handle is built.
pub(crate) enum Link {
    Grpc {
        channel: Channel,
        broker: Broker,
        link: BrokerLink,
    },
    NetRpc(HostSession),
}

/// The parts of a connected plugin.
pub(crate) struct Assembly {
    pub(crate) timings: Option<Timings>,
    pub(crate) name: String,
    pub(crate) version: u32,
    pub(crate) protocol: Protocol,
    pub(crate) plugins: BTreeSet<String>,
    pub(crate) address: Address,
    pub(crate) connected: Connected,
    pub(crate) process: Arc<Process>,
    pub(crate) stderr_task: Option<JoinHandle<()>>,
    pub(crate) config: PluginConfig,
    pub(crate) handshake: Option<HandshakeLine>,
    pub(crate) reattached: Option<ReattachConfig>,
}

/// Starts the broker and stdio streams and builds the handle.
pub(crate) fn assemble(mut parts: Assembly) -> Plugin {
    let sinks = crate::stdio::Sinks {
        stdout: parts.config.sync_stdout.take(),
        stderr: parts.config.sync_stderr.take(),
    };
    let watch = !parts.process.launched() && parts.process.pid().is_none();
    let mut background = Vec::new();
    let (wire, stdio, multiplexed) = match parts.connected.link {
        Link::Grpc {
            channel,
            broker,
            link,
        } => {
            let closing = link.clone();
            let stdio = tokio::spawn(crate::stdio::run(
                channel.clone(),
                parts.name.clone(),
                sinks,
                move || closing.is_closed(),
            ));
            background.push(tokio::spawn(run_broker_stream(
                channel.clone(),
                link.clone(),
            )));
            if watch {
                let channel = channel.clone();
                background.push(tokio::spawn(watch_without_pid(
                    move || {
                        let channel = channel.clone();
                        async move { crate::kill::gone(&channel).await }
                    },
                    parts.process.clone(),
                )));
            }
            let multiplexed = link.is_multiplexed();
            (Wire::Grpc { channel, broker }, stdio, multiplexed)
        }
        Link::NetRpc(session) => {
            let (netrpc, stdio) = crate::netrpc::start(
                session,
                parts.plugins.clone(),
                parts.version,
                &parts.name,
                sinks,
            );
            if watch {
                let netrpc = netrpc.clone();
                background.push(tokio::spawn(watch_without_pid(
                    move || {
                        let netrpc = netrpc.clone();
                        async move { netrpc.gone().await }
                    },
                    parts.process.clone(),
                )));
            }
            (Wire::NetRpc(netrpc), stdio, false)
        }
    };
    let negotiated = Negotiated {
        protocol: parts.protocol,
        version: parts.version,
        tls: parts.connected.tls,
        multiplexed,
    };
    Plugin {
        name: parts.name,
        timings: parts.timings,
        negotiated,
        plugins: parts.plugins,
        address: parts.address,
        handshake: parts.handshake,
        wire,
        process: parts.process,
        stderr_done: Mutex::new(parts.stderr_task),
        stdio_done: Mutex::new(Some(stdio)),
        background,
        killed: Mutex::new(None),
        reattached: parts.reattached,
    }
}

/// Opens `plugin.GRPCBroker/StartStream` right after connecting, as a Go host does, and feeds
/// the broker until it is closed.
async fn run_broker_stream(channel: Channel, broker: BrokerLink) {
    let mut client = GrpcBrokerClient::new(channel);
    let call = async {
        match client.start_stream(broker.outbound()).await {
            Ok(response) => {
                let mut inbound = response.into_inner();
                while let Ok(Some(info)) = inbound.message().await {
                    broker.handle_inbound(info);
                }
            }
            Err(status) => tracing::debug!(%status, "plugin has no broker stream"),
        }
    };
    tokio::select! {
        () = call => {}
        () = broker.closed() => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use plugwire_protocol::Network;

    #[test]
    fn handshake_address_is_translated() {
        struct Container;
        impl AddressTranslator for Container {
            fn plugin_to_host(&self, _: &str, address: &str) -> std::io::Result<(String, String)> {
                Ok(("unix".into(), format!("/var/lib/plugins/mnt{address}")))
            }
        }
        let line = HandshakeLine::parse("1|1|unix|/tmp/plugin1|grpc|").expect("valid");
        assert_eq!(
            translate(Some(&Container), &line).expect("translated"),
            Address::Unix("/var/lib/plugins/mnt/tmp/plugin1".into())
        );
        assert_eq!(
            translate(None, &line).expect("identity"),
            Address::Unix("/tmp/plugin1".into())
        );
        struct Broken;
        impl AddressTranslator for Broken {
            fn plugin_to_host(&self, _: &str, a: &str) -> std::io::Result<(String, String)> {
                Ok(("carrier-pigeon".into(), a.into()))
            }
        }
        let err = translate(Some(&Broken), &line).expect_err("unknown network");
        assert!(err.to_string().contains("unknown address type"), "{err}");
    }

    #[test]
    fn network_field_round_trip() {
        let line = HandshakeLine::parse("1|1|tcp|:1234|grpc|").expect("valid");
        assert_eq!(
            Address::new(line.network, &line.address),
            Address::Tcp("127.0.0.1:1234".into())
        );
        assert_eq!(
            Address::new(Network::Unix, "/tmp/x").network(),
            Network::Unix
        );
    }
}

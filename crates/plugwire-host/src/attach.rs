//! Attaching to a plugin that is already running (go-plugin's `Reattach`): no launch, no
//! handshake; it must exist and answer at its address.

use std::sync::Arc;
use std::time::Duration;

use plugwire_protocol::Protocol;
use plugwire_protocol::handshake::HandshakeLine;
use plugwire_protocol::reattach::ReattachConfig;
use plugwire_runtime::transport;

use crate::config::PluginConfig;
use crate::connect::{self, Assembly, Connected, Link};
use crate::error::{Error, ErrorKind};
use crate::plugin::{Plugin, TlsMode};
use crate::process::{self, Process};

/// How often a reattached plugin whose pid is unknown is checked for being gone.
const NO_PID_POLL: Duration = Duration::from_secs(1);

/// Attaches to a running plugin (go-plugin's `reattach`): it must exist and answer at its
/// address, else `ErrorKind::NotFound` ("reattachment process not found").
pub(crate) async fn attach(
    mut config: PluginConfig,
    reattach: ReattachConfig,
) -> Result<Plugin, Error> {
    let config_error = |message: &str| Error::new(ErrorKind::Config, message.to_owned());
    if config.secure.is_some() {
        return Err(config_error(
            "only one of Reattach or SecureConfig can be set",
        ));
    }
    if config.multiplex {
        return Err(config_error(
            "gRPC broker multiplexing is not supported with Reattach config",
        ));
    }
    let protocol = reattach
        .protocol()
        .map_err(|e| Error::with_source(ErrorKind::Config, "invalid reattach configuration", e))?;
    let network = reattach
        .address()
        .map_err(|e| Error::with_source(ErrorKind::Config, "invalid reattach configuration", e))?
        .network();
    let line = HandshakeLine::new(
        reattach.protocol_version,
        network,
        reattach.addr.string.clone(),
        protocol,
    );
    let address = connect::translate(config.translator.as_deref(), &line)?;
    let not_found = |why: String| {
        Error::new(
            ErrorKind::NotFound,
            format!("reattachment process not found: {why}"),
        )
    };
    if reattach.pid != 0 && !process::is_alive(reattach.pid) {
        return Err(not_found(format!("no process with pid {}", reattach.pid)));
    }
    if let Err(e) = transport::dial(&address).await {
        return Err(not_found(format!("nothing answers at {address} ({e})")));
    }
    if config.auto_mtls {
        tracing::debug!("AutoMTLS is ignored when reattaching: no certificates are exchanged");
    }
    let tls = config.tls.clone();
    let link = if protocol == Protocol::NetRpc {
        let client = tls.as_ref().and_then(|t| t.client.clone());
        Link::NetRpc(crate::netrpc::connect(&address, client, config.gob_limits.clone()).await?)
    } else {
        let (broker, link) = connect::broker(&config, tls.clone().unwrap_or_default(), false, None);
        let channel = connect::channel(&address, &link, config.endpoint.as_ref()).await?;
        Link::Grpc {
            channel,
            broker,
            link,
        }
    };
    let plugins = config
        .versions
        .get(&reattach.protocol_version)
        .cloned()
        .unwrap_or_else(|| config.versions.values().flatten().cloned().collect());
    Ok(connect::assemble(Assembly {
        timings: None,
        name: std::mem::take(&mut config.name),
        version: reattach.protocol_version,
        protocol,
        plugins,
        address,
        connected: Connected {
            link,
            tls: if tls.is_some() {
                TlsMode::Manual
            } else {
                TlsMode::Plaintext
            },
        },
        process: Arc::new(Process::attach(reattach.pid)),
        stderr_task: None,
        config,
        handshake: None,
        reattached: Some(reattach),
    }))
}

/// A reattached plugin without a pid is gone when it no longer answers (go-plugin cannot tell
/// at all); checked every [`NO_PID_POLL`] for as long as the `Plugin` lives.
pub(crate) async fn watch_without_pid<F, Fut>(gone: F, process: Arc<Process>)
where
    F: Fn() -> Fut,
    Fut: Future<Output = bool>,
{
    loop {
        tokio::select! {
            () = tokio::time::sleep(NO_PID_POLL) => {}
            () = process.exited().cancelled() => return,
        }
        if gone().await {
            process.mark_exited();
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reattach_refuses_what_go_plugin_refuses() {
        let reattach = || {
            ReattachConfig::from_json(
                r#"{"Protocol":"grpc","ProtocolVersion":1,"Pid":1,"Addr":{"Network":"unix","String":"/tmp/p"}}"#,
            )
            .expect("valid")
        };
        let err = Plugin::launch(
            PluginConfig::reattach(reattach())
                .secure_config(crate::SecureConfig::sha256(vec![0; 32]))
                .build(),
        )
        .await
        .expect_err("reattach + SecureConfig");
        assert_eq!(
            err.to_string(),
            "only one of Reattach or SecureConfig can be set"
        );
        let err = Plugin::launch(PluginConfig::reattach(reattach()).multiplex(true).build())
            .await
            .expect_err("reattach + multiplexing");
        assert_eq!(
            err.to_string(),
            "gRPC broker multiplexing is not supported with Reattach config"
        );
        let mut bogus = reattach();
        bogus.protocol = "carrier-pigeon".into();
        let err = Plugin::launch(PluginConfig::reattach(bogus).build())
            .await
            .expect_err("unknown protocol");
        assert_eq!(err.kind(), ErrorKind::Config);
        assert!(
            err.to_string().contains("invalid reattach configuration"),
            "{err}"
        );
    }
}

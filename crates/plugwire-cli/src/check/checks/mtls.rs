//! AutoMTLS: the plugin's certificate, and that it refuses clients without the host's.

use std::time::SystemTime;

use plugwire_host::{Identity, Protocol};
use plugwire_protocol::Address;

use crate::cert::CertSummary;
use crate::check::channel;
use crate::check::context::{ANSWER_TIMEOUT, Ctx};
use crate::check::outcome::Outcome;
use crate::check::session::Env;
use crate::check::tls;
use crate::diagnose::Problem;
use crate::goplugin;

/// With `PLUGIN_CLIENT_CERT` set, it answers with a certificate a Go host accepts.
pub(crate) async fn certificate(ctx: &Ctx) -> Outcome {
    let launched = match ctx.launch_raw(|b| b.auto_mtls(true)).await {
        Ok(launched) => launched,
        Err(diagnosis) if diagnosis.problem == Problem::Netrpc => {
            return crate::check::context::launch_outcome(&diagnosis);
        }
        Err(diagnosis) if diagnosis.error.contains("sent no certificate") => {
            return Outcome::fail(
                "with PLUGIN_CLIENT_CERT set it printed no certificate in field 6: it does not \
                 do AutoMTLS, and Go hosts that turn it on (Terraform, Vault, Boundary, \
                 go-kms-wrapping) cannot connect to it",
            );
        }
        Err(diagnosis) => {
            return Outcome::fail(format!(
                "with AutoMTLS the launch failed: {}",
                diagnosis.summary
            ));
        }
    };
    let plugin = &launched.plugin;
    let Some(der) = plugin.handshake().and_then(|l| l.server_cert.clone()) else {
        return Outcome::fail("no certificate in its handshake line");
    };
    let summary = match CertSummary::of(&der) {
        Ok(summary) => summary,
        Err(e) => return Outcome::fail(format!("its certificate is unusable: {e}")),
    };
    if let Err(e) = plugin.ping().await {
        return Outcome::fail(format!(
            "it sent a certificate, but a TLS 1.3 connection trusting only it (ALPN h2, the host's \
             certificate presented) does not work: {e}"
        ));
    }
    let objections = summary.go_host_objections(SystemTime::now());
    if !objections.is_empty() {
        return Outcome::fail(format!(
            "a Go host would refuse its certificate: {}",
            objections.join("; ")
        ));
    }
    let mut notes = Vec::new();
    if summary.key != "ECDSA P-521" {
        notes.push(format!(
            "its key is {}; go-plugin's are ECDSA P-521 (any key Go supports works)",
            summary.key
        ));
    }
    if !summary.extended_key_usage.is_empty()
        && !summary.extended_key_usage.iter().any(|u| u == "clientAuth")
    {
        notes.push(
            "its certificate does not allow clientAuth: it cannot dial brokered services the \
             host serves (callbacks) under AutoMTLS"
                .to_owned(),
        );
    }
    Outcome::pass(format!(
        "answered with its certificate ({}, {}, valid until {}); TLS 1.3 with it works",
        summary.key,
        summary.san.join(", "),
        summary.not_after
    ))
    .notes(notes)
}

/// It refuses clients without the host's certificate, with another one, or in plaintext.
pub(crate) async fn client_auth(ctx: &Ctx) -> Outcome {
    let host = match Identity::generate() {
        Ok(identity) => identity,
        Err(e) => return Outcome::fail(format!("cannot make a certificate: {e}")),
    };
    let env = Env {
        client_cert_pem: Some(host.cert_pem()),
        ..ctx.spec.env()
    };
    let mut started = match ctx.start_line(&env).await {
        Ok(started) => started,
        Err(outcome) => return outcome,
    };
    let outcome = judge(ctx, &started.line, &host).await;
    started.session.kill().await;
    outcome
}

async fn judge(ctx: &Ctx, line: &plugwire_protocol::HandshakeLine, host: &Identity) -> Outcome {
    if line.protocol != Protocol::Grpc {
        return ctx
            .netrpc_outcome()
            .unwrap_or_else(|| Outcome::not_applicable("the plugin does not speak gRPC"));
    }
    let Some(server) = line.server_cert.clone() else {
        return Outcome::not_applicable(
            "it answers PLUGIN_CLIENT_CERT with no certificate (see auto-mtls-cert): there is no \
             TLS to check",
        );
    };
    let address = Address::new(line.network, &line.address);
    let other = match Identity::generate() {
        Ok(identity) => identity,
        Err(e) => return Outcome::fail(format!("cannot make a certificate: {e}")),
    };
    let key = |identity: &Identity| identity.certified_key().ok();
    let (Some(host_key), Some(other_key)) = (key(host), key(&other)) else {
        return Outcome::fail("cannot load the test certificates' keys");
    };
    let attempt = |client: Option<_>| {
        let address = address.clone();
        let server = server.clone();
        async move {
            let config = tls::client_config(server, client).map_err(|e| e.to_string())?;
            health_over(&address, Some(config)).await
        }
    };
    if let Err(why) = attempt(Some(host_key)).await {
        return Outcome::fail(format!(
            "it refuses even the host's own certificate (the one in PLUGIN_CLIENT_CERT): {why}"
        ));
    }
    let mut refusals = Vec::new();
    for (what, result) in [
        ("with no certificate", attempt(None).await),
        ("with another certificate", attempt(Some(other_key)).await),
        ("in plaintext", health_over(&address, None).await),
    ] {
        match result {
            Ok(()) => {
                return Outcome::fail(format!(
                    "it accepts a client {what}: go-plugin requires and verifies the host's \
                     certificate (RequireAndVerifyClientCert), so only its host may call it"
                ));
            }
            Err(why) => refusals.push(format!("{what} ({why})")),
        }
    }
    Outcome::pass(format!(
        "it accepts the host's certificate and refuses a client {}",
        refusals.join(", ")
    ))
}

/// A health check over a fresh connection; `Err` with why it failed.
async fn health_over(
    address: &Address,
    tls: Option<std::sync::Arc<rustls::ClientConfig>>,
) -> Result<(), String> {
    let channel = channel::connect(address, tls, ANSWER_TIMEOUT)
        .await
        .map_err(|e| short(&plugwire_protocol::error_chain(&e)))?;
    goplugin::health(channel, "plugin", ANSWER_TIMEOUT)
        .await
        .map(|_| ())
        .map_err(|status| {
            short(&plugwire_protocol::error_chain(
                &crate::dyncall::StatusError::from(status),
            ))
        })
}

fn short(text: &str) -> String {
    // The innermost causes say most ("tls: certificate required", "broken pipe").
    let text = text
        .strip_prefix("code: Unknown, message: ")
        .unwrap_or(text);
    crate::capture::truncate(text, 140)
}

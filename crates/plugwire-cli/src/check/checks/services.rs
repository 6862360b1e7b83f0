//! go-plugin's services, as a host uses them: health, reflection, stdio, broker.

use std::time::Duration;

use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;

use crate::check::context::{ANSWER_TIMEOUT, Ctx};
use crate::check::outcome::Outcome;
use crate::dyncall::StatusError;
use crate::dyncall::reflection::ReflectionClient;
use crate::goplugin::{self, ConnInfo};

/// How long a stream that should stay open is watched.
const OPEN_FOR: Duration = Duration::from_secs(1);

/// The health service answers SERVING for service `plugin`.
pub(crate) async fn health(ctx: &Ctx) -> Outcome {
    let launched = match ctx.launch(|b| b).await {
        Ok(launched) => launched,
        Err(outcome) => return outcome,
    };
    if ctx.netrpc {
        // netrpc has no health service: the host's Ping() is Control.Ping.
        return match launched.plugin.ping().await {
            Ok(()) => {
                Outcome::pass("Control.Ping answers (netrpc's ping; it has no health service)")
            }
            Err(e) => Outcome::fail(format!("Control.Ping fails: {e}")),
        };
    }
    let channel = match launched.channel() {
        Ok(channel) => channel,
        Err(outcome) => return outcome,
    };
    let outcome = match goplugin::health(channel.clone(), "plugin", ANSWER_TIMEOUT).await {
        Ok(ServingStatus::Serving) => {
            Outcome::pass("grpc.health.v1.Health/Check for service \"plugin\" answers SERVING")
        }
        Ok(other) => Outcome::fail(format!(
            "service \"plugin\" answers {}: go-plugin sets it to SERVING when it starts (a Go \
             host's Ping() passes on any answer, but the non-Go guide requires SERVING)",
            goplugin::serving_status_name(other)
        )),
        Err(status) if status.code() == Code::Unimplemented => Outcome::fail(
            "it serves no grpc.health.v1.Health: a Go host's Ping() fails, and hosts that ping \
             (Terraform, Vault) give up on it",
        ),
        Err(status) if status.code() == Code::NotFound => Outcome::fail(
            "its health service does not know service \"plugin\" (NOT_FOUND): go-plugin's \
             Ping() checks exactly that name",
        ),
        Err(status) => Outcome::fail(format!(
            "the health check failed: {}",
            StatusError::from(status)
        )),
    };
    let overall = goplugin::health(channel, "", ANSWER_TIMEOUT).await;
    match overall {
        Ok(status) => outcome.note(format!(
            "service \"\" (the whole server) answers {}",
            goplugin::serving_status_name(status)
        )),
        Err(_) => outcome,
    }
}

/// Reflection lists the services.
pub(crate) async fn reflection(ctx: &Ctx) -> Outcome {
    if let Some(outcome) = ctx.netrpc_outcome() {
        return outcome;
    }
    let launched = match ctx.launch(|b| b).await {
        Ok(launched) => launched,
        Err(outcome) => return outcome,
    };
    let channel = match launched.channel() {
        Ok(channel) => channel,
        Err(outcome) => return outcome,
    };
    let mut served = Vec::new();
    let mut listed = Vec::new();
    let mut errors = Vec::new();
    for (name, alpha) in [("v1", false), ("v1alpha", true)] {
        let mut client = ReflectionClient::new(channel.clone());
        client.force_version(alpha);
        match client.list_services().await {
            Ok(services) => {
                served.push(name);
                if listed.is_empty() {
                    listed = services;
                }
            }
            Err(error) => errors.push(format!("{name}: {error}")),
        }
    }
    if served.is_empty() {
        return Outcome::fail(format!(
            "neither grpc.reflection.v1 nor v1alpha answers ({}): go-plugin serves both; tools \
             (grpcurl, plugwire inspect and call) need it to know the plugin's methods",
            errors.join("; ")
        ));
    }
    if listed.is_empty() {
        return Outcome::fail("reflection lists no service at all");
    }
    let mut notes = Vec::new();
    if served.len() == 1 {
        notes.push(format!(
            "only reflection {} answers; go-plugin serves v1 and v1alpha ({})",
            served[0],
            errors.join("; ")
        ));
    }
    let health_served = goplugin::health(channel, "plugin", ANSWER_TIMEOUT)
        .await
        .is_ok();
    if health_served && !listed.iter().any(|s| s == "grpc.health.v1.Health") {
        return Outcome::fail(format!(
            "reflection lists {} but not grpc.health.v1.Health, which it serves: go-plugin's \
             reflection lists every registered service",
            listed.join(", ")
        ));
    }
    let app: Vec<&String> = listed
        .iter()
        .filter(|s| !goplugin::is_go_plugin_service(s))
        .collect();
    if app.is_empty() {
        notes.push("it lists none but go-plugin's own services".to_owned());
    }
    Outcome::pass(format!(
        "reflection {} list{} {} services: {}",
        served.join(" and "),
        if served.len() == 1 { "s" } else { "" },
        listed.len(),
        listed.join(", ")
    ))
    .notes(notes)
}

/// `plugin.GRPCStdio/StreamStdio` is served and stays open.
pub(crate) async fn stdio(ctx: &Ctx) -> Outcome {
    if let Some(outcome) = ctx.netrpc_outcome() {
        return outcome;
    }
    let launched = match ctx.launch(|b| b).await {
        Ok(launched) => launched,
        Err(outcome) => return outcome,
    };
    let untestable = "not checked: that bytes the plugin writes after the handshake arrive (that \
                      needs a method that writes)";
    let channel = match launched.channel() {
        Ok(channel) => channel,
        Err(outcome) => return outcome,
    };
    let mut stream = match tokio::time::timeout(OPEN_FOR, goplugin::stream_stdio(channel)).await {
        // grpc-go sends the response headers with the first chunk: a stream without output
        // stays pending here, open.
        Err(_) => {
            return Outcome::pass(
                "StreamStdio is served and stays open (no output within 1 s, no end)",
            )
            .note(untestable);
        }
        Ok(Err(status)) if status.code() == Code::Unimplemented => {
            return Outcome::fail(
                "it serves no plugin.GRPCStdio: a Go host warns \"stdio service not available, \
                 stdout/stderr syncing unavailable\", and what the plugin writes to stdout or \
                 stderr after the handshake is lost",
            );
        }
        Ok(Err(status)) => {
            return Outcome::fail(format!("StreamStdio failed: {}", StatusError::from(status)));
        }
        Ok(Ok(stream)) => stream,
    };
    match tokio::time::timeout(OPEN_FOR, stream.message()).await {
        Err(_) => Outcome::pass("StreamStdio is served and stays open").note(untestable),
        Ok(Ok(Some(data))) => Outcome::pass(format!(
            "StreamStdio is served and carried {} bytes of output on channel {}",
            data.data.len(),
            data.channel
        ))
        .note(untestable),
        Ok(Ok(None)) => Outcome::fail(
            "StreamStdio ended at once: go-plugin keeps it open until the host cancels it, so \
             that what the plugin writes later reaches the host",
        ),
        Ok(Err(status)) => Outcome::fail(format!(
            "StreamStdio ended with an error at once: {}",
            StatusError::from(status)
        )),
    }
}

/// `plugin.GRPCBroker/StartStream` is served.
pub(crate) async fn broker(ctx: &Ctx) -> Outcome {
    if let Some(outcome) = ctx.netrpc_outcome() {
        return outcome;
    }
    let launched = match ctx.launch(|b| b).await {
        Ok(launched) => launched,
        Err(outcome) => return outcome,
    };
    let untestable = "not checked: a brokered connection itself (that needs an application \
                      method that passes a broker id, as go-plugin's bidirectional example)";
    let channel = match launched.channel() {
        Ok(channel) => channel,
        Err(outcome) => return outcome,
    };
    let outbound = futures_util::stream::pending::<ConnInfo>();
    let started = goplugin::start_stream(channel, outbound);
    let mut stream = match tokio::time::timeout(OPEN_FOR, started).await {
        Err(_) => {
            return Outcome::pass("StartStream is served and stays open").note(untestable);
        }
        Ok(Err(status)) if status.code() == Code::Unimplemented => {
            return Outcome::fail(
                "it serves no plugin.GRPCBroker: a Go host's StartStream fails (it goes on), and \
                 the plugin cannot broker connections, which applications such as go-plugin's \
                 bidirectional example and TFLint rulesets need",
            );
        }
        Ok(Err(status)) => {
            return Outcome::fail(format!("StartStream failed: {}", StatusError::from(status)));
        }
        Ok(Ok(stream)) => stream,
    };
    match tokio::time::timeout(OPEN_FOR, stream.message()).await {
        Err(_) | Ok(Ok(Some(_))) => {
            Outcome::pass("StartStream is served and stays open").note(untestable)
        }
        Ok(Ok(None)) => Outcome::fail(
            "StartStream ended at once: go-plugin keeps the broker stream open for the life of \
             the connection",
        ),
        Ok(Err(status)) => Outcome::fail(format!(
            "StartStream ended with an error at once: {}",
            StatusError::from(status)
        )),
    }
}

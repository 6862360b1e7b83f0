//! Field 7 of the handshake line: only when the host asks for broker multiplexing, and then a
//! truthful answer.

use plugwire_protocol::handshake::parse_go_bool;

use crate::check::context::Ctx;
use crate::check::outcome::Outcome;
use crate::check::session::{Env, FirstLine};

/// Field 7 only when `PLUGIN_MULTIPLEX_GRPC` is set; when it answers `true`, a multiplexing
/// host can talk to it.
pub(crate) async fn field(ctx: &Ctx) -> Outcome {
    let not_asked = match seventh_field(ctx, false).await {
        Ok(field) => field,
        Err(outcome) => return outcome,
    };
    if let Some(field) = not_asked {
        return Outcome::fail(format!(
            "without PLUGIN_MULTIPLEX_GRPC it printed a 7th field ({field:?}): go-plugin prints it \
             only when the host asks, since an older Go host splits the line into 6 fields and \
             would glue \"|{field}\" onto the certificate field"
        ));
    }
    if ctx.netrpc {
        return Outcome::pass(
            "no 7th field without PLUGIN_MULTIPLEX_GRPC; broker multiplexing itself is gRPC's (a \
             netrpc plugin always multiplexes over yamux)",
        );
    }
    let asked = match seventh_field(ctx, true).await {
        Ok(field) => field,
        Err(outcome) => return outcome,
    };
    let Some(field) = asked else {
        return Outcome::pass(
            "no 7th field without PLUGIN_MULTIPLEX_GRPC; with it, still none: it does not \
             multiplex, and Go hosts that ask report ErrGRPCBrokerMuxNotSupported (multiplexing \
             is optional)",
        );
    };
    match parse_go_bool(&field) {
        None => Outcome::fail(format!(
            "with PLUGIN_MULTIPLEX_GRPC=true its 7th field is {field:?}, which Go's \
             strconv.ParseBool does not read: Go hosts refuse the line"
        )),
        Some(false) => Outcome::pass(
            "no 7th field without PLUGIN_MULTIPLEX_GRPC; with it, `false`: it does not multiplex, \
             and says so",
        ),
        Some(true) => match ctx.launch(|b| b.multiplex(true)).await {
            Err(outcome) => Outcome::fail(format!(
                "it answers `true` to PLUGIN_MULTIPLEX_GRPC, but a host that multiplexes cannot \
                 use it: {}",
                outcome.reason
            )),
            Ok(launched) => match launched.plugin.ping().await {
                Ok(()) => Outcome::pass(
                    "no 7th field without PLUGIN_MULTIPLEX_GRPC; with it, `true`, and a host \
                     reaches it over a yamux session",
                ),
                Err(e) => Outcome::fail(format!(
                    "it answers `true` to PLUGIN_MULTIPLEX_GRPC, but over the multiplexed \
                     connection it does not answer: {e}"
                )),
            },
        },
    }
}

/// The raw 7th field of the line printed with or without `PLUGIN_MULTIPLEX_GRPC=true`.
async fn seventh_field(ctx: &Ctx, multiplex: bool) -> Result<Option<String>, Outcome> {
    let env = Env {
        multiplex,
        ..ctx.spec.env()
    };
    let mut session = ctx.start(&env).await?;
    let line = session.first_line(ctx.timeout()).await;
    session.kill().await;
    match line {
        FirstLine::Line(raw) | FirstLine::Unterminated(raw) => {
            let text = String::from_utf8_lossy(&raw);
            Ok(text.trim().split('|').nth(6).map(str::to_owned))
        }
        _ => Err(Outcome::fail(format!(
            "{} it printed no handshake line (see handshake-line)",
            if multiplex {
                "with PLUGIN_MULTIPLEX_GRPC=true"
            } else {
                "without PLUGIN_MULTIPLEX_GRPC"
            }
        ))),
    }
}

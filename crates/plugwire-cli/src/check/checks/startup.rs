//! The start of a plugin: the cookie, version negotiation, the handshake line.

use std::collections::BTreeSet;
use std::time::Duration;

use plugwire_protocol::env::NOT_LAUNCHED_BY_HOST_MESSAGE;
use plugwire_protocol::{Address, HandshakeLine, MagicCookie, Network};

use crate::check::context::{Ctx, no_line};
use crate::check::outcome::Outcome;
use crate::check::session::{Env, FirstLine};
use crate::diagnose::{describe_status, list};

/// A version no plugin has: offered alone, it matches nothing.
const NO_SUCH_VERSION: u32 = 999;

/// Refuses to run without its cookie, and with a wrong one.
pub(crate) async fn cookie(ctx: &Ctx) -> Outcome {
    let missing = Env {
        cookie: None,
        ..ctx.spec.env()
    };
    let wrong = Env {
        cookie: Some(MagicCookie::new(
            ctx.spec.cookie.key(),
            format!("not-{}", ctx.spec.cookie.value()),
        )),
        ..ctx.spec.env()
    };
    let mut notes = Vec::new();
    for (env, case) in [
        (missing, "without the cookie"),
        (wrong, "with a wrong cookie value"),
    ] {
        match refusal(ctx, &env, case).await {
            Ok(note) => notes.extend(note),
            Err(failure) => return failure,
        }
    }
    Outcome::pass(
        "exited with status 1 and go-plugin's \"This binary is a plugin\" message, both without \
         the cookie and with a wrong value",
    )
    .notes(notes)
}

/// Runs the plugin with a cookie it must refuse; `Ok(note)` when it did.
async fn refusal(ctx: &Ctx, env: &Env, case: &str) -> Result<Option<String>, Outcome> {
    let mut session = ctx.start(env).await?;
    let line = session.first_line(ctx.timeout()).await;
    if let FirstLine::Line(raw) | FirstLine::Unterminated(raw) = &line {
        session.kill().await;
        return Err(Outcome::fail(format!(
            "it started {case}: it printed {:?} on stdout; go-plugin plugins compare the cookie \
             variable with their own value and exit",
            String::from_utf8_lossy(raw)
        )));
    }
    let Some(status) = session.wait(ctx.timeout()).await else {
        session.kill().await;
        return Err(Outcome::fail(format!(
            "it kept running {case} without printing anything (killed after {})",
            humantime::format_duration(ctx.timeout())
        )));
    };
    session.drain_stderr().await;
    let stderr = session.stderr();
    let first = NOT_LAUNCHED_BY_HOST_MESSAGE
        .lines()
        .next()
        .unwrap_or_default();
    let whole = NOT_LAUNCHED_BY_HOST_MESSAGE
        .lines()
        .all(|line| stderr.contains(line));
    let said = stderr.tail_lines(2).join(" / ");
    match (status.code(), stderr.contains(first)) {
        (Some(1), true) if whole => Ok(None),
        (Some(1), true) => Ok(Some(format!(
            "{case}, it printed only the first line of go-plugin's message"
        ))),
        (Some(1), false) => Err(Outcome::fail(format!(
            "{case} it exited 1, but without go-plugin's message ({}); hosts and tools recognise \
             \"{first}\" to tell the user to run the host instead",
            if said.is_empty() {
                "it printed nothing".to_owned()
            } else {
                format!("it printed {said:?}")
            }
        ))),
        (_, true) => Err(Outcome::fail(format!(
            "{case} it printed go-plugin's message but ended with {}, not exit status 1",
            describe_status(status)
        ))),
        (_, false) => Err(Outcome::fail(format!(
            "{case} it ended with {} and {}",
            describe_status(status),
            if said.is_empty() {
                "printed nothing".to_owned()
            } else {
                format!("printed {said:?}")
            }
        ))),
    }
}

/// The version a run offered `versions` answers, or why there is none.
async fn answer(ctx: &Ctx, versions: &[u32]) -> Result<HandshakeLine, Outcome> {
    let env = Env {
        versions: versions.to_vec(),
        ..ctx.spec.env()
    };
    let mut started = ctx.start_line(&env).await.map_err(|outcome| {
        Outcome::fail(format!("offered {}: {}", list(versions), outcome.reason))
    })?;
    started.session.kill().await;
    Ok(started.line)
}

/// The highest common version; the lowest when none matches.
pub(crate) async fn negotiation(ctx: &Ctx) -> Outcome {
    let offered = ctx.spec.versions.clone();
    let chosen = match answer(ctx, &offered).await {
        Ok(line) => line.app_version,
        Err(outcome) => return outcome,
    };
    let mut notes = Vec::new();
    // Which offered versions does it have? Offered alone, a version it has comes back.
    let mut supported = BTreeSet::new();
    if offered.contains(&chosen) {
        supported.insert(chosen);
    }
    for &version in offered.iter().filter(|v| **v != chosen) {
        match answer(ctx, &[version]).await {
            Ok(line) if line.app_version == version => {
                supported.insert(version);
            }
            Ok(_) => {}
            Err(outcome) => return outcome,
        }
    }
    if offered.len() > 1 {
        let reversed: Vec<u32> = offered.iter().rev().copied().collect();
        match answer(ctx, &reversed).await {
            Ok(line) if line.app_version != chosen => {
                return Outcome::fail(format!(
                    "offered {} it answered {chosen}, offered {} it answered {}: the choice must \
                     not depend on the order (a Go host sends its versions in random map order)",
                    list(&offered),
                    list(&reversed),
                    line.app_version
                ));
            }
            Ok(_) => {}
            Err(outcome) => return outcome,
        }
    }
    let lowest = match answer(ctx, &[NO_SUCH_VERSION]).await {
        Ok(line) => line.app_version,
        Err(outcome) => return outcome,
    };
    if let Some(higher) = supported.iter().rev().find(|v| **v > chosen) {
        return Outcome::fail(format!(
            "offered {} it answered {chosen}, though it has {higher} (offered {higher} alone, it \
             answers {higher}): go-plugin picks the highest version both sides have",
            list(&offered)
        ));
    }
    if !offered.contains(&chosen) && !supported.is_empty() {
        return Outcome::fail(format!(
            "offered {} it answered {chosen}, which was not offered, though it has {}",
            list(&offered),
            supported
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    if lowest == NO_SUCH_VERSION {
        return Outcome::fail(format!(
            "offered only {NO_SUCH_VERSION}, a version it cannot have, it answered \
             {NO_SUCH_VERSION}: it echoes the host instead of negotiating"
        ));
    }
    let known_low = supported
        .iter()
        .next()
        .copied()
        .unwrap_or(chosen)
        .min(chosen);
    if lowest > known_low {
        return Outcome::fail(format!(
            "offered only {NO_SUCH_VERSION} it answered {lowest}, though it has {known_low}: with no \
             version in common go-plugin answers its lowest (the host then reports the mismatch \
             with both versions)"
        ));
    }
    if supported.len() <= 1 {
        notes.push(format!(
            "of the offered versions it has only {chosen}: offer more with --versions to check the \
             choice between several"
        ));
    }
    Outcome::pass(format!(
        "offered {} it answered {chosen}, the highest it has; offered only {NO_SUCH_VERSION} it \
         answered {lowest}, its lowest",
        list(&offered)
    ))
    .notes(notes)
}

/// A well-formed handshake line, and an address that accepts connections.
pub(crate) async fn handshake_line(ctx: &Ctx) -> Outcome {
    let mut session = match ctx.start(&ctx.spec.env()).await {
        Ok(session) => session,
        Err(outcome) => return outcome,
    };
    let first = session.first_line(ctx.timeout()).await;
    let after = session.line_after().unwrap_or_default();
    let (raw, terminated) = match first {
        FirstLine::Line(raw) => (raw, true),
        FirstLine::Unterminated(raw) => (raw, false),
        other => {
            let outcome = no_line(&other, &mut session, ctx.timeout()).await;
            session.kill().await;
            return outcome;
        }
    };
    let outcome = match judge_line(&raw, terminated, ctx).await {
        Ok(pass) => {
            let pass = pass.note(format!("printed {} after the start", millis(after)));
            match session.extra_stdout() {
                0 => pass,
                bytes => pass.note(format!(
                    "it wrote {bytes} more bytes to stdout after the line: go-plugin hosts drop                      them (a plugin's output reaches the host over GRPCStdio)"
                )),
            }
        }
        Err(failure) => failure,
    };
    session.kill().await;
    outcome
}

async fn judge_line(raw: &[u8], terminated: bool, ctx: &Ctx) -> Result<Outcome, Outcome> {
    let text = std::str::from_utf8(raw)
        .map_err(|_| Outcome::fail("its handshake line is not valid UTF-8"))?;
    let line = HandshakeLine::parse(text).map_err(|error| {
        Outcome::fail(format!(
            "its first stdout line, {:?}, is refused: {error}; go-plugin hosts take the first \
             line on stdout as the handshake, so nothing may be printed before it",
            crate::capture::truncate(text, 120)
        ))
    })?;
    let mut notes = Vec::new();
    let fields = text.trim().split('|').count();
    if fields < 6 {
        notes.push(format!(
            "{fields} fields: Go hosts accept it, but go-plugin always prints 6 (an empty 6th when \
             there is no certificate)"
        ));
    }
    if text != text.trim() {
        notes.push("it has surrounding whitespace or a \\r (Go hosts trim it)".to_owned());
    }
    if !terminated {
        notes.push("stdout ended right after it, without a newline".to_owned());
    }
    if line.server_cert.is_some() {
        notes.push(
            "it carries a certificate although AutoMTLS was not asked (no PLUGIN_CLIENT_CERT)"
                .to_owned(),
        );
    }
    if line.multiplex.is_some() {
        notes.push(
            "it has a 7th field although multiplexing was not asked (see multiplex-field)"
                .to_owned(),
        );
    }
    if !ctx.spec.versions.contains(&line.app_version) {
        notes.push(format!(
            "its version {} was not offered (see negotiation)",
            line.app_version
        ));
    }
    let address = Address::new(line.network, &line.address);
    if let Address::Unix(path) = &address {
        use std::os::unix::fs::FileTypeExt as _;
        match tokio::fs::symlink_metadata(path).await {
            Ok(meta) if meta.file_type().is_socket() => {}
            Ok(_) => {
                return Err(Outcome::fail(format!(
                    "its address {} is not a unix socket",
                    path.display()
                )));
            }
            Err(e) => {
                return Err(Outcome::fail(format!(
                    "its address {} does not exist ({e}): it must listen before printing the line",
                    path.display()
                )));
            }
        }
    }
    if line.network == Network::Tcp {
        notes.push("it listens on TCP: go-plugin does so on Windows only".to_owned());
    }
    match tokio::time::timeout(
        Duration::from_secs(3),
        crate::check::channel::dial(&address),
    )
    .await
    {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => {
            return Err(Outcome::fail(format!(
                "its address {address} does not accept connections: {e}"
            )));
        }
        Err(_) => {
            return Err(Outcome::fail(format!(
                "connecting to its address {address} did not complete within 3 s"
            )));
        }
    }
    Ok(Outcome::pass(format!(
        "{}, and {address} accepts connections",
        crate::inspect::line_text(&line)
    ))
    .notes(notes))
}

pub(crate) fn millis(duration: Duration) -> String {
    let ms = duration.as_secs_f64() * 1000.0;
    if ms >= 1000.0 {
        format!("{:.1} s", ms / 1000.0)
    } else {
        format!("{ms:.1} ms")
    }
}

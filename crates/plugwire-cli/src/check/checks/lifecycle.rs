//! How a plugin ends: on `Shutdown`, when its host goes away, and not on SIGINT.

use std::os::unix::process::ExitStatusExt as _;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use plugwire_protocol::{Address, Protocol};
use tonic::Code;

use crate::check::channel;
use crate::check::checks::startup::millis;
use crate::check::context::{ANSWER_TIMEOUT, Ctx};
use crate::check::outcome::Outcome;
use crate::diagnose::describe_status;
use crate::goplugin;

/// go-plugin's grace period between `Shutdown` and SIGKILL.
const GRACE: Duration = Duration::from_secs(2);
/// How long a plugin has to notice that its host is gone.
const HOST_GONE_WAIT: Duration = Duration::from_secs(3);

/// `GRPCController/Shutdown` makes it exit within 2 s.
pub(crate) async fn shutdown(ctx: &Ctx) -> Outcome {
    let launched = match ctx.launch(|b| b).await {
        Ok(launched) => launched,
        Err(outcome) => return outcome,
    };
    let plugin = &launched.plugin;
    if ctx.netrpc {
        // netrpc's graceful stop is Control.Quit, which the host's kill sends.
        let asked = Instant::now();
        let report = plugin.kill().await;
        let status = report
            .status
            .map_or_else(|| "status unknown".to_owned(), describe_status);
        return if report.graceful {
            Outcome::pass(format!(
                "exited ({status}) {} after Control.Quit (netrpc's GRPCController/Shutdown)",
                millis(asked.elapsed())
            ))
        } else {
            Outcome::fail(format!(
                "it did not exit within 2 s of Control.Quit and was killed ({status})"
            ))
        };
    }
    let channel = match launched.channel() {
        Ok(channel) => channel,
        Err(outcome) => return outcome,
    };
    // As a Go host's Kill(): the broker first (its StartStream ends), then Shutdown.
    if let Ok(broker) = plugin.broker() {
        broker.close();
    }
    let asked = Instant::now();
    let reply = tokio::time::timeout(GRACE, goplugin::shutdown(channel)).await;
    if let Ok(Err(status)) = &reply
        && status.code() == Code::Unimplemented
    {
        plugin.kill().await;
        return Outcome::fail(
            "it serves no plugin.GRPCController: a Go host's Kill() then waits 2 s and SIGKILLs \
             it (\"plugin failed to exit gracefully\"), so it never gets to clean up",
        );
    }
    let remaining = GRACE.saturating_sub(asked.elapsed());
    let exited = tokio::time::timeout(remaining, plugin.wait()).await;
    let took = asked.elapsed();
    let outcome = match exited {
        Ok(status) => {
            let status = status.map_or_else(|| "status unknown".to_owned(), describe_status);
            let outcome = Outcome::pass(format!(
                "exited ({status}) {} after GRPCController/Shutdown",
                millis(took)
            ));
            match reply {
                Ok(Ok(())) => outcome,
                Ok(Err(status)) => outcome.note(format!(
                    "the Shutdown call itself failed ({}), as it does with go-plugin, whose \
                     server stops before answering; hosts ignore it",
                    crate::dyncall::code_name(status.code())
                )),
                Err(_) => outcome.note("the Shutdown call did not return, but the plugin exited"),
            }
        }
        Err(_) => Outcome::fail(format!(
            "still running {} after GRPCController/Shutdown: a Go host SIGKILLs it at that point",
            millis(GRACE)
        )),
    };
    plugin.kill().await;
    outcome
}

/// It exits by itself once its host is gone.
pub(crate) async fn host_gone(ctx: &Ctx) -> Outcome {
    let mut started = match ctx.start_line(&ctx.spec.env()).await {
        Ok(started) => started,
        Err(outcome) => return outcome,
    };
    if started.line.protocol == Protocol::Grpc {
        // Be a host first: connect and get an answer, then go away.
        let address = Address::new(started.line.network, &started.line.address);
        if let Ok(channel) = channel::connect(&address, None, ANSWER_TIMEOUT).await {
            let _ = goplugin::health(channel, "plugin", ANSWER_TIMEOUT).await;
        }
    }
    let gone = Instant::now();
    started.session.close_pipes();
    if let Some(status) = started.session.wait(HOST_GONE_WAIT).await {
        return Outcome::pass(format!(
            "exited ({}) {} after its host went away (its end of the plugin's stdout pipe closed)",
            describe_status(status),
            millis(gone.elapsed())
        ));
    }
    // go-plugin's plugins do not notice; they die at their next write to stdout or stderr. A
    // Go plugin logs every SIGINT at trace level: that is such a write.
    let _ = started.session.signal(Signal::SIGINT);
    let outcome = match started.session.wait(GRACE).await {
        Some(status) if status.signal() == Some(Signal::SIGPIPE as i32) => {
            Outcome::deviation(format!(
                "it did not notice that its host went away and was still running {} later, as \
                 go-plugin's own plugins; it died of SIGPIPE at its next write to stderr (here \
                 the log line of a SIGINT)",
                millis(HOST_GONE_WAIT)
            ))
        }
        Some(status) => Outcome::fail(format!(
            "it did not exit when its host went away ({} later it was still running); it ended \
             only on SIGINT ({})",
            millis(HOST_GONE_WAIT),
            describe_status(status)
        )),
        None => Outcome::fail(format!(
            "still running {} after its host went away, and after a SIGINT, whose log line kills \
             a go-plugin plugin with SIGPIPE: it would outlive its host indefinitely",
            millis(HOST_GONE_WAIT + GRACE)
        )),
    };
    started.session.kill().await;
    outcome
}

/// It ignores SIGINT.
pub(crate) async fn sigint(ctx: &Ctx) -> Outcome {
    let mut started = match ctx.start_line(&ctx.spec.env()).await {
        Ok(started) => started,
        Err(outcome) => return outcome,
    };
    let address = Address::new(started.line.network, &started.line.address);
    let grpc = started.line.protocol == Protocol::Grpc;
    // Be its host first: once it has answered, it is past its start (go-plugin sets up its
    // SIGINT handling right after printing the handshake line, before serving).
    let channel = if grpc {
        match channel::connect(&address, None, ANSWER_TIMEOUT).await {
            Ok(channel) => {
                let _ = goplugin::health(channel.clone(), "plugin", ANSWER_TIMEOUT).await;
                Some(channel)
            }
            Err(_) => None,
        }
    } else {
        tokio::time::sleep(Duration::from_millis(200)).await;
        None
    };
    if let Err(e) = started.session.signal(Signal::SIGINT) {
        started.session.kill().await;
        return Outcome::fail(format!("could not signal the plugin: {e}"));
    }
    let wait = Duration::from_millis(500);
    let outcome = match started.session.wait(wait).await {
        Some(status) => Outcome::fail(format!(
            "SIGINT ended it ({}): a Ctrl-C in the host's terminal reaches the whole process \
             group, and go-plugin plugins ignore it so that their host decides when they stop",
            describe_status(status)
        )),
        None => match channel {
            Some(channel) => match goplugin::health(channel, "plugin", ANSWER_TIMEOUT).await {
                Ok(_) => Outcome::pass(format!(
                    "still running and answering {} after SIGINT",
                    millis(wait)
                )),
                Err(status) => Outcome::fail(format!(
                    "still running after SIGINT, but it stopped answering: {}",
                    crate::dyncall::StatusError::from(status)
                )),
            },
            None => Outcome::pass(format!("still running {} after SIGINT", millis(wait))),
        },
    };
    started.session.kill().await;
    outcome
}

//! The interop matrix: {Go host, Rust host} x {Go plugin, Rust plugin} x scenario, against real
//! go-plugin v1.8.0 binaries. Go host x Go plugin is the control: every expectation here holds for
//! go-plugin itself.

use plugwire_interop::harness::{Expect, Fixtures, Lang, Outcome, Run, verdict};
use serde_json::json;

fn fixtures() -> Fixtures {
    Fixtures::new(
        env!("CARGO_BIN_EXE_plugwire-fixture-host"),
        env!("CARGO_BIN_EXE_plugwire-fixture-plugin"),
    )
}

/// How a scenario ends for the plugin.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Ending {
    /// The plugin is shut down gracefully: it removes its own socket.
    Graceful,
    /// The plugin dies or is SIGKILLed: a Go host leaves its socket file behind (go-plugin
    /// behaviour), a Rust host removes it.
    Killed,
}

/// Runs one cell and checks the expectations every cell shares plus the scenario's own.
async fn cell(
    (host, plugin): (Lang, Lang),
    (scenario, mode, ending): (&str, &str, Ending),
    customize: impl FnOnce(Run) -> Run,
    check: impl FnOnce(Lang, &Outcome, &mut Expect),
) {
    let f = fixtures();
    let run = customize(Run::host(&f.host(host), &f.plugin(plugin), mode, scenario));
    let outcome = run.run().await;
    let mut expect = Expect::default();
    expect
        .that(outcome.success(), || {
            "the host fixture did not finish the scenario".into()
        })
        .that(!outcome.leaked, || "a process outlived its host".into());
    if host == Lang::Rust || ending == Ending::Graceful {
        expect.that(outcome.leftovers.is_empty(), || {
            format!("files left behind: {:?}", outcome.leftovers)
        });
    }
    check(host, &outcome, &mut expect);
    verdict(
        &format!("{host}-host/{plugin}-plugin/{scenario}"),
        &outcome,
        expect.result(),
    );
}

/// Generates one test per host/plugin pairing for a scenario function.
macro_rules! pairings {
    ($scenario:ident) => {
        pairings!($scenario: go_host_go_plugin(Go, Go), go_host_rust_plugin(Go, Rust),
            rust_host_go_plugin(Rust, Go), rust_host_rust_plugin(Rust, Rust));
    };
    ($scenario:ident: $($name:ident($host:ident, $plugin:ident)),+) => {
        mod $scenario {
            use super::*;
            $(
                #[tokio::test]
                async fn $name() {
                    super::$scenario(Lang::$host, Lang::$plugin).await;
                }
            )+
        }
    };
}

fn stopped_gracefully(outcome: &Outcome, e: &mut Expect) {
    e.eq(outcome, "graceful", json!(true))
        .eq(outcome, "exit_ok", json!(true))
        .eq(outcome, "exited", json!(true));
}

async fn kv(host: Lang, plugin: Lang) {
    cell(
        (host, plugin),
        ("kv", "serve", Ending::Graceful),
        |r| r,
        |_, o, e| {
            e.eq(o, "version", json!(1))
                .eq(o, "get", json!("world"))
                .eq(o, "double", json!(42))
                .eq(o, "stream", json!([21, 22, 23, 24, 25]));
            stopped_gracefully(o, e);
        },
    )
    .await;
}
pairings!(kv);

/// Host offers 1, 3, 4; the plugin has 2, 3, 5: both must settle on 3.
async fn negotiate(host: Lang, plugin: Lang) {
    cell(
        (host, plugin),
        ("negotiate", "versioned", Ending::Graceful),
        |r| r,
        |_, o, e| {
            e.eq(o, "version", json!(3)).eq(o, "double", json!(8));
            stopped_gracefully(o, e);
        },
    )
    .await;
}
pairings!(negotiate);

/// Host offers 1, the plugin only has 2: a clean error naming both, and the process is gone.
async fn mismatch(host: Lang, plugin: Lang) {
    cell(
        (host, plugin),
        ("mismatch", "mismatch", Ending::Killed),
        |r| r,
        |_, o, e| {
            e.contains(
                o,
                "error",
                "incompatible API version with plugin. Plugin version: 2, Client versions: [1]",
            )
            .eq(o, "exited", json!(true));
        },
    )
    .await;
}
pairings!(mismatch);

fn cookie_refused(host: Lang, o: &Outcome, e: &mut Expect) {
    let error = o.text("error");
    // A Go host reports whichever it notices first: stdout closing or the process exiting.
    let expected = match host {
        Lang::Rust => error.contains("plugin exited before we could connect (exit status 1)"),
        Lang::Go => {
            error.contains("plugin exited before we could connect")
                || error.contains("Failed to read any lines from plugin's stdout")
        }
    };
    e.that(expected, || format!("unexpected error {error:?}"))
        .contains(
            o,
            "stderr",
            "This binary is a plugin. These are not meant to be executed directly.",
        )
        .eq(o, "exit_status", json!(1))
        .eq(o, "exited", json!(true));
}

async fn cookie_wrong(host: Lang, plugin: Lang) {
    cell(
        (host, plugin),
        ("cookie-wrong", "serve", Ending::Killed),
        |r| r,
        cookie_refused,
    )
    .await;
}
pairings!(cookie_wrong);

async fn cookie_missing(host: Lang, plugin: Lang) {
    cell(
        (host, plugin),
        ("cookie-missing", "serve", Ending::Killed),
        |r| r,
        cookie_refused,
    )
    .await;
}
pairings!(cookie_missing);

async fn ping(host: Lang, plugin: Lang) {
    cell(
        (host, plugin),
        ("ping", "serve", Ending::Graceful),
        |r| r,
        |_, o, e| {
            e.eq(o, "ping", json!("ok"));
            stopped_gracefully(o, e);
            let after = o.text("ping_after_kill");
            e.that(after.starts_with("error"), || {
                format!("ping after kill: {after:?}")
            });
        },
    )
    .await;
}
pairings!(ping);

/// The plugin dies in the middle of a call: the call fails fast and the exit is observed.
async fn crash(host: Lang, plugin: Lang) {
    cell(
        (host, plugin),
        ("crash", "crash", Ending::Killed),
        |r| r,
        |_, o, e| {
            let call = o.text("call");
            e.that(call.starts_with("error"), || format!("call: {call:?}"))
                .eq(o, "exit_observed", json!(true))
                .eq(o, "exited", json!(true));
            let ms = o.get("elapsed_ms").as_u64().unwrap_or(u64::MAX);
            e.that(ms < 5000, || format!("crash noticed after {ms} ms"));
        },
    )
    .await;
}
pairings!(crash);

/// A plugin that never prints its handshake line: the 500 ms start timeout fires.
async fn start_timeout(host: Lang, plugin: Lang) {
    cell(
        (host, plugin),
        ("start-timeout", "never", Ending::Killed),
        |r| r,
        |_, o, e| {
            e.contains(o, "error", "timeout while waiting for plugin to start")
                .eq(o, "exited", json!(true));
            let ms = o.get("elapsed_ms").as_u64().unwrap_or(u64::MAX);
            e.that((450..5000).contains(&ms), || {
                format!("timed out after {ms} ms")
            });
        },
    )
    .await;
}
pairings!(start_timeout);

/// The plugin reads the host's stdin.
async fn stdin(host: Lang, plugin: Lang) {
    let input = "plugwire stdin check\n";
    cell(
        (host, plugin),
        ("stdin", "stdin", Ending::Graceful),
        |mut r| {
            r.stdin = Some(input.as_bytes().to_vec());
            r
        },
        |_, o, e| {
            e.eq(o, "stdin", json!(input));
            stopped_gracefully(o, e);
        },
    )
    .await;
}
pairings!(stdin);

/// A plugin configured for TCP (Go plugins use TCP only on Windows, so only the Rust plugin).
async fn tcp(host: Lang, plugin: Lang) {
    cell(
        (host, plugin),
        ("tcp", "tcp", Ending::Graceful),
        |r| r,
        |_, o, e| {
            e.eq(o, "network", json!("tcp")).eq(o, "double", json!(42));
            stopped_gracefully(o, e);
        },
    )
    .await;
}
pairings!(tcp: go_host_rust_plugin(Go, Rust), rust_host_rust_plugin(Rust, Rust));

/// Run without its host, a plugin prints go-plugin's message on stderr, nothing on stdout, and
/// exits 1.
async fn run_without_host(plugin: Lang) {
    let f = fixtures();
    let outcome = Run::command(f.plugin(plugin), &["serve"]).run().await;
    let mut e = Expect::default();
    e.that(outcome.status.and_then(|s| s.code()) == Some(1), || {
        "exit status is not 1".into()
    })
    .that(outcome.stdout.is_empty(), || {
        "something was printed on stdout".into()
    })
    .that(
        outcome.stderr
            == "This binary is a plugin. These are not meant to be executed directly.\n\
                    Please execute the program that consumes these plugins, which will\n\
                    load any plugins automatically\n",
        || "stderr is not go-plugin's message".into(),
    );
    verdict(
        &format!("{plugin}-plugin/run-without-host"),
        &outcome,
        e.result(),
    );
}

mod without_host {
    use super::*;
    #[tokio::test]
    async fn go_plugin() {
        run_without_host(Lang::Go).await;
    }
    #[tokio::test]
    async fn rust_plugin() {
        run_without_host(Lang::Rust).await;
    }
}

/// Dropping a Rust host's plugin handle without `kill` still ends the process.
async fn drop(host: Lang, plugin: Lang) {
    cell(
        (host, plugin),
        ("drop", "serve", Ending::Killed),
        |r| r,
        |_, o, e| {
            e.eq(o, "exited", json!(true))
                .eq(o, "pid_alive", json!(false));
        },
    )
    .await;
}
pairings!(drop: rust_host_go_plugin(Rust, Go), rust_host_rust_plugin(Rust, Rust));

/// `PLUGIN_UNIX_SOCKET_DIR` puts the plugin's socket where the host asked.
async fn socket_dir(host: Lang, plugin: Lang) {
    cell(
        (host, plugin),
        ("socket-dir", "serve", Ending::Graceful),
        |r| r,
        |_, o, e| {
            e.eq(o, "socket_in_dir", json!(true));
            stopped_gracefully(o, e);
        },
    )
    .await;
}
pairings!(socket_dir: rust_host_go_plugin(Rust, Go), rust_host_rust_plugin(Rust, Rust));

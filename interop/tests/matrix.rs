//! The interop matrix: {Go host, Rust host} x {Go plugin, Rust plugin} x {plaintext, AutoMTLS} x
//! scenario, against real go-plugin v1.8.0 binaries, with the Go fixtures built both with the
//! grpc-go go-plugin v1.8.0 pins and with a current grpc-go. Go host x Go plugin is the control:
//! every expectation here holds for go-plugin itself.

// Needs the Go fixtures; without them `needs_go.rs` says what did not run.
#![cfg(not(plugwire_no_go))]

use plugwire_interop::harness::{
    DebugPlugin, Expect, Fixtures, GoGrpc, Lang, Outcome, Run, Tls, verdict,
};
use serde_json::json;
use std::path::Path;
use std::time::Duration;

fn fixtures() -> Fixtures {
    Fixtures::new(
        env!("CARGO_BIN_EXE_plugwire-fixture-host"),
        env!("CARGO_BIN_EXE_plugwire-fixture-plugin"),
    )
}

/// One cell's coordinates, scenario aside.
#[derive(Clone, Copy)]
struct Pairing {
    host: Lang,
    plugin: Lang,
    grpc: GoGrpc,
    tls: Tls,
    /// gRPC broker multiplexing.
    mux: bool,
}

impl Pairing {
    fn id(&self, scenario: &str) -> String {
        let grpc = match self.grpc {
            GoGrpc::Pinned => "",
            GoGrpc::Current => "/grpc-current",
        };
        let tls = match self.tls {
            Tls::Plain => "",
            Tls::AutoMtls => "/mtls",
            Tls::Manual => "/tls",
        };
        let mux = if self.mux { "/mux" } else { "" };
        format!(
            "{}-host/{}-plugin{grpc}/{scenario}{tls}{mux}",
            self.host, self.plugin
        )
    }
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
    p: Pairing,
    (scenario, mode, ending): (&str, &str, Ending),
    customize: impl FnOnce(Run) -> Run,
    check: impl FnOnce(Lang, &Outcome, &mut Expect),
) {
    let f = fixtures();
    let run = Run::host(
        &f.host(p.host, p.grpc),
        &f.plugin(p.plugin, p.grpc),
        mode,
        scenario,
    );
    let mut run = run.tls(p.tls);
    if p.mux {
        run.args.push("-mux".into());
    }
    let outcome = customize(run).run().await;
    let mut expect = Expect::default();
    expect
        .that(outcome.success(), || {
            "the host fixture did not finish the scenario".into()
        })
        .that(!outcome.leaked, || "a process outlived its host".into());
    // go-plugin v1.8.0 plugins in multiplexed mode never remove their socket file (Serve closes
    // the yamux muxer, not the listener that deletes the file); a Go host leaves it there.
    // And a go-plugin v1.8.0 plugin that serves a brokered listener (plain mode) can exit on
    // Shutdown while that listener's GracefulStop still waits for the host's connection to
    // close: its socket file stays behind too. A Rust host removes both kinds.
    let plugin_serves_brokered = matches!(scenario, "bidirectional" | "dial-twice");
    let go_leaves_socket =
        p.host == Lang::Go && p.plugin == Lang::Go && (p.mux || plugin_serves_brokered);
    if p.host == Lang::Rust || (ending == Ending::Graceful && !go_leaves_socket) {
        expect.that(outcome.leftovers.is_empty(), || {
            format!("files left behind: {:?}", outcome.leftovers)
        });
    }
    check(p.host, &outcome, &mut expect);
    verdict(&p.id(scenario), &outcome, expect.result());
}

/// Generates, for a scenario function, one test per pairing and mode:
/// `<scenario>::<mode>::<host>_<plugin>[_grpc_current]`, where the modes are `plain` and `mtls`,
/// plus `mux` and `mux_mtls` (broker multiplexing) with `all_modes`.
macro_rules! pairings {
    ($scenario:ident) => {
        pairings!(@modes $scenario: [plain = (Plain, false), mtls = (AutoMtls, false)]: ALL);
    };
    ($scenario:ident: all_modes) => {
        pairings!(@modes $scenario: [plain = (Plain, false), mtls = (AutoMtls, false),
            mux = (Plain, true), mux_mtls = (AutoMtls, true)]: ALL);
    };
    ($scenario:ident: plain) => {
        pairings!(@modes $scenario: [plain = (Plain, false)]: ALL);
    };
    ($scenario:ident: plain_and_mux) => {
        pairings!(@modes $scenario: [plain = (Plain, false), mux = (Plain, true)]: ALL);
    };
    // netrpc has no grpc-go in it: the pinned Go fixtures only.
    ($scenario:ident: netrpc) => {
        pairings!(@modes $scenario: [plain = (Plain, false), mtls = (AutoMtls, false)]: NETRPC);
    };
    ($scenario:ident: netrpc_plain) => {
        pairings!(@modes $scenario: [plain = (Plain, false)]: NETRPC);
    };
    (@modes $scenario:ident: $modes:tt: NETRPC) => {
        pairings!(@modes $scenario: $modes: [
            go_go = (Go, Go, Pinned), go_rust = (Go, Rust, Pinned),
            rust_go = (Rust, Go, Pinned), rust_rust = (Rust, Rust, Pinned)]);
    };
    ($scenario:ident: rust_plugin) => {
        pairings!(@modes $scenario: [plain = (Plain, false), mtls = (AutoMtls, false)]: [
            go_rust = (Go, Rust, Pinned), go_rust_grpc_current = (Go, Rust, Current),
            rust_rust = (Rust, Rust, Pinned)]);
    };
    ($scenario:ident: rust_host) => {
        pairings!(@modes $scenario: [plain = (Plain, false), mtls = (AutoMtls, false)]: [
            rust_go = (Rust, Go, Pinned), rust_go_grpc_current = (Rust, Go, Current),
            rust_rust = (Rust, Rust, Pinned)]);
    };
    (@modes $scenario:ident: $modes:tt: ALL) => {
        pairings!(@modes $scenario: $modes: [
            go_go = (Go, Go, Pinned), go_go_grpc_current = (Go, Go, Current),
            go_rust = (Go, Rust, Pinned), go_rust_grpc_current = (Go, Rust, Current),
            rust_go = (Rust, Go, Pinned), rust_go_grpc_current = (Rust, Go, Current),
            rust_rust = (Rust, Rust, Pinned)]);
    };
    (@modes $scenario:ident: [$($mode:ident = ($tls:ident, $mux:literal)),+]: $cells:tt) => {
        mod $scenario {
            $(pairings!(@cells $scenario, $mode, $tls, $mux: $cells);)+
        }
    };
    (@cells $scenario:ident, $mode:ident, $tls:ident, $mux:literal:
        [$($name:ident = ($host:ident, $plugin:ident, $grpc:ident)),+]) => {
        mod $mode {
            $(
                #[tokio::test]
                async fn $name() {
                    crate::$scenario(crate::Pairing {
                        host: crate::Lang::$host,
                        plugin: crate::Lang::$plugin,
                        grpc: crate::GoGrpc::$grpc,
                        tls: crate::Tls::$tls,
                        mux: $mux,
                    })
                    .await;
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

fn kv_checks(o: &Outcome, e: &mut Expect) {
    e.eq(o, "version", json!(1))
        .eq(o, "get", json!("world"))
        .eq(o, "double", json!(42))
        .eq(o, "stream", json!([21, 22, 23, 24, 25]));
    stopped_gracefully(o, e);
}

async fn kv(p: Pairing) {
    cell(
        p,
        ("kv", "serve", Ending::Graceful),
        |r| r,
        |host, o, e| {
            kv_checks(o, e);
            if host == Lang::Rust {
                // What a plugwire host says it negotiated.
                let tls = match p.tls {
                    Tls::Plain => "Plaintext",
                    Tls::AutoMtls => "AutoMtls",
                    Tls::Manual => "Manual",
                };
                e.eq(o, "negotiated_tls", json!(tls))
                    .eq(o, "negotiated_mux", json!(p.mux));
            }
        },
    )
    .await;
}
pairings!(kv: all_modes);

/// Host offers 1, 3, 4; the plugin has 2, 3, 5: both must settle on 3.
async fn negotiate(p: Pairing) {
    cell(
        p,
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
async fn mismatch(p: Pairing) {
    cell(
        p,
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

async fn cookie_wrong(p: Pairing) {
    cell(
        p,
        ("cookie-wrong", "serve", Ending::Killed),
        |r| r,
        cookie_refused,
    )
    .await;
}
pairings!(cookie_wrong);

async fn cookie_missing(p: Pairing) {
    cell(
        p,
        ("cookie-missing", "serve", Ending::Killed),
        |r| r,
        cookie_refused,
    )
    .await;
}
pairings!(cookie_missing);

async fn ping(p: Pairing) {
    cell(
        p,
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
async fn crash(p: Pairing) {
    cell(p, ("crash", "crash", Ending::Killed), |r| r, crash_checks).await;
}

/// A crash mid-call: the call fails fast, the exit is observed.
fn crash_checks(_: Lang, o: &Outcome, e: &mut Expect) {
    let call = o.text("call");
    e.that(call.starts_with("error"), || format!("call: {call:?}"))
        .eq(o, "exit_observed", json!(true))
        .eq(o, "exited", json!(true));
    let ms = o.get("elapsed_ms").as_u64().unwrap_or(u64::MAX);
    e.that(ms < 5000, || format!("crash noticed after {ms} ms"));
}
pairings!(crash: all_modes);

/// A plugin that never prints its handshake line: the 500 ms start timeout fires.
async fn start_timeout(p: Pairing) {
    cell(
        p,
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
async fn stdin(p: Pairing) {
    let input = "plugwire stdin check\n";
    let feed = |mut r: Run| {
        r.stdin = Some(input.as_bytes().to_vec());
        r
    };
    cell(p, ("stdin", "stdin", Ending::Graceful), feed, |_, o, e| {
        e.eq(o, "stdin", json!(input));
        stopped_gracefully(o, e);
    })
    .await;
}
pairings!(stdin);

/// A plugin configured for TCP (Go plugins use TCP only on Windows, so only the Rust plugin).
async fn tcp(p: Pairing) {
    cell(
        p,
        ("tcp", "tcp", Ending::Graceful),
        |r| r,
        |_, o, e| {
            e.eq(o, "network", json!("tcp")).eq(o, "double", json!(42));
            stopped_gracefully(o, e);
        },
    )
    .await;
}
pairings!(tcp: rust_plugin);

/// Dropping a Rust host's plugin handle without `kill` still ends the process.
async fn drop(p: Pairing) {
    cell(
        p,
        ("drop", "serve", Ending::Killed),
        |r| r,
        |_, o, e| {
            e.eq(o, "exited", json!(true))
                .eq(o, "pid_alive", json!(false));
        },
    )
    .await;
}
pairings!(drop: rust_host);

/// `PLUGIN_UNIX_SOCKET_DIR` puts the plugin's socket where the host asked.
async fn socket_dir(p: Pairing) {
    cell(
        p,
        ("socket-dir", "serve", Ending::Graceful),
        |r| r,
        |_, o, e| {
            e.eq(o, "socket_in_dir", json!(true));
            stopped_gracefully(o, e);
        },
    )
    .await;
}
pairings!(socket_dir: rust_host);

/// Manual TLS (go-plugin's `TLSConfig` on the host, `TLSProvider` on the plugin) with a CA the
/// harness makes: the kv scenario in every pairing.
mod manual_tls {
    use super::*;

    async fn run(host: Lang, plugin: Lang, grpc: GoGrpc) {
        let p = Pairing {
            host,
            plugin,
            grpc,
            tls: Tls::Manual,
            mux: false,
        };
        cell(
            p,
            ("kv", "manual-tls", Ending::Graceful),
            |r| r,
            |_, o, e| kv_checks(o, e),
        )
        .await;
    }

    #[tokio::test]
    async fn go_go() {
        run(Lang::Go, Lang::Go, GoGrpc::Pinned).await;
    }
    #[tokio::test]
    async fn go_go_grpc_current() {
        run(Lang::Go, Lang::Go, GoGrpc::Current).await;
    }
    #[tokio::test]
    async fn go_rust() {
        run(Lang::Go, Lang::Rust, GoGrpc::Pinned).await;
    }
    #[tokio::test]
    async fn go_rust_grpc_current() {
        run(Lang::Go, Lang::Rust, GoGrpc::Current).await;
    }
    #[tokio::test]
    async fn rust_go() {
        run(Lang::Rust, Lang::Go, GoGrpc::Pinned).await;
    }
    #[tokio::test]
    async fn rust_go_grpc_current() {
        run(Lang::Rust, Lang::Go, GoGrpc::Current).await;
    }
    #[tokio::test]
    async fn rust_rust() {
        run(Lang::Rust, Lang::Rust, GoGrpc::Pinned).await;
    }

    /// A manual-TLS plugin and a plaintext host do not talk.
    #[tokio::test]
    async fn plaintext_host_is_refused() {
        for (host, plugin) in [
            (Lang::Go, Lang::Rust),
            (Lang::Rust, Lang::Go),
            (Lang::Rust, Lang::Rust),
        ] {
            let p = Pairing {
                host,
                plugin,
                grpc: GoGrpc::Current,
                tls: Tls::Plain,
                mux: false,
            };
            let material = |r: Run| {
                let dir = plugwire_interop::tls::shared_material();
                r.env(
                    plugwire_interop::tls::TLS_DIR_VAR,
                    dir.display().to_string(),
                )
            };
            cell(
                p,
                ("refused", "manual-tls", Ending::Killed),
                material,
                |_, o, e| {
                    e.eq(o, "refused", json!(true));
                },
            )
            .await;
        }
    }
}

/// AutoMTLS rejections: a plugin whose TLS certificate is not the one in its handshake line is
/// refused by every host.
async fn impostor_plugin(p: Pairing) {
    cell(
        p,
        ("refused", "mitm-cert", Ending::Killed),
        |r| r,
        |_, o, e| {
            e.eq(o, "refused", json!(true));
        },
    )
    .await;
}

mod impostor_plugin {
    #[tokio::test]
    async fn go_host() {
        for grpc in [crate::GoGrpc::Pinned, crate::GoGrpc::Current] {
            crate::impostor_plugin(crate::Pairing {
                host: crate::Lang::Go,
                plugin: crate::Lang::Rust,
                grpc,
                tls: crate::Tls::AutoMtls,
                mux: false,
            })
            .await;
        }
    }
    #[tokio::test]
    async fn rust_host() {
        crate::impostor_plugin(crate::Pairing {
            host: crate::Lang::Rust,
            plugin: crate::Lang::Rust,
            grpc: crate::GoGrpc::Pinned,
            tls: crate::Tls::AutoMtls,
            mux: false,
        })
        .await;
    }
}

/// AutoMTLS rejections on the plugin side: a host presenting a certificate other than the one it
/// announced, or no TLS at all, is refused by Go and Rust plugins; the announced one works.
async fn plugin_refuses_strangers(plugin: Lang, grpc: GoGrpc) {
    let p = Pairing {
        host: Lang::Rust,
        plugin,
        grpc,
        tls: Tls::Plain,
        mux: false,
    };
    cell(
        p,
        ("tls-rejections", "serve", Ending::Graceful),
        |r| r,
        |_, o, e| {
            e.eq(o, "stranger_refused", json!(true))
                .eq(o, "plaintext_refused", json!(true))
                .eq(o, "right_cert_ok", json!(true))
                .eq(o, "exit_ok", json!(true));
        },
    )
    .await;
}

mod plugin_refuses_strangers {
    use super::*;
    #[tokio::test]
    async fn go_plugin() {
        plugin_refuses_strangers(Lang::Go, GoGrpc::Pinned).await;
    }
    #[tokio::test]
    async fn go_plugin_grpc_current() {
        plugin_refuses_strangers(Lang::Go, GoGrpc::Current).await;
    }
    #[tokio::test]
    async fn rust_plugin() {
        plugin_refuses_strangers(Lang::Rust, GoGrpc::Pinned).await;
    }
}

/// SecureConfig: the right SHA-256 of a real plugin launches it, a wrong one launches nothing.
async fn secure(p: Pairing) {
    cell(
        p,
        ("secure", "serve", Ending::Graceful),
        |r| r,
        |_, o, e| {
            e.eq(o, "right_checksum", json!("ok"))
                .eq(o, "wrong_checksum", json!("Checksum"))
                .contains(o, "error", "checksums did not match")
                .eq(o, "launched", json!(false));
        },
    )
    .await;
}
pairings!(secure: rust_host);

/// Neither private keys nor the certificate exchange show up in a Rust host's logs, even at
/// trace level.
#[tokio::test]
async fn secrets_stay_out_of_logs() {
    for plugin in [Lang::Go, Lang::Rust] {
        let p = Pairing {
            host: Lang::Rust,
            plugin,
            grpc: GoGrpc::Pinned,
            tls: Tls::AutoMtls,
            mux: false,
        };
        let trace = |r: Run| r.env("PLUGWIRE_LOG", "trace");
        cell(p, ("kv", "serve", Ending::Graceful), trace, |_, o, e| {
            kv_checks(o, e);
            e.that(o.stderr.contains("TRACE"), || {
                "no trace logs were written".into()
            })
            .that(!o.stderr.contains("PRIVATE KEY"), || {
                "a private key was logged".into()
            })
            .that(!o.stderr.contains("BEGIN CERTIFICATE"), || {
                "the certificate exchange was logged".into()
            });
        })
        .await;
    }
}

/// go-plugin's own broker test (`TestGRPC_App`): the host serves PingPong and the plugin dials
/// it, then the plugin serves PingPong and the host dials it.
async fn bidirectional(p: Pairing) {
    cell(
        p,
        ("bidirectional", "serve", Ending::Graceful),
        |r| r,
        |_, o, e| {
            e.eq(o, "plugin_dialed_host", json!("ok"))
                .eq(o, "host_dialed_plugin", json!("pong"));
            stopped_gracefully(o, e);
        },
    )
    .await;
}
pairings!(bidirectional: all_modes);

/// The plugin crashes while it serves a brokered listener (and holds a connection to the
/// host's): the call fails, and nothing is left on disk (a Go plugin leaves its brokered socket;
/// the Rust host removes it).
async fn broker_crash(p: Pairing) {
    cell(
        p,
        ("broker-crash", "crash", Ending::Killed),
        |r| r,
        |host, o, e| {
            e.eq(o, "host_dialed_plugin", json!("pong"));
            crash_checks(host, o, e);
        },
    )
    .await;
}
pairings!(broker_crash: rust_host);

/// The bidirectional example's flow: repeated puts accumulate through the host's AddHelper.
async fn counter(p: Pairing) {
    cell(
        p,
        ("counter", "serve", Ending::Graceful),
        |r| r,
        |_, o, e| {
            e.eq(o, "count", json!(5));
            stopped_gracefully(o, e);
        },
    )
    .await;
}
pairings!(counter: all_modes);

/// 200 brokered connections in a row leave no file descriptor, task or socket behind, on the
/// host (both languages) and in the Rust plugin (it reports its own counts).
async fn churn(p: Pairing) {
    cell(
        p,
        ("churn", "serve", Ending::Graceful),
        |r| r,
        |host, o, e| {
            e.eq(o, "count", json!(201))
                .eq(o, "host_fds_grew", json!(0))
                .eq(o, "host_sockets_grew", json!(0));
            if host == Lang::Rust {
                // The broker's bookkeeping is checked the same way in plugwire-runtime's tests.
                e.eq(o, "host_tasks_grew", json!(0));
            }
            if host == Lang::Rust && p.plugin == Lang::Rust {
                e.eq(o, "plugin_fds_grew", json!(0))
                    .eq(o, "plugin_tasks_grew", json!(0));
            }
            stopped_gracefully(o, e);
        },
    )
    .await;
}
pairings!(churn: all_modes);

/// A dial for an id nobody accepted fails after go-plugin's 5 s with go-plugin's error.
async fn knock_unaccepted(p: Pairing) {
    cell(p, ("knock-unaccepted", "serve", Ending::Graceful), |r| r, |_, o, e| {
        let want = if p.mux {
            "failed to knock before dialling client: timeout waiting for multiplexing knock handshake on id 999"
        } else {
            "timeout waiting for connection info"
        };
        e.contains(o, "error", want);
        let ms = o.get("elapsed_ms").as_u64().unwrap_or(u64::MAX);
        e.that((4500..10_000).contains(&ms), || format!("gave up after {ms} ms"));
        stopped_gracefully(o, e);
    })
    .await;
}
pairings!(knock_unaccepted: plain_and_mux);

/// A host that requires multiplexing refuses a plugin that answers `false` (or nothing).
async fn mux_unsupported(host: Lang) {
    let p = Pairing {
        host,
        plugin: Lang::Rust,
        grpc: GoGrpc::Pinned,
        tls: Tls::Plain,
        mux: true,
    };
    cell(
        p,
        ("start", "no-mux", Ending::Killed),
        |r| r,
        |_, o, e| {
            e.contains(
                o,
                "error",
                "client requested gRPC broker multiplexing but plugin does not support the feature",
            )
            .eq(o, "exited", json!(true));
        },
    )
    .await;
}

mod mux_unsupported {
    use super::*;
    #[tokio::test]
    async fn go_host() {
        mux_unsupported(Lang::Go).await;
    }
    #[tokio::test]
    async fn rust_host() {
        mux_unsupported(Lang::Rust).await;
    }
}

/// What the plugin writes to its stdout and stderr after the handshake arrives exactly in the
/// host's sinks (go-plugin's `TestClient_grpcSyncStdio`).
async fn stdio(p: Pairing) {
    cell(
        p,
        ("stdio", "serve", Ending::Graceful),
        |r| r,
        |_, o, e| {
            e.eq(o, "stdout", json!("stdout from the plugin\n")).eq(
                o,
                "stderr",
                json!("stderr from the plugin\n"),
            );
            stopped_gracefully(o, e);
        },
    )
    .await;
}
pairings!(stdio: all_modes);

/// 256 MiB on stdout and 16 MiB on stderr, every byte checked, in every pairing.
async fn flood(p: Pairing) {
    let sizes = |r: Run| r.env("FIXTURE_FLOOD", "268435456,16777216");
    cell(p, ("flood", "serve", Ending::Graceful), sizes, |_, o, e| {
        e.eq(o, "stdout_bytes", json!(268_435_456))
            .eq(o, "stderr_bytes", json!(16_777_216))
            .eq(o, "stdout_intact", json!(true))
            .eq(o, "stderr_intact", json!(true));
        stopped_gracefully(o, e);
    })
    .await;
}

mod flood {
    use super::*;
    fn plain(host: Lang, plugin: Lang) -> Pairing {
        Pairing {
            host,
            plugin,
            grpc: GoGrpc::Pinned,
            tls: Tls::Plain,
            mux: false,
        }
    }
    #[tokio::test]
    async fn go_go() {
        flood(plain(Lang::Go, Lang::Go)).await;
    }
    #[tokio::test]
    async fn go_rust() {
        flood(plain(Lang::Go, Lang::Rust)).await;
    }
    #[tokio::test]
    async fn rust_go() {
        flood(plain(Lang::Rust, Lang::Go)).await;
    }
    #[tokio::test]
    async fn rust_rust() {
        flood(plain(Lang::Rust, Lang::Rust)).await;
    }

    /// A slow host (300 µs per write) slows the plugin down; nothing is dropped.
    #[tokio::test]
    async fn rust_rust_slow_host() {
        let p = plain(Lang::Rust, Lang::Rust);
        let slow = |r: Run| {
            r.env("FIXTURE_FLOOD", "268435456,16777216")
                .env("FIXTURE_SLOW_SINK_US", "300")
        };
        cell(p, ("flood", "serve", Ending::Graceful), slow, |_, o, e| {
            e.eq(o, "stdout_bytes", json!(268_435_456))
                .eq(o, "stdout_intact", json!(true))
                .eq(o, "stderr_intact", json!(true));
            stopped_gracefully(o, e);
        })
        .await;
    }
}

/// The plugin's log lines (hclog JSON from both languages) show in the host's log at their
/// level with their fields.
async fn logs(p: Pairing) {
    cell(
        p,
        ("logs", "serve", Ending::Graceful),
        |r| r,
        |_, o, e| {
            let lines: Vec<String> = o
                .get("log_lines")
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|l| l.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default();
            let has = |needle: &str| {
                lines.iter().any(|l| {
                    l.contains("[INFO]") && l.contains("PrintKV called") && l.contains(needle)
                })
            };
            e.that(has("world") && has("42"), || {
                format!("plugin log lines: {lines:?}")
            });
            stopped_gracefully(o, e);
        },
    )
    .await;
}
pairings!(logs);

/// A plugin that panics: the host logs its crash trace at error level (`panic: ...` first).
async fn panic_logs(p: Pairing) {
    cell(
        p,
        ("panic-logs", "crash", Ending::Killed),
        |r| r,
        |_, o, e| {
            let lines: Vec<String> = o
                .get("error_lines")
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|l| l.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default();
            e.that(
                lines
                    .first()
                    .is_some_and(|l| l.contains("panic: fixture crash")),
                || format!("first error line: {:?}", lines.first()),
            )
            .that(lines.len() >= 3, || {
                format!("only {} error lines", lines.len())
            });
        },
    )
    .await;
}
pairings!(panic_logs);

/// A plugin started by hand in debug mode prints a reattach configuration; a host attaches to
/// it, calls it, does not stop it (test mode), and notices when it ends.
async fn reattach(host: Lang, plugin: Lang) {
    let f = fixtures();
    let mut debug = DebugPlugin::start(&f.plugin(plugin, GoGrpc::Pinned)).await;
    let run = Run::host(
        &f.host(host, GoGrpc::Pinned),
        Path::new("unused"),
        "serve",
        "reattach",
    )
    .env("FIXTURE_REATTACH", debug.reattach.clone());
    let outcome = run.run().await;
    let mut e = Expect::default();
    e.that(outcome.success(), || {
        "the host fixture did not finish".into()
    })
    .eq(&outcome, "version", json!(1))
    .eq(&outcome, "double", json!(42))
    .eq(&outcome, "alive_after_kill", json!(true))
    .eq(&outcome, "exit_observed", json!(true))
    .that(debug.exited_within(Duration::from_secs(5)).await, || {
        "the plugin kept running".into()
    })
    .that(debug.leftovers().is_empty(), || {
        format!("left behind: {:?}", debug.leftovers())
    });
    verdict(
        &format!("{host}-host/{plugin}-plugin/reattach"),
        &outcome,
        e.result(),
    );

    // A dead pid and a closed address: "reattachment process not found".
    let run = Run::host(
        &f.host(host, GoGrpc::Pinned),
        Path::new("unused"),
        "serve",
        "reattach-missing",
    )
    .env("FIXTURE_REATTACH", debug.reattach.clone());
    let outcome = run.run().await;
    let mut e = Expect::default();
    e.that(outcome.success(), || {
        "the host fixture did not finish".into()
    })
    .contains(&outcome, "error", "reattachment process not found");
    verdict(
        &format!("{host}-host/{plugin}-plugin/reattach-missing"),
        &outcome,
        e.result(),
    );
}

mod reattach {
    use super::*;
    #[tokio::test]
    async fn go_go() {
        reattach(Lang::Go, Lang::Go).await;
    }
    #[tokio::test]
    async fn go_rust() {
        reattach(Lang::Go, Lang::Rust).await;
    }
    #[tokio::test]
    async fn rust_go() {
        reattach(Lang::Rust, Lang::Go).await;
    }
    #[tokio::test]
    async fn rust_rust() {
        reattach(Lang::Rust, Lang::Rust).await;
    }
}

/// The host dies (SIGKILL, or a Rust host's panic) without stopping its plugin. A Rust host's
/// plugins die with it (`PR_SET_PDEATHSIG`), a Rust plugin exits when its host is gone; a Go
/// plugin under a Go host keeps running (go-plugin has neither), which the control cell shows.
async fn host_dies(host: Lang, plugin: Lang, scenario: &str, plugin_survives: bool) {
    let f = fixtures();
    let mut run = Run::host(
        &f.host(host, GoGrpc::Pinned),
        &f.plugin(plugin, GoGrpc::Pinned),
        "serve",
        scenario,
    );
    run.spare_group = true;
    let outcome = run.run().await;
    let pid = outcome
        .get("plugin_pid")
        .as_i64()
        .and_then(|p| i32::try_from(p).ok());
    let mut e = Expect::default();
    e.that(!outcome.success(), || "the host was supposed to die".into())
        .that(pid.is_some(), || "no plugin pid reported".into());
    if let Some(pid) = pid {
        let gone = plugwire_interop::harness::wait_gone(pid, Duration::from_secs(5)).await;
        e.that(gone != plugin_survives, || {
            format!(
                "plugin {pid} gone: {gone}, expected gone: {}",
                !plugin_survives
            )
        });
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    verdict(
        &format!("{host}-host/{plugin}-plugin/{scenario}"),
        &outcome,
        e.result(),
    );
}

mod host_dies {
    use super::*;
    #[tokio::test]
    async fn rust_host_go_plugin() {
        host_dies(Lang::Rust, Lang::Go, "host-dies", false).await;
    }
    #[tokio::test]
    async fn rust_host_rust_plugin() {
        host_dies(Lang::Rust, Lang::Rust, "host-dies", false).await;
    }
    #[tokio::test]
    async fn go_host_rust_plugin() {
        host_dies(Lang::Go, Lang::Rust, "host-dies", false).await;
    }
    #[tokio::test]
    async fn go_host_go_plugin_control() {
        host_dies(Lang::Go, Lang::Go, "host-dies", true).await;
    }
    #[tokio::test]
    async fn rust_host_panics_go_plugin() {
        host_dies(Lang::Rust, Lang::Go, "host-panics", false).await;
    }
    #[tokio::test]
    async fn rust_host_panics_rust_plugin() {
        host_dies(Lang::Rust, Lang::Rust, "host-panics", false).await;
    }
}

/// 500 launch/call/kill cycles leave no file descriptor, child process or socket file behind.
async fn soak(plugin: Lang) {
    let p = Pairing {
        host: Lang::Rust,
        plugin,
        grpc: GoGrpc::Pinned,
        tls: Tls::Plain,
        mux: false,
    };
    let mut longer = |mut r: Run| {
        r.timeout = Duration::from_secs(300);
        r.env("FIXTURE_SOAK", "500")
    };
    cell(
        p,
        ("soak", "serve", Ending::Graceful),
        &mut longer,
        |_, o, e| {
            e.eq(o, "cycles", json!(500))
                .eq(o, "fds_grew", json!(0))
                .eq(o, "children_grew", json!(0))
                .eq(o, "sockets_grew", json!(0));
        },
    )
    .await;
}

mod soak {
    use super::*;
    #[tokio::test]
    async fn rust_host_go_plugin() {
        soak(Lang::Go).await;
    }
    #[tokio::test]
    async fn rust_host_rust_plugin() {
        soak(Lang::Rust).await;
    }
}

/// `ManagedPlugins::kill_all` stops several plugins at once, gracefully.
async fn managed(p: Pairing) {
    cell(
        p,
        ("managed", "serve", Ending::Graceful),
        |r| r,
        |_, o, e| {
            e.eq(o, "managed", json!(3));
            stopped_gracefully(o, e);
        },
    )
    .await;
}

mod managed {
    use super::*;
    #[tokio::test]
    async fn rust_host_go_plugin() {
        managed(Pairing {
            host: Lang::Rust,
            plugin: Lang::Go,
            grpc: GoGrpc::Pinned,
            tls: Tls::Plain,
            mux: false,
        })
        .await;
    }
    #[tokio::test]
    async fn rust_host_rust_plugin() {
        managed(Pairing {
            host: Lang::Rust,
            plugin: Lang::Rust,
            grpc: GoGrpc::Pinned,
            tls: Tls::Plain,
            mux: false,
        })
        .await;
    }
}

/// gRPC reflection (v1 and v1alpha) lists exactly the registered services, as grpc-go does, and
/// describes them (go-plugin's `TestGRPC_Reflection`, seen by a Go reflection client).
async fn reflection(p: Pairing) {
    cell(
        p,
        ("reflection", "serve", Ending::Graceful),
        |r| r,
        |_, o, e| {
            e.eq(
                o,
                "services_v1",
                json!([
                    "grpc.health.v1.Health",
                    "grpc.reflection.v1.ServerReflection",
                    "grpc.reflection.v1alpha.ServerReflection",
                    "grpctest.Test",
                    "plugin.GRPCBroker",
                    "plugin.GRPCController",
                    "plugin.GRPCStdio",
                    "plugwire.bench.Bench",
                    "proto.Counter",
                    "proto.KV"
                ]),
            )
            .eq(o, "services_v1alpha_count", json!(10));
            let files = o.get("grpctest_files").as_u64().unwrap_or(0);
            e.that(files >= 1, || "grpctest.Test is not described".into());
            stopped_gracefully(o, e);
        },
    )
    .await;
}

mod reflection {
    use super::*;
    fn go_host(plugin: Lang, grpc: GoGrpc, tls: Tls) -> Pairing {
        Pairing {
            host: Lang::Go,
            plugin,
            grpc,
            tls,
            mux: false,
        }
    }
    #[tokio::test]
    async fn go_go() {
        reflection(go_host(Lang::Go, GoGrpc::Pinned, Tls::Plain)).await;
    }
    #[tokio::test]
    async fn go_rust() {
        reflection(go_host(Lang::Rust, GoGrpc::Pinned, Tls::Plain)).await;
    }
    #[tokio::test]
    async fn go_rust_grpc_current_mtls() {
        reflection(go_host(Lang::Rust, GoGrpc::Current, Tls::AutoMtls)).await;
    }
}

/// Run without its host, a plugin prints go-plugin's message on stderr, nothing on stdout, and
/// exits 1.
async fn run_without_host(plugin: Lang) {
    let f = fixtures();
    let outcome = Run::command(f.plugin(plugin, GoGrpc::Pinned), &["serve"])
        .run()
        .await;
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

/// A handler writes 256 KiB to stdout and to stderr inline (more than a pipe holds): the call
/// returns, every byte arrives in order, and the plugin still stops gracefully.
async fn stdio_large(p: Pairing) {
    cell(
        p,
        ("stdio-large", "serve", Ending::Graceful),
        |r| r,
        stdio_large_checks,
    )
    .await;
}

fn stdio_large_checks(_: Lang, o: &Outcome, e: &mut Expect) {
    e.eq(o, "call", json!("ok"))
        .eq(o, "stdout_bytes", json!(262_144))
        .eq(o, "stderr_bytes", json!(262_144))
        .eq(o, "stdout_intact", json!(true))
        .eq(o, "stderr_intact", json!(true));
    stopped_gracefully(o, e);
}
pairings!(stdio_large);

/// The same on the multi-thread runtime, and with the portable (non-Linux) code paths forced.
mod stdio_large_variants {
    use super::*;
    async fn run(host: Lang, env: (&'static str, &'static str)) {
        let p = Pairing {
            host,
            plugin: Lang::Rust,
            grpc: GoGrpc::Pinned,
            tls: Tls::Plain,
            mux: false,
        };
        cell(
            p,
            ("stdio-large", "serve", Ending::Graceful),
            |r| r.env(env.0, env.1),
            stdio_large_checks,
        )
        .await;
    }
    #[tokio::test]
    async fn go_rust_multi_thread() {
        run(Lang::Go, ("PLUGWIRE_FIXTURE_RUNTIME", "multi-thread")).await;
    }
    #[tokio::test]
    async fn rust_rust_multi_thread() {
        run(Lang::Rust, ("PLUGWIRE_FIXTURE_RUNTIME", "multi-thread")).await;
    }
    #[tokio::test]
    async fn rust_rust_portable() {
        run(Lang::Rust, ("PLUGWIRE_FORCE_PORTABLE", "1")).await;
    }
}

/// A handler panics and the plugin lives on: the host logs the trace once (`panic: ...` first)
/// and none of it arrives as forwarded stderr; only what the plugin wrote after does.
async fn panic_once(p: Pairing) {
    cell(
        p,
        ("panic-once", "catch-panics", Ending::Graceful),
        |r| r,
        |_, o, e| {
            let panicked = o.text("panic_call");
            e.that(panicked.starts_with("error"), || {
                format!("panic call: {panicked:?}")
            })
            .eq(o, "marker_call", json!("ok"))
            .eq(o, "forwarded_stderr", json!("after the panic\n"))
            .eq(o, "panic_lines", json!(1));
            stopped_gracefully(o, e);
        },
    )
    .await;
}
pairings!(panic_once: rust_plugin);

/// Two dials of one broker id before the other side serves it: the first connects, the second
/// times out after go-plugin's 5 s (it used to make both fail at once).
async fn dial_twice(p: Pairing) {
    cell(
        p,
        ("dial-twice", "serve", Ending::Graceful),
        |r| r,
        |_, o, e| {
            let dials: Vec<String> = o
                .get("dials")
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|d| d.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default();
            let ms: Vec<u64> = o
                .get("dial_ms")
                .as_array()
                .map(|a| a.iter().filter_map(serde_json::Value::as_u64).collect())
                .unwrap_or_default();
            let pongs = dials.iter().filter(|d| *d == "pong").count();
            let timeouts: Vec<usize> = (0..dials.len())
                .filter(|&i| dials[i].starts_with("error") && dials[i].contains("timeout"))
                .collect();
            e.eq(o, "plugin_id", json!(1))
                .that(pongs == 1 && timeouts.len() == 1, || {
                    format!("dials: {dials:?}")
                })
                .that(
                    timeouts
                        .first()
                        .is_some_and(|&i| ms.get(i).is_some_and(|&m| m >= 4500)),
                    || format!("the failed dial gave up too early: {ms:?} ms"),
                );
            stopped_gracefully(o, e);
        },
    )
    .await;
}
pairings!(dial_twice: plain);

/// A typed client a host dispenses takes a 6 MiB reply (over tonic's and grpc-go's 4 MiB
/// default; go-plugin's hosts allow 2 GiB).
async fn big_reply(p: Pairing) {
    cell(
        p,
        ("big-reply", "serve", Ending::Graceful),
        |r| r,
        |_, o, e| {
            e.eq(o, "reply_bytes", json!(6 << 20));
            stopped_gracefully(o, e);
        },
    )
    .await;
}
pairings!(big_reply: plain);

/// Cancelling the token `exit_token` hands out does not make the plugin look gone: kill still
/// asks it to shut down.
async fn exit_token(p: Pairing) {
    cell(
        p,
        ("exit-token", "serve", Ending::Graceful),
        |r| r,
        |_, o, e| {
            e.eq(o, "exited_after_cancel", json!(false))
                .eq(o, "ping", json!("ok"));
            stopped_gracefully(o, e);
        },
    )
    .await;
}
pairings!(exit_token: rust_host);

/// Dropping a `Plugin` without kill stops the servers the host serves through its broker, ends
/// their tasks and removes their sockets.
async fn drop_brokered(p: Pairing) {
    cell(
        p,
        ("drop-brokered", "serve", Ending::Killed),
        |r| r,
        |_, o, e| {
            // The plugin's socket and two brokered ones.
            e.eq(o, "host_sockets_serving", json!(3))
                .eq(o, "host_sockets_left", json!(0))
                .eq(o, "host_tasks_left", json!(0));
        },
    )
    .await;
}
pairings!(drop_brokered: rust_host);

/// A raw stderr sink that blocks does not block the host: calls go on meanwhile.
mod blocked_stderr_sink {
    use super::*;
    async fn run(plugin: Lang) {
        let p = Pairing {
            host: Lang::Rust,
            plugin,
            grpc: GoGrpc::Pinned,
            tls: Tls::Plain,
            mux: false,
        };
        cell(
            p,
            ("blocked-stderr-sink", "serve", Ending::Graceful),
            |r| r,
            |_, o, e| {
                e.eq(o, "sink_blocked", json!(true))
                    .eq(o, "double_while_blocked", json!("ok"));
                stopped_gracefully(o, e);
            },
        )
        .await;
    }
    #[tokio::test]
    async fn rust_go() {
        run(Lang::Go).await;
    }
    #[tokio::test]
    async fn rust_rust() {
        run(Lang::Rust).await;
    }
}

/// Plugins that do not stop when asked: go-plugin's budget (2 s from the Shutdown call, then
/// SIGKILL) is kept, and when a wrapper such as `sh -c` stands between host and plugin, a
/// plugwire host kills the plugin too (its process group); go-plugin kills only the wrapper,
/// which the control cells show.
mod stubborn {
    use super::*;

    /// A compound command, so the shell forks the plugin instead of becoming it.
    const WRAPPED: &str = r#""$PLUGIN" "$MODE"; exit $?"#;
    /// A wrapper that leaves a helper process behind.
    const WITH_HELPER: &str = r#"sleep 300 & exec "$PLUGIN" "$MODE""#;

    async fn run(
        host: Lang,
        plugin: &Path,
        mode: &str,
        shell: Option<&str>,
        limit: Duration,
    ) -> Outcome {
        let f = fixtures();
        let mut run = Run::host(&f.host(host, GoGrpc::Pinned), plugin, mode, "kill-timed");
        run.timeout = limit;
        if let Some(script) = shell {
            run = run.env("FIXTURE_SHELL", script);
        }
        run.run().await
    }

    fn bare() -> std::path::PathBuf {
        fixtures().go("bare-plugin")
    }

    fn kill_ms(o: &Outcome) -> u64 {
        o.get("kill_ms").as_u64().unwrap_or(u64::MAX)
    }

    /// A Rust host: within the budget, SIGKILLed, nothing left running or on disk.
    async fn rust_host(cell: &str, plugin: &Path, mode: &str, shell: Option<&str>) {
        let o = run(Lang::Rust, plugin, mode, shell, Duration::from_secs(60)).await;
        let mut e = Expect::default();
        e.that(o.success(), || "the host fixture did not finish".into())
            .eq(&o, "ping", json!("ok"))
            .eq(&o, "graceful", json!(false))
            .eq(&o, "exited", json!(true))
            .that((1900..3000).contains(&kill_ms(&o)), || {
                format!("kill took {} ms, the budget is 2 s", kill_ms(&o))
            })
            .that(!o.leaked, || "a process outlived its host".into())
            .that(o.leftovers.is_empty(), || {
                format!("files left behind: {:?}", o.leftovers)
            });
        verdict(cell, &o, e.result());
    }

    #[tokio::test]
    async fn rust_host_hanging_shutdown() {
        rust_host("rust-host/bare-plugin/hang", &bare(), "hang", None).await;
    }

    #[tokio::test]
    async fn rust_host_no_controller() {
        rust_host("rust-host/bare-plugin/none", &bare(), "none", None).await;
    }

    #[tokio::test]
    async fn rust_host_wrapped_hanging_shutdown() {
        rust_host(
            "rust-host/bare-plugin/hang/wrapped",
            &bare(),
            "hang",
            Some(WRAPPED),
        )
        .await;
    }

    /// go-plugin kills only the wrapper. The plugin behind it keeps running and holding the
    /// wrapper's stdout and stderr, and go-plugin's `Kill` waits for those to close: it never
    /// returns (the cell gives it 8 s).
    #[tokio::test]
    async fn go_host_wrapped_control() {
        let o = run(
            Lang::Go,
            &bare(),
            "none",
            Some(WRAPPED),
            Duration::from_secs(8),
        )
        .await;
        go_hangs("go-host/bare-plugin/none/wrapped", &o);
    }

    fn go_hangs(cell: &str, o: &Outcome) {
        let mut e = Expect::default();
        e.that(o.status.is_none(), || {
            "go-plugin's Kill was expected to hang".into()
        })
        .that(o.leaked, || {
            "go-plugin was expected to leave a process running".into()
        });
        verdict(cell, o, e.result());
    }

    /// A graceful plugin whose wrapper left a helper behind: the helper goes too.
    async fn with_helper(host: Lang, limit: Duration) -> Outcome {
        let f = fixtures();
        let plugin = f.plugin(Lang::Rust, GoGrpc::Pinned);
        run(host, &plugin, "serve", Some(WITH_HELPER), limit).await
    }

    #[tokio::test]
    async fn rust_host_wrapper_helper() {
        let o = with_helper(Lang::Rust, Duration::from_secs(60)).await;
        let mut e = Expect::default();
        e.that(o.success(), || "the host fixture did not finish".into())
            .eq(&o, "graceful", json!(true))
            .that(!o.leaked, || {
                "the wrapper's helper outlived the host".into()
            });
        verdict("rust-host/rust-plugin/wrapper-helper", &o, e.result());
    }

    /// The same for go-plugin: the helper keeps the wrapper's pipes open, and `Kill` waits.
    #[tokio::test]
    async fn go_host_wrapper_helper_control() {
        let o = with_helper(Lang::Go, Duration::from_secs(8)).await;
        go_hangs("go-host/rust-plugin/wrapper-helper", &o);
    }
}

/// A host reattaches to a plugin started by hand but not in test mode (`Test: false`): kill asks
/// it to shut down. A plugin that does not stop is left running, not SIGKILLed by pid (it is
/// not the host's child), and a host without its pid stops watching it once dropped.
mod reattach_owned {
    use super::*;

    async fn run(host: Lang, plugin: &Path, scenario: &str) -> (Outcome, DebugPlugin) {
        let f = fixtures();
        let debug = DebugPlugin::start(plugin).await;
        let outcome = Run::host(
            &f.host(host, GoGrpc::Pinned),
            Path::new("unused"),
            "serve",
            scenario,
        )
        .env("FIXTURE_REATTACH", debug.reattach.clone())
        .run()
        .await;
        (outcome, debug)
    }

    async fn stops(host: Lang, plugin: Lang) {
        let f = fixtures();
        let (o, mut debug) = run(host, &f.plugin(plugin, GoGrpc::Pinned), "reattach-owned").await;
        let mut e = Expect::default();
        e.that(o.success(), || "the host fixture did not finish".into())
            .eq(&o, "ping", json!("ok"))
            .eq(&o, "graceful", json!(true))
            .eq(&o, "exited", json!(true))
            .eq(&o, "pid_alive_after_kill", json!(false))
            .that(debug.exited_within(Duration::from_secs(5)).await, || {
                "the plugin kept running".into()
            });
        if host == Lang::Rust {
            e.eq(&o, "host_errors", json!([]));
        }
        verdict(
            &format!("{host}-host/{plugin}-plugin/reattach-owned"),
            &o,
            e.result(),
        );
    }

    #[tokio::test]
    async fn go_go() {
        stops(Lang::Go, Lang::Go).await;
    }
    #[tokio::test]
    async fn go_rust() {
        stops(Lang::Go, Lang::Rust).await;
    }
    #[tokio::test]
    async fn rust_go() {
        stops(Lang::Rust, Lang::Go).await;
    }
    #[tokio::test]
    async fn rust_rust() {
        stops(Lang::Rust, Lang::Rust).await;
    }

    /// A reattached plugin that never stops is left running after the 2 s budget.
    #[tokio::test]
    async fn rust_host_stubborn_plugin() {
        let (o, mut debug) = run(Lang::Rust, &fixtures().go("bare-plugin"), "reattach-owned").await;
        let mut e = Expect::default();
        let ms = o.get("kill_ms").as_u64().unwrap_or(u64::MAX);
        e.that(o.success(), || "the host fixture did not finish".into())
            .eq(&o, "graceful", json!(false))
            .eq(&o, "pid_alive_after_kill", json!(true))
            .eq(&o, "host_errors", json!([]))
            .that((1900..3000).contains(&ms), || format!("kill took {ms} ms"))
            .that(
                !debug.exited_within(Duration::from_millis(200)).await,
                || "the host killed a plugin it did not start".into(),
            );
        verdict("rust-host/bare-plugin/reattach-owned", &o, e.result());
    }

    /// Attached without a pid, twenty times, each dropped: nothing keeps running for them.
    #[tokio::test]
    async fn rust_host_without_pid() {
        let f = fixtures();
        let (o, mut debug) = run(
            Lang::Rust,
            &f.plugin(Lang::Rust, GoGrpc::Pinned),
            "reattach-pid0",
        )
        .await;
        let mut e = Expect::default();
        e.that(o.success(), || "the host fixture did not finish".into())
            .eq(&o, "tasks_left", json!(0))
            .eq(&o, "graceful", json!(true))
            .eq(&o, "exited", json!(true))
            .that(debug.exited_within(Duration::from_secs(5)).await, || {
                "the plugin kept running".into()
            });
        verdict("rust-host/rust-plugin/reattach-pid0", &o, e.result());
    }
}

// ─── netrpc: go-plugin's net/rpc protocol (yamux, gob, MuxBroker) ───────────────────────────

/// How a netrpc cell must end. A Go host counts the stop as graceful only when the reply to
/// `Control.Quit` arrived, and a go-plugin plugin exits without waiting for it to be sent (the
/// race go-plugin's own comment mentions), so Go host x Go plugin is graceful only sometimes;
/// the plugin must still be gone. A plugwire plugin replies before it exits, and a plugwire host
/// counts the exit.
fn netrpc_stopped(p: Pairing, o: &Outcome, e: &mut Expect) {
    if p.host == Lang::Go && p.plugin == Lang::Go {
        e.eq(o, "exited", json!(true));
    } else {
        stopped_gracefully(o, e);
    }
}

/// Calls of every kind over netrpc: scalars, a struct of every gob kind (map, slice, pointer,
/// `interface{}`, an `error` holding a `*plugin.BasicError`), an application error, a
/// `map[string]interface{}` argument, `[]byte` with NUL and 0xff, an unknown method.
async fn netrpc_calls(p: Pairing) {
    cell(
        p,
        ("netrpc-calls", "netrpc", Ending::Graceful),
        |r| r,
        |_, o, e| {
            e.eq(o, "protocol", json!("netrpc"))
                .eq(o, "double_call", json!("ok"))
                .eq(o, "double", json!(42))
                .eq(o, "echo_call", json!("ok"))
                .eq(o, "echo_equal", json!(true))
                .eq(
                    o,
                    "echo",
                    json!(
                        "int=-7 uint=7 float=2.5 bool=true text=héllo bytes=[0 1 2 255] \
                         strings=[a b] counts=map[x:1 y:2] nested=inner[t1 t2] any=any value \
                         err=inner error"
                    ),
                )
                .eq(o, "fail", json!("error: boom"))
                .eq(o, "put", json!("ok"))
                .eq(o, "get", json!("\"v\\x00\\xff\""))
                .eq(
                    o,
                    "unknown_method",
                    json!("error: rpc: can't find method Plugin.Nope"),
                );
            netrpc_stopped(p, o, e);
        },
    )
    .await;
}
pairings!(netrpc_calls: netrpc);

/// A name the host knows and the plugin does not: the plugin's `Dispenser` refuses it.
async fn netrpc_unknown(p: Pairing) {
    cell(
        p,
        ("netrpc-unknown", "netrpc", Ending::Graceful),
        |r| r,
        |_, o, e| {
            e.contains(o, "dispense", "unknown plugin type: nope");
            netrpc_stopped(p, o, e);
        },
    )
    .await;
}
pairings!(netrpc_unknown: netrpc_plain);

/// The `MuxBroker` both ways: the plugin dials the host's `Pong`, the host dials the plugin's.
async fn netrpc_broker(p: Pairing) {
    cell(
        p,
        ("netrpc-broker", "netrpc", Ending::Graceful),
        |r| r,
        |_, o, e| {
            e.eq(o, "plugin_dialed_host", json!("ok"))
                .eq(o, "plugin_got", json!("pong"))
                .eq(o, "serve_call", json!("ok"))
                .eq(o, "host_dialed_plugin", json!("ok"))
                .eq(o, "host_got", json!("pong"));
            netrpc_stopped(p, o, e);
        },
    )
    .await;
}
pairings!(netrpc_broker: netrpc);

/// The stdout and stderr streams: 256 KiB each written in one call, then 16 MiB each from
/// background writers; every byte arrives, in order, and the plugin stops gracefully.
async fn netrpc_stdio(p: Pairing) {
    cell(
        p,
        ("netrpc-stdio", "netrpc", Ending::Graceful),
        |r| r,
        |_, o, e| {
            let total = json!(256 * 1024 + 16 * 1024 * 1024);
            e.eq(o, "call", json!("ok"))
                .eq(o, "stdout_bytes", total.clone())
                .eq(o, "stderr_bytes", total)
                .eq(o, "stdout_intact", json!(true))
                .eq(o, "stderr_intact", json!(true));
            netrpc_stopped(p, o, e);
        },
    )
    .await;
}
pairings!(netrpc_stdio: netrpc_plain);

/// A netrpc plugin's log lines reach the host's log at info, with their field.
async fn netrpc_logs(p: Pairing) {
    cell(
        p,
        ("netrpc-logs", "netrpc", Ending::Graceful),
        |r| r,
        |_, o, e| {
            let lines = o.get("log_lines").to_string();
            e.that(
                lines.contains("[INFO]")
                    && lines.contains("key=hello")
                    && lines.contains("key=answer"),
                || format!("plugin log lines: {lines}"),
            );
            netrpc_stopped(p, o, e);
        },
    )
    .await;
}
pairings!(netrpc_logs: netrpc_plain);

/// `Control.Ping`, then `Control.Quit` stops the plugin gracefully; a ping after fails.
async fn netrpc_ping(p: Pairing) {
    cell(
        p,
        ("netrpc-ping", "netrpc", Ending::Graceful),
        |r| r,
        |_, o, e| {
            e.eq(o, "ping", json!("ok"));
            netrpc_stopped(p, o, e);
            let after = o.text("ping_after_kill");
            e.that(after.starts_with("error"), || {
                format!("ping after kill: {after:?}")
            });
        },
    )
    .await;
}
pairings!(netrpc_ping: netrpc);

/// The plugin dies in the middle of a netrpc call: the call fails fast, the exit is observed.
async fn netrpc_crash(p: Pairing) {
    cell(
        p,
        ("netrpc-crash", "netrpc", Ending::Killed),
        |r| r,
        crash_checks,
    )
    .await;
}
pairings!(netrpc_crash: netrpc_plain);

/// go-plugin's examples/negotiated: version 2 is netrpc, 3 is gRPC. Offered both, the plugin
/// picks 3 (gRPC); offered 2 only, netrpc. The host calls `Double` either way.
async fn negotiated(p: Pairing) {
    for (offered, version, protocol) in [("2,3", 3, "grpc"), ("2", 2, "netrpc")] {
        cell(
            p,
            ("negotiated", "negotiated", Ending::Graceful),
            |r| r.env("FIXTURE_VERSIONS", offered),
            |_, o, e| {
                e.eq(o, "version", json!(version))
                    .eq(o, "protocol", json!(protocol))
                    .eq(o, "double", json!(42));
                netrpc_stopped(p, o, e);
            },
        )
        .await;
    }
}
pairings!(negotiated: netrpc_plain);

/// The application's own TLS under yamux (go-plugin's `TLSConfig` / `TLSProvider` with netrpc).
async fn netrpc_manual_tls(p: Pairing) {
    cell(
        Pairing {
            tls: Tls::Manual,
            ..p
        },
        ("netrpc-calls", "netrpc-manual-tls", Ending::Graceful),
        |r| r,
        |_, o, e| {
            e.eq(o, "double", json!(42))
                .eq(o, "echo_equal", json!(true));
            netrpc_stopped(p, o, e);
        },
    )
    .await;
}
pairings!(netrpc_manual_tls: netrpc_plain);

/// A netrpc plugin in debug mode: a host attaches with `Protocol: "netrpc"`, calls it, leaves
/// it running (test mode), and notices when it ends.
async fn netrpc_reattach(host: Lang, plugin: Lang) {
    let f = fixtures();
    let mut debug =
        DebugPlugin::start_mode(&f.plugin(plugin, GoGrpc::Pinned), "netrpc-debug").await;
    let outcome = Run::host(
        &f.host(host, GoGrpc::Pinned),
        Path::new("unused"),
        "netrpc-debug",
        "netrpc-reattach",
    )
    .env("FIXTURE_REATTACH", debug.reattach.clone())
    .run()
    .await;
    let mut e = Expect::default();
    e.that(outcome.success(), || {
        "the host fixture did not finish".into()
    })
    .that(debug.reattach.contains("\"netrpc\""), || {
        format!("the reattach configuration says: {}", debug.reattach)
    })
    .eq(&outcome, "double", json!(42))
    .eq(&outcome, "alive_after_kill", json!(true))
    .eq(&outcome, "exit_observed", json!(true))
    .that(debug.exited_within(Duration::from_secs(5)).await, || {
        "the plugin kept running".into()
    })
    .that(debug.leftovers().is_empty(), || {
        format!("left behind: {:?}", debug.leftovers())
    });
    verdict(
        &format!("{host}-host/{plugin}-plugin/netrpc-reattach"),
        &outcome,
        e.result(),
    );
}

mod netrpc_reattach {
    use super::*;
    #[tokio::test]
    async fn go_go() {
        netrpc_reattach(Lang::Go, Lang::Go).await;
    }
    #[tokio::test]
    async fn go_rust() {
        netrpc_reattach(Lang::Go, Lang::Rust).await;
    }
    #[tokio::test]
    async fn rust_go() {
        netrpc_reattach(Lang::Rust, Lang::Go).await;
    }
    #[tokio::test]
    async fn rust_rust() {
        netrpc_reattach(Lang::Rust, Lang::Rust).await;
    }
}

//! The go-plugin wire contract as a sans-IO core, shared by [plugwire] hosts and plugins.
//!
//! plugwire implements HashiCorp's [go-plugin] protocol (v1.8.0) in Rust, wire-compatible with
//! real Go hosts and Go plugins. This crate holds the rules both sides share, with no async
//! runtime, no sockets, no clock and no environment reads: the environment, the time and the
//! bytes come in as arguments, so every rule is tested deterministically. Most users depend on
//! `plugwire-host` (to launch plugins) or `plugwire-plugin` (to be one) instead;
//! `plugwire-runtime` drives this core on tokio.
//!
//! ```text
//! host                                               plugin process
//! ----                                               --------------
//! env: cookie, PLUGIN_PROTOCOL_VERSIONS, ...  ──exec──▶ check cookie (exit 1 if wrong)
//!      [PLUGIN_CLIENT_CERT] [PLUGIN_MULTIPLEX_GRPC]    negotiate version, listen
//! read the first stdout line  ◀─────────────────────── 1|APP|unix|/tmp/plugin…|grpc|[cert][|mux]
//! connect (TLS when AutoMTLS), open GRPCBroker ──────▶ Health, reflection, GRPCBroker,
//! and GRPCStdio streams, call the app services         GRPCController, GRPCStdio, app services
//! GRPCController/Shutdown, wait 2 s, else SIGKILL ───▶ exit
//! ```
//!
//! | Module | What |
//! |---|---|
//! | [`handshake`] | the handshake line: parse every form a Go host accepts, print what a Go plugin prints |
//! | [`env`](mod@env) | the environment contract, the magic cookie, version negotiation |
//! | [`address`] | plugin and brokered addresses |
//! | [`reattach`] | `ReattachConfig` and its JSON form (`TF_REATTACH_PROVIDERS`) |
//! | [`cert`] | AutoMTLS certificate checks: PEM and DER, validity windows, pinning |
//! | [`broker`] | the broker's bookkeeping: `ConnInfo`s waiting for dialers, knocks waiting for acceptors |
//! | [`gob`] | net/rpc payloads: Go's gob encoding (gobwire) behind a guard against hostile streams |
//!
//! ```
//! use plugwire_protocol::handshake::{HandshakeLine, HostExpectations, Protocol};
//!
//! let host = HostExpectations { versions: &[1], allowed_protocols: &[Protocol::Grpc], multiplex: false };
//! let line = host.accept("1|1|unix|/tmp/plugin123|grpc|").unwrap();
//! assert_eq!(line.address, "/tmp/plugin123");
//! assert_eq!(line.to_string(), "1|1|unix|/tmp/plugin123|grpc|");
//! ```
//!
//! [plugwire]: https://github.com/plugwire/plugwire
//! [go-plugin]: https://github.com/hashicorp/go-plugin

pub mod address;
pub mod broker;
pub mod cert;
pub mod env;
pub mod gob;
pub mod handshake;
pub mod reattach;

pub use address::Address;
pub use env::{CookieError, MagicCookie, PluginEnv};
pub use handshake::{HandshakeError, HandshakeLine, HostExpectations, Network, Protocol};

/// An error and its causes joined by `: `, skipping a cause whose text the chain already shows
/// (tonic and hyper wrap connection errors in layers that repeat their source's message).
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut next = error.source();
    while let Some(cause) = next {
        let cause_text = cause.to_string();
        if !cause_text.is_empty() && !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        next = cause.source();
    }
    text
}

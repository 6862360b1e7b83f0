//! go-plugin's net/rpc protocol (`netrpc`): one yamux session per plugin connection, TLS under
//! it when configured; its first three streams are the `Control`/`Dispenser` net/rpc
//! connection, the plugin's stdout and its stderr; every further stream is brokered by id
//! ([`MuxBroker`]).
//!
//! net/rpc with Go's gob codec is the [`go_netrpc`] crate's, over gob from [`gobwire`]; every
//! connection's incoming gob stream is checked by `plugwire_protocol::gob`'s guard before the
//! codec decodes it ([`Guarded`]), so a peer cannot make us exhaust memory, time or stack with
//! crafted type definitions. go-plugin names the service of every dispensed plugin `Plugin`, so
//! its methods are `"Plugin.<Method>"`.
//!
//! # Why these parts (measured against Go 1.26 and go-plugin v1.8.0)
//!
//! * **gob: `gobwire` 0.1, behind our guard.** It round-trips a corpus written by Go's own encoder
//!   (scalars, `[]byte`, maps, nested and recursive structs, `interface{}` values of registered
//!   types, `*plugin.BasicError`, `time.Time`, values Go splits over several messages) so that Go
//!   decodes it back equal, and it is as fast as Go's gob or faster. But it trusts type
//!   definitions: a few hundred bytes made it expand a type into gigabytes, recurse past a 2 MiB
//!   stack, or re-scan a value quadratically. It has no hook for budgets, so
//!   `plugwire_protocol::gob` checks every message first ([`Guarded`] wires that in here).
//! * **net/rpc: `go-netrpc` 0.1, as is.** Both directions against Go's `net/rpc` (errors with
//!   Go's texts, concurrent calls matched by `Seq`, a bad argument failing one call only). Its
//!   missing message-size cap is the guard's.
//! * **yamux: our own** ([`crate::yamux`]). `tokio-yamux` stalled a stream written only after its
//!   window was used up, ignored window updates and RST after the peer's FIN, let one unread
//!   stream stop the whole session (pings included, so a Go peer closes it), and ended the session
//!   on a GoAway; each of these breaks a go-plugin peer (a 256 KiB stdout write, a slow host).
//!
//! [`gobwire`]: plugwire_protocol::gob::gobwire

mod broker;
mod guarded;
mod session;

pub use broker::{MuxBroker, MuxBrokerError};
pub use go_netrpc::{Client, Error as RpcError, InvalidRequest, Server, ServiceError};
pub use guarded::Guarded;
pub use plugwire_protocol::gob::{Limits, gobwire};
pub use session::{Dispense, HostSession, PluginSession, accept, connect, control_server};

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
//! [`gobwire`]: plugwire_protocol::gob::gobwire

mod broker;
mod guarded;
mod session;

pub use broker::{MuxBroker, MuxBrokerError};
pub use go_netrpc::{Client, Error as RpcError, InvalidRequest, Server, ServiceError};
pub use guarded::Guarded;
pub use plugwire_protocol::gob::{Limits, gobwire};
pub use session::{Dispense, HostSession, PluginSession, accept, connect, control_server};

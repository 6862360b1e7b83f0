//! go-plugin's net/rpc payloads: Go's `encoding/gob`, read safely.
//!
//! The encoding itself is the [`gobwire`] crate's (re-exported as [`gobwire`]), which matches
//! Go's encoder and decoder on everything go-plugin's net/rpc traffic carries: every case of a
//! corpus written by Go decodes as Go decodes it and re-encodes so that Go decodes it back.
//! gobwire trusts the peer's type definitions, though: a few hundred hostile bytes can make its
//! dynamic decoder (every `interface{}` and `error` value goes through it) expand a type into
//! gigabytes, recurse past the stack, or re-scan a value quadratically. [`StreamGuard`] sits in
//! front of it: it parses each message itself, keeps the stream's type table, predicts those
//! costs and refuses the message before gobwire sees it, within [`Limits`]. We wrote the guard
//! because gobwire has no hook for such budgets and its decoder cannot be fixed from outside.

mod guard;
mod schema;

pub use gobwire;
pub use guard::{
    DecodeError, GuardError, GuardedDecoder, Limits, StreamGuard, Verdict, parse_length_prefix,
};

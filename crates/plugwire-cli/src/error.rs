//! What can go wrong in a subcommand, besides the plugin failing (which is a report, not an
//! error): bad usage, output that cannot be written, requests that cannot be read or made.

use crate::dyncall::call::CallError;
use crate::dyncall::lookup::LookupError;
use crate::dyncall::proto::CompileError;
use crate::dyncall::reflection::ReflectionError;
use crate::launch::UsageError;

/// A subcommand's error.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CliError {
    /// The command line cannot work (exit status 2).
    #[error(transparent)]
    Usage(#[from] UsageError),
    /// Writing the output (or reading stdin) failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// The JSON output could not be written.
    #[error("cannot write JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// The request is not usable.
    #[error("{0}")]
    Request(String),
    /// A `.proto` file does not compile.
    #[error(transparent)]
    Proto(#[from] CompileError),
    /// The method's descriptors could not be had by reflection.
    #[error("{error}{hint}")]
    Reflection {
        error: ReflectionError,
        hint: &'static str,
    },
    /// No such method.
    #[error(transparent)]
    Lookup(#[from] LookupError),
    /// The call failed before any gRPC status.
    #[error(transparent)]
    Call(#[from] CallError),
    /// The host refused something (a netrpc plugin's gRPC channel, ...).
    #[error("{0}")]
    Host(#[from] plugwire_host::Error),
    /// The plugin did not get going at all within the bound.
    #[error("{0}")]
    Timeout(String),
}

impl CliError {
    /// Whether it is a usage error.
    pub(crate) fn is_usage(&self) -> bool {
        matches!(self, CliError::Usage(_))
    }
}

//! The host's error type.

use std::fmt;

type Source = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What went wrong, broadly; see [`Error::kind`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The configuration cannot work (nothing was launched).
    Config,
    /// The plugin executable failed its checksum (nothing was launched).
    Checksum,
    /// The process could not be started.
    Spawn,
    /// No handshake line within the start timeout.
    StartTimeout,
    /// The process exited before the handshake completed.
    Exited,
    /// The handshake line was refused (see [`Error::handshake`]).
    Handshake,
    /// The plugin's address could not be reached, or TLS failed.
    Connect,
    /// The plugin has no plugin of that name for the negotiated version.
    UnknownPlugin,
    /// A call to the plugin failed.
    Rpc,
    /// Reattaching found no running plugin.
    NotFound,
}

/// An error from launching, talking to or stopping a plugin. The text says what happened and,
/// where possible, what to do about it; the underlying cause is its [`source`], so print the
/// whole chain (e.g. `anyhow`'s `{:#}`) to see everything.
///
/// [`source`]: std::error::Error::source
pub struct Error {
    kind: ErrorKind,
    message: String,
    source: Option<Source>,
    exit_status: Option<std::process::ExitStatus>,
}

impl Error {
    pub(crate) fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
            source: None,
            exit_status: None,
        }
    }

    pub(crate) fn with_source(
        kind: ErrorKind,
        message: impl Into<String>,
        source: impl Into<Source>,
    ) -> Self {
        Error {
            kind,
            message: message.into(),
            source: Some(source.into()),
            exit_status: None,
        }
    }

    pub(crate) fn set_exit_status(&mut self, status: Option<std::process::ExitStatus>) {
        self.exit_status = status;
    }

    /// When a launch failed after the process started: how the process ended. The host always
    /// kills and reaps it before returning the error, so this is `None` only if the reap itself
    /// timed out.
    pub fn exit_status(&self) -> Option<std::process::ExitStatus> {
        self.exit_status
    }

    /// The broad category.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The handshake problem, when [`ErrorKind::Handshake`] came from a refused line.
    pub fn handshake(&self) -> Option<&plugwire_protocol::HandshakeError> {
        self.source.as_ref()?.downcast_ref()
    }

    /// The gRPC status, when [`ErrorKind::Rpc`].
    pub fn status(&self) -> Option<&tonic::Status> {
        self.source.as_ref()?.downcast_ref()
    }

    /// Whether the plugin did not answer in time at start.
    pub fn is_timeout(&self) -> bool {
        self.kind == ErrorKind::StartTimeout
    }

    /// Whether the plugin exited before the host could connect.
    pub fn is_exited(&self) -> bool {
        self.kind == ErrorKind::Exited
    }

    /// This error and its causes, joined by `: `, without repeating a cause the chain already
    /// shows.
    pub fn chain(&self) -> String {
        plugwire_protocol::error_chain(self)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Error");
        d.field("kind", &self.kind).field("message", &self.message);
        if let Some(source) = &self.source {
            d.field("source", source);
        }
        d.finish()
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|s| s as &(dyn std::error::Error + 'static))
    }
}

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
    /// The call is for the other protocol: a gRPC call to a netrpc plugin, or the reverse.
    Protocol,
    /// Reattaching found no running plugin.
    NotFound,
}

/// An error from launching, talking to or stopping a plugin. Its text says what happened, why
/// (the underlying causes, joined by `: ` as Go's errors read) and, where possible, what to do
/// about it, e.g. `the plugin's handshake was refused: incompatible API version with plugin.
/// Plugin version: 2, Client versions: [1]`.
///
/// Because the text already holds the causes, [`source`] is `None`: an error reporter (such as
/// `anyhow`'s `{:#}`) shows each cause once. The cause itself is [`Error::cause`], and the
/// typed ones [`Error::handshake`] and [`Error::status`].
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

    /// The underlying error, if any (its text is part of this error's).
    pub fn cause(&self) -> Option<&(dyn std::error::Error + Send + Sync + 'static)> {
        self.source.as_deref()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if let Some(source) = &self.source {
            let causes = plugwire_protocol::error_chain(source.as_ref());
            if !causes.is_empty() && !self.message.contains(&causes) {
                write!(f, ": {causes}")?;
            }
        }
        Ok(())
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

/// `source()` is `None`: the causes are in the text (see [`Error`]).
impl std::error::Error for Error {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_text_shows_each_cause_once() {
        let io = std::io::Error::other("connection refused");
        let error = Error::with_source(ErrorKind::Connect, "could not connect to the plugin", io);
        assert_eq!(
            error.to_string(),
            "could not connect to the plugin: connection refused"
        );
        assert!(std::error::Error::source(&error).is_none());
        // What an error reporter such as anyhow's `{:#}` prints: the same, once.
        let reported = plugwire_protocol::error_chain(&error);
        assert_eq!(reported, error.to_string());
        assert_eq!(
            error.cause().map(ToString::to_string).as_deref(),
            Some("connection refused")
        );
        let plain = Error::new(ErrorKind::Config, "no plugin versions configured");
        assert_eq!(plain.to_string(), "no plugin versions configured");
    }
}

//! gRPC status errors, printed the way Go tools name their codes.

use std::fmt;

use tonic::{Code, Status};

/// A call ended with a non-OK gRPC status. Displays as `code: NotFound, message: ...`.
#[derive(Debug, Clone)]
pub(crate) struct StatusError {
    status: Status,
}

impl StatusError {
    /// The status code.
    pub(crate) fn code(&self) -> Code {
        self.status.code()
    }

    /// The code's name as grpc-go (and so grpcurl) spells it, e.g. `NotFound`.
    pub(crate) fn code_name(&self) -> &'static str {
        code_name(self.status.code())
    }

    /// The status message.
    pub(crate) fn message(&self) -> &str {
        self.status.message()
    }
}

impl From<Status> for StatusError {
    fn from(status: Status) -> Self {
        StatusError { status }
    }
}

impl fmt::Display for StatusError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "code: {}, message: {}", self.code_name(), self.message())
    }
}

/// The source is the status's own (for a transport error, what broke the connection), so that
/// `anyhow`'s `{:#}` prints e.g. `code: Unknown, message: transport error: ... broken pipe`.
impl std::error::Error for StatusError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        std::error::Error::source(&self.status)
    }
}

/// The name of a gRPC code as grpc-go spells it (`OK`, `Canceled`, ...), where `tonic::Code`'s
/// `Debug` says `Ok` and `Cancelled`.
pub(crate) fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "Canceled",
        Code::Unknown => "Unknown",
        Code::InvalidArgument => "InvalidArgument",
        Code::DeadlineExceeded => "DeadlineExceeded",
        Code::NotFound => "NotFound",
        Code::AlreadyExists => "AlreadyExists",
        Code::PermissionDenied => "PermissionDenied",
        Code::ResourceExhausted => "ResourceExhausted",
        Code::FailedPrecondition => "FailedPrecondition",
        Code::Aborted => "Aborted",
        Code::OutOfRange => "OutOfRange",
        Code::Unimplemented => "Unimplemented",
        Code::Internal => "Internal",
        Code::Unavailable => "Unavailable",
        Code::DataLoss => "DataLoss",
        Code::Unauthenticated => "Unauthenticated",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn displays_go_code_names() {
        let error = StatusError::from(Status::not_found("no value for key \"x\""));
        assert_eq!(
            error.to_string(),
            "code: NotFound, message: no value for key \"x\""
        );
        assert_eq!(code_name(Code::Cancelled), "Canceled");
        assert_eq!(code_name(Code::Ok), "OK");
    }
}

//! The one error table: each [`ErrorKind`] mapped to a gRPC code, and each
//! gRPC code to the HTTP status grpc-gateway gives it. gRPC replies, REST
//! replies and the auth middleware's refusals all take their codes from here.

use crate::error::{Error, ErrorKind};

/// The code and status of each [`ErrorKind`], as methods on the kind.
pub trait Codes {
    /// Returns the gRPC status code for this kind.
    fn grpc_code(self) -> tonic::Code;
    /// Returns the HTTP status grpc-gateway uses for this kind's gRPC code.
    fn http_status(self) -> http::StatusCode;
}

impl Codes for ErrorKind {
    fn grpc_code(self) -> tonic::Code {
        match self {
            ErrorKind::InvalidArgument => tonic::Code::InvalidArgument,
            ErrorKind::NotFound => tonic::Code::NotFound,
            ErrorKind::AlreadyExists => tonic::Code::AlreadyExists,
            ErrorKind::FailedPrecondition => tonic::Code::FailedPrecondition,
            ErrorKind::PermissionDenied => tonic::Code::PermissionDenied,
            ErrorKind::Unauthenticated => tonic::Code::Unauthenticated,
            ErrorKind::ResourceExhausted => tonic::Code::ResourceExhausted,
            ErrorKind::Unavailable => tonic::Code::Unavailable,
            ErrorKind::Unimplemented => tonic::Code::Unimplemented,
            ErrorKind::Internal => tonic::Code::Internal,
        }
    }

    fn http_status(self) -> http::StatusCode {
        http_status_for(self.grpc_code())
    }
}

/// Maps a gRPC code to an HTTP status the way grpc-gateway's
/// `HTTPStatusFromCode` does.
pub fn http_status_for(code: tonic::Code) -> http::StatusCode {
    use http::StatusCode as S;
    use tonic::Code as C;
    match code {
        C::Ok => S::OK,
        C::Cancelled => S::from_u16(499).unwrap_or(S::BAD_REQUEST),
        C::Unknown | C::Internal | C::DataLoss => S::INTERNAL_SERVER_ERROR,
        C::InvalidArgument | C::OutOfRange => S::BAD_REQUEST,
        C::DeadlineExceeded => S::GATEWAY_TIMEOUT,
        C::NotFound => S::NOT_FOUND,
        C::AlreadyExists | C::Aborted => S::CONFLICT,
        C::PermissionDenied => S::FORBIDDEN,
        C::Unauthenticated => S::UNAUTHORIZED,
        C::ResourceExhausted => S::TOO_MANY_REQUESTS,
        C::FailedPrecondition => S::BAD_REQUEST,
        C::Unimplemented => S::NOT_IMPLEMENTED,
        C::Unavailable => S::SERVICE_UNAVAILABLE,
    }
}

impl From<Error> for tonic::Status {
    fn from(e: Error) -> Self {
        tonic::Status::new(e.kind().grpc_code(), e.message())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_statuses_follow_grpc_gateway() {
        assert_eq!(ErrorKind::InvalidArgument.http_status(), 400);
        assert_eq!(ErrorKind::NotFound.http_status(), 404);
        assert_eq!(ErrorKind::AlreadyExists.http_status(), 409);
        assert_eq!(ErrorKind::FailedPrecondition.http_status(), 400);
        assert_eq!(ErrorKind::PermissionDenied.http_status(), 403);
        assert_eq!(ErrorKind::Unauthenticated.http_status(), 401);
        assert_eq!(ErrorKind::ResourceExhausted.http_status(), 429);
        assert_eq!(ErrorKind::Unavailable.http_status(), 503);
        assert_eq!(ErrorKind::Unimplemented.http_status(), 501);
    }
}

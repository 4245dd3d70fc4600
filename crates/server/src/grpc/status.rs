//! The one error table: each [`ErrorKind`] mapped to a gRPC code, and each
//! gRPC code to the HTTP status grpc-gateway gives it. gRPC replies, REST
//! replies and the auth middleware's refusals all take their codes from here.

use switchyard_core::error::{Error, ErrorKind};

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

/// The statuses tonic makes itself, in the transport, as this server answers
/// them: the fault named in one sentence, and the caller's faults never a
/// server failure.
///
/// tonic answers a request it cannot read as INTERNAL (a bad compressed
/// flag, a message cut short, no message at all, a gzip message that does
/// not inflate, a gRPC-Web body that is not base64) and an oversize message,
/// either way, as OUT_OF_RANGE. Those are the caller's doing: INVALID_ARGUMENT,
/// and RESOURCE_EXHAUSTED for a request over the limit. (gRPC's compression
/// document asks INTERNAL for a compressed flag without `grpc-encoding`;
/// here, as for every other malformed request, the caller is told it was
/// theirs, and the error budget is not spent on it.) An answer over the limit
/// is the server's: INTERNAL. A client that resets its stream while sending
/// cancelled the call. Anything else: `None`, left as it is.
pub fn from_tonic(code: tonic::Code, message: &str) -> Option<(tonic::Code, String)> {
    use tonic::Code as C;
    /// Where the limit of the public services is said.
    const PUBLIC: &str = "; 64 KiB for health and reflection";
    let numbers = |m: &str| -> Vec<u64> {
        m.split(|c: char| !c.is_ascii_digit())
            .filter_map(|n| n.parse().ok())
            .collect()
    };
    let invalid = |m: String| Some((C::InvalidArgument, m));
    match code {
        C::OutOfRange => {
            let [found, limit] = numbers(message)[..] else {
                return None;
            };
            if message.starts_with("Error, decoded message length too large") {
                Some((
                    C::ResourceExhausted,
                    format!(
                        "the request message is {found} bytes; the limit is {limit} \
                         (max_message_bytes{PUBLIC})"
                    ),
                ))
            } else if message.starts_with("Error, encoded message length too large") {
                Some((
                    C::Internal,
                    format!(
                        "the answer is {found} bytes, over the limit of {limit} \
                         (max_message_bytes)"
                    ),
                ))
            } else {
                None
            }
        }
        C::ResourceExhausted if message.starts_with("Error decompressing: size limit") => {
            let limit = numbers(message).first().copied()?;
            Some((
                C::ResourceExhausted,
                format!(
                    "the request message inflates past the limit of {limit} bytes \
                     (max_message_bytes{PUBLIC})"
                ),
            ))
        }
        C::Internal => {
            if message == "Missing request message." {
                invalid("the request carries no message".into())
            } else if message == "Unexpected EOF decoding stream." {
                invalid("the request ends inside a message (a gRPC frame cut short)".into())
            } else if message.starts_with("protocol error: received message with compressed-flag") {
                invalid(
                    "a message is marked compressed, but the call names no grpc-encoding".into(),
                )
            } else if let Some(rest) = message
                .strip_prefix("protocol error: received message with invalid compression flag: ")
            {
                let flag = rest.split(' ').next().unwrap_or(rest);
                invalid(format!(
                    "a message's compressed flag is {flag}; gRPC allows 0 and 1"
                ))
            } else if let Some(rest) = message.strip_prefix("Error decompressing: ") {
                let why = rest.strip_suffix(", while sending request").unwrap_or(rest);
                invalid(format!(
                    "a message does not inflate as its grpc-encoding says: {why}"
                ))
            } else if let Some(rest) = message.strip_prefix("tonic-web: ") {
                invalid(format!("the gRPC-Web body cannot be read: {rest}"))
            } else if message.starts_with("h2 protocol error: ") {
                Some((
                    C::Cancelled,
                    format!("the client ended the call: {message}"),
                ))
            } else {
                None
            }
        }
        _ => None,
    }
}

/// The gRPC code a REST answer stands for when it carries no
/// `google.rpc.Status` of ours (a redirection or `304 Not Modified` is OK; a
/// client error is the caller's, never a server failure; a server error is
/// INTERNAL), the reverse of [`http_status_for`] where it is one to one.
pub fn code_for_http(status: http::StatusCode) -> tonic::Code {
    use http::StatusCode as S;
    use tonic::Code as C;
    match status {
        s if s.is_success() || s.is_redirection() || s.is_informational() => C::Ok,
        S::UNAUTHORIZED => C::Unauthenticated,
        S::FORBIDDEN => C::PermissionDenied,
        S::NOT_FOUND => C::NotFound,
        S::CONFLICT => C::AlreadyExists,
        S::TOO_MANY_REQUESTS | S::PAYLOAD_TOO_LARGE => C::ResourceExhausted,
        S::METHOD_NOT_ALLOWED | S::NOT_IMPLEMENTED => C::Unimplemented,
        S::SERVICE_UNAVAILABLE => C::Unavailable,
        S::GATEWAY_TIMEOUT => C::DeadlineExceeded,
        s if s.as_u16() == 499 => C::Cancelled,
        s if s.is_client_error() => C::InvalidArgument,
        _ => C::Internal,
    }
}

/// The gRPC status of a core error: its kind's code and its message (which
/// never holds SQL or driver text; see `switchyard_core::error`).
pub fn status(e: Error) -> tonic::Status {
    tonic::Status::new(e.kind().grpc_code(), e.message())
}

/// A core error as gRPC answers it: `e.into_status()`.
pub trait IntoStatus {
    /// The error as a gRPC [`status`].
    fn into_status(self) -> tonic::Status;
}

impl IntoStatus for Error {
    fn into_status(self) -> tonic::Status {
        status(self)
    }
}

/// `Result<T, core Error>` as gRPC answers it: `.or_status()?` in a handler.
pub trait OrStatus<T> {
    /// The error as a gRPC [`status`].
    fn or_status(self) -> Result<T, tonic::Status>;
}

impl<T> OrStatus<T> for Result<T, Error> {
    fn or_status(self) -> Result<T, tonic::Status> {
        self.map_err(status)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tonics_own_statuses_name_the_fault_and_whose_it_is() {
        use tonic::Code as C;
        let cases = [
            (C::Internal, "Missing request message.", C::InvalidArgument),
            (
                C::Internal,
                "Unexpected EOF decoding stream.",
                C::InvalidArgument,
            ),
            (
                C::Internal,
                "protocol error: received message with invalid compression flag: 7 (valid \
                 flags are 0 and 1), while sending request",
                C::InvalidArgument,
            ),
            (
                C::Internal,
                "protocol error: received message with compressed-flag but no grpc-encoding \
                 was specified",
                C::InvalidArgument,
            ),
            (
                C::Internal,
                "Error decompressing: corrupt deflate stream, while sending request",
                C::InvalidArgument,
            ),
            (
                C::Internal,
                "tonic-web: malformed base64 request",
                C::InvalidArgument,
            ),
            (
                C::OutOfRange,
                "Error, decoded message length too large: found 5000 bytes, the limit is: \
                 4096 bytes",
                C::ResourceExhausted,
            ),
            (
                C::OutOfRange,
                "Error, encoded message length too large: found 5000 bytes, the limit is: \
                 4096 bytes",
                C::Internal,
            ),
            (
                C::ResourceExhausted,
                "Error decompressing: size limit, of 4096 bytes, exceeded while \
                 decompressing message",
                C::ResourceExhausted,
            ),
        ];
        for (code, message, want) in cases {
            let (got, said) = from_tonic(code, message).expect(message);
            assert_eq!(got, want, "{message}");
            assert!(
                !said.contains("tonic") || said.contains("gRPC-Web"),
                "{said}"
            );
        }
        assert_eq!(
            from_tonic(C::OutOfRange, "Error, encoded message length too large: found 5000 bytes, the limit is: 4096 bytes").unwrap().1,
            "the answer is 5000 bytes, over the limit of 4096 (max_message_bytes)"
        );
        // A service's own statuses are left alone.
        assert_eq!(from_tonic(C::Internal, "internal error"), None);
        assert_eq!(
            from_tonic(C::InvalidArgument, "Missing request message."),
            None
        );
    }

    #[test]
    fn rest_answers_without_a_status_have_the_code_their_http_status_means() {
        use http::StatusCode as S;
        use tonic::Code as C;
        assert_eq!(code_for_http(S::NOT_MODIFIED), C::Ok);
        assert_eq!(code_for_http(S::OK), C::Ok);
        assert_eq!(code_for_http(S::BAD_REQUEST), C::InvalidArgument);
        assert_eq!(code_for_http(S::UNSUPPORTED_MEDIA_TYPE), C::InvalidArgument);
        assert_eq!(code_for_http(S::NOT_FOUND), C::NotFound);
        assert_eq!(code_for_http(S::INTERNAL_SERVER_ERROR), C::Internal);
        for code in [
            C::InvalidArgument,
            C::NotFound,
            C::AlreadyExists,
            C::PermissionDenied,
            C::Unauthenticated,
            C::ResourceExhausted,
            C::Unimplemented,
            C::Unavailable,
            C::DeadlineExceeded,
            C::Cancelled,
        ] {
            assert_eq!(code_for_http(http_status_for(code)), code, "{code:?}");
        }
    }

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

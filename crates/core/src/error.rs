//! Errors as clients see them: a closed set of kinds and a message safe to
//! show.
//!
//! Domain and store code return [`Error`]. The one table that maps each kind
//! to a gRPC code and an HTTP status (grpc-gateway's) is at the transport edge,
//! `switchyard-server`'s `grpc/status.rs`. Driver and SQL errors never reach a client: they are
//! logged here and replaced by a generic message.

use std::fmt;

/// What went wrong, as a client sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request is malformed; the message names the field.
    InvalidArgument,
    /// The named entity does not exist.
    NotFound,
    /// The entity (or a pattern) already exists.
    AlreadyExists,
    /// The request is valid but the state forbids it (a stale revision).
    FailedPrecondition,
    /// The caller is known but may not do this.
    PermissionDenied,
    /// The caller presented no valid credentials.
    Unauthenticated,
    /// A limit was reached (watchers, queue).
    ResourceExhausted,
    /// A dependency (database, Redis) is unreachable; retrying may succeed.
    Unavailable,
    /// The RPC exists in the API but this version does not serve it yet.
    Unimplemented,
    /// A bug or an unexpected failure; details are in the server log only.
    Internal,
}

/// An error with its kind and a message safe to show a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    kind: ErrorKind,
    message: String,
}

impl Error {
    /// Creates an error of `kind` whose `message` is shown to the client as is.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
        }
    }

    /// A malformed field: the message reads `<field>: <reason>`.
    pub fn invalid_argument(field: &str, reason: impl fmt::Display) -> Self {
        Error::new(ErrorKind::InvalidArgument, format!("{field}: {reason}"))
    }

    /// Returns NOT_FOUND for `what` (for example `tenant "acme"`).
    pub fn not_found(what: impl fmt::Display) -> Self {
        Error::new(ErrorKind::NotFound, format!("{what} not found"))
    }

    /// Returns ALREADY_EXISTS with the message as given.
    pub fn already_exists(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::AlreadyExists, message)
    }

    /// Returns FAILED_PRECONDITION with the message as given.
    pub fn failed_precondition(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::FailedPrecondition, message)
    }

    /// Returns PERMISSION_DENIED with the message as given.
    pub fn permission_denied(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::PermissionDenied, message)
    }

    /// Returns UNAUTHENTICATED with the message as given.
    pub fn unauthenticated(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::Unauthenticated, message)
    }

    /// Returns UNIMPLEMENTED for an RPC of the API that this version does not serve.
    pub fn unimplemented(rpc: &str) -> Self {
        Error::new(
            ErrorKind::Unimplemented,
            format!("{rpc} is part of the API but not served by this version of switchyard yet"),
        )
    }

    /// Logs `source` server-side and returns an error that does not reveal it.
    pub fn internal(context: &str, source: impl fmt::Display) -> Self {
        tracing::error!(error = %source, context, "internal error");
        Error::new(
            ErrorKind::Internal,
            format!("internal error while {context}"),
        )
    }

    /// Logs `source` server-side and returns UNAVAILABLE naming only the dependency.
    pub fn unavailable(dependency: &str, source: impl fmt::Display) -> Self {
        tracing::warn!(error = %source, dependency, "dependency unavailable");
        Error::new(
            ErrorKind::Unavailable,
            format!("{dependency} is unavailable, retry later"),
        )
    }

    /// Returns the kind.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// Returns the client-facing message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}: {}", self.kind, self.message)
    }
}

impl std::error::Error for Error {}

impl From<sqlx::Error> for Error {
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_) => Error::unavailable("the database", e),
            sqlx::Error::Database(d) if is_transient(d.code().as_deref()) => {
                Error::unavailable("the database (busy)", e)
            }
            sqlx::Error::Database(d) if is_connection_lost(d.code().as_deref()) => {
                Error::unavailable("the database", e)
            }
            _ => Error::internal("talking to the database", e),
        }
    }
}

/// Returns whether a database error code means "busy, retry": SQLite BUSY /
/// LOCKED (and their extended codes), PostgreSQL serialization failure,
/// deadlock, lock not available, statement cancelled.
fn is_transient(code: Option<&str>) -> bool {
    match code {
        Some(c) if c.starts_with("40") || c == "55P03" || c == "57014" => true,
        // SQLite's (extended) result codes; SQLSTATEs always have 5 characters.
        Some(c) if c.len() < 5 => c.parse::<i64>().is_ok_and(|n| matches!(n & 0xff, 5 | 6)),
        Some(_) => false,
        None => false,
    }
}

/// PostgreSQL's SQLSTATEs for a connection that went away under the call: a
/// backend terminated by an operator or a failover (57P01, 57P02, 57P03), or
/// any connection exception (class 08). The transaction was rolled back; a
/// retry on a new connection is the cure.
fn is_connection_lost(code: Option<&str>) -> bool {
    code.is_some_and(|c| matches!(c, "57P01" | "57P02" | "57P03") || c.starts_with("08"))
}

/// The result type of domain and store code.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lost_database_connection_is_unavailable() {
        for code in ["57P01", "57P02", "57P03", "08006", "08003"] {
            assert!(is_connection_lost(Some(code)), "{code}");
        }
        for code in ["23505", "42601", "57014"] {
            assert!(!is_connection_lost(Some(code)), "{code}");
        }
    }

    #[test]
    fn driver_errors_do_not_reach_the_client() {
        let e: Error = sqlx::Error::Protocol("syntax error at SELECT secret FROM".into()).into();
        assert_eq!(e.kind(), ErrorKind::Internal);
        assert!(!e.message().contains("SELECT"), "{}", e.message());
    }
}

//! A client of a Switchyard server: a channel to an address, the bearer
//! token on every call, and retries of calls refused as UNAVAILABLE.
//!
//! The CLI's client commands (`switchyard-cli`), the benches and the test
//! harness all use it.
//!
//! ```no_run
//! # async fn example() -> Result<(), switchyard_api::client::ClientError> {
//! use switchyard_api::{v1::EvaluateFlagRequest, client::{Client, Retry}};
//! let client = Client::connect("127.0.0.1:50051", "my-token").await?;
//! let reply = Retry::default()
//!     .call(|| async {
//!         client
//!             .flags()
//!             .evaluate_flag(EvaluateFlagRequest {
//!                 flag_key: "new-ui".into(),
//!                 ..Default::default()
//!             })
//!             .await
//!     })
//!     .await?;
//! # let _ = reply; Ok(()) }
//! ```

use std::{fmt, future::Future, time::Duration};

use crate::health::health_client::HealthClient;
use tonic::{
    Code, Status,
    metadata::{Ascii, MetadataValue},
    service::{Interceptor, interceptor::InterceptedService},
    transport::{Channel, Endpoint},
};

use crate::v1::{
    flag_service_client::FlagServiceClient, gating_service_client::GatingServiceClient,
    tenant_service_client::TenantServiceClient, token_service_client::TokenServiceClient,
};

/// A channel with the bearer token added to every call.
pub type Authed = InterceptedService<Channel, Bearer>;

/// Why a client could not be made.
#[derive(Debug)]
pub enum ClientError {
    /// The address is not `host:port` or an `http(s)://` URL.
    BadAddress(String),
    /// The token cannot be sent as an HTTP header value.
    BadToken,
    /// The server did not accept a connection.
    Connect(String),
    /// A call failed.
    Call(Status),
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::BadAddress(a) => write!(f, "{a:?} is not host:port or an http(s):// URL"),
            ClientError::BadToken => {
                f.write_str("the token contains characters a header cannot carry")
            }
            ClientError::Connect(e) => write!(f, "cannot connect: {e}"),
            ClientError::Call(s) => write!(f, "{}: {}", s.code(), s.message()),
        }
    }
}

impl std::error::Error for ClientError {}

impl From<Status> for ClientError {
    fn from(s: Status) -> Self {
        ClientError::Call(s)
    }
}

/// `e` and its causes, in one line (a transport error says little alone).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut line = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !line.contains(&s_text) {
            line.push_str(": ");
            line.push_str(&s_text);
        }
        source = s.source();
    }
    line
}

/// Returns the endpoint of `target`: `host:port` (plain HTTP/2) or a URL.
pub fn endpoint(target: &str) -> Result<Endpoint, ClientError> {
    let url = if target.starts_with("http://") || target.starts_with("https://") {
        target.to_owned()
    } else {
        format!("http://{target}")
    };
    Endpoint::from_shared(url).map_err(|_| ClientError::BadAddress(target.to_owned()))
}

/// Adds `authorization: Bearer <token>` to every call (nothing when empty).
#[derive(Clone)]
pub struct Bearer(Option<MetadataValue<Ascii>>);

impl fmt::Debug for Bearer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() {
            "Bearer(<redacted>)"
        } else {
            "Bearer(none)"
        })
    }
}

impl Bearer {
    /// The interceptor for `token`; empty sends no header.
    ///
    /// # Panics
    /// When the token is not a valid header value; use [`Bearer::try_new`]
    /// for tokens from outside.
    pub fn new(token: &str) -> Bearer {
        Bearer::try_new(token).expect("a bearer token of visible ASCII")
    }

    /// The interceptor for `token`, or [`ClientError::BadToken`].
    pub fn try_new(token: &str) -> Result<Bearer, ClientError> {
        if token.is_empty() {
            return Ok(Bearer(None));
        }
        format!("Bearer {token}")
            .parse()
            .map(|v| Bearer(Some(v)))
            .map_err(|_| ClientError::BadToken)
    }
}

impl Interceptor for Bearer {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, Status> {
        if let Some(v) = &self.0 {
            req.metadata_mut().insert("authorization", v.clone());
        }
        Ok(req)
    }
}

/// A connection to one server with one token. Cheap to clone; clones share
/// the HTTP/2 connection.
#[derive(Clone, Debug)]
pub struct Client {
    channel: Channel,
    bearer: Bearer,
}

impl Client {
    /// Connects to `target` (`host:port` or a URL) once.
    pub async fn connect(target: &str, token: &str) -> Result<Client, ClientError> {
        Client::connect_to(endpoint(target)?, token).await
    }

    /// Connects through `endpoint` (with whatever window sizes or timeouts it
    /// sets) once.
    pub async fn connect_to(endpoint: Endpoint, token: &str) -> Result<Client, ClientError> {
        let bearer = Bearer::try_new(token)?;
        let channel = endpoint
            .connect()
            .await
            .map_err(|e| ClientError::Connect(error_chain(&e)))?;
        Ok(Client { channel, bearer })
    }

    /// A client of `endpoint` that connects at its first call (for a server
    /// that may never be called over gRPC).
    pub fn connect_lazy(endpoint: Endpoint, token: &str) -> Result<Client, ClientError> {
        let bearer = Bearer::try_new(token)?;
        Ok(Client {
            channel: endpoint.connect_lazy(),
            bearer,
        })
    }

    /// Connects to `target`, retrying every 5 ms until the server accepts or
    /// `patience` has passed (a server that is starting).
    pub async fn connect_patiently(
        target: &str,
        token: &str,
        patience: Duration,
    ) -> Result<Client, ClientError> {
        let endpoint = endpoint(target)?;
        let deadline = tokio::time::Instant::now() + patience;
        loop {
            match Client::connect_to(endpoint.clone(), token).await {
                Ok(c) => return Ok(c),
                Err(ClientError::Connect(e)) if tokio::time::Instant::now() >= deadline => {
                    return Err(ClientError::Connect(e));
                }
                Err(ClientError::Connect(_)) => tokio::time::sleep(Duration::from_millis(5)).await,
                Err(e) => return Err(e),
            }
        }
    }

    /// A client over an existing channel.
    pub fn from_channel(channel: Channel, token: &str) -> Result<Client, ClientError> {
        Ok(Client {
            channel,
            bearer: Bearer::try_new(token)?,
        })
    }

    /// Returns the channel (without the token).
    pub fn channel(&self) -> Channel {
        self.channel.clone()
    }

    fn authed(&self) -> Authed {
        InterceptedService::new(self.channel.clone(), self.bearer.clone())
    }

    /// `switchyard.v1.TenantService`.
    pub fn tenants(&self) -> TenantServiceClient<Authed> {
        TenantServiceClient::new(self.authed())
    }

    /// `switchyard.v1.FlagService`.
    pub fn flags(&self) -> FlagServiceClient<Authed> {
        FlagServiceClient::new(self.authed())
    }

    /// `switchyard.v1.GatingService`.
    pub fn gating(&self) -> GatingServiceClient<Authed> {
        GatingServiceClient::new(self.authed())
    }

    /// `switchyard.v1.TokenService`.
    pub fn tokens(&self) -> TokenServiceClient<Authed> {
        TokenServiceClient::new(self.authed())
    }

    /// `grpc.health.v1.Health` (public: no token is sent).
    pub fn health(&self) -> HealthClient<Channel> {
        HealthClient::new(self.channel.clone())
    }
}

/// Retries of calls that failed with UNAVAILABLE (the server restarting, a
/// dependency briefly down), with exponential backoff. Other failures are
/// returned at once.
#[derive(Debug, Clone, Copy)]
pub struct Retry {
    /// The most attempts, the first included.
    pub attempts: u32,
    /// The wait after the first failure; doubled after each.
    pub backoff: Duration,
    /// The longest wait.
    pub max_backoff: Duration,
}

impl Default for Retry {
    /// 5 attempts, waiting 50 ms, 100 ms, 200 ms, 400 ms.
    fn default() -> Self {
        Retry {
            attempts: 5,
            backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(2),
        }
    }
}

impl Retry {
    /// Never retries.
    pub const NONE: Retry = Retry {
        attempts: 1,
        backoff: Duration::ZERO,
        max_backoff: Duration::ZERO,
    };

    /// Runs `call` until it succeeds, fails with another code than
    /// UNAVAILABLE, or the attempts are spent; returns the last answer.
    pub async fn call<T, F, Fut>(&self, mut call: F) -> Result<T, Status>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, Status>>,
    {
        let mut wait = self.backoff;
        let mut attempt = 1;
        loop {
            match call().await {
                Err(s) if s.code() == Code::Unavailable && attempt < self.attempts => {
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(self.max_backoff);
                    attempt += 1;
                }
                other => return other,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    #[test]
    fn targets_are_host_port_or_urls() {
        assert_eq!(
            endpoint("127.0.0.1:50051").unwrap().uri().to_string(),
            "http://127.0.0.1:50051/"
        );
        assert!(endpoint("https://example.com").is_ok());
        assert!(matches!(
            endpoint("not a host"),
            Err(ClientError::BadAddress(_))
        ));
        assert!(matches!(
            Bearer::try_new("a\nb"),
            Err(ClientError::BadToken)
        ));
    }

    #[tokio::test]
    async fn unavailable_is_retried_and_other_codes_are_not() {
        let retry = Retry {
            attempts: 3,
            backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(1),
        };
        let calls = AtomicU32::new(0);
        let r: Result<(), Status> = retry
            .call(|| async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err(Status::unavailable("down"))
            })
            .await;
        assert_eq!(
            (r.unwrap_err().code(), calls.load(Ordering::SeqCst)),
            (Code::Unavailable, 3)
        );
        calls.store(0, Ordering::SeqCst);
        let r: Result<u32, Status> = retry
            .call(|| async {
                match calls.fetch_add(1, Ordering::SeqCst) {
                    0 => Err(Status::unavailable("down")),
                    n => Ok(n),
                }
            })
            .await;
        assert_eq!(r.unwrap(), 1);
        calls.store(0, Ordering::SeqCst);
        let r: Result<(), Status> = retry
            .call(|| async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err(Status::not_found("no"))
            })
            .await;
        assert_eq!(
            (r.unwrap_err().code(), calls.load(Ordering::SeqCst)),
            (Code::NotFound, 1)
        );
    }
}

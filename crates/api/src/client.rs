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

use std::{fmt, future::Future, path::Path, sync::Arc, time::Duration};

use crate::health::health_client::HealthClient;
use tonic::{
    Code, Status,
    metadata::{Ascii, MetadataValue},
    service::{Interceptor, interceptor::InterceptedService},
    transport::{Channel, ClientTlsConfig, Endpoint, Identity},
};

use crate::v1::{
    audit_service_client::AuditServiceClient, flag_service_client::FlagServiceClient,
    gating_service_client::GatingServiceClient, rollout_service_client::RolloutServiceClient,
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
    /// The TLS settings cannot be used (a file, or TLS to an `http://` address).
    Tls(String),
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
            ClientError::Tls(e) => f.write_str(e),
            ClientError::Call(s) => {
                write!(f, "{}: {}", s.code(), s.message())?;
                // A transport failure (a TLS alert, a reset) says why in
                // its causes.
                match std::error::Error::source(s) {
                    Some(cause) => {
                        let chain = with_tls_hint(error_chain(cause));
                        if s.message().contains(&chain) {
                            Ok(())
                        } else {
                            write!(f, ": {chain}")
                        }
                    }
                    None => Ok(()),
                }
            }
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

/// `error` with what to do when TLS is why the connection failed.
fn with_tls_hint(error: String) -> String {
    let hint = if error.contains("UnknownIssuer") {
        "the server's certificate does not come from a CA trusted here: give its CA \
         certificate (--ca-cert)"
    } else if error.contains("NotValidForName") {
        "the server's certificate does not name this address: use a name it is issued for"
    } else if error.contains("NotValidYet") {
        "the server's certificate is not valid yet: is this machine's clock right?"
    } else if error.contains("Expired") && error.contains("certificate") {
        "the certificate has expired"
    } else if error.contains("invalid peer certificate") {
        "the server's certificate cannot be trusted"
    } else if error.contains("CertificateRequired") {
        "the server asks for a client certificate (--client-cert, --client-key)"
    } else if error.contains("InvalidContentType") || error.contains("corrupt message") {
        "the server does not speak TLS: use http://"
    } else if error.contains("h2 protocol error") || error.contains("frame with invalid size") {
        "if the server speaks TLS, use https://"
    } else {
        return error;
    };
    format!("{error} ({hint})")
}

/// Returns the endpoint of `target`: `host:port` (plain HTTP/2) or a URL
/// (`https://` with the system's CAs).
pub fn endpoint(target: &str) -> Result<Endpoint, ClientError> {
    endpoint_with(target, &TlsOptions::default())
}

/// Returns the endpoint of `target` with `tls` for an `https://` URL (a
/// plain address ignores them: a canary may speak TLS and its baseline not).
pub fn endpoint_with(target: &str, tls: &TlsOptions) -> Result<Endpoint, ClientError> {
    let https = target.starts_with("https://");
    let url = if target.starts_with("http://") || https {
        target.to_owned()
    } else {
        format!("http://{target}")
    };
    let endpoint =
        Endpoint::from_shared(url).map_err(|_| ClientError::BadAddress(target.to_owned()))?;
    if !https {
        return Ok(endpoint);
    }
    endpoint
        .tls_config(tls.grpc()?)
        .map_err(|e| ClientError::Tls(format!("{target}: {}", error_chain(&e))))
}

/// Makes one TLS connection to `target` (an `https://` URL; anything else
/// passes) and reads the server's first HTTP/2 frame, so that a server that
/// asks for a client certificate and gets none, or refuses the one sent, is
/// said plainly before any call: with TLS 1.3 a client learns it only after
/// its handshake, and a call then fails as a closed connection. Other
/// failures are left to the connection itself, which says them.
pub async fn check_tls(target: &str, tls: &TlsOptions) -> Result<(), ClientError> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(uri) = target.parse::<http::Uri>() else {
        return Ok(());
    };
    let (Some("https"), Some(host)) = (uri.scheme_str(), uri.host()) else {
        return Ok(());
    };
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let port = uri.port_u16().unwrap_or(443);
    let asked = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut config = tls.rustls(true)?;
    config.client_auth_cert_resolver = Arc::new(AskedFor {
        inner: config.client_auth_cert_resolver.clone(),
        asked: asked.clone(),
    });
    config.alpn_protocols = vec![b"h2".to_vec()];
    let Ok(name) = rustls::pki_types::ServerName::try_from(host.clone()) else {
        return Ok(());
    };
    let attempt = async {
        let tcp = tokio::net::TcpStream::connect((host.as_str(), port)).await?;
        let mut stream = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await?;
        // The client preface and an empty SETTINGS frame; the server
        // answers with its SETTINGS, or with the alert.
        stream
            .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
            .await?;
        let mut frame = [0u8; 9];
        stream.read(&mut frame).await
    };
    let Ok(Err(e)) = tokio::time::timeout(Duration::from_secs(5), attempt).await else {
        return Ok(());
    };
    // Only the server's refusal of this client: a server certificate not
    // trusted here fails after the server asked too, and is the
    // connection's to say (with its own hint).
    use rustls::AlertDescription as A;
    let refused = matches!(
        e.get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>()),
        Some(rustls::Error::AlertReceived(
            A::CertificateRequired
                | A::BadCertificate
                | A::UnknownCA
                | A::CertificateUnknown
                | A::CertificateExpired
                | A::CertificateRevoked
                | A::UnsupportedCertificate
                | A::AccessDenied
                | A::HandshakeFailure
                | A::DecryptError
        ))
    );
    if !refused || !asked.load(std::sync::atomic::Ordering::Relaxed) {
        return Ok(());
    }
    Err(ClientError::Tls(if tls.identity_pem.is_none() {
        format!(
            "{target}: the server asks for a client certificate (--client-cert, --client-key): {e}"
        )
    } else {
        format!(
            "{target}: the server refused the client certificate (it does not come from the \
             server's tls_client_ca?): {e}"
        )
    }))
}

/// Passes the server's request for a client certificate on, and notes it.
#[derive(Debug)]
struct AskedFor {
    inner: Arc<dyn rustls::client::ResolvesClientCert>,
    asked: Arc<std::sync::atomic::AtomicBool>,
}

impl rustls::client::ResolvesClientCert for AskedFor {
    fn resolve(
        &self,
        root_hint_subjects: &[&[u8]],
        sigschemes: &[rustls::SignatureScheme],
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        self.asked.store(true, std::sync::atomic::Ordering::Relaxed);
        self.inner.resolve(root_hint_subjects, sigschemes)
    }

    fn has_certs(&self) -> bool {
        self.inner.has_certs()
    }
}

/// The cryptography of every TLS connection, the server's and the clients':
/// *ring*'s. (rustls now prefers aws-lc-rs, for its post-quantum key
/// exchange; it is a C library whose build would add minutes to a fresh
/// clone's first build. TLS 1.3 with X25519 is what *ring* negotiates.)
#[allow(deprecated)]
pub fn crypto_provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// How `https://` servers are reached: the CAs their certificates must come
/// from (the system's when none are given) and the client certificate sent
/// to a server that asks for one.
#[derive(Clone, Debug, Default)]
pub struct TlsOptions {
    ca_pem: Option<Vec<u8>>,
    identity_pem: Option<(Vec<u8>, Vec<u8>)>,
}

impl TlsOptions {
    /// Reads the PEM files given: the CA certificates, and a client
    /// certificate with its key (both or neither).
    pub fn from_files(
        ca_cert: Option<&Path>,
        client_cert: Option<&Path>,
        client_key: Option<&Path>,
    ) -> Result<TlsOptions, ClientError> {
        let read = |path: &Path, what: &str| {
            let bytes = std::fs::read(path)
                .map_err(|e| ClientError::Tls(format!("{}: {e}", path.display())))?;
            if !String::from_utf8_lossy(&bytes).contains("-----BEGIN ") {
                return Err(ClientError::Tls(format!(
                    "{}: not PEM (a {what} block is expected)",
                    path.display()
                )));
            }
            Ok(bytes)
        };
        let ca_pem = ca_cert.map(|p| read(p, "CERTIFICATE")).transpose()?;
        let identity_pem = match (client_cert, client_key) {
            (None, None) => None,
            (Some(cert), Some(key)) => {
                Some((read(cert, "CERTIFICATE")?, read(key, "PRIVATE KEY")?))
            }
            _ => {
                return Err(ClientError::Tls(
                    "a client certificate needs its key, and a key its certificate".into(),
                ));
            }
        };
        let options = TlsOptions {
            ca_pem,
            identity_pem,
        };
        // Read through once here, so a bad file is said before any call
        // (the system's CAs are not read for that).
        options.rustls(false)?;
        Ok(options)
    }

    /// Whether anything is set (beyond the system's CAs).
    pub fn is_set(&self) -> bool {
        self.ca_pem.is_some() || self.identity_pem.is_some()
    }

    /// The CAs a server's certificate must come from: `--ca-cert`'s, else
    /// the system's.
    fn roots(&self) -> Result<rustls::RootCertStore, ClientError> {
        use rustls::pki_types::{CertificateDer, pem::PemObject};
        let Some(pem) = &self.ca_pem else {
            return Ok(system_roots().clone());
        };
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(pem) {
            let cert = cert.map_err(|e| ClientError::Tls(format!("the CA certificates: {e}")))?;
            roots
                .add(cert)
                .map_err(|e| ClientError::Tls(format!("the CA certificates: {e}")))?;
        }
        if roots.is_empty() {
            return Err(ClientError::Tls(
                "the CA file holds no CERTIFICATE block".into(),
            ));
        }
        Ok(roots)
    }

    /// tonic's TLS settings (HTTP/2 offered by ALPN).
    fn grpc(&self) -> Result<ClientTlsConfig, ClientError> {
        let mut config = ClientTlsConfig::new().trust_anchors(self.roots()?.roots);
        if let Some((cert, key)) = &self.identity_pem {
            config = config.identity(Identity::from_pem(cert, key));
        }
        Ok(config)
    }

    /// rustls's client settings, for HTTP clients other than tonic's (which
    /// set the ALPN protocols they speak themselves); `https` false (no
    /// https:// URL to call) trusts no CA and reads none.
    pub fn rustls(&self, https: bool) -> Result<rustls::ClientConfig, ClientError> {
        use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
        let bad = |what: &str, e: &dyn fmt::Display| ClientError::Tls(format!("{what}: {e}"));
        let roots = if https || self.ca_pem.is_some() {
            self.roots()?
        } else {
            rustls::RootCertStore::empty()
        };
        let builder = rustls::ClientConfig::builder_with_provider(crypto_provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| bad("TLS", &e))?
            .with_root_certificates(roots);
        let config = match &self.identity_pem {
            None => builder.with_no_client_auth(),
            Some((cert, key)) => {
                let chain = CertificateDer::pem_slice_iter(cert)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| bad("the client certificate", &e))?;
                if chain.is_empty() {
                    return Err(ClientError::Tls(
                        "the client certificate file holds no CERTIFICATE block".into(),
                    ));
                }
                let key =
                    PrivateKeyDer::from_pem_slice(key).map_err(|e| bad("the client key", &e))?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| bad("the client certificate and key", &e))?
            }
        };
        Ok(config)
    }
}

/// The system's CAs, read once; Mozilla's (webpki-roots) where the system
/// has none (a minimal container image without `ca-certificates`).
fn system_roots() -> &'static rustls::RootCertStore {
    static ROOTS: std::sync::OnceLock<rustls::RootCertStore> = std::sync::OnceLock::new();
    ROOTS.get_or_init(|| {
        let mut roots = rustls::RootCertStore::empty();
        roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
        if roots.is_empty() {
            roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        }
        roots
    })
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
            .map_err(|e| ClientError::Connect(with_tls_hint(error_chain(&e))))?;
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

    /// `switchyard.v1.AuditService`.
    pub fn audit(&self) -> AuditServiceClient<Authed> {
        AuditServiceClient::new(self.authed())
    }

    /// `switchyard.v1.RolloutService`.
    pub fn rollouts(&self) -> RolloutServiceClient<Authed> {
        RolloutServiceClient::new(self.authed())
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

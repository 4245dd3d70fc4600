//! TLS on the one listener (`tls_cert`, `tls_key`, `tls_client_ca`): every
//! connection is a TLS connection, its protocol agreed by ALPN (`h2` for
//! gRPC, `http/1.1` for REST, SSE and gRPC-Web over HTTP/1.1).
//!
//! The files are read at start (a file that cannot be used stops the start,
//! naming it) and watched: within a second of one changing, the next
//! connections get the new certificate, key or client CAs. Files that
//! cannot be used (a key written before its certificate, say) are said once
//! and the previous ones kept, so a renewal never takes the listener down.

use std::{
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, SystemTime},
};

use arc_swap::ArcSwap;
use rustls::{
    RootCertStore, ServerConfig,
    crypto::CryptoProvider,
    pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject},
    server::WebPkiClientVerifier,
};
use switchyard_core::{
    config::Listener,
    error::{Error, ErrorKind},
};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

/// How often the files are looked at.
const WATCH_EVERY: Duration = Duration::from_secs(1);
/// How many looks pass before files that could not be used are read again
/// although they did not change.
const RETRY_EVERY: u32 = 10;

/// What the files were when read: see [`TlsFiles::stamp`].
type Stamp = Vec<Option<(SystemTime, (i64, i64), u64, u64, u64)>>;

/// The files TLS is made of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The certificate chain (PEM), the listener's own first.
    pub cert: PathBuf,
    /// Its private key (PEM).
    pub key: PathBuf,
    /// The CAs client certificates must come from; `None`: none asked for.
    pub client_ca: Option<PathBuf>,
}

impl TlsFiles {
    /// The files the listener's settings name, `None` without TLS.
    pub fn from_settings(listener: &Listener) -> Option<TlsFiles> {
        Some(TlsFiles {
            cert: listener.tls_cert.as_ref()?.into(),
            key: listener.tls_key.as_ref()?.into(),
            client_ca: listener.tls_client_ca.as_ref().map(PathBuf::from),
        })
    }

    /// What each file is now (modified, changed, size, inode, device): a
    /// change to any (a permission change included), or a symlink pointed
    /// elsewhere (a Kubernetes secret's update), differs.
    fn stamp(&self) -> Stamp {
        [Some(&self.cert), Some(&self.key), self.client_ca.as_ref()]
            .into_iter()
            .flatten()
            .map(|p| {
                let m = std::fs::metadata(p).ok()?;
                Some((
                    m.modified().ok()?,
                    (m.ctime(), m.ctime_nsec()),
                    m.len(),
                    m.ino(),
                    m.dev(),
                ))
            })
            .collect()
    }
}

/// The listener's TLS settings, replaced when the files change.
#[derive(Debug)]
pub struct Tls {
    files: TlsFiles,
    config: ArcSwap<ServerConfig>,
    /// The files as they were just before they were read at start, so a
    /// change while the application starts is not missed.
    loaded: Stamp,
}

impl Tls {
    /// Reads the files; an error names the file and what is wrong with it.
    pub fn load(files: TlsFiles) -> Result<Arc<Tls>, Error> {
        let loaded = files.stamp();
        let config =
            server_config(&files).map_err(|e| Error::new(ErrorKind::InvalidArgument, e))?;
        Ok(Arc::new(Tls {
            files,
            config: ArcSwap::from_pointee(config),
            loaded,
        }))
    }

    /// An acceptor with the current certificate.
    pub fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.config.load_full())
    }

    /// Reads the files again whenever they change, until `stop`; files
    /// that could not be used are read again every [`RETRY_EVERY`] looks.
    pub fn watch(self: Arc<Self>, stop: CancellationToken) {
        tokio::spawn(async move {
            let mut seen = self.loaded.clone();
            let mut refused: Option<Stamp> = None;
            let mut looks = 0u32;
            loop {
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(WATCH_EVERY) => {}
                }
                looks = looks.wrapping_add(1);
                let now = self.files.stamp();
                let known_bad = refused.as_ref() == Some(&now);
                if now == seen || (known_bad && !looks.is_multiple_of(RETRY_EVERY)) {
                    continue;
                }
                match server_config(&self.files) {
                    Ok(config) => {
                        self.config.store(Arc::new(config));
                        tracing::info!(cert = %self.files.cert.display(), "TLS files changed: new connections use them");
                        seen = now;
                        refused = None;
                    }
                    Err(e) => {
                        // Said once per version of the files.
                        if !known_bad {
                            tracing::warn!(error = %e, "TLS files changed but cannot be used: new connections keep the previous ones");
                        }
                        refused = Some(now);
                    }
                }
            }
        });
    }
}

/// The rustls settings the files make, with `h2` and `http/1.1` offered.
fn server_config(files: &TlsFiles) -> Result<ServerConfig, String> {
    let provider = switchyard_api::client::crypto_provider();
    let chain = certificates("SWITCHYARD_TLS_CERT", &files.cert)?;
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|e| {
        format!(
            "SWITCHYARD_TLS_KEY {}: no private key read ({e}); a PEM `PRIVATE KEY`, \
             `RSA PRIVATE KEY` or `EC PRIVATE KEY` block is expected",
            files.key.display()
        )
    })?;
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?;
    let builder = match &files.client_ca {
        None => builder.with_no_client_auth(),
        Some(path) => builder.with_client_cert_verifier(client_verifier(path, provider.clone())?),
    };
    let mut config = builder.with_single_cert(chain, key).map_err(|e| {
        format!(
            "SWITCHYARD_TLS_KEY {} does not go with SWITCHYARD_TLS_CERT {}: {e}",
            files.key.display(),
            files.cert.display()
        )
    })?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// Every certificate of a PEM file; none is an error.
fn certificates(setting: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("{setting} {}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "{setting} {}: no certificate in it (a PEM `CERTIFICATE` block is expected)",
            path.display()
        ));
    }
    Ok(certs)
}

/// Accepts client certificates signed by a CA of `path`, and nothing else.
fn client_verifier(
    path: &Path,
    provider: Arc<CryptoProvider>,
) -> Result<Arc<dyn rustls::server::danger::ClientCertVerifier>, String> {
    let mut roots = RootCertStore::empty();
    for cert in certificates("SWITCHYARD_TLS_CLIENT_CA", path)? {
        roots
            .add(cert)
            .map_err(|e| format!("SWITCHYARD_TLS_CLIENT_CA {}: {e}", path.display()))?;
    }
    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
        .build()
        .map_err(|e| format!("SWITCHYARD_TLS_CLIENT_CA {}: {e}", path.display()))
}

//! Downstream TLS: the certificate the public TLS listener presents, reloaded without a restart.
//!
//! The listener asks [`CertStore`] for the certificate at every handshake, so a new certificate
//! and key (read on SIGHUP, or when their files change) serve the next handshake while
//! established connections go on with the one they negotiated. A pair that cannot be read or
//! does not match is refused and the current one keeps serving. Protocols are TLS 1.2 and 1.3
//! only; ALPN offers `h2` then `http/1.1`.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use pingora::tls::sign::CertifiedKey;
use pingora::tls::{CertificateDer, ClientHello, CryptoProvider, PrivateKeyDer, ResolvesServerCert};

use crate::telemetry::Metrics;

/// The certificate and key files, and what was last loaded from them.
pub struct CertStore {
    cert_path: PathBuf,
    key_path: PathBuf,
    current: ArcSwap<CertifiedKey>,
    /// Content hash of the two files last loaded (or refused): polling reacts to changes only.
    last: Mutex<u64>,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for CertStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertStore")
            .field("cert_path", &self.cert_path)
            .field("key_path", &self.key_path)
            .finish_non_exhaustive()
    }
}

impl CertStore {
    /// Load the pair once; an error here stops the start.
    pub fn load(cert_path: &Path, key_path: &Path, metrics: Arc<Metrics>) -> anyhow::Result<Self> {
        pingora::tls::install_default_crypto_provider();
        let key = read_pair(cert_path, key_path)?;
        Ok(CertStore {
            cert_path: cert_path.to_path_buf(),
            key_path: key_path.to_path_buf(),
            current: ArcSwap::from_pointee(key),
            last: Mutex::new(files_hash(cert_path, key_path).unwrap_or(0)),
            metrics,
        })
    }

    /// Read the pair again; on success new handshakes present it.
    pub fn reload(&self, trigger: &str) -> anyhow::Result<()> {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        *last = files_hash(&self.cert_path, &self.key_path).unwrap_or(0);
        match read_pair(&self.cert_path, &self.key_path) {
            Ok(key) => {
                self.current.store(Arc::new(key));
                self.metrics.tls_reloads.with_label_values(&["ok"]).inc();
                tracing::info!(trigger, cert = %self.cert_path.display(), "tls certificate reloaded");
                Ok(())
            }
            Err(e) => {
                self.metrics.tls_reloads.with_label_values(&["refused"]).inc();
                tracing::error!(trigger, error = %format!("{e:#}"), "tls certificate reload refused; the current one keeps serving");
                Err(e)
            }
        }
    }

    /// Reload if either file's content changed since the last load.
    pub fn reload_if_changed(&self) {
        let now = files_hash(&self.cert_path, &self.key_path);
        let changed = {
            let last = self.last.lock().unwrap_or_else(|p| p.into_inner());
            now.is_some_and(|h| h != *last)
        };
        if changed {
            let _ = self.reload("file_change");
        }
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

/// The certificate chain and private key in PEM files, checked to belong together.
fn read_pair(cert_path: &Path, key_path: &Path) -> anyhow::Result<CertifiedKey> {
    use anyhow::Context;
    let certs: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut std::io::BufReader::new(
        std::fs::File::open(cert_path).with_context(|| format!("cannot open {}", cert_path.display()))?,
    ))
    .collect::<Result<_, _>>()
    .with_context(|| format!("cannot read certificates from {}", cert_path.display()))?;
    anyhow::ensure!(!certs.is_empty(), "no certificate in {}", cert_path.display());
    let key: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut std::io::BufReader::new(
        std::fs::File::open(key_path).with_context(|| format!("cannot open {}", key_path.display()))?,
    ))
    .with_context(|| format!("cannot read the private key in {}", key_path.display()))?
    .with_context(|| format!("no private key in {}", key_path.display()))?;
    pingora::tls::install_default_crypto_provider();
    let provider = CryptoProvider::get_default().context("no TLS crypto provider installed")?;
    let signing = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| anyhow::anyhow!("unusable private key in {}: {e}", key_path.display()))?;
    let pair = CertifiedKey::new(certs, signing);
    pair.keys_match().map_err(|e| {
        anyhow::anyhow!(
            "{} and {} do not belong together: {e}",
            cert_path.display(),
            key_path.display()
        )
    })?;
    Ok(pair)
}

fn files_hash(cert: &Path, key: &Path) -> Option<u64> {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    std::fs::read(cert).ok()?.hash(&mut h);
    std::fs::read(key).ok()?.hash(&mut h);
    Some(h.finish())
}

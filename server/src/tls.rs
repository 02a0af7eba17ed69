//! TLS for both network faces, with rustls: a certificate and key make Flight SQL (gRPC) and the
//! HTTP API speak TLS only; a client CA makes both ask every client for a certificate signed by
//! it (mutual TLS). One set of options, `--tls-cert`, `--tls-key`, `--tls-client-ca`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::Args;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use crate::error::{Error, Result};

/// TLS options of `tributary serve`.
#[derive(Debug, Args, Clone)]
pub struct TlsArgs {
    /// PEM certificate chain of the server: Flight SQL and HTTP then speak TLS only.
    #[arg(long, env = "TRIBUTARY_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key of the server certificate.
    #[arg(long, env = "TRIBUTARY_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// PEM certificate(s) of the CA that signs client certificates: every client must then
    /// present one (mutual TLS).
    #[arg(long, env = "TRIBUTARY_TLS_CLIENT_CA", requires = "tls_cert")]
    pub tls_client_ca: Option<PathBuf>,
}

/// Two TLS backends are linked (ring here, aws-lc-rs through the S3 client): tonic, server and
/// client, uses the process default, so name one before it builds a TLS config.
pub fn use_ring_by_default() {
    // An error only means a default is installed already.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

fn read(path: &Path, what: &str) -> Result<Vec<u8>> {
    std::fs::read(path)
        .map_err(|e| Error::BadInput(format!("cannot read the {what} {}: {e}", path.display())))
}

impl TlsArgs {
    /// True when TLS is configured.
    pub fn enabled(&self) -> bool {
        self.tls_cert.is_some()
    }

    /// The gRPC server's TLS settings.
    pub fn tonic(&self) -> Result<Option<tonic::transport::ServerTlsConfig>> {
        let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) else {
            return Ok(None);
        };
        use_ring_by_default();
        let mut config = tonic::transport::ServerTlsConfig::new().identity(
            tonic::transport::Identity::from_pem(
                read(cert, "certificate")?,
                read(key, "private key")?,
            ),
        );
        if let Some(ca) = &self.tls_client_ca {
            config = config.client_ca_root(tonic::transport::Certificate::from_pem(read(
                ca,
                "client CA",
            )?));
        }
        Ok(Some(config))
    }

    /// The HTTP server's TLS settings (checked at start: a bad file fails `serve`, not a client).
    pub fn rustls(&self) -> Result<Option<Arc<rustls::ServerConfig>>> {
        let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) else {
            return Ok(None);
        };
        let bad = |what: &str, path: &Path, e: &dyn std::fmt::Display| {
            Error::BadInput(format!(
                "the {what} {} is not valid PEM: {e}",
                path.display()
            ))
        };
        let chain: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(&read(cert, "certificate")?)
                .collect::<std::result::Result<_, _>>()
                .map_err(|e| bad("certificate", cert, &e))?;
        if chain.is_empty() {
            return Err(Error::BadInput(format!(
                "no certificate in {}",
                cert.display()
            )));
        }
        let private_key = PrivateKeyDer::from_pem_slice(&read(key, "private key")?)
            .map_err(|e| bad("private key", key, &e))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::BadInput(format!("TLS: {e}")))?;
        let builder = match &self.tls_client_ca {
            Some(ca) => {
                let mut roots = rustls::RootCertStore::empty();
                for certificate in CertificateDer::pem_slice_iter(&read(ca, "client CA")?) {
                    let certificate = certificate.map_err(|e| bad("client CA", ca, &e))?;
                    roots
                        .add(certificate)
                        .map_err(|e| bad("client CA", ca, &e))?;
                }
                let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots),
                    provider,
                )
                .build()
                .map_err(|e| bad("client CA", ca, &e))?;
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        let mut config = builder
            .with_single_cert(chain, private_key)
            .map_err(|e| Error::BadInput(format!("the TLS certificate and key do not fit: {e}")))?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Some(Arc::new(config)))
    }
}

/// A listener whose connections have completed a TLS handshake (each in its own task, so a slow
/// or failing client never holds up the others).
#[derive(Debug)]
pub struct TlsListener {
    accepted: tokio::sync::mpsc::Receiver<(TlsStream<tokio::net::TcpStream>, SocketAddr)>,
    local: SocketAddr,
}

impl TlsListener {
    /// Accepts TLS connections on `listener`.
    pub fn new(listener: TcpListener, config: Arc<rustls::ServerConfig>) -> std::io::Result<Self> {
        let local = listener.local_addr()?;
        let acceptor = TlsAcceptor::from(config);
        let (sender, accepted) = tokio::sync::mpsc::channel(64);
        tokio::spawn(async move {
            loop {
                let (stream, peer) = match listener.accept().await {
                    Ok(connection) => connection,
                    Err(e) => {
                        tracing::warn!("cannot accept an HTTP connection: {e}");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let acceptor = acceptor.clone();
                let handed = sender.clone();
                tokio::spawn(async move {
                    match tokio::time::timeout(
                        std::time::Duration::from_secs(10),
                        acceptor.accept(stream),
                    )
                    .await
                    {
                        Ok(Ok(tls)) => {
                            let _ = handed.send((tls, peer)).await;
                        }
                        Ok(Err(e)) => tracing::debug!(%peer, "TLS handshake failed: {e}"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                });
                if sender.is_closed() {
                    break;
                }
            }
        });
        Ok(Self { accepted, local })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<tokio::net::TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.accepted.recv().await {
            Some(connection) => connection,
            // The accepting task ended: nothing more will come.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

//! The HTTPS certificate: PEM files (the chart's Secret, cert-manager's), or for a demo a
//! self-signed one made at start.

use std::path::Path;
use std::sync::Arc;
use tokio_rustls::TlsAcceptor;

/// An acceptor for PEM files, as the registrar's TLS listener reads them.
pub fn from_files(cert: &Path, key: &Path) -> anyhow::Result<TlsAcceptor> {
    switchboard_registrar::transport::tls::acceptor(cert, key)
}

/// A self-signed certificate for `names` (DNS names or IP addresses): the acceptor and the
/// certificate's PEM, which clients are given to trust.
pub fn self_signed(names: &[String]) -> anyhow::Result<(TlsAcceptor, String)> {
    let cert = rcgen::generate_simple_self_signed(names.to_vec())?;
    let pem = cert.cert.pem();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(cert.signing_key.serialize_der().into());
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_single_cert(vec![cert.cert.der().clone()], key)?;
    Ok((TlsAcceptor::from(Arc::new(config)), pem))
}

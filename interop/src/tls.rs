//! Manual-TLS material for the interop cells: a CA and two leaf certificates, written as PEM files
//! that the Go and Rust fixtures load from the directory in `FIXTURE_TLS_DIR`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use plugwire_runtime::tls::{TlsConfigs, provider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// The variable naming the directory with `ca.pem`, `plugin.pem`, `plugin.key`, `host.pem`,
/// `host.key`.
pub const TLS_DIR_VAR: &str = "FIXTURE_TLS_DIR";

/// Writes a fresh CA and a leaf for each side (SAN `localhost` and `127.0.0.1`, client and server
/// auth) into `dir`.
pub fn write_material(dir: &Path) -> anyhow::Result<()> {
    let ca_key = rcgen::KeyPair::generate()?;
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new())?;
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "plugwire interop CA");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    let ca = ca_params.self_signed(&ca_key)?;
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    std::fs::write(dir.join("ca.pem"), ca.pem())?;
    for side in ["plugin", "host"] {
        let key = rcgen::KeyPair::generate()?;
        let mut params =
            rcgen::CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])?;
        params.distinguished_name.push(
            rcgen::DnType::CommonName,
            format!("plugwire interop {side}"),
        );
        params.extended_key_usages = vec![
            rcgen::ExtendedKeyUsagePurpose::ServerAuth,
            rcgen::ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let cert = params.signed_by(&key, &issuer)?;
        std::fs::write(dir.join(format!("{side}.pem")), cert.pem())?;
        std::fs::write(dir.join(format!("{side}.key")), key.serialize_pem())?;
    }
    Ok(())
}

/// A directory of material shared by every cell of one test process.
pub fn shared_material() -> PathBuf {
    static DIR: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("no temp dir: {e}"));
        write_material(dir.path()).unwrap_or_else(|e| panic!("TLS material: {e}"));
        dir
    })
    .path()
    .to_path_buf()
}

/// rustls configurations for `side` (`"plugin"` or `"host"`) from the material in `dir`: present
/// that side's certificate, trust the CA, require client certificates.
pub fn configs(dir: &Path, side: &str) -> anyhow::Result<TlsConfigs> {
    let ca = CertificateDer::from_pem_file(dir.join("ca.pem"))?;
    let cert = CertificateDer::from_pem_file(dir.join(format!("{side}.pem")))?;
    let key = PrivateKeyDer::from_pem_file(dir.join(format!("{side}.key")))?;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca)?;
    let roots = Arc::new(roots);
    let client = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots.clone())
        .with_client_auth_cert(vec![cert.clone()], key.clone_key())?;
    let verifier =
        rustls::server::WebPkiClientVerifier::builder_with_provider(roots, provider()).build()?;
    let server = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![cert], key)?;
    Ok(TlsConfigs::custom(Some(client), Some(server)))
}

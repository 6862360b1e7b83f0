//! The plugin's TLS: the application's own (`TlsProvider`), go-plugin's AutoMTLS when the host
//! sends its certificate, or none.

use plugwire_protocol::PluginEnv;
use plugwire_runtime::tls::{Identity, PinnedPeer, TlsConfigs, TlsError};
use rustls::pki_types::CertificateDer;

use crate::config::TlsProvider;
use crate::serve::ServeError;

/// The TLS configurations and the certificate for field 6: the application's (TLS provider,
/// empty field 6), AutoMTLS when the host sent its certificate, or none.
pub(crate) fn tls_setup(
    provider: Option<TlsProvider>,
    env: &PluginEnv,
) -> Result<(TlsConfigs, Option<CertificateDer<'static>>), ServeError> {
    if let Some(provider) = provider {
        let configs = provider().map_err(ServeError::Tls)?;
        if configs.server.is_none() {
            return Err(ServeError::Tls(
                "the TLS provider returned no server configuration".into(),
            ));
        }
        return Ok((configs, None));
    }
    match env.client_cert_pem() {
        Some(pem) => {
            let (configs, cert) = auto_mtls(&pem).map_err(|e| ServeError::Tls(e.into()))?;
            Ok((configs, Some(cert)))
        }
        None => Ok((TlsConfigs::default(), None)),
    }
}

/// AutoMTLS, plugin side: trust the host's PEM certificate, answer with a fresh one.
fn auto_mtls(host_pem: &str) -> Result<(TlsConfigs, CertificateDer<'static>), TlsError> {
    let host = PinnedPeer::from_pem(host_pem, "PLUGIN_CLIENT_CERT")?;
    let identity = Identity::generate()?;
    let configs = TlsConfigs::pinned(&identity, &host)?;
    Ok((configs, identity.cert().clone()))
}

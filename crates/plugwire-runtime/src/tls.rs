//! AutoMTLS: certificates made at launch, exchanged through the environment and the handshake
//! line, and TLS configurations that trust exactly the exchanged certificate.
//!
//! go-plugin makes a self-signed ECDSA P-521 certificate on each side at every launch
//! ([`Identity::generate`] reproduces it). The host passes its certificate as PEM in
//! `PLUGIN_CLIENT_CERT`; the plugin answers with base64 DER in field 6 of the handshake line. Each
//! side then trusts only the other's certificate, and each is TLS client on some connections and
//! TLS server on others (brokered callbacks), so both configurations are built on both sides.
//!
//! These certificates are flagged as CAs and used as end-entity certificates, which webpki
//! rejects; the verifiers here instead *pin* the peer: the presented end-entity certificate must be
//! byte-for-byte one of the pinned certificates, inside its validity window, and the handshake
//! signature must verify with its key. Only TLS 1.3 is offered (every Go peer negotiates it), with
//! ALPN `h2`, which grpc-go ≥ 1.67 requires.

use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use plugwire_protocol::cert::{CertError, PinnedCerts};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms, aws_lc_rs};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::sign::{CertifiedKey, SingleCertAndKey};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};

/// The DNS name go-plugin puts in its certificates and sends as SNI.
pub const SERVER_NAME: &str = "localhost";

/// The ALPN protocol every gRPC TLS connection negotiates.
pub const ALPN_H2: &[u8] = b"h2";

/// Validity of a generated certificate: go-plugin's 262 980 hours (about 30 years).
const VALIDITY: Duration = Duration::from_secs(262_980 * 3600);

/// Back-dating of a generated certificate, for clock skew (as go-plugin).
const BACKDATE: Duration = Duration::from_secs(30);

/// Errors from certificate generation, parsing and TLS configuration.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// Generating a key or certificate failed.
    #[error("could not generate the AutoMTLS certificate: {0}")]
    Generate(String),
    /// A certificate could not be read.
    #[error("{0}")]
    Certificate(CertError),
    /// rustls refused the configuration.
    #[error("invalid TLS configuration: {0}")]
    Config(rustls::Error),
}

impl From<CertError> for TlsError {
    fn from(e: CertError) -> Self {
        TlsError::Certificate(e)
    }
}

impl From<rustls::Error> for TlsError {
    fn from(e: rustls::Error) -> Self {
        TlsError::Config(e)
    }
}

/// A certificate and its private key: one side's TLS identity.
///
/// `Debug` shows the certificate's size only; the key is never printed.
#[derive(Clone)]
pub struct Identity {
    cert: CertificateDer<'static>,
    key: Arc<PrivateKeyDer<'static>>,
    cert_pem: Option<String>,
    /// The key loaded for signing, shared by clones (see [`Identity::certified_key`]).
    certified: Arc<OnceLock<Arc<CertifiedKey>>>,
}

impl Identity {
    /// Generates a certificate laid out as go-plugin's `generateCert`: ECDSA P-521, self-signed
    /// (ecdsa-with-SHA512), random 128-bit serial, `O=HashiCorp, CN=localhost`, SAN
    /// `DNS:localhost`, CA flag, key usages digitalSignature, keyEncipherment, keyAgreement and
    /// keyCertSign, extended key usages clientAuth and serverAuth, valid from 30 s ago for 30
    /// years.
    pub fn generate() -> Result<Self, TlsError> {
        Self::generate_at(SystemTime::now())
    }

    /// [`Identity::generate`] with the clock reading `now`.
    pub fn generate_at(now: SystemTime) -> Result<Self, TlsError> {
        let generate = |e: rcgen::Error| TlsError::Generate(e.to_string());
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P521_SHA512).map_err(generate)?;

        let mut params =
            rcgen::CertificateParams::new(vec![SERVER_NAME.to_owned()]).map_err(generate)?;
        let mut name = rcgen::DistinguishedName::new();
        name.push(rcgen::DnType::OrganizationName, "HashiCorp");
        name.push(rcgen::DnType::CommonName, SERVER_NAME);
        params.distinguished_name = name;
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::DigitalSignature,
            rcgen::KeyUsagePurpose::KeyEncipherment,
            rcgen::KeyUsagePurpose::KeyAgreement,
            rcgen::KeyUsagePurpose::KeyCertSign,
        ];
        params.extended_key_usages = vec![
            rcgen::ExtendedKeyUsagePurpose::ClientAuth,
            rcgen::ExtendedKeyUsagePurpose::ServerAuth,
        ];
        let mut serial = [0u8; 16];
        provider()
            .secure_random
            .fill(&mut serial)
            .map_err(|_| TlsError::Generate("the system random generator failed".into()))?;
        serial[0] &= 0x7f; // a positive INTEGER below 2^127, inside go-plugin's [0, 2^128)
        params.serial_number = Some(rcgen::SerialNumber::from_slice(&serial));
        params.not_before = (now - BACKDATE).into();
        params.not_after = (now + VALIDITY).into();

        let cert = params.self_signed(&key).map_err(generate)?;
        Ok(Identity {
            cert_pem: Some(cert.pem()),
            cert: cert.der().clone(),
            key: Arc::new(PrivateKeyDer::Pkcs8(key.serialize_der().into())),
            certified: Arc::default(),
        })
    }

    /// An identity from a certificate and key the application already has (manual TLS).
    pub fn from_der(cert: CertificateDer<'static>, key: PrivateKeyDer<'static>) -> Self {
        Identity {
            cert,
            key: Arc::new(key),
            cert_pem: None,
            certified: Arc::default(),
        }
    }

    /// The certificate (DER).
    pub fn cert(&self) -> &CertificateDer<'static> {
        &self.cert
    }

    /// The certificate with its key loaded for signing. Loading checks the key (for P-521 a
    /// point multiplication, ~0.4 ms), so it happens once per identity and every configuration
    /// made from it shares the result; calling this early takes that cost off a later critical
    /// path (a host calls it while its plugin starts).
    pub fn certified_key(&self) -> Result<Arc<CertifiedKey>, TlsError> {
        if let Some(key) = self.certified.get() {
            return Ok(key.clone());
        }
        let key =
            CertifiedKey::from_der(vec![self.cert.clone()], self.key.clone_key(), &provider())?;
        Ok(self.certified.get_or_init(|| Arc::new(key)).clone())
    }

    /// The certificate as one PEM `CERTIFICATE` block, as sent in `PLUGIN_CLIENT_CERT`.
    pub fn cert_pem(&self) -> String {
        self.cert_pem
            .clone()
            .unwrap_or_else(|| plugwire_protocol::cert::pem_encode(&self.cert))
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("cert_len", &self.cert.len())
            .field("key", &"<redacted>")
            .finish()
    }
}

/// The certificates of a peer this side trusts, and nothing else (see
/// [`plugwire_protocol::cert`]).
#[derive(Clone, Debug)]
pub struct PinnedPeer {
    certs: PinnedCerts,
}

impl PinnedPeer {
    /// Pins the given certificates (DER).
    pub fn new(certs: impl IntoIterator<Item = CertificateDer<'static>>) -> Result<Self, TlsError> {
        Ok(PinnedPeer {
            certs: PinnedCerts::new(certs)?,
        })
    }

    /// Pins every certificate in a PEM text, as Go's `AppendCertsFromPEM` reads
    /// `PLUGIN_CLIENT_CERT`. Fails when there is none.
    pub fn from_pem(pem: &str, what: &'static str) -> Result<Self, TlsError> {
        Ok(PinnedPeer {
            certs: PinnedCerts::from_pem(pem, what)?,
        })
    }

    fn check(&self, presented: &CertificateDer<'_>, now: UnixTime) -> Result<(), rustls::Error> {
        use rustls::CertificateError as Refused;
        self.certs
            .check(presented.as_ref(), now.as_secs())
            .map_err(|e| {
                rustls::Error::InvalidCertificate(match e {
                    CertError::NotValidYet => Refused::NotValidYet,
                    CertError::Expired => Refused::Expired,
                    _ => Refused::ApplicationVerificationFailure,
                })
            })
    }
}

/// TLS client and server configurations for one side of a plugin connection.
///
/// Each side is TLS client on some connections and TLS server on others: the host dials the
/// plugin (and brokered services the plugin serves) and accepts brokered callbacks; the plugin
/// accepts the host and dials the host's brokered services.
#[derive(Clone, Default)]
pub struct TlsConfigs {
    /// Used when this side dials.
    pub client: Option<Arc<rustls::ClientConfig>>,
    /// Used when this side accepts.
    pub server: Option<Arc<rustls::ServerConfig>>,
}

impl fmt::Debug for TlsConfigs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsConfigs")
            .field("client", &self.client.is_some())
            .field("server", &self.server.is_some())
            .finish()
    }
}

impl TlsConfigs {
    /// AutoMTLS: present `identity`, trust only `peer`, in both directions (TLS 1.3, ALPN `h2`).
    pub fn pinned(identity: &Identity, peer: &PinnedPeer) -> Result<Self, TlsError> {
        let key = identity.certified_key()?;
        Ok(TlsConfigs {
            client: Some(Arc::new(client_config(key.clone(), peer)?)),
            server: Some(Arc::new(server_config(key, peer)?)),
        })
    }

    /// Configurations the application built itself (manual TLS, go-plugin's `TLSConfig` and
    /// `TLSProvider`). ALPN `h2` is added where missing, since grpc-go requires it. Build them
    /// with the aws-lc-rs provider ([`provider`]): Go peers sign with ECDSA P-521.
    ///
    /// ```no_run
    /// use std::sync::Arc;
    /// use plugwire_runtime::tls::{TlsConfigs, provider};
    ///
    /// # fn f(roots: rustls::RootCertStore) -> Result<TlsConfigs, rustls::Error> {
    /// // A host that dials a plugin serving a certificate from its own CA.
    /// let client = rustls::ClientConfig::builder_with_provider(provider())
    ///     .with_safe_default_protocol_versions()?
    ///     .with_root_certificates(Arc::new(roots))
    ///     .with_no_client_auth();
    /// Ok(TlsConfigs::custom(Some(client), None))
    /// # }
    /// ```
    pub fn custom(
        client: Option<rustls::ClientConfig>,
        server: Option<rustls::ServerConfig>,
    ) -> Self {
        TlsConfigs {
            client: client.map(|mut c| {
                add_h2(&mut c.alpn_protocols);
                Arc::new(c)
            }),
            server: server.map(|mut s| {
                add_h2(&mut s.alpn_protocols);
                Arc::new(s)
            }),
        }
    }
}

fn add_h2(alpn: &mut Vec<Vec<u8>>) {
    if !alpn.iter().any(|p| p == ALPN_H2) {
        alpn.push(ALPN_H2.to_vec());
    }
}

/// The TLS name a host connects to (`localhost`, as go-plugin).
pub fn server_name() -> ServerName<'static> {
    ServerName::DnsName(
        rustls::pki_types::DnsName::try_from(SERVER_NAME)
            .expect("\"localhost\" is a valid DNS name")
            .to_owned(),
    )
}

/// The crypto provider plugwire uses everywhere: aws-lc-rs, which (unlike ring) verifies the
/// ECDSA P-521 signatures every Go peer makes.
pub fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| Arc::new(aws_lc_rs::default_provider()))
        .clone()
}

fn client_config(
    key: Arc<CertifiedKey>,
    peer: &PinnedPeer,
) -> Result<rustls::ClientConfig, TlsError> {
    let provider = provider();
    let mut config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(PinnedVerifier::new(peer.clone(), &provider)))
        .with_client_cert_resolver(Arc::new(SingleCertAndKey::from(key)));
    config.alpn_protocols = vec![ALPN_H2.to_vec()];
    Ok(config)
}

fn server_config(
    key: Arc<CertifiedKey>,
    peer: &PinnedPeer,
) -> Result<rustls::ServerConfig, TlsError> {
    let provider = provider();
    let mut config = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(Arc::new(PinnedVerifier::new(peer.clone(), &provider)))
        .with_cert_resolver(Arc::new(SingleCertAndKey::from(key)));
    config.alpn_protocols = vec![ALPN_H2.to_vec()];
    Ok(config)
}

/// Verifies a peer by pinning (see the module docs); serves as both server and client verifier.
#[derive(Debug)]
struct PinnedVerifier {
    peer: PinnedPeer,
    algorithms: WebPkiSupportedAlgorithms,
}

impl PinnedVerifier {
    fn new(peer: PinnedPeer, provider: &CryptoProvider) -> Self {
        PinnedVerifier {
            peer,
            algorithms: provider.signature_verification_algorithms,
        }
    }
}

impl ServerCertVerifier for PinnedVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.peer.check(end_entity, now)?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

impl ClientCertVerifier for PinnedVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.peer.check(end_entity, now)?;
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// Seconds since the Unix epoch now (for tests of the validity check).
#[cfg(test)]
fn now() -> UnixTime {
    UnixTime::since_unix_epoch(
        SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn generated_cert_has_go_plugins_layout() {
        use x509_parser::prelude::*;
        let id = Identity::generate().expect("generate");
        let (_, cert) = X509Certificate::from_der(id.cert()).expect("parses");
        assert_eq!(cert.subject(), cert.issuer(), "self-signed");
        assert_eq!(cert.subject().to_string(), "O=HashiCorp, CN=localhost");
        assert_eq!(
            cert.signature_algorithm.algorithm,
            oid_registry::OID_SIG_ECDSA_WITH_SHA512
        );
        let bc = cert.basic_constraints().expect("ok").expect("present");
        assert!(bc.critical && bc.value.ca);
        let ku = cert.key_usage().expect("ok").expect("present").value;
        assert!(ku.digital_signature() && ku.key_encipherment() && ku.key_agreement());
        assert!(ku.key_cert_sign());
        let eku = cert
            .extended_key_usage()
            .expect("ok")
            .expect("present")
            .value;
        assert!(eku.client_auth && eku.server_auth);
        let san = cert
            .subject_alternative_name()
            .expect("ok")
            .expect("present");
        assert_eq!(
            san.value.general_names,
            vec![GeneralName::DNSName("localhost")]
        );
        let validity = plugwire_protocol::cert::Validity::of(id.cert()).expect("validity");
        let years = (validity.not_after - validity.not_before) / (365 * 24 * 3600);
        assert!((29..=30).contains(&years), "{years} years");
        assert!(id.cert_pem().starts_with("-----BEGIN CERTIFICATE-----\n"));
        assert!(!format!("{id:?}").contains("BEGIN"));
    }

    #[test]
    fn pem_round_trip_and_refusal() {
        let id = Identity::generate().expect("generate");
        let pinned = PinnedPeer::from_pem(&id.cert_pem(), "test").expect("pem");
        assert!(pinned.check(id.cert(), now()).is_ok());
        let again = plugwire_protocol::cert::pem_encode(id.cert());
        assert_eq!(again, id.cert_pem(), "our PEM encoder matches rcgen's");
        assert!(PinnedPeer::from_pem("not a pem", "test").is_err());
        let stranger = Identity::generate().expect("generate");
        assert!(pinned.check(stranger.cert(), now()).is_err());
        let expired = UnixTime::since_unix_epoch(Duration::from_secs(4_000_000_000 * 2));
        assert!(pinned.check(id.cert(), expired).is_err());
        let early = UnixTime::since_unix_epoch(Duration::from_secs(1));
        assert!(pinned.check(id.cert(), early).is_err());
    }

    async fn handshake(
        client_id: &Identity,
        client_trusts: &Identity,
        server_id: &Identity,
        server_trusts: &Identity,
    ) -> Result<(), String> {
        let client = TlsConfigs::pinned(
            client_id,
            &PinnedPeer::new([client_trusts.cert().clone()]).expect("pin"),
        )
        .expect("configs");
        let server = TlsConfigs::pinned(
            server_id,
            &PinnedPeer::new([server_trusts.cert().clone()]).expect("pin"),
        )
        .expect("configs");
        let (a, b) = tokio::io::duplex(64 * 1024);
        let (Some(client_config), Some(server_config)) = (client.client, server.server) else {
            panic!("pinned configs have both sides");
        };
        let accept = async move {
            let mut s = tokio_rustls::TlsAcceptor::from(server_config)
                .accept(b)
                .await
                .map_err(|e| format!("server: {e}"))?;
            assert_eq!(s.get_ref().1.alpn_protocol(), Some(ALPN_H2));
            let mut buf = [0u8; 4];
            s.read_exact(&mut buf).await.map_err(|e| e.to_string())?;
            s.write_all(&buf).await.map_err(|e| e.to_string())?;
            s.flush().await.map_err(|e| e.to_string())?;
            Ok::<_, String>(())
        };
        let connect = async move {
            let mut c = tokio_rustls::TlsConnector::from(client_config)
                .connect(server_name(), a)
                .await
                .map_err(|e| format!("client: {e}"))?;
            c.write_all(b"ping").await.map_err(|e| e.to_string())?;
            c.flush().await.map_err(|e| e.to_string())?;
            let mut buf = [0u8; 4];
            c.read_exact(&mut buf).await.map_err(|e| e.to_string())?;
            assert_eq!(&buf, b"ping");
            Ok::<_, String>(())
        };
        let (a, c) = tokio::join!(accept, connect);
        a.and(c)
    }

    #[tokio::test]
    async fn mutual_p521_handshake_with_pinning() {
        let host = Identity::generate().expect("generate");
        let plugin = Identity::generate().expect("generate");
        let stranger = Identity::generate().expect("generate");
        handshake(&host, &plugin, &plugin, &host)
            .await
            .expect("pinned peers connect");
        // The server presents a stranger's certificate: the client refuses it.
        assert!(handshake(&host, &plugin, &stranger, &host).await.is_err());
        // The client presents a stranger's certificate: the server refuses it.
        assert!(handshake(&stranger, &plugin, &plugin, &host).await.is_err());
    }
}

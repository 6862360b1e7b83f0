//! Certificate checks for AutoMTLS: reading the certificates a peer sends (PEM in
//! `PLUGIN_CLIENT_CERT`, DER in field 6 of the handshake line), their validity windows, and
//! pinning: a presented certificate is trusted only when it is byte-for-byte one of the pinned
//! ones and the time (given by the caller) is inside its validity window.
//!
//! go-plugin's certificates are flagged as CAs and used as end-entity certificates, which webpki
//! rejects; pinning is the check both sides can agree on. The TLS layer (`plugwire-runtime`)
//! calls [`PinnedCerts::check`] from its rustls verifiers and verifies the handshake signature.

use std::sync::Arc;

use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject as _;

/// Why a certificate could not be read or is not trusted.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CertError {
    /// `PLUGIN_CLIENT_CERT` or a configured PEM holds no usable certificate.
    #[error(
        "no PEM CERTIFICATE block could be read from {what}: {reason}; \
         the host should pass its certificate in PEM form"
    )]
    Pem {
        /// Where the PEM came from.
        what: &'static str,
        /// What went wrong.
        reason: String,
    },
    /// A certificate could not be parsed.
    #[error("the peer certificate is not a valid X.509 certificate: {0}")]
    Certificate(String),
    /// The presented certificate is not one of the pinned ones.
    #[error("the peer presented a certificate other than the one it announced")]
    NotPinned,
    /// The presented certificate's validity starts later.
    #[error("the peer's certificate is not valid yet (check the clocks)")]
    NotValidYet,
    /// The presented certificate's validity has ended.
    #[error("the peer's certificate has expired")]
    Expired,
}

/// A certificate's validity window, in seconds since the Unix epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Validity {
    /// Not valid before this.
    pub not_before: u64,
    /// Not valid after this.
    pub not_after: u64,
}

impl Validity {
    /// Reads the window of a DER certificate.
    pub fn of(der: &[u8]) -> Result<Self, CertError> {
        use x509_parser::prelude::FromDer as _;
        let (_, cert) = x509_parser::certificate::X509Certificate::from_der(der)
            .map_err(|e| CertError::Certificate(e.to_string()))?;
        let secs = |t: x509_parser::time::ASN1Time| u64::try_from(t.timestamp()).unwrap_or(0);
        Ok(Validity {
            not_before: secs(cert.validity().not_before),
            not_after: secs(cert.validity().not_after),
        })
    }

    /// Whether `now` (Unix seconds) is inside the window.
    pub fn check(&self, now: u64) -> Result<(), CertError> {
        if now < self.not_before {
            Err(CertError::NotValidYet)
        } else if now > self.not_after {
            Err(CertError::Expired)
        } else {
            Ok(())
        }
    }
}

/// The certificates of a peer this side trusts, and nothing else.
#[derive(Clone, Debug)]
pub struct PinnedCerts {
    certs: Arc<[(CertificateDer<'static>, Validity)]>,
}

impl PinnedCerts {
    /// Pins the given certificates (DER).
    pub fn new(
        certs: impl IntoIterator<Item = CertificateDer<'static>>,
    ) -> Result<Self, CertError> {
        let certs = certs
            .into_iter()
            .map(|der| Validity::of(&der).map(|validity| (der, validity)))
            .collect::<Result<Arc<[_]>, _>>()?;
        Ok(PinnedCerts { certs })
    }

    /// Pins every certificate in a PEM text, as Go's `AppendCertsFromPEM` reads
    /// `PLUGIN_CLIENT_CERT` (`what` names the source in errors). Fails when there is none.
    pub fn from_pem(pem: &str, what: &'static str) -> Result<Self, CertError> {
        Self::new(certs_from_pem(pem, what)?)
    }

    /// Whether `presented` is trusted at `now` (Unix seconds).
    pub fn check(&self, presented: &[u8], now: u64) -> Result<(), CertError> {
        let (_, validity) = self
            .certs
            .iter()
            .find(|(der, _)| der.as_ref() == presented)
            .ok_or(CertError::NotPinned)?;
        validity.check(now)
    }

    /// The pinned certificates.
    pub fn certs(&self) -> impl Iterator<Item = &CertificateDer<'static>> {
        self.certs.iter().map(|(der, _)| der)
    }
}

/// Every `CERTIFICATE` block of a PEM text; fails when there is none.
pub fn certs_from_pem(
    pem: &str,
    what: &'static str,
) -> Result<Vec<CertificateDer<'static>>, CertError> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| CertError::Pem {
            what,
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(CertError::Pem {
            what,
            reason: "it holds no CERTIFICATE block".into(),
        });
    }
    Ok(certs)
}

/// PEM for one certificate: RFC 7468 with 64-character lines, as Go's `pem.Encode`.
pub fn pem_encode(cert: &[u8]) -> String {
    use base64::Engine as _;
    let body = base64::engine::general_purpose::STANDARD.encode(cert);
    let mut pem = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in body.as_bytes().chunks(64) {
        // base64 output is ASCII, so every chunk is valid UTF-8.
        pem.push_str(std::str::from_utf8(line).unwrap_or_default());
        pem.push('\n');
    }
    pem.push_str("-----END CERTIFICATE-----\n");
    pem
}

#[cfg(test)]
mod tests {
    use super::*;

    const PEM: &str = include_str!("../testdata/plugin-cert.pem");

    const VALIDITY: Validity = Validity {
        not_before: 100,
        not_after: 200,
    };

    #[test]
    fn validity_windows_are_checked_against_the_given_time() {
        assert_eq!(VALIDITY.check(99), Err(CertError::NotValidYet));
        assert_eq!(VALIDITY.check(100), Ok(()));
        assert_eq!(VALIDITY.check(200), Ok(()));
        assert_eq!(VALIDITY.check(201), Err(CertError::Expired));
    }

    /// Only the pinned certificate, only inside its window (2026-12-01 to 2056-11-23).
    #[test]
    fn pinning_takes_exactly_the_pinned_certificate() {
        let pinned = PinnedCerts::from_pem(PEM, "test").expect("pins");
        let der = pinned.certs().next().expect("one").clone();
        let inside = 1_900_000_000;
        assert_eq!(pinned.check(&der, inside), Ok(()));
        assert_eq!(
            pinned.check(&der, 1_000_000_000),
            Err(CertError::NotValidYet)
        );
        assert_eq!(pinned.check(&der, 3_000_000_000), Err(CertError::Expired));
        let mut other = der.to_vec();
        let last = other.len() - 1;
        other[last] ^= 1;
        assert_eq!(pinned.check(&other, inside), Err(CertError::NotPinned));
        assert_eq!(pem_encode(&der), PEM, "Go's PEM layout");
    }

    #[test]
    fn pem_refusals_say_what_was_wrong() {
        let err = certs_from_pem("not pem at all", "PLUGIN_CLIENT_CERT").expect_err("no block");
        assert!(err.to_string().contains("PLUGIN_CLIENT_CERT"), "{err}");
        let err = PinnedCerts::from_pem(&pem_encode(b"garbage"), "PLUGIN_CLIENT_CERT")
            .expect_err("not X.509");
        assert!(matches!(err, CertError::Certificate(_)), "{err}");
        assert!(Validity::of(&[0x30, 0x03, 0x02, 0x01]).is_err());
    }
}

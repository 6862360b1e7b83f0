//! What a plugin's AutoMTLS certificate says: key type, subject, SAN, validity, usages; and
//! whether a Go host would accept it.

use std::time::{Duration, SystemTime};

use serde::Serialize;
use x509_parser::prelude::{FromDer as _, GeneralName, ParsedExtension, X509Certificate};

/// A certificate, summarised.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub(crate) struct CertSummary {
    /// e.g. `ECDSA P-521`, `RSA 2048`, `Ed25519`.
    pub(crate) key: String,
    /// e.g. `ecdsa-with-SHA512`.
    pub(crate) signature: String,
    pub(crate) subject: String,
    pub(crate) issuer: String,
    pub(crate) self_signed: bool,
    /// `DNS:localhost`, `IP:127.0.0.1`, ...
    pub(crate) san: Vec<String>,
    /// RFC 3339.
    pub(crate) not_before: String,
    pub(crate) not_after: String,
    /// Seconds from `not_before` to `not_after`.
    pub(crate) lifetime_secs: i64,
    pub(crate) serial: String,
    pub(crate) ca: bool,
    /// `serverAuth`, `clientAuth`, ...; empty when the certificate has no EKU extension.
    pub(crate) extended_key_usage: Vec<String>,
    /// The DER length.
    pub(crate) der_len: usize,
}

/// A certificate that does not parse.
#[derive(Debug, thiserror::Error)]
#[error("the certificate does not parse as X.509 DER: {0}")]
pub(crate) struct CertError(String);

impl CertSummary {
    /// Summarises a DER certificate.
    pub(crate) fn of(der: &[u8]) -> Result<Self, CertError> {
        let (_, cert) = X509Certificate::from_der(der).map_err(|e| CertError(e.to_string()))?;
        let mut san = Vec::new();
        let mut extended_key_usage = Vec::new();
        let mut ca = false;
        for extension in cert.extensions() {
            match extension.parsed_extension() {
                ParsedExtension::SubjectAlternativeName(names) => {
                    san.extend(names.general_names.iter().map(general_name));
                }
                ParsedExtension::ExtendedKeyUsage(eku) => {
                    let named = [
                        (eku.server_auth, "serverAuth"),
                        (eku.client_auth, "clientAuth"),
                        (eku.code_signing, "codeSigning"),
                        (eku.email_protection, "emailProtection"),
                        (eku.time_stamping, "timeStamping"),
                        (eku.ocsp_signing, "OCSPSigning"),
                        (eku.any, "any"),
                    ];
                    extended_key_usage.extend(
                        named
                            .iter()
                            .filter(|(set, _)| *set)
                            .map(|(_, name)| (*name).to_owned()),
                    );
                    extended_key_usage.extend(eku.other.iter().map(|oid| oid.to_id_string()));
                }
                ParsedExtension::BasicConstraints(bc) => ca = bc.ca,
                _ => {}
            }
        }
        let validity = cert.validity();
        let not_before = validity.not_before.timestamp();
        let not_after = validity.not_after.timestamp();
        Ok(CertSummary {
            key: key_type(&cert),
            signature: signature_name(&cert.signature_algorithm.algorithm.to_id_string()),
            subject: cert.subject().to_string(),
            issuer: cert.issuer().to_string(),
            self_signed: cert.subject() == cert.issuer(),
            san,
            not_before: rfc3339(not_before),
            not_after: rfc3339(not_after),
            lifetime_secs: not_after - not_before,
            serial: cert.raw_serial_as_string(),
            ca,
            extended_key_usage,
            der_len: der.len(),
        })
    }

    /// Why a Go host would refuse this certificate as its plugin's (hostname `localhost` in the
    /// SAN, serverAuth allowed, valid now), if it would.
    pub(crate) fn go_host_objections(&self, now: SystemTime) -> Vec<String> {
        let mut objections = Vec::new();
        if !self.san.iter().any(|n| n == "DNS:localhost") {
            objections.push(format!(
                "no DNS:localhost in its subject alternative names ({}): Go hosts verify the name \
                 \"localhost\" and ignore the common name",
                if self.san.is_empty() {
                    "none".to_owned()
                } else {
                    self.san.join(", ")
                }
            ));
        }
        if !self.extended_key_usage.is_empty()
            && !self
                .extended_key_usage
                .iter()
                .any(|u| u == "serverAuth" || u == "any")
        {
            objections.push(format!(
                "its extended key usages ({}) do not allow serverAuth",
                self.extended_key_usage.join(", ")
            ));
        }
        let now = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        let (from, until) = (parse_back(&self.not_before), parse_back(&self.not_after));
        if from.is_some_and(|from| now < from) {
            objections.push(format!("it is not valid yet (from {})", self.not_before));
        }
        if until.is_some_and(|until| now > until) {
            objections.push(format!("it expired at {}", self.not_after));
        }
        objections
    }

    /// The lifetime, in words (`30 years`, `90 days`).
    pub(crate) fn lifetime(&self) -> String {
        let days = self.lifetime_secs / 86_400;
        if days >= 730 {
            format!("{} years", (days + 182) / 365)
        } else if days >= 2 {
            format!("{days} days")
        } else {
            humantime::format_duration(Duration::from_secs(
                u64::try_from(self.lifetime_secs).unwrap_or(0),
            ))
            .to_string()
        }
    }
}

fn key_type(cert: &X509Certificate<'_>) -> String {
    let spki = cert.public_key();
    let algorithm = spki.algorithm.algorithm.to_id_string();
    match algorithm.as_str() {
        "1.2.840.10045.2.1" => {
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok())
                .map(|oid| oid.to_id_string());
            let name = match curve.as_deref() {
                Some("1.2.840.10045.3.1.7") => "P-256".to_owned(),
                Some("1.3.132.0.34") => "P-384".to_owned(),
                Some("1.3.132.0.35") => "P-521".to_owned(),
                Some(other) => format!("curve {other}"),
                None => "curve unknown".to_owned(),
            };
            format!("ECDSA {name}")
        }
        "1.2.840.113549.1.1.1" => match spki.parsed() {
            Ok(x509_parser::public_key::PublicKey::RSA(rsa)) => {
                format!("RSA {}", rsa.key_size())
            }
            _ => "RSA".to_owned(),
        },
        "1.3.101.112" => "Ed25519".to_owned(),
        other => format!("algorithm {other}"),
    }
}

fn signature_name(oid: &str) -> String {
    match oid {
        "1.2.840.10045.4.3.2" => "ecdsa-with-SHA256",
        "1.2.840.10045.4.3.3" => "ecdsa-with-SHA384",
        "1.2.840.10045.4.3.4" => "ecdsa-with-SHA512",
        "1.2.840.113549.1.1.11" => "sha256WithRSAEncryption",
        "1.2.840.113549.1.1.12" => "sha384WithRSAEncryption",
        "1.2.840.113549.1.1.13" => "sha512WithRSAEncryption",
        "1.2.840.113549.1.1.10" => "RSASSA-PSS",
        "1.3.101.112" => "Ed25519",
        other => return format!("OID {other}"),
    }
    .to_owned()
}

fn general_name(name: &GeneralName<'_>) -> String {
    match name {
        GeneralName::DNSName(dns) => format!("DNS:{dns}"),
        GeneralName::IPAddress(ip) => match ip.len() {
            4 => format!("IP:{}", std::net::Ipv4Addr::new(ip[0], ip[1], ip[2], ip[3])),
            16 => {
                let mut octets = [0u8; 16];
                octets.copy_from_slice(ip);
                format!("IP:{}", std::net::Ipv6Addr::from(octets))
            }
            _ => "IP:?".to_owned(),
        },
        GeneralName::RFC822Name(mail) => format!("email:{mail}"),
        GeneralName::URI(uri) => format!("URI:{uri}"),
        other => format!("{other:?}"),
    }
}

fn rfc3339(unix: i64) -> String {
    let time = if unix >= 0 {
        SystemTime::UNIX_EPOCH + Duration::from_secs(unix.unsigned_abs())
    } else {
        SystemTime::UNIX_EPOCH - Duration::from_secs(unix.unsigned_abs())
    };
    humantime::format_rfc3339_seconds(time).to_string()
}

fn parse_back(rfc3339: &str) -> Option<i64> {
    let time = humantime::parse_rfc3339(rfc3339).ok()?;
    let secs = time.duration_since(SystemTime::UNIX_EPOCH).ok()?.as_secs();
    i64::try_from(secs).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_plugin_style_certificate() {
        let identity = plugwire_host::Identity::generate().expect("identity");
        let summary = CertSummary::of(identity.cert()).expect("parses");
        assert_eq!(summary.key, "ECDSA P-521");
        assert_eq!(summary.signature, "ecdsa-with-SHA512");
        assert!(
            summary.subject.contains("CN=localhost"),
            "{}",
            summary.subject
        );
        assert!(summary.self_signed && summary.ca);
        assert_eq!(summary.san, vec!["DNS:localhost".to_owned()]);
        assert_eq!(
            summary.extended_key_usage,
            vec!["serverAuth".to_owned(), "clientAuth".to_owned()]
        );
        assert_eq!(summary.lifetime(), "30 years");
        assert!(summary.go_host_objections(SystemTime::now()).is_empty());
        let later = SystemTime::now() + Duration::from_secs(40 * 365 * 86_400);
        assert_eq!(summary.go_host_objections(later).len(), 1);
        assert!(CertSummary::of(b"not a certificate").is_err());
    }
}

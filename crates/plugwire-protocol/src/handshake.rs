//! The handshake line a plugin prints on stdout, and the host's checks of it.
//!
//! ```text
//! CORE | APP | NETWORK | ADDRESS | PROTOCOL | SERVER_CERT [| MUX_SUPPORTED]
//! 1    | 1   | unix    | /tmp/plugin123 | grpc | <base64 DER or empty> [| true]
//! ```
//!
//! [`HandshakeLine::parse`] accepts every form a Go host accepts (4 to 7 fields, field 6 used only
//! when longer than 50 characters, base64 with or without padding) and [`HandshakeLine`]'s
//! `Display` prints exactly what a Go plugin prints. [`HostExpectations::accept`] adds the host's
//! checks (offered versions, allowed protocols, multiplexing) in go-plugin's order.

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD_NO_PAD};
use rustls_pki_types::CertificateDer;

/// go-plugin's core protocol version (`CoreProtocolVersion`); every other value is rejected.
pub const CORE_PROTOCOL_VERSION: u32 = 1;

/// The longest handshake line a Go host reads (bufio.Scanner's default token size).
pub const MAX_HANDSHAKE_LINE: usize = 64 * 1024;

/// A certificate field of this length or shorter is ignored (go-plugin < 1.0 put 48 characters of
/// unrelated data there).
const MIN_CERT_FIELD_LEN: usize = 51;

/// How a plugin can be reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Network {
    /// A unix domain socket path (every OS but Windows, in go-plugin).
    Unix,
    /// A TCP `host:port` (Windows, or a plugin configured for TCP).
    Tcp,
}

impl Network {
    /// The wire spelling: `unix` or `tcp`.
    pub fn as_str(self) -> &'static str {
        match self {
            Network::Unix => "unix",
            Network::Tcp => "tcp",
        }
    }
}

impl fmt::Display for Network {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Network {
    type Err = ParseNameError;

    fn from_str(s: &str) -> Result<Self, ParseNameError> {
        match s {
            "unix" => Ok(Network::Unix),
            "tcp" => Ok(Network::Tcp),
            _ => Err(ParseNameError {
                what: "network",
                name: s.to_owned(),
                known: &["unix", "tcp"],
            }),
        }
    }
}

/// A network or protocol name go-plugin does not know.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} {name:?}: go-plugin knows {known:?}")]
pub struct ParseNameError {
    what: &'static str,
    name: String,
    known: &'static [&'static str],
}

impl ParseNameError {
    /// The name that was not recognised.
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// The RPC protocol a plugin speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Protocol {
    /// gRPC over HTTP/2 (`grpc`).
    Grpc,
    /// Go's net/rpc over yamux (`netrpc`), go-plugin's legacy default.
    NetRpc,
}

impl Protocol {
    /// The wire spelling: `grpc` or `netrpc`.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Grpc => "grpc",
            Protocol::NetRpc => "netrpc",
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Protocol {
    type Err = ParseNameError;

    fn from_str(s: &str) -> Result<Self, ParseNameError> {
        match s {
            "grpc" => Ok(Protocol::Grpc),
            "netrpc" => Ok(Protocol::NetRpc),
            _ => Err(ParseNameError {
                what: "protocol",
                name: s.to_owned(),
                known: &["grpc", "netrpc"],
            }),
        }
    }
}

/// One parsed handshake line.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct HandshakeLine {
    /// The negotiated application protocol version (field 2).
    pub app_version: u32,
    /// Field 3.
    pub network: Network,
    /// Field 4: a socket path, or `host:port` (the host may be empty, meaning loopback).
    pub address: String,
    /// Field 5; `netrpc` when the line has only 4 fields.
    pub protocol: Protocol,
    /// Field 6: the plugin's AutoMTLS certificate (DER), when present.
    pub server_cert: Option<CertificateDer<'static>>,
    /// Field 7: whether the plugin multiplexes brokered connections. A plugin prints it only when
    /// the host set `PLUGIN_MULTIPLEX_GRPC`.
    pub multiplex: Option<bool>,
}

/// What a host offers and requires; checked against a plugin's line by [`HostExpectations::accept`].
#[derive(Clone, Copy, Debug)]
pub struct HostExpectations<'a> {
    /// The app-protocol versions the host offered in `PLUGIN_PROTOCOL_VERSIONS`.
    pub versions: &'a [u32],
    /// The protocols the host can speak.
    pub allowed_protocols: &'a [Protocol],
    /// Whether the host asked for gRPC broker multiplexing.
    pub multiplex: bool,
}

/// Why a handshake line was refused. The texts follow go-plugin's so users can search for them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HandshakeError {
    /// Fewer than 4 `|`-separated fields.
    #[error("Unrecognized remote plugin message: {line}")]
    Unrecognized {
        /// The trimmed line.
        line: String,
    },
    /// The line is not UTF-8.
    #[error("the plugin's handshake line is not valid UTF-8: {line}")]
    NotUtf8 {
        /// The line with invalid bytes replaced.
        line: String,
    },
    /// Field 1 is not an integer.
    #[error("error parsing core protocol version: invalid syntax {field:?}")]
    CoreVersionSyntax {
        /// Field 1.
        field: String,
    },
    /// Field 1 is an integer other than 1.
    #[error(
        "incompatible core API version with plugin. Plugin version: {field}, Core version: {CORE_PROTOCOL_VERSION}\n\n\
         To fix this, the plugin usually only needs to be recompiled.\n\
         Please report this to the plugin author"
    )]
    IncompatibleCoreVersion {
        /// Field 1.
        field: String,
    },
    /// Field 2 is not a version number.
    #[error("Error parsing protocol version {field:?}: invalid syntax")]
    AppVersionSyntax {
        /// Field 2.
        field: String,
    },
    /// Field 2 is not one of the versions the host offered.
    #[error(
        "incompatible API version with plugin. Plugin version: {plugin}, Client versions: {}\n\
         The plugin and the host have no protocol version in common: upgrade whichever side is older",
        GoList(host)
    )]
    IncompatibleAppVersion {
        /// The plugin's version.
        plugin: u32,
        /// The versions the host offered.
        host: Vec<u32>,
    },
    /// Field 3 is neither `unix` nor `tcp`.
    #[error("unknown address type: {address} (network {network:?}; expected \"unix\" or \"tcp\")")]
    UnknownNetwork {
        /// Field 3.
        network: String,
        /// Field 4.
        address: String,
    },
    /// Field 4 cannot be an address of that network.
    #[error("invalid {network} address {address:?} in the plugin's handshake line: {reason}")]
    InvalidAddress {
        /// Field 3.
        network: Network,
        /// Field 4.
        address: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Field 5 names a protocol the host does not speak.
    #[error(
        "unsupported plugin protocol {protocol:?}. Supported: {}",
        GoList(allowed)
    )]
    UnsupportedProtocol {
        /// Field 5.
        protocol: String,
        /// What the host allows.
        allowed: Vec<Protocol>,
    },
    /// Field 6 is present but not a base64 DER certificate.
    #[error("error parsing server cert: {reason}")]
    ServerCert {
        /// What is wrong with it.
        reason: String,
    },
    /// The host asked for multiplexing and the plugin did not answer field 7 at all.
    #[error(
        "client requested gRPC broker multiplexing but plugin does not support the feature; \
         for Go plugins, you will need to update the github.com/hashicorp/go-plugin dependency and recompile"
    )]
    MultiplexNotAnswered,
    /// The host asked for multiplexing and the plugin answered `false`.
    #[error("client requested gRPC broker multiplexing but plugin does not support the feature")]
    MultiplexRefused,
    /// Field 7 is not a boolean.
    #[error("error parsing {field:?} as a boolean for gRPC broker multiplexing support")]
    MultiplexSyntax {
        /// Field 7.
        field: String,
    },
}

impl HandshakeLine {
    /// A line with fields 2 to 5 and no certificate or multiplexing field (set those fields
    /// afterwards).
    pub fn new(
        app_version: u32,
        network: Network,
        address: impl Into<String>,
        protocol: Protocol,
    ) -> Self {
        HandshakeLine {
            app_version,
            network,
            address: address.into(),
            protocol,
            server_cert: None,
            multiplex: None,
        }
    }

    /// Parses a line the way a Go host does, without the host-specific checks of
    /// [`HostExpectations::accept`] (any version, either protocol, multiplexing not requested).
    pub fn parse(line: &str) -> Result<Self, HandshakeError> {
        parse(line, None)
    }

    /// Parses raw bytes read from a plugin's stdout (without the trailing newline).
    pub fn parse_bytes(line: &[u8]) -> Result<Self, HandshakeError> {
        match std::str::from_utf8(line) {
            Ok(line) => Self::parse(line),
            Err(_) => Err(HandshakeError::NotUtf8 {
                line: String::from_utf8_lossy(line).into_owned(),
            }),
        }
    }
}

impl FromStr for HandshakeLine {
    type Err = HandshakeError;

    fn from_str(s: &str) -> Result<Self, HandshakeError> {
        Self::parse(s)
    }
}

/// Prints the line as a Go plugin does: always 6 fields, the 7th only when `multiplex` is set, no
/// trailing newline.
impl fmt::Display for HandshakeLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{CORE_PROTOCOL_VERSION}|{}|{}|{}|{}|",
            self.app_version, self.network, self.address, self.protocol
        )?;
        if let Some(cert) = &self.server_cert {
            f.write_str(&STANDARD_NO_PAD.encode(cert.as_ref()))?;
        }
        if let Some(multiplex) = self.multiplex {
            write!(f, "|{multiplex}")?;
        }
        Ok(())
    }
}

impl HostExpectations<'_> {
    /// Parses a line and checks it against what the host offered, in go-plugin's order.
    pub fn accept(&self, line: &str) -> Result<HandshakeLine, HandshakeError> {
        parse(line, Some(self))
    }

    /// Like [`HostExpectations::accept`], for raw bytes read from stdout.
    pub fn accept_bytes(&self, line: &[u8]) -> Result<HandshakeLine, HandshakeError> {
        match std::str::from_utf8(line) {
            Ok(line) => self.accept(line),
            Err(_) => Err(HandshakeError::NotUtf8 {
                line: String::from_utf8_lossy(line).into_owned(),
            }),
        }
    }
}

/// Formats a list as Go's `%v` does: `[a b c]`.
struct GoList<'a, T>(&'a [T]);

impl<T: fmt::Display> fmt::Display for GoList<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[")?;
        for (i, item) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{item}")?;
        }
        f.write_str("]")
    }
}

/// Go's `strconv.ParseBool`.
pub fn parse_go_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// Decodes field 6: standard alphabet, padding optional (Go writes none, some peers pad).
pub fn decode_cert_field(field: &str) -> Result<CertificateDer<'static>, HandshakeError> {
    const LENIENT: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    let der = LENIENT
        .decode(field)
        .map_err(|e| HandshakeError::ServerCert {
            reason: format!("the certificate field is not base64 ({e})"),
        })?;
    {
        use x509_parser::prelude::FromDer as _;
        x509_parser::certificate::X509Certificate::from_der(&der).map_err(|e| {
            HandshakeError::ServerCert {
                reason: format!("the certificate field is not a DER X.509 certificate ({e})"),
            }
        })?;
    }
    Ok(CertificateDer::from(der))
}

/// Encodes a certificate for field 6 exactly as Go does (standard alphabet, no padding).
pub fn encode_cert_field(cert: &CertificateDer<'_>) -> String {
    STANDARD_NO_PAD.encode(cert.as_ref())
}

fn parse(line: &str, host: Option<&HostExpectations<'_>>) -> Result<HandshakeLine, HandshakeError> {
    let line = line.trim();
    let parts: Vec<&str> = line.split('|').collect();
    if parts.len() < 4 {
        return Err(HandshakeError::Unrecognized {
            line: line.to_owned(),
        });
    }

    let core = parse_go_int(parts[0]).ok_or_else(|| HandshakeError::CoreVersionSyntax {
        field: parts[0].to_owned(),
    })?;
    if core != i64::from(CORE_PROTOCOL_VERSION) {
        return Err(HandshakeError::IncompatibleCoreVersion {
            field: parts[0].to_owned(),
        });
    }

    let app_version = parse_go_int(parts[1])
        .and_then(|v| u32::try_from(v).ok())
        .ok_or_else(|| HandshakeError::AppVersionSyntax {
            field: parts[1].to_owned(),
        })?;
    if let Some(host) = host
        && !host.versions.contains(&app_version)
    {
        return Err(HandshakeError::IncompatibleAppVersion {
            plugin: app_version,
            host: host.versions.to_vec(),
        });
    }

    let network: Network = parts[2]
        .parse()
        .map_err(|_| HandshakeError::UnknownNetwork {
            network: parts[2].to_owned(),
            address: parts[3].to_owned(),
        })?;
    let address = parts[3];
    check_address(network, address)?;

    let protocol_field = parts.get(4).copied().unwrap_or("netrpc");
    let allowed = host.map_or(&[Protocol::Grpc, Protocol::NetRpc][..], |h| {
        h.allowed_protocols
    });
    let protocol = match protocol_field.parse::<Protocol>() {
        Ok(p) if allowed.contains(&p) => p,
        _ => {
            return Err(HandshakeError::UnsupportedProtocol {
                protocol: protocol_field.to_owned(),
                allowed: allowed.to_vec(),
            });
        }
    };

    let server_cert = match parts.get(5) {
        Some(field) if field.len() >= MIN_CERT_FIELD_LEN => Some(decode_cert_field(field)?),
        _ => None,
    };

    let multiplex_field = parts.get(6).copied();
    let multiplex = multiplex_field.map(parse_go_bool);
    if host.is_some_and(|h| h.multiplex) && protocol == Protocol::Grpc {
        match multiplex {
            None => return Err(HandshakeError::MultiplexNotAnswered),
            Some(None) => {
                return Err(HandshakeError::MultiplexSyntax {
                    field: multiplex_field.unwrap_or_default().to_owned(),
                });
            }
            Some(Some(false)) => return Err(HandshakeError::MultiplexRefused),
            Some(Some(true)) => {}
        }
    }

    Ok(HandshakeLine {
        app_version,
        network,
        address: address.to_owned(),
        protocol,
        server_cert,
        // A field 7 that is not a boolean is only an error when multiplexing was requested (as in
        // Go); otherwise it reads as "not multiplexing".
        multiplex: multiplex.map(|m| m.unwrap_or(false)),
    })
}

/// Go's `strconv.Atoi`: optional sign, ASCII digits, nothing else.
fn parse_go_int(s: &str) -> Option<i64> {
    let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn check_address(network: Network, address: &str) -> Result<(), HandshakeError> {
    let invalid = |reason| HandshakeError::InvalidAddress {
        network,
        address: address.to_owned(),
        reason,
    };
    match network {
        Network::Unix if address.is_empty() => Err(invalid("the socket path is empty")),
        Network::Unix => Ok(()),
        Network::Tcp => {
            let (_, port) = address
                .rsplit_once(':')
                .ok_or_else(|| invalid("missing port in address"))?;
            port.parse::<u16>()
                .map(|_| ())
                .map_err(|_| invalid("the port is not a number from 0 to 65535"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOST: HostExpectations<'static> = HostExpectations {
        versions: &[1],
        allowed_protocols: &[Protocol::Grpc],
        multiplex: false,
    };

    /// A go-plugin-style certificate (self-signed P-521, `O=HashiCorp, CN=localhost`).
    fn cert() -> CertificateDer<'static> {
        crate::cert::certs_from_pem(include_str!("../testdata/plugin-cert.pem"), "test data")
            .expect("the test certificate reads")
            .remove(0)
    }

    #[test]
    fn parses_the_modern_line() {
        let line = HandshakeLine::parse("1|5|unix|/tmp/plugin123|grpc|\n").expect("valid");
        assert_eq!(line.app_version, 5);
        assert_eq!(line.network, Network::Unix);
        assert_eq!(line.address, "/tmp/plugin123");
        assert_eq!(line.protocol, Protocol::Grpc);
        assert_eq!(line.server_cert, None);
        assert_eq!(line.multiplex, None);
    }

    #[test]
    fn legacy_forms_are_accepted() {
        let four = HandshakeLine::parse("1|1|tcp|:1234").expect("4 fields");
        assert_eq!(four.protocol, Protocol::NetRpc);
        assert_eq!(four.address, ":1234");
        let five = HandshakeLine::parse("1|1|tcp|127.0.0.1:1234|grpc").expect("5 fields");
        assert_eq!(five.protocol, Protocol::Grpc);
        // go-plugin < 1.0 printed 48 characters of base64 JSON in field 6: ignored.
        let old = HandshakeLine::parse(
            "1|1|unix|/tmp/p|grpc|eyJzdGRvdXRfYWRkciI6IiIsInN0ZGVycl9hZGRyIjoiIn0K",
        )
        .expect("old field 6");
        assert_eq!(old.server_cert, None);
    }

    #[test]
    fn prints_what_go_prints() {
        let mut line = HandshakeLine {
            app_version: 1,
            network: Network::Unix,
            address: "/tmp/plugin42".into(),
            protocol: Protocol::Grpc,
            server_cert: None,
            multiplex: None,
        };
        assert_eq!(line.to_string(), "1|1|unix|/tmp/plugin42|grpc|");
        line.multiplex = Some(true);
        assert_eq!(line.to_string(), "1|1|unix|/tmp/plugin42|grpc||true");
        line.multiplex = Some(false);
        assert_eq!(line.to_string(), "1|1|unix|/tmp/plugin42|grpc||false");
    }

    #[test]
    fn cert_round_trips_unpadded_and_padded() {
        let cert = cert();
        let mut line = HandshakeLine {
            app_version: 2,
            network: Network::Tcp,
            address: "127.0.0.1:10000".into(),
            protocol: Protocol::Grpc,
            server_cert: Some(cert.clone()),
            multiplex: None,
        };
        let printed = line.to_string();
        let field = printed.rsplit('|').next().expect("six fields");
        assert!(!field.contains('='), "Go prints no padding: {field}");
        assert_eq!(HandshakeLine::parse(&printed).expect("round trip"), line);

        let padded = base64::engine::general_purpose::STANDARD.encode(cert.as_ref());
        let reparsed = HandshakeLine::parse(&format!("1|2|tcp|127.0.0.1:10000|grpc|{padded}"))
            .expect("padding accepted");
        line.multiplex = None;
        assert_eq!(reparsed, line);
    }

    #[test]
    fn multiplex_checks_follow_go() {
        let mux = HostExpectations {
            multiplex: true,
            ..HOST
        };
        assert_eq!(
            mux.accept("1|1|unix|/p|grpc|"),
            Err(HandshakeError::MultiplexNotAnswered)
        );
        assert_eq!(
            mux.accept("1|1|unix|/p|grpc||false"),
            Err(HandshakeError::MultiplexRefused)
        );
        assert_eq!(
            mux.accept("1|1|unix|/p|grpc||yes"),
            Err(HandshakeError::MultiplexSyntax {
                field: "yes".into()
            })
        );
        for yes in ["1", "t", "T", "TRUE", "true", "True"] {
            let line = mux
                .accept(&format!("1|1|unix|/p|grpc||{yes}"))
                .expect("true spellings");
            assert_eq!(line.multiplex, Some(true));
        }
        // Not requested: field 7 is not checked.
        assert!(HOST.accept("1|1|unix|/p|grpc||yes").is_ok());
    }

    #[test]
    fn host_checks_versions_and_protocols() {
        let host = HostExpectations {
            versions: &[3, 4],
            ..HOST
        };
        assert_eq!(
            host.accept("1|2|unix|/p|grpc|"),
            Err(HandshakeError::IncompatibleAppVersion {
                plugin: 2,
                host: vec![3, 4]
            })
        );
        let err = host
            .accept("1|3|unix|/p|netrpc|")
            .expect_err("netrpc not allowed");
        assert_eq!(
            err.to_string(),
            "unsupported plugin protocol \"netrpc\". Supported: [grpc]"
        );
        // Missing field 5 means netrpc.
        assert!(matches!(
            host.accept("1|3|unix|/p"),
            Err(HandshakeError::UnsupportedProtocol { .. })
        ));
    }

    /// Every malformed line maps to its own error; none panics.
    #[test]
    fn malformed_lines_give_specific_errors() {
        use HandshakeError as E;
        let long = "x".repeat(70_000);
        type Check = fn(&HandshakeError) -> bool;
        let cases: Vec<(&str, Check)> = vec![
            ("", |e| matches!(e, E::Unrecognized { .. })),
            ("garbage", |e| matches!(e, E::Unrecognized { .. })),
            ("1|1|unix", |e| matches!(e, E::Unrecognized { .. })),
            (&long, |e| matches!(e, E::Unrecognized { .. })),
            ("x|1|unix|/p|grpc|", |e| {
                matches!(e, E::CoreVersionSyntax { .. })
            }),
            ("1| 1|unix|/p|grpc|", |e| {
                matches!(e, E::AppVersionSyntax { .. })
            }),
            ("2|1|unix|/p|grpc|", |e| {
                matches!(e, E::IncompatibleCoreVersion { .. })
            }),
            ("1|one|unix|/p|grpc|", |e| {
                matches!(e, E::AppVersionSyntax { .. })
            }),
            ("1|-1|unix|/p|grpc|", |e| {
                matches!(e, E::AppVersionSyntax { .. })
            }),
            ("1|99999999999|unix|/p|grpc|", |e| {
                matches!(e, E::AppVersionSyntax { .. })
            }),
            ("1|7|unix|/p|grpc|", |e| {
                matches!(e, E::IncompatibleAppVersion { .. })
            }),
            ("1|1|udp|/p|grpc|", |e| {
                matches!(e, E::UnknownNetwork { .. })
            }),
            ("1|1|unix||grpc|", |e| matches!(e, E::InvalidAddress { .. })),
            ("1|1|tcp|127.0.0.1|grpc|", |e| {
                matches!(e, E::InvalidAddress { .. })
            }),
            ("1|1|tcp|127.0.0.1:99999|grpc|", |e| {
                matches!(e, E::InvalidAddress { .. })
            }),
            ("1|1|unix|/p|http|", |e| {
                matches!(e, E::UnsupportedProtocol { .. })
            }),
            ("1|1|unix|/p||", |e| {
                matches!(e, E::UnsupportedProtocol { .. })
            }),
            ("1|1|unix|/p|netrpc|", |e| {
                matches!(e, E::UnsupportedProtocol { .. })
            }),
            (
                "1|1|unix|/p|grpc|!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!",
                |e| matches!(e, E::ServerCert { .. }),
            ),
            (
                "1|1|unix|/p|grpc|QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFB",
                |e| matches!(e, E::ServerCert { .. }),
            ),
        ];
        for (line, expected) in cases {
            let err = HOST.accept(line).expect_err(line);
            assert!(expected(&err), "{line:?} gave {err:?}");
            assert!(!err.to_string().is_empty());
        }
        let err = HOST
            .accept_bytes(b"1|1|unix|/tmp/\xff|grpc|")
            .expect_err("not UTF-8");
        assert!(matches!(err, E::NotUtf8 { .. }));
    }

    #[test]
    fn truncated_cert_is_refused() {
        let full = encode_cert_field(&cert());
        let truncated = &full[..full.len() / 2];
        let err = HandshakeLine::parse(&format!("1|1|unix|/p|grpc|{truncated}"))
            .expect_err("truncated DER");
        assert!(
            err.to_string().starts_with("error parsing server cert"),
            "{err}"
        );
    }

    #[test]
    fn go_bool_spellings() {
        assert_eq!(parse_go_bool("True"), Some(true));
        assert_eq!(parse_go_bool("F"), Some(false));
        assert_eq!(parse_go_bool("yes"), None);
        assert_eq!(parse_go_bool(""), None);
    }
}

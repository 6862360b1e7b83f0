//! Reattaching a host to a plugin that is already running (go-plugin's `ReattachConfig`), and
//! the JSON form HashiCorp tools pass it in (Terraform's `TF_REATTACH_PROVIDERS`):
//!
//! ```text
//! {"registry.terraform.io/hashicorp/aws":{"Protocol":"grpc","ProtocolVersion":5,"Pid":1234,
//!   "Test":true,"Addr":{"Network":"unix","String":"/tmp/plugin123"}}}
//! ```

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::address::Address;
use crate::handshake::{Network, Protocol};

/// Where a running plugin is and how to talk to it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ReattachConfig {
    /// `grpc` or `netrpc`; empty means `netrpc`, as in go-plugin.
    #[serde(rename = "Protocol", default)]
    pub protocol: String,
    /// The app-protocol version the plugin serves.
    #[serde(rename = "ProtocolVersion", default)]
    pub protocol_version: u32,
    /// The plugin's address.
    #[serde(rename = "Addr")]
    pub addr: ReattachAddr,
    /// The plugin's process id (0: unknown).
    #[serde(rename = "Pid", default)]
    pub pid: u32,
    /// A plugin in test/debug mode: the host never stops it; it ends on its own.
    #[serde(rename = "Test", default)]
    pub test: bool,
}

/// A Go `net.Addr` as JSON: its `Network()` and `String()`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ReattachAddr {
    /// `unix` or `tcp`.
    #[serde(rename = "Network")]
    pub network: String,
    /// The socket path or `host:port`.
    #[serde(rename = "String")]
    pub string: String,
}

/// A reattach configuration that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReattachError {
    /// The JSON is malformed.
    #[error("invalid reattach configuration JSON: {0}")]
    Json(String),
    /// The network is neither `unix` nor `tcp`.
    #[error("unknown address type: {address} (network {network:?})")]
    UnknownNetwork {
        /// The network.
        network: String,
        /// The address.
        address: String,
    },
    /// The protocol is not one plugwire speaks.
    #[error("unsupported plugin protocol {0:?}: plugwire reattaches to gRPC plugins only")]
    Protocol(String),
}

impl ReattachConfig {
    /// A configuration for a plugin at `address`.
    pub fn new(protocol: Protocol, protocol_version: u32, address: &Address, pid: u32) -> Self {
        ReattachConfig {
            protocol: protocol.as_str().to_owned(),
            protocol_version,
            addr: ReattachAddr {
                network: address.network().as_str().to_owned(),
                string: address.to_field(),
            },
            pid,
            test: false,
        }
    }

    /// The protocol (empty means `netrpc`, as in go-plugin).
    pub fn protocol(&self) -> Result<Protocol, ReattachError> {
        let protocol = if self.protocol.is_empty() {
            "netrpc"
        } else {
            &self.protocol
        };
        protocol
            .parse()
            .map_err(|_| ReattachError::Protocol(protocol.to_owned()))
    }

    /// The address to dial.
    pub fn address(&self) -> Result<Address, ReattachError> {
        let network: Network =
            self.addr
                .network
                .parse()
                .map_err(|_| ReattachError::UnknownNetwork {
                    network: self.addr.network.clone(),
                    address: self.addr.string.clone(),
                })?;
        Ok(Address::new(network, &self.addr.string))
    }

    /// Parses one configuration.
    pub fn from_json(json: &str) -> Result<Self, ReattachError> {
        serde_json::from_str(json).map_err(|e| ReattachError::Json(e.to_string()))
    }

    /// The JSON form.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// Parses a map of name → configuration (`TF_REATTACH_PROVIDERS`'s form).
pub fn parse_map(json: &str) -> Result<BTreeMap<String, ReattachConfig>, ReattachError> {
    serde_json::from_str(json).map_err(|e| ReattachError::Json(e.to_string()))
}

/// Formats a map of name → configuration.
pub fn format_map(configs: &BTreeMap<String, ReattachConfig>) -> String {
    serde_json::to_string(configs).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terraform_json_round_trips() {
        let json = r#"{"registry.terraform.io/hashicorp/aws":{"Protocol":"grpc","ProtocolVersion":5,"Pid":1234,"Test":true,"Addr":{"Network":"unix","String":"/tmp/plugin123"}}}"#;
        let map = parse_map(json).expect("valid");
        let config = &map["registry.terraform.io/hashicorp/aws"];
        assert_eq!(config.protocol().expect("grpc"), Protocol::Grpc);
        assert_eq!(config.protocol_version, 5);
        assert_eq!(config.pid, 1234);
        assert!(config.test);
        assert_eq!(
            config.address().expect("unix"),
            Address::Unix("/tmp/plugin123".into())
        );
        assert_eq!(parse_map(&format_map(&map)).expect("round trip"), map);
    }

    #[test]
    fn defaults_and_errors_follow_go() {
        let config =
            ReattachConfig::from_json(r#"{"Addr":{"Network":"tcp","String":"127.0.0.1:5000"}}"#)
                .expect("minimal");
        assert_eq!(
            config.protocol().expect("netrpc"),
            Protocol::NetRpc,
            "empty means netrpc"
        );
        assert!(!config.test);
        let udp = ReattachConfig {
            addr: ReattachAddr {
                network: "udp".into(),
                string: "x".into(),
            },
            ..config
        };
        assert!(matches!(
            udp.address(),
            Err(ReattachError::UnknownNetwork { .. })
        ));
        assert!(ReattachConfig::from_json("{").is_err());
    }
}

//! Where a plugin or a brokered service listens, as the handshake line, `ConnInfo` and reattach
//! configurations say it.

use std::path::PathBuf;

use crate::handshake::Network;

/// A plugin or broker address: where to dial.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Address {
    /// A unix socket path.
    Unix(PathBuf),
    /// A TCP `host:port`; an empty host means loopback.
    Tcp(String),
}

impl Address {
    /// The address from a handshake line or `ConnInfo` (network, address).
    pub fn new(network: Network, address: &str) -> Self {
        match network {
            Network::Unix => Address::Unix(PathBuf::from(address)),
            Network::Tcp => match address.strip_prefix(':') {
                Some(port) => Address::Tcp(format!("127.0.0.1:{port}")),
                None => Address::Tcp(address.to_owned()),
            },
        }
    }

    /// The network field for this address.
    pub fn network(&self) -> Network {
        match self {
            Address::Unix(_) => Network::Unix,
            Address::Tcp(_) => Network::Tcp,
        }
    }

    /// The address field for this address.
    pub fn to_field(&self) -> String {
        match self {
            Address::Unix(path) => path.to_string_lossy().into_owned(),
            Address::Tcp(addr) => addr.clone(),
        }
    }
}

impl std::fmt::Display for Address {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.network(), self.to_field())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tcp_address_without_host_is_loopback() {
        assert_eq!(
            Address::new(Network::Tcp, ":1234"),
            Address::Tcp("127.0.0.1:1234".into())
        );
        assert_eq!(
            Address::new(Network::Unix, "/tmp/x").to_string(),
            "unix /tmp/x"
        );
    }
}

//! The environment contract between a host and the plugin process it launches.
//!
//! | Variable | Set by the host | Read by the plugin |
//! |---|---|---|
//! | `<cookie key>` | always, `KEY=VALUE` of the [`MagicCookie`] | exact match, else exit 1 |
//! | [`PROTOCOL_VERSIONS`] | always, comma-separated app versions | version negotiation |
//! | [`MIN_PORT`], [`MAX_PORT`] | always (default 10000–25000) | TCP listeners only |
//! | [`MULTIPLEX_GRPC`] | `true` when broker multiplexing is wanted | 7th handshake field |
//! | [`CLIENT_CERT`] | the host's PEM certificate with AutoMTLS | AutoMTLS |
//! | [`UNIX_SOCKET_GROUP`] | when a socket group is configured | chgrp + mode 0660 |
//! | [`UNIX_SOCKET_DIR`] | when the host chose a socket directory | where to create the socket |
//!
//! Nothing here reads the process environment: [`PluginEnv`] is built from the variables it is
//! given, and [`HostEnv`] produces the variables to set.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fmt;
use std::ops::RangeInclusive;
use std::path::PathBuf;

use crate::handshake::parse_go_bool;

/// App-protocol versions the host offers, comma-separated.
pub const PROTOCOL_VERSIONS: &str = "PLUGIN_PROTOCOL_VERSIONS";
/// Lowest TCP port a plugin may listen on.
pub const MIN_PORT: &str = "PLUGIN_MIN_PORT";
/// Highest TCP port a plugin may listen on.
pub const MAX_PORT: &str = "PLUGIN_MAX_PORT";
/// Set to `true` when the host wants brokered connections multiplexed over one connection.
pub const MULTIPLEX_GRPC: &str = "PLUGIN_MULTIPLEX_GRPC";
/// The host's AutoMTLS certificate, PEM.
pub const CLIENT_CERT: &str = "PLUGIN_CLIENT_CERT";
/// Directory in which the plugin creates its unix socket.
pub const UNIX_SOCKET_DIR: &str = "PLUGIN_UNIX_SOCKET_DIR";
/// Group (name or numeric gid) given write access to the plugin's unix socket.
pub const UNIX_SOCKET_GROUP: &str = "PLUGIN_UNIX_SOCKET_GROUP";

/// go-plugin's default `PLUGIN_MIN_PORT`.
pub const DEFAULT_MIN_PORT: u16 = 10000;
/// go-plugin's default `PLUGIN_MAX_PORT`.
pub const DEFAULT_MAX_PORT: u16 = 25000;

/// What go-plugin prints on stderr when a plugin is run without the host's cookie.
pub const NOT_LAUNCHED_BY_HOST_MESSAGE: &str = "This binary is a plugin. These are not meant to be executed directly.\n\
     Please execute the program that consumes these plugins, which will\n\
     load any plugins automatically\n";

/// What go-plugin prints on stderr when the plugin itself has no cookie configured.
pub const MISCONFIGURED_COOKIE_MESSAGE: &str = "Misconfigured ServeConfig given to serve this plugin: no magic cookie\n\
     key or value was set. Please notify the plugin author and report\n\
     this as a bug.\n";

/// The magic cookie: an environment variable the host sets so a plugin can tell it was launched
/// by its host. Not a security measure, a UX one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MagicCookie {
    key: String,
    value: String,
}

impl MagicCookie {
    /// A cookie `key=value`, e.g. `MagicCookie::new("BASIC_PLUGIN", "hello")`.
    pub fn new(key: impl Into<String>, value: impl Into<String>) -> Self {
        MagicCookie {
            key: key.into(),
            value: value.into(),
        }
    }

    /// The variable name.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The expected value.
    pub fn value(&self) -> &str {
        &self.value
    }
}

/// Why a plugin refuses to start.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CookieError {
    /// The plugin's own configuration has an empty cookie key or value.
    #[error("{}", MISCONFIGURED_COOKIE_MESSAGE.trim_end())]
    Misconfigured,
    /// The cookie variable is missing or has another value: not launched by its host.
    #[error("{}", NOT_LAUNCHED_BY_HOST_MESSAGE.trim_end())]
    NotLaunchedByHost,
}

impl CookieError {
    /// The exact text go-plugin writes to stderr (with its trailing newline).
    pub fn stderr_message(self) -> &'static str {
        match self {
            CookieError::Misconfigured => MISCONFIGURED_COOKIE_MESSAGE,
            CookieError::NotLaunchedByHost => NOT_LAUNCHED_BY_HOST_MESSAGE,
        }
    }
}

/// A bad port variable.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EnvError {
    /// `PLUGIN_MIN_PORT` or `PLUGIN_MAX_PORT` is not a 32-bit integer.
    #[error("couldn't get value from {name}: invalid syntax {value:?}")]
    PortSyntax {
        /// The variable.
        name: &'static str,
        /// Its value.
        value: String,
    },
    /// `PLUGIN_MIN_PORT` > `PLUGIN_MAX_PORT`.
    #[error("{MIN_PORT} value of {min} is greater than {MAX_PORT} value of {max}")]
    PortOrder {
        /// The minimum.
        min: i64,
        /// The maximum.
        max: i64,
    },
}

/// The variables a host sets, in go-plugin's order (see [`HostEnv::vars`]).
#[derive(Clone, Debug)]
pub struct HostEnv<'a> {
    /// The cookie.
    pub cookie: &'a MagicCookie,
    /// Offered app-protocol versions.
    pub versions: &'a [u32],
    /// `PLUGIN_MIN_PORT`.
    pub min_port: u16,
    /// `PLUGIN_MAX_PORT`.
    pub max_port: u16,
    /// Ask for broker multiplexing.
    pub multiplex: bool,
    /// The host's AutoMTLS certificate (PEM).
    pub client_cert_pem: Option<&'a str>,
    /// Socket group.
    pub unix_socket_group: Option<&'a str>,
    /// Socket directory.
    pub unix_socket_dir: Option<&'a OsStr>,
}

impl HostEnv<'_> {
    /// The variables in the order go-plugin appends them (later entries win on duplicates).
    pub fn vars(&self) -> Vec<(OsString, OsString)> {
        let versions = self
            .versions
            .iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(",");
        let mut vars: Vec<(OsString, OsString)> = vec![
            (
                self.cookie.key.clone().into(),
                self.cookie.value.clone().into(),
            ),
            (MIN_PORT.into(), self.min_port.to_string().into()),
            (MAX_PORT.into(), self.max_port.to_string().into()),
            (PROTOCOL_VERSIONS.into(), versions.into()),
        ];
        if self.multiplex {
            vars.push((MULTIPLEX_GRPC.into(), "true".into()));
        }
        if let Some(pem) = self.client_cert_pem {
            vars.push((CLIENT_CERT.into(), pem.into()));
        }
        if let Some(group) = self.unix_socket_group {
            vars.push((UNIX_SOCKET_GROUP.into(), group.into()));
        }
        if let Some(dir) = self.unix_socket_dir {
            vars.push((UNIX_SOCKET_DIR.into(), dir.into()));
        }
        vars
    }
}

/// The host's offer in `PLUGIN_PROTOCOL_VERSIONS`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostVersions {
    /// The versions that parsed.
    pub versions: Vec<u32>,
    /// Tokens that are not versions; go-plugin prints
    /// `server sent invalid plugin version "<token>"` on stderr for each and ignores it.
    pub invalid: Vec<String>,
}

/// What a plugin learns from its environment.
#[derive(Clone, Default)]
pub struct PluginEnv {
    vars: HashMap<OsString, OsString>,
}

impl fmt::Debug for PluginEnv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The host's whole environment can hold secrets: show only the go-plugin variables.
        let mut d = f.debug_struct("PluginEnv");
        for name in [
            PROTOCOL_VERSIONS,
            MIN_PORT,
            MAX_PORT,
            MULTIPLEX_GRPC,
            UNIX_SOCKET_DIR,
            UNIX_SOCKET_GROUP,
        ] {
            d.field(name, &self.get(name));
        }
        d.field(CLIENT_CERT, &self.get(CLIENT_CERT).map(|_| "<pem>"));
        d.finish()
    }
}

impl PluginEnv {
    /// Reads the given variables (a plugin passes `std::env::vars_os()`).
    pub fn from_vars<K, V>(vars: impl IntoIterator<Item = (K, V)>) -> Self
    where
        K: Into<OsString>,
        V: Into<OsString>,
    {
        PluginEnv {
            vars: vars
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        }
    }

    /// A variable's value, if set.
    pub fn get(&self, name: &str) -> Option<&OsStr> {
        self.vars.get(OsStr::new(name)).map(OsString::as_os_str)
    }

    fn get_str(&self, name: &str) -> Option<String> {
        self.get(name)
            .filter(|v| !v.is_empty())
            .map(|v| v.to_string_lossy().into_owned())
    }

    /// Checks the magic cookie as go-plugin does: the plugin's own cookie must be configured, and
    /// the variable must be set to exactly the expected value.
    pub fn check_cookie(&self, cookie: &MagicCookie) -> Result<(), CookieError> {
        if cookie.key.is_empty() || cookie.value.is_empty() {
            return Err(CookieError::Misconfigured);
        }
        match self.get(&cookie.key) {
            Some(v) if v == OsStr::new(&cookie.value) => Ok(()),
            _ => Err(CookieError::NotLaunchedByHost),
        }
    }

    /// The versions the host offered. Missing or empty means a legacy host that offers nothing.
    pub fn host_versions(&self) -> HostVersions {
        let mut out = HostVersions::default();
        let Some(list) = self.get_str(PROTOCOL_VERSIONS) else {
            return out;
        };
        for token in list.split(',') {
            // Go's Atoi: optional sign and digits. Negative versions cannot be ours: invalid.
            match token.parse::<u32>() {
                Ok(v) => out.versions.push(v),
                Err(_) => out.invalid.push(token.to_owned()),
            }
        }
        out
    }

    /// Whether the host asked for multiplexing at all: then the handshake line gets a 7th field
    /// (go-plugin prints it whenever the variable is non-empty).
    pub fn multiplex_requested(&self) -> bool {
        self.get(MULTIPLEX_GRPC).is_some_and(|v| !v.is_empty())
    }

    /// Whether the host asked for multiplexing with a value Go's `ParseBool` reads as true.
    pub fn multiplex_enabled(&self) -> bool {
        self.get_str(MULTIPLEX_GRPC)
            .and_then(|v| parse_go_bool(&v))
            .unwrap_or(false)
    }

    /// The host's AutoMTLS certificate (PEM), when set and non-empty.
    pub fn client_cert_pem(&self) -> Option<String> {
        self.get_str(CLIENT_CERT)
    }

    /// The directory for the plugin's unix socket, when set and non-empty.
    pub fn unix_socket_dir(&self) -> Option<PathBuf> {
        self.get(UNIX_SOCKET_DIR)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    }

    /// The group for the plugin's unix socket, when set and non-empty.
    pub fn unix_socket_group(&self) -> Option<String> {
        self.get_str(UNIX_SOCKET_GROUP)
    }

    /// The TCP ports to try, lowest first. Both unset gives `0..=0`: an ephemeral port.
    pub fn port_range(&self) -> Result<RangeInclusive<u16>, EnvError> {
        let read = |name: &'static str| -> Result<i64, EnvError> {
            match self.get_str(name) {
                None => Ok(0),
                Some(v) => v
                    .parse::<i32>()
                    .map(i64::from)
                    .map_err(|_| EnvError::PortSyntax { name, value: v }),
            }
        };
        let (min, max) = (read(MIN_PORT)?, read(MAX_PORT)?);
        if min > max {
            return Err(EnvError::PortOrder { min, max });
        }
        let clamp = |p: i64| u16::try_from(p.clamp(0, i64::from(u16::MAX))).unwrap_or(u16::MAX);
        Ok(clamp(min)..=clamp(max))
    }
}

/// Picks the app-protocol version as go-plugin's `protocolVersion` does: the highest version the
/// plugin has that the host offered; when there is none, the plugin's **lowest** version (the host
/// then refuses it, which is how a mismatch is reported). `None` only when the plugin has no
/// version at all.
pub fn negotiate_version(
    plugin_versions: impl IntoIterator<Item = u32>,
    host: &[u32],
) -> Option<u32> {
    let mut mine: Vec<u32> = plugin_versions.into_iter().collect();
    mine.sort_unstable();
    mine.dedup();
    mine.iter()
        .rev()
        .find(|v| host.contains(v))
        .or_else(|| mine.first())
        .copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &[(&str, &str)]) -> PluginEnv {
        PluginEnv::from_vars(vars.iter().map(|(k, v)| (*k, *v)))
    }

    #[test]
    fn cookie_check() {
        let cookie = MagicCookie::new("BASIC_PLUGIN", "hello");
        assert_eq!(
            env(&[("BASIC_PLUGIN", "hello")]).check_cookie(&cookie),
            Ok(())
        );
        assert_eq!(
            env(&[("BASIC_PLUGIN", "hello ")]).check_cookie(&cookie),
            Err(CookieError::NotLaunchedByHost)
        );
        assert_eq!(
            env(&[]).check_cookie(&cookie),
            Err(CookieError::NotLaunchedByHost)
        );
        assert_eq!(
            env(&[("", "")]).check_cookie(&MagicCookie::new("", "")),
            Err(CookieError::Misconfigured)
        );
        assert!(
            CookieError::NotLaunchedByHost
                .stderr_message()
                .starts_with("This binary is a plugin.")
        );
    }

    #[test]
    fn versions_in_any_order_and_bad_tokens() {
        let v = env(&[(PROTOCOL_VERSIONS, "3,1,x,2,,+4")]).host_versions();
        assert_eq!(v.versions, vec![3, 1, 2, 4]);
        assert_eq!(v.invalid, vec!["x", ""]);
        assert_eq!(env(&[]).host_versions(), HostVersions::default());
    }

    #[test]
    fn negotiation_matches_go() {
        assert_eq!(negotiate_version([1, 2, 3], &[3, 2, 1]), Some(3));
        assert_eq!(negotiate_version([2, 4], &[1, 2, 3]), Some(2));
        // No common version: the lowest plugin version, so the host reports the mismatch.
        assert_eq!(negotiate_version([5, 2], &[1]), Some(2));
        // A legacy host that offers nothing gets the lowest version.
        assert_eq!(negotiate_version([3, 4], &[]), Some(3));
        assert_eq!(negotiate_version([], &[1]), None);
    }

    #[test]
    fn multiplex_variable() {
        let set = env(&[(MULTIPLEX_GRPC, "true")]);
        assert!(set.multiplex_requested() && set.multiplex_enabled());
        // go-plugin prints the 7th field for any non-empty value but only muxes for ParseBool true.
        let odd = env(&[(MULTIPLEX_GRPC, "false")]);
        assert!(odd.multiplex_requested() && !odd.multiplex_enabled());
        assert!(!env(&[(MULTIPLEX_GRPC, "")]).multiplex_requested());
    }

    #[test]
    fn port_range() {
        assert_eq!(env(&[]).port_range(), Ok(0..=0));
        assert_eq!(
            env(&[(MIN_PORT, "10000"), (MAX_PORT, "25000")]).port_range(),
            Ok(10000..=25000)
        );
        assert_eq!(
            env(&[(MIN_PORT, "5"), (MAX_PORT, "4")]).port_range(),
            Err(EnvError::PortOrder { min: 5, max: 4 })
        );
        assert!(matches!(
            env(&[(MIN_PORT, "x")]).port_range(),
            Err(EnvError::PortSyntax { .. })
        ));
        assert!(matches!(
            env(&[(MAX_PORT, "99999999999")]).port_range(),
            Err(EnvError::PortSyntax { .. })
        ));
    }

    #[test]
    fn host_env_order() {
        let cookie = MagicCookie::new("K", "V");
        let vars = HostEnv {
            cookie: &cookie,
            versions: &[1, 2],
            min_port: 10000,
            max_port: 25000,
            multiplex: true,
            client_cert_pem: Some("PEM"),
            unix_socket_group: Some("wheel"),
            unix_socket_dir: Some(OsStr::new("/tmp/d")),
        }
        .vars();
        let names: Vec<_> = vars.iter().map(|(k, _)| k.to_string_lossy()).collect();
        assert_eq!(
            names,
            [
                "K",
                MIN_PORT,
                MAX_PORT,
                PROTOCOL_VERSIONS,
                MULTIPLEX_GRPC,
                CLIENT_CERT,
                UNIX_SOCKET_GROUP,
                UNIX_SOCKET_DIR
            ]
        );
        assert_eq!(vars[3].1, "1,2");
        // And a plugin reads back what a host writes.
        let plugin = PluginEnv::from_vars(vars);
        assert_eq!(plugin.check_cookie(&cookie), Ok(()));
        assert_eq!(plugin.host_versions().versions, vec![1, 2]);
        assert!(plugin.multiplex_enabled());
        assert_eq!(plugin.client_cert_pem().as_deref(), Some("PEM"));
        assert_eq!(plugin.unix_socket_dir(), Some(PathBuf::from("/tmp/d")));
    }
}

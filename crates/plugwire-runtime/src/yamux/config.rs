//! Session configuration, mirroring hashicorp/yamux's `Config` / `DefaultConfig()`.

use std::time::Duration;

use super::error::Error;

/// The window every stream starts with, in both directions (hashicorp `initialStreamWindow`).
pub const INITIAL_STREAM_WINDOW: u32 = 256 * 1024;

/// Upper bound of [`Config::accept_backlog`].
const MAX_ACCEPT_BACKLOG: usize = 1 << 20;

/// Tunables of a session. [`Config::default`] is hashicorp's `DefaultConfig()`, which is what
/// go-plugin uses on both sides.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Inbound streams waiting for [`Session::accept`](super::Session::accept) beyond this many
    /// are refused with RST; also the most outbound streams that may wait for their ACK at once
    /// ([`Control::open`](super::Control::open) waits for a slot). Default 256.
    pub accept_backlog: usize,
    /// Send a ping every [`keepalive_interval`](Self::keepalive_interval) and close the session
    /// if it is not answered within [`connection_write_timeout`](Self::connection_write_timeout).
    /// Default on.
    pub enable_keepalive: bool,
    /// Time between keepalive pings (measured from the previous answer). Default 30 s.
    pub keepalive_interval: Duration,
    /// How long a ping may stay unanswered (keepalive and [`Control::ping`](super::Control::ping)),
    /// and how long closing may take to flush the last frames. Default 10 s.
    pub connection_write_timeout: Duration,
    /// The receive window we grant each stream, at least [`INITIAL_STREAM_WINDOW`]; anything
    /// larger is announced to the peer with the SYN / ACK. Default 256 KiB.
    pub max_stream_window: u32,
    /// An outbound stream that the peer has not ACKed within this time closes the whole
    /// session, as hashicorp does. `None` disables it. Default 75 s.
    pub stream_open_timeout: Option<Duration>,
    /// A stream whose handle was dropped (FIN sent) is reset with RST if the peer has not sent
    /// its FIN within this time, so a peer that never closes cannot pin memory. `None` waits
    /// forever. Default 5 min (hashicorp's `StreamCloseTimeout`).
    pub stream_close_timeout: Option<Duration>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            accept_backlog: 256,
            enable_keepalive: true,
            keepalive_interval: Duration::from_secs(30),
            connection_write_timeout: Duration::from_secs(10),
            max_stream_window: INITIAL_STREAM_WINDOW,
            stream_open_timeout: Some(Duration::from_secs(75)),
            stream_close_timeout: Some(Duration::from_secs(5 * 60)),
        }
    }
}

impl Config {
    /// Checks the same constraints as hashicorp's `VerifyConfig`, plus a non-zero write timeout.
    pub fn validate(&self) -> Result<(), Error> {
        if self.accept_backlog == 0 {
            return Err(Error::InvalidConfig("accept_backlog must be positive"));
        }
        if self.accept_backlog > MAX_ACCEPT_BACKLOG {
            return Err(Error::InvalidConfig("accept_backlog must be at most 2^20"));
        }
        if self.keepalive_interval.is_zero() {
            return Err(Error::InvalidConfig("keepalive_interval must be positive"));
        }
        if self.connection_write_timeout.is_zero() {
            return Err(Error::InvalidConfig(
                "connection_write_timeout must be positive",
            ));
        }
        if self.max_stream_window < INITIAL_STREAM_WINDOW {
            return Err(Error::InvalidConfig(
                "max_stream_window must be at least 256 KiB",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_hashicorp_default_config() {
        let c = Config::default();
        assert_eq!(c.accept_backlog, 256);
        assert!(c.enable_keepalive);
        assert_eq!(c.keepalive_interval, Duration::from_secs(30));
        assert_eq!(c.connection_write_timeout, Duration::from_secs(10));
        assert_eq!(c.max_stream_window, 262_144);
        assert_eq!(c.stream_open_timeout, Some(Duration::from_secs(75)));
        assert_eq!(c.stream_close_timeout, Some(Duration::from_secs(300)));
        assert!(c.validate().is_ok());
    }

    #[test]
    fn validate_rejects_bad_values() {
        let bad = [
            Config {
                accept_backlog: 0,
                ..Config::default()
            },
            Config {
                accept_backlog: MAX_ACCEPT_BACKLOG + 1,
                ..Config::default()
            },
            Config {
                keepalive_interval: Duration::ZERO,
                ..Config::default()
            },
            Config {
                connection_write_timeout: Duration::ZERO,
                ..Config::default()
            },
            Config {
                max_stream_window: INITIAL_STREAM_WINDOW - 1,
                ..Config::default()
            },
        ];
        for c in bad {
            assert!(
                matches!(c.validate(), Err(Error::InvalidConfig(_))),
                "{c:?}"
            );
        }
    }
}

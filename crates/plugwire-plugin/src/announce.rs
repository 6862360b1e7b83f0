//! Telling the host where the plugin listens: the handshake line, or in debug mode the reattach
//! configuration.

use std::io::{self, Write as _};

use plugwire_protocol::Address;
use plugwire_protocol::handshake::HandshakeLine;
use plugwire_protocol::reattach::{self, ReattachConfig};

use crate::serve::ServeError;

/// Prints the handshake line, or in debug mode the reattach configuration (and how to use it
/// on stderr), on stdout, flushed.
pub(crate) fn announce(
    line: &HandshakeLine,
    debug: Option<&str>,
    pid: u32,
) -> Result<(), ServeError> {
    let announcement = match debug {
        None => line.to_string(),
        Some(name) => {
            let address = Address::new(line.network, &line.address);
            let mut reattach = ReattachConfig::new(line.protocol, line.app_version, &address, pid);
            reattach.test = true;
            let map = reattach::format_map(&[(name.to_owned(), reattach)].into_iter().collect());
            eprintln!(
                "Plugin {name} started in debug mode; stop it with Ctrl-C. To attach a host, \
                 give it this reattach configuration (e.g. TF_REATTACH_PROVIDERS='<it>'):\n\t{map}"
            );
            map
        }
    };
    let mut stdout = io::stdout().lock();
    writeln!(stdout, "{announcement}")
        .and_then(|()| stdout.flush())
        .map_err(ServeError::Stdout)
}

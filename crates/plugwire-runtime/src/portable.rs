//! A switch that makes Linux use the code paths of other unix systems, so `make test` exercises
//! them: set `PLUGWIRE_FORCE_PORTABLE=1` in a host's or plugin's environment.

use std::sync::OnceLock;

/// The environment variable.
pub const VAR: &str = "PLUGWIRE_FORCE_PORTABLE";

/// Whether the portable code paths are forced.
pub fn forced() -> bool {
    static FORCED: OnceLock<bool> = OnceLock::new();
    *FORCED.get_or_init(|| std::env::var_os(VAR).is_some_and(|v| v == "1"))
}

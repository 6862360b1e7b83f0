//! Panics reach the host's log once, as a Go plugin's do.
//!
//! A Go panic prints `panic: <message>` and its trace on the real stderr, which go-plugin hosts
//! log at error level. plugwire's hook, installed once per process, writes that first line to
//! the real stderr, then runs the hook that was installed before it (Rust's default hook prints
//! the location and, with `RUST_BACKTRACE`, the backtrace) with fd 2 pointing at the real stderr
//! too, so the whole trace is in the host's log and none of it in the forwarded stderr.

use std::os::fd::{BorrowedFd, OwnedFd};
use std::sync::{Mutex, Once};

use crate::real_stderr;

/// The forwarded-stderr pipe that fd 2 points at while stdio is captured: the hook puts it back
/// after the previous hook has run.
static CAPTURED_STDERR: Mutex<Option<OwnedFd>> = Mutex::new(None);

/// Installs the hook (once per process; later calls do nothing).
pub(crate) fn install_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let message = info
                .payload()
                .downcast_ref::<&str>()
                .copied()
                .or_else(|| info.payload().downcast_ref::<String>().map(String::as_str))
                .unwrap_or("Box<dyn Any>");
            real_stderr::write(format!("panic: {message}\n\n").as_bytes());
            let captured = lock();
            match (captured.as_ref(), real_stderr::file()) {
                (Some(pipe), Some(real)) => {
                    let _ = nix::unistd::dup2_stderr(real);
                    previous(info);
                    let _ = nix::unistd::dup2_stderr(pipe);
                }
                _ => previous(info),
            }
        }));
    });
}

/// Tells the hook that fd 2 is now the forwarded-stderr pipe `pipe` (a duplicate of it).
pub(crate) fn set_captured_stderr(pipe: OwnedFd) {
    *lock() = Some(pipe);
}

/// Points fd 2 back at `real` (the original stderr); the hook leaves fd 2 alone from then on.
pub(crate) fn restore_stderr(real: BorrowedFd<'_>) -> std::io::Result<()> {
    let mut captured = lock();
    nix::unistd::dup2_stderr(real)?;
    *captured = None;
    Ok(())
}

fn lock() -> std::sync::MutexGuard<'static, Option<OwnedFd>> {
    CAPTURED_STDERR
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

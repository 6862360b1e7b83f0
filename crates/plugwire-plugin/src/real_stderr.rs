//! The plugin's real stderr: where log lines and panic messages go, because that is what a
//! go-plugin host reads as the plugin's log, even after fd 2 has been redirected to the host's
//! stdio stream.

use std::fs::File;
use std::io::{self, Write as _};
use std::sync::{Mutex, OnceLock};

/// The real stderr, once the plugin's fd 2 has been redirected.
static REAL_STDERR: OnceLock<File> = OnceLock::new();

/// Serializes writers of the real stderr so lines longer than a pipe's atomic write size
/// (log lines, panic messages) never interleave.
static LOCK: Mutex<()> = Mutex::new(());

/// Remembers `file` (a duplicate of the original fd 2) as the real stderr. The first one stays:
/// every later one is a duplicate of the same descriptor.
pub(crate) fn remember(file: File) {
    let _ = REAL_STDERR.set(file);
}

/// Writes to the plugin's real stderr.
pub(crate) fn write(bytes: &[u8]) {
    #[cfg(test)]
    if test_capture::take(bytes) {
        return;
    }
    let _serialized = LOCK
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    match REAL_STDERR.get() {
        Some(mut file) => {
            let _ = file.write_all(bytes);
        }
        None => {
            let _ = io::stderr().lock().write_all(bytes);
        }
    }
}

/// The real stderr as a file, when fd 2 is redirected.
pub(crate) fn file() -> Option<&'static File> {
    REAL_STDERR.get()
}

/// Lets unit tests see what would reach the real stderr.
#[cfg(test)]
pub(crate) fn capture_for_test(f: impl FnOnce()) -> Vec<u8> {
    test_capture::BUFFER.with(|b| *b.borrow_mut() = Some(Vec::new()));
    f();
    test_capture::BUFFER.with(|b| b.borrow_mut().take().unwrap_or_default())
}

#[cfg(test)]
mod test_capture {
    use std::cell::RefCell;

    thread_local! {
        pub(super) static BUFFER: RefCell<Option<Vec<u8>>> = const { RefCell::new(None) };
    }

    pub(super) fn take(bytes: &[u8]) -> bool {
        BUFFER.with(|b| match b.borrow_mut().as_mut() {
            Some(buffer) => {
                buffer.extend_from_slice(bytes);
                true
            }
            None => false,
        })
    }
}

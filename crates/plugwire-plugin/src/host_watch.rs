//! Noticing that the host has gone away, so a plugin never outlives it.

use std::os::fd::{AsFd as _, OwnedFd};

/// Resolves when the host has gone away: the read end of the plugin's original stdout pipe (the
/// host's handshake reader) closed. Never resolves when stdout is not a pipe (a terminal, a file,
/// a debug session).
///
/// A thread blocks in `poll(2)`, which reports `POLLERR` on a pipe's write end once its reader is
/// gone; registering the descriptor with the runtime instead would make it non-blocking for every
/// writer sharing it.
pub(crate) async fn host_gone(stdout: OwnedFd) {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    use nix::sys::stat::{SFlag, fstat};
    let is_pipe = fstat(stdout.as_fd())
        .map(|s| SFlag::from_bits_truncate(s.st_mode) & SFlag::S_IFMT == SFlag::S_IFIFO)
        .unwrap_or(false);
    if !is_pipe {
        return std::future::pending().await;
    }
    let (tx, rx) = tokio::sync::oneshot::channel();
    let spawned = std::thread::Builder::new()
        .name("plugwire-host-watch".into())
        .spawn(move || {
            loop {
                let mut fds = [PollFd::new(stdout.as_fd(), PollFlags::empty())];
                match poll(&mut fds, PollTimeout::NONE) {
                    Ok(_) => {
                        let events = fds[0].revents().unwrap_or(PollFlags::empty());
                        if events.intersects(PollFlags::POLLERR | PollFlags::POLLHUP) {
                            let _ = tx.send(());
                            return;
                        }
                    }
                    Err(nix::errno::Errno::EINTR) => {}
                    Err(_) => return,
                }
            }
        });
    match spawned {
        Ok(_) if rx.await.is_ok() => {}
        _ => std::future::pending().await,
    }
}

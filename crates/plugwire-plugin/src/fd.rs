//! File-descriptor plumbing that differs between unix systems.

use std::io;
use std::os::fd::{AsFd, OwnedFd};

/// A pipe whose two ends are closed on `exec` (children the plugin starts do not inherit them).
pub(crate) fn cloexec_pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    #[cfg(target_os = "linux")]
    if !plugwire_runtime::portable::forced() {
        return nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(io::Error::from);
    }
    portable_cloexec_pipe()
}

/// `pipe(2)` then `FD_CLOEXEC` on both ends, for systems without `pipe2` (macOS). A process
/// another thread starts between the two calls inherits the ends (std has the same gap there).
fn portable_cloexec_pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let (read, write) = nix::unistd::pipe().map_err(io::Error::from)?;
    for fd in [&read, &write] {
        set_cloexec(fd)?;
    }
    Ok((read, write))
}

fn set_cloexec(fd: &OwnedFd) -> io::Result<()> {
    use nix::fcntl::{FcntlArg, FdFlag, fcntl};
    fcntl(fd, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC))
        .map(drop)
        .map_err(io::Error::from)
}

/// A duplicate of `fd` that is closed on `exec` (std uses `F_DUPFD_CLOEXEC`).
pub(crate) fn dup_cloexec(fd: impl AsFd) -> io::Result<OwnedFd> {
    fd.as_fd().try_clone_to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::fcntl::{FcntlArg, FdFlag, fcntl};

    fn is_cloexec(fd: &OwnedFd) -> bool {
        let flags = fcntl(fd, FcntlArg::F_GETFD).expect("F_GETFD");
        FdFlag::from_bits_truncate(flags).contains(FdFlag::FD_CLOEXEC)
    }

    #[test]
    fn both_pipe_flavours_close_on_exec_and_carry_bytes() {
        for (read, write) in [
            cloexec_pipe().expect("pipe"),
            portable_cloexec_pipe().expect("portable pipe"),
        ] {
            assert!(is_cloexec(&read) && is_cloexec(&write));
            nix::unistd::write(&write, b"hi").expect("write");
            let mut buf = [0u8; 2];
            nix::unistd::read(&read, &mut buf).expect("read");
            assert_eq!(&buf, b"hi");
        }
        let dup = dup_cloexec(io::stderr()).expect("dup");
        assert!(is_cloexec(&dup));
    }
}

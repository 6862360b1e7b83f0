//! The plugin's own stdout and stderr, forwarded to the host over `plugin.GRPCStdio`.
//!
//! A Go plugin swaps its `os.Stdout`/`os.Stderr` variables for pipes once the handshake line is
//! out; file descriptors 1 and 2 keep pointing at the host. Rust has no such variables
//! (`println!`/`eprintln!` write to the descriptors), so after the handshake line fd 1 and fd 2
//! are replaced by pipes whose contents go to the host as `StdioData` chunks, and the real
//! descriptors are kept for what must reach the host directly: log lines
//! ([`crate::log`]) and panic messages (go-plugin hosts log the plugin's real stderr).
//!
//! Nothing written is dropped: a full pipe makes the writer wait until the host reads. At
//! shutdown the pipes are drained into the stream before it ends, and the real descriptors are
//! put back.

use std::fs::File;
use std::io::{self, Write as _};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use futures_util::Stream;
use plugwire_protocol::pb::StdioData;
use plugwire_protocol::pb::stdio_data::Channel;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// The size of the chunks read from the pipes and sent to the host.
const CHUNK: usize = 32 * 1024;

/// The real stderr, once the plugin's fd 2 has been redirected.
static REAL_STDERR: OnceLock<File> = OnceLock::new();

/// Serializes writers of the real stderr so lines longer than a pipe's atomic write size
/// (log lines, panic messages) never interleave.
static REAL_STDERR_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Writes to the plugin's real stderr (what the host reads as log lines), even after fd 2 has
/// been redirected to the host's stdio stream.
pub(crate) fn write_real_stderr(bytes: &[u8]) {
    #[cfg(test)]
    if test_capture::take(bytes) {
        return;
    }
    let _serialized = REAL_STDERR_LOCK
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

/// Lets unit tests see what would reach the real stderr.
#[cfg(test)]
pub(crate) fn capture_real_stderr_for_test(f: impl FnOnce()) -> Vec<u8> {
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

/// The redirected descriptors and what reads them.
pub(crate) struct Capture {
    real_stdout: OwnedFd,
    real_stderr: OwnedFd,
    output: Output,
    readers: Vec<tokio::task::JoinHandle<()>>,
}

/// The captured output as the `GRPCStdio` service sees it.
#[derive(Clone)]
pub(crate) struct Output {
    chunks: Arc<tokio::sync::Mutex<mpsc::Receiver<StdioData>>>,
    /// How many `StreamStdio` calls are running.
    streams: Arc<AtomicUsize>,
    /// Cancelled once the last chunk has been handed to a stream.
    delivered: CancellationToken,
}

impl Output {
    /// Waits (at most `limit`) until everything written has gone to the host, if a host is
    /// reading at all.
    pub(crate) async fn wait_delivered(&self, limit: std::time::Duration) {
        if self.streams.load(Ordering::Relaxed) > 0 {
            let _ = tokio::time::timeout(limit, self.delivered.cancelled()).await;
        }
    }
}

impl Capture {
    /// Redirects fd 1 and fd 2 to pipes read by background tasks; must run within a runtime.
    pub(crate) fn start(shutdown: &CancellationToken) -> io::Result<Capture> {
        io::stdout().flush()?;
        let real_stdout = nix::unistd::dup(io::stdout())?;
        let real_stderr = nix::unistd::dup(io::stderr())?;
        let (tx, rx) = mpsc::channel(32);
        let mut readers = Vec::with_capacity(2);
        for (channel, fd) in [(Channel::Stdout, 1), (Channel::Stderr, 2)] {
            let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
            match fd {
                1 => nix::unistd::dup2_stdout(&write)?,
                _ => nix::unistd::dup2_stderr(&write)?,
            }
            drop(write);
            let pipe = tokio::net::unix::pipe::Receiver::from_owned_fd(read)?;
            readers.push(tokio::spawn(forward(
                pipe,
                channel,
                tx.clone(),
                shutdown.clone(),
            )));
        }
        // Logs and panic messages keep reaching the host's stderr reader.
        let _ = REAL_STDERR.set(File::from(real_stderr.try_clone()?));
        install_panic_hook();
        Ok(Capture {
            real_stdout,
            real_stderr,
            output: Output {
                chunks: Arc::new(tokio::sync::Mutex::new(rx)),
                streams: Arc::new(AtomicUsize::new(0)),
                delivered: CancellationToken::new(),
            },
            readers,
        })
    }

    /// What the `GRPCStdio` service streams to the host.
    pub(crate) fn output(&self) -> Output {
        self.output.clone()
    }

    /// The descriptor the host reads the plugin's stdout from (the handshake pipe).
    pub(crate) fn real_stdout(&self) -> &OwnedFd {
        &self.real_stdout
    }

    /// Flushes, waits (bounded) for the readers to drain the pipes, and puts fd 1 and fd 2 back.
    pub(crate) async fn finish(self) {
        let _ = io::stdout().flush();
        for reader in self.readers {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(1), reader).await;
        }
        let _ = nix::unistd::dup2_stdout(self.real_stdout.as_fd());
        let _ = nix::unistd::dup2_stderr(self.real_stderr.as_fd());
    }
}

/// Copies one pipe into the output channel until shutdown, then drains what is left.
async fn forward(
    pipe: tokio::net::unix::pipe::Receiver,
    channel: Channel,
    tx: mpsc::Sender<StdioData>,
    shutdown: CancellationToken,
) {
    let send = |data: Vec<u8>| StdioData {
        channel: channel as i32,
        data,
    };
    loop {
        tokio::select! {
            biased;
            ready = pipe.readable() => {
                if ready.is_err() {
                    return;
                }
            }
            () = shutdown.cancelled() => break,
        }
        match read_chunk(&pipe) {
            Ok(Some(data)) => {
                if tx.send(send(data)).await.is_err() {
                    return;
                }
            }
            Ok(None) => return,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(_) => return,
        }
    }
    // Shutting down: whatever is already in the pipe still goes out.
    while let Ok(Some(data)) = read_chunk(&pipe) {
        if tx.send(send(data)).await.is_err() {
            return;
        }
    }
}

/// One non-blocking read: `Ok(None)` at end of file.
fn read_chunk(pipe: &tokio::net::unix::pipe::Receiver) -> io::Result<Option<Vec<u8>>> {
    let mut buf = vec![0u8; CHUNK];
    let n = pipe.try_read(&mut buf)?;
    if n == 0 {
        return Ok(None);
    }
    buf.truncate(n);
    Ok(Some(buf))
}

/// The `GRPCStdio` stream: chunks until the plugin shuts down and the pipes are drained. One
/// stream at a time reads the output; a second caller waits for the first to end.
pub(crate) fn stream(output: Output) -> impl Stream<Item = StdioData> + Send + 'static {
    /// Counts a running stream for as long as it lives.
    struct Running(Arc<AtomicUsize>);
    impl Drop for Running {
        fn drop(&mut self) {
            self.0.fetch_sub(1, Ordering::Relaxed);
        }
    }
    output.streams.fetch_add(1, Ordering::Relaxed);
    let running = Running(output.streams.clone());
    futures_util::stream::unfold(
        (
            output,
            running,
            None::<tokio::sync::OwnedMutexGuard<mpsc::Receiver<StdioData>>>,
        ),
        |(output, running, guard)| async move {
            let mut guard = match guard {
                Some(guard) => guard,
                None => output.chunks.clone().lock_owned().await,
            };
            match guard.recv().await {
                Some(next) => Some((next, (output, running, Some(guard)))),
                None => {
                    output.delivered.cancel();
                    None
                }
            }
        },
    )
}

/// Panic messages go to the real stderr, where go-plugin hosts log them, then to whatever hook
/// was installed before. The first line is `panic: <message>` as a Go panic's is: Go and
/// plugwire hosts log it and the lines after it (the location, a backtrace) at error level.
fn install_panic_hook() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let thread = std::thread::current();
        let name = thread.name().unwrap_or("<unnamed>");
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .copied()
            .or_else(|| info.payload().downcast_ref::<String>().map(String::as_str))
            .unwrap_or("Box<dyn Any>");
        let location = info
            .location()
            .map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()))
            .unwrap_or_default();
        let backtrace = std::backtrace::Backtrace::capture();
        let backtrace = match backtrace.status() {
            std::backtrace::BacktraceStatus::Captured => format!("{backtrace}"),
            _ => String::new(),
        };
        write_real_stderr(
            format!("panic: {message}\n\nthread '{name}' panicked at {location}\n{backtrace}")
                .as_bytes(),
        );
        previous(info);
    }));
}

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

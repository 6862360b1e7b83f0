//! The plugin's own stdout and stderr, forwarded to the host over `plugin.GRPCStdio`.
//!
//! A Go plugin swaps its `os.Stdout`/`os.Stderr` variables for pipes once the handshake line is
//! out; file descriptors 1 and 2 keep pointing at the host. Rust has no such variables
//! (`println!`/`eprintln!` write to the descriptors), so after the handshake line fd 1 and fd 2
//! are replaced by pipes whose contents go to the host as `StdioData` chunks, and the real
//! descriptors are kept for what must reach the host directly: log lines ([`crate::log`]) and
//! panic messages (go-plugin hosts log the plugin's real stderr).
//!
//! Each pipe is read by a thread of its own, never by the runtime: a handler that writes more
//! than a pipe holds (`println!` of 200 KiB inline, on a current-thread runtime) blocks the
//! runtime's thread until the pipe is read, so a reader on that runtime would never run. The
//! threads queue what they read for the `StreamStdio` stream, which the runtime sends. The queue
//! is bounded ([`QUEUE_LIMIT`]), so a slow host slows the plugin's writers instead of filling
//! memory, except while the runtime does not answer: then it is blocked, most likely by the very
//! write being read, and the readers keep reading into the queue until it answers again.
//!
//! Nothing written is dropped. When the plugin shuts down, Rust's stdout buffer is flushed, fd 1
//! and fd 2 are pointed back at the real descriptors, and the readers read the pipes to their end
//! before the stream ends.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Write as _};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use futures_util::Stream;
use plugwire_runtime::pb::StdioData;
use plugwire_runtime::pb::stdio_data::Channel;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::{fd, panic, real_stderr};

/// The largest chunk read from a pipe and sent to the host.
const CHUNK: usize = 32 * 1024;

/// How many bytes may wait for the host while the runtime is running.
const QUEUE_LIMIT: usize = 1 << 20;

/// How long the runtime has to answer before the readers take it for blocked.
const PROBE_WAIT: Duration = Duration::from_millis(20);

/// Once shutting down, a pipe that stays empty this long is taken to be finished (a process
/// the plugin started may still hold its write end).
const DRAIN_IDLE: Duration = Duration::from_millis(200);

/// The redirected descriptors and what reads them.
pub(crate) struct Capture {
    shared: Arc<Shared>,
    prober: tokio::task::JoinHandle<()>,
}

/// The captured output as the `GRPCStdio` service sees it.
#[derive(Clone)]
pub(crate) struct Output {
    queue: Arc<Queue>,
    /// One `StreamStdio` call reads at a time; a second caller waits for the first to end.
    reader: Arc<tokio::sync::Mutex<()>>,
    /// How many `StreamStdio` calls are running.
    streams: Arc<AtomicUsize>,
    /// Cancelled once the last chunk has been handed to a stream.
    delivered: CancellationToken,
}

impl Output {
    /// Waits (at most `limit`) until everything written has gone to the host, if a host is
    /// reading at all.
    pub(crate) async fn wait_delivered(&self, limit: Duration) {
        if self.streams.load(Ordering::Relaxed) > 0 {
            let _ = tokio::time::timeout(limit, self.delivered.cancelled()).await;
        }
    }
}

/// What the capture shares with its shutdown task.
struct Shared {
    real_stdout: OwnedFd,
    real_stderr: OwnedFd,
    /// Written once to tell the readers to finish.
    stop: Mutex<Option<OwnedFd>>,
    restored: AtomicBool,
    output: Output,
}

impl Capture {
    /// Redirects fd 1 and fd 2 to pipes read by two threads; must run within a runtime. When
    /// `shutdown` fires, the real descriptors are put back and the pipes read to their end.
    pub(crate) fn start(shutdown: &CancellationToken) -> io::Result<Capture> {
        io::stdout().flush()?;
        let real_stdout = fd::dup_cloexec(io::stdout())?;
        let real_stderr = fd::dup_cloexec(io::stderr())?;
        let queue = Arc::new(Queue::default());
        let (stop_read, stop_write) = fd::cloexec_pipe()?;
        let stop_read = Arc::new(stop_read);
        // Readers first: if one cannot start, nothing has been redirected (the started one
        // ends when its pipe's write end is dropped).
        let mut write_ends = Vec::with_capacity(2);
        for channel in [Channel::Stdout, Channel::Stderr] {
            let (read, write) = fd::cloexec_pipe()?;
            let reader = Reader {
                pipe: read,
                stop: stop_read.clone(),
                channel,
                queue: queue.clone(),
            };
            let name = match channel {
                Channel::Stderr => "plugwire-stderr",
                _ => "plugwire-stdout",
            };
            queue.lock().readers += 1;
            if let Err(e) = std::thread::Builder::new()
                .name(name.into())
                .spawn(move || reader.run())
            {
                queue.lock().readers -= 1;
                return Err(e);
            }
            write_ends.push(write);
        }
        let [stdout_pipe, stderr_pipe] = <[OwnedFd; 2]>::try_from(write_ends)
            .map_err(|_| io::Error::other("two pipes expected"))?;
        let captured_stderr = fd::dup_cloexec(&stderr_pipe)?;
        nix::unistd::dup2_stdout(&stdout_pipe)?;
        nix::unistd::dup2_stderr(&stderr_pipe)?;
        panic::set_captured_stderr(captured_stderr);
        // Logs and panic messages keep reaching the host's stderr reader.
        real_stderr::remember(File::from(fd::dup_cloexec(&real_stderr)?));
        let shared = Arc::new(Shared {
            real_stdout,
            real_stderr,
            stop: Mutex::new(Some(stop_write)),
            restored: AtomicBool::new(false),
            output: Output {
                queue: queue.clone(),
                reader: Arc::default(),
                streams: Arc::default(),
                delivered: CancellationToken::new(),
            },
        });
        let prober = tokio::spawn(answer_probes(queue));
        let on_shutdown = shared.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            shutdown.cancelled().await;
            on_shutdown.restore();
        });
        Ok(Capture { shared, prober })
    }

    /// What the `GRPCStdio` service streams to the host.
    pub(crate) fn output(&self) -> Output {
        self.shared.output.clone()
    }

    /// The descriptor the host reads the plugin's stdout from (the handshake pipe).
    pub(crate) fn real_stdout(&self) -> &OwnedFd {
        &self.shared.real_stdout
    }

    /// Puts fd 1 and fd 2 back (if shutdown did not already) and waits, bounded, for the readers
    /// to reach the end of the pipes.
    pub(crate) async fn finish(self) {
        self.shared.restore();
        let queue = &self.shared.output.queue;
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            loop {
                let ended = queue.ended.notified();
                tokio::pin!(ended);
                ended.as_mut().enable();
                if queue.lock().readers == 0 {
                    return;
                }
                ended.await;
            }
        })
        .await;
        self.prober.abort();
        let undelivered = queue.close();
        if undelivered > 0 {
            tracing::warn!(
                bytes = undelivered,
                "some of the plugin's stdout/stderr output was not delivered: the host did not read it"
            );
        }
    }
}

impl Shared {
    /// Flushes Rust's stdout buffer into the pipe, points fd 1 and fd 2 back at the real
    /// descriptors and tells the readers to finish. Once only.
    fn restore(&self) {
        if self.restored.swap(true, Ordering::SeqCst) {
            return;
        }
        let _ = io::stdout().flush();
        let _ = nix::unistd::dup2_stdout(&self.real_stdout);
        let _ = panic::restore_stderr(self.real_stderr.as_fd());
        let stop = self
            .stop
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(stop) = stop {
            let _ = nix::unistd::write(&stop, b"x");
        }
    }
}

/// Chunks read from the pipes, waiting for the host.
#[derive(Default)]
struct Queue {
    state: Mutex<QueueState>,
    /// Readers wait here for room, or for the runtime to answer a probe.
    room: Condvar,
    /// The stream waits here for chunks.
    data: Notify,
    /// `finish` waits here for the readers to end.
    ended: Notify,
    /// Readers ask the runtime whether it is running.
    probe: Notify,
}

#[derive(Default)]
struct QueueState {
    chunks: VecDeque<StdioData>,
    bytes: usize,
    /// Reader threads still running.
    readers: usize,
    probes_sent: u64,
    probes_answered: u64,
    probe_sent_at: Option<Instant>,
    answered_at: Option<Instant>,
    /// Nobody will read the queue any more: readers no longer wait, and what they read is
    /// counted here instead of kept.
    discarded: Option<usize>,
}

impl Queue {
    fn lock(&self) -> MutexGuard<'_, QueueState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Queues a chunk (reader thread). Waits while the queue is full and the runtime answers;
    /// takes the chunk at once when the runtime does not answer within [`PROBE_WAIT`].
    fn push(&self, chunk: StdioData) {
        let mut state = self.lock();
        if let Some(discarded) = state.discarded.as_mut() {
            *discarded += chunk.data.len();
            return;
        }
        while state.bytes >= QUEUE_LIMIT {
            let now = Instant::now();
            let outstanding = state.probes_answered < state.probes_sent;
            if outstanding {
                let asked = state.probe_sent_at.unwrap_or(now);
                let waited = now.duration_since(asked);
                if waited >= PROBE_WAIT {
                    break; // the runtime is blocked: keep reading so its writer can go on
                }
                state = self.wait(state, PROBE_WAIT - waited);
            } else if state
                .answered_at
                .is_some_and(|at| now.duration_since(at) < PROBE_WAIT)
            {
                state = self.wait(state, PROBE_WAIT); // running, the host is slow: wait for room
            } else {
                state.probes_sent += 1;
                state.probe_sent_at = Some(now);
                self.probe.notify_one();
            }
        }
        state.bytes += chunk.data.len();
        state.chunks.push_back(chunk);
        drop(state);
        self.data.notify_one();
    }

    fn wait<'a>(
        &self,
        state: MutexGuard<'a, QueueState>,
        timeout: Duration,
    ) -> MutexGuard<'a, QueueState> {
        self.room
            .wait_timeout(state, timeout)
            .map(|(state, _)| state)
            .unwrap_or_else(|e| e.into_inner().0)
    }

    /// The next chunk, or `None` once the readers are done and the queue is empty.
    async fn pop(&self) -> Option<StdioData> {
        loop {
            let notified = self.data.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut state = self.lock();
                if let Some(chunk) = state.chunks.pop_front() {
                    state.bytes -= chunk.data.len();
                    drop(state);
                    self.room.notify_all();
                    return Some(chunk);
                }
                if state.readers == 0 {
                    return None;
                }
            }
            notified.await;
        }
    }

    fn reader_done(&self) {
        self.lock().readers -= 1;
        self.data.notify_one();
        self.ended.notify_waiters();
    }

    /// Stops keeping chunks; returns how many bytes were read but never delivered.
    fn close(&self) -> usize {
        let mut state = self.lock();
        let undelivered = state.bytes;
        state.chunks.clear();
        state.bytes = 0;
        state.discarded = Some(0);
        drop(state);
        self.room.notify_all();
        undelivered
    }
}

/// Answers the readers' probes: proof that the runtime runs.
async fn answer_probes(queue: Arc<Queue>) {
    loop {
        queue.probe.notified().await;
        {
            let mut state = queue.lock();
            state.probes_answered = state.probes_sent;
            state.answered_at = Some(Instant::now());
        }
        queue.room.notify_all();
    }
}

/// One pipe's reader thread.
struct Reader {
    pipe: OwnedFd,
    stop: Arc<OwnedFd>,
    channel: Channel,
    queue: Arc<Queue>,
}

impl Reader {
    /// Reads until the end of the pipe, or, once told to stop, until it stays empty for
    /// [`DRAIN_IDLE`].
    fn run(self) {
        use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
        let idle = PollTimeout::try_from(DRAIN_IDLE).unwrap_or(PollTimeout::ZERO);
        let mut stopping = false;
        let mut buf = vec![0u8; CHUNK];
        loop {
            let mut fds = [
                PollFd::new(self.pipe.as_fd(), PollFlags::POLLIN),
                PollFd::new(self.stop.as_fd(), PollFlags::POLLIN),
            ];
            let (watched, timeout) = if stopping {
                (&mut fds[..1], idle)
            } else {
                (&mut fds[..], PollTimeout::NONE)
            };
            match poll(watched, timeout) {
                Ok(0) => break, // idle after stop
                Ok(_) => {}
                Err(nix::errno::Errno::EINTR) => continue,
                Err(_) => break,
            }
            let ready = |fd: &PollFd<'_>| {
                fd.revents().is_some_and(|r| {
                    r.intersects(PollFlags::POLLIN | PollFlags::POLLHUP | PollFlags::POLLERR)
                })
            };
            if !stopping && ready(&fds[1]) {
                stopping = true;
            }
            if !ready(&fds[0]) {
                continue;
            }
            match nix::unistd::read(&self.pipe, &mut buf) {
                Ok(0) => break,
                Ok(n) => self.queue.push(StdioData {
                    channel: self.channel as i32,
                    data: buf[..n].to_vec(),
                }),
                Err(nix::errno::Errno::EINTR) => {}
                Err(_) => break,
            }
        }
        self.queue.reader_done();
    }
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
        (output, running, None::<tokio::sync::OwnedMutexGuard<()>>),
        |(output, running, slot)| async move {
            let slot = match slot {
                Some(slot) => slot,
                None => output.reader.clone().lock_owned().await,
            };
            match output.queue.pop().await {
                Some(next) => Some((next, (output, running, Some(slot)))),
                None => {
                    output.delivered.cancel();
                    None
                }
            }
        },
    )
}

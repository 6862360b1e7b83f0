//! One run of the plugin under the check's own control, below `Plugin::launch`: any
//! environment (no cookie, any version list, a certificate), the raw stdout bytes, signals, the
//! pipes closed on demand, and always killed and reaped.
//!
//! Every run gets a private `$TMPDIR`, where go-plugin (and plugwire) plugins create their unix
//! socket: whatever a killed plugin leaves there is removed with the directory.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use plugwire_protocol::MagicCookie;
use plugwire_protocol::env::HostEnv;
use plugwire_protocol::handshake::MAX_HANDSHAKE_LINE;
use tokio::io::AsyncReadExt as _;
use tokio::process::{Child, ChildStderr, ChildStdout};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::capture::StderrCapture;
use crate::launch::{Handshake, PluginCommand};

/// How long a SIGKILLed plugin may take to be reaped.
const REAP_TIMEOUT: Duration = Duration::from_secs(5);

/// How to start the plugin: the command and the handshake settings of the command line.
#[derive(Clone, Debug)]
pub(crate) struct Spec {
    pub(crate) command: PluginCommand,
    pub(crate) cookie: MagicCookie,
    pub(crate) versions: Vec<u32>,
}

impl Spec {
    pub(crate) fn new(command: &PluginCommand, handshake: &Handshake) -> Self {
        Spec {
            command: command.clone(),
            cookie: handshake.cookie.clone(),
            versions: handshake.versions.clone(),
        }
    }

    /// What a go-plugin host sends: the cookie and the offered versions.
    pub(crate) fn env(&self) -> Env {
        Env {
            cookie: Some(self.cookie.clone()),
            versions: self.versions.clone(),
            multiplex: false,
            client_cert_pem: None,
        }
    }
}

/// The go-plugin variables of one run.
#[derive(Clone, Debug)]
pub(crate) struct Env {
    /// `None`: the cookie variable is removed, even if this process has it.
    pub(crate) cookie: Option<MagicCookie>,
    pub(crate) versions: Vec<u32>,
    pub(crate) multiplex: bool,
    pub(crate) client_cert_pem: Option<String>,
}

/// The first line of stdout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum FirstLine {
    /// A line, without its `\n` (`newline` false: stdout ended right after it).
    Line(Vec<u8>),
    /// A last line without `\n` before EOF.
    Unterminated(Vec<u8>),
    /// Over 64 KiB without a newline.
    TooLong,
    /// stdout ended without a byte.
    Eof,
    /// Nothing within the start timeout.
    Timeout,
}

/// A running (or finished) plugin process.
pub(crate) struct Session {
    child: Child,
    pid: Option<u32>,
    status: Option<ExitStatus>,
    line_rx: Option<oneshot::Receiver<FirstLine>>,
    line: Option<FirstLine>,
    line_at: Option<Duration>,
    started: Instant,
    stdout_task: Option<JoinHandle<()>>,
    stderr_task: Option<JoinHandle<()>>,
    stderr: StderrCapture,
    extra_stdout: Arc<AtomicU64>,
    tmpdir: tempfile::TempDir,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("pid", &self.pid)
            .field("status", &self.status)
            .finish_non_exhaustive()
    }
}

impl Session {
    /// Starts the plugin with `env` (stdin null, stdout and stderr piped, in its own process
    /// group, in a private `$TMPDIR`).
    pub(crate) async fn start(spec: &Spec, env: &Env) -> std::io::Result<Session> {
        let tmpdir = private_tmpdir().await?;
        let mut command = tokio::process::Command::new(&spec.command.program);
        command
            .args(&spec.command.args)
            .env_clear()
            .envs(std::env::vars_os())
            .envs(spec.command.env.iter().map(|(k, v)| (k, v)))
            .env_remove(spec.cookie.key())
            .env("TMPDIR", tmpdir.path())
            .envs(go_plugin_vars(&spec.cookie, env))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        if let Some(dir) = &spec.command.dir {
            command.current_dir(dir);
        }
        let mut child = command.spawn()?;
        let started = Instant::now();
        let (stdout, stderr_pipe) = match (child.stdout.take(), child.stderr.take()) {
            (Some(out), Some(err)) => (out, err),
            _ => return Err(std::io::Error::other("the plugin's pipes are missing")),
        };
        let stderr = StderrCapture::default();
        let extra_stdout = Arc::new(AtomicU64::new(0));
        let (line_tx, line_rx) = oneshot::channel();
        let stdout_task = tokio::spawn(read_stdout(stdout, line_tx, extra_stdout.clone()));
        let stderr_task = tokio::spawn(read_stderr(stderr_pipe, stderr.clone()));
        Ok(Session {
            pid: child.id(),
            child,
            status: None,
            line_rx: Some(line_rx),
            line: None,
            line_at: None,
            started,
            stdout_task: Some(stdout_task),
            stderr_task: Some(stderr_task),
            stderr,
            extra_stdout,
            tmpdir,
        })
    }

    /// Its private temp directory.
    pub(crate) fn tmpdir(&self) -> &Path {
        self.tmpdir.path()
    }

    /// What it wrote to stderr so far.
    pub(crate) fn stderr(&self) -> &StderrCapture {
        &self.stderr
    }

    /// Bytes written to stdout after the first line.
    pub(crate) fn extra_stdout(&self) -> u64 {
        self.extra_stdout.load(Ordering::Relaxed)
    }

    /// The first stdout line, waiting up to `timeout` for it (once; later calls return it).
    pub(crate) async fn first_line(&mut self, timeout: Duration) -> FirstLine {
        if let Some(line) = &self.line {
            return line.clone();
        }
        let line = match self.line_rx.take() {
            Some(rx) => match tokio::time::timeout(timeout, rx).await {
                Ok(Ok(line)) => line,
                Ok(Err(_)) => FirstLine::Eof,
                Err(_) => FirstLine::Timeout,
            },
            None => FirstLine::Timeout,
        };
        self.line_at = Some(self.started.elapsed());
        self.line = Some(line.clone());
        line
    }

    /// How long after the start the first line came.
    pub(crate) fn line_after(&self) -> Option<Duration> {
        self.line_at
    }

    /// Waits up to `timeout` for the process to exit.
    pub(crate) async fn wait(&mut self, timeout: Duration) -> Option<ExitStatus> {
        if self.status.is_none()
            && let Ok(Ok(status)) = tokio::time::timeout(timeout, self.child.wait()).await
        {
            self.status = Some(status);
        }
        self.status
    }

    /// Whether it is still running (reaps it if it has exited).
    pub(crate) fn running(&mut self) -> bool {
        if self.status.is_none()
            && let Ok(Some(status)) = self.child.try_wait()
        {
            self.status = Some(status);
        }
        self.status.is_none()
    }

    /// Sends `signal` to the plugin process itself (not its group).
    pub(crate) fn signal(&self, signal: nix::sys::signal::Signal) -> nix::Result<()> {
        let pid = self.pid.ok_or(nix::errno::Errno::ESRCH)?;
        let pid = i32::try_from(pid).map_err(|_| nix::errno::Errno::ESRCH)?;
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal)
    }

    /// Closes this side's ends of the plugin's stdout and stderr, as a host that went away.
    pub(crate) fn close_pipes(&mut self) {
        for task in [self.stdout_task.take(), self.stderr_task.take()]
            .into_iter()
            .flatten()
        {
            task.abort();
        }
    }

    /// Waits (up to 2 s) for stderr to be read to its end, e.g. after the process exited.
    pub(crate) async fn drain_stderr(&mut self) {
        if let Some(task) = self.stderr_task.as_mut() {
            let _ = tokio::time::timeout(Duration::from_secs(2), task).await;
            self.stderr_task = None;
        }
    }

    /// SIGKILLs the plugin and its process group, and reaps it.
    pub(crate) async fn kill(&mut self) -> Option<ExitStatus> {
        if self.running() {
            self.kill_group();
            self.wait(REAP_TIMEOUT).await;
        } else {
            // What it left running in its group goes too.
            self.kill_group();
        }
        self.status
    }

    fn kill_group(&self) {
        if let Some(pid) = self.pid.and_then(|p| i32::try_from(p).ok()) {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if self.status.is_none() {
            // A check that timed out: the process group goes; tokio reaps the child.
            self.kill_group();
        }
        self.close_pipes();
    }
}

/// go-plugin's variables for `env`, in go-plugin's order.
fn go_plugin_vars(cookie: &MagicCookie, env: &Env) -> Vec<(OsString, OsString)> {
    let used = env.cookie.as_ref().unwrap_or(cookie);
    let vars = HostEnv {
        cookie: used,
        versions: &env.versions,
        min_port: plugwire_protocol::env::DEFAULT_MIN_PORT,
        max_port: plugwire_protocol::env::DEFAULT_MAX_PORT,
        multiplex: env.multiplex,
        client_cert_pem: env.client_cert_pem.as_deref(),
        unix_socket_group: None,
        unix_socket_dir: None,
    }
    .vars();
    vars.into_iter()
        .filter(|(key, _)| env.cookie.is_some() || key.as_os_str() != cookie.key())
        .collect()
}

/// A private directory for the plugin's `$TMPDIR`, short enough for socket paths.
pub(crate) async fn private_tmpdir() -> std::io::Result<tempfile::TempDir> {
    let base = std::env::temp_dir();
    let base = if base.as_os_str().len() + 40 > crate::diagnose::SUN_PATH_MAX {
        PathBuf::from("/tmp")
    } else {
        base
    };
    tokio::task::spawn_blocking(move || {
        tempfile::Builder::new()
            .prefix("plugwire-check-")
            .tempdir_in(base)
    })
    .await
    .unwrap_or_else(|e| Err(std::io::Error::other(e)))
}

/// Reads the first line (bounded), then counts and drops the rest, until EOF or aborted.
async fn read_stdout(
    mut stdout: ChildStdout,
    line_tx: oneshot::Sender<FirstLine>,
    extra: Arc<AtomicU64>,
) {
    let mut line = Vec::new();
    let mut buf = vec![0u8; 8192];
    let mut line_tx = Some(line_tx);
    loop {
        let n = match stdout.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let chunk = &buf[..n];
        if line_tx.is_none() {
            extra.fetch_add(n as u64, Ordering::Relaxed);
            continue;
        }
        match chunk.iter().position(|b| *b == b'\n') {
            Some(end) => {
                line.extend_from_slice(&chunk[..end]);
                extra.fetch_add((n - end - 1) as u64, Ordering::Relaxed);
                if let Some(tx) = line_tx.take() {
                    let _ = tx.send(FirstLine::Line(std::mem::take(&mut line)));
                }
            }
            None => {
                line.extend_from_slice(chunk);
                if line.len() > MAX_HANDSHAKE_LINE
                    && let Some(tx) = line_tx.take()
                {
                    let _ = tx.send(FirstLine::TooLong);
                }
            }
        }
    }
    if let Some(tx) = line_tx.take() {
        let _ = tx.send(if line.is_empty() {
            FirstLine::Eof
        } else {
            FirstLine::Unterminated(line)
        });
    }
}

async fn read_stderr(mut stderr: ChildStderr, capture: StderrCapture) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match stderr.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => capture.push(&buf[..n]),
        }
    }
}

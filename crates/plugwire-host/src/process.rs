//! The plugin process: spawned with go-plugin's environment, watched until it exits, killed on
//! request or when its owner goes away, and always reaped.

use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::process::{Child, ChildStderr, ChildStdout};
use tokio::sync::watch;
use tokio_util::sync::{CancellationToken, DropGuard};

/// How long a SIGKILLed process may take to be reaped before we stop waiting.
pub(crate) const REAP_TIMEOUT: Duration = Duration::from_secs(5);

/// A running (or exited) plugin process.
#[derive(Debug)]
pub(crate) struct Process {
    pid: Option<u32>,
    status: watch::Receiver<Option<ExitStatus>>,
    exited: CancellationToken,
    kill: CancellationToken,
    sockets: Sockets,
    /// Dropping the owner kills a launched process (not a reattached one).
    _kill_on_drop: Option<DropGuard>,
}

impl Process {
    /// Spawns `command` (stdin inherited, stdout and stderr piped) and starts watching it. Once
    /// it has exited, the sockets it left behind (see [`Process::add_socket`]) in one of
    /// `socket_dirs` is removed. With `kill_with_host`, the OS kills the child if this process
    /// dies without stopping it (Linux `PR_SET_PDEATHSIG`).
    pub(crate) async fn spawn(
        mut command: tokio::process::Command,
        socket_dirs: Vec<PathBuf>,
        kill_with_host: bool,
    ) -> std::io::Result<(Process, ChildStdout, ChildStderr)> {
        command
            .stdin(std::process::Stdio::inherit())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        if kill_with_host {
            die_with_parent(&mut command);
        }
        let mut child = spawner::spawn(command).await?;
        let (stdout, stderr) = match (child.stdout.take(), child.stderr.take()) {
            (Some(out), Some(err)) => (out, err),
            _ => {
                let _ = child.start_kill();
                return Err(std::io::Error::other(
                    "the plugin's stdout/stderr pipes are missing",
                ));
            }
        };
        let pid = child.id();
        let (status_tx, status) = watch::channel(None);
        let exited = CancellationToken::new();
        let kill = CancellationToken::new();
        let sockets = Sockets::default();
        tokio::spawn(watch_child(
            child,
            status_tx,
            Cleanup {
                sockets: sockets.clone(),
                dirs: socket_dirs,
            },
            exited.clone(),
            kill.clone(),
        ));
        Ok((
            Process {
                pid,
                status,
                exited,
                sockets,
                _kill_on_drop: Some(kill.clone().drop_guard()),
                kill,
            },
            stdout,
            stderr,
        ))
    }

    /// Watches a process this host did not start (reattach): its exit is noticed by polling, as
    /// go-plugin does for non-children; no exit status is known; dropping does not kill it.
    pub(crate) fn attach(pid: u32) -> Process {
        let (_status_tx, status) = watch::channel(None);
        let exited = CancellationToken::new();
        let kill = CancellationToken::new();
        let (watch_exited, watch_kill) = (exited.clone(), kill.clone());
        tokio::spawn(async move {
            while pid == 0 || is_alive(pid) {
                tokio::select! {
                    () = tokio::time::sleep(ATTACHED_POLL) => {}
                    () = watch_kill.cancelled(), if pid != 0 => {
                        let _ = nix::sys::signal::kill(pid_of(pid), nix::sys::signal::Signal::SIGKILL);
                        // Keep polling until it is gone.
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
            }
            watch_exited.cancel();
        });
        Process {
            pid: Some(pid).filter(|p| *p != 0),
            status,
            exited,
            kill,
            sockets: Sockets::default(),
            _kill_on_drop: None,
        }
    }

    /// Records a unix socket the plugin listens on (its main one, or a brokered one), to remove
    /// it if the plugin exits without doing so.
    pub(crate) fn add_socket(&self, path: &Path) {
        self.sockets.add(path);
    }

    /// A hook recording the sockets the plugin's broker gives to be dialled.
    pub(crate) fn socket_hook(&self) -> plugwire_protocol::broker::PeerSocketHook {
        let sockets = self.sockets.clone();
        Arc::new(move |path| sockets.add(path))
    }

    /// The OS process id.
    pub(crate) fn pid(&self) -> Option<u32> {
        self.pid
    }

    /// Fires once the process has exited and been reaped.
    pub(crate) fn exited(&self) -> &CancellationToken {
        &self.exited
    }

    /// The exit status, once exited.
    pub(crate) fn status(&self) -> Option<ExitStatus> {
        *self.status.borrow()
    }

    /// Waits for the exit, at most `timeout`.
    pub(crate) async fn wait_timeout(&self, timeout: Duration) -> Option<ExitStatus> {
        let _ = tokio::time::timeout(timeout, self.exited.cancelled()).await;
        self.status()
    }

    /// Sends SIGKILL (once) and waits for the reap, at most [`REAP_TIMEOUT`].
    pub(crate) async fn kill(&self) -> Option<ExitStatus> {
        self.kill.cancel();
        self.wait_timeout(REAP_TIMEOUT).await
    }
}

/// What to clean up after the process.
struct Cleanup {
    sockets: Sockets,
    dirs: Vec<PathBuf>,
}

/// The unix sockets a plugin announced. Bounded: past [`Sockets::PRUNE_AT`] entries, those
/// already gone from disk are forgotten (a plugin may broker many connections in its life).
#[derive(Debug, Clone, Default)]
struct Sockets(Arc<Mutex<Vec<PathBuf>>>);

impl Sockets {
    const PRUNE_AT: usize = 64;

    fn add(&self, path: &Path) {
        let Ok(mut paths) = self.0.lock() else {
            return;
        };
        if paths.iter().any(|p| p == path) {
            return;
        }
        if paths.len() >= Self::PRUNE_AT {
            paths.retain(|p| std::fs::symlink_metadata(p).is_ok());
        }
        paths.push(path.to_path_buf());
    }

    fn take(&self) -> Vec<PathBuf> {
        self.0
            .lock()
            .map(|mut p| std::mem::take(&mut *p))
            .unwrap_or_default()
    }
}

async fn watch_child(
    mut child: Child,
    status_tx: watch::Sender<Option<ExitStatus>>,
    cleanup: Cleanup,
    exited: CancellationToken,
    kill: CancellationToken,
) {
    let status = tokio::select! {
        status = child.wait() => status,
        () = kill.cancelled() => {
            let _ = child.start_kill();
            child.wait().await
        }
    };
    match status {
        Ok(status) => {
            let _ = status_tx.send(Some(status));
        }
        Err(e) => tracing::error!(error = %e, "waiting for the plugin process failed"),
    }
    for path in cleanup.sockets.take() {
        remove_stale_socket(&path, &cleanup.dirs);
    }
    exited.cancel();
}

/// A plugin that dies before it can clean up leaves its socket file behind. Remove it, but only
/// if it looks like one go-plugin makes (`plugin*` in a directory plugins use, and a socket): the
/// path comes from the plugin, which must not be able to make the host delete other files.
fn remove_stale_socket(path: &Path, dirs: &[PathBuf]) {
    use std::os::unix::fs::FileTypeExt;
    let in_plugin_dir = path
        .parent()
        .is_some_and(|parent| dirs.iter().any(|d| d == parent));
    let named_like_plugin = path
        .file_name()
        .is_some_and(|n| n.to_string_lossy().starts_with("plugin"));
    if in_plugin_dir
        && named_like_plugin
        && std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket())
    {
        match std::fs::remove_file(path) {
            Ok(()) => {
                tracing::debug!(path = %path.display(), "removed the socket the plugin left behind")
            }
            Err(e) => {
                tracing::debug!(path = %path.display(), error = %e, "could not remove the plugin's socket")
            }
        }
    }
}

/// Makes the child receive SIGKILL when this process dies (Linux `PR_SET_PDEATHSIG`), so a
/// host killed with SIGKILL or crashing leaves no plugin behind. It reaches the direct child
/// only: a plugin started through `sh -c` outlives a killed host (Rust plugins notice their host
/// is gone and exit by themselves).
fn die_with_parent(command: &mut tokio::process::Command) {
    let parent = nix::unistd::getpid();
    let hook = move || -> std::io::Result<()> {
        nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)?;
        // The parent may have died between fork and prctl: then it is too late to be told.
        if nix::unistd::getppid() != parent {
            return Err(nix::errno::Errno::ESRCH.into());
        }
        Ok(())
    };
    // SAFETY: the closure runs in the forked child before exec, where only async-signal-safe
    // work is allowed. It makes two system calls (prctl, getppid) through thin nix wrappers that
    // do not allocate, lock or touch state shared with other threads, and its errors are plain
    // errno values (an io::Error built from an errno does not allocate).
    #[allow(unsafe_code)]
    unsafe {
        command.pre_exec(hook);
    }
}

/// Children are forked from one thread that lives as long as the process: `PR_SET_PDEATHSIG`
/// fires when the *thread* that forked the child exits, and runtime threads (a blocking pool's
/// in particular) come and go.
mod spawner {
    use std::sync::OnceLock;
    use std::sync::mpsc;

    use tokio::process::{Child, Command};
    use tokio::sync::oneshot;

    type Job = (
        Command,
        tokio::runtime::Handle,
        oneshot::Sender<std::io::Result<Child>>,
    );

    pub(super) async fn spawn(command: Command) -> std::io::Result<Child> {
        static JOBS: OnceLock<Option<mpsc::Sender<Job>>> = OnceLock::new();
        let jobs = JOBS.get_or_init(|| {
            let (tx, rx) = mpsc::channel::<Job>();
            std::thread::Builder::new()
                .name("plugwire-spawner".into())
                .spawn(move || {
                    for (mut command, runtime, reply) in rx {
                        // The child is registered with the caller's runtime, which reaps it.
                        let _entered = runtime.enter();
                        let _ = reply.send(command.spawn());
                    }
                })
                .ok()
                .map(|_| tx)
        });
        let Some(jobs) = jobs else {
            return Err(std::io::Error::other(
                "could not start the plugwire-spawner thread",
            ));
        };
        let (reply, result) = oneshot::channel();
        jobs.send((command, tokio::runtime::Handle::current(), reply))
            .map_err(|_| std::io::Error::other("the plugwire-spawner thread is gone"))?;
        result
            .await
            .map_err(|_| std::io::Error::other("the plugwire-spawner thread is gone"))?
    }
}

/// How often a reattached process is checked for exit (go-plugin polls every second).
const ATTACHED_POLL: Duration = Duration::from_millis(200);

fn pid_of(pid: u32) -> nix::unistd::Pid {
    nix::unistd::Pid::from_raw(i32::try_from(pid).unwrap_or(i32::MAX))
}

/// Whether a process is running (signal 0; a process of another user exists too). A zombie,
/// exited but not yet reaped by its parent, counts as gone.
pub(crate) fn is_alive(pid: u32) -> bool {
    let exists = match nix::sys::signal::kill(pid_of(pid), None) {
        Ok(()) => true,
        Err(errno) => errno == nix::errno::Errno::EPERM,
    };
    exists && !is_zombie(pid)
}

/// Linux: `/proc/<pid>/stat` says `Z` after the command name.
fn is_zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            let after_name = stat.rsplit_once(')')?.1;
            after_name
                .split_whitespace()
                .next()
                .map(|state| state == "Z")
        })
        .unwrap_or(false)
}

/// Describes an exit status the way a user wants to read it.
pub(crate) fn describe(status: Option<ExitStatus>) -> String {
    use std::os::unix::process::ExitStatusExt;
    match status {
        None => "exit status unknown".into(),
        Some(s) => match (s.code(), s.signal()) {
            (Some(code), _) => format!("exit status {code}"),
            (None, Some(signal)) => format!("killed by signal {signal}"),
            (None, None) => s.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_list_forgets_only_gone_paths_and_stays_bounded() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let kept = dir.path().join("plugin-kept");
        std::fs::write(&kept, b"").expect("a file in the temp dir");
        let sockets = Sockets::default();
        sockets.add(&kept);
        sockets.add(&kept);
        for i in 0..(3 * Sockets::PRUNE_AT) {
            sockets.add(&dir.path().join(format!("plugin-gone-{i}")));
        }
        let paths = sockets.take();
        assert!(paths.contains(&kept));
        assert_eq!(paths.iter().filter(|p| **p == kept).count(), 1);
        assert!(
            paths.len() <= Sockets::PRUNE_AT + 1,
            "{} paths",
            paths.len()
        );
        assert!(sockets.take().is_empty());
    }
}

//! The plugin process: spawned with go-plugin's environment, watched until it exits, killed on
//! request or when its owner goes away, and always reaped.

use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::process::{ChildStderr, ChildStdout};
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
    /// Whether this host started the process (else it was attached to, and is never signalled).
    launched: bool,
    /// Dropping the owner kills a launched process; for an attached one, stops watching it.
    _on_drop: DropGuard,
}

/// How to start the plugin process.
pub(crate) struct SpawnOptions {
    /// Directories where a socket the plugin leaves behind may be removed.
    pub(crate) socket_dirs: Vec<PathBuf>,
    /// Ask the OS to kill the plugin if this process dies (Linux `PR_SET_PDEATHSIG`).
    pub(crate) kill_with_host: bool,
    /// Start the plugin in a process group of its own, killed as a whole.
    pub(crate) own_group: bool,
}

impl Process {
    /// Spawns `command` (stdin inherited, stdout and stderr piped) and starts watching it. Once
    /// it has exited, the sockets it left behind (see [`Process::add_socket`]) in one of the
    /// socket directories are removed and, with its own process group, whatever it left running
    /// in that group is killed.
    pub(crate) async fn spawn(
        mut command: tokio::process::Command,
        options: SpawnOptions,
    ) -> std::io::Result<(Process, ChildStdout, ChildStderr)> {
        command
            .stdin(std::process::Stdio::inherit())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        if options.own_group {
            command.process_group(0);
        }
        let (child, stdout, stderr) =
            spawn_child(command, options.kill_with_host, options.own_group).await?;
        let pid = child.id();
        let group = pid.filter(|_| options.own_group).map(pid_of);
        let (status_tx, status) = watch::channel(None);
        let exited = CancellationToken::new();
        let kill = CancellationToken::new();
        let sockets = Sockets::default();
        tokio::spawn(watch_child(
            child,
            group,
            status_tx,
            Cleanup {
                sockets: sockets.clone(),
                dirs: options.socket_dirs,
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
                launched: true,
                _on_drop: kill.clone().drop_guard(),
                kill,
            },
            stdout,
            stderr,
        ))
    }

    /// Watches a process this host did not start (reattach). Its exit is noticed by polling its
    /// pid, as go-plugin does for non-children (pid 0: not at all; see
    /// [`Process::mark_exited`]); no exit status is known; it is never signalled, and dropping
    /// the `Process` only stops the watching.
    pub(crate) fn attach(pid: u32) -> Process {
        let (_status_tx, status) = watch::channel(None);
        let exited = CancellationToken::new();
        let stop_watching = CancellationToken::new();
        if pid != 0 {
            let (exited, stop) = (exited.clone(), stop_watching.clone());
            tokio::spawn(async move {
                while is_alive(pid) {
                    tokio::select! {
                        () = tokio::time::sleep(ATTACHED_POLL) => {}
                        () = stop.cancelled() => return,
                    }
                }
                exited.cancel();
            });
        }
        Process {
            pid: Some(pid).filter(|p| *p != 0),
            status,
            exited,
            kill: CancellationToken::new(),
            sockets: Sockets::default(),
            launched: false,
            _on_drop: stop_watching.drop_guard(),
        }
    }

    /// Whether this host started the process.
    pub(crate) fn launched(&self) -> bool {
        self.launched
    }

    /// Records that an attached process without a known pid is gone (its connection is).
    pub(crate) fn mark_exited(&self) {
        if !self.launched {
            self.exited.cancel();
        }
    }

    /// Records a unix socket the plugin listens on (its main one, or a brokered one), to remove
    /// it if the plugin exits without doing so.
    pub(crate) fn add_socket(&self, path: &Path) {
        self.sockets.add(path);
    }

    /// A hook recording the sockets the plugin's broker gives to be dialled.
    pub(crate) fn socket_hook(&self) -> plugwire_runtime::broker::PeerSocketHook {
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

    /// Waits for the exit until `deadline`.
    pub(crate) async fn wait_until(&self, deadline: tokio::time::Instant) -> Option<ExitStatus> {
        let _ = tokio::time::timeout_at(deadline, self.exited.cancelled()).await;
        self.status()
    }

    /// Sends SIGKILL (once; to its whole process group when it has one) and waits for the reap,
    /// at most [`REAP_TIMEOUT`]. Does nothing to a process this host did not start.
    pub(crate) async fn kill(&self) -> Option<ExitStatus> {
        if !self.launched {
            return None;
        }
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
    group: Option<nix::unistd::Pid>,
    status_tx: watch::Sender<Option<ExitStatus>>,
    cleanup: Cleanup,
    exited: CancellationToken,
    kill: CancellationToken,
) {
    let status = tokio::select! {
        status = child.wait() => status,
        () = kill.cancelled() => {
            match group {
                Some(group) => kill_group(group),
                None => {
                    let _ = child.start_kill();
                }
            }
            child.wait().await
        }
    };
    // What the plugin left running in its group (a wrapper's child, a helper) goes with it. The
    // group id cannot have been reused yet: members keep it alive, and the leader was reaped
    // just now.
    if let Some(group) = group {
        kill_group(group);
    }
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

/// The started process: tokio's child, or on Linux one started like Go starts it.
#[derive(Debug)]
enum Child {
    Tokio(tokio::process::Child),
    #[cfg(target_os = "linux")]
    Vfork(crate::vfork::VforkChild),
}

impl Child {
    /// The pid (None once a tokio child has been reaped).
    fn id(&self) -> Option<u32> {
        match self {
            Child::Tokio(child) => child.id(),
            #[cfg(target_os = "linux")]
            Child::Vfork(child) => Some(child.id()),
        }
    }

    async fn wait(&mut self) -> std::io::Result<ExitStatus> {
        match self {
            Child::Tokio(child) => child.wait().await,
            #[cfg(target_os = "linux")]
            Child::Vfork(child) => child.wait().await,
        }
    }

    fn start_kill(&mut self) -> std::io::Result<()> {
        match self {
            Child::Tokio(child) => child.start_kill(),
            #[cfg(target_os = "linux")]
            Child::Vfork(child) => child.start_kill(),
        }
    }
}

type Spawned = (Child, ChildStdout, ChildStderr);

/// Takes the pipes out of a child tokio spawned.
fn from_tokio(mut child: tokio::process::Child) -> std::io::Result<Spawned> {
    match (child.stdout.take(), child.stderr.take()) {
        (Some(out), Some(err)) => Ok((Child::Tokio(child), out, err)),
        _ => {
            let _ = child.start_kill();
            Err(std::io::Error::other(
                "the plugin's stdout/stderr pipes are missing",
            ))
        }
    }
}

/// Spawns the child; with `kill_with_host`, so that it dies with this process.
#[cfg(target_os = "linux")]
async fn spawn_child(
    mut command: tokio::process::Command,
    kill_with_host: bool,
    own_group: bool,
) -> std::io::Result<Spawned> {
    if kill_with_host && !plugwire_runtime::portable::forced() {
        return spawner::spawn(command, own_group).await;
    }
    from_tokio(command.spawn()?)
}

/// Spawns the child. Outside Linux there is no `PR_SET_PDEATHSIG`: a plugin outlives a host
/// that is killed without stopping it (Rust plugins notice their host is gone and exit).
#[cfg(not(target_os = "linux"))]
async fn spawn_child(
    mut command: tokio::process::Command,
    _kill_with_host: bool,
    _own_group: bool,
) -> std::io::Result<Spawned> {
    from_tokio(command.spawn()?)
}

/// Makes the child receive SIGKILL when this process dies (Linux `PR_SET_PDEATHSIG`), so a
/// host killed with SIGKILL or crashing leaves no plugin behind. It reaches the direct child
/// only: a plugin started through `sh -c` outlives a killed host (Rust plugins notice their host
/// is gone and exit by themselves).
#[cfg(target_os = "linux")]
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
#[cfg(target_os = "linux")]
mod spawner {
    use std::sync::OnceLock;
    use std::sync::mpsc;

    use tokio::process::Command;
    use tokio::sync::oneshot;

    use super::Spawned;

    type Job = (
        Command,
        bool,
        tokio::runtime::Handle,
        oneshot::Sender<std::io::Result<Spawned>>,
    );

    /// Spawns like Go (see `vfork.rs`) when the command allows it, else with std's fork and a
    /// `pre_exec` hook.
    fn spawn_here(mut command: Command, own_group: bool) -> std::io::Result<Spawned> {
        if let Some(spawned) = crate::vfork::spawn(command.as_std(), own_group) {
            let (child, stdout, stderr) = spawned?;
            return Ok((super::Child::Vfork(child), stdout, stderr));
        }
        super::die_with_parent(&mut command);
        super::from_tokio(command.spawn()?)
    }

    pub(super) async fn spawn(command: Command, own_group: bool) -> std::io::Result<Spawned> {
        static JOBS: OnceLock<Option<mpsc::Sender<Job>>> = OnceLock::new();
        let jobs = JOBS.get_or_init(|| {
            let (tx, rx) = mpsc::channel::<Job>();
            std::thread::Builder::new()
                .name("plugwire-spawner".into())
                .spawn(move || {
                    for (command, own_group, runtime, reply) in rx {
                        // The child is registered with the caller's runtime, which reaps it.
                        let _entered = runtime.enter();
                        let _ = reply.send(spawn_here(command, own_group));
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
        jobs.send((command, own_group, tokio::runtime::Handle::current(), reply))
            .map_err(|_| std::io::Error::other("the plugwire-spawner thread is gone"))?;
        result
            .await
            .map_err(|_| std::io::Error::other("the plugwire-spawner thread is gone"))?
    }
}

/// SIGKILLs every process of a group (none left is fine).
fn kill_group(group: nix::unistd::Pid) {
    match nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL) {
        Ok(()) | Err(nix::errno::Errno::ESRCH) => {}
        Err(e) => tracing::debug!(error = %e, "could not kill the plugin's process group"),
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

/// Linux: `/proc/<pid>/stat` says `Z` after the command name. Elsewhere a zombie counts as
/// alive until its parent reaps it.
#[cfg(target_os = "linux")]
fn is_zombie(pid: u32) -> bool {
    if plugwire_runtime::portable::forced() {
        return false;
    }
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

#[cfg(not(target_os = "linux"))]
fn is_zombie(_pid: u32) -> bool {
    false
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

    /// Starts `sh` printing its pid, then waiting on a child of its own, through
    /// `Process::spawn` as a launch does; returns what /proc says its argv[0] is, and how it
    /// ended once killed.
    #[cfg(target_os = "linux")]
    async fn spawn_and_kill(arg0: Option<&str>) -> (String, Option<ExitStatus>) {
        use std::os::unix::process::CommandExt;
        use tokio::io::AsyncBufReadExt;
        let mut command = std::process::Command::new("sh");
        command
            .args(["-c", "sleep 30 & echo $$; wait"])
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default());
        if let Some(arg0) = arg0 {
            command.arg0(arg0);
        }
        let options = SpawnOptions {
            socket_dirs: Vec::new(),
            kill_with_host: true,
            own_group: true,
        };
        let (process, stdout, _stderr) =
            Process::spawn(tokio::process::Command::from(command), options)
                .await
                .expect("spawned");
        let mut line = String::new();
        tokio::io::BufReader::new(stdout)
            .read_line(&mut line)
            .await
            .expect("the pid line");
        assert_eq!(line.trim(), process.pid().expect("a pid").to_string());
        let cmdline = std::fs::read(format!("/proc/{}/cmdline", line.trim())).unwrap_or_default();
        let argv0 = String::from_utf8_lossy(cmdline.split(|b| *b == 0).next().unwrap_or_default());
        (argv0.into_owned(), process.kill().await)
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn plain_commands_and_those_only_std_can_start_both_run_and_are_killed() {
        use std::os::unix::process::ExitStatusExt;
        // Plain: started like Go does (vfork.rs). With arg0: std's fork and a pre_exec hook.
        for (arg0, expected) in [(None, "sh"), (Some("renamed-sh"), "renamed-sh")] {
            let (argv0, status) = spawn_and_kill(arg0).await;
            assert_eq!(argv0, expected);
            let status = status.expect("killed and reaped within the bound");
            assert_eq!(status.signal(), Some(9), "{status:?}");
        }
    }

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

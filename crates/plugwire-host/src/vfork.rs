//! Linux: starts the plugin the way Go's `os/exec` does, with `clone(CLONE_VM | CLONE_VFORK)`,
//! and sets `PR_SET_PDEATHSIG` in the child before `execve`.
//!
//! Why not `std::process::Command`: std spawns with `posix_spawn` (a vfork-style clone inside
//! glibc) unless a `pre_exec` hook is set, and setting the parent-death signal needs one; with a
//! hook std falls back to `fork()`. A fork copies the host's page tables and leaves every page of
//! its heap copy-on-write, so each launch costs time in proportion to the host's memory: measured
//! here, spawning one process took 0.2 ms with posix_spawn against 0.45 ms (host with no heap),
//! 0.9 ms (8 MiB) and 3.5 ms (32 MiB) with fork, plus the page faults the host takes afterwards.
//! Go hosts never pay this. Neither std, nix nor rustix offers a vfork spawn with a child hook,
//! so this file is the few system calls it takes.
//!
//! What the child does between `clone` and `execve` is limited to async-signal-safe system calls
//! on memory the parent prepared: it shares the parent's memory, and the parent thread is
//! suspended until the child has called `execve` or exited.
//!
//! Only what std lets us read back is reproduced: program, arguments, environment and working
//! directory. A command with anything else that std reports in its `Debug` output (uid, gid,
//! groups, `arg0`) is spawned by std instead ([`spawn`] returns `None`); `pre_exec` hooks are not
//! visible at all and do not run here (documented on [`crate::PluginConfigBuilder::kill_with_host`]).

use std::ffi::{CString, OsStr};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicI32, Ordering};

use nix::libc;
use tokio::io::unix::AsyncFd;
use tokio::process::{ChildStderr, ChildStdout};

/// The child's stack: it makes a handful of system calls, no allocation.
const CHILD_STACK: usize = 64 * 1024;

/// A process started by [`spawn`]: waited for through a pidfd, killed with SIGKILL when dropped
/// before it was reaped (as tokio's `kill_on_drop`).
#[derive(Debug)]
pub(crate) struct VforkChild {
    pid: libc::pid_t,
    pidfd: AsyncFd<OwnedFd>,
    /// Set once reaped: the pid is no longer ours.
    status: Option<ExitStatus>,
}

impl VforkChild {
    pub(crate) fn id(&self) -> u32 {
        self.pid.unsigned_abs()
    }

    /// Waits until the process has exited, and reaps it.
    pub(crate) async fn wait(&mut self) -> io::Result<ExitStatus> {
        loop {
            if let Some(status) = self.try_reap()? {
                return Ok(status);
            }
            let mut ready = self.pidfd.readable().await?;
            ready.clear_ready();
        }
    }

    /// Sends SIGKILL (the pid stays ours until it is reaped).
    pub(crate) fn start_kill(&mut self) -> io::Result<()> {
        if self.status.is_some() {
            return Ok(());
        }
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.pid),
            nix::sys::signal::Signal::SIGKILL,
        )
        .map_err(io::Error::from)
    }

    fn try_reap(&mut self) -> io::Result<Option<ExitStatus>> {
        if self.status.is_some() {
            return Ok(self.status);
        }
        let mut status = 0;
        loop {
            // SAFETY: waitpid on our own child, writing to a local.
            #[allow(unsafe_code)]
            let r = unsafe { libc::waitpid(self.pid, &mut status, libc::WNOHANG) };
            match r {
                0 => return Ok(None),
                r if r == self.pid => {
                    self.status = Some(ExitStatus::from_raw(status));
                    return Ok(self.status);
                }
                _ => {
                    let e = io::Error::last_os_error();
                    if e.kind() != io::ErrorKind::Interrupted {
                        return Err(e);
                    }
                }
            }
        }
    }
}

impl Drop for VforkChild {
    fn drop(&mut self) {
        if self.status.is_some() {
            return;
        }
        let _ = self.start_kill();
        if matches!(self.try_reap(), Ok(None)) {
            // Killed but not dead yet (it takes the kernel a moment): reap it off the runtime.
            let pid = self.pid;
            let _ = std::thread::Builder::new()
                .name("plugwire-reaper".into())
                .spawn(move || reap_blocking(pid));
        }
    }
}

/// Reaps our child `pid`, blocking until it has exited: only for one that has exited or was
/// just SIGKILLed.
fn reap_blocking(pid: libc::pid_t) {
    let mut status = 0;
    // SAFETY: waitpid on our own child, writing to a local.
    #[allow(unsafe_code)]
    while unsafe { libc::waitpid(pid, &mut status, 0) } < 0
        && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted
    {}
}

/// Spawns `command` (stdin inherited, stdout and stderr piped; in a process group of its own
/// with `own_group`), dying with the calling thread (`PR_SET_PDEATHSIG`). `None`: this command
/// needs std's spawn (settings we cannot read back, or no pidfd support in the kernel). Must
/// be called inside a tokio runtime.
pub(crate) fn spawn(
    command: &Command,
    own_group: bool,
) -> Option<io::Result<(VforkChild, ChildStdout, ChildStderr)>> {
    if !pidfd_supported() || !reproducible(command, own_group) {
        return None;
    }
    Some(spawn_checked(command, own_group))
}

fn spawn_checked(
    command: &Command,
    own_group: bool,
) -> io::Result<(VforkChild, ChildStdout, ChildStderr)> {
    let env: Vec<(&OsStr, &OsStr)> = command
        .get_envs()
        .filter_map(|(k, v)| Some((k, v?)))
        .collect();
    let path = resolve(command.get_program(), &env, command.get_current_dir())?;
    let path = c_string(path.as_os_str())?;
    let argv: Vec<CString> = std::iter::once(command.get_program())
        .chain(command.get_args())
        .map(c_string)
        .collect::<io::Result<_>>()?;
    let envp: Vec<CString> = env
        .iter()
        .map(|(k, v)| c_bytes([k.as_bytes(), b"=", v.as_bytes()].concat()))
        .collect::<io::Result<_>>()?;
    let cwd = command.get_current_dir().map(c_string).transpose()?;
    let (out_read, out_write) = pipe()?;
    let (err_read, err_write) = pipe()?;
    let argv_ptrs = null_terminated(&argv);
    let envp_ptrs = null_terminated(&envp);

    let args = ChildArgs {
        path: path.as_ptr(),
        argv: argv_ptrs.as_ptr(),
        envp: envp_ptrs.as_ptr(),
        cwd: cwd.as_ref().map_or(std::ptr::null(), |c| c.as_ptr()),
        stdout: out_write.as_raw_fd(),
        stderr: err_write.as_raw_fd(),
        own_group,
        parent: nix::unistd::getpid().as_raw(),
        error: AtomicI32::new(0),
    };
    let pid = clone_vfork(&args)?;
    drop((out_write, err_write));
    let error = args.error.load(Ordering::SeqCst);
    if error != 0 {
        // The child has exited (CLONE_VFORK returned); reap it.
        reap_blocking(pid);
        return Err(io::Error::from_raw_os_error(error));
    }
    let pidfd = match pidfd_open(pid).and_then(register) {
        Ok(fd) => fd,
        Err(e) => {
            // Not expected after the probe; do not leave the process behind.
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
            reap_blocking(pid);
            return Err(e);
        }
    };
    let child = VforkChild {
        pid,
        pidfd,
        status: None,
    };
    let stdout = ChildStdout::from_std(std::process::ChildStdout::from(out_read))?;
    let stderr = ChildStderr::from_std(std::process::ChildStderr::from(err_read))?;
    Ok((child, stdout, stderr))
}

/// Whether rebuilding `command` from what std lets us read gives the same command: std's
/// `Debug` shows every setting that differs from the default except `pre_exec` hooks.
fn reproducible(command: &Command, own_group: bool) -> bool {
    use std::os::unix::process::CommandExt;
    let mut rebuilt = Command::new(command.get_program());
    rebuilt.args(command.get_args()).env_clear();
    for (key, value) in command.get_envs() {
        match value {
            Some(value) => rebuilt.env(key, value),
            None => rebuilt.env_remove(key),
        };
    }
    if let Some(dir) = command.get_current_dir() {
        rebuilt.current_dir(dir);
    }
    rebuilt
        .stdin(Stdio::inherit())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if own_group {
        rebuilt.process_group(0);
    }
    format!("{command:#?}") == format!("{rebuilt:#?}")
}

/// Finds the program as `execvp` would: a name with a `/` as it is, else the first executable
/// file of that name in the command's `PATH` (the host's when the command sets none).
fn resolve(program: &OsStr, env: &[(&OsStr, &OsStr)], cwd: Option<&Path>) -> io::Result<PathBuf> {
    if program.as_bytes().contains(&b'/') {
        return Ok(PathBuf::from(program));
    }
    let host_path = std::env::var_os("PATH");
    let search = env
        .iter()
        .find(|(k, _)| *k == "PATH")
        .map(|(_, v)| v.to_os_string())
        .or(host_path)
        .unwrap_or_else(|| "/bin:/usr/bin".into());
    std::env::split_paths(&search)
        .map(|dir| dir.join(program))
        .find(|candidate| {
            is_executable(&cwd.map_or_else(|| candidate.clone(), |d| d.join(candidate)))
        })
        .ok_or_else(|| io::Error::from_raw_os_error(libc::ENOENT))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

fn c_string(s: impl AsRef<OsStr>) -> io::Result<CString> {
    c_bytes(s.as_ref().as_bytes().to_vec())
}

fn c_bytes(bytes: Vec<u8>) -> io::Result<CString> {
    CString::new(bytes).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "the plugin command contains a NUL byte",
        )
    })
}

fn null_terminated(strings: &[CString]) -> Vec<*const libc::c_char> {
    strings
        .iter()
        .map(|s| s.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect()
}

/// A close-on-exec pipe whose ends are not stdin, stdout or stderr (so the child's `dup2`
/// calls onto 1 and 2 cannot clobber them).
fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    Ok((above_stdio(read)?, above_stdio(write)?))
}

fn above_stdio(fd: OwnedFd) -> io::Result<OwnedFd> {
    if fd.as_raw_fd() > 2 {
        return Ok(fd);
    }
    let moved = nix::fcntl::fcntl(&fd, nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(3))?;
    // SAFETY: fcntl just returned this new descriptor, owned by nobody else.
    #[allow(unsafe_code)]
    Ok(unsafe { OwnedFd::from_raw_fd(moved) })
}

fn pidfd_open(pid: libc::pid_t) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags, returns a new descriptor or -1.
    #[allow(unsafe_code)]
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let fd = RawFd::try_from(fd).map_err(|_| io::Error::other("pidfd out of range"))?;
    // SAFETY: the kernel just returned this new descriptor, owned by nobody else.
    #[allow(unsafe_code)]
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn register(pidfd: OwnedFd) -> io::Result<AsyncFd<OwnedFd>> {
    // SAFETY: the AsyncFd owns the OwnedFd, which keeps the descriptor open and the same.
    #[allow(unsafe_code)]
    unsafe { AsyncFd::register(pidfd) }.map_err(io::Error::from)
}

/// pidfds arrived in Linux 5.3; older kernels use std's spawn.
fn pidfd_supported() -> bool {
    static SUPPORTED: OnceLock<bool> = OnceLock::new();
    *SUPPORTED.get_or_init(|| pidfd_open(nix::unistd::getpid().as_raw()).is_ok())
}

/// What the child needs, prepared by the parent (the child must not allocate).
#[repr(C)]
struct ChildArgs {
    path: *const libc::c_char,
    argv: *const *const libc::c_char,
    envp: *const *const libc::c_char,
    cwd: *const libc::c_char,
    stdout: RawFd,
    stderr: RawFd,
    own_group: bool,
    parent: libc::pid_t,
    /// The errno of the step that failed; 0 once `execve` replaced the child.
    error: AtomicI32,
}

/// Clones a child sharing our memory and waits (CLONE_VFORK) until it has exec'd or exited.
/// Signals are blocked on this thread meanwhile, so no handler of ours runs in the child.
fn clone_vfork(args: &ChildArgs) -> io::Result<libc::pid_t> {
    // Not zeroed: the child touches only the top of it.
    let mut stack = Vec::<u8>::with_capacity(CHILD_STACK);
    // SAFETY: all pointers are to live locals; the stack top is aligned down to 16 bytes and
    // stays allocated until clone returns, which with CLONE_VFORK is after the child's
    // execve or exit; the child runs only `child_main`, which writes its frames before it
    // reads them.
    #[allow(unsafe_code)]
    unsafe {
        let top = stack.as_mut_ptr().add(CHILD_STACK);
        let top = top.sub(top as usize % 16);
        let mut all: libc::sigset_t = std::mem::zeroed();
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
        let pid = libc::clone(
            child_main,
            top.cast(),
            libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
            std::ptr::from_ref(args).cast_mut().cast(),
        );
        let error = io::Error::last_os_error();
        libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
        if pid < 0 {
            return Err(error);
        }
        Ok(pid)
    }
}

/// The child, between clone and execve: only async-signal-safe system calls.
#[allow(unsafe_code)]
extern "C" fn child_main(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `arg` is the parent's `ChildArgs`, alive until this child execs or exits.
    let args = unsafe { &*(arg as *const ChildArgs) };
    fn fail(args: &ChildArgs, errno: i32) -> ! {
        args.error.store(errno.max(1), Ordering::SeqCst);
        // SAFETY: _exit runs no atexit handlers of the (shared) parent.
        unsafe { libc::_exit(127) }
    }
    let errno = nix::errno::Errno::last_raw;
    // SAFETY: each call is a plain system call on values the parent prepared.
    unsafe {
        // The parent's signal handlers must not run here, on its memory: back to the defaults
        // (SIGPIPE too, which Rust ignores), then unblock, as std's spawn leaves the child.
        for signal in 1..=libc::SIGRTMAX() {
            let mut action: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(signal, std::ptr::null(), &mut action) == 0
                && action.sa_sigaction != libc::SIG_DFL
                && (action.sa_sigaction != libc::SIG_IGN || signal == libc::SIGPIPE)
            {
                let mut default: libc::sigaction = std::mem::zeroed();
                default.sa_sigaction = libc::SIG_DFL;
                libc::sigaction(signal, &default, std::ptr::null_mut());
            }
        }
        if args.own_group && libc::setpgid(0, 0) != 0 {
            fail(args, errno());
        }
        if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
            fail(args, errno());
        }
        // The parent may have died before prctl: then nobody would tell us.
        if libc::getppid() != args.parent {
            fail(args, libc::ESRCH);
        }
        if libc::dup2(args.stdout, 1) < 0 || libc::dup2(args.stderr, 2) < 0 {
            fail(args, errno());
        }
        if !args.cwd.is_null() && libc::chdir(args.cwd) != 0 {
            fail(args, errno());
        }
        let mut none: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut none);
        libc::pthread_sigmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
        libc::execve(args.path, args.argv, args.envp);
        fail(args, errno())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::CommandExt;
    use std::time::{Duration, Instant};
    use tokio::io::AsyncReadExt;

    /// A command as `build_command` leaves it: the whole environment explicit.
    fn plain(program: impl AsRef<OsStr>) -> Command {
        let mut command = Command::new(program);
        command
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .stdin(Stdio::inherit())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        command
    }

    fn sh(script: &str) -> Command {
        let mut command = plain("sh");
        command.args(["-c", script]);
        command
    }

    async fn run(command: &Command, own_group: bool) -> (ExitStatus, String, String) {
        let (mut child, mut out, mut err) = spawn(command, own_group)
            .expect("a command vfork can start")
            .expect("spawned");
        let (mut o, mut e) = (String::new(), String::new());
        out.read_to_string(&mut o).await.expect("stdout");
        err.read_to_string(&mut e).await.expect("stderr");
        let status = child.wait().await.expect("waited");
        assert_eq!(child.wait().await.expect("waited again"), status);
        (status, o, e)
    }

    fn gone_within(pid: u32, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while Path::new(&format!("/proc/{pid}")).exists() {
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        true
    }

    #[tokio::test]
    async fn runs_the_command_with_its_arguments_environment_directory_and_pipes() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let mut command = sh("echo out; echo err >&2; pwd; echo \"$GREETING\" \"$HOME\"; exit 3");
        command
            .env_clear()
            .env("GREETING", "hello world")
            .current_dir(dir.path());
        let (status, out, err) = run(&command, false).await;
        let cwd = dir.path().canonicalize().expect("canonical");
        assert_eq!(status.code(), Some(3));
        assert_eq!(out, format!("out\n{}\nhello world \n", cwd.display()));
        assert_eq!(err, "err\n");
    }

    #[tokio::test]
    async fn the_child_starts_with_no_blocked_signals_and_sigpipe_at_its_default() {
        // Rust ignores SIGPIPE in every program; std's spawn resets it, and so do we.
        let (_, out, _) = run(&sh("grep -E '^Sig(Blk|Ign)' /proc/self/status"), false).await;
        let field = |name: &str| {
            let line = out.lines().find(|l| l.starts_with(name)).expect(name);
            u64::from_str_radix(line.split_whitespace().nth(1).expect("a mask"), 16).expect("hex")
        };
        assert_eq!(field("SigBlk:"), 0, "{out}");
        let sigpipe = 1 << (libc::SIGPIPE - 1);
        assert_eq!(field("SigIgn:") & sigpipe, 0, "{out}");
    }

    #[tokio::test]
    async fn a_program_is_found_on_the_commands_path_or_reported_missing() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let script = dir.path().join("plugwire-vfork-test");
        std::fs::write(&script, "#!/bin/sh\necho found\n").expect("script");
        std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .expect("chmod");
        let mut command = plain("plugwire-vfork-test");
        command.env("PATH", dir.path());
        let (status, out, _) = run(&command, false).await;
        assert!(status.success());
        assert_eq!(out, "found\n");

        let error = spawn(&plain("plugwire-no-such-program"), false)
            .expect("plain command")
            .expect_err("missing");
        assert_eq!(error.kind(), io::ErrorKind::NotFound);
        let error = spawn(&plain(dir.path().join(".")), false)
            .expect("plain")
            .expect_err("a directory");
        assert_eq!(error.kind(), io::ErrorKind::PermissionDenied, "{error}");
    }

    #[tokio::test]
    async fn own_group_makes_the_child_a_group_leader() {
        let mut command = sh("cut -d' ' -f5 /proc/$$/stat; echo $$");
        command.process_group(0);
        let (status, out, _) = run(&command, true).await;
        assert!(status.success());
        let ids: Vec<&str> = out.split_whitespace().collect();
        assert_eq!(ids.len(), 2, "{out}");
        assert_eq!(ids[0], ids[1], "pgid and pid");
        let (_, out, _) = run(&sh("cut -d' ' -f5 /proc/$$/stat; echo $$"), false).await;
        let ids: Vec<&str> = out.split_whitespace().collect();
        assert_ne!(ids[0], ids[1], "without own_group the child stays in ours");
    }

    #[test]
    fn commands_with_settings_std_cannot_report_are_left_to_std() {
        assert!(reproducible(&sh("true"), false));
        // What the host inherits is not known here: build_command makes it explicit.
        assert!(!reproducible(
            Command::new("true")
                .stdin(Stdio::inherit())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped()),
            false
        ));
        assert!(reproducible(sh("true").process_group(0), true));
        assert!(!reproducible(&sh("true"), true));
        assert!(!reproducible(
            sh("true").uid(nix::unistd::getuid().as_raw()),
            false
        ));
        assert!(!reproducible(sh("true").arg0("renamed"), false));
        assert!(!reproducible(sh("true").stdin(Stdio::null()), false));
    }

    #[test]
    fn the_child_dies_with_the_thread_that_started_it() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let handle = runtime.handle().clone();
        let child = std::thread::spawn(move || {
            let _entered = handle.enter();
            let (child, _, _) = spawn(&sh("exec sleep 30"), false)
                .expect("plain")
                .expect("spawned");
            child
        })
        .join()
        .expect("the spawning thread");
        let mut child = child;
        let status = runtime
            .block_on(async { tokio::time::timeout(Duration::from_secs(10), child.wait()).await });
        let status = status
            .expect("killed well before sleep ends")
            .expect("waited");
        assert_eq!(status.signal(), Some(libc::SIGKILL));
    }

    #[tokio::test]
    async fn dropping_the_child_kills_and_reaps_it() {
        let (child, _, _) = spawn(&sh("exec sleep 30"), false)
            .expect("plain")
            .expect("spawned");
        let pid = child.id();
        drop(child);
        let gone = tokio::task::spawn_blocking(move || gone_within(pid, Duration::from_secs(5)))
            .await
            .expect("joined");
        assert!(gone, "process {pid} still exists (running or a zombie)");
    }
}

//! Runs one cell: a host process given a plugin, bounded in time, in its own session (so every
//! process it starts, in whatever process group, is found and none outlives the cell), with its
//! observations parsed.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;
use serde_json::Value;
use tokio::io::AsyncWriteExt;

/// The implementation language of a fixture.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lang {
    /// go-plugin v1.8.0.
    Go,
    /// plugwire.
    Rust,
}

impl fmt::Display for Lang {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Lang::Go => "go",
            Lang::Rust => "rust",
        })
    }
}

/// Which grpc-go the Go fixtures are built with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GoGrpc {
    /// The version go-plugin v1.8.0 pins (1.61): does not insist on ALPN.
    Pinned,
    /// A current grpc-go (`go-fixtures/grpc-current.mod`): refuses TLS without ALPN `h2`.
    Current,
}

/// Whether and how a cell uses TLS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tls {
    /// Plaintext.
    Plain,
    /// go-plugin's AutoMTLS.
    AutoMtls,
    /// Manual TLS with a CA the harness makes (hosts' `-tls`, plugins' `manual-tls` mode).
    Manual,
}

/// Where the fixture executables are.
#[derive(Clone, Debug)]
pub struct Fixtures {
    /// The Rust fixture host.
    pub rust_host: PathBuf,
    /// The Rust fixture plugin.
    pub rust_plugin: PathBuf,
    /// The directory `make go-fixtures` builds into.
    pub go_dir: PathBuf,
}

impl Fixtures {
    /// The fixtures, with the Go ones from `PLUGWIRE_GO_FIXTURES` or `target/go-fixtures`.
    pub fn new(rust_host: &str, rust_plugin: &str) -> Self {
        let go_dir = std::env::var_os("PLUGWIRE_GO_FIXTURES")
            .map(PathBuf::from)
            .unwrap_or_else(|| workspace_root().join("target/go-fixtures"));
        Fixtures {
            rust_host: rust_host.into(),
            rust_plugin: rust_plugin.into(),
            go_dir,
        }
    }

    /// A binary built by `make go-fixtures`. Panics with instructions when it is not built: a
    /// missing Go side is a failure, never a skipped cell.
    pub fn go(&self, name: &str) -> PathBuf {
        let path = self.go_dir.join(name);
        assert!(
            path.exists(),
            "the Go fixture {} is missing: run `make go-fixtures` (needs Go), or set \
             PLUGWIRE_GO_FIXTURES to the directory holding the Go fixture binaries",
            path.display()
        );
        path
    }

    /// The fixture host of a language.
    pub fn host(&self, lang: Lang, grpc: GoGrpc) -> PathBuf {
        match (lang, grpc) {
            (Lang::Go, GoGrpc::Pinned) => self.go("fixture-host"),
            (Lang::Go, GoGrpc::Current) => self.go("fixture-host-grpc-current"),
            (Lang::Rust, _) => self.rust_host.clone(),
        }
    }

    /// The fixture plugin of a language.
    pub fn plugin(&self, lang: Lang, grpc: GoGrpc) -> PathBuf {
        match (lang, grpc) {
            (Lang::Go, GoGrpc::Pinned) => self.go("fixture-plugin"),
            (Lang::Go, GoGrpc::Current) => self.go("fixture-plugin-grpc-current"),
            (Lang::Rust, _) => self.rust_plugin.clone(),
        }
    }
}

/// The workspace root (the interop crate's parent).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

/// The example binaries, from `PLUGWIRE_EXAMPLES_DIR`, else the build the running test belongs
/// to (`target/debug` for `cargo test`).
pub fn example_binary(name: &str) -> PathBuf {
    let dir = std::env::var_os("PLUGWIRE_EXAMPLES_DIR")
        .map(PathBuf::from)
        .or_else(|| {
            // target/<profile>/deps/<test binary>
            let exe = std::env::current_exe().ok()?;
            Some(exe.parent()?.parent()?.to_path_buf())
        })
        .unwrap_or_else(|| workspace_root().join("target/debug"));
    let path = dir.join(name);
    assert!(
        path.exists(),
        "the example {} is missing: run `cargo build -p plugwire-examples` (or set \
         PLUGWIRE_EXAMPLES_DIR to where the example binaries are)",
        path.display()
    );
    path
}

/// One process to run: a host command line.
#[derive(Clone, Debug)]
pub struct Run {
    /// The executable.
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<String>,
    /// Extra environment.
    pub env: Vec<(String, String)>,
    /// Bytes fed to its stdin (which is then closed); `None` gives an empty stdin.
    pub stdin: Option<Vec<u8>>,
    /// The working directory.
    pub dir: Option<PathBuf>,
    /// The bound on the whole run.
    pub timeout: Duration,
    /// Leave the session's processes alone afterwards (the test checks and cleans up itself).
    pub spare_group: bool,
}

impl Run {
    /// A fixture host running `scenario` against `plugin` in `mode`.
    pub fn host(host: &Path, plugin: &Path, mode: &str, scenario: &str) -> Self {
        Run {
            program: host.to_path_buf(),
            args: vec![
                "-plugin".into(),
                plugin.display().to_string(),
                "-mode".into(),
                mode.into(),
                "-scenario".into(),
                scenario.into(),
            ],
            env: Vec::new(),
            stdin: None,
            dir: None,
            timeout: Duration::from_secs(60),
            spare_group: false,
        }
    }

    /// Any command.
    pub fn command(program: impl Into<PathBuf>, args: &[&str]) -> Self {
        Run {
            program: program.into(),
            args: args.iter().map(|a| (*a).to_owned()).collect(),
            env: Vec::new(),
            stdin: None,
            dir: None,
            timeout: Duration::from_secs(60),
            spare_group: false,
        }
    }

    /// Adds the host flags and environment for `tls`.
    pub fn tls(mut self, tls: Tls) -> Self {
        match tls {
            Tls::Plain => self,
            Tls::AutoMtls => {
                self.args.push("-mtls".into());
                self
            }
            Tls::Manual => {
                self.args.push("-tls".into());
                let dir = crate::tls::shared_material();
                self.env(crate::tls::TLS_DIR_VAR, dir.display().to_string())
            }
        }
    }

    /// Adds an environment variable.
    pub fn env(mut self, key: &str, value: impl Into<String>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Runs it in a session of its own with its own `TMPDIR` (where plugins put their sockets);
    /// kills every process left in the session afterwards and reports what was left in
    /// `TMPDIR`. A session, not a process group: plugwire hosts start each plugin in a process
    /// group of its own.
    pub async fn run(self) -> Outcome {
        let started = Instant::now();
        let tmp = tempfile::Builder::new()
            .prefix("pw")
            .tempdir()
            .unwrap_or_else(|e| panic!("no temp dir: {e}"));
        let mut command = tokio::process::Command::new(&self.program);
        command
            .env("TMPDIR", tmp.path())
            .args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        new_session(&mut command);
        if let Some(dir) = &self.dir {
            command.current_dir(dir);
        }
        let mut child = match command.spawn() {
            Ok(child) => child,
            Err(e) => panic!("could not run {}: {e}", self.program.display()),
        };
        let sid = child.id().and_then(|id| i32::try_from(id).ok());
        if let Some(mut stdin) = child.stdin.take() {
            let data = self.stdin.clone().unwrap_or_default();
            tokio::spawn(async move {
                let _ = stdin.write_all(&data).await;
            });
        }
        let output = tokio::time::timeout(self.timeout, child.wait_with_output()).await;
        let elapsed = started.elapsed();
        // Anything still running in the session outlived its host.
        let survivors = sid.map(session_members).unwrap_or_default();
        let leaked = !survivors.is_empty();
        if !self.spare_group {
            for pid in survivors {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
        let leftovers = std::fs::read_dir(tmp.path())
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        let (status, stdout, stderr) = match output {
            Ok(Ok(out)) => (
                Some(out.status),
                String::from_utf8_lossy(&out.stdout).into_owned(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            ),
            Ok(Err(e)) => (None, String::new(), format!("<waiting failed: {e}>")),
            Err(_) => (
                None,
                String::new(),
                "<timed out; the processes of its session were killed>".into(),
            ),
        };
        Outcome {
            run: self,
            status,
            observations: parse_observations(&stdout),
            stdout,
            stderr,
            leaked,
            leftovers,
            elapsed,
        }
    }
}

/// What a run produced.
#[derive(Debug)]
pub struct Outcome {
    /// What was run.
    pub run: Run,
    /// The exit status; `None` on timeout.
    pub status: Option<ExitStatus>,
    /// stdout.
    pub stdout: String,
    /// stderr.
    pub stderr: String,
    /// `key=<json>` lines of stdout.
    pub observations: BTreeMap<String, Value>,
    /// A process of the group was still alive after the host exited.
    pub leaked: bool,
    /// Files left in the run's `TMPDIR` (sockets plugins did not remove).
    pub leftovers: Vec<String>,
    /// Wall time.
    pub elapsed: Duration,
}

impl Outcome {
    /// An observation (`Null` when absent).
    pub fn get(&self, key: &str) -> &Value {
        self.observations.get(key).unwrap_or(&Value::Null)
    }

    /// An observation as text (`""` when absent or not a string).
    pub fn text(&self, key: &str) -> &str {
        self.get(key).as_str().unwrap_or("")
    }

    /// Whether the process exited 0.
    pub fn success(&self) -> bool {
        self.status.is_some_and(|s| s.success())
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "command: {} {}",
            self.run.program.display(),
            self.run.args.join(" ")
        )?;
        writeln!(
            f,
            "status: {:?} after {:?}; leaked: {}; left in TMPDIR: {:?}",
            self.status, self.elapsed, self.leaked, self.leftovers
        )?;
        writeln!(f, "--- stdout\n{}", self.stdout)?;
        writeln!(f, "--- stderr\n{}", self.stderr)
    }
}

fn parse_observations(stdout: &str) -> BTreeMap<String, Value> {
    stdout
        .lines()
        .filter_map(|line| {
            let (key, value) = line.split_once('=')?;
            let value = serde_json::from_str(value).unwrap_or_else(|_| Value::String(value.into()));
            Some((key.to_owned(), value))
        })
        .collect()
}

/// Checks a cell against `interop/known-failures.txt`: an unexpected failure panics with the
/// outcome; a listed cell that now passes panics too, so its entry gets removed.
pub fn verdict(cell: &str, outcome: &Outcome, result: Result<(), String>) {
    let known = known_failures();
    match (result, known.get(cell)) {
        (Ok(()), None) => {}
        (Err(reason), Some(why)) => {
            println!("known failure {cell}: {why} (this run: {reason})");
        }
        (Ok(()), Some(_)) => panic!(
            "{cell} is listed in interop/known-failures.txt but now passes: remove its entry\n{outcome}"
        ),
        (Err(reason), None) => panic!("{cell}: {reason}\n{outcome}"),
    }
}

/// `cell reason` lines of `interop/known-failures.txt` (`#` starts a comment).
pub fn known_failures() -> BTreeMap<String, String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("known-failures.txt");
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| match l.split_once(char::is_whitespace) {
            Some((cell, reason)) => (cell.to_owned(), reason.trim().to_owned()),
            None => (l.to_owned(), String::new()),
        })
        .collect()
}

/// Collects failed expectations of one cell.
#[derive(Debug, Default)]
pub struct Expect {
    problems: Vec<String>,
}

impl Expect {
    /// Records a problem unless `ok`.
    pub fn that(&mut self, ok: bool, what: impl FnOnce() -> String) -> &mut Self {
        if !ok {
            self.problems.push(what());
        }
        self
    }

    /// An observation equals a JSON value.
    pub fn eq(&mut self, outcome: &Outcome, key: &str, want: Value) -> &mut Self {
        let got = outcome.get(key).clone();
        self.that(got == want, || format!("{key}: got {got}, want {want}"))
    }

    /// A text observation contains `needle`.
    pub fn contains(&mut self, outcome: &Outcome, key: &str, needle: &str) -> &mut Self {
        let got = outcome.text(key).to_owned();
        self.that(got.contains(needle), || {
            format!("{key}: {got:?} does not contain {needle:?}")
        })
    }

    /// The result.
    pub fn result(&self) -> Result<(), String> {
        if self.problems.is_empty() {
            Ok(())
        } else {
            Err(self.problems.join("; "))
        }
    }
}

/// A plugin started by hand in debug mode (for reattach cells): in its own process group and
/// `TMPDIR`, killed with its group when dropped.
pub struct DebugPlugin {
    /// Reaps the plugin as soon as it exits (a zombie still "exists" for `kill(pid, 0)`).
    waiter: Option<tokio::task::JoinHandle<()>>,
    pgid: i32,
    /// The reattach JSON map it printed.
    pub reattach: String,
    tmp: tempfile::TempDir,
}

impl DebugPlugin {
    /// Starts `plugin debug` and waits (at most 20 s) for its reattach line.
    pub async fn start(plugin: &Path) -> Self {
        Self::start_mode(plugin, "debug").await
    }

    /// Starts `plugin <mode>` (a debug mode) and waits (at most 20 s) for its reattach line.
    pub async fn start_mode(plugin: &Path, mode: &str) -> Self {
        use tokio::io::AsyncBufReadExt as _;
        let tmp = tempfile::Builder::new()
            .prefix("pw")
            .tempdir()
            .unwrap_or_else(|e| panic!("no temp dir: {e}"));
        let mut child = tokio::process::Command::new(plugin)
            .arg(mode)
            .env("TMPDIR", tmp.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("could not start {}: {e}", plugin.display()));
        let pgid = child
            .id()
            .and_then(|id| i32::try_from(id).ok())
            .unwrap_or(0);
        let stdout = child.stdout.take().unwrap_or_else(|| panic!("no stdout"));
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
            .await
            .ok()
            .and_then(Result::ok)
            .flatten()
            .unwrap_or_else(|| panic!("{} printed no reattach line", plugin.display()));
        let waiter = tokio::spawn(async move {
            let _ = child.wait().await;
        });
        DebugPlugin {
            waiter: Some(waiter),
            pgid,
            reattach: line,
            tmp,
        }
    }

    /// Waits (at most `limit`) for the plugin to exit; whether it did.
    pub async fn exited_within(&mut self, limit: Duration) -> bool {
        match self.waiter.as_mut() {
            Some(waiter) => tokio::time::timeout(limit, waiter).await.is_ok(),
            None => true,
        }
    }

    /// Files left in its `TMPDIR`.
    pub fn leftovers(&self) -> Vec<String> {
        std::fs::read_dir(self.tmp.path())
            .map(|d| {
                d.filter_map(Result::ok)
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for DebugPlugin {
    fn drop(&mut self) {
        if self.pgid > 0 {
            let _ = killpg(Pid::from_raw(self.pgid), Signal::SIGKILL);
        }
    }
}

/// Makes `command` start a new session (`setsid(2)` in the child), which every process it starts
/// belongs to unless it leaves on purpose.
fn new_session(command: &mut tokio::process::Command) {
    // SAFETY: the closure runs in the forked child before exec and makes one async-signal-safe
    // system call, setsid, through a nix wrapper that neither allocates nor locks.
    #[allow(unsafe_code)]
    unsafe {
        command.pre_exec(|| {
            nix::unistd::setsid()
                .map(drop)
                .map_err(std::io::Error::from)
        });
    }
}

/// Running (not zombie) processes of session `sid`, from `/proc`.
pub fn session_members(sid: i32) -> Vec<i32> {
    proc_members(3, sid)
}

/// Running (not zombie) processes whose process group is `pgid`, from `/proc`.
pub fn group_members(pgid: i32) -> Vec<i32> {
    proc_members(2, pgid)
}

/// Running processes whose `/proc/<pid>/stat` field `index` (after the command name: 0 state,
/// 1 ppid, 2 pgrp, 3 session) is `value`.
fn proc_members(index: usize, value: i32) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                return false;
            };
            // Fields after "(comm)": state, ppid, pgrp.
            let fields: Vec<&str> = stat
                .rsplit_once(')')
                .map(|(_, rest)| rest.split_whitespace().collect())
                .unwrap_or_default();
            fields.first().is_some_and(|state| *state != "Z")
                && fields.get(index).and_then(|g| g.parse::<i32>().ok()) == Some(value)
        })
        .collect()
}

/// Whether `pid` is running (a zombie counts as gone).
pub fn is_running(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            let state = stat
                .rsplit_once(')')?
                .1
                .split_whitespace()
                .next()?
                .to_owned();
            Some(state != "Z")
        })
        .unwrap_or(false)
}

/// Waits (polling `/proc`, at most `limit`) for `pid` to stop running; whether it did. There is
/// no exit notification for a process that is not our child.
pub async fn wait_gone(pid: i32, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while is_running(pid) {
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    true
}

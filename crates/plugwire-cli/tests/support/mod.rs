//! What the process tests share: where the plugins are, running `plugwire` with a time bound,
//! and starting a plugin by hand for `reattach`.
//!
//! The plugins come from outside this crate, found through environment variables with defaults
//! in the workspace's target directory; a missing one fails the test with what to build (a
//! missing Go side is a failure, never a silently skipped test):
//!
//! | variable | default | what |
//! |---|---|---|
//! | `PLUGWIRE_GO_FIXTURES` | `target/go-fixtures` | go-plugin's examples and the Go fixtures (`make go-fixtures`) |
//! | `PLUGWIRE_EXAMPLES_DIR` | `target/debug` | `kv-plugin`, `counter-plugin`, `plugwire-fixture-plugin` |
//! | `PLUGWIRE_CLI_FIXTURE` | next to `plugwire` | `plugwire-cli-fixture` (crate `plugwire-cli-fixtures`) |

#![allow(dead_code, unreachable_pub)] // each test file uses its own part

use std::ffi::OsStr;
use std::io::{BufRead as _, Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// The longest one `plugwire` run may take in a test.
pub const RUN_TIMEOUT: Duration = Duration::from_secs(120);

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn existing(path: PathBuf, how: &str) -> PathBuf {
    assert!(path.exists(), "{} is missing: {how}", path.display());
    path
}

/// A go-plugin v1.8.0 example or Go fixture binary.
pub fn go(name: &str) -> PathBuf {
    let dir = std::env::var_os("PLUGWIRE_GO_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target/go-fixtures"));
    existing(
        dir.join(name),
        "build the Go side with `make go-fixtures` (needs Go), or point PLUGWIRE_GO_FIXTURES at it",
    )
}

/// A Rust example plugin (`kv-plugin`, `counter-plugin`) or the interop fixture plugin.
pub fn example(name: &str) -> PathBuf {
    let dir = std::env::var_os("PLUGWIRE_EXAMPLES_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target/debug"));
    existing(
        dir.join(name),
        "build it with `cargo build -p plugwire-examples -p plugwire-interop`, or point \
         PLUGWIRE_EXAMPLES_DIR at the directory that has it",
    )
}

/// The deliberately broken plugins.
pub fn cli_fixture() -> PathBuf {
    let path = std::env::var_os("PLUGWIRE_CLI_FIXTURE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_BIN_EXE_plugwire")).with_file_name("plugwire-cli-fixture")
        });
    existing(
        path,
        "build it with `cargo build -p plugwire-cli-fixtures` (`cargo test -p plugwire-cli -p \
         plugwire-cli-fixtures` builds it), or set PLUGWIRE_CLI_FIXTURE",
    )
}

/// What one `plugwire` run produced.
#[derive(Debug)]
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// The stdout as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
                self.stdout, self.stderr
            )
        })
    }

    /// Panics unless the exit code is `code`.
    pub fn expect_code(&self, code: i32) -> &Self {
        assert_eq!(
            self.code,
            Some(code),
            "exit code\nstdout:\n{}\nstderr:\n{}",
            self.stdout,
            self.stderr
        );
        self
    }
}

/// Runs `plugwire` with `args` in `dir`, `stdin` as its input, within [`RUN_TIMEOUT`].
pub fn plugwire_in(dir: &Path, args: &[&OsStr], stdin: &str) -> Run {
    plugwire_env(dir, args, stdin, &[])
}

/// [`plugwire_in`] with extra environment variables.
pub fn plugwire_env(dir: &Path, args: &[&OsStr], stdin: &str, env: &[(&str, &OsStr)]) -> Run {
    let mut command = Command::new(env!("CARGO_BIN_EXE_plugwire"));
    command
        .args(args)
        .current_dir(dir)
        .env_remove("NO_COLOR")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (key, value) in env {
        command.env(key, value);
    }
    let mut child = command.spawn().expect("plugwire starts");
    let mut input = child.stdin.take().expect("stdin");
    let stdin = stdin.to_owned();
    std::thread::spawn(move || {
        let _ = input.write_all(stdin.as_bytes());
    });
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let output: Output = match rx.recv_timeout(RUN_TIMEOUT) {
        Ok(output) => output.expect("plugwire runs"),
        Err(_) => {
            kill(pid);
            panic!("plugwire {args:?} did not finish within {RUN_TIMEOUT:?}");
        }
    };
    Run {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Runs `plugwire` with `args` in a fresh temp dir.
pub fn plugwire(args: &[&str]) -> Run {
    let dir = tempfile::tempdir().expect("tempdir");
    let args: Vec<&OsStr> = args.iter().map(OsStr::new).collect();
    plugwire_in(dir.path(), &args, "")
}

fn kill(pid: u32) {
    if let Ok(pid) = i32::try_from(pid) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

/// A plugin started by the test itself (for `reattach`): its first stdout line, then killed
/// and reaped on drop, its private `$TMPDIR` (socket included) removed.
pub struct Running {
    child: std::process::Child,
    pub first_line: String,
    tmpdir: tempfile::TempDir,
}

impl Running {
    /// Starts `program` with `env` (stdout piped; stderr drained), waiting up to 10 s for its
    /// first stdout line.
    pub fn start(program: &Path, args: &[&str], env: &[(&str, &str)]) -> Running {
        let tmpdir = tempfile::tempdir().expect("tempdir");
        let mut child = Command::new(program)
            .args(args)
            .envs(env.iter().copied())
            .env("TMPDIR", tmpdir.path())
            .current_dir(tmpdir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the plugin starts");
        let stdout = child.stdout.take().expect("stdout");
        let mut stderr = child.stderr.take().expect("stderr");
        std::thread::spawn(move || {
            let mut sink = Vec::new();
            let _ = stderr.read_to_end(&mut sink);
        });
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = std::io::BufReader::new(stdout);
            let mut line = String::new();
            let _ = reader.read_line(&mut line);
            let _ = tx.send(line);
            // Keep draining so the plugin never blocks on stdout.
            let _ = std::io::copy(&mut reader, &mut std::io::sink());
        });
        let first_line = match rx.recv_timeout(Duration::from_secs(10)) {
            Ok(line) => line.trim().to_owned(),
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{} printed no line within 10 s", program.display());
            }
        };
        Running {
            child,
            first_line,
            tmpdir,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether it is still running.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Its temp directory (where its socket is).
    pub fn dir(&self) -> &Path {
        self.tmpdir.path()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

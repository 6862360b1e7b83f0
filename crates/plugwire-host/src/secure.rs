//! go-plugin's `SecureConfig`: check the plugin executable's checksum before launching it.

use std::ffi::OsStr;
use std::fmt;
use std::io::Read as _;
use std::path::{Path, PathBuf};

use sha2::Digest;
use subtle::ConstantTimeEq as _;

use crate::error::{Error, ErrorKind};

type HashFile = fn(&Path) -> std::io::Result<Vec<u8>>;

/// The expected checksum of the plugin executable; nothing is launched when it does not match.
#[derive(Clone)]
pub struct SecureConfig {
    checksum: Vec<u8>,
    hash: HashFile,
    algorithm: &'static str,
}

impl fmt::Debug for SecureConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecureConfig")
            .field("algorithm", &self.algorithm)
            .field("checksum", &hex(&self.checksum))
            .finish()
    }
}

impl SecureConfig {
    /// Expects the executable's SHA-256 to be `checksum` (raw bytes, not hex).
    pub fn sha256(checksum: impl Into<Vec<u8>>) -> Self {
        Self::with_digest::<sha2::Sha256>(checksum, "SHA-256")
    }

    /// Expects the executable's digest under `D` (any RustCrypto hash) to be `checksum`.
    pub fn with_digest<D: Digest>(checksum: impl Into<Vec<u8>>, algorithm: &'static str) -> Self {
        SecureConfig {
            checksum: checksum.into(),
            hash: hash_file::<D>,
            algorithm,
        }
    }

    /// Checks the executable `command` would run. Errors say which file and why.
    pub(crate) async fn check(&self, command: &std::process::Command) -> Result<(), Error> {
        if self.checksum.is_empty() {
            return Err(Error::new(
                ErrorKind::Checksum,
                "error verifying checksum: no checksum provided",
            ));
        }
        let path = resolve_program(command).ok_or_else(|| {
            Error::new(
                ErrorKind::Checksum,
                format!(
                    "error verifying checksum: could not find the executable {:?}",
                    command.get_program()
                ),
            )
        })?;
        let hash = self.hash;
        let file = path.clone();
        let digest = tokio::task::spawn_blocking(move || hash(&file))
            .await
            .map_err(|e| Error::with_source(ErrorKind::Checksum, "error verifying checksum", e))?
            .map_err(|e| {
                Error::with_source(
                    ErrorKind::Checksum,
                    format!(
                        "error verifying checksum: could not read {}",
                        path.display()
                    ),
                    e,
                )
            })?;
        if bool::from(digest.ct_eq(&self.checksum)) {
            Ok(())
        } else {
            Err(Error::new(
                ErrorKind::Checksum,
                format!(
                    "checksums did not match: the {} of {} is {}, the configuration expects {}; \
                     the plugin was not launched",
                    self.algorithm,
                    path.display(),
                    hex(&digest),
                    hex(&self.checksum)
                ),
            ))
        }
    }
}

fn hash_file<D: Digest>(path: &Path) -> std::io::Result<Vec<u8>> {
    let mut file = std::fs::File::open(path)?;
    let mut digest = D::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            return Ok(digest.finalize().to_vec());
        }
        digest.update(&buf[..n]);
    }
}

/// The file `command` executes: a path with a `/` as given (relative to the command's working
/// directory when it has one), otherwise the first match in `PATH` (the command's own, else the
/// host's), as `exec.LookPath` does for go-plugin.
fn resolve_program(command: &std::process::Command) -> Option<PathBuf> {
    let program = Path::new(command.get_program());
    if program.as_os_str().as_encoded_bytes().contains(&b'/') {
        return Some(match command.get_current_dir() {
            Some(dir) if program.is_relative() => dir.join(program),
            _ => program.to_path_buf(),
        });
    }
    let own_path = command
        .get_envs()
        .find(|(k, _)| *k == OsStr::new("PATH"))
        .and_then(|(_, v)| v.map(OsStr::to_os_string));
    let path = own_path.or_else(|| std::env::var_os("PATH"))?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sha256_of(path: &Path) -> Vec<u8> {
        hash_file::<sha2::Sha256>(path).expect("hash")
    }

    #[tokio::test]
    async fn matching_and_mismatching_checksums() {
        let dir = tempfile::tempdir().expect("tempdir");
        let exe = dir.path().join("plugin");
        std::fs::write(&exe, b"#!/bin/sh\n").expect("write");
        let command = std::process::Command::new(&exe);
        SecureConfig::sha256(sha256_of(&exe))
            .check(&command)
            .await
            .expect("the right checksum passes");
        let err = SecureConfig::sha256(vec![0u8; 32])
            .check(&command)
            .await
            .expect_err("a wrong checksum fails");
        assert_eq!(err.kind(), ErrorKind::Checksum);
        let text = err.to_string();
        assert!(text.starts_with("checksums did not match"), "{text}");
        assert!(text.contains(&exe.display().to_string()), "{text}");
        let err = SecureConfig::sha256(Vec::new())
            .check(&command)
            .await
            .expect_err("an empty checksum fails");
        assert!(err.to_string().contains("no checksum provided"));
    }

    #[test]
    fn programs_resolve_like_exec_lookpath() {
        let sh = resolve_program(&std::process::Command::new("sh")).expect("sh is on PATH");
        assert!(sh.is_absolute() && sh.ends_with("sh"), "{}", sh.display());
        let mut relative = std::process::Command::new("./plugin");
        relative.current_dir("/opt");
        assert_eq!(
            resolve_program(&relative),
            Some(PathBuf::from("/opt/./plugin"))
        );
        assert_eq!(
            resolve_program(&std::process::Command::new("plugwire-no-such-program")),
            None
        );
    }
}

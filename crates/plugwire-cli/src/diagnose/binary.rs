//! What the plugin executable is, read from the file itself: found or not, executable or not,
//! which binary format and architecture (ELF, Mach-O, PE, a script), the ELF program
//! interpreter, and which well-known cookies its bytes contain.

use std::io::Read as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use serde::Serialize;

/// How many bytes of the header are read.
const HEADER_LEN: usize = 4096;
/// The most bytes scanned for cookie strings.
const SCAN_LIMIT: u64 = 512 << 20;

/// What the executable file is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub(crate) enum Format {
    /// An ELF binary.
    Elf {
        /// Rust's name for its architecture (`x86_64`, `aarch64`, ...), or `machine N`.
        arch: String,
        /// 32 or 64.
        bits: u8,
        /// The OS ABI byte, named when known (`FreeBSD`, ...; `None` for System V/Linux).
        os_abi: Option<String>,
        /// The program interpreter (dynamic loader) it needs, when dynamically linked.
        interpreter: Option<String>,
    },
    /// A macOS binary.
    MachO,
    /// A Windows binary.
    Pe,
    /// A script with a `#!` line.
    Script {
        /// The interpreter line.
        interpreter: String,
    },
    /// None of those: the OS cannot execute it.
    Unknown,
}

impl Format {
    /// Why this machine cannot run it, if it cannot.
    pub(crate) fn mismatch(&self) -> Option<String> {
        let host_arch = std::env::consts::ARCH;
        let host_os = std::env::consts::OS;
        match self {
            Format::Elf { arch, bits, .. } if arch != host_arch => Some(format!(
                "it is a {bits}-bit {arch} ELF binary; this machine is {host_os}/{host_arch}: \
                 build the plugin for {host_arch} (Go: GOARCH={}, Rust: --target {host_arch}-...)",
                go_arch(host_arch)
            )),
            Format::Elf {
                os_abi: Some(abi), ..
            } => Some(format!(
                "it is an ELF binary for {abi}; this machine runs {host_os}: build it with GOOS={host_os}"
            )),
            Format::Elf { .. } if host_os != "linux" && !host_os.ends_with("bsd") => Some(format!(
                "it is an ELF binary (Linux); this machine runs {host_os}"
            )),
            Format::MachO if host_os != "macos" => Some(format!(
                "it is a macOS (Mach-O) binary; this machine runs {host_os}: build it with GOOS={host_os}"
            )),
            Format::Pe => Some(format!(
                "it is a Windows (PE) binary; this machine runs {host_os}: build it with GOOS={host_os}"
            )),
            Format::Unknown => Some(
                "it is neither a binary this OS runs (ELF) nor a script with a #! line".to_owned(),
            ),
            _ => None,
        }
    }
}

/// The facts about an executable.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Executable {
    /// The path the command resolved to (through `PATH` for a bare name).
    pub(crate) path: PathBuf,
    /// The permission bits.
    pub(crate) mode: u32,
    /// Whether this user may execute it.
    pub(crate) executable: bool,
    /// A directory or other non-file.
    pub(crate) regular_file: bool,
    pub(crate) format: Format,
}

/// Why the executable could not be looked at.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LookError {
    /// No such file (or not in `PATH`).
    #[error("{0}")]
    NotFound(String),
    /// Reading it failed.
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Resolves `program` as `execvp` would: a name without `/` is looked up in `PATH`, relative to
/// `dir` when the command runs there.
pub(crate) fn resolve(program: &Path, dir: Option<&Path>) -> Result<PathBuf, LookError> {
    if program.as_os_str().to_string_lossy().contains('/') {
        let path = match dir {
            Some(dir) if program.is_relative() => dir.join(program),
            _ => program.to_path_buf(),
        };
        return if path.exists() {
            Ok(path)
        } else {
            Err(LookError::NotFound(format!(
                "{} does not exist",
                path.display()
            )))
        };
    }
    let path_var = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path_var)
        .map(|d| d.join(program))
        .find(|candidate| candidate.is_file())
        .ok_or_else(|| {
            LookError::NotFound(format!(
                "{} is not in PATH; give its path (./{0} for one in this directory)",
                program.display()
            ))
        })
}

/// Looks at the file at `path`.
pub(crate) fn look(path: &Path) -> Result<Executable, LookError> {
    let read_error = |source| LookError::Read {
        path: path.to_path_buf(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(read_error)?;
    let mode = meta.permissions().mode();
    let regular_file = meta.is_file();
    let executable =
        regular_file && nix::unistd::access(path, nix::unistd::AccessFlags::X_OK).is_ok();
    let mut header = Vec::with_capacity(HEADER_LEN);
    if regular_file {
        std::fs::File::open(path)
            .and_then(|f| f.take(HEADER_LEN as u64).read_to_end(&mut header))
            .map_err(read_error)?;
    }
    let mut format = format_of(&header);
    if let Format::Elf { interpreter, .. } = &mut format
        && interpreter.is_none()
    {
        *interpreter = elf_interpreter(path).unwrap_or(None);
    }
    Ok(Executable {
        path: path.to_path_buf(),
        mode,
        executable,
        regular_file,
        format,
    })
}

/// The format a file's first bytes say.
pub(crate) fn format_of(header: &[u8]) -> Format {
    match header {
        [0x7f, b'E', b'L', b'F', ..] => elf_format(header),
        [0xfe, 0xed, 0xfa, 0xce | 0xcf, ..]
        | [0xce | 0xcf, 0xfa, 0xed, 0xfe, ..]
        | [0xca, 0xfe, 0xba, 0xbe, ..] => Format::MachO,
        [b'M', b'Z', ..] => Format::Pe,
        [b'#', b'!', rest @ ..] => {
            let line = rest.split(|b| *b == b'\n').next().unwrap_or_default();
            Format::Script {
                interpreter: String::from_utf8_lossy(line).trim().to_owned(),
            }
        }
        _ => Format::Unknown,
    }
}

fn elf_format(header: &[u8]) -> Format {
    let bits = match header.get(4) {
        Some(1) => 32,
        _ => 64,
    };
    let big_endian = header.get(5) == Some(&2);
    let machine = read_u16(header, 18, big_endian).unwrap_or(0);
    let arch = match (machine, bits) {
        (3, _) => "x86".to_owned(),
        (62, _) => "x86_64".to_owned(),
        (40, _) => "arm".to_owned(),
        (183, _) => "aarch64".to_owned(),
        (243, 64) => "riscv64".to_owned(),
        (243, _) => "riscv32".to_owned(),
        (8, 64) => "mips64".to_owned(),
        (8, _) => "mips".to_owned(),
        (20, _) => "powerpc".to_owned(),
        (21, _) => "powerpc64".to_owned(),
        (22, _) => "s390x".to_owned(),
        (258, _) => "loongarch64".to_owned(),
        (other, _) => format!("machine {other}"),
    };
    let os_abi = match header.get(7) {
        Some(0 | 3) | None => None,
        Some(9) => Some("FreeBSD".to_owned()),
        Some(12) => Some("OpenBSD".to_owned()),
        Some(2) => Some("NetBSD".to_owned()),
        Some(6) => Some("Solaris".to_owned()),
        Some(other) => Some(format!("OS ABI {other}")),
    };
    Format::Elf {
        arch,
        bits,
        os_abi,
        interpreter: None,
    }
}

/// The `PT_INTERP` path of an ELF file: the dynamic loader the kernel needs to run it. A missing
/// one makes `exec` fail with "No such file or directory" although the file exists.
fn elf_interpreter(path: &Path) -> std::io::Result<Option<String>> {
    use std::io::{Seek as _, SeekFrom};
    let mut file = std::fs::File::open(path)?;
    let mut header = [0u8; 64];
    file.read_exact(&mut header)?;
    let is64 = header[4] == 2;
    let be = header[5] == 2;
    let (phoff, phentsize, phnum) = if is64 {
        (
            read_u64(&header, 32, be),
            read_u16(&header, 54, be),
            read_u16(&header, 56, be),
        )
    } else {
        (
            read_u32(&header, 28, be).map(u64::from),
            read_u16(&header, 42, be),
            read_u16(&header, 44, be),
        )
    };
    let (Some(phoff), Some(phentsize), Some(phnum)) = (phoff, phentsize, phnum) else {
        return Ok(None);
    };
    let table_len = usize::from(phentsize) * usize::from(phnum.min(256));
    let mut table = vec![0u8; table_len];
    file.seek(SeekFrom::Start(phoff))?;
    file.read_exact(&mut table)?;
    for entry in table.chunks_exact(usize::from(phentsize).max(1)) {
        const PT_INTERP: u32 = 3;
        if read_u32(entry, 0, be) != Some(PT_INTERP) {
            continue;
        }
        let (offset, size) = if is64 {
            (read_u64(entry, 8, be), read_u64(entry, 32, be))
        } else {
            (
                read_u32(entry, 4, be).map(u64::from),
                read_u32(entry, 16, be).map(u64::from),
            )
        };
        let (Some(offset), Some(size)) = (offset, size) else {
            return Ok(None);
        };
        let mut name = vec![0u8; usize::try_from(size.min(4096)).unwrap_or(4096)];
        file.seek(SeekFrom::Start(offset))?;
        file.read_exact(&mut name)?;
        let name = name.split(|b| *b == 0).next().unwrap_or_default();
        return Ok(Some(String::from_utf8_lossy(name).into_owned()));
    }
    Ok(None)
}

fn read_u16(bytes: &[u8], at: usize, be: bool) -> Option<u16> {
    let b: [u8; 2] = bytes.get(at..at + 2)?.try_into().ok()?;
    Some(if be {
        u16::from_be_bytes(b)
    } else {
        u16::from_le_bytes(b)
    })
}

fn read_u32(bytes: &[u8], at: usize, be: bool) -> Option<u32> {
    let b: [u8; 4] = bytes.get(at..at + 4)?.try_into().ok()?;
    Some(if be {
        u32::from_be_bytes(b)
    } else {
        u32::from_le_bytes(b)
    })
}

fn read_u64(bytes: &[u8], at: usize, be: bool) -> Option<u64> {
    let b: [u8; 8] = bytes.get(at..at + 8)?.try_into().ok()?;
    Some(if be {
        u64::from_be_bytes(b)
    } else {
        u64::from_le_bytes(b)
    })
}

/// Go's name for a Rust architecture name.
fn go_arch(rust_arch: &str) -> &str {
    match rust_arch {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

/// Which of `needles` occur in the file (the first 512 MiB of it).
pub(crate) fn contains_strings(path: &Path, needles: &[&str]) -> std::io::Result<Vec<bool>> {
    let automaton = aho_corasick::AhoCorasick::new(needles)
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    let mut found = vec![false; needles.len()];
    let file = std::fs::File::open(path)?.take(SCAN_LIMIT);
    for hit in automaton.stream_find_iter(std::io::BufReader::with_capacity(1 << 20, file)) {
        if let Some(slot) = found.get_mut(hit?.pattern().as_usize()) {
            *slot = true;
        }
        if found.iter().all(|f| *f) {
            break;
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_from_headers() {
        let mut elf = vec![0x7f, b'E', b'L', b'F', 2, 1, 1, 0];
        elf.resize(20, 0);
        elf[18] = 183; // aarch64, little-endian
        let format = format_of(&elf);
        assert_eq!(
            format,
            Format::Elf {
                arch: "aarch64".into(),
                bits: 64,
                os_abi: None,
                interpreter: None
            }
        );
        if std::env::consts::ARCH != "aarch64" {
            let why = format.mismatch().expect("wrong architecture");
            assert!(why.contains("aarch64 ELF"), "{why}");
        }
        assert_eq!(format_of(&[0xcf, 0xfa, 0xed, 0xfe]), Format::MachO);
        assert_eq!(format_of(b"MZ\x90\x00"), Format::Pe);
        assert_eq!(
            format_of(b"#!/usr/bin/env python3\nprint()"),
            Format::Script {
                interpreter: "/usr/bin/env python3".into()
            }
        );
        assert_eq!(format_of(b"hello"), Format::Unknown);
        assert!(Format::Unknown.mismatch().is_some());
    }

    #[test]
    fn this_test_binary_runs_here() {
        let me = std::env::current_exe().expect("current exe");
        let exe = look(&me).expect("look");
        assert!(exe.executable && exe.regular_file);
        assert_eq!(exe.format.mismatch(), None, "{:?}", exe.format);
        // Made at run time, so that the binary cannot contain it.
        let absent = format!(
            "absent-{:x}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos())
                .wrapping_mul(0x9e37_79b9)
        );
        let found = contains_strings(&me, &["this_test_binary_runs_here", &absent]).expect("scan");
        assert_eq!(found, vec![true, false]);
    }
}

//! Descriptors from `.proto` files, for plugins that serve no reflection: compiled in-process
//! by protox, no `protoc` needed. The well-known types (`google/protobuf/*.proto`) are always
//! importable.

use std::fmt;
use std::path::{Path, PathBuf};

use miette::Diagnostic;
use prost_reflect::DescriptorPool;

/// A `.proto` file that does not compile, with where if known.
#[derive(Debug)]
pub(crate) struct CompileError {
    location: Option<String>,
    error: protox::Error,
}

impl CompileError {
    fn new(error: protox::Error) -> Self {
        CompileError {
            location: locate(&error),
            error,
        }
    }
}

impl fmt::Display for CompileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.location {
            Some(location) => write!(f, "{location}: {}", self.error),
            None => write!(f, "{}", self.error),
        }
    }
}

impl std::error::Error for CompileError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

/// Compiles `paths` with everything they import into a pool.
///
/// Imports are looked up in `include_dirs`, as `protoc -I` does; each path must be inside one
/// of them. With no include directories, those of the files themselves are used, so that
/// `compile(["api/kv.proto"], [])` works from anywhere for a file importing only its
/// neighbours and the well-known types.
pub(crate) fn compile(
    paths: impl IntoIterator<Item = impl AsRef<Path>>,
    include_dirs: impl IntoIterator<Item = impl AsRef<Path>>,
) -> Result<DescriptorPool, CompileError> {
    let paths: Vec<PathBuf> = paths.into_iter().map(|p| p.as_ref().to_owned()).collect();
    // protox reports a missing file as "not in any include path": say what is wrong.
    if let Some(missing) = paths.iter().find(|path| !path.exists()) {
        let name = missing.display().to_string();
        return Err(CompileError::new(protox::Error::file_not_found(&name)));
    }
    let mut includes: Vec<PathBuf> = include_dirs
        .into_iter()
        .map(|d| d.as_ref().to_owned())
        .collect();
    if includes.is_empty() {
        for path in &paths {
            let dir = match path.parent() {
                Some(dir) if !dir.as_os_str().is_empty() => dir.to_owned(),
                _ => PathBuf::from("."),
            };
            if !includes.contains(&dir) {
                includes.push(dir);
            }
        }
    }
    let mut compiler = protox::Compiler::new(&includes).map_err(CompileError::new)?;
    compiler.include_imports(true).include_source_info(true);
    compiler.open_files(&paths).map_err(CompileError::new)?;
    Ok(compiler.descriptor_pool())
}

/// `file:line:column` of the error's first label, or its file.
fn locate(error: &protox::Error) -> Option<String> {
    let file = error.file().map(str::to_owned);
    let position = error
        .labels()
        .and_then(|mut labels| labels.next())
        .and_then(|label| {
            let source = error.source_code()?;
            let contents = source.read_span(label.inner(), 0, 0).ok()?;
            Some((contents.line() + 1, contents.column() + 1))
        });
    match (file, position) {
        (Some(file), Some((line, column))) => Some(format!("{file}:{line}:{column}")),
        (file, _) => file,
    }
}

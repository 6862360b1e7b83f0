//! From the command line to a host configuration: the plugin command, the handshake settings
//! (flags over a preset over a preset detected from the binary), and the host's
//! `PluginConfig`.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use plugwire_host::{MagicCookie, PluginConfig, Protocol};
use serde::Serialize;

use crate::capture::StderrCapture;
use crate::cli::HandshakeArgs;
use crate::diagnose::binary;
use crate::presets::{self, Preset};

/// The plugin name plugwire offers for every version: gRPC plugin names never go on the wire, so
/// any name works.
pub(crate) const PLUGIN_NAME: &str = "plugin";

/// The cookie a plugin gets when none was given or detected: it refuses it (which the diagnosis
/// then explains), unless it does not check its cookie at all.
const NO_COOKIE: (&str, &str) = ("PLUGWIRE_NO_COOKIE_GIVEN", "1");

/// The command that starts the plugin.
#[derive(Clone, Debug)]
pub(crate) struct PluginCommand {
    pub(crate) program: OsString,
    pub(crate) args: Vec<OsString>,
    /// Variables for the plugin besides go-plugin's: the preset's, then `--env`.
    pub(crate) env: Vec<(String, String)>,
    pub(crate) dir: Option<PathBuf>,
}

impl PluginCommand {
    /// The command from the words after `--`.
    pub(crate) fn new(words: &[OsString], dir: Option<PathBuf>) -> Result<Self, UsageError> {
        let (program, args) = words.split_first().ok_or(UsageError::NoCommand)?;
        Ok(PluginCommand {
            program: program.clone(),
            args: args.to_vec(),
            env: Vec::new(),
            dir,
        })
    }

    /// A `std::process::Command` running it, with this process's environment and the extra
    /// variables on top (so that `--env` wins over an inherited value).
    pub(crate) fn std(&self) -> std::process::Command {
        let mut command = std::process::Command::new(&self.program);
        command.args(&self.args);
        command.envs(std::env::vars_os());
        for (key, value) in &self.env {
            command.env(key, value);
        }
        if let Some(dir) = &self.dir {
            command.current_dir(dir);
        }
        command
    }

    /// The executable's file name.
    pub(crate) fn file_name(&self) -> String {
        Path::new(&self.program)
            .file_name()
            .unwrap_or(self.program.as_os_str())
            .to_string_lossy()
            .into_owned()
    }

    /// The executable, resolved as `exec` would.
    pub(crate) fn resolve(&self) -> Result<PathBuf, binary::LookError> {
        binary::resolve(Path::new(&self.program), self.dir.as_deref())
    }

    /// The command as a shell would show it.
    pub(crate) fn display(&self) -> String {
        std::iter::once(&self.program)
            .chain(&self.args)
            .map(|word| {
                let word = word.to_string_lossy();
                if word.is_empty()
                    || word.contains(|c: char| c.is_whitespace() || "'\"$\\".contains(c))
                {
                    format!("'{}'", word.replace('\'', r"'\''"))
                } else {
                    word.into_owned()
                }
            })
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// A command line that cannot work.
#[derive(Debug, thiserror::Error)]
pub(crate) enum UsageError {
    #[error("no plugin command: give it after `--`, e.g. `plugwire inspect -- ./my-plugin`")]
    NoCommand,
    #[error("unknown preset {name:?}; presets: {}", presets::names().join(", "))]
    UnknownPreset { name: String },
    #[error("--versions needs at least one version")]
    NoVersions,
    #[error("{0}")]
    Other(String),
}

/// Where the cookie came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "from", content = "preset", rename_all = "kebab-case")]
pub(crate) enum CookieSource {
    /// `--cookie`.
    Flag,
    /// `--preset`.
    Preset(&'static str),
    /// Found in the binary: the preset whose cookie it contains.
    Detected(&'static str),
    /// None given, none found.
    Missing,
}

/// What the host sends the plugin, resolved.
#[derive(Clone, Debug)]
pub(crate) struct Handshake {
    pub(crate) cookie: MagicCookie,
    pub(crate) cookie_source: CookieSource,
    pub(crate) versions: Vec<u32>,
    pub(crate) auto_mtls: bool,
    pub(crate) multiplex: bool,
    pub(crate) start_timeout: Duration,
    pub(crate) preset: Option<&'static Preset>,
}

impl Handshake {
    /// Resolves the flags; without `--cookie` or `--preset`, looks for a preset's cookie in the
    /// executable (on a blocking thread: it reads the file). Extra variables go into `command`.
    pub(crate) async fn resolve(
        args: &HandshakeArgs,
        command: &mut PluginCommand,
    ) -> Result<Self, UsageError> {
        let mut preset = match &args.preset {
            Some(name) => Some(
                presets::find(name)
                    .ok_or_else(|| UsageError::UnknownPreset { name: name.clone() })?,
            ),
            None => None,
        };
        let mut cookie_source = match (&args.cookie, preset) {
            (Some(_), _) => CookieSource::Flag,
            (None, Some(p)) => CookieSource::Preset(p.name),
            (None, None) => CookieSource::Missing,
        };
        let detected = if cookie_source == CookieSource::Missing {
            let command = command.clone();
            tokio::task::spawn_blocking(move || detect_preset(&command))
                .await
                .ok()
                .flatten()
        } else {
            None
        };
        if let Some(found) = detected {
            preset = Some(found);
            cookie_source = CookieSource::Detected(found.name);
        }
        let cookie = match (&args.cookie, preset) {
            (Some((key, value)), _) => MagicCookie::new(key, value),
            (None, Some(p)) => MagicCookie::new(p.cookie_key, p.cookie_value),
            (None, None) => MagicCookie::new(NO_COOKIE.0, NO_COOKIE.1),
        };
        let versions = match (&args.versions, preset) {
            (Some(v), _) if v.is_empty() => return Err(UsageError::NoVersions),
            (Some(v), _) => v.clone(),
            (None, Some(p)) => p.versions.to_vec(),
            (None, None) => vec![1],
        };
        let auto_mtls = if args.no_auto_mtls {
            false
        } else {
            args.auto_mtls || preset.is_some_and(|p| p.auto_mtls)
        };
        let mut env: Vec<(String, String)> = preset
            .map(|p| {
                p.env
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect()
            })
            .unwrap_or_default();
        env.extend(args.env.iter().cloned());
        command.env = env;
        Ok(Handshake {
            cookie,
            cookie_source,
            versions,
            auto_mtls,
            multiplex: args.mux,
            start_timeout: args.timeout,
            preset,
        })
    }

    /// The host configuration that launches `command` with this handshake, still open for more
    /// settings; the plugin's raw stderr is copied into `stderr`.
    pub(crate) fn builder(
        &self,
        command: &PluginCommand,
        stderr: &StderrCapture,
    ) -> plugwire_host::PluginConfigBuilder {
        let mut builder = PluginConfig::builder(self.cookie.clone(), command.std())
            // The command already carries this process's environment, under `--env`.
            .skip_host_env(true)
            .allowed_protocols([Protocol::Grpc, Protocol::NetRpc])
            .auto_mtls(self.auto_mtls)
            .multiplex(self.multiplex)
            .start_timeout(self.start_timeout)
            .stderr(stderr.writer());
        for version in &self.versions {
            builder = builder.plugins(*version, [PLUGIN_NAME]);
        }
        builder
    }
}

/// The preset whose cookie (key and value) the executable contains, when exactly one does.
pub(crate) fn detect_preset(command: &PluginCommand) -> Option<&'static Preset> {
    let path = command.resolve().ok()?;
    let found = presets_in(&path);
    match found.as_slice() {
        [one] => Some(one),
        _ => None,
    }
}

/// Every preset whose cookie key and value both occur in the file.
pub(crate) fn presets_in(path: &Path) -> Vec<&'static Preset> {
    let needles: Vec<&str> = presets::PRESETS
        .iter()
        .flat_map(|p| [p.cookie_key, p.cookie_value])
        .collect();
    let Ok(found) = binary::contains_strings(path, &needles) else {
        return Vec::new();
    };
    presets::PRESETS
        .iter()
        .zip(found.chunks_exact(2))
        .filter(|(_, pair)| pair.iter().all(|f| *f))
        .map(|(p, _)| p)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser as _;

    async fn resolve(words: &[&str]) -> Result<(Handshake, PluginCommand), UsageError> {
        let mut argv = vec!["plugwire", "inspect"];
        argv.extend_from_slice(words);
        let cli =
            crate::cli::Cli::try_parse_from(argv).map_err(|e| UsageError::Other(e.to_string()))?;
        let crate::cli::Command::Inspect(args) = cli.command else {
            return Err(UsageError::Other("not inspect".into()));
        };
        let mut command = PluginCommand::new(&args.command, args.handshake.dir.clone())?;
        let handshake = Handshake::resolve(&args.handshake, &mut command).await?;
        Ok((handshake, command))
    }

    #[tokio::test]
    async fn flags_override_the_preset() {
        let (h, command) = resolve(&[
            "--preset",
            "vault",
            "--versions",
            "5",
            "--no-auto-mtls",
            "--env",
            "A=b",
            "--",
            "/bin/true",
        ])
        .await
        .expect("valid");
        assert_eq!(h.cookie.key(), "VAULT_BACKEND_PLUGIN");
        assert_eq!(h.cookie_source, CookieSource::Preset("vault"));
        assert_eq!(h.versions, vec![5]);
        assert!(!h.auto_mtls);
        assert_eq!(
            command.env,
            vec![
                (
                    "VAULT_PLUGIN_AUTOMTLS_ENABLED".to_owned(),
                    "true".to_owned()
                ),
                ("A".to_owned(), "b".to_owned())
            ]
        );
        let (h, _) = resolve(&["--preset", "terraform", "--", "/bin/true"])
            .await
            .expect("valid");
        assert_eq!((h.versions.as_slice(), h.auto_mtls), (&[5, 6][..], true));
        assert!(matches!(
            resolve(&["--preset", "nope", "--", "/bin/true"]).await,
            Err(UsageError::UnknownPreset { .. })
        ));
    }

    #[tokio::test]
    async fn no_cookie_means_a_placeholder() {
        let (h, _) = resolve(&["--", "/bin/true"]).await.expect("valid");
        assert_eq!(h.cookie_source, CookieSource::Missing);
        assert_eq!(h.versions, vec![1]);
    }

    #[test]
    fn commands_display_like_a_shell() {
        let command = PluginCommand::new(&["sh".into(), "-c".into(), "exec ./it's".into()], None)
            .expect("command");
        assert_eq!(command.display(), r"sh -c 'exec ./it'\''s'");
        assert_eq!(command.file_name(), "sh");
    }
}

//! The command line: subcommands and their options.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::style::ColorChoice;

const EXAMPLES: &str = "\
Examples:
  # What does this plugin negotiate, serve and log? (go-plugin's grpc example)
  plugwire inspect --cookie BASIC_PLUGIN=hello -- ./kv-go-plugin

  # A Terraform provider, with Terraform's handshake (cookie, versions 5 and 6, AutoMTLS)
  plugwire inspect --preset terraform -- ./terraform-provider-null_v3.2.2_x5

  # Call a method; the request and the reply are JSON
  plugwire call --cookie BASIC_PLUGIN=hello -- ./kv-go-plugin proto.KV/Put '{\"key\":\"a\",\"value\":\"aGk=\"}'

  # A plugin that is already running in debug mode (Terraform's TF_REATTACH_PROVIDERS)
  plugwire reattach --from-env TF_REATTACH_PROVIDERS

  # Does a plugin (in any language) behave as go-plugin hosts expect? Non-zero exit on failure.
  plugwire check --cookie BASIC_PLUGIN=hello -- ./my-plugin

Exit status: 0 success; 1 the plugin failed (launch, a check, a call); 2 bad usage;
64 + the gRPC code when a call ends with a gRPC error (as grpcurl).";

/// Inspect, call and conformance-check go-plugin plugins, written in Go or any other language.
///
/// plugwire launches a plugin the way a go-plugin host (Terraform, Vault, Nomad, ...) does:
/// magic cookie, version negotiation, the handshake line, AutoMTLS, gRPC. When that fails it
/// says why, and what to pass instead.
#[derive(Debug, Parser)]
#[command(name = "plugwire", version, after_long_help = EXAMPLES)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
    /// When to colour the output.
    #[arg(long, global = true, value_enum, default_value_t = ColorChoice::Auto)]
    pub(crate) color: ColorChoice,
    /// Also print the plugin's log lines, and plugwire's, to stderr as they come.
    #[arg(short, long, global = true)]
    pub(crate) verbose: bool,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Launch a plugin as a host would; show its handshake, certificate, timings, services,
    /// health and logs; then shut it down gracefully.
    #[command(after_long_help = INSPECT_EXAMPLES)]
    Inspect(InspectArgs),
    /// Launch a plugin and call one of its gRPC methods with a JSON request.
    #[command(after_long_help = CALL_EXAMPLES)]
    Call(CallArgs),
    /// Inspect or call a plugin that is already running (debug mode), without stopping it.
    #[command(after_long_help = REATTACH_EXAMPLES)]
    Reattach(ReattachArgs),
    /// Check a plugin against the go-plugin protocol: each check runs it afresh.
    #[command(after_long_help = CHECK_EXAMPLES)]
    Check(CheckArgs),
    /// List the handshake presets and where their values come from.
    Presets(PresetsArgs),
}

const INSPECT_EXAMPLES: &str = "\
Examples:
  plugwire inspect --cookie BASIC_PLUGIN=hello -- ./kv-go-plugin
  plugwire inspect --preset terraform --json -- ./terraform-provider-random
  plugwire inspect --cookie BASIC_PLUGIN=hello --versions 3 -- ./negotiated-go-plugin";

const CALL_EXAMPLES: &str = "\
Examples:
  plugwire call --cookie BASIC_PLUGIN=hello -- ./kv-go-plugin proto.KV/Put '{\"key\":\"a\",\"value\":\"aGk=\"}'
  plugwire call --cookie BASIC_PLUGIN=hello -- ./kv-go-plugin proto.KV/Get '{\"key\":\"a\"}'
  plugwire call --proto kv.proto --cookie BASIC_PLUGIN=hello -- ./kv-plugin proto.KV/Get '{\"key\":\"a\"}'
  echo '{\"bytesToWrite\":\"aGk=\"} {\"bytesToWrite\":\"IQ==\"}' | plugwire call ... proto.StreamerService/Write -

The JSON is the proto3 JSON mapping (field names as the .proto's JSON names, bytes as base64).
'-' reads the request(s) from stdin, '@FILE' from a file; several JSON values make a request
stream for client-streaming methods. Server-streaming replies are printed one per line.";

const REATTACH_EXAMPLES: &str = "\
Examples:
  plugwire reattach '{\"Protocol\":\"grpc\",\"ProtocolVersion\":5,\"Pid\":4242,\"Test\":true,\"Addr\":{\"Network\":\"unix\",\"String\":\"/tmp/plugin123\"}}'
  plugwire reattach --from-env TF_REATTACH_PROVIDERS --name registry.terraform.io/hashicorp/null
  plugwire reattach --from-env TF_REATTACH_PROVIDERS proto.KV/Get '{\"key\":\"a\"}'

The plugin is never asked to shut down: it keeps running after plugwire exits.";

const CHECK_EXAMPLES: &str = "\
Examples:
  plugwire check --cookie BASIC_PLUGIN=hello -- ./kv-go-plugin
  plugwire check --preset terraform --json -- ./terraform-provider-random > report.json
  plugwire check --only cookie,negotiation --cookie BASIC_PLUGIN=hello --versions 1,2 -- ./my-plugin

Checks: cookie, negotiation, handshake-line, socket, health, reflection, shutdown, stdio, logs,
auto-mtls-cert, auto-mtls-client-auth, multiplex-field, broker, host-gone, sigint.
Each prints pass, fail, deviation (what go-plugin itself does, documented) or n/a, with the
reason and what go-plugin expects. The exit status is 1 when any check fails.";

/// How to launch the plugin: what its host would send it.
#[derive(Debug, Clone, Args)]
pub(crate) struct HandshakeArgs {
    /// A well-known ecosystem's handshake (cookie, versions, AutoMTLS); see `plugwire presets`.
    #[arg(long, value_name = "NAME")]
    pub(crate) preset: Option<String>,
    /// The magic cookie the plugin expects (its go-plugin HandshakeConfig).
    #[arg(long, value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub(crate) cookie: Option<(String, String)>,
    /// The app-protocol versions to offer, comma-separated [default: the preset's, else 1].
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    pub(crate) versions: Option<Vec<u32>>,
    /// Turn go-plugin's AutoMTLS on (Terraform, Vault and Boundary do).
    #[arg(long, conflicts_with = "no_auto_mtls")]
    pub(crate) auto_mtls: bool,
    /// Turn AutoMTLS off, even when the preset turns it on.
    #[arg(long)]
    pub(crate) no_auto_mtls: bool,
    /// Ask for gRPC broker multiplexing (PLUGIN_MULTIPLEX_GRPC=true).
    #[arg(long)]
    pub(crate) mux: bool,
    /// How long the plugin has to print its handshake line.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = humantime::parse_duration)]
    pub(crate) timeout: Duration,
    /// An environment variable for the plugin (repeatable).
    #[arg(long = "env", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub(crate) env: Vec<(String, String)>,
    /// The plugin's working directory.
    #[arg(short = 'C', long = "dir", value_name = "DIR")]
    pub(crate) dir: Option<PathBuf>,
}

/// `plugwire inspect`.
#[derive(Debug, Args)]
pub(crate) struct InspectArgs {
    #[command(flatten)]
    pub(crate) handshake: HandshakeArgs,
    /// Print the report as JSON.
    #[arg(long)]
    pub(crate) json: bool,
    /// The plugin's command and arguments.
    #[arg(
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "COMMAND"
    )]
    pub(crate) command: Vec<OsString>,
}

/// How requests and replies are read and written.
#[derive(Debug, Clone, Args)]
pub(crate) struct CallOptions {
    /// A .proto file with the service (instead of reflection); repeatable. Compiled in-process,
    /// no protoc needed.
    #[arg(long, value_name = "FILE")]
    pub(crate) proto: Vec<PathBuf>,
    /// Where the .proto files' imports are found (default: their own directories); repeatable.
    #[arg(short = 'I', long = "import-path", value_name = "DIR")]
    pub(crate) import_path: Vec<PathBuf>,
    /// Print fields that hold their default value too.
    #[arg(long)]
    pub(crate) emit_defaults: bool,
    /// The deadline of the call (a stream included).
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub(crate) call_timeout: Option<Duration>,
}

/// `plugwire call`.
#[derive(Debug, Args)]
pub(crate) struct CallArgs {
    #[command(flatten)]
    pub(crate) handshake: HandshakeArgs,
    #[command(flatten)]
    pub(crate) options: CallOptions,
    /// The plugin's command and arguments, then the method (package.Service/Method), then the
    /// request as JSON (default `{}`; `-` for stdin, `@FILE` for a file).
    #[arg(
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "COMMAND... METHOD [JSON]"
    )]
    pub(crate) args: Vec<OsString>,
}

/// `plugwire reattach`.
#[derive(Debug, Args)]
pub(crate) struct ReattachArgs {
    /// Read the configuration from this environment variable (e.g. TF_REATTACH_PROVIDERS).
    #[arg(long, value_name = "VAR")]
    pub(crate) from_env: Option<String>,
    /// Which plugin of a map (`{"name": {...}, ...}`) to attach to.
    #[arg(long, value_name = "NAME")]
    pub(crate) name: Option<String>,
    /// Print the report as JSON.
    #[arg(long)]
    pub(crate) json: bool,
    #[command(flatten)]
    pub(crate) options: CallOptions,
    /// The reattach configuration as JSON (unless --from-env), then optionally a method to call
    /// and its request as JSON.
    #[arg(value_name = "CONFIG [METHOD [JSON]]")]
    pub(crate) args: Vec<String>,
}

/// `plugwire check`.
#[derive(Debug, Args)]
pub(crate) struct CheckArgs {
    #[command(flatten)]
    pub(crate) handshake: HandshakeArgs,
    /// Print the results as JSON.
    #[arg(long)]
    pub(crate) json: bool,
    /// Run only these checks (comma-separated names).
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    pub(crate) only: Vec<String>,
    /// Skip these checks (comma-separated names).
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    pub(crate) skip: Vec<String>,
    /// The longest one check may take, its runs of the plugin included.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = humantime::parse_duration)]
    pub(crate) check_timeout: Duration,
    /// The plugin's command and arguments.
    #[arg(
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "COMMAND"
    )]
    pub(crate) command: Vec<OsString>,
}

/// `plugwire presets`.
#[derive(Debug, Args)]
pub(crate) struct PresetsArgs {
    /// Print them as JSON.
    #[arg(long)]
    pub(crate) json: bool,
}

fn parse_key_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.to_owned())),
        _ => Err(format!("expected KEY=VALUE, got {s:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory as _;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn options_before_the_command_and_the_command_after_them() {
        let cli = Cli::try_parse_from([
            "plugwire",
            "inspect",
            "--cookie",
            "BASIC_PLUGIN=hello",
            "--versions",
            "5,6",
            "--",
            "./plugin",
            "--flag",
        ])
        .expect("parses");
        let Command::Inspect(args) = cli.command else {
            panic!("inspect expected");
        };
        assert_eq!(
            args.handshake.cookie,
            Some(("BASIC_PLUGIN".into(), "hello".into()))
        );
        assert_eq!(args.handshake.versions, Some(vec![5, 6]));
        assert_eq!(
            args.command,
            vec![OsString::from("./plugin"), "--flag".into()]
        );
        assert!(parse_key_value("novalue").is_err());
        assert_eq!(parse_key_value("K=a=b"), Ok(("K".into(), "a=b".into())));
    }
}

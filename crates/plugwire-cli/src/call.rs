//! `plugwire call`: launch a plugin, call one method with JSON, print the reply as JSON, shut
//! the plugin down.

use std::ffi::OsString;
use std::io::Write as _;
use std::process::ExitCode;

use futures_util::StreamExt as _;
use plugwire_host::Plugin;
use prost_reflect::DescriptorPool;
use serde_json::Value;
use tonic::transport::Channel;

use crate::app::App;
use crate::capture::StderrCapture;
use crate::cli::{CallArgs, CallOptions};
use crate::diagnose;
use crate::dyncall::call::{CallError, DynamicClient};
use crate::dyncall::json::JsonOptions;
use crate::dyncall::reflection::{ReflectionClient, ReflectionError};
use crate::dyncall::{StatusError, lookup, proto};
use crate::error::CliError;
use crate::launch::{Handshake, PluginCommand, UsageError};

/// Runs `plugwire call`.
pub(crate) async fn run(args: CallArgs, app: &App) -> Result<ExitCode, CliError> {
    let (words, method, json) = split_words(&args.args)?;
    let requests = read_requests(json.as_deref()).await?;
    let mut command = PluginCommand::new(&words, args.handshake.dir.clone())?;
    let handshake = Handshake::resolve(&args.handshake, &mut command).await?;
    let stderr = StderrCapture::default();
    // The plugin's own output goes to stderr: stdout carries the replies.
    let config = handshake
        .builder(&command, &stderr)
        .sync_stdout(std::io::stderr())
        .sync_stderr(std::io::stderr())
        .build();
    let plugin = match Plugin::launch(config).await {
        Ok(plugin) => plugin,
        Err(error) => {
            let diagnosis = diagnose::explain(error, &command, &handshake, &stderr).await;
            crate::inspect::render::diagnosis(
                &mut std::io::stderr().lock(),
                &diagnosis,
                app.err_style,
            )?;
            return Ok(ExitCode::FAILURE);
        }
    };
    let outcome = match plugin.channel() {
        Ok(channel) => call(channel, &args.options, &method, requests).await,
        Err(e) => Err(CallFailure::Other(CliError::Request(format!(
            "{e}: a netrpc plugin's methods take Go values (gob), which plugwire cannot make \
             from JSON"
        )))),
    };
    plugin.kill().await;
    finish(outcome, app)
}

/// Prints what a call ended with; the exit code: 0, 64 + the gRPC code, or an error.
pub(crate) fn finish(outcome: Result<(), CallFailure>, app: &App) -> Result<ExitCode, CliError> {
    match outcome {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(CallFailure::Status(status)) => {
            let style = app.err_style;
            writeln!(
                std::io::stderr().lock(),
                "{}\n  Code: {}\n  Message: {}",
                style.red("ERROR:"),
                status.code_name(),
                status.message()
            )?;
            if status.code() == tonic::Code::Internal
                && status.message().starts_with("Missing response message")
            {
                writeln!(
                    std::io::stderr().lock(),
                    "  Note: the plugin ended the call with status OK but sent no reply message \
                     (go-plugin's streaming example does so in Write; its Go host ignores the \
                     missing reply)"
                )?;
            }
            let code = u8::try_from(i32::from(status.code())).unwrap_or(2);
            Ok(ExitCode::from(64u8.saturating_add(code)))
        }
        Err(CallFailure::Other(error)) => Err(error),
    }
}

/// Why a call did not succeed.
#[derive(Debug)]
pub(crate) enum CallFailure {
    /// The plugin (or the deadline) answered with a gRPC status.
    Status(StatusError),
    /// Anything else: no such method, no descriptors, a bad request, a broken connection.
    Other(CliError),
}

impl<E: Into<CliError>> From<E> for CallFailure {
    fn from(error: E) -> Self {
        CallFailure::Other(error.into())
    }
}

/// Finds `method`'s descriptors (reflection, or `--proto`), calls it with `requests`, and
/// prints the replies: a unary reply as indented JSON, a stream one JSON object per line.
pub(crate) async fn call(
    channel: Channel,
    options: &CallOptions,
    method: &str,
    requests: Vec<Value>,
) -> Result<(), CallFailure> {
    let pool = descriptors(channel.clone(), options, method).await?;
    let method = lookup::find_method(&pool, method)?;
    let streaming = method.is_server_streaming();
    let mut client = DynamicClient::new(channel).with_options(crate::dyncall::call::CallOptions {
        timeout: options.call_timeout,
        metadata: tonic::metadata::MetadataMap::new(),
        json: JsonOptions {
            emit_defaults: options.emit_defaults,
            ..JsonOptions::default()
        },
    });
    let mut replies = match client
        .call(&method, futures_util::stream::iter(requests))
        .await
    {
        Ok(replies) => replies,
        Err(CallError::Status(status)) => return Err(CallFailure::Status(status)),
        Err(error) => return Err(error.into()),
    };
    while let Some(reply) = replies.next().await {
        match reply {
            Ok(value) => print_reply(&value, streaming)?,
            Err(CallError::Status(status)) => return Err(CallFailure::Status(status)),
            Err(error) => return Err(error.into()),
        }
    }
    Ok(())
}

fn print_reply(value: &Value, streaming: bool) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    if streaming {
        serde_json::to_writer(&mut out, value)?;
    } else {
        serde_json::to_writer_pretty(&mut out, value)?;
    }
    writeln!(out)?;
    out.flush()
}

/// The descriptors of the method's service: compiled from `--proto`, else by reflection.
async fn descriptors(
    channel: Channel,
    options: &CallOptions,
    method: &str,
) -> Result<DescriptorPool, CliError> {
    if !options.proto.is_empty() {
        return Ok(proto::compile(&options.proto, &options.import_path)?);
    }
    let service = lookup::parse_method(method)?.service.to_owned();
    let mut client = ReflectionClient::new(channel);
    client.descriptors(&service).await.map_err(|error| {
        let hint = match &error {
            ReflectionError::Unsupported => "",
            ReflectionError::SymbolNotFound { .. } => " (check the name with `plugwire inspect`)",
            _ => " (give its .proto file with --proto instead)",
        };
        CliError::Reflection { error, hint }
    })
}

/// Splits `COMMAND... METHOD [JSON]`.
fn split_words(words: &[OsString]) -> Result<(Vec<OsString>, String, Option<String>), UsageError> {
    let text = |w: &OsString| w.to_string_lossy().into_owned();
    let is_json =
        |w: &str| w.starts_with('{') || w.starts_with('[') || w == "-" || w.starts_with('@');
    let (json, rest) = match words.split_last() {
        Some((last, rest)) if is_json(&text(last)) => (Some(text(last)), rest),
        _ => (None, words),
    };
    let Some((method, command)) = rest.split_last() else {
        return Err(UsageError::Other(
            "give the plugin command, then the method (package.Service/Method), then the \
             request JSON"
                .into(),
        ));
    };
    let method = text(method);
    if lookup::parse_method(&method).is_err() {
        return Err(UsageError::Other(format!(
            "{method:?} is not a method name: after the plugin command comes the method, \
             package.Service/Method (e.g. proto.KV/Get), then the request JSON"
        )));
    }
    if command.is_empty() {
        return Err(UsageError::NoCommand);
    }
    Ok((command.to_vec(), method, json))
}

/// The request messages: `{}` by default, the JSON values of the argument, of stdin (`-`) or
/// of a file (`@FILE`).
pub(crate) async fn read_requests(json: Option<&str>) -> Result<Vec<Value>, CliError> {
    let text = match json {
        None => return Ok(vec![Value::Object(serde_json::Map::new())]),
        Some("-") => blocking(|| std::io::read_to_string(std::io::stdin())).await?,
        Some(file) if file.starts_with('@') => {
            let path = file[1..].to_owned();
            let read = {
                let path = path.clone();
                blocking(move || std::fs::read_to_string(path)).await
            };
            read.map_err(|e| {
                CliError::Request(format!("cannot read the request file {path}: {e}"))
            })?
        }
        Some(text) => text.to_owned(),
    };
    parse_requests(&text)
}

fn parse_requests(text: &str) -> Result<Vec<Value>, CliError> {
    let values: Result<Vec<Value>, _> = serde_json::Deserializer::from_str(text)
        .into_iter::<Value>()
        .collect();
    let values =
        values.map_err(|e| CliError::Request(format!("the request is not valid JSON: {e}")))?;
    if values.is_empty() {
        return Err(CliError::Request(
            "no request message: give one JSON object ({} for an empty request)".into(),
        ));
    }
    Ok(values)
}

/// Runs blocking I/O on a thread of tokio's blocking pool.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> std::io::Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(words: &[&str]) -> Vec<OsString> {
        words.iter().map(OsString::from).collect()
    }

    #[test]
    fn command_method_and_json_are_told_apart() {
        let (command, method, json) =
            split_words(&words(&["./kv", "--x", "proto.KV/Get", r#"{"key":"a"}"#])).expect("ok");
        assert_eq!(command, words(&["./kv", "--x"]));
        assert_eq!(method, "proto.KV/Get");
        assert_eq!(json.as_deref(), Some(r#"{"key":"a"}"#));
        let (command, method, json) =
            split_words(&words(&["/opt/bin/kv", "proto.KV.Get"])).expect("ok");
        assert_eq!(
            (command.len(), method.as_str(), json),
            (1, "proto.KV.Get", None)
        );
        assert!(
            split_words(&words(&["proto.KV/Get", "{}"])).is_err(),
            "no command"
        );
        assert!(
            split_words(&words(&["./kv", "./other"])).is_err(),
            "no method"
        );
    }

    #[tokio::test]
    async fn requests_are_json_values() {
        assert_eq!(
            read_requests(None).await.expect("default"),
            vec![serde_json::json!({})]
        );
        assert_eq!(
            read_requests(Some(r#"{"a":1} {"a":2}"#))
                .await
                .expect("two")
                .len(),
            2
        );
        assert!(read_requests(Some("{")).await.is_err());
        assert!(parse_requests("  ").is_err());
    }
}

//! The plugin's unix socket: who may connect to it, and that it is gone after a graceful exit.

use std::os::unix::fs::{FileTypeExt as _, MetadataExt as _};
use std::time::Duration;

use plugwire_protocol::{Address, Protocol};

use crate::check::channel;
use crate::check::context::{ANSWER_TIMEOUT, Ctx};
use crate::check::outcome::Outcome;
use crate::diagnose::describe_status;
use crate::goplugin;

/// How long after `Shutdown` the plugin may take to exit (go-plugin's 2 s, and a margin).
const EXIT_WAIT: Duration = Duration::from_secs(3);

/// A unix socket only this user can connect to, removed on exit.
pub(crate) async fn socket(ctx: &Ctx) -> Outcome {
    let mut started = match ctx.start_line(&ctx.spec.env()).await {
        Ok(started) => started,
        Err(outcome) => return outcome,
    };
    let address = Address::new(started.line.network, &started.line.address);
    let Address::Unix(path) = &address else {
        started.session.kill().await;
        return Outcome::not_applicable(format!(
            "it listens on TCP ({address}), as go-plugin does on Windows only"
        ));
    };
    let mut notes = Vec::new();
    let meta = match tokio::fs::symlink_metadata(path).await {
        Ok(meta) => meta,
        Err(e) => {
            started.session.kill().await;
            return Outcome::fail(format!("its socket {} is not there: {e}", path.display()));
        }
    };
    if !meta.file_type().is_socket() {
        started.session.kill().await;
        return Outcome::fail(format!("{} is not a socket", path.display()));
    }
    let mode = meta.mode() & 0o777;
    let uid = nix::unistd::getuid().as_raw();
    if meta.uid() != uid {
        started.session.kill().await;
        return Outcome::fail(format!(
            "its socket belongs to uid {}, not to this user ({uid})",
            meta.uid()
        ));
    }
    if mode & 0o022 != 0 {
        started.session.kill().await;
        let who = if mode & 0o002 != 0 {
            "every user"
        } else {
            "its group"
        };
        return Outcome::fail(format!(
            "its socket {} has mode {mode:o}: {who} may connect to it (connecting takes write \
             permission); go-plugin leaves bind()'s 0777 minus the umask (0755 here), and grants \
             a group access only when the host sets PLUGIN_UNIX_SOCKET_GROUP",
            path.display()
        ));
    }
    if path.parent() != Some(started.session.tmpdir()) {
        notes.push(format!(
            "it is not in $TMPDIR ({}), where go-plugin creates it",
            started.session.tmpdir().display()
        ));
    }
    let created = format!("{} (mode {mode:o})", path.display());
    if started.line.protocol != Protocol::Grpc {
        started.session.kill().await;
        return Outcome::pass(format!(
            "{created} only this user can reach; its removal was not checked (a netrpc plugin's \
             graceful stop is a net/rpc call)"
        ))
        .notes(notes);
    }
    let stopped = match channel::connect(&address, None, ANSWER_TIMEOUT).await {
        Ok(channel) => {
            let _ = tokio::time::timeout(ANSWER_TIMEOUT, goplugin::shutdown(channel)).await;
            started.session.wait(EXIT_WAIT).await
        }
        Err(_) => None,
    };
    let Some(status) = stopped else {
        started.session.kill().await;
        return Outcome::pass(format!(
            "{created} only this user can reach; its removal was not checked: the plugin did not \
             exit after GRPCController/Shutdown (see the shutdown check)"
        ))
        .notes(notes);
    };
    if tokio::fs::symlink_metadata(path).await.is_ok() {
        started.session.kill().await;
        return Outcome::fail(format!(
            "it exited ({}) after Shutdown but left its socket file {} behind; go-plugin removes \
             it when its listener closes",
            describe_status(status),
            path.display()
        ))
        .notes(notes);
    }
    started.session.kill().await;
    Outcome::pass(format!(
        "{created} only this user can reach, removed when it exited after Shutdown"
    ))
    .notes(notes)
}

//! The start of a netrpc connection (go-plugin's `NewRPCClient` and `RPCServer.ServeConn`): a
//! yamux session whose first three streams are control, stdout and stderr, then the broker.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use plugwire_protocol::gob::Limits;

use super::broker::MuxBroker;
use super::guarded::Guarded;
use crate::transport::BoxedIo;
use crate::yamux::{self, Stream};

/// How long the plugin waits for the host's three streams once it connected (a Go host opens
/// them at once; go-plugin waits forever).
const STREAMS_TIMEOUT: Duration = Duration::from_secs(10);

/// The host's end of a netrpc connection.
pub struct HostSession {
    /// The net/rpc client of the plugin's `Control` and `Dispenser` services.
    pub control: go_netrpc::Client,
    /// The plugin's stdout (what it writes to `os.Stdout`).
    pub stdout: Stream,
    /// The plugin's stderr (what it writes to `os.Stderr`).
    pub stderr: Stream,
    /// The broker of further streams.
    pub broker: MuxBroker,
    /// The session, to close it or wait for its end.
    pub session: yamux::Control,
}

impl std::fmt::Debug for HostSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostSession")
            .field("broker", &self.broker)
            .finish_non_exhaustive()
    }
}

/// Starts the host's end on a connection (TLS already done, if any): yamux client, then the
/// control, stdout and stderr streams announced at once and in that order (a Go plugin tells
/// them apart by their order), then the broker.
///
/// # Errors
///
/// The session could not start or open its streams.
pub async fn connect(io: BoxedIo, limits: Limits) -> Result<HostSession, yamux::Error> {
    let session = yamux::Session::client(io, yamux::Config::default())?;
    let control = session.control();
    let ctl = control.open().await?;
    let stdout = control.open().await?;
    let stderr = control.open().await?;
    // Whatever the plugin opens is a broker stream.
    let broker = MuxBroker::start(session, limits.clone());
    Ok(HostSession {
        control: go_netrpc::Client::new(Guarded::new(ctl, limits)),
        stdout,
        stderr,
        broker,
        session: control,
    })
}

/// The plugin's end of a netrpc connection, once the host's streams are accepted.
#[derive(Debug)]
pub struct PluginSession {
    /// Where the host calls `Control` and `Dispenser`.
    pub control: Stream,
    /// Where the plugin's stdout goes.
    pub stdout: Stream,
    /// Where the plugin's stderr goes.
    pub stderr: Stream,
    /// The broker of further streams.
    pub broker: MuxBroker,
    /// The session, to close it or wait for its end.
    pub session: yamux::Control,
}

/// Starts the plugin's end on an accepted connection (TLS already done, if any): yamux server,
/// then the host's control, stdout and stderr streams, then the broker.
///
/// # Errors
///
/// The session could not start, ended, or the host did not open its three streams within 10 s.
pub async fn accept(io: BoxedIo, limits: Limits) -> io::Result<PluginSession> {
    let mut session = yamux::Session::server(io, yamux::Config::default()).map_err(to_io)?;
    let control = session.control();
    let streams = async {
        let ctl = session.accept().await?;
        let stdout = session.accept().await?;
        let stderr = session.accept().await?;
        Ok::<_, yamux::Error>((ctl, stdout, stderr))
    };
    let (ctl, stdout, stderr) = tokio::time::timeout(STREAMS_TIMEOUT, streams)
        .await
        .map_err(|_| {
            io::Error::new(
                io::ErrorKind::TimedOut,
                "the host did not open the control, stdout and stderr streams within 10 s",
            )
        })?
        .map_err(to_io)?;
    Ok(PluginSession {
        control: ctl,
        stdout,
        stderr,
        broker: MuxBroker::start(session, limits),
        session: control,
    })
}

fn to_io(e: yamux::Error) -> io::Error {
    io::Error::other(e)
}

/// What a plugin's `Dispenser.Dispense(name)` does: the net/rpc server of plugin `name`, made for
/// this connection's broker, or the error to answer with.
pub type Dispense =
    Arc<dyn Fn(&str, &MuxBroker) -> Result<Arc<go_netrpc::Server>, String> + Send + Sync>;

/// The `Control` and `Dispenser` services of one connection (go-plugin's `controlServer` and
/// `dispenseServer`). `Control.Quit` replies once `quit` has run (it stops the plugin). Each
/// dispensed plugin is served on a new broker id, accepted in the background, until the
/// connection or the broker ends.
pub fn control_server<Q, F>(broker: &MuxBroker, dispense: Dispense, quit: Q) -> go_netrpc::Server
where
    Q: Fn() -> F + Send + Sync + 'static,
    F: Future<Output = ()> + Send + 'static,
{
    let mut server = go_netrpc::Server::new();
    server.register("Control.Ping", |_: bool| async {
        Ok::<_, go_netrpc::ServiceError>(go_netrpc::InvalidRequest {})
    });
    server.register("Control.Quit", move |_: bool| {
        let quitting = quit();
        async move {
            quitting.await;
            Ok::<_, go_netrpc::ServiceError>(go_netrpc::InvalidRequest {})
        }
    });
    let broker = broker.clone();
    server.register("Dispenser.Dispense", move |name: String| {
        let made = dispense(&name, &broker);
        let broker = broker.clone();
        async move {
            let server = made.map_err(go_netrpc::ServiceError)?;
            let id = broker.next_id();
            tokio::spawn(async move {
                if let Err(e) = broker.accept_and_serve(id, server).await {
                    tracing::error!(plugin = %name, error = %e, "plugin dispense error");
                }
            });
            Ok::<_, go_netrpc::ServiceError>(id)
        }
    });
    server
}

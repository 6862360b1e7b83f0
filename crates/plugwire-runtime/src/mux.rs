//! go-plugin's gRPC broker multiplexing (`PLUGIN_MULTIPLEX_GRPC`, go-plugin ≥ 1.6): one yamux
//! session over the single plugin connection, the host as yamux client and the plugin as yamux
//! server. Every gRPC connection, the main one and each brokered one, is a yamux stream; TLS, when
//! on, runs inside each stream.
//!
//! The session is [`crate::yamux`]'s, with hashicorp's defaults (256 KiB windows, backlog 256,
//! 30 s keepalive, 10 s write timeout).

use std::collections::{HashMap, VecDeque};
use std::io;
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;

use plugwire_protocol::broker::Role;

use crate::transport::{self, BoxedIo};
use crate::yamux;

/// Where inbound streams go: to the listener of the next knocked id, else to the default
/// listener (the plugin's main gRPC server), else nowhere (a host has no default).
#[derive(Default)]
pub(crate) struct Router {
    knocked: VecDeque<u32>,
    listeners: HashMap<u32, mpsc::Sender<io::Result<BoxedIo>>>,
    default: Option<mpsc::Sender<io::Result<BoxedIo>>>,
    tls: Option<Arc<rustls::ServerConfig>>,
}

impl Router {
    pub(crate) fn new(tls: Option<Arc<rustls::ServerConfig>>) -> Self {
        Router {
            tls,
            ..Router::default()
        }
    }

    /// The next un-knocked stream goes to `incoming` (the plugin's main server).
    pub(crate) fn set_default(&mut self, incoming: mpsc::Sender<io::Result<BoxedIo>>) {
        self.default = Some(incoming);
    }

    /// Streams for `id` go to `incoming` once knocked.
    pub(crate) fn listen(&mut self, id: u32, incoming: mpsc::Sender<io::Result<BoxedIo>>) {
        self.listeners.insert(id, incoming);
    }

    /// Stops routing to `id`.
    pub(crate) fn unlisten(&mut self, id: u32) {
        self.listeners.remove(&id);
        self.knocked.retain(|k| *k != id);
    }

    /// The next inbound stream belongs to `id` (a knock was accepted).
    pub(crate) fn open_door(&mut self, id: u32) {
        self.knocked.push_back(id);
    }

    fn route(&mut self, stream: BoxedIo) {
        let target = match self.knocked.pop_front() {
            Some(id) => {
                tracing::debug!(id, "sending stream to brokered listener");
                self.listeners.get(&id).cloned()
            }
            None => self.default.clone(),
        };
        match target {
            Some(tx) => transport::forward(stream, self.tls.clone(), tx),
            None => tracing::debug!("dropped a multiplexed stream nobody knocked for"),
        }
    }
}

/// A running yamux session.
pub(crate) struct MuxSession {
    control: yamux::Control,
    driver: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for MuxSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MuxSession").finish_non_exhaustive()
    }
}

impl MuxSession {
    /// Runs a yamux session on `io`; inbound streams are routed by `router`.
    pub(crate) fn start(io: BoxedIo, role: Role, router: Arc<Mutex<Router>>) -> io::Result<Self> {
        let config = yamux::Config::default();
        let session = match role {
            Role::Host => yamux::Session::client(io, config),
            Role::Plugin => yamux::Session::server(io, config),
        };
        let mut session = session.map_err(io::Error::other)?;
        let control = session.control();
        let driver = tokio::spawn(async move {
            loop {
                match session.accept().await {
                    Ok(stream) => {
                        if let Ok(mut router) = router.lock() {
                            router.route(BoxedIo::new(stream));
                        }
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "yamux session ended");
                        break;
                    }
                }
            }
        });
        Ok(MuxSession { control, driver })
    }

    /// Opens a new stream (announced to the peer at once).
    pub(crate) async fn open(&self) -> io::Result<BoxedIo> {
        self.control
            .open()
            .await
            .map(BoxedIo::new)
            .map_err(|e| io::Error::other(format!("error dialling new multiplexed stream: {e}")))
    }
}

impl Drop for MuxSession {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

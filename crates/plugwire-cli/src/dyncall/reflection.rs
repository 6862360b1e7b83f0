//! Descriptors from the server itself, over the gRPC server reflection protocol.
//!
//! `grpc.reflection.v1` is tried first, then `grpc.reflection.v1alpha` (older grpc-go and
//! go-plugin releases serve only that one); both have the same messages, so one implementation
//! serves both. A [`ReflectionClient`] keeps one reflection stream open and every file it has
//! received, which matters for two reasons:
//!
//! - grpc-go answers `FileContainingSymbol` with the file *and its dependencies*, but sends each
//!   file only once per stream: a later answer leaves out what the stream already carried.
//! - tonic-reflection answers with the file only, so the dependencies are asked for by name
//!   (`FileByFilename`) until the set is complete; and it ends the whole stream on an error (a
//!   name it does not know), where grpc-go answers in-stream. A stream that ended is reopened.
//!
//! Files under `google/protobuf/` that the server did not send are taken from the descriptors
//! bundled with prost-reflect, without asking: servers register those or not (tonic-reflection
//! serves only what the plugin registered), and they are the same everywhere.
//!
//! Everything is bounded by [`Limits`]: each exchange by a timeout, each answer by size, the
//! files by number and total size.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use http::uri::PathAndQuery;
use prost::Message as _;
use prost_reflect::{DescriptorError, DescriptorPool};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::client::Grpc;
use tonic::transport::Channel;
use tonic::{Code, Request, Status, Streaming};
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
use tonic_reflection::pb::v1::{ServerReflectionRequest, ServerReflectionResponse};

use super::StatusError;

/// Bounds on a reflection session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limits {
    /// The longest one request may wait for its answer (opening the stream included).
    pub(crate) timeout: Duration,
    /// The most files a session keeps.
    pub(crate) max_files: usize,
    /// The largest answer message accepted.
    pub(crate) max_answer_bytes: usize,
    /// The most bytes of descriptors a session keeps, all files together.
    pub(crate) max_total_bytes: usize,
}

impl Default for Limits {
    /// 10 s a request; 1024 files of 64 MiB in all, in answers of at most 16 MiB.
    fn default() -> Self {
        Limits {
            timeout: Duration::from_secs(10),
            max_files: 1024,
            max_answer_bytes: 16 << 20,
            max_total_bytes: 64 << 20,
        }
    }
}

/// Why descriptors could not be had by reflection.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ReflectionError {
    /// The server serves neither reflection version.
    #[error(
        "the server does not support gRPC reflection (neither grpc.reflection.v1 nor v1alpha); \
         give its .proto files instead"
    )]
    Unsupported,
    /// The server knows no file that defines the symbol.
    #[error("the server has no descriptor for {symbol}: {status}")]
    SymbolNotFound {
        /// The symbol asked for.
        symbol: String,
        /// The server's answer.
        status: StatusError,
    },
    /// A file imports one the server does not have.
    #[error("{file} imports {dependency}, which the server does not have: {status}")]
    MissingDependency {
        /// The importing file.
        file: String,
        /// The file it imports.
        dependency: String,
        /// The server's answer.
        status: StatusError,
    },
    /// The server answered a request with an error.
    #[error("reflection request for {request} failed: {status}")]
    Failed {
        /// What was asked.
        request: String,
        /// The server's answer.
        status: StatusError,
    },
    /// No answer in time ([`Limits::timeout`]).
    #[error("no reflection answer for {request} within {timeout:?}")]
    Timeout {
        /// What was asked.
        request: String,
        /// The limit.
        timeout: Duration,
    },
    /// More files or bytes than [`Limits`] allow.
    #[error("the descriptors exceed the limit of {limit}")]
    TooLarge {
        /// Which limit, e.g. `1024 files`.
        limit: String,
    },
    /// The server broke the protocol: an answer of the wrong kind, a stream that ended early.
    #[error("unexpected reflection answer for {request}: {problem}")]
    Protocol {
        /// What was asked.
        request: String,
        /// What went wrong.
        problem: String,
    },
    /// A file descriptor the server sent does not decode.
    #[error("the server sent an invalid file descriptor: {0}")]
    Decode(#[from] prost::DecodeError),
    /// The files do not form a consistent set (a type they use is defined nowhere, ...).
    #[error("the server's descriptors are inconsistent: {0}")]
    Descriptor(#[from] DescriptorError),
    /// The channel could not connect.
    #[error("cannot reach the server: {0}")]
    Transport(#[source] tonic::transport::Error),
}

/// The two versions of the protocol, wire-identical but for the service name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Version {
    V1,
    V1Alpha,
}

impl Version {
    fn path(self) -> PathAndQuery {
        PathAndQuery::from_static(match self {
            Version::V1 => "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
            Version::V1Alpha => "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
        })
    }
}

/// An open reflection stream.
struct Session {
    version: Version,
    requests: mpsc::Sender<ServerReflectionRequest>,
    answers: Streaming<ServerReflectionResponse>,
}

/// A file received, with the names of the files it imports.
#[derive(Debug)]
struct File {
    encoded: Vec<u8>,
    dependencies: Vec<String>,
}

/// Just the parts of a `FileDescriptorProto` that resolving imports needs.
#[derive(Clone, PartialEq, prost::Message)]
struct FileHeader {
    #[prost(string, optional, tag = "1")]
    name: Option<String>,
    #[prost(string, repeated, tag = "3")]
    dependency: Vec<String>,
}

/// A reflection client of one server, keeping its stream and the files received across calls.
pub(crate) struct ReflectionClient {
    channel: Channel,
    limits: Limits,
    /// The version the server answered on, once known.
    version: Option<Version>,
    session: Option<Session>,
    files: BTreeMap<String, File>,
    total_bytes: usize,
}

impl std::fmt::Debug for ReflectionClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReflectionClient")
            .field("limits", &self.limits)
            .field("version", &self.version)
            .field("files", &self.files.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl ReflectionClient {
    /// A client with the default [`Limits`].
    pub(crate) fn new(channel: Channel) -> Self {
        ReflectionClient {
            channel,
            limits: Limits::default(),
            version: None,
            session: None,
            files: BTreeMap::new(),
            total_bytes: 0,
        }
    }

    /// The reflection version the server answered on (`v1` or `v1alpha`), once known.
    pub(crate) fn version_name(&self) -> Option<&'static str> {
        self.version.map(|v| match v {
            Version::V1 => "v1",
            Version::V1Alpha => "v1alpha",
        })
    }

    /// Uses only reflection `v1alpha` from now on (or only `v1`), as a client that knows one.
    pub(crate) fn force_version(&mut self, alpha: bool) {
        self.version = Some(if alpha { Version::V1Alpha } else { Version::V1 });
        self.session = None;
    }

    /// The services the server lists, sorted.
    pub(crate) async fn list_services(&mut self) -> Result<Vec<String>, ReflectionError> {
        let request = "the list of services";
        match self
            .ask(MessageRequest::ListServices("*".into()), request)
            .await?
        {
            MessageResponse::ListServicesResponse(list) => {
                let names: BTreeSet<String> = list.service.into_iter().map(|s| s.name).collect();
                Ok(names.into_iter().collect())
            }
            other => Err(unexpected(request, &other)),
        }
    }

    /// The descriptors of the file defining `symbol` and of all it imports, transitively.
    pub(crate) async fn descriptors(
        &mut self,
        symbol: &str,
    ) -> Result<DescriptorPool, ReflectionError> {
        let mut closure = BTreeSet::new();
        self.resolve(symbol, &mut closure).await?;
        self.pool(&closure)
    }

    /// The descriptors of each of several symbols (e.g. every listed service, for an overview),
    /// fetched over one stream, one pool each: a symbol that cannot be resolved does not hide
    /// the others, and files that conflict with each other (go-plugin's examples define
    /// `proto.GetRequest` in two files of one package) stay in separate pools. Limit, timeout,
    /// transport and protocol errors still fail the whole call.
    pub(crate) async fn descriptors_for<'a>(
        &mut self,
        symbols: impl IntoIterator<Item = &'a str>,
    ) -> Result<Vec<(String, Result<DescriptorPool, ReflectionError>)>, ReflectionError> {
        let mut pools = Vec::new();
        for symbol in symbols {
            let mut closure = BTreeSet::new();
            let pool = match self.resolve(symbol, &mut closure).await {
                Ok(()) => self.pool(&closure),
                Err(
                    error @ (ReflectionError::SymbolNotFound { .. }
                    | ReflectionError::MissingDependency { .. }
                    | ReflectionError::Decode(_)),
                ) => Err(error),
                Err(error) => return Err(error),
            };
            pools.push((symbol.to_owned(), pool));
        }
        Ok(pools)
    }

    /// Fetches the file defining `symbol` and its imports; adds their names to `closure`.
    async fn resolve(
        &mut self,
        symbol: &str,
        closure: &mut BTreeSet<String>,
    ) -> Result<(), ReflectionError> {
        let request = format!("the file containing {symbol}");
        let answer = self
            .ask(
                MessageRequest::FileContainingSymbol(symbol.into()),
                &request,
            )
            .await
            .map_err(|error| match error {
                ReflectionError::Failed { status, .. } if status.code() == Code::NotFound => {
                    ReflectionError::SymbolNotFound {
                        symbol: symbol.to_owned(),
                        status,
                    }
                }
                other => other,
            })?;
        let roots = self.keep(&request, answer)?;
        if roots.is_empty() {
            return Err(ReflectionError::Protocol {
                request,
                problem: "no file in the answer".into(),
            });
        }
        // Breadth first over the imports: (file, the file importing it).
        let mut queue: VecDeque<(String, Option<String>)> =
            roots.into_iter().map(|name| (name, None)).collect();
        while let Some((name, importer)) = queue.pop_front() {
            if !closure.insert(name.clone()) {
                continue;
            }
            if !self.files.contains_key(&name) {
                self.fetch(&name, importer.as_deref().unwrap_or(symbol))
                    .await?;
            }
            if let Some(file) = self.files.get(&name) {
                queue.extend(
                    file.dependencies
                        .iter()
                        .map(|dependency| (dependency.clone(), Some(name.clone()))),
                );
            }
        }
        Ok(())
    }

    /// Gets the file `name`, imported by `importer`: bundled if it is a well-known type the
    /// server did not send, else from the server.
    async fn fetch(&mut self, name: &str, importer: &str) -> Result<(), ReflectionError> {
        if let Some(encoded) = bundled(name) {
            let dependencies = FileHeader::decode(encoded.as_slice())?.dependency;
            return self.insert(name.to_owned(), encoded, dependencies);
        }
        let request = format!("the file {name}");
        let answer = self
            .ask(MessageRequest::FileByFilename(name.into()), &request)
            .await
            .map_err(|error| match error {
                ReflectionError::Failed { status, .. } if status.code() == Code::NotFound => {
                    ReflectionError::MissingDependency {
                        file: importer.to_owned(),
                        dependency: name.to_owned(),
                        status,
                    }
                }
                other => other,
            })?;
        self.keep(&request, answer)?;
        if self.files.contains_key(name) {
            Ok(())
        } else {
            Err(ReflectionError::Protocol {
                request,
                problem: format!("the answer does not contain {name}"),
            })
        }
    }

    /// Keeps the files of a `FileDescriptorResponse`; returns their names, in order.
    fn keep(
        &mut self,
        request: &str,
        answer: MessageResponse,
    ) -> Result<Vec<String>, ReflectionError> {
        let MessageResponse::FileDescriptorResponse(files) = answer else {
            return Err(unexpected(request, &answer));
        };
        let mut names = Vec::with_capacity(files.file_descriptor_proto.len());
        for encoded in files.file_descriptor_proto {
            let header = FileHeader::decode(encoded.as_slice())?;
            let Some(name) = header.name.clone().filter(|name| !name.is_empty()) else {
                return Err(ReflectionError::Protocol {
                    request: request.to_owned(),
                    problem: "a file descriptor without a name".into(),
                });
            };
            // A file already kept stays as it was: one name, one file.
            if !self.files.contains_key(&name) {
                self.insert(name.clone(), encoded, header.dependency)?;
            }
            names.push(name);
        }
        Ok(names)
    }

    fn insert(
        &mut self,
        name: String,
        encoded: Vec<u8>,
        dependencies: Vec<String>,
    ) -> Result<(), ReflectionError> {
        if self.files.len() >= self.limits.max_files {
            return Err(ReflectionError::TooLarge {
                limit: format!("{} files", self.limits.max_files),
            });
        }
        let total = self.total_bytes + encoded.len();
        if total > self.limits.max_total_bytes {
            return Err(ReflectionError::TooLarge {
                limit: format!("{} bytes of descriptors", self.limits.max_total_bytes),
            });
        }
        self.total_bytes = total;
        self.files.insert(
            name,
            File {
                encoded,
                dependencies,
            },
        );
        Ok(())
    }

    /// A pool of the named files (all kept).
    fn pool(&self, names: &BTreeSet<String>) -> Result<DescriptorPool, ReflectionError> {
        // An encoded FileDescriptorSet is its files as field 1, each length-delimited: built from
        // the bytes as received, so options the server sent (custom ones included) survive.
        let mut set = Vec::new();
        for file in names.iter().filter_map(|name| self.files.get(name)) {
            prost::encoding::encode_key(1, prost::encoding::WireType::LengthDelimited, &mut set);
            prost::encoding::encode_varint(file.encoded.len() as u64, &mut set);
            set.extend_from_slice(&file.encoded);
        }
        Ok(DescriptorPool::decode(set.as_slice())?)
    }

    /// Sends one request, within the time limit; on v1's `Unimplemented`, tries v1alpha.
    async fn ask(
        &mut self,
        request: MessageRequest,
        what: &str,
    ) -> Result<MessageResponse, ReflectionError> {
        let request = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(request),
        };
        let timeout = self.limits.timeout;
        let exchange = async {
            match self.version {
                Some(version) => self.exchange(version, request, what).await,
                None => match self.exchange(Version::V1, request.clone(), what).await {
                    Err(ReflectionError::Failed { status, .. })
                        if status.code() == Code::Unimplemented =>
                    {
                        match self.exchange(Version::V1Alpha, request, what).await {
                            Err(ReflectionError::Failed { status, .. })
                                if status.code() == Code::Unimplemented =>
                            {
                                Err(ReflectionError::Unsupported)
                            }
                            other => other,
                        }
                    }
                    other => other,
                },
            }
        };
        match tokio::time::timeout(timeout, exchange).await {
            Ok(answer) => answer,
            Err(_) => {
                // The stream may still deliver the late answer: never read it as the next one.
                self.session = None;
                Err(ReflectionError::Timeout {
                    request: what.to_owned(),
                    timeout,
                })
            }
        }
    }

    /// One request and its answer on the open stream of `version`, opening one if needed. A
    /// stream the server ended since its last answer is reopened once.
    async fn exchange(
        &mut self,
        version: Version,
        request: ServerReflectionRequest,
        what: &str,
    ) -> Result<MessageResponse, ReflectionError> {
        let reused = match self.session.take() {
            Some(session) if session.version == version => {
                match session.requests.send(request.clone()).await {
                    Ok(()) => Some(session),
                    Err(_) => None,
                }
            }
            _ => None,
        };
        let (mut session, reused) = match reused {
            Some(session) => (session, true),
            None => (self.open(version, request.clone(), what).await?, false),
        };
        let answer = match session.answers.message().await {
            Ok(Some(answer)) => answer,
            Ok(None) if reused => {
                let mut session = self.open(version, request, what).await?;
                match session.answers.message().await {
                    Ok(Some(answer)) => {
                        self.session = Some(session);
                        return self.answered(version, answer, what);
                    }
                    Ok(None) => return Err(ended(what)),
                    Err(status) => return Err(failed(what, status)),
                }
            }
            Ok(None) => return Err(ended(what)),
            Err(status) => return Err(failed(what, status)),
        };
        self.session = Some(session);
        self.answered(version, answer, what)
    }

    /// Opens a stream whose first request is `first`. (The request goes out before the answer
    /// headers are awaited: a server may send none until it has a request.)
    async fn open(
        &mut self,
        version: Version,
        first: ServerReflectionRequest,
        what: &str,
    ) -> Result<Session, ReflectionError> {
        let (requests, outgoing) = mpsc::channel(4);
        requests.send(first).await.map_err(|_| ended(what))?;
        let mut grpc =
            Grpc::new(self.channel.clone()).max_decoding_message_size(self.limits.max_answer_bytes);
        grpc.ready().await.map_err(ReflectionError::Transport)?;
        let codec =
            tonic_prost::ProstCodec::<ServerReflectionRequest, ServerReflectionResponse>::default();
        let answers = grpc
            .streaming(
                Request::new(ReceiverStream::new(outgoing)),
                version.path(),
                codec,
            )
            .await
            .map_err(|status| failed(what, status))?
            .into_inner();
        Ok(Session {
            version,
            requests,
            answers,
        })
    }

    /// The answer's content; an in-stream error (grpc-go's way) becomes [`ReflectionError::Failed`].
    fn answered(
        &mut self,
        version: Version,
        answer: ServerReflectionResponse,
        what: &str,
    ) -> Result<MessageResponse, ReflectionError> {
        self.version = Some(version);
        match answer.message_response {
            Some(MessageResponse::ErrorResponse(error)) => Err(failed(
                what,
                Status::new(Code::from(error.error_code), error.error_message),
            )),
            Some(answer) => Ok(answer),
            None => Err(ReflectionError::Protocol {
                request: what.to_owned(),
                problem: "an empty answer".into(),
            }),
        }
    }
}

/// The bundled descriptor of a well-known file (`google/protobuf/empty.proto`, ...).
fn bundled(name: &str) -> Option<Vec<u8>> {
    if !name.starts_with("google/protobuf/") {
        return None;
    }
    DescriptorPool::global()
        .get_file_by_name(name)
        .map(|file| file.encode_to_vec())
}

fn failed(what: &str, status: Status) -> ReflectionError {
    ReflectionError::Failed {
        request: what.to_owned(),
        status: status.into(),
    }
}

fn ended(what: &str) -> ReflectionError {
    ReflectionError::Protocol {
        request: what.to_owned(),
        problem: "the server ended the stream without answering".into(),
    }
}

fn unexpected(what: &str, answer: &MessageResponse) -> ReflectionError {
    let kind = match answer {
        MessageResponse::FileDescriptorResponse(_) => "file descriptors",
        MessageResponse::AllExtensionNumbersResponse(_) => "extension numbers",
        MessageResponse::ListServicesResponse(_) => "a service list",
        MessageResponse::ErrorResponse(_) => "an error",
    };
    ReflectionError::Protocol {
        request: what.to_owned(),
        problem: format!("answered with {kind}"),
    }
}

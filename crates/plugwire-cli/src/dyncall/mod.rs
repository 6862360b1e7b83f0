//! Calls any gRPC method of a running plugin dynamically, given only a
//! [`tonic::transport::Channel`] to it.
//!
//! 1. Descriptors: from the plugin itself with [`reflection`] (grpc-go and tonic-reflection
//!    servers alike), or from `.proto` files with [`proto::compile`] (no `protoc` needed).
//! 2. Calls: [`call`] encodes JSON requests into dynamic protobuf messages and decodes the replies
//!    back into JSON (the proto3 JSON mapping, as grpcurl prints it), for every streaming kind.
//!    gRPC errors come back as a [`StatusError`] that prints `code: NotFound, message: ...`.

pub(crate) mod call;
mod codec;
pub(crate) mod json;
pub(crate) mod lookup;
pub(crate) mod proto;
pub(crate) mod reflection;
mod status;

pub(crate) use status::{StatusError, code_name};

/// The largest message a call encodes or decodes: go-plugin's limit (`math.MaxInt32`), where
/// tonic's default refuses replies over 4 MiB.
pub(crate) const MAX_MESSAGE_SIZE: usize = i32::MAX as usize;

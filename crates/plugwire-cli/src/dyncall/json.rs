//! The proto3 JSON mapping between `serde_json` values and dynamic messages.
//!
//! The defaults are the canonical mapping as grpcurl prints it: lowerCamelCase field names (the
//! `json_name` of each field; the proto field name is accepted on input too), 64-bit integers as
//! strings (numbers accepted on input), bytes as base64, enums by name, fields that hold their
//! default value left out, and well-known types in their special forms (a wrapper such as
//! `google.protobuf.StringValue` is a bare JSON string, a `Timestamp` an RFC 3339 string, ...).

use prost_reflect::{DeserializeOptions, DynamicMessage, MessageDescriptor, SerializeOptions};
use serde_json::Value;

/// How messages are written as JSON and read from it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct JsonOptions {
    /// Write fields that hold their default value too (grpcurl's `-emit-defaults`).
    pub(crate) emit_defaults: bool,
    /// Write the proto field names (`snake_case_name`) instead of the JSON names
    /// (`snakeCaseName`).
    pub(crate) proto_field_names: bool,
    /// Write enum values as numbers instead of names.
    pub(crate) enum_numbers: bool,
    /// Skip request fields the message does not have, instead of refusing the request.
    pub(crate) allow_unknown_fields: bool,
}

impl JsonOptions {
    fn serialize(&self) -> SerializeOptions {
        SerializeOptions::new()
            .stringify_64_bit_integers(true)
            .skip_default_fields(!self.emit_defaults)
            .use_proto_field_name(self.proto_field_names)
            .use_enum_numbers(self.enum_numbers)
    }

    fn deserialize(&self) -> DeserializeOptions {
        DeserializeOptions::new().deny_unknown_fields(!self.allow_unknown_fields)
    }
}

/// Reads a message of type `descriptor` from JSON.
pub(crate) fn to_message(
    descriptor: &MessageDescriptor,
    json: &Value,
    options: &JsonOptions,
) -> Result<DynamicMessage, serde_json::Error> {
    DynamicMessage::deserialize_with_options(descriptor.clone(), json, &options.deserialize())
}

/// Writes a message as JSON.
pub(crate) fn to_json(
    message: &DynamicMessage,
    options: &JsonOptions,
) -> Result<Value, serde_json::Error> {
    message.serialize_with_options(serde_json::value::Serializer, &options.serialize())
}

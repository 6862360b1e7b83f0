//! A tonic codec for messages known only at run time.

use prost::Message as _;
use prost_reflect::{DynamicMessage, MessageDescriptor};
use tonic::Status;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};

/// What a call sends: a message, or the reason to abort the call instead (a request stream item
/// that was not valid JSON for the method). An error makes tonic reset the HTTP/2 stream, so the
/// server never sees a half-sent client stream end as if it were complete.
pub(crate) type Outgoing = Result<DynamicMessage, Status>;

/// Encodes [`Outgoing`] messages, decodes replies as `response` messages.
#[derive(Debug, Clone)]
pub(crate) struct DynamicCodec {
    response: MessageDescriptor,
}

impl DynamicCodec {
    pub(crate) fn new(response: MessageDescriptor) -> Self {
        DynamicCodec { response }
    }
}

impl Codec for DynamicCodec {
    type Encode = Outgoing;
    type Decode = DynamicMessage;
    type Encoder = DynamicEncoder;
    type Decoder = DynamicDecoder;

    fn encoder(&mut self) -> DynamicEncoder {
        DynamicEncoder
    }

    fn decoder(&mut self) -> DynamicDecoder {
        DynamicDecoder {
            response: self.response.clone(),
        }
    }
}

#[derive(Debug)]
pub(crate) struct DynamicEncoder;

impl Encoder for DynamicEncoder {
    type Item = Outgoing;
    type Error = Status;

    fn encode(&mut self, item: Outgoing, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        item?
            .encode(dst)
            .map_err(|e| Status::internal(format!("encoding the request: {e}")))
    }
}

#[derive(Debug)]
pub(crate) struct DynamicDecoder {
    response: MessageDescriptor,
}

impl Decoder for DynamicDecoder {
    type Item = DynamicMessage;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<DynamicMessage>, Status> {
        DynamicMessage::decode(self.response.clone(), src)
            .map(Some)
            .map_err(|e| {
                Status::internal(format!(
                    "the reply is not a valid {}: {e}",
                    self.response.full_name()
                ))
            })
    }
}

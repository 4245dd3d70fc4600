//! The protobuf codec of every generated service and client: prost's, except
//! that a message that does not decode is the caller's error.
//!
//! tonic's codec answers INTERNAL for a request that is not a valid message
//! (invalid UTF-8 in a string, a truncated field, a wrong wire type, values
//! nested past the limit), with prost's whole field path as the message. Here
//! it is INVALID_ARGUMENT with one short sentence: the cause, and the field
//! it was found in.
//!
//! Nesting is limited by prost's recursion limit of 100 messages: a
//! `google.protobuf.Value` holding structs or lists nests at most
//! [`MAX_VALUE_NESTING`] deep in a request (a `Struct` level is three
//! messages: the struct, its map entry and the value).

use std::marker::PhantomData;

use prost::Message;
use tonic::{
    Status,
    codec::{BufferSettings, Codec, DecodeBuf, Decoder},
};

/// The deepest `Struct`/`ListValue` nesting a request's value may have.
pub const MAX_VALUE_NESTING: usize = 32;

/// [`tonic_prost::ProstCodec`] with decode errors as INVALID_ARGUMENT.
#[derive(Debug, Clone)]
pub struct ProtoCodec<T, U> {
    inner: tonic_prost::ProstCodec<T, U>,
    _pd: PhantomData<(T, U)>,
}

impl<T, U> Default for ProtoCodec<T, U> {
    fn default() -> Self {
        ProtoCodec {
            inner: tonic_prost::ProstCodec::default(),
            _pd: PhantomData,
        }
    }
}

impl<T, U> Codec for ProtoCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = tonic_prost::ProstEncoder<T>;
    type Decoder = ProtoDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        self.inner.encoder()
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProtoDecoder(self.inner.decoder())
    }
}

/// Decodes with prost; a failure is INVALID_ARGUMENT.
#[derive(Debug, Clone)]
pub struct ProtoDecoder<U>(tonic_prost::ProstDecoder<U>);

impl<U: Message + Default> Decoder for ProtoDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        U::decode(buf)
            .map(Some)
            .map_err(|e| Status::invalid_argument(describe(&e)))
    }

    fn buffer_settings(&self) -> BufferSettings {
        self.0.buffer_settings()
    }
}

/// An answer encoded ahead of time (a cached listing), written as it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded(pub bytes::Bytes);

/// The codec of a method whose answers are [`Encoded`]; requests decode as
/// with [`ProtoCodec`].
#[derive(Debug, Clone)]
pub struct EncodedCodec<U> {
    buffer: BufferSettings,
    _decodes: PhantomData<U>,
}

impl<U> Default for EncodedCodec<U> {
    fn default() -> Self {
        EncodedCodec {
            buffer: BufferSettings::default(),
            _decodes: PhantomData,
        }
    }
}

impl<U> EncodedCodec<U> {
    /// For a long-lived stream of small messages (the watch): its write
    /// buffer starts at [`SMALL_MESSAGES_BUFFER`] bytes instead of tonic's
    /// 8 KiB, and grows for a larger message. The buffer lives as long as
    /// the stream, and an idle stream is what a fleet holds most of.
    pub fn small_messages() -> Self {
        EncodedCodec {
            // tonic's yield threshold, kept.
            buffer: BufferSettings::new(SMALL_MESSAGES_BUFFER, 32 * 1024),
            _decodes: PhantomData,
        }
    }
}

/// The initial write buffer of [`EncodedCodec::small_messages`].
pub const SMALL_MESSAGES_BUFFER: usize = 512;

impl<U> Codec for EncodedCodec<U>
where
    U: Message + Default + Send + 'static,
{
    type Encode = Encoded;
    type Decode = U;
    type Encoder = EncodedWriter;
    type Decoder = ProtoDecoder<U>;

    fn encoder(&mut self) -> EncodedWriter {
        EncodedWriter(self.buffer)
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProtoDecoder(tonic_prost::ProstCodec::<U, U>::default().decoder())
    }
}

/// Writes an [`Encoded`] answer's bytes.
#[derive(Debug, Clone, Copy)]
pub struct EncodedWriter(BufferSettings);

impl tonic::codec::Encoder for EncodedWriter {
    type Item = Encoded;
    type Error = Status;

    fn encode(
        &mut self,
        item: Encoded,
        dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), Status> {
        bytes::BufMut::put_slice(dst, &item.0);
        Ok(())
    }

    fn buffer_settings(&self) -> BufferSettings {
        self.0
    }
}

/// One short sentence for a decode error: prost writes
/// `failed to decode Protobuf message: Msg.field: Msg.field: ...: cause`;
/// this keeps the cause and the outermost field.
pub fn describe(e: &prost::DecodeError) -> String {
    let text = e.to_string();
    let rest = text
        .strip_prefix("failed to decode Protobuf message: ")
        .unwrap_or(&text);
    let is_field = |p: &str| {
        p.split_once('.').is_some_and(|(m, f)| {
            !m.is_empty()
                && !f.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.')
        })
    };
    let parts: Vec<&str> = rest.split(": ").collect();
    let fields = parts.iter().take_while(|p| is_field(p)).count();
    let cause = parts[fields..].join(": ");
    let cause = match cause.as_str() {
        "" => "malformed".to_owned(),
        "recursion limit reached" => {
            format!("values nested deeper than {MAX_VALUE_NESTING} levels")
        }
        _ => cause,
    };
    match parts[..fields].first() {
        Some(field) => format!("the request is not a valid message: {cause} (in {field})"),
        None => format!("the request is not a valid message: {cause}"),
    }
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;

    #[test]
    fn decode_errors_are_one_short_sentence() {
        let e = pbjson_types::Value::decode(&[0x0a_u8, 0x05, b'a'][..]).unwrap_err();
        assert!(describe(&e).starts_with("the request is not a valid message: "));
        let e = crate::v1::EvaluateFlagRequest::decode(&[0x08_u8, 0x01][..]).unwrap_err();
        assert_eq!(
            describe(&e),
            "the request is not a valid message: invalid wire type: Varint (expected \
             LengthDelimited) (in EvaluateFlagRequest.flag_key)"
        );
    }
}

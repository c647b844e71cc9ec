//! The protobuf codec every generated service and client uses.
//!
//! It is tonic's prost codec with smaller initial buffers. tonic allocates the encode buffer once per
//! streaming response and keeps it for the stream's lifetime; with its default of 8 KiB, ten thousand idle
//! `EventStream` subscribers hold 80 MB of buffers that almost never carry more than a few hundred bytes.
//! It allocates a decode buffer for every call, freed once the request is read: 8 KiB by default for
//! requests of a few hundred bytes, and when many streams open at once those buffers are freed between the
//! streams' long-lived state and leave gaps in the heap. Both buffers still grow on demand for large
//! messages (a sync payload of many flags: the decoder reserves the announced length at once).

use std::marker::PhantomData;

use prost::Message;
use tonic::Status;
use tonic::codec::{BufferSettings, Codec, EncodeBuf, Encoder};
use tonic_prost::{ProstCodec, ProstDecoder, ProstEncoder};

/// Initial size of the per-call encode buffer, in bytes: room for a typical resolve response or event.
pub const ENCODE_BUFFER_BYTES: usize = 256;

/// Initial size of the per-call decode buffer, in bytes: room for a request with a sizeable context, and
/// small enough for the allocator's per-thread cache.
pub const DECODE_BUFFER_BYTES: usize = 1024;

/// Encoded bytes after which tonic yields back to the runtime while streaming (tonic's default).
pub const YIELD_THRESHOLD_BYTES: usize = 32 * 1024;

/// tonic's prost codec with [`ENCODE_BUFFER_BYTES`] and [`DECODE_BUFFER_BYTES`] as the initial buffers.
#[derive(Debug, Clone)]
pub struct LeanCodec<T, U> {
    _types: PhantomData<(T, U)>,
}

impl<T, U> Default for LeanCodec<T, U> {
    fn default() -> Self {
        LeanCodec {
            _types: PhantomData,
        }
    }
}

impl<T, U> Codec for LeanCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = ProstDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstCodec::<T, U>::raw_encoder(starting_at(ENCODE_BUFFER_BYTES))
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProstCodec::<T, U>::raw_decoder(starting_at(DECODE_BUFFER_BYTES))
    }
}

/// A response message already encoded as protobuf: the bytes of one whole message, without gRPC's frame
/// prefix. A handler that writes its answer directly (the daemon's ResolveAll) returns it and serves it
/// with [`EncodedCodec`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Encoded(pub Vec<u8>);

/// A codec whose responses are [`Encoded`] bytes, passed through as they are, and whose requests are
/// decoded into `U` as [`LeanCodec`] decodes them.
#[derive(Debug, Clone)]
pub struct EncodedCodec<U> {
    _types: PhantomData<U>,
}

impl<U> Default for EncodedCodec<U> {
    fn default() -> Self {
        EncodedCodec {
            _types: PhantomData,
        }
    }
}

impl<U> Codec for EncodedCodec<U>
where
    U: Message + Default + Send + 'static,
{
    type Encode = Encoded;
    type Decode = U;
    type Encoder = PassThrough;
    type Decoder = ProstDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        PassThrough
    }

    fn decoder(&mut self) -> Self::Decoder {
        LeanCodec::<U, U>::default().decoder()
    }
}

/// The encoder of [`EncodedCodec`]: copies the bytes into tonic's frame buffer.
#[derive(Debug, Clone, Copy, Default)]
pub struct PassThrough;

impl Encoder for PassThrough {
    type Item = Encoded;
    type Error = Status;

    fn encode(&mut self, item: Encoded, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        use bytes::BufMut;
        dst.put_slice(&item.0);
        Ok(())
    }

    fn buffer_settings(&self) -> BufferSettings {
        starting_at(ENCODE_BUFFER_BYTES)
    }
}

/// Buffer settings with `initial` bytes to start with and tonic's yield threshold.
fn starting_at(initial: usize) -> BufferSettings {
    BufferSettings::new(initial, YIELD_THRESHOLD_BYTES)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::codec::Decoder as _;

    #[test]
    fn both_buffers_start_small() {
        let mut codec = LeanCodec::<prost_types::Struct, prost_types::Struct>::default();
        // `BufferSettings` keeps its fields private; its `Debug` shows them.
        let settings = |size| format!("{:?}", BufferSettings::new(size, YIELD_THRESHOLD_BYTES));
        assert_eq!(
            format!("{:?}", codec.encoder().buffer_settings()),
            settings(ENCODE_BUFFER_BYTES)
        );
        assert_eq!(
            format!("{:?}", codec.decoder().buffer_settings()),
            settings(DECODE_BUFFER_BYTES)
        );
        assert_ne!(
            settings(DECODE_BUFFER_BYTES),
            format!("{:?}", BufferSettings::default())
        );
    }
}

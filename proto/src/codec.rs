//! The protobuf codec every generated service and client uses.
//!
//! It is tonic's prost codec with a smaller initial encode buffer. tonic allocates the encode buffer once per
//! streaming response and keeps it for the stream's lifetime; with its default of 8 KiB, ten thousand idle
//! `EventStream` subscribers hold 80 MB of buffers that almost never carry more than a few hundred bytes.
//! The buffer still grows on demand for large messages (a sync payload of many flags).

use std::marker::PhantomData;

use prost::Message;
use tonic::codec::{BufferSettings, Codec};
use tonic_prost::{ProstCodec, ProstDecoder, ProstEncoder};

/// Initial size of the per-call encode buffer, in bytes: room for a typical resolve response or event.
pub const ENCODE_BUFFER_BYTES: usize = 256;

/// Encoded bytes after which tonic yields back to the runtime while streaming (tonic's default).
pub const YIELD_THRESHOLD_BYTES: usize = 32 * 1024;

/// tonic's prost codec with [`ENCODE_BUFFER_BYTES`] as the initial encode buffer.
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
        ProstCodec::<T, U>::raw_encoder(BufferSettings::new(
            ENCODE_BUFFER_BYTES,
            YIELD_THRESHOLD_BYTES,
        ))
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProstCodec::<T, U>::new().decoder()
    }
}

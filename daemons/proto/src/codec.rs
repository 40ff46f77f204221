//! [`CompactCodec`]: prost encoding with small per-stream buffers. tonic's default codec gives
//! every stream an 8 KiB encode and an 8 KiB decode buffer up front; a scheduler holds one
//! long-lived stream per downloading peer and per host, and its messages are a few hundred
//! bytes, so at 10,000 peers those idle buffers were most of its memory. The buffers still grow
//! for a large message (a piece-digest list) and shrink back with the allocator.

use std::marker::PhantomData;

use prost::Message;
use tonic::codec::{BufferSettings, Codec};
use tonic_prost::{ProstDecoder, ProstEncoder};

/// Initial size of a stream's encode and decode buffers.
const BUFFER_SIZE: usize = 512;
/// tonic's default: how many encoded bytes are batched before yielding to the transport.
const YIELD_THRESHOLD: usize = 32 * 1024;

fn settings() -> BufferSettings {
    BufferSettings::new(BUFFER_SIZE, YIELD_THRESHOLD)
}

#[derive(Debug, Clone)]
pub struct CompactCodec<T, U> {
    _pd: PhantomData<(T, U)>,
}

impl<T, U> Default for CompactCodec<T, U> {
    fn default() -> Self {
        Self { _pd: PhantomData }
    }
}

impl<T, U> Codec for CompactCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = ProstDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstEncoder::new(settings())
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProstDecoder::new(settings())
    }
}

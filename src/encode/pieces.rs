//! Output assembled from many byte pieces without copying the big ones.
//!
//! Arrow IPC encoders can hand back a batch's own buffers (`StreamEncoder`); copying them
//! into one body costs a pass over every exported byte. `Pieces` copies only the small
//! ones (prefixes, IPC headers, validity bitmaps, padding) together and passes large
//! buffers on as they are, so a response is a few sizeable chunks instead of one copy.

use arrow::buffer::Buffer;
use bytes::{BufMut, Bytes, BytesMut};

/// Pieces shorter than this are copied into the running chunk instead of sent alone.
const COPY_BELOW: usize = 16 * 1024;

#[derive(Default)]
pub struct Pieces {
    pending: BytesMut,
    out: Vec<Bytes>,
}

impl Pieces {
    /// Small bytes written in place (headers, length prefixes).
    pub fn small(&mut self) -> &mut BytesMut {
        &mut self.pending
    }

    /// A piece of any size: copied if small, passed on whole otherwise.
    pub fn push(&mut self, piece: Bytes) {
        if piece.len() < COPY_BELOW {
            self.pending.put_slice(&piece);
        } else {
            self.flush();
            self.out.push(piece);
        }
    }

    pub fn finish(mut self) -> Vec<Bytes> {
        self.flush();
        self.out
    }

    fn flush(&mut self) {
        if !self.pending.is_empty() {
            self.out.push(self.pending.split().freeze());
        }
    }
}

/// An Arrow buffer as `Bytes`, sharing its memory.
pub fn buffer_bytes(buffer: Buffer) -> Bytes {
    struct Owned(Buffer);
    impl AsRef<[u8]> for Owned {
        fn as_ref(&self) -> &[u8] {
            self.0.as_slice()
        }
    }
    Bytes::from_owner(Owned(buffer))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_pieces_are_joined_and_large_ones_kept() {
        let big = Bytes::from(vec![7u8; COPY_BELOW]);
        let mut p = Pieces::default();
        p.small().put_slice(b"ab");
        p.push(Bytes::from_static(b"cd"));
        p.push(big.clone());
        p.push(Bytes::from_static(b"ef"));
        let out = p.finish();
        assert_eq!(out, vec![Bytes::from_static(b"abcd"), big.clone(), Bytes::from_static(b"ef")]);
        assert_eq!(out[1].as_ptr(), big.as_ptr(), "large piece not copied");
    }
}

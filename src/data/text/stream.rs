//! Chunks of token streams for a model batched over N instances, each reading its own
//! sequence of documents.
//!
//! **The stream of one instance** is its documents one after another, each *preceded* by the
//! end-of-document id (`<eos>` for words, 0 for bytes): `eos a b c eos d e eos f …`. The `eos`
//! before a document is its position 0 and carries the document-start flag: the model resets
//! its state when it reads it and predicts the document's first token from it; the last token of
//! a document predicts the `eos` of the next one, which so means "end of document". Every
//! (input, target) pair thus lies within one document, and a document of m tokens gives m + 1
//! pairs at positions 0..=m. Documents shorter than the chunk length are fine (a chunk then
//! spans several); documents with no token are left out, and a corpus where none has a token
//! (at least 2 ids with its marker) is an error.
//!
//! **Chunks** are `[N, L+1]`: row n holds L + 1 consecutive ids of instance n's stream, the
//! inputs are the first L and the targets the last L (the inputs shifted by one). The next chunk
//! starts where the inputs stopped, so its first id is the last id of this one, and a model
//! carrying its state across chunks reads each stream without a gap.
//!
//! **Order.** Epoch e of the corpus is a permutation of the documents, a Fisher–Yates shuffle
//! drawn from `ChaCha12Rng::seed_from_u64(seed)` on stream e (`set_stream(e)`). The epochs
//! joined make one sequence of documents; instance n starts at place ⌊n·D/N⌋ of it (D
//! documents) and reads on from there, into the next epochs. Everything depends on the seed
//! only.

use std::collections::BTreeMap;

use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha12Rng;

use super::{vocab::Vocab, Document};
use crate::{Error, Result};

/// One chunk of `[N, L+1]` ids with what the model needs to know about each id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    /// N, the rows.
    pub instances: usize,
    /// L, the inputs per row; a row holds L + 1 ids.
    pub length: usize,
    /// `[N, L+1]` ids, row-major: inputs `[.., ..L]`, targets `[.., 1..]`.
    pub tokens: Vec<u32>,
    /// `[N, L+1]` position of each id in its document (0 = the end-of-document id before it).
    pub positions: Vec<u32>,
    /// `[N, L+1]` true where a document starts (position 0): reset the model's state there.
    pub starts: Vec<bool>,
    /// `[N, L+1]` index of each id's document in the list the stream was made from.
    pub documents: Vec<u32>,
}

impl Chunk {
    fn row_range(&self, n: usize) -> Option<std::ops::Range<usize>> {
        (n < self.instances).then(|| n * (self.length + 1)..(n + 1) * (self.length + 1))
    }

    /// The L + 1 ids of row `n` (`None` if `n >= instances`).
    pub fn row(&self, n: usize) -> Option<&[u32]> {
        self.row_range(n).and_then(|r| self.tokens.get(r))
    }

    /// The L inputs of row `n`.
    pub fn inputs(&self, n: usize) -> Option<&[u32]> {
        self.row(n).and_then(|r| r.get(..self.length))
    }

    /// The L targets of row `n`: its inputs shifted by one.
    pub fn targets(&self, n: usize) -> Option<&[u32]> {
        self.row(n).and_then(|r| r.get(1..))
    }

    /// The L + 1 positions of row `n`.
    pub fn row_positions(&self, n: usize) -> Option<&[u32]> {
        self.row_range(n).and_then(|r| self.positions.get(r))
    }

    /// The L + 1 document-start flags of row `n`.
    pub fn row_starts(&self, n: usize) -> Option<&[bool]> {
        self.row_range(n).and_then(|r| self.starts.get(r))
    }
}

/// A chunk as `[N, L]` arrays of the inputs, the form a model reads (`tasks::lm::TokenChunk`
/// takes `inputs`, `targets` and `starts`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkArrays {
    /// `[N, L]` input ids.
    pub inputs: Vec<u32>,
    /// `[N, L]` targets: the id after each input.
    pub targets: Vec<u32>,
    /// `[N, L]` true where an input starts a document: reset the state before it.
    pub starts: Vec<bool>,
    /// `[N, L]` position of each input in its document.
    pub positions: Vec<u32>,
}

impl Chunk {
    /// The inputs, targets, start flags and positions as `[N, L]` arrays.
    pub fn arrays(&self) -> ChunkArrays {
        let width = self.length + 1;
        let mut a = ChunkArrays {
            inputs: Vec::with_capacity(self.instances * self.length),
            targets: Vec::with_capacity(self.instances * self.length),
            starts: Vec::with_capacity(self.instances * self.length),
            positions: Vec::with_capacity(self.instances * self.length),
        };
        for ((tokens, starts), positions) in self
            .tokens
            .chunks(width)
            .zip(self.starts.chunks(width))
            .zip(self.positions.chunks(width))
        {
            let inputs = ..self.length.min(tokens.len());
            a.inputs.extend_from_slice(&tokens[inputs]);
            a.targets
                .extend_from_slice(tokens.get(1..).unwrap_or_default());
            a.starts
                .extend_from_slice(&starts[..self.length.min(starts.len())]);
            a.positions
                .extend_from_slice(&positions[..self.length.min(positions.len())]);
        }
        a
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Cursor {
    /// Place in the sequence of documents of all epochs.
    read: u64,
    /// Position in that document's stream (0 = its leading end-of-document id).
    pos: usize,
}

/// An endless, deterministic source of [`Chunk`]s; see the [module documentation](self).
#[derive(Debug, Clone)]
pub struct DocumentStream {
    /// The documents with at least one id.
    docs: Vec<Vec<u32>>,
    /// For each of `docs`, its index in the list given.
    index: Vec<u32>,
    eos: u32,
    instances: usize,
    length: usize,
    seed: u64,
    cursors: Vec<Cursor>,
    epochs: BTreeMap<u64, Vec<u32>>,
    chunks: u64,
}

impl DocumentStream {
    /// A stream over `docs` (each a document's ids, without an end-of-document marker), `eos`
    /// the end-of-document id, `instances` rows (N) of `length` inputs (L), ordered by `seed`.
    ///
    /// Errors with [`Error::InvalidArgument`] if N or L is 0, a chunk would not fit in memory,
    /// there are 2³² documents or more, or no document has an id.
    pub fn new(
        docs: Vec<Vec<u32>>,
        eos: u32,
        instances: usize,
        length: usize,
        seed: u64,
    ) -> Result<DocumentStream> {
        if instances == 0 || length == 0 {
            return Err(Error::invalid(format!(
                "a chunk stream needs at least one instance and one token per chunk, got \
                 {instances} instances of {length} tokens"
            )));
        }
        if instances
            .checked_mul(length + 1)
            .is_none_or(|n| n > isize::MAX as usize / 16)
        {
            return Err(Error::invalid(format!(
                "chunks of {instances} x {} tokens are too large; use fewer instances or shorter chunks",
                length + 1
            )));
        }
        if u32::try_from(docs.len()).is_err() {
            return Err(Error::invalid(format!(
                "{} documents are more than a stream can index (2^32 - 1); split the corpus",
                docs.len()
            )));
        }
        let total = docs.len();
        let (index, docs): (Vec<u32>, Vec<Vec<u32>>) = docs
            .into_iter()
            .enumerate()
            .filter(|(_, d)| !d.is_empty())
            .map(|(i, d)| (i as u32, d))
            .unzip();
        if docs.is_empty() {
            return Err(Error::invalid(format!(
                "none of the {total} documents has at least 2 tokens (one token and the \
                 end-of-document marker); read a corpus with text in it"
            )));
        }
        let d = docs.len() as u128;
        let cursors = (0..instances)
            .map(|n| Cursor {
                read: (n as u128 * d / instances as u128) as u64,
                pos: 0,
            })
            .collect();
        Ok(DocumentStream {
            docs,
            index,
            eos,
            instances,
            length,
            seed,
            cursors,
            epochs: BTreeMap::new(),
            chunks: 0,
        })
    }

    /// [`DocumentStream::new`] over `docs` encoded with `vocab`.
    pub fn from_documents(
        docs: &[Document],
        vocab: &Vocab,
        instances: usize,
        length: usize,
        seed: u64,
    ) -> Result<DocumentStream> {
        let ids = docs.iter().map(|d| vocab.encode(&d.text)).collect();
        DocumentStream::new(ids, vocab.eos(), instances, length, seed)
    }

    /// N, the rows of a chunk.
    pub fn instances(&self) -> usize {
        self.instances
    }

    /// L, the inputs per row.
    pub fn length(&self) -> usize {
        self.length
    }

    /// Number of documents read (those with at least one id).
    pub fn documents(&self) -> usize {
        self.docs.len()
    }

    /// Ids in one epoch of the stream: every document's ids and its leading marker.
    pub fn tokens_per_epoch(&self) -> u64 {
        self.docs.iter().map(|d| d.len() as u64 + 1).sum()
    }

    /// Chunks given so far.
    pub fn chunks_read(&self) -> u64 {
        self.chunks
    }

    /// The index (in `docs`) of the document at place `read` of the sequence of all epochs.
    fn doc_at(&mut self, read: u64) -> usize {
        let count = self.docs.len() as u64;
        let epoch = read / count;
        let seed = self.seed;
        let perm = self
            .epochs
            .entry(epoch)
            .or_insert_with(|| permutation(count as usize, seed, epoch));
        perm.get((read % count) as usize).map_or(0, |&i| i as usize)
    }

    /// The next chunk.
    pub fn next_chunk(&mut self) -> Chunk {
        let width = self.length + 1;
        let size = self.instances * width;
        let mut chunk = Chunk {
            instances: self.instances,
            length: self.length,
            tokens: Vec::with_capacity(size),
            positions: Vec::with_capacity(size),
            starts: Vec::with_capacity(size),
            documents: Vec::with_capacity(size),
        };
        for n in 0..self.instances {
            let mut c = self.cursors[n];
            for k in 0..width {
                if k == self.length {
                    self.cursors[n] = c;
                }
                let d = self.doc_at(c.read);
                let doc = &self.docs[d];
                let token = match c.pos {
                    0 => self.eos,
                    p => doc[p - 1],
                };
                chunk.tokens.push(token);
                chunk
                    .positions
                    .push(u32::try_from(c.pos).unwrap_or(u32::MAX));
                chunk.starts.push(c.pos == 0);
                chunk.documents.push(self.index[d]);
                c.pos += 1;
                if c.pos > doc.len() {
                    c = Cursor {
                        read: c.read + 1,
                        pos: 0,
                    };
                }
            }
        }
        let count = self.docs.len() as u64;
        if let Some(oldest) = self.cursors.iter().map(|c| c.read / count).min() {
            self.epochs = self.epochs.split_off(&oldest);
        }
        self.chunks += 1;
        chunk
    }
}

/// A permutation of `0..count`: Fisher–Yates driven by ChaCha12 seeded with `seed` on stream
/// `epoch`, each draw an unbiased bounded integer from `next_u64` by rejection.
fn permutation(count: usize, seed: u64, epoch: u64) -> Vec<u32> {
    let mut rng = ChaCha12Rng::seed_from_u64(seed);
    rng.set_stream(epoch);
    let mut perm: Vec<u32> = (0..count as u32).collect();
    for i in (1..count).rev() {
        let bound = i as u64 + 1;
        let reject_below = bound.wrapping_neg() % bound;
        let j = loop {
            let x = rng.next_u64();
            if x >= reject_below {
                break x % bound;
            }
        };
        perm.swap(i, j as usize);
    }
    perm
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permutations_are_permutations_and_differ_by_epoch() {
        let a = permutation(100, 7, 0);
        let mut sorted = a.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..100).collect::<Vec<u32>>());
        assert_eq!(a, permutation(100, 7, 0));
        assert_ne!(a, permutation(100, 7, 1));
        assert_ne!(a, permutation(100, 8, 0));
        assert_eq!(permutation(1, 0, 0), vec![0]);
        assert!(permutation(0, 0, 0).is_empty());
    }
}

//! Text corpora for language-model tasks: readers (a directory of text files, Debian's
//! `linux-doc-6.1` reST sources, WikiText), a deterministic train/valid/test split by document,
//! word- and byte-level vocabularies, and a stream of `[N, L+1]` token chunks over N instances
//! that each read their own documents. The formats and rules are in `docs/data.md`.
//!
//! ```no_run
//! use metalearn::data::text::{read_linux_doc, split_documents, DocumentStream, SplitFractions, Vocab, WordOptions, LINUX_DOC_DIR};
//! # fn main() -> metalearn::Result<()> {
//! let corpus = read_linux_doc(std::path::Path::new(LINUX_DOC_DIR))?;
//! println!("{}", corpus.summary());
//! let splits = split_documents(corpus.documents, SplitFractions::default())?;
//! let vocab = Vocab::build_words(&splits.train, &WordOptions::default())?;
//! println!("{}", splits.summary(&vocab));
//! let mut stream = DocumentStream::from_documents(&splits.train, &vocab, 32, 64, 0)?;
//! let chunk = stream.next_chunk(); // tokens [32, 65], positions, document starts
//! # let _ = chunk;
//! # Ok(())
//! # }
//! ```

pub mod dir;
pub mod rst;
pub mod split;
pub mod stream;
pub mod vocab;
pub mod wikitext;

use std::fmt;

pub use dir::{read_linux_doc, read_text_dir, read_text_dir_with, DirOptions, LINUX_DOC_DIR};
pub use rst::strip_rst;
pub use split::{split_documents, SplitFractions, SplitSummary, SplitTotals, Splits};
pub use stream::{Chunk, ChunkArrays, DocumentStream};
pub use vocab::{split_words, Vocab, VocabKind, WordOptions, DEFAULT_WORD_VOCAB, EOS, UNK};
pub use wikitext::{parse_wikitext, read_wikitext, read_wikitext_file};

/// One document of a corpus: a file, or an article of WikiText.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document {
    /// The path relative to the corpus directory (with `/` separators), or the article's title.
    pub name: String,
    /// The text, with `\n` line endings.
    pub text: String,
}

/// Why a file of a directory was not read as a document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SkipReason {
    /// It holds a NUL byte, so it is taken for a binary file.
    Binary,
    /// It is not valid UTF-8.
    NotUtf8,
    /// It holds nothing but whitespace (after markup stripping, where the reader strips markup).
    Empty,
    /// Reading it failed (the I/O error's message).
    Unreadable(String),
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SkipReason::Binary => write!(f, "binary (holds a NUL byte)"),
            SkipReason::NotUtf8 => write!(f, "not valid UTF-8"),
            SkipReason::Empty => write!(f, "no text"),
            SkipReason::Unreadable(e) => write!(f, "unreadable: {e}"),
        }
    }
}

/// A file that a reader skipped, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedFile {
    /// The path relative to the corpus directory.
    pub name: String,
    /// Why it was skipped.
    pub reason: SkipReason,
}

/// The documents a reader found, in a deterministic order (sorted by name for directories,
/// file order for WikiText), and the files it skipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Corpus {
    /// Where the documents came from (a directory or a file).
    pub source: String,
    /// The documents.
    pub documents: Vec<Document>,
    /// The files skipped, sorted by name.
    pub skipped: Vec<SkippedFile>,
}

impl Corpus {
    /// Counts of documents, text and skipped files.
    pub fn summary(&self) -> CorpusSummary {
        let count =
            |pred: fn(&SkipReason) -> bool| self.skipped.iter().filter(|s| pred(&s.reason)).count();
        let mut lengths: Vec<usize> = self.documents.iter().map(|d| d.text.len()).collect();
        lengths.sort_unstable();
        CorpusSummary {
            source: self.source.clone(),
            documents: self.documents.len(),
            bytes: lengths.iter().sum(),
            words: self
                .documents
                .iter()
                .map(|d| d.text.split_whitespace().count())
                .sum(),
            median_bytes: lengths.get(lengths.len() / 2).copied().unwrap_or(0),
            skipped_binary: count(|r| matches!(r, SkipReason::Binary)),
            skipped_not_utf8: count(|r| matches!(r, SkipReason::NotUtf8)),
            skipped_empty: count(|r| matches!(r, SkipReason::Empty)),
            skipped_unreadable: count(|r| matches!(r, SkipReason::Unreadable(_))),
        }
    }
}

/// Counts describing a [`Corpus`]; `Display` prints them on one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorpusSummary {
    /// Where the documents came from.
    pub source: String,
    /// Number of documents.
    pub documents: usize,
    /// Total UTF-8 bytes of text.
    pub bytes: usize,
    /// Total whitespace-separated words.
    pub words: usize,
    /// Median document length in bytes (the upper median).
    pub median_bytes: usize,
    /// Files skipped for holding a NUL byte.
    pub skipped_binary: usize,
    /// Files skipped for not being UTF-8.
    pub skipped_not_utf8: usize,
    /// Files skipped for holding no text.
    pub skipped_empty: usize,
    /// Files skipped because reading them failed.
    pub skipped_unreadable: usize,
}

impl CorpusSummary {
    /// All skipped files.
    pub fn skipped(&self) -> usize {
        self.skipped_binary + self.skipped_not_utf8 + self.skipped_empty + self.skipped_unreadable
    }
}

impl fmt::Display for CorpusSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} documents, {} words, {} bytes (median {} bytes); skipped {} files \
             ({} binary, {} not UTF-8, {} empty, {} unreadable)",
            self.source,
            self.documents,
            self.words,
            self.bytes,
            self.median_bytes,
            self.skipped(),
            self.skipped_binary,
            self.skipped_not_utf8,
            self.skipped_empty,
            self.skipped_unreadable
        )
    }
}

/// FNV-1a, 64-bit, of `bytes`: a stable hash (the same on every platform and run), used for the
/// split by document name and for vocabulary fingerprints.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Normalises line endings to `\n` and removes a leading byte-order mark.
fn normalise(text: String) -> String {
    let text = match text.strip_prefix('\u{feff}') {
        Some(rest) => rest.to_string(),
        None => text,
    };
    if text.contains('\r') {
        text.replace("\r\n", "\n").replace('\r', "\n")
    } else {
        text
    }
}

/// Decodes a file's bytes: `Err` with the reason if it holds a NUL byte or is not UTF-8.
fn decode(bytes: Vec<u8>) -> std::result::Result<String, SkipReason> {
    if bytes.contains(&0) {
        return Err(SkipReason::Binary);
    }
    String::from_utf8(bytes)
        .map(normalise)
        .map_err(|_| SkipReason::NotUtf8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a64_matches_published_values() {
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn decode_rejects_binary_and_non_utf8_and_normalises() {
        assert_eq!(decode(b"a\0b".to_vec()), Err(SkipReason::Binary));
        assert_eq!(decode(vec![0xff, 0xfe, b'a']), Err(SkipReason::NotUtf8));
        assert_eq!(
            decode("\u{feff}a\r\nb\rc".as_bytes().to_vec()),
            Ok("a\nb\nc".to_string())
        );
    }

    #[test]
    fn summary_counts_skips_and_median() {
        let doc = |name: &str, text: &str| Document {
            name: name.into(),
            text: text.into(),
        };
        let corpus = Corpus {
            source: "x".into(),
            documents: vec![
                doc("a", "one two"),
                doc("b", "x"),
                doc("c", "three four five"),
            ],
            skipped: vec![
                SkippedFile {
                    name: "d".into(),
                    reason: SkipReason::Binary,
                },
                SkippedFile {
                    name: "e".into(),
                    reason: SkipReason::NotUtf8,
                },
            ],
        };
        let s = corpus.summary();
        assert_eq!(
            (s.documents, s.words, s.bytes, s.median_bytes),
            (3, 6, 23, 7)
        );
        assert_eq!(
            (s.skipped_binary, s.skipped_not_utf8, s.skipped()),
            (1, 1, 2)
        );
        assert!(s
            .to_string()
            .contains("skipped 2 files (1 binary, 1 not UTF-8"));
    }
}

//! A deterministic train/valid/test split by document name.

use std::fmt;

use super::{fnv1a64, vocab::Vocab, Document};
use crate::{Error, Result};

/// The fractions of documents in each split; they must be finite, non-negative and sum to 1.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SplitFractions {
    /// Fraction of training documents (default 0.90).
    pub train: f64,
    /// Fraction of validation documents (default 0.05).
    pub valid: f64,
    /// Fraction of test documents (default 0.05).
    pub test: f64,
}

impl Default for SplitFractions {
    fn default() -> Self {
        SplitFractions {
            train: 0.90,
            valid: 0.05,
            test: 0.05,
        }
    }
}

impl SplitFractions {
    /// Errors with [`Error::InvalidArgument`] unless the fractions are finite, non-negative and
    /// sum to 1 (within 1e-9).
    pub fn check(&self) -> Result<()> {
        let parts = [self.train, self.valid, self.test];
        let sum: f64 = parts.iter().sum();
        if parts.iter().any(|f| !f.is_finite() || *f < 0.0) || (sum - 1.0).abs() > 1e-9 {
            return Err(Error::invalid(format!(
                "split fractions train {}, valid {}, test {} must be non-negative and sum to 1; \
                 give e.g. 0.9, 0.05, 0.05",
                self.train, self.valid, self.test
            )));
        }
        Ok(())
    }
}

/// The point in [0, 1) that a document name hashes to: FNV-1a 64 of its UTF-8 bytes, mixed by
/// the SplitMix64 finaliser, its top 53 bits as a fraction. The same on every run and platform.
pub fn name_fraction(name: &str) -> f64 {
    let mut z = fnv1a64(name.as_bytes());
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

/// Documents split into training, validation and test sets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Splits {
    /// Training documents (the vocabulary is built from these).
    pub train: Vec<Document>,
    /// Validation documents.
    pub valid: Vec<Document>,
    /// Test documents.
    pub test: Vec<Document>,
}

/// Splits `documents` by name: a document goes to train if [`name_fraction`] of its name is
/// below `fractions.train`, to valid if below `train + valid`, and to test otherwise. A
/// document's split depends on its name only (not on the other documents or their order), and
/// each split keeps the documents' order.
pub fn split_documents(documents: Vec<Document>, fractions: SplitFractions) -> Result<Splits> {
    fractions.check()?;
    let mut splits = Splits::default();
    let valid_end = fractions.train + fractions.valid;
    for doc in documents {
        let u = name_fraction(&doc.name);
        if u < fractions.train {
            splits.train.push(doc);
        } else if u < valid_end {
            splits.valid.push(doc);
        } else {
            splits.test.push(doc);
        }
    }
    Ok(splits)
}

impl Splits {
    /// Documents and tokens per split under `vocab`; print it with `Display`.
    pub fn summary(&self, vocab: &Vocab) -> SplitSummary {
        let totals = |docs: &[Document]| {
            let mut t = SplitTotals {
                documents: docs.len(),
                ..SplitTotals::default()
            };
            for doc in docs {
                let ids = vocab.encode(&doc.text);
                t.bytes += doc.text.len();
                // Each document is read with its end-of-document marker.
                t.tokens += ids.len() + 1;
                t.unknown += vocab
                    .unk()
                    .map_or(0, |unk| ids.iter().filter(|&&i| i == unk).count());
            }
            t
        };
        SplitSummary {
            vocab: vocab.describe(),
            train: totals(&self.train),
            valid: totals(&self.valid),
            test: totals(&self.test),
        }
    }
}

/// Counts for one split.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SplitTotals {
    /// Number of documents.
    pub documents: usize,
    /// UTF-8 bytes of text.
    pub bytes: usize,
    /// Tokens, one end-of-document marker per document included.
    pub tokens: usize,
    /// Tokens that are `<unk>` (always 0 for bytes).
    pub unknown: usize,
}

/// Documents and tokens per split; `Display` prints a small table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitSummary {
    /// The vocabulary the tokens were counted with ([`Vocab::describe`]).
    pub vocab: String,
    /// Training split.
    pub train: SplitTotals,
    /// Validation split.
    pub valid: SplitTotals,
    /// Test split.
    pub test: SplitTotals,
}

impl fmt::Display for SplitSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "tokens by {}", self.vocab)?;
        writeln!(
            f,
            "  {:<6} {:>10} {:>14} {:>14} {:>8}",
            "split", "documents", "bytes", "tokens", "unk %"
        )?;
        for (name, t) in [
            ("train", self.train),
            ("valid", self.valid),
            ("test", self.test),
        ] {
            let unk = if t.tokens == 0 {
                0.0
            } else {
                100.0 * t.unknown as f64 / t.tokens as f64
            };
            writeln!(
                f,
                "  {name:<6} {:>10} {:>14} {:>14} {unk:>8.2}",
                t.documents, t.bytes, t.tokens
            )?;
        }
        Ok(())
    }
}

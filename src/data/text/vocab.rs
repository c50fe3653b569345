//! Word-level and byte-level vocabularies: tokenizing text into ids, and a text file format to
//! store a vocabulary with a checkpoint.
//!
//! **Words.** [`split_words`] splits on whitespace; with `split_punctuation` (the default) a
//! word is a maximal run of alphanumeric characters and `_` (Unicode's
//! [`char::is_alphanumeric`]), and every other non-whitespace character is a token of its own:
//! `don't stop_here, 6.1` → `don` `'` `t` `stop_here` `,` `6` `.` `1`, except that `<unk>` and
//! `<eos>` stay one token each. Without it, tokens are
//! the whitespace-separated strings (right for text that is tokenized already, as WikiText is).
//! With `lowercase`, tokens are lower-cased first. The vocabulary is `<unk>` (id 0), `<eos>`
//! (id 1, end of document), then the `size` most frequent training tokens, most frequent first,
//! ties in byte order of the token; any other token encodes as `<unk>`. The strings `<unk>` and
//! `<eos>` in a text are never counted as words and encode as `<unk>` (WikiText writes its rare
//! words as `<unk>`).
//!
//! **Bytes.** 256 ids, one per byte value of the UTF-8 text, and nothing else: the end of a
//! document is byte 0 (NUL), which no document read from a file holds (files with a NUL byte are
//! skipped as binary), so no 257th id is needed. There is no `<unk>`.
//!
//! **File format** ([`Vocab::to_text`], [`Vocab::parse`]): a header line, then one token per
//! line for words (tokens never hold whitespace):
//!
//! ```text
//! metalearn-vocab 1 word v=16384 lowercase=false punctuation=split fnv1a64=5e0b9a3f6c1d2e47
//! <unk>
//! <eos>
//! the
//! …
//! ```
//!
//! `v` counts the words without `<unk>` and `<eos>`; `fnv1a64` is [`Vocab::fingerprint`], the
//! FNV-1a hash of the token lines, checked on loading. A byte vocabulary is the single line
//! `metalearn-vocab 1 byte v=256 fnv1a64=…`.

use std::collections::HashMap;
use std::path::Path;

use super::{fnv1a64, Document};
use crate::{Error, Result};

/// The default number of words of a word vocabulary (besides `<unk>` and `<eos>`).
pub const DEFAULT_WORD_VOCAB: usize = 16_384;

/// The unknown-word token of a word vocabulary (id 0).
pub const UNK: &str = "<unk>";

/// The end-of-document token of a word vocabulary (id 1).
pub const EOS: &str = "<eos>";

const MAGIC: &str = "metalearn-vocab";
const VERSION: &str = "1";

/// How a word vocabulary is built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WordOptions {
    /// Number of words kept, the most frequent in training (default 16 384).
    pub size: usize,
    /// Lower-case the text before splitting (default off).
    pub lowercase: bool,
    /// Make every punctuation character a token of its own (default on); off splits on
    /// whitespace only.
    pub split_punctuation: bool,
}

impl Default for WordOptions {
    fn default() -> Self {
        WordOptions {
            size: DEFAULT_WORD_VOCAB,
            lowercase: false,
            split_punctuation: true,
        }
    }
}

/// The tokenizer a vocabulary belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VocabKind {
    /// Words, split as [`split_words`] says.
    Word {
        /// Text lower-cased before splitting.
        lowercase: bool,
        /// Punctuation characters are tokens of their own.
        split_punctuation: bool,
    },
    /// The 256 byte values; the end of a document is byte 0.
    Byte,
}

/// Splits `text` into word tokens as the [module documentation](self) says.
pub fn split_words(text: &str, lowercase: bool, split_punctuation: bool) -> Vec<String> {
    let mut words = Vec::new();
    for_each_word(text, lowercase, split_punctuation, |w| {
        words.push(w.to_string())
    });
    words
}

fn for_each_word(text: &str, lowercase: bool, split_punctuation: bool, mut f: impl FnMut(&str)) {
    let lowered;
    let text = if lowercase {
        lowered = text.to_lowercase();
        lowered.as_str()
    } else {
        text
    };
    for piece in text.split_whitespace() {
        if !split_punctuation {
            f(piece);
            continue;
        }
        let mut start = None;
        let mut resume = 0;
        for (i, c) in piece.char_indices() {
            if i < resume {
                continue;
            }
            if c.is_alphanumeric() || c == '_' {
                start.get_or_insert(i);
                continue;
            }
            if let Some(s) = start.take() {
                f(&piece[s..i]);
            }
            let rest = &piece[i..];
            let special = [UNK, EOS].into_iter().find(|s| rest.starts_with(s));
            let token = special.unwrap_or(&rest[..c.len_utf8()]);
            resume = i + token.len();
            f(token);
        }
        if let Some(s) = start {
            f(&piece[s..]);
        }
    }
}

/// A vocabulary: the map between tokens and ids, and the tokenizer that goes with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vocab {
    kind: VocabKind,
    /// Word vocabularies: `<unk>`, `<eos>`, then the words; empty for bytes.
    tokens: Vec<String>,
    ids: HashMap<String, u32>,
}

impl Vocab {
    /// The byte vocabulary: 256 ids, end of document = 0.
    pub fn bytes() -> Vocab {
        Vocab {
            kind: VocabKind::Byte,
            tokens: Vec::new(),
            ids: HashMap::new(),
        }
    }

    /// A word vocabulary of the `options.size` most frequent tokens of `train` (fewer if the
    /// documents hold fewer distinct tokens), ties broken by the token's bytes.
    ///
    /// Errors with [`Error::InvalidArgument`] if `options.size` is 0, `train` holds no token, or
    /// the vocabulary would not fit u32 ids.
    pub fn build_words(train: &[Document], options: &WordOptions) -> Result<Vocab> {
        if options.size == 0 || options.size > (u32::MAX - 2) as usize {
            return Err(Error::invalid(format!(
                "word vocabulary size {} must be between 1 and {}; the default is {DEFAULT_WORD_VOCAB}",
                options.size,
                u32::MAX - 2
            )));
        }
        let mut counts: HashMap<String, u64> = HashMap::new();
        for doc in train {
            for_each_word(
                &doc.text,
                options.lowercase,
                options.split_punctuation,
                |w| {
                    if w == UNK || w == EOS {
                        return;
                    }
                    match counts.get_mut(w) {
                        Some(n) => *n += 1,
                        None => {
                            counts.insert(w.to_string(), 1);
                        }
                    }
                },
            );
        }
        if counts.is_empty() {
            return Err(Error::invalid(format!(
                "the {} training documents hold no word, so no vocabulary can be built; \
                 read a corpus with text in it, or use the byte vocabulary",
                train.len()
            )));
        }
        let mut ranked: Vec<(String, u64)> = counts.into_iter().collect();
        ranked.sort_unstable_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        ranked.truncate(options.size);
        let tokens = [UNK.to_string(), EOS.to_string()]
            .into_iter()
            .chain(ranked.into_iter().map(|(w, _)| w))
            .collect();
        Ok(Self::words(
            VocabKind::Word {
                lowercase: options.lowercase,
                split_punctuation: options.split_punctuation,
            },
            tokens,
        ))
    }

    fn words(kind: VocabKind, tokens: Vec<String>) -> Vocab {
        let ids = tokens
            .iter()
            .enumerate()
            .skip(2)
            .map(|(i, t)| (t.clone(), i as u32))
            .collect();
        Vocab { kind, tokens, ids }
    }

    /// Which tokenizer this vocabulary belongs to.
    pub fn kind(&self) -> VocabKind {
        self.kind
    }

    /// Number of ids: 256 for bytes, words + 2 for words.
    pub fn len(&self) -> usize {
        match self.kind {
            VocabKind::Byte => 256,
            VocabKind::Word { .. } => self.tokens.len(),
        }
    }

    /// Never true: every vocabulary has at least its special ids.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The `V` of the file header: words without `<unk>` and `<eos>`, or 256 for bytes.
    pub fn size(&self) -> usize {
        match self.kind {
            VocabKind::Byte => 256,
            VocabKind::Word { .. } => self.tokens.len().saturating_sub(2),
        }
    }

    /// The end-of-document id: 1 (`<eos>`) for words, 0 (NUL) for bytes.
    pub fn eos(&self) -> u32 {
        match self.kind {
            VocabKind::Byte => 0,
            VocabKind::Word { .. } => 1,
        }
    }

    /// The unknown-token id: 0 for words; bytes have none.
    pub fn unk(&self) -> Option<u32> {
        match self.kind {
            VocabKind::Byte => None,
            VocabKind::Word { .. } => Some(0),
        }
    }

    /// The token of a word id (`None` for bytes or an id out of range).
    pub fn token(&self, id: u32) -> Option<&str> {
        self.tokens.get(id as usize).map(String::as_str)
    }

    /// The id of a word token (`None` if it is not in the vocabulary, or for bytes).
    pub fn id(&self, token: &str) -> Option<u32> {
        self.ids.get(token).copied()
    }

    /// The ids of `text`, without an end-of-document marker.
    pub fn encode(&self, text: &str) -> Vec<u32> {
        match self.kind {
            VocabKind::Byte => text.bytes().map(u32::from).collect(),
            VocabKind::Word {
                lowercase,
                split_punctuation,
            } => {
                let mut ids = Vec::new();
                for_each_word(text, lowercase, split_punctuation, |w| {
                    ids.push(self.ids.get(w).copied().unwrap_or(0));
                });
                ids
            }
        }
    }

    /// The text of `ids`: bytes decoded as UTF-8 (invalid sequences and ids above 255 become
    /// U+FFFD), words joined by single spaces (ids out of range become `<unk>`).
    pub fn decode(&self, ids: &[u32]) -> String {
        match self.kind {
            VocabKind::Byte => {
                let mut bytes = Vec::with_capacity(ids.len());
                let mut text = String::new();
                for &id in ids {
                    match u8::try_from(id) {
                        Ok(b) => bytes.push(b),
                        Err(_) => {
                            text.push_str(&String::from_utf8_lossy(&bytes));
                            bytes.clear();
                            text.push('\u{fffd}');
                        }
                    }
                }
                text.push_str(&String::from_utf8_lossy(&bytes));
                text
            }
            VocabKind::Word { .. } => ids
                .iter()
                .map(|&id| self.token(id).unwrap_or(UNK))
                .collect::<Vec<_>>()
                .join(" "),
        }
    }

    /// FNV-1a 64 of the token lines (each token and `\n`), or of `byte` for the byte vocabulary.
    pub fn fingerprint(&self) -> u64 {
        match self.kind {
            VocabKind::Byte => fnv1a64(b"byte"),
            VocabKind::Word { .. } => fingerprint_tokens(&self.tokens),
        }
    }

    /// One line naming the tokenizer, the size and the fingerprint.
    pub fn describe(&self) -> String {
        match self.kind {
            VocabKind::Byte => "byte vocabulary (256 ids, end of document = 0)".to_string(),
            VocabKind::Word {
                lowercase,
                split_punctuation,
            } => format!(
                "word vocabulary of {} words + <unk>, <eos> ({}, {}; fnv1a64 {:016x})",
                self.size(),
                if lowercase {
                    "lower-cased"
                } else {
                    "case kept"
                },
                if split_punctuation {
                    "punctuation split"
                } else {
                    "whitespace split"
                },
                self.fingerprint()
            ),
        }
    }

    fn header(&self) -> String {
        match self.kind {
            VocabKind::Byte => format!(
                "{MAGIC} {VERSION} byte v=256 fnv1a64={:016x}",
                self.fingerprint()
            ),
            VocabKind::Word {
                lowercase,
                split_punctuation,
            } => format!(
                "{MAGIC} {VERSION} word v={} lowercase={lowercase} punctuation={} fnv1a64={:016x}",
                self.size(),
                if split_punctuation { "split" } else { "keep" },
                self.fingerprint()
            ),
        }
    }

    /// The vocabulary as text in the format of the [module documentation](self).
    pub fn to_text(&self) -> String {
        let mut text = self.header();
        text.push('\n');
        for t in &self.tokens {
            text.push_str(t);
            text.push('\n');
        }
        text
    }

    /// Reads a vocabulary written by [`Vocab::to_text`]. Errors with
    /// [`Error::InvalidArgument`] naming the problem if the text is not such a file or its
    /// fingerprint does not match its tokens.
    pub fn parse(text: &str) -> Result<Vocab> {
        parse(text).map_err(|problem| {
            Error::invalid(format!(
                "not a metalearn vocabulary: {problem}; store the text of Vocab::to_text unchanged"
            ))
        })
    }

    /// [`Vocab::parse`] of bytes, which must be UTF-8.
    pub fn from_bytes(bytes: &[u8]) -> Result<Vocab> {
        let text = std::str::from_utf8(bytes).map_err(|e| {
            Error::invalid(format!(
                "not a metalearn vocabulary: not UTF-8 ({e}); store the text of Vocab::to_text unchanged"
            ))
        })?;
        Vocab::parse(text)
    }

    /// Writes [`Vocab::to_text`] to `path`.
    pub fn save(&self, path: &Path) -> Result<()> {
        std::fs::write(path, self.to_text()).map_err(|e| Error::io(path, e))
    }

    /// Reads a vocabulary file written by [`Vocab::save`]; errors with [`Error::Data`] naming
    /// the file if it is malformed.
    pub fn load(path: &Path) -> Result<Vocab> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        let text = std::str::from_utf8(&bytes).map_err(|_| "not UTF-8".to_string());
        text.and_then(parse).map_err(|problem| Error::Data {
            path: path.to_path_buf(),
            problem: format!("not a metalearn vocabulary: {problem}"),
            hint: "Give the vocabulary file stored with the checkpoint, unchanged".into(),
        })
    }

    /// Checks that this vocabulary is `expected` (the one a checkpoint was trained with):
    /// same tokenizer, same size, same tokens. Errors with [`Error::Config`] naming both and
    /// the fix otherwise.
    pub fn check_matches(&self, expected: &Vocab) -> Result<()> {
        if self.kind == expected.kind
            && self.len() == expected.len()
            && self.fingerprint() == expected.fingerprint()
        {
            return Ok(());
        }
        let what = if self.kind != expected.kind {
            "a different tokenizer"
        } else if self.len() != expected.len() {
            "a different size"
        } else {
            "the same size but different tokens"
        };
        Err(Error::Config {
            origin: "vocabulary".into(),
            problem: format!(
                "the data is tokenized with a {}, but the checkpoint expects a {} ({what})",
                self.describe(),
                expected.describe()
            ),
            hint: "Tokenize with the vocabulary stored with the checkpoint (Vocab::load or \
                   Vocab::parse of it) instead of building a new one, or start a new run"
                .into(),
        })
    }
}

fn fingerprint_tokens(tokens: &[String]) -> u64 {
    let mut bytes = Vec::new();
    for t in tokens {
        bytes.extend_from_slice(t.as_bytes());
        bytes.push(b'\n');
    }
    fnv1a64(&bytes)
}

fn parse(text: &str) -> std::result::Result<Vocab, String> {
    let mut lines = text.split('\n');
    let header = lines.next().unwrap_or_default();
    let fields: Vec<&str> = header.split(' ').collect();
    let field = |key: &str| -> std::result::Result<&str, String> {
        let prefix = format!("{key}=");
        fields
            .iter()
            .find_map(|f| f.strip_prefix(prefix.as_str()))
            .ok_or_else(|| format!("the header line has no `{key}=`"))
    };
    match fields.as_slice() {
        [MAGIC, VERSION, ..] => {}
        [MAGIC, v, ..] => return Err(format!("format version {v} is not {VERSION}")),
        _ => {
            return Err(format!(
                "the first line does not start with `{MAGIC} {VERSION}`"
            ))
        }
    }
    let v: usize = field("v")?
        .parse()
        .map_err(|_| "the header's `v=` is not a number".to_string())?;
    let fingerprint = u64::from_str_radix(field("fnv1a64")?, 16)
        .map_err(|_| "the header's `fnv1a64=` is not a hexadecimal number".to_string())?;
    let mut tokens: Vec<String> = Vec::new();
    for line in lines {
        tokens.push(line.to_string());
    }
    // The text ends with a newline, which leaves one empty piece.
    if tokens.last().is_some_and(String::is_empty) {
        tokens.pop();
    }
    let vocab = match fields.get(2).copied() {
        Some("byte") => {
            if v != 256 || !tokens.is_empty() {
                return Err(format!(
                    "a byte vocabulary has v=256 and no token lines, found v={v} and {} lines",
                    tokens.len()
                ));
            }
            Vocab::bytes()
        }
        Some("word") => {
            let lowercase = match field("lowercase")? {
                "true" => true,
                "false" => false,
                other => return Err(format!("`lowercase={other}` is neither true nor false")),
            };
            let split_punctuation = match field("punctuation")? {
                "split" => true,
                "keep" => false,
                other => return Err(format!("`punctuation={other}` is neither split nor keep")),
            };
            if tokens.len() != v + 2 {
                return Err(format!(
                    "the header says v={v} words (+ <unk>, <eos>) but {} token lines follow; \
                     the file is truncated or edited",
                    tokens.len()
                ));
            }
            if tokens.first().map(String::as_str) != Some(UNK)
                || tokens.get(1).map(String::as_str) != Some(EOS)
            {
                return Err(format!("the first two tokens must be {UNK} and {EOS}"));
            }
            if let Some((i, t)) = tokens
                .iter()
                .enumerate()
                .find(|(_, t)| t.is_empty() || t.contains(char::is_whitespace))
            {
                return Err(format!(
                    "token line {} ({t:?}) is empty or holds whitespace",
                    i + 2
                ));
            }
            let vocab = Vocab::words(
                VocabKind::Word {
                    lowercase,
                    split_punctuation,
                },
                tokens,
            );
            if vocab.ids.len() != v || vocab.ids.contains_key(UNK) || vocab.ids.contains_key(EOS) {
                return Err("a token is listed twice".into());
            }
            vocab
        }
        other => {
            return Err(format!(
                "kind {:?} is neither `word` nor `byte`",
                other.unwrap_or("")
            ))
        }
    };
    if vocab.fingerprint() != fingerprint {
        return Err(format!(
            "the tokens hash to fnv1a64={:016x}, not {fingerprint:016x} as the header says; \
             the file is corrupt or edited",
            vocab.fingerprint()
        ));
    }
    Ok(vocab)
}

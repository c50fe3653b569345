//! Integration tests for the text corpora: readers on generated directories and files, the
//! split, the vocabularies and the chunk stream. Only `linux_doc_package_when_installed` reads
//! the Debian package, and it is skipped with a note when the package is absent.

mod common;

use common::temp::TempDir;
use std::path::Path;

use metalearn::data::text::{
    parse_wikitext, read_linux_doc, read_text_dir, read_text_dir_with, read_wikitext,
    read_wikitext_file, split::name_fraction, split_documents, split_words, strip_rst, Chunk,
    ChunkArrays, DirOptions, Document, DocumentStream, SkipReason, SplitFractions, Vocab,
    VocabKind, WordOptions, LINUX_DOC_DIR,
};
use metalearn::Error;

fn doc(name: &str, text: &str) -> Document {
    Document {
        name: name.into(),
        text: text.into(),
    }
}

/// Asserts an error of the variant `matches` accepts whose message contains every needle.
fn assert_error<T: std::fmt::Debug>(
    result: metalearn::Result<T>,
    matches: fn(&Error) -> bool,
    needles: &[&str],
) {
    match result {
        Err(e) if matches(&e) => {
            let msg = e.to_string();
            for n in needles {
                assert!(msg.contains(n), "message {msg:?} lacks {n:?}");
            }
        }
        other => panic!("expected an error containing {needles:?}, got {other:?}"),
    }
}

fn is_data(e: &Error) -> bool {
    matches!(e, Error::Data { .. })
}

fn is_invalid(e: &Error) -> bool {
    matches!(e, Error::InvalidArgument(_))
}

// ---- directory reader

#[test]
fn directory_reader_is_recursive_sorted_and_counts_skipped_files() {
    let dir = TempDir::new("dir");
    dir.write("b.txt", b"second file\r\nwith CRLF\r\n");
    dir.write("a/z.txt", "\u{feff}nested ünïcode".as_bytes());
    dir.write("a/y.md", b"markdown too");
    dir.write("bin.dat", b"ELF\0\x01\x02");
    dir.write("latin1.txt", b"caf\xe9");
    dir.write("blank.txt", b"  \n\t\n");
    dir.write("empty.txt", b"");
    dir.write(".hidden/x.txt", b"not read");
    let corpus = read_text_dir(&dir.0).unwrap();
    let names: Vec<&str> = corpus.documents.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(names, ["a/y.md", "a/z.txt", "b.txt"]);
    assert_eq!(corpus.documents[1].text, "nested ünïcode");
    assert_eq!(corpus.documents[2].text, "second file\nwith CRLF\n");
    let skipped: Vec<(&str, &SkipReason)> = corpus
        .skipped
        .iter()
        .map(|s| (s.name.as_str(), &s.reason))
        .collect();
    assert_eq!(
        skipped,
        [
            ("bin.dat", &SkipReason::Binary),
            ("blank.txt", &SkipReason::Empty),
            ("empty.txt", &SkipReason::Empty),
            ("latin1.txt", &SkipReason::NotUtf8),
        ]
    );
    let summary = corpus.summary();
    assert_eq!(
        (
            summary.documents,
            summary.skipped_binary,
            summary.skipped_not_utf8,
            summary.skipped_empty,
            summary.skipped()
        ),
        (3, 1, 1, 2, 4)
    );
    assert!(summary.to_string().contains("3 documents"), "{summary}");
    // The same directory reads the same way again.
    assert_eq!(read_text_dir(&dir.0).unwrap(), corpus);
}

#[test]
fn directory_reader_options_select_suffix_exclude_and_transform() {
    let dir = TempDir::new("options");
    dir.write("x.rst.txt", b"Title\n=====\n\nBody.\n");
    dir.write("notes.txt", b"other");
    dir.write("translations/de/x.rst.txt", b"Titel\n=====\n");
    dir.write(
        "sub/only-markup.rst.txt",
        b".. toctree::\n   :maxdepth: 1\n\n   a\n",
    );
    let options = DirOptions {
        suffix: ".rst.txt".into(),
        exclude: vec!["translations".into()],
        transform: Some(strip_rst),
    };
    let corpus = read_text_dir_with(&dir.0, &options).unwrap();
    assert_eq!(corpus.documents, [doc("x.rst.txt", "Title\n\nBody.\n")]);
    assert_eq!(corpus.skipped.len(), 1);
    assert_eq!(corpus.skipped[0].name, "sub/only-markup.rst.txt");
    assert_eq!(corpus.skipped[0].reason, SkipReason::Empty);
}

#[test]
fn empty_or_unreadable_corpora_are_errors_naming_the_directory() {
    let dir = TempDir::new("empty");
    let shown = dir.0.display().to_string();
    assert_error(
        read_text_dir(&dir.0),
        is_data,
        &[&shown, "no files found", "UTF-8 text files"],
    );
    dir.write("a.bin", b"\0\0");
    dir.write("b.txt", b"\xff\xfe");
    assert_error(
        read_text_dir(&dir.0),
        is_data,
        &[
            &shown,
            "all 2 files were skipped",
            "a.bin (binary",
            "b.txt (not valid UTF-8)",
        ],
    );
    let missing = dir.0.join("missing");
    assert_error(read_text_dir(&missing), is_data, &["does not exist"]);
    let file = dir.write("file.txt", b"text");
    assert_error(read_text_dir(&file), is_data, &["not a directory"]);
    assert_error(
        read_linux_doc(&missing),
        is_data,
        &["apt-get install linux-doc-6.1"],
    );
}

#[test]
fn linux_doc_reader_on_a_generated_tree() {
    let dir = TempDir::new("linux-doc");
    let sources = "html/_sources";
    dir.write(
        &format!("{sources}/core-api/kobject.rst.txt"),
        b".. SPDX-License-Identifier: GPL-2.0\n\n.. _kobject:\n\n=======\nKobject\n=======\n\n\
          :Author: Greg\n\nA kobject::\n\n    struct kobject k;\n\n.. note::\n   Careful.\n",
    );
    dir.write(
        &format!("{sources}/index.rst.txt"),
        b".. toctree::\n   :maxdepth: 2\n\n   core-api/kobject\n",
    );
    dir.write(
        &format!("{sources}/translations/it_IT/index.rst.txt"),
        b"Indice\n",
    );
    dir.write(&format!("{sources}/_static/x.js"), b"var x;");
    let corpus = read_linux_doc(&dir.0).unwrap();
    assert_eq!(
        corpus.documents,
        [doc(
            "core-api/kobject.rst.txt",
            "Kobject\n\n:Author: Greg\n\nA kobject:\n\n    struct kobject k;\n\n   Careful.\n"
        )]
    );
    assert_eq!(corpus.summary().skipped_empty, 1);
}

#[test]
fn linux_doc_package_when_installed() {
    let root = Path::new(LINUX_DOC_DIR);
    if !root.is_dir() {
        eprintln!("skipping: {LINUX_DOC_DIR} is absent (apt-get install linux-doc-6.1)");
        return;
    }
    let start = std::time::Instant::now();
    let corpus = read_linux_doc(root).unwrap();
    let elapsed = start.elapsed();
    let summary = corpus.summary();
    eprintln!("{summary}; read in {elapsed:.2?}");
    assert!(summary.documents > 2000, "{summary}");
    assert!(
        (1_000..20_000).contains(&summary.median_bytes),
        "median document length is odd: {summary}"
    );
    assert!(corpus
        .documents
        .iter()
        .all(|d| !d.name.starts_with("translations/")));
    assert!(corpus.documents.windows(2).all(|w| w[0].name < w[1].name));
    let markup = corpus
        .documents
        .iter()
        .flat_map(|d| d.text.lines())
        .filter(|l| l.starts_with(".. ") && l.contains("::"))
        .count();
    assert_eq!(markup, 0, "directive lines left at column 0");
}

// ---- reST markup

#[test]
fn rst_stripping_keeps_prose_and_literal_text() {
    let text = "\
.. SPDX-License-Identifier: GPL-2.0
.. |ver| replace:: 6.1

.. _intro:

============
Introduction
============

Some *prose* with ``code``.

.. contents:: :local:

.. code-block:: sh
   :caption: shell

   $ make -j2
   ================

Usage
-----

Run it like this::

    ./run --flag
    .. literal, not a comment

.. flat-table:: Table
   :header-rows: 1

   * - cell one
     - cell two

.. raw:: latex

   \\newpage

Done.
";
    let expected = "\
Introduction

Some *prose* with ``code``.

   $ make -j2
   ================

Usage

Run it like this:

    ./run --flag
    .. literal, not a comment

   * - cell one
     - cell two

Done.
";
    assert_eq!(strip_rst(text), expected);
}

// ---- WikiText

const WIKI: &str = " \n = Valkyria Chronicles III = \n \n Senjō no Valkyria 3 : <unk> Chronicles . \n \n = = Gameplay = = \n \n As with previous games , play @-@ style . \n \n = Tower Building = \n \n The tower is tall . \n";

#[test]
fn wikitext_articles_split_on_top_level_headings() {
    let docs = parse_wikitext(WIKI, Path::new("wiki.train.tokens")).unwrap();
    assert_eq!(
        docs,
        [
            doc(
                "Valkyria Chronicles III",
                "Senjō no Valkyria 3 : <unk> Chronicles .\n= = Gameplay = =\nAs with previous games , play @-@ style .\n"
            ),
            doc("Tower Building", "The tower is tall .\n"),
        ]
    );
}

#[test]
fn wikitext_files_keep_their_own_split() {
    let dir = TempDir::new("wikitext");
    dir.write("wiki.train.tokens", WIKI.as_bytes());
    dir.write("wiki.valid.tokens", b" = Valid = \n one two \n");
    dir.write(
        "wiki.test.tokens",
        b" = Test = \n three \n = Other = \n four \n",
    );
    let splits = read_wikitext(&dir.0).unwrap();
    assert_eq!(
        (splits.train.len(), splits.valid.len(), splits.test.len()),
        (2, 1, 2)
    );
    assert_eq!(splits.test[1], doc("Other", "four\n"));
    std::fs::remove_file(dir.0.join("wiki.test.tokens")).unwrap();
    assert_error(
        read_wikitext(&dir.0),
        |e| matches!(e, Error::Io { .. }),
        &["wiki.test.tokens"],
    );
}

#[test]
fn malformed_wikitext_is_an_error_naming_the_problem() {
    let path = Path::new("wiki.valid.tokens");
    assert_error(
        parse_wikitext("", path),
        is_data,
        &["wiki.valid.tokens", "empty"],
    );
    assert_error(parse_wikitext(" \n \n", path), is_data, &["empty"]);
    assert_error(
        parse_wikitext(" some words \n = = Not top = = \n", path),
        is_data,
        &["line 1 has text before the first article heading"],
    );
    assert_error(
        parse_wikitext(
            " = First = \n body \n = Empty = \n \n = Third = \n x \n",
            path,
        ),
        is_data,
        &["`Empty` (heading on line 3) has no text"],
    );
    assert_error(
        parse_wikitext(" = Last = \n", path),
        is_data,
        &["`Last` (heading on line 1) has no text"],
    );
    let dir = TempDir::new("wikitext-bad");
    let bin = dir.write("wiki.train.tokens", b" = A = \n \0 \n");
    assert_error(read_wikitext_file(&bin), is_data, &["binary"]);
    let latin = dir.write("wiki.valid.tokens", b" = A = \n caf\xe9 \n");
    assert_error(read_wikitext_file(&latin), is_data, &["not valid UTF-8"]);
}

// ---- split

fn many_docs(n: usize) -> Vec<Document> {
    (0..n)
        .map(|i| doc(&format!("dir{}/file-{i}.txt", i % 7), &format!("text {i}")))
        .collect()
}

#[test]
fn split_is_deterministic_by_name_and_follows_the_fractions() {
    let docs = many_docs(10_000);
    let splits = split_documents(docs.clone(), SplitFractions::default()).unwrap();
    let (train, valid, test) = (splits.train.len(), splits.valid.len(), splits.test.len());
    assert_eq!(train + valid + test, 10_000);
    assert!((8_800..9_200).contains(&train), "{train}");
    assert!((400..600).contains(&valid), "{valid}");
    assert!((400..600).contains(&test), "{test}");
    // A document's split depends on its name only: reversing the corpus or taking a part of
    // it puts every document in the same split.
    let mut reversed = docs.clone();
    reversed.reverse();
    let again = split_documents(reversed, SplitFractions::default()).unwrap();
    let mut names: Vec<&str> = again.valid.iter().map(|d| d.name.as_str()).collect();
    names.reverse();
    assert_eq!(
        names,
        splits
            .valid
            .iter()
            .map(|d| d.name.as_str())
            .collect::<Vec<_>>()
    );
    let part = split_documents(docs[..100].to_vec(), SplitFractions::default()).unwrap();
    assert!(part.test.iter().all(|d| splits.test.contains(d)));
    // The hash is fixed (FNV-1a 64 then the SplitMix64 finaliser, recomputed independently):
    // these values must never change, or the documents of stored splits would move.
    for (name, u) in [
        ("a", 0.010753497314070604),
        ("b", 0.24300683196234507),
        ("index.rst.txt", 0.7971288866800083),
        ("core-api/kobject.rst.txt", 0.49375467313144483),
    ] {
        assert_eq!(name_fraction(name), u, "{name}");
    }
    let half = split_documents(
        docs,
        SplitFractions {
            train: 0.5,
            valid: 0.0,
            test: 0.5,
        },
    )
    .unwrap();
    assert!(half.valid.is_empty());
    assert!((4_800..5_200).contains(&half.train.len()));
}

#[test]
fn bad_split_fractions_are_errors() {
    for (train, valid, test) in [(0.9, 0.05, 0.06), (1.1, -0.05, -0.05), (f64::NAN, 0.5, 0.5)] {
        let fractions = SplitFractions { train, valid, test };
        assert_error(
            split_documents(vec![], fractions),
            is_invalid,
            &["sum to 1"],
        );
    }
}

#[test]
fn split_summary_counts_documents_and_tokens() {
    let splits = split_documents(many_docs(200), SplitFractions::default()).unwrap();
    let vocab = Vocab::build_words(&splits.train, &WordOptions::default()).unwrap();
    let summary = splits.summary(&vocab);
    // Each document is "text N": two words and its end-of-document marker.
    assert_eq!(summary.train.tokens, 3 * summary.train.documents);
    assert_eq!(summary.valid.documents, splits.valid.len());
    assert_eq!(summary.train.unknown, 0);
    let printed = summary.to_string();
    assert!(
        printed.contains("train") && printed.contains("unk %"),
        "{printed}"
    );
    let bytes = splits.summary(&Vocab::bytes());
    assert_eq!(
        bytes.test.tokens,
        splits.test.iter().map(|d| d.text.len() + 1).sum::<usize>()
    );
}

// ---- tokenizers and vocabularies

#[test]
fn words_split_on_whitespace_and_punctuation() {
    assert_eq!(
        split_words("Don't stop_here, v6.1!  ünï\tOK", false, true),
        [
            "Don",
            "'",
            "t",
            "stop_here",
            ",",
            "v6",
            ".",
            "1",
            "!",
            "ünï",
            "OK"
        ]
    );
    assert_eq!(
        split_words("Don't STOP", true, true),
        ["don", "'", "t", "stop"]
    );
    assert_eq!(
        split_words(" a @-@ b <unk> ", false, false),
        ["a", "@-@", "b", "<unk>"]
    );
    assert!(split_words(" \n\t ", false, true).is_empty());
}

#[test]
fn word_vocabulary_orders_by_frequency_then_token() {
    let train = [doc("1", "b a c a b a d"), doc("2", "c e <unk> <eos>")];
    // a: 3, b: 2, c: 2, d: 1, e: 1; <unk> and <eos> in the text are not words.
    let options = WordOptions {
        size: 4,
        ..WordOptions::default()
    };
    let vocab = Vocab::build_words(&train, &options).unwrap();
    let tokens: Vec<&str> = (0..vocab.len() as u32)
        .map(|i| vocab.token(i).unwrap())
        .collect();
    assert_eq!(tokens, ["<unk>", "<eos>", "a", "b", "c", "d"]);
    assert_eq!(
        (vocab.len(), vocab.size(), vocab.eos(), vocab.unk()),
        (6, 4, 1, Some(0))
    );
    assert_eq!(vocab.encode("a e d zzz <unk> <eos>"), [2, 0, 5, 0, 0, 0]);
    assert_eq!(vocab.decode(&[2, 3, 1, 99]), "a b <eos> <unk>");
    // Fewer distinct words than asked for: all of them.
    let all = Vocab::build_words(&train, &WordOptions::default()).unwrap();
    assert_eq!(all.size(), 5);
    let lower = Vocab::build_words(
        &[doc("x", "The the THE")],
        &WordOptions {
            lowercase: true,
            ..WordOptions::default()
        },
    )
    .unwrap();
    assert_eq!((lower.size(), lower.encode("tHe")), (1, vec![2]));
}

#[test]
fn word_vocabulary_errors() {
    let options = WordOptions {
        size: 0,
        ..WordOptions::default()
    };
    assert_error(
        Vocab::build_words(&[doc("a", "x")], &options),
        is_invalid,
        &["size 0"],
    );
    assert_error(
        Vocab::build_words(&[doc("a", " \n ")], &WordOptions::default()),
        is_invalid,
        &["hold no word"],
    );
    assert_error(
        Vocab::build_words(&[], &WordOptions::default()),
        is_invalid,
        &["no word"],
    );
}

#[test]
fn byte_tokenizer_round_trips() {
    let vocab = Vocab::bytes();
    let text = "héllo, wörld ✓\n\tend";
    let ids = vocab.encode(text);
    assert_eq!(ids.len(), text.len());
    assert!(ids.iter().all(|&i| i < 256));
    assert_eq!(vocab.decode(&ids), text);
    assert_eq!((vocab.len(), vocab.eos(), vocab.unk()), (256, 0, None));
    assert_eq!(vocab.kind(), VocabKind::Byte);
    assert_eq!(vocab.decode(&[104, 1000, 0xc3]), "h\u{fffd}\u{fffd}");
}

#[test]
fn vocabulary_text_round_trips_exactly() {
    let train = [
        doc("1", "the cat sat on the mat , the end ."),
        doc("2", "Ünïcode ✓ words"),
    ];
    let vocab = Vocab::build_words(&train, &WordOptions::default()).unwrap();
    let text = vocab.to_text();
    assert!(
        text.starts_with("metalearn-vocab 1 word v=11 lowercase=false punctuation=split fnv1a64=")
    );
    assert_eq!(text.lines().count(), 1 + 13);
    let back = Vocab::parse(&text).unwrap();
    assert_eq!(back, vocab);
    assert_eq!(back.to_text(), text);
    assert_eq!(back.fingerprint(), vocab.fingerprint());
    assert_eq!(Vocab::from_bytes(text.as_bytes()).unwrap(), vocab);
    let bytes = Vocab::bytes();
    assert_eq!(Vocab::parse(&bytes.to_text()).unwrap(), bytes);
    let dir = TempDir::new("vocab");
    let path = dir.0.join("vocab.txt");
    vocab.save(&path).unwrap();
    assert_eq!(Vocab::load(&path).unwrap(), vocab);
    let whitespace = Vocab::build_words(
        &train,
        &WordOptions {
            split_punctuation: false,
            lowercase: true,
            size: 3,
        },
    )
    .unwrap();
    assert_eq!(Vocab::parse(&whitespace.to_text()).unwrap(), whitespace);
}

#[test]
fn corrupt_vocabulary_files_are_errors() {
    let vocab = Vocab::build_words(&[doc("1", "a b b c c c")], &WordOptions::default()).unwrap();
    let text = vocab.to_text();
    let cases: Vec<(String, &str)> = vec![
        (String::new(), "first line"),
        ("hello\n".into(), "first line"),
        (
            text.replace("metalearn-vocab 1", "metalearn-vocab 2"),
            "version 2",
        ),
        (text.replace("v=3", "v=4"), "truncated or edited"),
        (text.replace("\nb\n", "\nB\n"), "corrupt or edited"),
        (text.replace("\nb\n", "\nc\n"), "listed twice"),
        (text.replace("\nb\n", "\nb x\n"), "whitespace"),
        (
            text.replace(" word ", " char "),
            "neither `word` nor `byte`",
        ),
        (
            text.replace("lowercase=false", "lowercase=maybe"),
            "neither true nor false",
        ),
        (text.replace("<unk>", "<UNK>"), "first two tokens"),
        (text.replace("fnv1a64=", "fnv="), "no `fnv1a64=`"),
        ("metalearn-vocab 1 byte v=257 fnv1a64=0\n".into(), "v=256"),
    ];
    for (bad, needle) in cases {
        assert_error(Vocab::parse(&bad), is_invalid, &[needle, "Vocab::to_text"]);
    }
    assert_error(Vocab::from_bytes(b"\xff\xfe"), is_invalid, &["not UTF-8"]);
    let dir = TempDir::new("vocab-bad");
    let path = dir.write("vocab.txt", b"\0\0\0");
    assert_error(
        Vocab::load(&path),
        is_data,
        &["vocab.txt", "not a metalearn vocabulary"],
    );
    assert_error(
        Vocab::load(&dir.0.join("missing.txt")),
        |e| matches!(e, Error::Io { .. }),
        &["missing.txt"],
    );
}

#[test]
fn mismatching_vocabularies_are_errors_naming_the_fix() {
    let train = [doc("1", "a b b c c c")];
    let words = Vocab::build_words(&train, &WordOptions::default()).unwrap();
    assert!(words.check_matches(&words.clone()).is_ok());
    let is_config = |e: &Error| matches!(e, Error::Config { .. });
    assert_error(
        Vocab::bytes().check_matches(&words),
        is_config,
        &[
            "a different tokenizer",
            "vocabulary stored with the checkpoint",
        ],
    );
    let smaller = Vocab::build_words(
        &train,
        &WordOptions {
            size: 2,
            ..WordOptions::default()
        },
    )
    .unwrap();
    assert_error(
        smaller.check_matches(&words),
        is_config,
        &["a different size", "2 words", "3 words"],
    );
    let other = Vocab::build_words(&[doc("1", "x y y z z z")], &WordOptions::default()).unwrap();
    assert_error(
        other.check_matches(&words),
        is_config,
        &["different tokens"],
    );
}

// ---- chunk stream

/// Documents whose ids say where they are: document d's token p is 1000·(d+1) + p.
fn numbered_docs(lengths: &[usize]) -> Vec<Vec<u32>> {
    lengths
        .iter()
        .enumerate()
        .map(|(d, &m)| (1..=m as u32).map(|p| 1000 * (d as u32 + 1) + p).collect())
        .collect()
}

fn check_chunk_consistency(chunk: &Chunk, docs: &[Vec<u32>], eos: u32) {
    let width = chunk.length + 1;
    assert_eq!(chunk.tokens.len(), chunk.instances * width);
    assert_eq!(chunk.positions.len(), chunk.tokens.len());
    assert_eq!(chunk.starts.len(), chunk.tokens.len());
    assert_eq!(chunk.documents.len(), chunk.tokens.len());
    for n in 0..chunk.instances {
        let row = chunk.row(n).unwrap();
        assert_eq!(chunk.inputs(n).unwrap(), &row[..chunk.length]);
        assert_eq!(chunk.targets(n).unwrap(), &row[1..]);
        for k in 0..width {
            let i = n * width + k;
            let (pos, d) = (chunk.positions[i] as usize, chunk.documents[i] as usize);
            assert_eq!(chunk.starts[i], pos == 0);
            let expected = if pos == 0 { eos } else { docs[d][pos - 1] };
            assert_eq!(chunk.tokens[i], expected, "row {n} column {k}");
            if k > 0 && !chunk.starts[i] {
                // Within a document, positions count up by one.
                assert_eq!(chunk.positions[i - 1] as usize + 1, pos);
                assert_eq!(chunk.documents[i - 1] as usize, d);
            }
            if k > 0 && chunk.starts[i] {
                // A document starts right after the previous one ended.
                let prev = chunk.documents[i - 1] as usize;
                assert_eq!(chunk.positions[i - 1] as usize, docs[prev].len());
            }
        }
    }
    let arrays = chunk.arrays();
    let l = chunk.length;
    assert_eq!(arrays.inputs.len(), chunk.instances * l);
    for n in 0..chunk.instances {
        assert_eq!(&arrays.inputs[n * l..(n + 1) * l], chunk.inputs(n).unwrap());
        assert_eq!(
            &arrays.targets[n * l..(n + 1) * l],
            chunk.targets(n).unwrap()
        );
        assert_eq!(
            &arrays.starts[n * l..(n + 1) * l],
            &chunk.row_starts(n).unwrap()[..l]
        );
        assert_eq!(
            &arrays.positions[n * l..(n + 1) * l],
            &chunk.row_positions(n).unwrap()[..l]
        );
    }
    assert!(chunk.row(chunk.instances).is_none());
    assert!(chunk.inputs(chunk.instances).is_none());
}

#[test]
fn chunks_have_shapes_targets_positions_and_starts() {
    let docs = numbered_docs(&[5, 1, 12, 3, 0, 8, 2]);
    let eos = 7;
    let (n, l) = (3, 4);
    let mut stream = DocumentStream::new(docs.clone(), eos, n, l, 42).unwrap();
    assert_eq!(
        (stream.instances(), stream.length(), stream.documents()),
        (3, 4, 6)
    );
    // 5+1 + 1+1 + 12+1 + 3+1 + 8+1 + 2+1: the empty document is left out.
    assert_eq!(stream.tokens_per_epoch(), 37);
    let first = stream.next_chunk();
    for row in 0..n {
        assert!(
            first.row_starts(row).unwrap()[0],
            "each instance starts a document"
        );
        assert_eq!(first.row_positions(row).unwrap()[0], 0);
        assert_eq!(first.row(row).unwrap()[0], eos);
    }
    let mut previous = first;
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..40 {
        check_chunk_consistency(&previous, &docs, eos);
        seen.extend(previous.documents.iter().copied());
        let next = stream.next_chunk();
        for row in 0..n {
            // Each chunk starts where the previous one's inputs stopped.
            let i = row * (l + 1);
            assert_eq!(next.tokens[i], previous.tokens[i + l]);
            assert_eq!(next.positions[i], previous.positions[i + l]);
            assert_eq!(next.documents[i], previous.documents[i + l]);
        }
        previous = next;
    }
    assert_eq!(stream.chunks_read(), 41);
    // Every document with a token is read, the empty one (index 4) never.
    assert_eq!(seen.into_iter().collect::<Vec<_>>(), [0, 1, 2, 3, 5, 6]);
}

#[test]
fn each_instance_reads_every_document_once_per_epoch() {
    let docs = numbered_docs(&[3, 4, 5, 6, 7]);
    let mut stream = DocumentStream::new(docs, 0, 1, 5, 3).unwrap();
    let mut order = Vec::new();
    while order.len() < 10 {
        let chunk = stream.next_chunk();
        for k in 0..chunk.length {
            if chunk.starts[k] {
                order.push(chunk.documents[k]);
            }
        }
    }
    let mut epoch0 = order[..5].to_vec();
    let mut epoch1 = order[5..10].to_vec();
    assert_ne!(epoch0, epoch1, "each epoch is shuffled anew");
    epoch0.sort_unstable();
    epoch1.sort_unstable();
    assert_eq!(epoch0, [0, 1, 2, 3, 4]);
    assert_eq!(epoch1, [0, 1, 2, 3, 4]);
}

#[test]
fn instances_start_at_spread_out_documents() {
    let docs = numbered_docs(&[2; 40]);
    let mut stream = DocumentStream::new(docs, 0, 4, 3, 9).unwrap();
    let chunk = stream.next_chunk();
    let firsts: std::collections::BTreeSet<u32> = (0..4).map(|n| chunk.documents[n * 4]).collect();
    assert_eq!(firsts.len(), 4, "instances start at different documents");
}

#[test]
fn chunk_stream_is_deterministic_given_the_seed() {
    let docs = numbered_docs(&[9, 3, 14, 1, 6, 2, 11, 4]);
    let take = |seed| {
        let mut s = DocumentStream::new(docs.clone(), 0, 4, 6, seed).unwrap();
        (0..20).map(|_| s.next_chunk()).collect::<Vec<_>>()
    };
    assert_eq!(take(1), take(1));
    assert_ne!(take(1), take(2));
    // A clone goes on exactly as the original.
    let mut a = DocumentStream::new(docs.clone(), 0, 2, 3, 5).unwrap();
    a.next_chunk();
    let mut b = a.clone();
    assert_eq!(a.next_chunk(), b.next_chunk());
}

#[test]
fn chunk_stream_from_text_with_both_tokenizers() {
    let docs = [doc("a", "Hello there."), doc("b", ""), doc("c", "Bye")];
    let bytes = Vocab::bytes();
    let mut stream = DocumentStream::from_documents(&docs, &bytes, 2, 8, 0).unwrap();
    assert_eq!(stream.documents(), 2);
    let chunk = stream.next_chunk();
    for n in 0..2 {
        let row = chunk.row(n).unwrap();
        let d = chunk.documents[n * 9] as usize;
        let text = &docs[d].text;
        let expected: Vec<u32> = std::iter::once(0)
            .chain(text.bytes().map(u32::from))
            .chain(std::iter::once(0))
            .take(9)
            .collect();
        assert_eq!(&row[..expected.len()], &expected[..]);
    }
    let words = Vocab::build_words(&docs, &WordOptions::default()).unwrap();
    let mut stream = DocumentStream::from_documents(&docs, &words, 1, 3, 0).unwrap();
    let chunk = stream.next_chunk();
    assert_eq!(chunk.tokens[0], words.eos());
    assert!(chunk.tokens.iter().all(|&t| (t as usize) < words.len()));
}

#[test]
fn chunk_stream_errors() {
    let none_long_enough = vec![vec![], vec![]];
    assert_error(
        DocumentStream::new(none_long_enough, 0, 2, 4, 0),
        is_invalid,
        &["none of the 2 documents has at least 2 tokens"],
    );
    assert_error(
        DocumentStream::new(vec![], 0, 2, 4, 0),
        is_invalid,
        &["none of the 0"],
    );
    assert_error(
        DocumentStream::new(vec![vec![1]], 0, 0, 4, 0),
        is_invalid,
        &["0 instances"],
    );
    assert_error(
        DocumentStream::new(vec![vec![1]], 0, 2, 0, 0),
        is_invalid,
        &["of 0 tokens"],
    );
    assert_error(
        DocumentStream::new(vec![vec![1]], 0, usize::MAX / 2, 4, 0),
        is_invalid,
        &["too large"],
    );
    // A single one-token document: every row alternates marker and token.
    let mut s = DocumentStream::new(vec![vec![5]], 0, 2, 5, 0).unwrap();
    assert_eq!(s.next_chunk().row(1).unwrap(), [0, 5, 0, 5, 0, 5]);
}

#[cfg(unix)]
#[test]
fn odd_file_names_and_links_do_not_break_the_reader() {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    let dir = TempDir::new("odd-names");
    std::fs::write(
        dir.0.join(OsStr::from_bytes(b"bad\xffname.txt")),
        b"odd name",
    )
    .unwrap();
    dir.write("real/doc.txt", b"linked");
    std::os::unix::fs::symlink(dir.0.join("real"), dir.0.join("loop")).unwrap();
    std::os::unix::fs::symlink(dir.0.join("real/doc.txt"), dir.0.join("link.txt")).unwrap();
    std::os::unix::fs::symlink(dir.0.join("nowhere"), dir.0.join("broken.txt")).unwrap();
    let corpus = read_text_dir(&dir.0).unwrap();
    let names: Vec<&str> = corpus.documents.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(names, ["bad\u{fffd}name.txt", "link.txt", "real/doc.txt"]);
    assert_eq!(corpus.skipped.len(), 1);
    assert_eq!(corpus.skipped[0].name, "broken.txt");
    assert!(matches!(
        corpus.skipped[0].reason,
        SkipReason::Unreadable(_)
    ));
}

#[test]
fn random_text_never_panics_the_parsers() {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha12Rng::seed_from_u64(11);
    let pieces = [
        ".. ",
        "::",
        " ",
        "\t",
        "\n",
        "=",
        "= ",
        " =",
        "-",
        "*",
        "+",
        "|",
        "_",
        ":",
        "[",
        "]",
        "a",
        "é",
        "<unk>",
        "<eos>",
        "metalearn-vocab 1 word v=",
        "\r",
        "\u{feff}",
        "\0",
        "x::",
        "1",
    ];
    let vocab = Vocab::build_words(&[doc("t", "a b c = :: é")], &WordOptions::default()).unwrap();
    for _ in 0..300 {
        let len = rng.random_range(0..60);
        let text: String = (0..len)
            .map(|_| pieces[rng.random_range(0..pieces.len())])
            .collect();
        let stripped = strip_rst(&text);
        assert!(!stripped.starts_with('\n'));
        let _ = parse_wikitext(&text, Path::new("random"));
        let _ = Vocab::parse(&text);
        let ids = vocab.encode(&text);
        assert!(ids.iter().all(|&i| (i as usize) < vocab.len()));
        let _ = vocab.decode(&ids);
        assert_eq!(Vocab::bytes().decode(&Vocab::bytes().encode(&text)), text);
        let _ = split_words(&text, true, true);
    }
}

#[test]
fn chunks_join_without_a_gap_and_feed_the_reference_language_model() {
    use metalearn::tasks::lm::{reference, LmSpec, TokenChunk};
    use rand::SeedableRng;
    let docs = [
        doc("a", "one short"),
        doc("b", "x"),
        doc("c", "a longer document, read over chunks"),
    ];
    let vocab = Vocab::bytes();
    let l = 6;
    let mut short = DocumentStream::from_documents(&docs, &vocab, 2, l, 4).unwrap();
    let mut long = DocumentStream::from_documents(&docs, &vocab, 2, 3 * l, 4).unwrap();
    let parts: Vec<_> = (0..3).map(|_| short.next_chunk().arrays()).collect();
    let whole = long.next_chunk().arrays();
    for n in 0..2 {
        let joined = |f: fn(&ChunkArrays) -> &[u32]| -> Vec<u32> {
            parts
                .iter()
                .flat_map(|p| f(p)[n * l..(n + 1) * l].to_vec())
                .collect()
        };
        let of_whole =
            |f: fn(&ChunkArrays) -> &[u32]| f(&whole)[n * 3 * l..(n + 1) * 3 * l].to_vec();
        for f in [
            (|a| &a.inputs) as fn(&ChunkArrays) -> &[u32],
            |a| &a.targets,
            |a| &a.positions,
        ] {
            assert_eq!(joined(f), of_whole(f));
        }
    }
    // The chunks are what the language model reads: the f64 reference over three chunks with
    // the state carried gives the per-token losses of one chunk three times as long.
    let spec = LmSpec::new(vocab.len(), 4, 4, 1).unwrap();
    let layout = spec.layout().unwrap();
    let theta: Vec<f64> = spec
        .init(&mut rand_chacha::ChaCha12Rng::seed_from_u64(0), 1)
        .unwrap()
        .into_iter()
        .map(f64::from)
        .collect();
    fn row(a: &ChunkArrays, len: usize) -> reference::Chunk<'_> {
        reference::Chunk {
            tokens: &a.inputs[..len],
            targets: &a.targets[..len],
            starts: &a.starts[..len],
        }
    }
    let mut state = vec![0.0; spec.state_len()];
    let mut losses = Vec::new();
    for part in &parts {
        let out = reference::forward(&spec, &layout, &theta, &state, row(part, l)).unwrap();
        losses.extend(out.token_losses);
        state = out.state;
    }
    let zero = vec![0.0; spec.state_len()];
    let once = reference::forward(&spec, &layout, &theta, &zero, row(&whole, 3 * l)).unwrap();
    for (a, b) in losses.iter().zip(&once.token_losses) {
        assert!((a - b).abs() < 1e-12, "{a} vs {b}");
    }
    let _ = TokenChunk {
        tokens: &whole.inputs,
        targets: &whole.targets,
        starts: &whole.starts,
    };
}

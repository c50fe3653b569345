//! Read a text corpus, split it, build a vocabulary and draw chunks for an LSTM language model:
//! prints the corpus, the split and the stream, and stores the vocabulary.
//!
//! `cargo run --release --example text_corpus -- [DIR] [--wikitext] [--bytes] [--vocab-out FILE]`
//!
//! Without DIR it reads Debian's `linux-doc-6.1` (`apt-get install linux-doc-6.1`); with a
//! DIR, every file under it (or, with `--wikitext`, its `wiki.{train,valid,test}.tokens`).
use std::path::{Path, PathBuf};
use std::time::Instant;

use metalearn::data::text::{
    read_linux_doc, read_text_dir, read_wikitext, split_documents, DocumentStream, SplitFractions,
    Vocab, WordOptions, LINUX_DOC_DIR,
};

fn main() -> metalearn::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let flag = |name: &str| args.iter().any(|a| a == name);
    let vocab_out = args
        .iter()
        .position(|a| a == "--vocab-out")
        .and_then(|i| args.get(i + 1))
        .map(PathBuf::from);
    let dir = args
        .iter()
        .enumerate()
        .find(|(i, a)| !a.starts_with("--") && (*i == 0 || args[i - 1] != "--vocab-out"))
        .map(|(_, a)| PathBuf::from(a));

    let start = Instant::now();
    let splits = match (&dir, flag("--wikitext")) {
        (Some(dir), true) => read_wikitext(dir)?,
        (dir, _) => {
            let corpus = match dir {
                Some(dir) => read_text_dir(dir)?,
                None => read_linux_doc(Path::new(LINUX_DOC_DIR))?,
            };
            println!("{}", corpus.summary());
            split_documents(corpus.documents, SplitFractions::default())?
        }
    };
    println!("read and split in {:.2?}", start.elapsed());

    let start = Instant::now();
    let vocab = if flag("--bytes") {
        Vocab::bytes()
    } else {
        let options = WordOptions {
            // WikiText is tokenized already: split it on whitespace only.
            split_punctuation: !flag("--wikitext"),
            ..WordOptions::default()
        };
        Vocab::build_words(&splits.train, &options)?
    };
    println!("vocabulary built in {:.2?}", start.elapsed());
    print!("{}", splits.summary(&vocab));

    let start = Instant::now();
    let mut stream = DocumentStream::from_documents(&splits.train, &vocab, 32, 64, 0)?;
    let chunks = 100;
    let mut starts = 0;
    for _ in 0..chunks {
        starts += stream.next_chunk().starts.iter().filter(|&&s| s).count();
    }
    println!(
        "{chunks} chunks of [32, 65] in {:.2?}; {starts} document starts; {} tokens per epoch",
        start.elapsed(),
        stream.tokens_per_epoch()
    );
    let first = DocumentStream::from_documents(&splits.train, &vocab, 1, 24, 0)?.next_chunk();
    println!(
        "first chunk of instance 0: {:?}",
        vocab.decode(&first.tokens)
    );

    if let Some(path) = vocab_out {
        vocab.save(&path)?;
        println!("vocabulary written to {}", path.display());
    }
    Ok(())
}

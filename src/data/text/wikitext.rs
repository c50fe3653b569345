//! WikiText-2 and WikiText-103 (`wiki.{train,valid,test}.tokens`): one document per article.
//!
//! An article starts at a top-level heading line ` = Title = ` (exactly one `=` on each side)
//! and runs to the next one; ` = = Section = = ` and deeper headings are lines inside the
//! article. The document's name is the title, its text the article's non-blank lines, trimmed,
//! one per line (section headings included, as they are in the files).

use std::path::Path;

use super::{decode, split::Splits, Document};
use crate::{Error, Result};

const HINT: &str = "Give the WikiText-2 or WikiText-103 token files (wiki.train.tokens, \
     wiki.valid.tokens, wiki.test.tokens), unchanged";

/// The title of a top-level heading line ` = Title = `, if `line` is one.
fn title(line: &str) -> Option<&str> {
    let inner = line.trim().strip_prefix("= ")?.strip_suffix(" =")?;
    let inner = inner.trim();
    let nested = inner.starts_with("= ") || inner.ends_with(" =") || inner == "=";
    (!inner.is_empty() && !nested).then_some(inner)
}

/// Splits the text of a WikiText file into articles. `path` names the file in errors.
///
/// Errors with [`Error::Data`] if the text holds no article, if non-blank text comes before
/// the first heading, or if an article has no text (the line of its heading is given).
pub fn parse_wikitext(text: &str, path: &Path) -> Result<Vec<Document>> {
    let error = |problem: String| Error::Data {
        path: path.to_path_buf(),
        problem,
        hint: HINT.into(),
    };
    let mut documents: Vec<Document> = Vec::new();
    let mut current: Option<(usize, Document)> = None;
    let finish = |current: Option<(usize, Document)>, documents: &mut Vec<Document>| {
        if let Some((line, doc)) = current {
            if doc.text.is_empty() {
                return Err(error(format!(
                    "the article `{}` (heading on line {line}) has no text",
                    doc.name
                )));
            }
            documents.push(doc);
        }
        Ok(())
    };
    for (i, line) in text.lines().enumerate() {
        if let Some(name) = title(line) {
            finish(current.take(), &mut documents)?;
            let doc = Document {
                name: name.to_string(),
                text: String::new(),
            };
            current = Some((i + 1, doc));
            continue;
        }
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        match current.as_mut() {
            Some((_, doc)) => {
                doc.text.push_str(line);
                doc.text.push('\n');
            }
            None => {
                return Err(error(format!(
                    "line {} has text before the first article heading ` = Title = `; \
                     this is not a WikiText file",
                    i + 1
                )))
            }
        }
    }
    finish(current, &mut documents)?;
    if documents.is_empty() {
        return Err(error("no article: the file is empty".into()));
    }
    Ok(documents)
}

/// Reads one WikiText token file (see [`parse_wikitext`]); a file with a NUL byte or invalid
/// UTF-8 is an [`Error::Data`].
pub fn read_wikitext_file(path: &Path) -> Result<Vec<Document>> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let text = decode(bytes).map_err(|reason| Error::Data {
        path: path.to_path_buf(),
        problem: format!("the file is {reason}"),
        hint: HINT.into(),
    })?;
    parse_wikitext(&text, path)
}

/// Reads `wiki.train.tokens`, `wiki.valid.tokens` and `wiki.test.tokens` from `dir` as the
/// three splits (the files' own split).
pub fn read_wikitext(dir: &Path) -> Result<Splits> {
    let read = |split: &str| read_wikitext_file(&dir.join(format!("wiki.{split}.tokens")));
    Ok(Splits {
        train: read("train")?,
        valid: read("valid")?,
        test: read("test")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headings_are_told_apart() {
        assert_eq!(
            title(" = Valkyria Chronicles III = "),
            Some("Valkyria Chronicles III")
        );
        assert_eq!(title(" = A = B = "), Some("A = B"));
        assert_eq!(title(" = = Gameplay = = "), None);
        assert_eq!(title(" = = = Deeper = = = "), None);
        assert_eq!(title(" = = "), None);
        assert_eq!(title(" = = = "), None);
        assert_eq!(title("= x"), None);
        assert_eq!(title(" The = sign = "), None);
    }
}

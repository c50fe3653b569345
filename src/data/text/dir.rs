//! Reading a directory of text files as a corpus, one document per file, and Debian's
//! `linux-doc-6.1` reST sources as the default corpus.

use std::path::{Path, PathBuf};

use super::{decode, rst::strip_rst, Corpus, Document, SkipReason, SkippedFile};
use crate::{Error, Result};

/// Where Debian's `linux-doc-6.1` package installs the kernel documentation; its reST sources
/// are under `html/_sources/`.
pub const LINUX_DOC_DIR: &str = "/usr/share/doc/linux-doc-6.1";

const LINUX_DOC_HINT: &str = "Install the Debian package with `apt-get install linux-doc-6.1` \
     (it fills /usr/share/doc/linux-doc-6.1/html/_sources) or read another directory of text files";

const DIR_HINT: &str = "Point at a directory holding UTF-8 text files (searched recursively; \
     files with NUL bytes, invalid UTF-8 or no text are skipped)";

/// Which files of a directory become documents, and how their text is prepared.
#[derive(Debug, Clone, Default)]
pub struct DirOptions {
    /// Only files whose name ends with this are read (every file when empty).
    pub suffix: String,
    /// Relative directory paths (with `/` separators, e.g. `translations`) not descended into.
    pub exclude: Vec<String>,
    /// Applied to each file's text before the check for an empty document (e.g. [`strip_rst`]).
    pub transform: Option<fn(&str) -> String>,
}

/// Reads every file under `dir` (recursively) as one document; see [`read_text_dir_with`].
pub fn read_text_dir(dir: &Path) -> Result<Corpus> {
    read_text_dir_with(dir, &DirOptions::default())
}

/// Reads the files under `dir` that `options` selects, one document per file, named by the
/// path relative to `dir` with `/` separators and sorted by that name.
///
/// Entries whose name starts with `.` are ignored, and so are symbolic links to directories
/// (links to files are read). Files holding a NUL byte (binary), invalid UTF-8, only whitespace
/// or that cannot be read are skipped and listed in [`Corpus::skipped`]. Line endings become
/// `\n` and a leading byte-order mark is removed.
///
/// Errors with [`Error::Data`] if `dir` is not a readable directory or holds no readable
/// document.
pub fn read_text_dir_with(dir: &Path, options: &DirOptions) -> Result<Corpus> {
    read_dir_corpus(dir, options, DIR_HINT)
}

/// Reads the reST sources of Debian's `linux-doc-6.1` package installed at `root`
/// ([`LINUX_DOC_DIR`]): every `html/_sources/**/*.rst.txt` outside `translations/`, with the
/// markup lines stripped by [`strip_rst`]. About 2 800 documents.
pub fn read_linux_doc(root: &Path) -> Result<Corpus> {
    let sources = root.join("html").join("_sources");
    if !sources.is_dir() {
        return Err(Error::Data {
            path: sources,
            problem: "the linux-doc reST sources are not there".into(),
            hint: LINUX_DOC_HINT.into(),
        });
    }
    let options = DirOptions {
        suffix: ".rst.txt".into(),
        exclude: vec!["translations".into()],
        transform: Some(strip_rst),
    };
    read_dir_corpus(&sources, &options, LINUX_DOC_HINT)
}

fn read_dir_corpus(dir: &Path, options: &DirOptions, hint: &str) -> Result<Corpus> {
    let data_error = |problem: String| Error::Data {
        path: dir.to_path_buf(),
        problem,
        hint: hint.into(),
    };
    if !dir.is_dir() {
        let problem = if dir.exists() {
            "not a directory"
        } else {
            "directory does not exist"
        };
        return Err(data_error(problem.into()));
    }
    let mut skipped = Vec::new();
    let files = list_files(dir, options, &mut skipped)?;
    let mut documents = Vec::new();
    for (name, path) in files {
        let text = std::fs::read(&path)
            .map_err(|e| SkipReason::Unreadable(e.to_string()))
            .and_then(decode);
        let text = text.map(|t| match options.transform {
            Some(f) => f(&t),
            None => t,
        });
        match text {
            Ok(text) if text.trim().is_empty() => skipped.push(SkippedFile {
                name,
                reason: SkipReason::Empty,
            }),
            Ok(text) => documents.push(Document { name, text }),
            Err(reason) => skipped.push(SkippedFile { name, reason }),
        }
    }
    skipped.sort_by(|a, b| a.name.cmp(&b.name));
    if documents.is_empty() {
        let which = if options.suffix.is_empty() {
            String::new()
        } else {
            format!(" ending in `{}`", options.suffix)
        };
        let problem = if skipped.is_empty() {
            format!("no files{which} found")
        } else {
            let first: Vec<String> = skipped
                .iter()
                .take(3)
                .map(|s| format!("{} ({})", s.name, s.reason))
                .collect();
            format!(
                "no readable document: all {} files{which} were skipped, e.g. {}",
                skipped.len(),
                first.join(", ")
            )
        };
        return Err(data_error(problem));
    }
    Ok(Corpus {
        source: dir.display().to_string(),
        documents,
        skipped,
    })
}

/// The files under `dir` that `options` selects, as (relative name, path), sorted by name.
/// Subdirectories that cannot be listed are recorded in `skipped`.
fn list_files(
    dir: &Path,
    options: &DirOptions,
    skipped: &mut Vec<SkippedFile>,
) -> Result<Vec<(String, PathBuf)>> {
    let mut files = Vec::new();
    let mut pending = vec![(String::new(), dir.to_path_buf())];
    while let Some((prefix, path)) = pending.pop() {
        let entries = match std::fs::read_dir(&path) {
            Ok(entries) => entries,
            Err(e) if prefix.is_empty() => return Err(Error::io(&path, e)),
            Err(e) => {
                skipped.push(SkippedFile {
                    name: prefix,
                    reason: SkipReason::Unreadable(e.to_string()),
                });
                continue;
            }
        };
        for entry in entries {
            let entry = match entry {
                Ok(entry) => entry,
                Err(e) => {
                    skipped.push(SkippedFile {
                        name: prefix.clone(),
                        reason: SkipReason::Unreadable(e.to_string()),
                    });
                    continue;
                }
            };
            let file_name = entry.file_name().to_string_lossy().into_owned();
            if file_name.starts_with('.') {
                continue;
            }
            let name = if prefix.is_empty() {
                file_name.clone()
            } else {
                format!("{prefix}/{file_name}")
            };
            let path = entry.path();
            let is_link = entry.file_type().map(|t| t.is_symlink()).unwrap_or(false);
            let meta = if is_link {
                std::fs::metadata(&path)
            } else {
                entry.metadata()
            };
            match meta {
                Ok(m) if m.is_dir() => {
                    if !is_link && !options.exclude.contains(&name) {
                        pending.push((name, path));
                    }
                }
                Ok(_) => {
                    if file_name.ends_with(&options.suffix) {
                        files.push((name, path));
                    }
                }
                Err(e) => {
                    if file_name.ends_with(&options.suffix) {
                        skipped.push(SkippedFile {
                            name,
                            reason: SkipReason::Unreadable(e.to_string()),
                        });
                    }
                }
            }
        }
    }
    files.sort();
    Ok(files)
}

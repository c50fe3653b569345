//! Stripping reStructuredText markup lines, keeping the prose and the literal text.
//!
//! The rules, line by line (indentation counts a tab as reaching the next multiple of 8):
//!
//! - **Directives** `.. name:: argument`: the directive line goes, and so do the option lines
//!   right after it (indented, of the form `:key: value`, e.g. `:maxdepth: 2`). What follows
//!   depends on the directive: the content of [`DROPPED_DIRECTIVES`] (tables of contents, raw
//!   output, file inclusions, kernel-doc extraction, images, …) goes with it; the content of
//!   [`LITERAL_DIRECTIVES`] (`code-block`, `math`, …) is kept verbatim; any other directive's
//!   content (`note`, `warning`, tables, …) is kept and stripped by the same rules. The argument of
//!   an admonition ([`ADMONITIONS`], as in `.. note:: Read this`) is kept as a line of prose;
//!   other arguments (a language, a function signature, a file) go.
//! - **Comments** (`..` followed by anything that is not one of the other explicit markups,
//!   and a bare `..`), **labels and hyperlink targets** (`.. _label:`, `.. __: URL`) and
//!   **substitution definitions** (`.. |name| replace:: text`) go, with the lines indented under
//!   them.
//! - **Footnotes and citations** (`.. [1] text`, `.. [#name] text`) keep their text; the marker
//!   goes.
//! - **Rules**: a line whose non-blank characters are all one ASCII punctuation character in
//!   runs of at least two (section underlines and overlines — the title line itself stays —
//!   transitions, simple-table borders such as `=====  =====`), and grid-table borders
//!   (`+-----+====+`), go, and so do list items and table cells with nothing in them (a line of
//!   bullets only: `-`, `* -`).
//! - **Literal blocks**: a paragraph ending in `::` becomes one ending in `:` (or loses a
//!   separate ` ::`, and a line of only `::` goes), and the indented block after it is kept
//!   verbatim, with none of these rules applied inside.
//! - Everything else (paragraphs, lists, field lists such as `:Author: name`, inline markup)
//!   is kept as it is. Trailing whitespace is removed, runs of blank lines become one, and
//!   leading and trailing blank lines go.

/// Directives whose whole block (options and content) is removed: their content is not prose.
pub const DROPPED_DIRECTIVES: &[&str] = &[
    "toctree",
    "raw",
    "include",
    "literalinclude",
    "kernel-doc",
    "kernel-include",
    "kernel-abi",
    "kernel-feat",
    "kernel-render",
    "tabularcolumns",
    "contents",
    "sectnum",
    "highlight",
    "index",
    "image",
    "default-role",
    "role",
    "meta",
    "title",
    "cssclass",
    "rst-class",
    "c:namespace",
    "c:namespace-push",
    "c:namespace-pop",
];

/// Directives whose content is literal text, kept verbatim.
pub const LITERAL_DIRECTIVES: &[&str] =
    &["code-block", "code", "sourcecode", "parsed-literal", "math"];

/// Admonitions: their argument, if any, is prose and kept.
pub const ADMONITIONS: &[&str] = &[
    "admonition",
    "attention",
    "caution",
    "danger",
    "error",
    "hint",
    "important",
    "note",
    "tip",
    "warning",
    "seealso",
    "todo",
];

#[derive(Debug, Clone, Copy)]
enum State {
    Normal,
    /// Drop blank lines and lines indented more than this.
    Skip(usize),
    /// Right after a directive at this indentation: drop its option lines, then go on with its
    /// content (literal or not).
    Options {
        indent: usize,
        literal: bool,
    },
    /// After a paragraph ending in `::` at this indentation: blank lines, then the literal block.
    LiteralPending(usize),
    /// Keep blank lines and lines indented more than this verbatim.
    Literal(usize),
}

/// Removes reST markup lines from `text` by the rules of the [module documentation](self).
pub fn strip_rst(text: &str) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut state = State::Normal;
    for line in text.lines() {
        let line = line.trim_end();
        let blank = line.is_empty();
        let ind = indentation(line);
        // Each line is looked at until one state takes it (at most twice).
        loop {
            match state {
                State::Skip(at) => {
                    if blank || ind > at {
                        break;
                    }
                    state = State::Normal;
                }
                State::Options { indent, literal } => {
                    if !blank && ind > indent && is_option(line.trim_start()) {
                        break;
                    }
                    state = if literal {
                        State::Literal(indent)
                    } else {
                        State::Normal
                    };
                }
                State::LiteralPending(at) => {
                    if blank {
                        out.push(String::new());
                        break;
                    }
                    if ind > at {
                        state = State::Literal(at);
                    } else {
                        state = State::Normal;
                    }
                }
                State::Literal(at) => {
                    if blank || ind > at {
                        out.push(line.to_string());
                        break;
                    }
                    state = State::Normal;
                }
                State::Normal => {
                    state = normal_line(line, ind, &mut out);
                    break;
                }
            }
        }
    }
    collapse_blank_lines(&out)
}

/// Handles one line in the normal state; returns the next state.
fn normal_line(line: &str, ind: usize, out: &mut Vec<String>) -> State {
    let body = line.trim_start();
    if let Some(rest) = explicit_markup(body) {
        return explicit_line(line, rest, ind, out);
    }
    if body == "::" {
        return State::LiteralPending(ind);
    }
    if is_rule(body) || is_empty_item(body) {
        return State::Normal;
    }
    if let Some(head) = line.strip_suffix("::") {
        if head.ends_with(char::is_whitespace) {
            out.push(head.trim_end().to_string());
        } else {
            out.push(format!("{head}:"));
        }
        return State::LiteralPending(ind);
    }
    out.push(line.to_string());
    State::Normal
}

/// The text after `..` if `body` (a line without its indentation) starts explicit markup.
fn explicit_markup(body: &str) -> Option<&str> {
    let rest = body.strip_prefix("..")?;
    if rest.is_empty() || rest.starts_with(char::is_whitespace) {
        Some(rest.trim_start())
    } else {
        None
    }
}

/// Handles an explicit markup line (`rest` is what follows `.. `); returns the next state.
fn explicit_line(line: &str, rest: &str, ind: usize, out: &mut Vec<String>) -> State {
    if rest.starts_with('[') {
        if let Some(close) = rest.find(']') {
            let text = rest[close + 1..].trim();
            if !text.is_empty() {
                let pad = &line[..line.len() - line.trim_start().len()];
                out.push(format!("{pad}{text}"));
            }
            return State::Normal;
        }
    }
    if let Some((name, argument)) = directive(rest) {
        let name = name.to_ascii_lowercase();
        if DROPPED_DIRECTIVES.contains(&name.as_str()) {
            return State::Skip(ind);
        }
        if ADMONITIONS.contains(&name.as_str()) && !argument.is_empty() {
            let pad = &line[..line.len() - line.trim_start().len()];
            out.push(format!("{pad}{argument}"));
        }
        return State::Options {
            indent: ind,
            literal: LITERAL_DIRECTIVES.contains(&name.as_str()),
        };
    }
    // A label or hyperlink target (`_`), a substitution definition (`|`) or a comment.
    State::Skip(ind)
}

/// `name::` followed by the end or whitespace at the start of `rest`: (name, argument).
fn directive(rest: &str) -> Option<(&str, &str)> {
    let mut from = 0;
    while let Some(found) = rest[from..].find("::") {
        let at = from + found;
        let after = &rest[at + 2..];
        if after.is_empty() || after.starts_with(char::is_whitespace) {
            let name = &rest[..at];
            let valid = !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_+.:".contains(c));
            return valid.then_some((name, after.trim()));
        }
        from = at + 1;
    }
    None
}

/// A directive option line such as `:maxdepth: 2` or `:nosearch:`.
fn is_option(body: &str) -> bool {
    let Some(rest) = body.strip_prefix(':') else {
        return false;
    };
    match rest.find(':') {
        Some(0) | None => false,
        Some(at) => {
            let after = &rest[at + 1..];
            after.is_empty() || after.starts_with(char::is_whitespace)
        }
    }
}

/// A section adornment, transition or table border (see the module documentation).
fn is_rule(body: &str) -> bool {
    let Some(first) = body.chars().next() else {
        return false;
    };
    if first == '+'
        && body.ends_with('+')
        && body.len() > 1
        && body.chars().all(|c| "+-=".contains(c))
        && body.chars().any(|c| c != '+')
    {
        return true;
    }
    if !first.is_ascii_punctuation() {
        return false;
    }
    body.split(' ')
        .filter(|run| !run.is_empty())
        .all(|run| run.len() >= 2 && run.chars().all(|c| c == first))
        && !body.contains('\t')
}

/// A list item or table cell with nothing in it: only bullets (`-`, `*`, `+`, `•`), as in `* -`.
fn is_empty_item(body: &str) -> bool {
    !body.is_empty()
        && body
            .split(' ')
            .filter(|p| !p.is_empty())
            .all(|p| matches!(p, "-" | "*" | "+" | "•"))
}

/// Width of the leading whitespace, a tab reaching the next multiple of 8.
fn indentation(line: &str) -> usize {
    let mut width = 0;
    for c in line.chars() {
        match c {
            '\t' => width = (width / 8 + 1) * 8,
            c if c.is_whitespace() => width += 1,
            _ => break,
        }
    }
    width
}

fn collapse_blank_lines(lines: &[String]) -> String {
    let mut text = String::new();
    let mut blank_run = false;
    for line in lines {
        if line.is_empty() {
            blank_run = !text.is_empty();
            continue;
        }
        if blank_run {
            text.push('\n');
            blank_run = false;
        }
        text.push_str(line);
        text.push('\n');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn titles_keep_their_text_and_lose_their_adornments() {
        let text = "=====\nTitle\n=====\n\nProse here.\n\nSection\n-------\n\nMore ~~ prose.\n\n----\n\nEnd.\n";
        assert_eq!(
            strip_rst(text),
            "Title\n\nProse here.\n\nSection\n\nMore ~~ prose.\n\nEnd.\n"
        );
    }

    #[test]
    fn directives_and_their_options_go_prose_content_stays() {
        let text = "Intro.\n\n.. toctree::\n   :maxdepth: 2\n\n   intro\n   usage/index\n\n\
                    .. note::\n   :class: x\n\n   Read *this*.\n\n.. warning:: Hot.\n\nAfter.\n";
        assert_eq!(
            strip_rst(text),
            "Intro.\n\n   Read *this*.\n\nHot.\n\nAfter.\n"
        );
    }

    #[test]
    fn code_blocks_and_literal_blocks_are_kept_verbatim() {
        let text =
            ".. code-block:: c\n   :linenos:\n\n   int x;\n   /* ---- */\n   .. not a comment\n\n\
                    Example::\n\n    ======\n    y = 1;\n\nTail ::\n\n  z\n\n::\n\n  w\n\nDone.\n";
        assert_eq!(
            strip_rst(text),
            "   int x;\n   /* ---- */\n   .. not a comment\n\nExample:\n\n    ======\n    y = 1;\n\n\
             Tail\n\n  z\n\n  w\n\nDone.\n"
        );
    }

    #[test]
    fn comments_labels_and_substitutions_go() {
        let text = ".. SPDX-License-Identifier: GPL-2.0\n\n.. _my-label:\n\nTitle\n=====\n\n..\n   a multi-line\n   comment\n\n\
                    .. |name| replace:: something\n.. |delta| unicode:: U+00394\n.. __: http://x\n\
                    .. _target: http://example.com\n   continued\n\nText.\n";
        assert_eq!(strip_rst(text), "Title\n\nText.\n");
    }

    #[test]
    fn footnotes_keep_text_tables_lose_borders() {
        let text = ".. [1] The footnote.\n\n=====  =====\nA      B\n=====  =====\n\n+---+---+\n| a | b |\n+===+===+\n";
        assert_eq!(strip_rst(text), "The footnote.\n\nA      B\n\n| a | b |\n");
    }

    #[test]
    fn domain_directives_drop_signature_keep_description() {
        let text = ".. c:function:: int foo(void)\n\n   Does foo.\n\n.. kernel-doc:: include/x.h\n   :internal:\n\nNext.\n";
        assert_eq!(strip_rst(text), "   Does foo.\n\nNext.\n");
    }

    #[test]
    fn odd_input_does_not_panic() {
        for text in [
            "",
            "\n\n\n",
            "..",
            ".. ::",
            "::",
            "+",
            "a::",
            ".. [",
            "\t..\t\n\tx",
            "é::\n\n é",
        ] {
            let _ = strip_rst(text);
        }
        assert_eq!(strip_rst("\t.. note::\n\t\tTabbed.\n"), "\t\tTabbed.\n");
        assert_eq!(strip_rst("..."), "");
        assert_eq!(strip_rst("- item\n* x *\n"), "- item\n* x *\n");
        assert_eq!(strip_rst("* - a\n  -\n* -\n  - b\n"), "* - a\n  - b\n");
    }
}

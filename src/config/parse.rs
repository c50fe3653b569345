//! Reading configs: TOML text, files, the embedded default and `--set` overrides, with errors
//! that name the key, the line (of a file the user wrote) and the fix.

use std::path::Path;

use super::{err, Config, DEFAULT_CONFIG};
use crate::{Error, Result};

impl Config {
    /// Parse a TOML document; `origin` names it in errors (a path, or "embedded default").
    pub fn from_toml(text: &str, origin: &str) -> Result<Self> {
        Self::parse(text, origin, false)
    }

    /// [`Config::from_toml`]; for a `generated` text (a config after `--set`, which the user
    /// never saw as a file) errors name the key, not a line of that text.
    fn parse(text: &str, origin: &str, generated: bool) -> Result<Self> {
        let cfg: Config = toml::from_str(text).map_err(|e: toml::de::Error| {
            let (what, hint) = match text.parse::<toml::Table>() {
                Err(_) => ("not valid TOML: ", "fix the syntax".to_string()),
                Ok(_) => (
                    "",
                    "see docs/config.md for every key, its type and its range".to_string(),
                ),
            };
            err(
                origin,
                format!(
                    "{what}{}{}",
                    e.message().trim(),
                    location(text, e.span(), generated)
                ),
                hint,
            )
        })?;
        cfg.validate(origin)?;
        Ok(cfg)
    }

    /// Read a config file.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            err(
                &path.display().to_string(),
                format!("cannot be read: {e}"),
                "check the path given to --config (a TOML file, see docs/config.md)",
            )
        })?;
        Self::from_toml(&text, &path.display().to_string())
    }

    /// The embedded default (L2L LSTM on quadratics).
    pub fn embedded_default() -> Result<Self> {
        Self::from_toml(DEFAULT_CONFIG, "embedded default")
    }

    fn from_table(table: toml::Table, origin: &str) -> Result<Self> {
        let text = toml::to_string(&table)
            .map_err(|e| Error::invalid(format!("internal TOML round trip failed: {e}")))?;
        Self::parse(&text, origin, true)
    }

    /// The config as TOML.
    pub fn to_toml(&self) -> Result<String> {
        toml::to_string(self)
            .map_err(|e| Error::invalid(format!("the config cannot be written as TOML: {e}")))
    }

    /// Apply overrides `section.key=value` (value in TOML syntax; a bare word is taken as a
    /// string), then validate again. Unknown keys and wrong types are errors naming the flag.
    pub fn with_overrides(&self, overrides: &[String]) -> Result<Self> {
        if overrides.is_empty() {
            return Ok(self.clone());
        }
        let text = self.to_toml()?;
        let mut table: toml::Table = text
            .parse()
            .map_err(|e| Error::invalid(format!("internal TOML round trip failed: {e}")))?;
        for o in overrides {
            let origin = format!("--set {o}");
            let (key, value) = o.split_once('=').ok_or_else(|| {
                err(
                    &origin,
                    "an override needs the form section.key=value",
                    "for example --set meta.unroll=40 or --set task.kind=mlp",
                )
            })?;
            let key = key.trim();
            let value = parse_value(value.trim());
            let path: Vec<&str> = key.split('.').collect();
            if path.iter().any(|p| p.is_empty()) || path.len() > 2 {
                return Err(err(
                    &origin,
                    format!("'{key}' is not a key"),
                    "keys are 'seed' or 'section.key', for example meta.unroll",
                ));
            }
            if path.len() == 1 {
                table.insert(path[0].to_string(), value);
            } else {
                let section = table
                    .entry(path[0].to_string())
                    .or_insert_with(|| toml::Value::Table(toml::Table::new()));
                match section {
                    toml::Value::Table(t) => {
                        t.insert(path[1].to_string(), value);
                    }
                    _ => {
                        return Err(err(
                            &origin,
                            format!("'{}' is not a section", path[0]),
                            "sections are task, optimizer, meta, eval, output and lm",
                        ))
                    }
                }
            }
        }
        let origin = format!("after --set {}", overrides.join(" --set "));
        Self::from_table(table, &origin)
    }
}

fn parse_value(v: &str) -> toml::Value {
    // A TOML value, or else the text as a string (so `--set task.kind=mlp` needs no quotes).
    format!("v = {v}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(v.to_string()))
}

/// " (line N: `text of the line`)" for an error span, or "". In a `generated` text the line
/// number means nothing to the user: " (`section.key = value`)" instead.
fn location(text: &str, span: Option<std::ops::Range<usize>>, generated: bool) -> String {
    let Some(s) = span else {
        return String::new();
    };
    let start = s.start.min(text.len());
    let line = text[..start].matches('\n').count() + 1;
    let content = text.lines().nth(line - 1).unwrap_or("").trim();
    if generated {
        let section = text
            .lines()
            .take(line)
            .filter_map(|l| l.trim().strip_prefix('[')?.strip_suffix(']'))
            .last();
        return match (section, content.is_empty()) {
            (_, true) => String::new(),
            (Some(s), false) => format!(" (`{s}.{content}`)"),
            (None, false) => format!(" (`{content}`)"),
        };
    }
    if content.is_empty() {
        format!(" (line {line})")
    } else {
        format!(" (line {line}: `{content}`)")
    }
}

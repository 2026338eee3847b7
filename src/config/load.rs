//! Loading a config: TOML text + `--set key=value` overrides → a typed,
//! validated value, in three steps, each with its own kind of error:
//! 1. parse the TOML text (syntax errors come with toml's own line/column);
//! 2. apply `--set a.b=c` overrides to the parsed table;
//! 3. deserialize into typed sections (`deny_unknown_fields` everywhere) and
//!    validate every rule, collecting all violations at once.
//!
//! Every error names the file, the key and where it is (`file:line:col`, or
//! the `--set` that introduced it), states the rule with the numbers, and for
//! misspelt keys suggests the closest valid one — the way `typos` and
//! `ripgrep` report bad input. The loader is generic over the root type, so
//! it sits below the root [`super::Config`] and every stage's section.

use super::rules::{Rules, Validate};
use serde::de::DeserializeOwned;
use std::fmt;
use std::path::{Path, PathBuf};

/// Where a config value came from, for error messages.
#[derive(Debug, Clone, PartialEq)]
pub enum Origin {
    /// `file:line:col` of the key in the config file.
    File {
        path: PathBuf,
        line: usize,
        col: usize,
    },
    /// A `--set` on the command line.
    Override(String),
    /// The key is absent; its default applies.
    Default(PathBuf),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::File { path, line, col } => write!(f, "{}:{line}:{col}", path.display()),
            Origin::Override(set) => write!(f, "--set {set}"),
            Origin::Default(path) => write!(f, "{} (default value)", path.display()),
        }
    }
}

/// A located problem with one key.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyError {
    pub origin: Origin,
    pub key: String,
    pub message: String,
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: `{}`: {}", self.origin, self.key, self.message)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {path}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: invalid TOML")]
    Syntax {
        path: PathBuf,
        source: Box<toml::de::Error>,
    },
    #[error(
        "bad --set {arg:?}: {reason} (the form is --set section.key=value, e.g. --set grpo.group_size=8)"
    )]
    Override { arg: String, reason: String },
    #[error("{0}")]
    Key(KeyError),
    #[error("{} invalid setting{}:\n{}", .0.len(), if .0.len() == 1 { "" } else { "s" },
        .0.iter().map(|e| format!("  {e}")).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<KeyError>),
    #[error("cannot write resolved config {path}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// A parsed `--set key=value`.
#[derive(Debug, Clone)]
struct Override {
    text: String,
    key: Vec<String>,
    value: toml::Value,
}

impl Override {
    /// `value` is read as a TOML value (`8`, `0.5`, `true`, `[1, 2]`,
    /// `"x"`); anything that is not valid TOML is taken as a bare string, so
    /// `--set run.name=my-run` works without shell-quoted quotes.
    fn parse(arg: &str) -> Result<Override, ConfigError> {
        let bad = |reason: &str| ConfigError::Override {
            arg: arg.to_string(),
            reason: reason.to_string(),
        };
        let (key, raw) = arg.split_once('=').ok_or_else(|| bad("no '=' in it"))?;
        let key: Vec<String> = key
            .trim()
            .split('.')
            .map(|s| s.trim().to_string())
            .collect();
        if key.iter().any(String::is_empty) {
            return Err(bad("the key has an empty part"));
        }
        let raw = raw.trim();
        let value = toml::from_str::<toml::Table>(&format!("v = {raw}"))
            .ok()
            .and_then(|mut t| t.remove("v"))
            .unwrap_or_else(|| toml::Value::String(raw.to_string()));
        Ok(Override {
            text: arg.to_string(),
            key,
            value,
        })
    }

    fn apply(&self, table: &mut toml::Table) -> Result<(), ConfigError> {
        let (last, parents) = self.key.split_last().expect("key has at least one part");
        let mut cur = table;
        for (depth, part) in parents.iter().enumerate() {
            let entry = cur
                .entry(part.clone())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            cur = entry.as_table_mut().ok_or_else(|| ConfigError::Override {
                arg: self.text.clone(),
                reason: format!(
                    "`{}` is a value, not a section",
                    self.key[..=depth].join(".")
                ),
            })?;
        }
        cur.insert(last.clone(), self.value.clone());
        Ok(())
    }
}

/// Reads, overrides, deserializes and validates the config file `path`.
pub fn load_file<T: DeserializeOwned + Validate>(
    path: &Path,
    sets: &[String],
) -> Result<T, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse(path, &text, sets)
}

/// Like [`load_file`] on text already in memory; `path` names it in errors.
pub fn parse<T: DeserializeOwned + Validate>(
    path: &Path,
    text: &str,
    sets: &[String],
) -> Result<T, ConfigError> {
    let mut table: toml::Table = toml::from_str(text).map_err(|e| ConfigError::Syntax {
        path: path.to_path_buf(),
        source: Box::new(e),
    })?;
    let overrides = sets
        .iter()
        .map(|s| Override::parse(s))
        .collect::<Result<Vec<_>, _>>()?;
    for o in &overrides {
        o.apply(&mut table)?;
    }
    let locate = |key: &str| origin_of(path, text, &overrides, key);

    let config: T = serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(
        |e: serde_path_to_error::Error<toml::de::Error>| {
            let key = e.path().to_string();
            let message = with_suggestion(e.inner().message());
            ConfigError::Key(KeyError {
                origin: locate(&key),
                key,
                message,
            })
        },
    )?;

    let mut rules = Rules::default();
    config.validate("", &mut rules);
    let errors: Vec<KeyError> = rules
        .into_violations()
        .into_iter()
        .map(|v| {
            // Blame the first involved key the user set; else the first key.
            let located: Vec<(Origin, String)> =
                v.keys.into_iter().map(|k| (locate(&k), k)).collect();
            let (origin, key) = located
                .iter()
                .find(|(o, _)| !matches!(o, Origin::Default(_)))
                .unwrap_or(&located[0])
                .clone();
            KeyError {
                origin,
                key,
                message: v.message,
            }
        })
        .collect();
    if errors.is_empty() {
        Ok(config)
    } else {
        Err(ConfigError::Invalid(errors))
    }
}

/// Where `key` (dotted) was set: the last `--set` that wrote it or a parent
/// of it, else its position in the file, else (absent) its default.
fn origin_of(path: &Path, text: &str, overrides: &[Override], key: &str) -> Origin {
    let parts: Vec<&str> = key.split('.').filter(|p| !p.is_empty()).collect();
    if let Some(o) = overrides
        .iter()
        .rev()
        .find(|o| o.key.len() <= parts.len() && o.key.iter().zip(&parts).all(|(a, b)| a == b))
    {
        return Origin::Override(o.text.clone());
    }
    match span_of(text, &parts) {
        Some(offset) => {
            let before = &text[..offset];
            let line = before.matches('\n').count() + 1;
            let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
            Origin::File {
                path: path.to_path_buf(),
                line,
                col,
            }
        }
        None => Origin::Default(path.to_path_buf()),
    }
}

/// Byte offset of the key `parts` (dotted path) in the document, if present.
fn span_of(text: &str, parts: &[&str]) -> Option<usize> {
    use toml::de::{DeTable, DeValue};
    let doc = DeTable::parse(text).ok()?;
    let mut table = doc.get_ref();
    let (last, parents) = parts.split_last()?;
    for part in parents {
        let (_, v) = table.iter().find(|(k, _)| k.get_ref().as_ref() == *part)?;
        match v.get_ref() {
            DeValue::Table(t) => table = t,
            _ => return None,
        }
    }
    let (k, _) = table.iter().find(|(k, _)| k.get_ref().as_ref() == *last)?;
    Some(k.span().start)
}

/// Appends "did you mean `x`?" to serde's unknown-field message when one of
/// the expected names is within a small edit distance of the typo.
fn with_suggestion(message: &str) -> String {
    let Some(rest) = message.strip_prefix("unknown field `") else {
        return message.to_string();
    };
    let Some((typo, expected)) = rest.split_once('`') else {
        return message.to_string();
    };
    let best = expected
        .split('`')
        .skip(1)
        .step_by(2)
        .map(|cand| (edit_distance(typo, cand), cand))
        .min();
    match best {
        Some((d, cand)) if d <= typo.len().max(3) / 3 + 1 => {
            format!("{message}; did you mean `{cand}`?")
        }
        _ => message.to_string(),
    }
}

/// Levenshtein distance (small strings only: config keys).
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, &cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != cb))
                .min(prev[j + 1] + 1)
                .min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_distance_basics() {
        assert_eq!(edit_distance("sed", "seed"), 1);
        assert_eq!(edit_distance("group_sise", "group_size"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
    }
}

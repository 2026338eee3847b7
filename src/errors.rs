//! An error and its causes as one line.
//!
//! The library's errors follow one rule: a message states its own context
//! and never formats its source; the source is reached through
//! [`Error::source`]. A `Display` is then one link of the story, and the
//! whole story is the chain — which the CLI prints once, outermost first.
//! Code that must hold an error as text (a log line, a row of a report, a
//! test's expectation) builds that line with [`chain`], so no cause is lost
//! and none is printed twice.

use std::error::Error;

/// `outer: cause: root cause` — the error's message followed by each of its
/// sources.
///
/// A source whose text the line already ends with is skipped: a wrapper
/// that prints its inner error (`#[error("{0}")]`, an error that still
/// formats its source) would otherwise repeat it.
pub fn chain(e: &(dyn Error + 'static)) -> String {
    let mut line = e.to_string();
    let mut next = e.source();
    while let Some(cause) = next {
        let text = cause.to_string();
        if !line.ends_with(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        next = cause.source();
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot read {path}")]
    struct Read {
        path: String,
        source: std::io::Error,
    }

    #[derive(Debug, thiserror::Error)]
    #[error("loading the model")]
    struct Load(#[source] Read);

    /// A wrapper that prints its inner error instead of naming a context.
    #[derive(Debug, thiserror::Error)]
    #[error("{0}")]
    struct Echo(#[source] Load);

    #[derive(Debug, thiserror::Error)]
    enum Transparent {
        #[error(transparent)]
        Load(#[from] Load),
    }

    fn read() -> Read {
        Read {
            path: "m.jsonl".into(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
        }
    }

    #[test]
    fn joins_every_source_outermost_first() {
        let e = Load(read());
        assert_eq!(
            chain(&e),
            "loading the model: cannot read m.jsonl: no such file"
        );
        assert_eq!(chain(&read()), "cannot read m.jsonl: no such file");
        let io = std::io::Error::other("disk full");
        assert_eq!(chain(&io), "disk full");
    }

    #[test]
    fn a_wrapper_that_repeats_its_source_is_printed_once() {
        let line = "loading the model: cannot read m.jsonl: no such file";
        assert_eq!(chain(&Echo(Load(read()))), line);
        assert_eq!(chain(&Transparent::from(Load(read()))), line);
    }

    #[test]
    fn a_message_that_still_formats_its_source_is_not_repeated() {
        #[derive(Debug, thiserror::Error)]
        #[error("cannot read config c.toml: {source}")]
        struct Old {
            source: std::io::Error,
        }
        let e = Old {
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
        };
        assert_eq!(chain(&e), "cannot read config c.toml: no such file");
    }
}

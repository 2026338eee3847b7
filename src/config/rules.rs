//! The leaf of the config layers: how a section states its rules. Every
//! section's config (beside its stage) implements [`Validate`]; the loader
//! ([`super::load`]) collects the violations and locates each key in the
//! file. This file imports nothing of the crate, so any module may use it
//! without an import cycle.

/// One broken rule: the dotted key(s) it involves and a message that states
/// the rule and the offending numbers. A rule between two keys lists both;
/// the error then points at whichever the user actually wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct Violation {
    pub keys: Vec<String>,
    pub message: String,
}

/// Collects violations while a section checks its rules.
#[derive(Debug, Default)]
pub struct Rules {
    violations: Vec<Violation>,
}

impl Rules {
    /// Records `message` against `key` unless `ok`.
    pub fn check(&mut self, ok: bool, key: &str, message: impl FnOnce() -> String) {
        self.check_keys(ok, &[key], message);
    }

    /// Records `message` against a rule relating several keys unless `ok`.
    pub fn check_keys(&mut self, ok: bool, keys: &[&str], message: impl FnOnce() -> String) {
        if !ok {
            self.violations.push(Violation {
                keys: keys.iter().map(|k| k.to_string()).collect(),
                message: message(),
            });
        }
    }

    pub fn into_violations(self) -> Vec<Violation> {
        self.violations
    }
}

/// A section that knows its own rules. `prefix` is the section's dotted
/// path (`"grpo"`), so messages name the full key.
pub trait Validate {
    fn validate(&self, prefix: &str, rules: &mut Rules);
}

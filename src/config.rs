//! Run configuration: TOML file + `--set key=value` overrides → a typed,
//! validated [`Config`].
//!
//! Loading happens in three steps, each with its own kind of error:
//! 1. parse the TOML text (syntax errors come with toml's own line/column);
//! 2. apply `--set a.b=c` overrides to the parsed table;
//! 3. deserialize into typed sections (`deny_unknown_fields` everywhere) and
//!    validate every rule, collecting all violations at once.
//!
//! Every error names the file, the key and where it is (`file:line:col`, or
//! the `--set` that introduced it), states the rule with the numbers, and for
//! misspelt keys suggests the closest valid one — the way `typos` and
//! `ripgrep` report bad input. Relative paths in a config resolve against the
//! current directory (where the user launched the run).

use crate::data::MosScale;
use crate::eval::EvalConfig;
use crate::grpo::config::GrpoConfig;
use crate::model_source::ModelConfig;
use crate::optim::OptimConfig;
use crate::pipeline::PipelineConfig;
use crate::pretrain::PretrainConfig;
use crate::sft::SftConfig;
use crate::video::VideoConfig;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::{Path, PathBuf};

/// The whole validated run configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub run: RunConfig,
    #[serde(default)]
    pub data: DataConfig,
    #[serde(default)]
    pub video: VideoConfig,
    #[serde(default)]
    pub model: ModelConfig,
    #[serde(default)]
    pub optim: OptimConfig,
    #[serde(default)]
    pub grpo: GrpoConfig,
    #[serde(default)]
    pub eval: EvalConfig,
    #[serde(default)]
    pub sft: SftConfig,
    #[serde(default)]
    pub pretrain: PretrainConfig,
    #[serde(default)]
    pub pipeline: PipelineConfig,
}

/// `[run]`: identity and reproducibility of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RunConfig {
    /// Run name; the run directory is `<out_dir>/<name>`.
    pub name: String,
    /// The one seed every random choice flows from.
    pub seed: u64,
    /// Parent directory of run directories.
    pub out_dir: PathBuf,
}

impl Default for RunConfig {
    fn default() -> Self {
        RunConfig {
            name: "quickstart".into(),
            seed: 0,
            out_dir: "runs".into(),
        }
    }
}

impl RunConfig {
    /// `<out_dir>/<name>`.
    pub fn dir(&self) -> PathBuf {
        self.out_dir.join(&self.name)
    }
}

/// `[data]`: which manifest to read and how its scores are scaled.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataConfig {
    /// JSONL manifest (format in README "Files").
    pub manifest: PathBuf,
    /// Lowest MOS of the data set's scale.
    pub mos_min: f32,
    /// Highest MOS of the data set's scale.
    pub mos_max: f32,
}

impl Default for DataConfig {
    fn default() -> Self {
        DataConfig {
            manifest: "data/synth/manifest.jsonl".into(),
            mos_min: 1.0,
            mos_max: 5.0,
        }
    }
}

impl DataConfig {
    pub fn mos_scale(&self) -> MosScale {
        MosScale {
            min: self.mos_min,
            max: self.mos_max,
        }
    }
}

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

impl Validate for RunConfig {
    fn validate(&self, p: &str, rules: &mut Rules) {
        let name_ok = !self.name.is_empty()
            && self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            && !self.name.starts_with('.');
        rules.check(name_ok, &format!("{p}.name"), || {
            format!(
                "run name must be non-empty and use only letters, digits, '-', '_' and '.' \
                 (it becomes a directory name), got {:?}",
                self.name
            )
        });
    }
}

impl Validate for DataConfig {
    fn validate(&self, p: &str, rules: &mut Rules) {
        rules.check_keys(
            self.mos_min.is_finite() && self.mos_max.is_finite() && self.mos_min < self.mos_max,
            &[&format!("{p}.mos_min"), &format!("{p}.mos_max")],
            || {
                format!(
                    "mos_min must be below mos_max (the scale is split into five equal \
                     rating intervals), got mos_min = {} and mos_max = {}",
                    self.mos_min, self.mos_max
                )
            },
        );
    }
}

impl Validate for Config {
    fn validate(&self, _: &str, rules: &mut Rules) {
        self.run.validate("run", rules);
        self.data.validate("data", rules);
        Validate::validate(&self.video, "video", rules);
        self.model.validate("model", rules);
        self.optim.validate("optim", rules);
        self.grpo.validate("grpo", rules);
        self.eval.validate("eval", rules);
        self.sft.validate("sft", rules);
        self.pretrain.validate("pretrain", rules);
        self.pipeline.validate("pipeline", rules);
    }
}

impl Validate for VideoConfig {
    fn validate(&self, p: &str, rules: &mut Rules) {
        if let Err(e) = VideoConfig::validate(self) {
            rules.check(false, &format!("{p}.{}", e.key), || {
                format!("{} must be {}, got {}", e.key, e.rule, e.got)
            });
        }
    }
}

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
    #[error("cannot read config {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: invalid TOML: {source}")]
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
    #[error("cannot write resolved config {path}: {source}")]
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

/// Loads, overrides, deserializes and validates a config file.
pub fn load(path: &Path, sets: &[String]) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    from_str(path, &text, sets)
}

/// Like [`load`] on text already in memory; `path` names it in errors.
pub fn from_str(path: &Path, text: &str, sets: &[String]) -> Result<Config, ConfigError> {
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

    let config: Config = serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(
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

impl Config {
    /// The config as TOML with every default filled in: what the run used.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("Config serializes to TOML")
    }

    /// Writes the resolved config to `dir/config.toml` (atomically).
    pub fn write_resolved(&self, dir: &Path) -> Result<PathBuf, ConfigError> {
        let path = dir.join("config.toml");
        let write_err = |source| ConfigError::Write {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(write_err)?;
        let tmp = dir.join("config.toml.tmp");
        std::fs::write(&tmp, self.to_toml()).map_err(write_err)?;
        std::fs::rename(&tmp, &path).map_err(write_err)?;
        Ok(path)
    }
}

impl Config {
    /// The manifest GRPO draws its prompts from (`grpo.manifest`, else
    /// `data.manifest`); the cool-off joins GRPO's rollouts back to it.
    pub fn grpo_manifest(&self) -> &Path {
        self.grpo.manifest.as_deref().unwrap_or(&self.data.manifest)
    }

    /// The settings in which `self` differs from `other`, as
    /// `key: other's value → self's value` with dotted keys, in key order
    /// (empty when the two are the same config).
    pub fn differences_from(&self, other: &Config) -> Vec<String> {
        let (old, new) = (flat_settings(other), flat_settings(self));
        let keys: std::collections::BTreeSet<&String> = old.keys().chain(new.keys()).collect();
        let show = |v: Option<&String>| v.map_or("(unset)".to_string(), String::clone);
        keys.into_iter()
            .filter(|k| old.get(*k) != new.get(*k))
            .map(|k| format!("{k}: {} → {}", show(old.get(k)), show(new.get(k))))
            .collect()
    }
}

/// Every leaf of the resolved config under its dotted key.
fn flat_settings(config: &Config) -> std::collections::BTreeMap<String, String> {
    fn walk(
        prefix: &str,
        value: &toml::Value,
        out: &mut std::collections::BTreeMap<String, String>,
    ) {
        match value {
            toml::Value::Table(table) => {
                for (k, v) in table {
                    let key = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    walk(&key, v, out);
                }
            }
            // An f32 setting widened to f64 prints as it was written (0.04,
            // not 0.03999999910593033).
            toml::Value::Float(f) if f64::from(*f as f32) == *f => {
                out.insert(prefix.to_string(), (*f as f32).to_string());
            }
            leaf => {
                out.insert(prefix.to_string(), leaf.to_string());
            }
        }
    }
    let mut out = std::collections::BTreeMap::new();
    match toml::Value::try_from(config) {
        Ok(value) => walk("", &value, &mut out),
        Err(e) => {
            out.insert(String::new(), format!("(not serializable: {e})"));
        }
    }
    out
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

    fn parse(text: &str, sets: &[&str]) -> Result<Config, ConfigError> {
        let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
        from_str(Path::new("c.toml"), text, &sets)
    }

    #[test]
    fn empty_file_gives_defaults() {
        let c = parse("", &[]).unwrap();
        assert_eq!(c.run, RunConfig::default());
        assert_eq!(c.data, DataConfig::default());
        assert_eq!(c.video, VideoConfig::default());
    }

    #[test]
    fn unknown_key_is_located_and_gets_a_suggestion() {
        let e = parse("[run]\nname = \"a\"\nsed = 3\n", &[])
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("c.toml:3:1: `run.sed`: unknown field `sed`"),
            "{e}"
        );
        assert!(e.ends_with("did you mean `seed`?"), "{e}");
    }

    #[test]
    fn wrong_type_names_the_key() {
        let e = parse("[run]\nseed = \"x\"\n", &[]).unwrap_err().to_string();
        assert!(e.starts_with("c.toml:2:1: `run.seed`: invalid type"), "{e}");
    }

    #[test]
    fn overrides_set_values_and_are_blamed() {
        let c = parse("[run]\nseed = 1\n", &["run.seed=9", "run.name=my-run"]).unwrap();
        assert_eq!(c.run.seed, 9);
        assert_eq!(c.run.name, "my-run");
        let e = parse("", &["data.mos_min=6"]).unwrap_err().to_string();
        assert!(e.contains("--set data.mos_min=6: `data.mos_min`"), "{e}");
        assert!(e.contains("got mos_min = 6 and mos_max = 5"), "{e}");
        let e = parse("", &["run.seed"]).unwrap_err().to_string();
        assert!(e.contains("no '=' in it"), "{e}");
        let e = parse("", &["run.seed=1", "run.seed.x=1"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("`run.seed` is a value, not a section"), "{e}");
        let e = parse("", &["run.sed=1"]).unwrap_err().to_string();
        assert!(
            e.starts_with("--set run.sed=1: `run.sed`: unknown field"),
            "{e}"
        );
    }

    #[test]
    fn all_violations_are_reported_together() {
        let e = parse("[run]\nname = \"\"\n[data]\nmos_min = 5.0\n", &[])
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("2 invalid settings:"), "{e}");
        assert!(e.contains("c.toml:2:1: `run.name`"), "{e}");
        assert!(e.contains("c.toml:4:1: `data.mos_min`"), "{e}");
    }

    #[test]
    fn section_rules_are_located() {
        let e = parse("[video]\nfps = 0.0\n", &[]).unwrap_err().to_string();
        assert!(
            e.contains("c.toml:2:1: `video.fps`: fps must be in (0, 120], got 0"),
            "{e}"
        );
    }

    #[test]
    fn pretrain_and_cooloff_rules_are_located() {
        let e = parse("[pretrain]\nsteps = 0\n", &[])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("c.toml:2:1: `pretrain.steps`: steps must be ≥ 1, got 0"),
            "{e}"
        );
        let e = parse("", &["pipeline.cooloff_optim.lr=-1"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("`pipeline.cooloff_optim.lr`"), "{e}");
        let e = parse("", &["pipeline.validation.synth.width=95"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("`pipeline.validation.synth.width`"), "{e}");
    }

    #[test]
    fn shipped_configs_load() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs");
        let mut loaded = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
                load(&path, &[]).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                loaded += 1;
            }
        }
        assert!(loaded >= 5, "{loaded} configs");
        let quick = load(&dir.join("quickstart.toml"), &[]).unwrap();
        assert!(quick.pipeline.pretrain);
        assert_ne!(quick.pretrain.manifest, quick.data.manifest);
        let validation = quick.pipeline.validation.expect("quickstart validates");
        assert_ne!(validation.manifest, quick.data.manifest);
        assert_ne!(validation.manifest, quick.pretrain.manifest);
    }

    #[test]
    fn resolved_config_round_trips() {
        let c = parse("[run]\nseed = 4\n", &[]).unwrap();
        let again = parse(&c.to_toml(), &[]).unwrap();
        assert_eq!(c, again);
    }

    #[test]
    fn differences_name_each_changed_key_with_both_values() {
        let a = parse("[run]\nseed = 4\n[sft]\nepochs = 2\n", &[]).unwrap();
        let b = parse(
            "[run]\nseed = 4\n[sft]\nepochs = 6\n[grpo]\nkl_coef = 0.1\n",
            &[],
        )
        .unwrap();
        assert!(a.differences_from(&a).is_empty());
        assert_eq!(
            b.differences_from(&a),
            vec!["grpo.kl_coef: 0.04 → 0.1", "sft.epochs: 2 → 6"]
        );
    }

    #[test]
    fn edit_distance_basics() {
        assert_eq!(edit_distance("sed", "seed"), 1);
        assert_eq!(edit_distance("group_sise", "group_size"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
    }
}

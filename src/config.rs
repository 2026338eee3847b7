//! Run configuration: the root [`Config`] of every command, above the
//! layers it is built from:
//!
//! ```text
//! config.rs (this file)   the root Config, [run] and [data], the resolved
//!                         config a run writes, differences between configs
//!   ├ each stage's section beside its stage (grpo/config.rs, sft/config.rs,
//!   │ pretrain/config.rs, pipeline/config.rs, eval/config.rs, …)
//!   ├ config/load.rs      TOML + `--set` overrides → typed, validated value
//!   └ config/rules.rs     the `Validate` trait every section implements
//! ```
//!
//! The arrows only point down: a stage's section uses `rules`, never this
//! file, so no import cycle runs through the config. Relative paths in a
//! config resolve against the current directory (where the user launched
//! the run).

pub mod load;
pub mod rules;

pub use load::{ConfigError, KeyError, Origin};
pub use rules::{Rules, Validate, Violation};

use crate::data::MosScale;
use crate::device::DeviceSpec;
use crate::eval::config::EvalConfig;
use crate::grpo::config::GrpoConfig;
use crate::model::LoraConfig;
use crate::model_source::ModelConfig;
use crate::optim::OptimConfig;
use crate::pipeline::config::PipelineConfig;
use crate::pretrain::config::PretrainConfig;
use crate::sft::config::SftConfig;
use crate::video::VideoConfig;
use serde::{Deserialize, Serialize};
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
    /// `[lora]`: present, every trainer trains adapters on a frozen base.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lora: Option<LoraConfig>,
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
    /// Every trainer stops after this many non-finite updates in a row
    /// (each is skipped, the weights untouched).
    pub max_nonfinite: u32,
    /// The backend and device every stage runs on (`cpu`, `tch-cpu`,
    /// `tch-cuda:N`, `cuda:N`; [`crate::device`]).
    pub device: DeviceSpec,
    /// Recompute activations in the backward pass instead of keeping them
    /// (Burn's balanced gradient checkpointing: element-wise ops are
    /// recomputed, matmul outputs kept; [`RunConfig::train_device`]).
    pub gradient_checkpointing: bool,
}

impl Default for RunConfig {
    fn default() -> Self {
        RunConfig {
            name: "quickstart".into(),
            seed: 0,
            out_dir: "runs".into(),
            max_nonfinite: 3,
            device: DeviceSpec::Cpu,
            gradient_checkpointing: false,
        }
    }
}

impl RunConfig {
    /// The autodiff device a trainer trains on, over `device`, with
    /// gradient checkpointing when the run asks for it.
    pub fn train_device(&self, device: &burn::tensor::Device) -> burn::tensor::Device {
        let train = device.clone().autodiff();
        match self.gradient_checkpointing {
            true => train.gradient_checkpointing(),
            false => train,
        }
    }

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

impl Validate for RunConfig {
    fn validate(&self, p: &str, rules: &mut Rules) {
        rules.check(
            self.max_nonfinite >= 1,
            &format!("{p}.max_nonfinite"),
            || format!("max_nonfinite must be ≥ 1, got {}", self.max_nonfinite),
        );
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
        if let Some(lora) = &self.lora {
            lora.validate("lora", rules);
        }
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

/// Loads, overrides, deserializes and validates a run config file.
pub fn load(path: &Path, sets: &[String]) -> Result<Config, ConfigError> {
    load::load_file(path, sets)
}

/// Like [`load`] on text already in memory; `path` names it in errors.
pub fn from_str(path: &Path, text: &str, sets: &[String]) -> Result<Config, ConfigError> {
    load::parse(path, text, sets)
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

    /// The settings in which `self` differs from `other`, in key order
    /// (empty when the two are the same config), leaving out the top-level
    /// sections in `ignored`.
    pub fn changes_from(&self, other: &Config, ignored: &[&str]) -> Vec<Change> {
        let (old, new) = (flat_settings(other), flat_settings(self));
        let keys: std::collections::BTreeSet<&String> = old.keys().chain(new.keys()).collect();
        keys.into_iter()
            .filter(|k| old.get(*k) != new.get(*k))
            .filter(|k| !ignored.contains(&k.split('.').next().unwrap_or_default()))
            .map(|k| Change {
                key: k.clone(),
                old: old.get(k).cloned(),
                new: new.get(k).cloned(),
            })
            .collect()
    }
}

/// One setting that differs between two configs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The dotted key (`grpo.kl_coef`).
    pub key: String,
    /// Its value in the older config (`None`: unset there).
    pub old: Option<String>,
    pub new: Option<String>,
}

impl std::fmt::Display for Change {
    /// `key: old → new`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let show = |v: &Option<String>| v.clone().unwrap_or_else(|| "(unset)".into());
        write!(f, "{}: {} → {}", self.key, show(&self.old), show(&self.new))
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
    fn grpo_sampling_needs_a_positive_temperature() {
        let e = parse("[grpo]\ntemperature = 0.0\n", &[])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("c.toml:2:1: `grpo.temperature`: temperature must be > 0"),
            "{e}"
        );
        // Greedy decoding stays allowed where it belongs.
        assert!(parse("[grpo]\ntemperature = 0.5\n", &[]).is_ok());
    }

    #[test]
    fn the_cool_off_joins_to_its_own_manifest_and_the_cold_start_refuses_one() {
        let c = parse(
            "[sft]\nmode = \"cool-off\"\ncooloff = \"r/c.jsonl\"\nmanifest = \"g/m.jsonl\"\n",
            &[],
        )
        .unwrap();
        assert_eq!(c.sft.manifest.as_deref(), Some(Path::new("g/m.jsonl")));
        let e = parse("[sft]\nmanifest = \"g/m.jsonl\"\n", &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("c.toml:2:1: `sft.manifest`"), "{e}");
    }

    #[test]
    fn the_device_is_named_and_checked() {
        let c = parse("[run]\ndevice = \"tch-cuda:1\"\n", &[]).unwrap();
        assert_eq!(c.run.device, DeviceSpec::TchCuda(1));
        let e = parse("[run]\ndevice = \"gpu\"\n", &[])
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("c.toml:2:1: `run.device`: unknown device"),
            "{e}"
        );
    }

    #[test]
    fn grpo_accuracy_reward_forms_and_sigma_are_checked() {
        use crate::reward::AccuracyReward;
        let c = parse("", &[]).unwrap();
        assert_eq!(c.grpo.accuracy_reward, AccuracyReward::Exact);
        assert_eq!(c.grpo.reward().accuracy, AccuracyReward::Exact);
        assert_eq!(c.grpo.accuracy_sigma, 0.1);
        let c = parse(
            "[grpo]\naccuracy_reward = \"gaussian\"\naccuracy_sigma = 0.2\n",
            &[],
        )
        .unwrap();
        assert_eq!(c.grpo.reward().accuracy, AccuracyReward::Gaussian);
        assert_eq!(c.grpo.reward().accuracy_sigma, 0.2);
        let c = parse("", &["grpo.accuracy_reward=distance"]).unwrap();
        assert_eq!(c.grpo.accuracy_reward, AccuracyReward::Distance);
        let e = parse("[grpo]\naccuracy_reward = \"l1\"\n", &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("c.toml:2:1: `grpo.accuracy_reward`"), "{e}");
        assert!(
            e.contains("`exact`, `distance`") && e.contains("`gaussian`"),
            "{e}"
        );
        for bad in ["0.0", "-0.1", "nan", "inf"] {
            let e = parse(&format!("[grpo]\naccuracy_sigma = {bad}\n"), &[])
                .unwrap_err()
                .to_string();
            assert!(
                e.contains(
                    "c.toml:2:1: `grpo.accuracy_sigma`: accuracy_sigma must be finite and > 0"
                ),
                "{bad}: {e}"
            );
        }
        // The resolved config names both keys and reads back.
        let c = parse("", &["grpo.accuracy_reward=gaussian"]).unwrap();
        let text = c.to_toml();
        assert!(text.contains("accuracy_reward = \"gaussian\""), "{text}");
        assert_eq!(parse(&text, &[]).unwrap(), c);
    }

    #[test]
    fn loss_rules_name_their_own_key() {
        let e = parse("[grpo]\nclip_low = 1.5\n", &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("c.toml:2:1: `grpo.clip_low`"), "{e}");
        let e = parse("", &["grpo.dual_clip=0.5"]).unwrap_err().to_string();
        assert!(e.contains("`grpo.dual_clip`"), "{e}");
        let e = parse("", &["run.max_nonfinite=0"]).unwrap_err().to_string();
        assert!(
            e.contains("`run.max_nonfinite`: max_nonfinite must be ≥ 1"),
            "{e}"
        );
    }

    #[test]
    fn micro_batches_are_whole_groups_that_divide_the_update() {
        // Defaults: 8 prompts × G = 8 = 64 rollouts per update.
        for ok in ["0", "8", "16", "32", "64"] {
            let c = parse(&format!("[grpo]\nmicro_batch_size = {ok}\n"), &[]).unwrap();
            assert_eq!(c.grpo.micro_batch_size, ok.parse::<usize>().unwrap());
        }
        assert_eq!(parse("", &[]).unwrap().grpo.micro_batch_size, 0);
        // Not a multiple of G: the error names the keys and what to set.
        let e = parse("[grpo]\nmicro_batch_size = 4\n", &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("`grpo.micro_batch_size`"), "{e}");
        assert!(e.contains("multiple of group_size 8"), "{e}");
        assert!(e.contains("set it to one of 8, 16, 32, 64 (or 0)"), "{e}");
        // A multiple of G that does not divide the mini-batch.
        let e = parse("[grpo]\nmini_batch_size = 32\nmicro_batch_size = 24\n", &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("mini_batch_size 32"), "{e}");
        assert!(e.contains("set it to one of 8, 16, 32 (or 0)"), "{e}");
        // A mini-batch that splits groups leaves only 0.
        let e = parse("[grpo]\nmini_batch_size = 4\nmicro_batch_size = 8\n", &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("set micro_batch_size = 0"), "{e}");
        // Larger than the update: refused too (it must divide it).
        assert!(parse("[grpo]\nmicro_batch_size = 128\n", &[]).is_err());
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
        assert!(a.changes_from(&a, &[]).is_empty());
        let shown = |changes: Vec<Change>| -> Vec<String> {
            changes.iter().map(Change::to_string).collect()
        };
        assert_eq!(
            shown(b.changes_from(&a, &[])),
            vec!["grpo.kl_coef: 0.04 → 0.1", "sft.epochs: 2 → 6"]
        );
        assert_eq!(
            shown(b.changes_from(&a, &["sft"])),
            vec!["grpo.kl_coef: 0.04 → 0.1"]
        );
    }
}

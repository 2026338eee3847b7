//! `[pipeline]`: what differs between the stages of `vgrpo pipeline`.

use crate::config::rules::{Rules, Validate};
use crate::data::synth::SynthConfig;
use crate::optim::OptimConfig;
use crate::schedule::ScheduleKind;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// `[pipeline]` settings: what differs between the stages.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PipelineConfig {
    /// The synthetic data set written when `data.manifest` does not exist
    /// (into the manifest's directory).
    pub synth: SynthConfig,
    /// Optimizer of the SFT stages (paper: AdamW 5e-6, warmup 3%).
    pub sft_optim: OptimConfig,
    /// Optimizer of the cool-off stage when it should differ from
    /// `sft_optim` (absent: `sft_optim`). The cool-off set is GRPO's correct
    /// rollouts, far smaller than the cold start's, so it may want a lower
    /// learning rate.
    pub cooloff_optim: Option<OptimConfig>,
    /// Optimizer of the GRPO stage (paper: 2e-6, constant).
    pub grpo_optim: OptimConfig,
    /// Epochs of the cool-off stage (the cold start uses `sft.epochs`).
    pub cooloff_epochs: u64,
    /// Start with `vgrpo pretrain` (`[pretrain]`) and hand its model to the
    /// cold start: the stand-in for a pretrained VLM when `[model]` is the
    /// randomly initialised tiny model (see [`crate::pretrain`]).
    pub pretrain: bool,
    /// A validation set of its own (absent: none). Every stage is judged on
    /// its test split too, in a second table, so settings can be chosen
    /// without looking at the test split.
    pub validation: Option<ValidationConfig>,
    /// A name for this pipeline's GRPO settings (absent: none). The GRPO and
    /// cool-off stages then run as `<name>-grpo-<branch>` and
    /// `<name>-cooloff-<branch>`, and the tables go to
    /// `pipeline-<branch>.md`, while pre-training and the cold start keep
    /// their names: pipelines that differ only in GRPO settings share one
    /// pre-training and cold start (the learning benchmark compares reward
    /// forms this way).
    pub branch: Option<String>,
}

/// `[pipeline.validation]`: a held-out set no stage trains on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ValidationConfig {
    /// Its manifest, written from `synth` when missing. Must be none of the
    /// sets a stage trains on (`data.manifest`, `grpo.manifest`,
    /// `pretrain.manifest`).
    pub manifest: PathBuf,
    /// The synthetic validation set: a seed of its own, and most videos in
    /// the test split (the split that is judged).
    pub synth: SynthConfig,
}

impl Default for ValidationConfig {
    fn default() -> Self {
        ValidationConfig {
            manifest: PathBuf::from("data/synth-val/manifest.jsonl"),
            synth: SynthConfig {
                videos: 300,
                seed: 3000,
                test_fraction: 0.8,
                ..SynthConfig::default()
            },
        }
    }
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            synth: SynthConfig::default(),
            sft_optim: OptimConfig {
                lr: 5e-6,
                schedule: ScheduleKind::WarmupCosine,
                warmup_ratio: 0.03,
                ..OptimConfig::default()
            },
            cooloff_optim: None,
            grpo_optim: OptimConfig::default(),
            cooloff_epochs: 3,
            pretrain: false,
            validation: None,
            branch: None,
        }
    }
}

impl Validate for PipelineConfig {
    fn validate(&self, p: &str, rules: &mut Rules) {
        self.synth.check(&format!("{p}.synth"), rules);
        self.sft_optim.validate(&format!("{p}.sft_optim"), rules);
        self.grpo_optim.validate(&format!("{p}.grpo_optim"), rules);
        if let Some(optim) = &self.cooloff_optim {
            optim.validate(&format!("{p}.cooloff_optim"), rules);
        }
        rules.check(
            self.cooloff_epochs >= 1,
            &format!("{p}.cooloff_epochs"),
            || format!("cooloff_epochs must be ≥ 1, got {}", self.cooloff_epochs),
        );
        if let Some(v) = &self.validation {
            v.synth.check(&format!("{p}.validation.synth"), rules);
        }
        if let Some(branch) = &self.branch {
            let fits = !branch.is_empty()
                && branch
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
            rules.check(fits, &format!("{p}.branch"), || {
                format!(
                    "branch is part of run directory names: one or more of A–Z, a–z, 0–9, '-' \
                     and '_', got {branch:?}"
                )
            });
        }
    }
}

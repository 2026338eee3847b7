//! `[pretrain]`: perception pre-training's settings.

use crate::config::rules::{Rules, Validate};
use crate::data::synth::SynthConfig;
use crate::optim::OptimConfig;
use crate::schedule::ScheduleKind;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// `[pretrain]` settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PretrainConfig {
    /// Manifest of the pre-training set, written from `synth` when missing.
    pub manifest: PathBuf,
    /// The pre-training set: a seed of its own, so its videos are not the
    /// judged set's.
    pub synth: SynthConfig,
    /// Optimizer updates. The probe's loss first sits on a plateau (the
    /// mean prediction) for a seed-dependent 600–1000 updates, so the
    /// default leaves room after it.
    pub steps: u64,
    /// Clips per update.
    pub batch: usize,
    /// Checkpoint every N updates (0: only at the end and on Ctrl-C).
    pub save_every: u64,
    /// Complete checkpoints kept.
    pub keep_last: usize,
    /// AdamW settings of the tower and the head.
    pub optim: OptimConfig,
}

impl Default for PretrainConfig {
    fn default() -> Self {
        PretrainConfig {
            manifest: PathBuf::from("data/synth-pretrain/manifest.jsonl"),
            synth: SynthConfig {
                videos: 480,
                seed: 1000,
                ..SynthConfig::default()
            },
            steps: 4000,
            batch: 8,
            save_every: 500,
            keep_last: 2,
            optim: OptimConfig {
                lr: 2e-3,
                schedule: ScheduleKind::WarmupCosine,
                warmup_ratio: 0.03,
                min_lr_ratio: 0.05,
                ..OptimConfig::default()
            },
        }
    }
}

impl Validate for PretrainConfig {
    fn validate(&self, p: &str, rules: &mut Rules) {
        self.synth.check(&format!("{p}.synth"), rules);
        rules.check(self.steps >= 1, &format!("{p}.steps"), || {
            format!("steps must be ≥ 1, got {}", self.steps)
        });
        rules.check(self.batch >= 1, &format!("{p}.batch"), || {
            format!("batch must be ≥ 1, got {}", self.batch)
        });
        rules.check(self.keep_last >= 1, &format!("{p}.keep_last"), || {
            format!("keep_last must be ≥ 1, got {}", self.keep_last)
        });
        self.optim.validate(&format!("{p}.optim"), rules);
    }
}

//! `[sft]`: the SFT stage's settings (cold start and cool-off).

use crate::config::rules::{Rules, Validate};
use crate::sft_loss::SftLossConfig;
use crate::text::AnswerOrder;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Which SFT stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SftMode {
    /// Manifest rationales, think-first answers.
    ColdStart,
    /// GRPO's correct rollouts (`sft.cooloff`), rating-first answers.
    CoolOff,
}

impl SftMode {
    pub fn order(self) -> AnswerOrder {
        match self {
            SftMode::ColdStart => AnswerOrder::ThinkFirst,
            SftMode::CoolOff => AnswerOrder::RatingFirst,
        }
    }
}

/// `[sft]` settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SftConfig {
    pub mode: SftMode,
    /// `rollouts/<run>/cooloff.jsonl` (cool-off only).
    pub cooloff: Option<PathBuf>,
    /// Cool-off: the manifest the GRPO run drew its prompts from (its
    /// `grpo.manifest`), which the rows join back to; unset =
    /// `data.manifest`.
    pub manifest: Option<PathBuf>,
    /// Passes over the data (paper: 3).
    pub epochs: u64,
    /// Examples per micro-batch (paper: 8 per update).
    pub batch: usize,
    /// Micro-batches per optimizer update.
    pub grad_accum: usize,
    /// Stop after this many updates (0: `epochs` decide).
    pub max_steps: u64,
    /// α, weight of the answer-token cross-entropy.
    pub ce_weight: f32,
    /// β, weight of the score regression.
    pub mse_weight: f32,
    /// Checkpoint every N updates (0: only at the end).
    pub checkpoint_every: u64,
    /// Checkpoints kept.
    pub keep_last: usize,
    /// Video decoding threads.
    pub workers: usize,
    /// Keep the vision tower fixed.
    pub freeze_vision: bool,
    /// Answer positions per LM-head chunk (`[B, logit_chunk, V]` logits
    /// at a time, by the two-stage backward of `sft/chunked.rs`); 0, or a
    /// window that fits in one chunk, runs the whole answer window at once.
    pub logit_chunk: usize,
}

impl Default for SftConfig {
    fn default() -> Self {
        SftConfig {
            mode: SftMode::ColdStart,
            cooloff: None,
            manifest: None,
            epochs: 3,
            batch: 8,
            grad_accum: 1,
            max_steps: 0,
            ce_weight: 1.0,
            mse_weight: 1.0,
            checkpoint_every: 0,
            keep_last: 2,
            workers: 2,
            freeze_vision: false,
            logit_chunk: crate::grpo::config::DEFAULT_LOGIT_CHUNK,
        }
    }
}

impl SftConfig {
    pub fn loss(&self) -> SftLossConfig {
        SftLossConfig {
            ce_weight: self.ce_weight,
            mse_weight: self.mse_weight,
        }
    }
}

impl Validate for SftConfig {
    fn validate(&self, p: &str, rules: &mut Rules) {
        rules.check(
            self.mode != SftMode::CoolOff || self.cooloff.is_some(),
            &format!("{p}.cooloff"),
            || {
                "mode = \"cool-off\" trains on GRPO's cool-off data: set cooloff = \
                 \"rollouts/<run>/cooloff.jsonl\""
                    .into()
            },
        );
        rules.check(
            self.mode != SftMode::ColdStart || self.cooloff.is_none(),
            &format!("{p}.cooloff"),
            || "cooloff has no effect with mode = \"cold-start\"; remove it".into(),
        );
        rules.check(
            self.mode != SftMode::ColdStart || self.manifest.is_none(),
            &format!("{p}.manifest"),
            || {
                "manifest names the set cool-off rows join to; the cold start reads \
                 data.manifest: remove it"
                    .into()
            },
        );
        rules.check(
            self.epochs >= 1 || self.max_steps >= 1,
            &format!("{p}.epochs"),
            || "epochs (or max_steps) must be ≥ 1".into(),
        );
        for (key, v) in [
            ("batch", self.batch),
            ("grad_accum", self.grad_accum),
            ("keep_last", self.keep_last),
            ("workers", self.workers),
        ] {
            rules.check(v >= 1, &format!("{p}.{key}"), || {
                format!("{key} must be ≥ 1, got {v}")
            });
        }
        for (key, v) in [
            ("ce_weight", self.ce_weight),
            ("mse_weight", self.mse_weight),
        ] {
            rules.check(v.is_finite() && v >= 0.0, &format!("{p}.{key}"), || {
                format!("{key} must be ≥ 0, got {v}")
            });
        }
        rules.check_keys(
            self.ce_weight > 0.0 || self.mse_weight > 0.0,
            &[&format!("{p}.ce_weight"), &format!("{p}.mse_weight")],
            || "ce_weight and mse_weight cannot both be 0 (nothing would be trained)".into(),
        );
    }
}

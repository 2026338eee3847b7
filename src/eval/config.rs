//! `[eval]`: how a judge is evaluated.

use super::judge::JudgeSettings;
use super::metrics::PairwiseConfig;
use crate::config::rules::{Rules, Validate};
use crate::data::Split;
use crate::text::AnswerOrder;
use serde::{Deserialize, Serialize};

/// `[eval]` settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EvalConfig {
    /// The answer layout the model was trained for: `think-first` (cold
    /// start, GRPO) or `rating-first` (cool-off).
    pub order: AnswerOrder,
    /// Which manifest split to judge (rows without a split belong to all).
    pub split: Split,
    /// Prompts judged together in one forward pass.
    pub batch: usize,
    /// Longest greedy answer.
    pub max_new_tokens: usize,
    /// Generate the answer of rating-first models too (format statistics,
    /// rationale); think-first models always generate.
    pub generate: bool,
    /// Pairwise accuracy: the judge predicts a tie when two scores in [0, 1]
    /// differ by less than this (Q-Save appendix A: 0.05).
    pub pred_tie_threshold: f64,
    /// Pairwise accuracy: two MOS within this distance are a human tie.
    pub truth_tie_threshold: f64,
    /// Video decoding threads.
    pub workers: usize,
    /// Judge at most this many rows of the split (0: all).
    pub limit: usize,
}

impl Default for EvalConfig {
    fn default() -> Self {
        EvalConfig {
            order: AnswerOrder::ThinkFirst,
            split: Split::Test,
            batch: 4,
            max_new_tokens: 96,
            generate: true,
            pred_tie_threshold: 0.05,
            truth_tie_threshold: 0.0,
            workers: 2,
            limit: 0,
        }
    }
}

impl EvalConfig {
    pub fn pairwise(&self) -> PairwiseConfig {
        PairwiseConfig {
            pred_tie_threshold: self.pred_tie_threshold,
            truth_tie_threshold: self.truth_tie_threshold,
        }
    }

    pub fn judge_settings(&self) -> JudgeSettings {
        JudgeSettings {
            order: self.order,
            max_new_tokens: self.max_new_tokens,
            generate: self.generate,
        }
    }
}

impl Validate for EvalConfig {
    fn validate(&self, p: &str, rules: &mut Rules) {
        rules.check(self.batch >= 1, &format!("{p}.batch"), || {
            format!("batch must be ≥ 1, got {}", self.batch)
        });
        rules.check(
            self.max_new_tokens >= 1,
            &format!("{p}.max_new_tokens"),
            || format!("max_new_tokens must be ≥ 1, got {}", self.max_new_tokens),
        );
        rules.check(
            (0.0..1.0).contains(&self.pred_tie_threshold),
            &format!("{p}.pred_tie_threshold"),
            || {
                format!(
                    "pred_tie_threshold is on the [0, 1] score scale and must be in [0, 1), got {}",
                    self.pred_tie_threshold
                )
            },
        );
        rules.check(
            self.truth_tie_threshold.is_finite() && self.truth_tie_threshold >= 0.0,
            &format!("{p}.truth_tie_threshold"),
            || {
                format!(
                    "truth_tie_threshold must be ≥ 0, got {}",
                    self.truth_tie_threshold
                )
            },
        );
        rules.check(self.workers >= 1, &format!("{p}.workers"), || {
            format!("workers must be ≥ 1, got {}", self.workers)
        });
    }
}

//! One row of `metrics.jsonl` per GRPO step, with verl's and TRL's names.

use crate::data::Dimension;
use serde::{Deserialize, Serialize};

/// Seconds spent in each stage of a step (verl's `timing_s/*`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct StageSeconds {
    /// Waiting for the decoded batch (0 when the workers kept ahead).
    pub data: f64,
    /// Rollout generation (verl `timing_s/gen`).
    #[serde(rename = "gen")]
    pub generate: f64,
    pub reward: f64,
    pub old_log_prob: f64,
    #[serde(rename = "ref")]
    pub reference: f64,
    pub adv: f64,
    pub update_actor: f64,
    /// The whole step (checkpoint writes excluded).
    pub step: f64,
}

/// Mean R_acc (or exact-match rate) of each dimension's rollouts in one
/// step; `None` for a dimension the step's batch held no prompt of.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct AccuracyByDimension {
    pub visual: Option<f32>,
    pub dynamic: Option<f32>,
    pub alignment: Option<f32>,
}

impl AccuracyByDimension {
    /// Per-dimension means of `(dimension, R_acc)` pairs.
    pub fn of(rollouts: impl IntoIterator<Item = (Dimension, f32)>) -> Self {
        // (sum, count) per dimension.
        let (mut visual, mut dynamic, mut alignment) = ((0.0f64, 0usize), (0.0, 0), (0.0, 0));
        for (dimension, acc) in rollouts {
            let slot = match dimension {
                Dimension::Visual => &mut visual,
                Dimension::Dynamic => &mut dynamic,
                Dimension::Alignment => &mut alignment,
            };
            slot.0 += f64::from(acc);
            slot.1 += 1;
        }
        let mean = |(sum, n): (f64, usize)| (n > 0).then(|| (sum / n as f64) as f32);
        AccuracyByDimension {
            visual: mean(visual),
            dynamic: mean(dynamic),
            alignment: mean(alignment),
        }
    }
}

/// Everything measured in one step. Timing fields differ between runs;
/// everything else is a pure function of the config, the seed and the
/// step, which the exact-resume test checks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepMetrics {
    pub step: u64,
    pub epoch: u64,
    /// Prompts in the batch (videos that failed to decode are left out).
    pub prompts: usize,
    pub skipped_videos: usize,
    #[serde(rename = "reward/mean")]
    pub reward_mean: f32,
    #[serde(rename = "reward/std")]
    pub reward_std: f32,
    /// Mean R_acc, in the form the run trains on (`grpo.accuracy_reward`):
    /// under `exact`, the fraction of rollouts with the right rating.
    #[serde(rename = "reward/acc")]
    pub reward_acc: f32,
    /// The fraction of rollouts well formed and rated the label exactly,
    /// whatever the form of R_acc (= `reward/acc` under `exact`): the
    /// number to compare runs with different reward forms on. `None` only
    /// in rows written before it existed.
    #[serde(rename = "reward/exact", default)]
    pub reward_exact: Option<f32>,
    /// Mean R_fmt (unweighted): the fraction that follows the format.
    #[serde(rename = "reward/fmt")]
    pub reward_fmt: f32,
    /// `reward/acc` per dimension. The pooled number hides a dimension the
    /// judge cannot perceive: it sits at chance (0.2 for five ratings under
    /// `exact`) while another one learns. Absent from rows written before it
    /// existed.
    #[serde(rename = "reward/acc_by_dimension", default)]
    pub reward_acc_by_dimension: AccuracyByDimension,
    /// `reward/exact` per dimension (chance: 0.2). Absent from rows written
    /// before it existed.
    #[serde(rename = "reward/exact_by_dimension", default)]
    pub reward_exact_by_dimension: AccuracyByDimension,
    pub frac_reward_zero_std: f32,
    pub pg_loss: f32,
    /// Token-mean KL to the reference (measured whatever β is).
    pub kl: f32,
    pub entropy: f32,
    #[serde(rename = "clip_ratio/low")]
    pub clip_ratio_low: f32,
    #[serde(rename = "clip_ratio/high")]
    pub clip_ratio_high: f32,
    pub clip_ratio: f32,
    pub grad_norm: f64,
    pub lr: f64,
    /// Optimizer updates applied this step (μ × mini-batches, minus skips).
    pub updates: usize,
    /// Updates skipped for a non-finite gradient.
    pub skipped_updates: usize,
    #[serde(rename = "response_length/mean")]
    pub response_length_mean: f32,
    /// Fraction of rollouts cut at `max_new_tokens`.
    #[serde(rename = "response_length/clip_ratio")]
    pub response_length_clip_ratio: f32,
    /// Rollouts appended to the cool-off data this step.
    pub cooloff_rows: usize,
    pub tokens_per_s: f64,
    #[serde(rename = "timing_s")]
    pub timing: StageSeconds,
}

impl StepMetrics {
    /// The row without its wall-clock fields (for comparing runs).
    pub fn without_timing(&self) -> StepMetrics {
        StepMetrics {
            timing: StageSeconds::default(),
            tokens_per_s: 0.0,
            ..self.clone()
        }
    }
}

/// One line of `rollouts.jsonl` (`grpo.log_rollouts = true`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RolloutRow {
    pub step: u64,
    pub group: u64,
    pub sample: usize,
    /// Manifest row id.
    pub id: String,
    pub dimension: crate::data::Dimension,
    pub label: crate::data::Rating,
    /// The completion without its stop token.
    pub text: String,
    pub tokens: usize,
    pub finish: crate::rollout::FinishReason,
    /// R_acc in the run's form.
    pub acc: f32,
    pub fmt: f32,
    pub reward: f32,
    /// Well formed and rated the label exactly (false in rows written
    /// before it was recorded).
    #[serde(default)]
    pub exact: bool,
    pub advantage: f32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accuracy_is_averaged_within_each_dimension() {
        let got = AccuracyByDimension::of([
            (Dimension::Visual, 1.0),
            (Dimension::Alignment, 0.0),
            (Dimension::Visual, 0.0),
            (Dimension::Visual, 1.0),
            (Dimension::Alignment, 1.0),
        ]);
        assert_eq!(
            got,
            AccuracyByDimension {
                visual: Some(2.0 / 3.0),
                dynamic: None,
                alignment: Some(0.5),
            }
        );
        let json = serde_json::to_string(&got).expect("serialise");
        assert_eq!(
            json,
            r#"{"visual":0.6666667,"dynamic":null,"alignment":0.5}"#
        );
    }
}

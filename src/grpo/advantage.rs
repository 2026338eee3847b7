//! Group-relative advantages (GRPO outcome supervision: one scalar reward per
//! rollout, the same advantage on every token of that rollout).
//!
//! Rewards arrive as a flat slice of `n_groups · G` values, each group's G
//! rollouts contiguous (the order the rollout engine produces them; TRL's
//! `rewards.view(-1, G)` layout). For group g with mean μ_g and sample
//! standard deviation σ_g (divisor G − 1, like `torch.std`):
//!
//! - `Group` (GRPO, verl `norm_adv_by_std_in_grpo = true`):
//!   A_i = (R_i − μ_g) / (σ_g + ε)
//! - `Batch` (TRL `scale_rewards = "batch"`): A_i = (R_i − μ_g) / (σ_B + ε),
//!   σ_B the sample std of all rewards in the batch
//! - `None` (Dr. GRPO, verl `norm_adv_by_std_in_grpo = false`):
//!   A_i = R_i − μ_g
//!
//! ε = 1e-6 by default (verl's value; TRL uses 1e-4). A group whose rewards
//! are all equal carries no learning signal: its advantages are exactly 0 in
//! every mode (not a rounding residue of R − μ), it is counted in
//! `frac_reward_zero_std`, and [`Advantages::informative_groups`] lets the
//! trainer drop it. Statistics are computed in f64 and stored as f32.

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// How advantages are scaled after subtracting the group mean.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AdvantageScale {
    /// Divide by the group's reward std (GRPO).
    #[default]
    Group,
    /// Divide by the whole batch's reward std.
    Batch,
    /// No scaling (Dr. GRPO).
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AdvantageConfig {
    pub scale: AdvantageScale,
    /// ε added to the std before dividing.
    pub epsilon: f32,
}

impl Default for AdvantageConfig {
    fn default() -> Self {
        AdvantageConfig {
            scale: AdvantageScale::Group,
            epsilon: 1e-6,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Error)]
pub enum AdvantageError {
    #[error(
        "group size {group_size} is too small: a group-relative baseline needs at least 2 rollouts"
    )]
    GroupTooSmall { group_size: usize },
    #[error("{n_rewards} rewards do not split into groups of {group_size}")]
    RaggedGroups { n_rewards: usize, group_size: usize },
    #[error("no rewards")]
    Empty,
    #[error("reward {index} is not finite ({value})")]
    NonFiniteReward { index: usize, value: f32 },
    #[error("epsilon must be finite and >= 0, got {epsilon}")]
    BadEpsilon { epsilon: f32 },
}

/// Advantages of one batch, with the group statistics behind them.
#[derive(Debug, Clone, PartialEq)]
pub struct Advantages {
    /// One advantage per rollout, in the order of the input rewards.
    pub values: Vec<f32>,
    pub group_size: usize,
    /// μ_g per group.
    pub group_mean: Vec<f32>,
    /// σ_g per group (sample std, divisor G − 1).
    pub group_std: Vec<f32>,
    /// Whether every reward in the group is the same (σ_g = 0).
    pub zero_std: Vec<bool>,
    /// Fraction of groups with σ_g = 0 (TRL's `frac_reward_zero_std`).
    pub frac_reward_zero_std: f32,
    /// σ_B, the sample std over all rewards (used by `Batch` scaling,
    /// reported in every mode).
    pub batch_std: f32,
}

impl Advantages {
    pub fn n_groups(&self) -> usize {
        self.group_mean.len()
    }

    /// Indices of the groups with σ_g > 0, the ones a "filter" policy keeps.
    pub fn informative_groups(&self) -> Vec<usize> {
        (0..self.n_groups())
            .filter(|&g| !self.zero_std[g])
            .collect()
    }
}

/// Computes group-relative advantages for `rewards` laid out as contiguous
/// groups of `group_size`.
pub fn group_advantages(
    rewards: &[f32],
    group_size: usize,
    config: &AdvantageConfig,
) -> Result<Advantages, AdvantageError> {
    if group_size < 2 {
        return Err(AdvantageError::GroupTooSmall { group_size });
    }
    if rewards.is_empty() {
        return Err(AdvantageError::Empty);
    }
    if !rewards.len().is_multiple_of(group_size) {
        return Err(AdvantageError::RaggedGroups {
            n_rewards: rewards.len(),
            group_size,
        });
    }
    if let Some((index, &value)) = rewards.iter().enumerate().find(|(_, r)| !r.is_finite()) {
        return Err(AdvantageError::NonFiniteReward { index, value });
    }
    if !(config.epsilon.is_finite() && config.epsilon >= 0.0) {
        return Err(AdvantageError::BadEpsilon {
            epsilon: config.epsilon,
        });
    }
    let eps = f64::from(config.epsilon);
    let all: Vec<f64> = rewards.iter().map(|&r| f64::from(r)).collect();
    let (_, batch_std) = mean_and_sample_std(&all);

    let n_groups = rewards.len() / group_size;
    let mut values = Vec::with_capacity(rewards.len());
    let mut group_mean = Vec::with_capacity(n_groups);
    let mut group_std = Vec::with_capacity(n_groups);
    let mut zero_std = Vec::with_capacity(n_groups);
    for group in all.chunks_exact(group_size) {
        let (mean, std) = mean_and_sample_std(group);
        // Exact equality, not a tolerance: rewards are sums of a few 0/1
        // terms, so "all equal" is unambiguous and any spread is signal.
        let constant = group.iter().all(|&r| r == group[0]);
        for &r in group {
            let a = if constant {
                0.0
            } else {
                match config.scale {
                    AdvantageScale::Group => (r - mean) / (std + eps),
                    AdvantageScale::Batch => (r - mean) / (batch_std + eps),
                    AdvantageScale::None => r - mean,
                }
            };
            values.push(a as f32);
        }
        group_mean.push(mean as f32);
        group_std.push(if constant { 0.0 } else { std as f32 });
        zero_std.push(constant);
    }
    let frac_reward_zero_std = zero_std.iter().filter(|&&z| z).count() as f32 / n_groups as f32;
    Ok(Advantages {
        values,
        group_size,
        group_mean,
        group_std,
        zero_std,
        frac_reward_zero_std,
        batch_std: batch_std as f32,
    })
}

/// Mean and sample standard deviation (divisor n − 1; needs n ≥ 2).
pub fn mean_and_sample_std(xs: &[f64]) -> (f64, f64) {
    let n = xs.len() as f64;
    let mean = xs.iter().sum::<f64>() / n;
    let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
    (mean, var.sqrt())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(scale: AdvantageScale) -> AdvantageConfig {
        AdvantageConfig {
            scale,
            epsilon: 1e-6,
        }
    }

    fn assert_close(got: &[f32], want: &[f64]) {
        assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().zip(want) {
            assert!(
                (f64::from(*g) - w).abs() < 1e-6,
                "got {got:?}, want {want:?}"
            );
        }
    }

    #[test]
    fn group_scaling_by_hand() {
        // Group [1.5, 0.5, 0, 0]: mean 0.5, sample var = (1 + 0 + .25 + .25)/3
        // = 0.5, std = 0.70710678.
        let adv =
            group_advantages(&[1.5, 0.5, 0.0, 0.0], 4, &config(AdvantageScale::Group)).unwrap();
        let s = 0.5f64.sqrt() + 1e-6;
        assert_close(&adv.values, &[1.0 / s, 0.0, -0.5 / s, -0.5 / s]);
        assert_eq!(adv.group_mean, vec![0.5]);
        assert!((adv.group_std[0] - 0.5f32.sqrt()).abs() < 1e-6);
        assert_eq!(adv.frac_reward_zero_std, 0.0);
    }

    #[test]
    fn zero_std_groups_get_zero_and_are_counted() {
        // Group 0 constant (0.1, whose mean need not round back to 0.1),
        // group 1 [1, 0], group 2 constant 1.5.
        let rewards = [0.1, 0.1, 0.1, 1.0, 0.0, 0.0, 1.5, 1.5, 1.5];
        for scale in [
            AdvantageScale::Group,
            AdvantageScale::Batch,
            AdvantageScale::None,
        ] {
            let adv = group_advantages(&rewards, 3, &config(scale)).unwrap();
            assert_eq!(&adv.values[0..3], &[0.0, 0.0, 0.0]);
            assert_eq!(&adv.values[6..9], &[0.0, 0.0, 0.0]);
            assert_eq!(adv.zero_std, vec![true, false, true]);
            assert!((adv.frac_reward_zero_std - 2.0 / 3.0).abs() < 1e-7);
            assert_eq!(adv.informative_groups(), vec![1]);
        }
    }

    #[test]
    fn none_and_batch_scaling_by_hand() {
        let rewards = [1.0, 0.0, 1.5, 0.5];
        let adv = group_advantages(&rewards, 2, &config(AdvantageScale::None)).unwrap();
        assert_close(&adv.values, &[0.5, -0.5, 0.5, -0.5]);
        // Batch: mean 0.75, sample var = (.0625+.5625+.5625+.0625)/3 = 1.25/3.
        let adv = group_advantages(&rewards, 2, &config(AdvantageScale::Batch)).unwrap();
        let s = (1.25f64 / 3.0).sqrt() + 1e-6;
        assert_close(&adv.values, &[0.5 / s, -0.5 / s, 0.5 / s, -0.5 / s]);
        assert!((f64::from(adv.batch_std) - (1.25f64 / 3.0).sqrt()).abs() < 1e-6);
    }

    #[test]
    fn advantages_sum_to_zero_per_group() {
        let rewards = [1.5, 0.0, 0.5, 1.5, 0.5, 0.5, 0.0, 1.0];
        let adv = group_advantages(&rewards, 4, &AdvantageConfig::default()).unwrap();
        for group in adv.values.chunks(4) {
            assert!(group.iter().sum::<f32>().abs() < 1e-5);
        }
    }

    #[test]
    fn shifting_rewards_changes_nothing_and_scaling_cancels_in_group_mode() {
        let rewards = [1.5f32, 0.0, 0.5, 1.5, 0.5, 0.5, 0.0, 1.0];
        let shifted: Vec<f32> = rewards.iter().map(|r| r + 3.0).collect();
        let scaled: Vec<f32> = rewards.iter().map(|r| r * 4.0).collect();
        let c = AdvantageConfig {
            scale: AdvantageScale::Group,
            epsilon: 0.0,
        };
        let base = group_advantages(&rewards, 4, &c).unwrap().values;
        for other in [&shifted, &scaled] {
            let adv = group_advantages(other, 4, &c).unwrap().values;
            for (a, b) in adv.iter().zip(&base) {
                assert!((a - b).abs() < 1e-6, "{adv:?} vs {base:?}");
            }
        }
    }

    #[test]
    fn bad_inputs_are_errors() {
        let c = AdvantageConfig::default();
        assert_eq!(
            group_advantages(&[1.0], 1, &c),
            Err(AdvantageError::GroupTooSmall { group_size: 1 })
        );
        assert_eq!(group_advantages(&[], 2, &c), Err(AdvantageError::Empty));
        assert_eq!(
            group_advantages(&[1.0, 0.0, 1.0], 2, &c),
            Err(AdvantageError::RaggedGroups {
                n_rewards: 3,
                group_size: 2
            })
        );
        assert!(matches!(
            group_advantages(&[1.0, f32::NAN], 2, &c),
            Err(AdvantageError::NonFiniteReward { index: 1, .. })
        ));
        let bad = AdvantageConfig { epsilon: -1.0, ..c };
        assert!(matches!(
            group_advantages(&[1.0, 0.0], 2, &bad),
            Err(AdvantageError::BadEpsilon { .. })
        ));
    }
}

//! `adv`: from rewards to the advantages the update trains on, and to the
//! rows it trains on. With `kl_placement = "reward"` the sequence KL to the
//! reference is subtracted from each reward first (PPO style); with
//! `zero_std = "filter"` the rollouts of groups whose rewards are all equal
//! (A = 0) are left out of the update.

use super::advantage::{Advantages, group_advantages};
use super::collect::Scored;
use super::config::{GrpoConfig, KlPlacement, ZeroStd};
use super::error::TrainError;
use super::forcing::StepLogProbs;
use super::kl_reward::{penalise_rewards, sequence_kl};

/// A step's credit assignment.
#[derive(Debug, Clone)]
pub struct StepAdvantages {
    /// The rewards the advantages were computed from (KL-penalised with
    /// `kl_placement = "reward"`), one per rollout.
    pub rewards: Vec<f32>,
    pub advantages: Advantages,
    /// The rollouts the update trains on, in order.
    pub update_rows: Vec<usize>,
}

/// Rewards → (KL penalty) → group-relative advantages → update rows.
pub fn advantages(
    scored: &[Scored],
    logp: &StepLogProbs,
    cfg: &GrpoConfig,
) -> Result<StepAdvantages, TrainError> {
    let rewards: Vec<f32> = scored.iter().map(|s| s.reward).collect();
    let rewards = match (cfg.kl_placement, &logp.old) {
        (KlPlacement::Reward, Some(old)) => {
            let kl = sequence_kl(
                old.clone(),
                logp.reference.clone(),
                logp.mask.clone(),
                cfg.kl_estimator,
            )?;
            penalise_rewards(&rewards, &kl, cfg.kl_coef)?
        }
        _ => rewards,
    };
    let advantages = group_advantages(&rewards, cfg.group_size, &cfg.advantage())?;
    let update_rows = update_rows(&advantages.zero_std, cfg.group_size, cfg.zero_std);
    Ok(StepAdvantages {
        rewards,
        advantages,
        update_rows,
    })
}

/// The rows (rollout indices, group-major) an update trains on: all of
/// them, or with `filter` those of groups whose rewards differ.
/// `zero_std[k]` tells whether group k's rewards were all equal.
pub fn update_rows(zero_std: &[bool], group_size: usize, mode: ZeroStd) -> Vec<usize> {
    let all = 0..zero_std.len() * group_size;
    match mode {
        ZeroStd::Keep | ZeroStd::Refill => all.collect(),
        ZeroStd::Filter => all.filter(|&r| !zero_std[r / group_size]).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_leaves_out_the_rollouts_of_constant_groups() {
        let zero_std = [false, true, false];
        assert_eq!(update_rows(&zero_std, 2, ZeroStd::Filter), vec![0, 1, 4, 5]);
        for mode in [ZeroStd::Keep, ZeroStd::Refill] {
            assert_eq!(update_rows(&zero_std, 2, mode), (0..6).collect::<Vec<_>>());
        }
        assert!(update_rows(&[true, true], 3, ZeroStd::Filter).is_empty());
    }
}

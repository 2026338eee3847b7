//! GRPO: group-relative advantages and the clipped, KL-regularised policy
//! loss. Pure functions over slices and tensors; the trainer loop that calls
//! them lives beside them.

pub mod advantage;
pub mod config;
pub mod kl_reward;
pub mod loss;
pub mod metrics;
pub mod trainer;

pub use advantage::{
    AdvantageConfig, AdvantageError, AdvantageScale, Advantages, group_advantages,
};
pub use kl_reward::{KlRewardError, penalise_rewards, sequence_kl};
pub use loss::{
    KlEstimator, LossAggregation, PolicyLossConfig, PolicyLossError, PolicyLossInputs,
    PolicyLossMetrics, PolicyLossOutput, aggregate, kl_per_token, policy_loss,
};

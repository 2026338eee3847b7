//! GRPO: group-relative advantages and the clipped, KL-regularised policy
//! loss as pure functions over slices and tensors (`advantage`, `loss`,
//! `kl_reward`), the stages of one step that call them, in data-flow order
//! (`collect` → `forcing` → `credit` → `update`; the update's gradient with
//! the LM head in chunks: `chunked`), and the trainer loop that runs the
//! stages (`trainer`).

pub mod advantage;
pub mod config;
pub mod error;
pub mod kl_reward;
pub mod loss;
pub mod metrics;

pub mod chunked;
pub mod collect;
pub mod credit;
pub mod forcing;
pub mod update;

pub mod trainer;

pub use advantage::{
    AdvantageConfig, AdvantageError, AdvantageScale, Advantages, group_advantages,
};
pub use kl_reward::{KlRewardError, penalise_rewards, sequence_kl};
pub use loss::{
    KlEstimator, LossAggregation, PolicyLossConfig, PolicyLossError, PolicyLossInputs,
    PolicyLossMetrics, PolicyLossOutput, aggregate, kl_per_token, policy_loss,
};

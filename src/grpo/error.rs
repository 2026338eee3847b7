//! Why a GRPO run stopped early or could not start. Every stage of the
//! step returns it, so it sits below them all.

/// Why a GRPO run stopped early or could not start.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("every video of step {step} failed to load; see the warnings above")]
    EmptyBatch { step: u64 },
    #[error(transparent)]
    Run(#[from] crate::run::RunError),
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error("writing the GRPO data set")]
    Synth(#[from] crate::data::synth::SynthError),
    #[error(transparent)]
    Manifest(#[from] crate::data::ManifestError),
    #[error(transparent)]
    Cursor(#[from] crate::data::CursorError),
    #[error(transparent)]
    Load(#[from] crate::model_source::ModelSourceError),
    #[error(transparent)]
    Model(#[from] crate::model::ModelError),
    #[error(transparent)]
    Checkpoint(#[from] crate::checkpoint::CheckpointError),
    #[error(transparent)]
    State(#[from] crate::train_state::TrainStateError),
    #[error(transparent)]
    Jsonl(#[from] crate::jsonl::JsonlError),
    #[error(transparent)]
    Optim(#[from] crate::optim::OptimError),
    #[error(transparent)]
    Loss(#[from] super::loss::PolicyLossError),
    #[error(transparent)]
    Advantage(#[from] super::advantage::AdvantageError),
    #[error(transparent)]
    KlReward(#[from] super::kl_reward::KlRewardError),
    #[error(transparent)]
    Tokenizer(#[from] crate::text::TokenizerError),
    #[error(transparent)]
    Events(#[from] crate::tensorboard::EventError),
}

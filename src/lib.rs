//! vgrpo: a GRPO trainer that turns a video-language model into a judge of
//! AI-generated video, following the Q-Save recipe (arXiv 2511.18825):
//! SFT cold start → GRPO → SFT cool-off, on the Burn framework.
//!
//! Modules are listed in data-flow order (see `docs/design.md`).

// Plumbing every stage uses.
pub mod chart;
pub mod checkpoint;
pub mod config;
pub mod device;
pub mod errors;
pub mod jsonl;
pub mod logging;
pub mod optim;
pub mod plot;
pub mod process;
pub mod progress;
pub mod raster;
pub mod rng;
pub mod run;
pub mod schedule;
pub mod tensorboard;
pub mod train_state;

// Inputs: manifest rows → decoded frames → prompt tokens → the model.
pub mod data;
pub mod default_model;
pub mod inputs;
pub mod loader;
pub mod model;
pub mod model_source;
pub mod text;
pub mod video;

// One GRPO step: sample → reward → log-probs → advantages → loss.
pub mod cooloff;
pub mod grpo;
pub mod logits;
pub mod reward;
pub mod rollout;
pub mod sampling;
pub mod trainable;

// SFT and evaluation.
pub mod eval;
pub mod pipeline;
pub mod pretrain;
pub mod score;
pub mod sft;
pub mod sft_loss;

// Planning a run: device memory from the configs alone.
pub mod plan;

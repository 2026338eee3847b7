//! `vgrpo plan`: the device memory a run needs, from its config and the
//! model's `config.json` alone (no weights), for full fine-tuning and for
//! LoRA side by side.
//!
//! One file per part of the estimate, each term a named function with its
//! formula under `# Shapes` and its assumptions as named constants, so a
//! calibration against measured peaks can adjust one term at a time:
//!
//! ```text
//! input.rs        PlanInput: the numbers, from Config + QwenVlConfig
//! source.rs       the model's config.json from [model] path (or the tiny model's)
//! prompt.rs       prompt length, visual tokens, vision patches and attention pairs
//! params.rs       exact parameter counts; LoRA adapters by the target rule
//! kv_cache.rs     the rollout cache (prompt shared per group)
//! activations.rs  what autodiff keeps per decoder layer / vision block; no-grad peaks
//! logits.rs       the [rows, W, V] logits of each pass
//! estimate.rs     Plan: persistent + the largest stage, named line items in bytes
//! fit.rs          what to change when it does not fit a device
//! bytes.rs        80GiB ⇄ bytes
//! ```
//!
//! The command line only formats a [`Plan`]. The model (docs/design.md,
//! "Memory plan"): a step's stages run one after another and free what
//! they allocate, so a device holds what lives through the step plus the
//! largest stage.

pub mod activations;
pub mod bytes;
pub mod estimate;
pub mod fit;
pub mod input;
pub mod kv_cache;
pub mod logits;
pub mod params;
pub mod prompt;
pub mod source;

pub use bytes::ByteSize;
pub use estimate::{Phase, Plan, estimate};
pub use fit::{Change, Combination, combination, suggestions};
pub use input::{Mode, PlanInput, PlanOptions, Stage, WeightDtype};
pub use source::{ModelShapes, SourceError, model_shapes};

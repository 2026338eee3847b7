//! The Qwen-VL family (Qwen2.5-VL, Qwen3-VL) in Burn, matching transformers 5.
//!
//! One file per concern, in data-flow order: `config` (HF `config.json`),
//! `processor` (video frames -> pixel patches), `position` (M-RoPE ids,
//! windows), `rope`, `layers`, `vision`, `text`, `cache`, `qwen_vl` (the
//! whole model and its inputs), `lora` (adapters on the projections),
//! `adapters` (the projections by HF name; adapters across the model),
//! `peft` (PEFT LoRA adapter directories in and out),
//! `weights` (HF safetensors import/export), `store` (Burn-native
//! checkpoints), `logprob` (teacher-forced log-probs),
//! `check` (compare against a transformers reference file).

pub mod adapters;
pub mod cache;
pub mod check;
pub mod config;
pub mod error;
pub mod layers;
pub mod logprob;
pub mod lora;
pub mod peft;
pub mod position;
pub mod processor;
pub mod qwen_vl;
pub mod rope;
pub mod store;
pub mod text;
pub mod vision;
pub mod weights;

pub use cache::KvCache;
pub use check::{CheckReport, check_model};
pub use config::{Arch, QwenVlConfig};
pub use error::{ModelError, Result};
pub use lora::{LoraConfig, LoraLinear};
pub use peft::{load_adapter, save_adapter};
pub use position::Grid;
pub use qwen_vl::{Batch, QwenVl, VideoInput};

//! Errors of the model layer: configuration, weights, inputs, cache.

use std::path::PathBuf;

/// Everything that can go wrong while building, loading or running a Qwen-VL model.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("cannot read {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid config {path}")]
    ConfigJson {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("unsupported model config: {0}")]
    UnsupportedConfig(String),
    #[error("invalid safetensors file {path}: {message}")]
    Safetensors { path: PathBuf, message: String },
    #[error("tensor {name} has dtype {dtype}, expected a float type (f32, f16, bf16)")]
    UnsupportedDtype { name: String, dtype: String },
    #[error("tensor {name}: checkpoint shape {found:?} does not fit the module shape {expected:?}")]
    ShapeMismatch {
        name: String,
        expected: Vec<usize>,
        found: Vec<usize>,
    },
    #[error(
        "checkpoint does not match the architecture: {} missing [{}], {} unexpected [{}]",
        missing.len(), missing.join(", "), unexpected.len(), unexpected.join(", ")
    )]
    WeightNames {
        missing: Vec<String>,
        unexpected: Vec<String>,
    },
    #[error("PEFT adapter {path}: {message}")]
    Adapter { path: PathBuf, message: String },
    #[error("reference file {path}: {message}")]
    Reference { path: PathBuf, message: String },
    #[error("invalid model input: {0}")]
    Input(String),
    #[error(
        "KV cache overflow: {cached} cached + {incoming} new tokens exceed the capacity {capacity}"
    )]
    CacheOverflow {
        cached: usize,
        incoming: usize,
        capacity: usize,
    },
    #[error("tensor read-back failed: {0}")]
    Readback(String),
    #[error("burn store {path}: {message}")]
    Store { path: PathBuf, message: String },
}

pub type Result<T> = std::result::Result<T, ModelError>;

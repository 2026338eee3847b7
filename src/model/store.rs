//! Training checkpoints in Burn's native burnpack format.
//!
//! Burnpack keeps each parameter's `ParamId`, so optimizer state (keyed by
//! id) re-attaches exactly after a resume; a safetensors round trip (HF
//! export) creates fresh ids and would silently detach it. Use
//! `weights::export_hf` for handing a model to transformers, this for resume.

use std::path::Path;

use burn::store::{BurnpackStore, ModuleSnapshot};

use super::error::{ModelError, Result};
use super::qwen_vl::QwenVl;

fn store_err(path: &Path, message: String) -> ModelError {
    ModelError::Store {
        path: path.to_path_buf(),
        message,
    }
}

/// Writes every parameter of `model` (with its id) to `path` (a `.bpk` file),
/// replacing an existing file.
pub fn save_burnpack(model: &QwenVl, path: &Path) -> Result<()> {
    let mut store = BurnpackStore::from_file(path).overwrite(true);
    model
        .save_into(&mut store)
        .map_err(|e| store_err(path, e.to_string()))
}

/// Fills `model` (built from the same config) from a burnpack file; every
/// parameter must be present and every stored tensor used.
pub fn load_burnpack(mut model: QwenVl, path: &Path) -> Result<QwenVl> {
    let mut store = BurnpackStore::from_file(path);
    let result = model
        .load_from(&mut store)
        .map_err(|e| store_err(path, e.to_string()))?;
    if let Some(err) = result.errors.first() {
        return Err(store_err(path, err.to_string()));
    }
    if !result.missing.is_empty() || !result.unused.is_empty() {
        return Err(ModelError::WeightNames {
            missing: result.missing.into_iter().map(|(name, _)| name).collect(),
            unexpected: result.unused,
        });
    }
    Ok(model)
}

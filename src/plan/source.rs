//! Where a plan's model shapes come from: the `config.json` of `[model]
//! path` alone (a directory with only that file will do: no weights, no
//! tokenizer), a checkpoint's `model_config.json`, or the embedded tiny
//! model's.

use super::input::WeightDtype;
use crate::default_model::TINY_CONFIG_JSON;
use crate::model::QwenVlConfig;
use crate::model::error::ModelError;
use crate::model_source::ModelConfig;
use crate::train_state::MODEL_CONFIG_FILE;
use std::path::{Path, PathBuf};

/// Why a plan's model could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("{path}: no config.json (or {MODEL_CONFIG_FILE} of a vgrpo checkpoint) to plan from")]
    NoConfig { path: PathBuf },
    #[error("cannot read {path}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}")]
    Model { path: PathBuf, source: ModelError },
    #[error("{path}: {message}")]
    Dtype { path: PathBuf, message: String },
}

/// The model's `config.json` text, where it was read, and its parse.
pub struct ModelShapes {
    pub json: String,
    /// `None`: the embedded tiny model.
    pub path: Option<PathBuf>,
    pub config: QwenVlConfig,
}

/// Reads the config `[model]` points at: `path/config.json`,
/// `path/model_config.json`, or `path` itself when it is a file.
pub fn model_shapes(model: &ModelConfig) -> Result<ModelShapes, SourceError> {
    let Some(dir) = &model.path else {
        let config =
            QwenVlConfig::from_json(TINY_CONFIG_JSON).map_err(|source| SourceError::Model {
                path: "embedded tiny model".into(),
                source,
            })?;
        return Ok(ModelShapes {
            json: TINY_CONFIG_JSON.to_string(),
            path: None,
            config,
        });
    };
    let file = config_file(dir).ok_or_else(|| SourceError::NoConfig { path: dir.clone() })?;
    let json = std::fs::read_to_string(&file).map_err(|source| SourceError::Io {
        path: file.clone(),
        source,
    })?;
    let config = QwenVlConfig::from_json(&json).map_err(|source| SourceError::Model {
        path: file.clone(),
        source,
    })?;
    Ok(ModelShapes {
        json,
        path: Some(file),
        config,
    })
}

impl ModelShapes {
    /// The dtype the checkpoint is stored in, as its `config.json` says.
    pub fn checkpoint_dtype(&self) -> Result<WeightDtype, SourceError> {
        WeightDtype::of_checkpoint(&self.json).map_err(|message| SourceError::Dtype {
            path: self
                .path
                .clone()
                .unwrap_or_else(|| "embedded tiny model".into()),
            message,
        })
    }
}

fn config_file(path: &Path) -> Option<PathBuf> {
    if path.is_file() {
        return Some(path.to_path_buf());
    }
    ["config.json", MODEL_CONFIG_FILE]
        .iter()
        .map(|name| path.join(name))
        .find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_with_only_config_json_is_enough() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/models/qwen3-vl-8b");
        let shapes = model_shapes(&ModelConfig {
            path: Some(dir.clone()),
            ..ModelConfig::default()
        })
        .unwrap();
        assert_eq!(shapes.config.text.num_hidden_layers, 36);
        assert_eq!(shapes.path, Some(dir.join("config.json")));
        assert_eq!(shapes.checkpoint_dtype().unwrap(), WeightDtype::Bf16);
        let tiny = model_shapes(&ModelConfig::default()).unwrap();
        assert!(tiny.path.is_none());
        let missing = model_shapes(&ModelConfig {
            path: Some("/nonexistent/model".into()),
            ..ModelConfig::default()
        })
        .err()
        .unwrap();
        assert!(missing.to_string().contains("no config.json"), "{missing}");
    }
}

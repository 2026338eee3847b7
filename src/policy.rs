//! `[model]`: which model a run trains or evaluates, and loading it with its
//! tokenizer.
//!
//! Either a HuggingFace-layout directory (`config.json`, `tokenizer.json`,
//! `*.safetensors` — a released Qwen2.5-VL / Qwen3-VL checkpoint, or the
//! `final/` export of an earlier vgrpo stage), or, when no path is given,
//! the embedded tiny Qwen3-VL with its embedded tokenizer, initialised from
//! a seed. Stages hand models to each other through `final/` exports, so a
//! stage boundary is exactly "load a HF directory"; within a stage, resume
//! uses the Burn-native checkpoints of [`crate::train_state`].

use crate::default_model::{TINY_CONFIG_JSON, tiny_model};
use crate::model::{ModelError, QwenVl, QwenVlConfig};
use crate::text::tokenizer::{Tokenizer, TokenizerError};
use burn::tensor::Device;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The file a model directory keeps its tokenizer in.
pub const TOKENIZER_FILE: &str = "tokenizer.json";

/// `[model]` settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct ModelConfig {
    /// HF model directory. Unset: the embedded tiny Qwen3-VL.
    pub path: Option<PathBuf>,
    /// `tokenizer.json` to use instead of `<path>/tokenizer.json` (or of
    /// the embedded tiny tokenizer).
    pub tokenizer: Option<PathBuf>,
    /// Seed of the tiny model's initialisation; defaults to `run.seed`.
    pub init_seed: Option<u64>,
}

impl crate::config::Validate for ModelConfig {
    fn validate(&self, p: &str, rules: &mut crate::config::Rules) {
        if let Some(path) = &self.path {
            rules.check(
                path.join("config.json").is_file(),
                &format!("{p}.path"),
                || {
                    format!(
                        "path must be a model directory with a config.json (HF layout), \
                     but {} has none",
                        path.display()
                    )
                },
            );
        }
        if let Some(t) = &self.tokenizer {
            rules.check(t.is_file(), &format!("{p}.tokenizer"), || {
                format!(
                    "tokenizer must be a tokenizer.json file, {} is not one",
                    t.display()
                )
            });
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("loading the model from {path}: {source}")]
    Model { path: String, source: ModelError },
    #[error(transparent)]
    Tokenizer(#[from] TokenizerError),
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "the tokenizer has {tokenizer} ids but the model's vocabulary is {model}: \
         they do not belong together"
    )]
    VocabMismatch { tokenizer: usize, model: usize },
}

/// A model with the text it was configured from and its tokenizer.
pub struct Loaded {
    pub model: QwenVl,
    /// The `config.json` text (kept so checkpoints and exports carry it).
    pub config_json: String,
    pub tokenizer: Tokenizer,
}

impl ModelConfig {
    /// Where the model comes from, for logs.
    pub fn describe(&self) -> String {
        match &self.path {
            Some(p) => p.display().to_string(),
            None => "the embedded tiny Qwen3-VL".into(),
        }
    }

    /// Loads the model on `device` (use `device.autodiff()` to train it)
    /// and its tokenizer. `run_seed` seeds the tiny model unless
    /// `init_seed` is set.
    pub fn load(&self, run_seed: u64, device: &Device) -> Result<Loaded, LoadError> {
        let (model, config_json) = match &self.path {
            Some(dir) => {
                let model_err = |source| LoadError::Model {
                    path: dir.display().to_string(),
                    source,
                };
                let config_path = dir.join("config.json");
                let config_json =
                    std::fs::read_to_string(&config_path).map_err(|source| LoadError::Read {
                        path: config_path.clone(),
                        source,
                    })?;
                (
                    QwenVl::from_hf_dir(dir, device).map_err(model_err)?,
                    config_json,
                )
            }
            None => {
                let seed = self.init_seed.unwrap_or(run_seed);
                let model = tiny_model(seed, device).map_err(|source| LoadError::Model {
                    path: "assets/tiny/config.json".into(),
                    source,
                })?;
                (model, TINY_CONFIG_JSON.to_string())
            }
        };
        let tokenizer = match (&self.tokenizer, &self.path) {
            (Some(file), _) => Tokenizer::from_file(file)?,
            (None, Some(dir)) => Tokenizer::from_file(&dir.join(TOKENIZER_FILE))?,
            (None, None) => Tokenizer::tiny()?,
        };
        check_vocab(&tokenizer, &model.config)?;
        Ok(Loaded {
            model,
            config_json,
            tokenizer,
        })
    }
}

/// The tokenizer's ids must all be valid model ids (a model may have more
/// rows than the tokenizer has ids: real Qwen checkpoints pad the vocab).
fn check_vocab(tokenizer: &Tokenizer, config: &QwenVlConfig) -> Result<(), LoadError> {
    let (t, m) = (tokenizer.vocab_size(), config.text.vocab_size);
    if t > m {
        return Err(LoadError::VocabMismatch {
            tokenizer: t,
            model: m,
        });
    }
    Ok(())
}

/// Writes `model` as a HF directory a later stage (or transformers) loads:
/// `config.json`, `model.safetensors` and the tokenizer.
pub fn export(
    model: &QwenVl,
    config_json: &str,
    tokenizer: &Tokenizer,
    dir: &Path,
) -> Result<(), LoadError> {
    model
        .export_hf(config_json, dir)
        .map_err(|source| LoadError::Model {
            path: dir.display().to_string(),
            source,
        })?;
    let path = dir.join(TOKENIZER_FILE);
    tokenizer.save(&path)?;
    Ok(())
}

//! `[model]`: which judge a command runs — the embedded tiny model, a
//! HuggingFace-layout directory, or a training checkpoint — and its
//! tokenizer.
//!
//! ```toml
//! [model]
//! path = "runs/cold/final"        # absent: the embedded tiny Qwen3-VL
//! tokenizer = "…/tokenizer.json"  # absent: <path>/tokenizer.json, or the
//!                                 # embedded tiny tokenizer for the tiny model
//! adapter = "…/lora"              # a PEFT LoRA adapter, merged in at load
//! ```
//!
//! A directory is read by what it holds: `config.json` + `*.safetensors` is a
//! HF model (`QwenVl::from_hf_dir`); `actor.bpk` + `model_config.json` is a
//! checkpoint written by [`crate::train_state`] (`runs/<name>/checkpoints/
//! step_XXXXXX/`). The model's `config.json` text travels with it, so an SFT
//! run can export its result with the same config and a later stage can
//! checkpoint it.

use crate::checkpoint::{DirIoError, replace_dir};
use crate::config::rules::{Rules, Validate};
use crate::default_model::{TINY_CONFIG_JSON, tiny_config, tiny_model};
use crate::model::peft::save_adapter;
use crate::model::{LoraConfig, ModelError, QwenVl, QwenVlConfig, load_adapter};
use crate::text::tiny_tokenizer::TINY_TOKENIZER_JSON;
use crate::text::{Tokenizer, TokenizerError};
use crate::train_state::{self, TrainStateError};
use burn::tensor::{DType, Device, FloatDType};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// `[model]` settings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelConfig {
    /// HF model directory or checkpoint directory; absent means the
    /// embedded tiny model, freshly initialised from `run.seed`.
    pub path: Option<PathBuf>,
    /// `tokenizer.json` to use instead of the one found with the model.
    pub tokenizer: Option<PathBuf>,
    /// A PEFT LoRA adapter directory (`adapter_config.json` +
    /// `adapter_model.safetensors`, e.g. from a LLaMA-Factory SFT or
    /// `runs/<name>/final/adapter`): merged into the weights at load, so
    /// the merged model is the starting policy (and a LoRA run's reference).
    pub adapter: Option<PathBuf>,
    /// The dtype the weights are held in on the device: `auto` keeps the
    /// dtype a HF checkpoint's `config.json` declares (bf16 for the released
    /// Qwen models; f32 when it declares none) — the
    /// frozen base of a LoRA run, eval, score, rollout — while full
    /// fine-tuning trains f32 master weights (see
    /// [`ModelConfig::for_training`]); `f32`, `bf16`, `f16` convert. The
    /// weights' dtype is the compute dtype (norms, softmax and log-softmax
    /// stay f32).
    pub dtype: WeightDtype,
}

/// `[model] dtype`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WeightDtype {
    #[default]
    Auto,
    F32,
    Bf16,
    F16,
}

impl WeightDtype {
    /// The name a config writes (`bf16`).
    pub fn name(self) -> &'static str {
        match self {
            WeightDtype::Auto => "auto",
            WeightDtype::F32 => "f32",
            WeightDtype::Bf16 => "bf16",
            WeightDtype::F16 => "f16",
        }
    }

    /// The dtype to load in; `None`: the one the checkpoint declares.
    pub fn resolve(self) -> Option<DType> {
        match self {
            WeightDtype::Auto => None,
            WeightDtype::F32 => Some(DType::F32),
            WeightDtype::Bf16 => Some(DType::BF16),
            WeightDtype::F16 => Some(DType::F16),
        }
    }
}

impl ModelConfig {
    /// The model a trainer loads. Without `[lora]` every weight trains, so
    /// the weights are f32 masters (`auto` → `f32`; a half dtype is refused:
    /// AdamW on bf16 weights loses updates below the weight's precision).
    /// With `[lora]` the base is frozen and keeps `dtype`.
    pub fn for_training(&self, lora: bool) -> Result<ModelConfig, ModelSourceError> {
        match (lora, self.dtype) {
            (true, _) => Ok(self.clone()),
            (false, WeightDtype::Auto | WeightDtype::F32) => Ok(ModelConfig {
                dtype: WeightDtype::F32,
                ..self.clone()
            }),
            (false, dtype) => Err(ModelSourceError::HalfMasters { dtype }),
        }
    }
}

impl Validate for ModelConfig {
    fn validate(&self, p: &str, rules: &mut Rules) {
        if let Some(path) = &self.path {
            rules.check(!path.as_os_str().is_empty(), &format!("{p}.path"), || {
                "path must not be empty (remove the key for the tiny model)".into()
            });
        }
        if let Some(path) = &self.adapter {
            rules.check(
                !path.as_os_str().is_empty(),
                &format!("{p}.adapter"),
                || "adapter must not be empty (remove the key for no adapter)".into(),
            );
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ModelSourceError {
    #[error("model {path}")]
    Model { path: String, source: ModelError },
    #[error("adapter {path}")]
    Adapter { path: PathBuf, source: ModelError },
    #[error(transparent)]
    Checkpoint(#[from] TrainStateError),
    #[error("tokenizer")]
    Tokenizer(#[from] TokenizerError),
    #[error(
        "{path} is not a model directory: expected config.json + *.safetensors (HF layout) or \
         actor.bpk + model_config.json (a vgrpo checkpoint)"
    )]
    NotAModel { path: PathBuf },
    #[error(
        "model.dtype = \"{}\" trains every weight in half precision; full fine-tuning keeps \
         f32 master weights (model.dtype = \"auto\" or \"f32\"), or add a [lora] section to \
         train adapters on a half-precision base",
        dtype.name()
    )]
    HalfMasters { dtype: WeightDtype },
    #[error(
        "{path} is a LoRA checkpoint: it holds only the adapters, not a whole model; use the \
         run's final/ export (the merged model), or resume the run"
    )]
    AdaptersOnly { path: PathBuf },
    #[error(
        "no tokenizer for the model at {path}: it has no tokenizer.json and is not the tiny \
         model; set [model] tokenizer"
    )]
    NoTokenizer { path: PathBuf },
    #[error("cannot read {path}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("writing the model export")]
    Export(#[from] DirIoError),
}

/// Where a model came from (for reports).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind", content = "path")]
pub enum ModelOrigin {
    /// The embedded tiny model, initialised from this seed.
    Tiny(u64),
    HfDir(PathBuf),
    Checkpoint(PathBuf),
    /// A base model with a PEFT adapter merged into it.
    WithAdapter {
        base: Box<ModelOrigin>,
        adapter: PathBuf,
    },
}

impl std::fmt::Display for ModelOrigin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ModelOrigin::Tiny(seed) => write!(f, "tiny model (seed {seed})"),
            ModelOrigin::HfDir(p) => write!(f, "{}", p.display()),
            ModelOrigin::Checkpoint(p) => write!(f, "checkpoint {}", p.display()),
            ModelOrigin::WithAdapter { base, adapter } => {
                write!(f, "{base} + adapter {}", adapter.display())
            }
        }
    }
}

/// A model ready to run, with what it needs around it.
pub struct LoadedModel {
    pub model: QwenVl,
    /// The `config.json` text the model was built from (for checkpoints
    /// and HF export).
    pub config_json: String,
    pub tokenizer: Tokenizer,
    pub origin: ModelOrigin,
}

/// Loads the model `cfg` names onto `device` (use `device.autodiff()` to
/// train it). `seed` initialises the tiny model. With `[model] adapter` the
/// PEFT adapter is merged into the base ([`load_adapter`],
/// [`QwenVl::merged`]): the merged model is the one returned.
pub fn load_model(
    cfg: &ModelConfig,
    seed: u64,
    device: &Device,
) -> Result<LoadedModel, ModelSourceError> {
    let loaded = load_base(cfg, seed, device)?;
    let Some(adapter) = &cfg.adapter else {
        return Ok(loaded);
    };
    let model = load_adapter(adapter, loaded.model)
        .map_err(|source| ModelSourceError::Adapter {
            path: adapter.clone(),
            source,
        })?
        .merged();
    Ok(LoadedModel {
        model,
        origin: ModelOrigin::WithAdapter {
            base: Box::new(loaded.origin),
            adapter: adapter.clone(),
        },
        ..loaded
    })
}

/// The base model `cfg` names, without its adapter.
fn load_base(
    cfg: &ModelConfig,
    seed: u64,
    device: &Device,
) -> Result<LoadedModel, ModelSourceError> {
    let tiny_err = |source| ModelSourceError::Model {
        path: "embedded tiny model".into(),
        source,
    };
    let Some(dir) = &cfg.path else {
        let tokenizer = match &cfg.tokenizer {
            Some(path) => Tokenizer::from_file(path)?,
            None => Tokenizer::tiny()?,
        };
        return Ok(LoadedModel {
            model: in_dtype(tiny_model(seed, device).map_err(tiny_err)?, cfg.dtype),
            config_json: TINY_CONFIG_JSON.to_string(),
            tokenizer,
            origin: ModelOrigin::Tiny(seed),
        });
    };
    let model_err = |source| ModelSourceError::Model {
        path: dir.display().to_string(),
        source,
    };
    let read = |path: PathBuf| {
        std::fs::read_to_string(&path).map_err(|source| ModelSourceError::Io { path, source })
    };
    let (model, config_json, origin) = if dir.join("config.json").is_file() {
        let model = QwenVl::from_hf_dir_in(dir, device, cfg.dtype.resolve()).map_err(model_err)?;
        let json = read(dir.join("config.json"))?;
        (model, json, ModelOrigin::HfDir(dir.clone()))
    } else if dir.join(train_state::ACTOR_FILE).is_file() {
        let json = read(dir.join(train_state::MODEL_CONFIG_FILE))?;
        let config = QwenVlConfig::from_json(&json).map_err(model_err)?;
        let model = train_state::load_actor(dir, QwenVl::new(&config, device))?;
        (
            in_dtype(model, cfg.dtype),
            json,
            ModelOrigin::Checkpoint(dir.clone()),
        )
    } else if dir.join(train_state::ADAPTERS_FILE).is_file() {
        return Err(ModelSourceError::AdaptersOnly { path: dir.clone() });
    } else {
        return Err(ModelSourceError::NotAModel { path: dir.clone() });
    };
    let tokenizer = resolve_tokenizer(cfg.tokenizer.as_deref(), dir, &model.config)?;
    Ok(LoadedModel {
        model,
        config_json,
        tokenizer,
        origin,
    })
}

/// `model` with its weights in `dtype` (`auto`: as they are).
fn in_dtype(model: QwenVl, dtype: WeightDtype) -> QwenVl {
    let held = model.model.language_model.embed_tokens.weight.val().dtype();
    match dtype.resolve() {
        Some(want) if want != held => model.with_float_dtype(FloatDType::from(want)),
        _ => model,
    }
}

/// The explicit tokenizer, else the model directory's `tokenizer.json`, else
/// the embedded tiny tokenizer when the model is the tiny architecture.
fn resolve_tokenizer(
    explicit: Option<&Path>,
    dir: &Path,
    config: &QwenVlConfig,
) -> Result<Tokenizer, ModelSourceError> {
    if let Some(path) = explicit {
        return Ok(Tokenizer::from_file(path)?);
    }
    let beside = dir.join("tokenizer.json");
    if beside.is_file() {
        return Ok(Tokenizer::from_file(&beside)?);
    }
    let is_tiny = tiny_config().is_ok_and(|tiny| &tiny == config);
    if is_tiny {
        Ok(Tokenizer::tiny()?)
    } else {
        Err(ModelSourceError::NoTokenizer {
            path: dir.to_path_buf(),
        })
    }
}

/// Writes `model` as a HF directory with its `config.json` and a
/// `tokenizer.json`, so `[model] path` (and transformers) can load it.
///
/// `dir` is replaced whole ([`replace_dir`]): a crash mid-export leaves the
/// previous export, no directory, or the complete new one — never a
/// `config.json` beside missing weights, which `vgrpo pipeline` would take
/// for a finished stage.
pub fn export_model(
    model: &QwenVl,
    config_json: &str,
    tokenizer: &Tokenizer,
    dir: &Path,
) -> Result<(), ModelSourceError> {
    replace_dir(dir, |tmp| write_export(model, config_json, tokenizer, tmp))
}

/// The HF export and the tokenizer into `tmp`.
fn write_export(
    model: &QwenVl,
    config_json: &str,
    tokenizer: &Tokenizer,
    tmp: &Path,
) -> Result<(), ModelSourceError> {
    model
        .export_hf(Some(config_json), tmp)
        .map_err(|source| ModelSourceError::Model {
            path: tmp.display().to_string(),
            source,
        })?;
    let path = tmp.join("tokenizer.json");
    let text = tokenizer_json(tokenizer)?;
    std::fs::write(&path, text).map_err(|source| DirIoError { path, source })?;
    Ok(())
}

/// The adapters a LoRA run exports beside its merged model.
pub struct AdapterExport<'a> {
    pub lora: &'a LoraConfig,
    /// `base_model_name_or_path` of the adapter: the model the run loaded.
    pub base: String,
}

/// [`export_model`] of a trained model: the merged model, and with
/// `adapter` (a LoRA run) the adapters alone as a PEFT directory
/// `dir/adapter/` (`peft.PeftModel.from_pretrained` loads it on the run's
/// base), in the same atomic replacement.
pub fn export_trained(
    model: &QwenVl,
    config_json: &str,
    tokenizer: &Tokenizer,
    dir: &Path,
    adapter: Option<AdapterExport<'_>>,
) -> Result<(), ModelSourceError> {
    replace_dir(dir, |tmp| {
        write_export(model, config_json, tokenizer, tmp)?; // export_hf merges
        if let Some(a) = adapter {
            let path = tmp.join(ADAPTER_DIR);
            save_adapter(model, a.lora, &a.base, &path).map_err(|source| {
                ModelSourceError::Model {
                    path: path.display().to_string(),
                    source,
                }
            })?;
        }
        Ok(())
    })
}

/// `final/adapter/`: a LoRA run's adapters in PEFT format.
pub const ADAPTER_DIR: &str = "adapter";

/// The `tokenizer.json` text of a loaded tokenizer: its source file, or the
/// embedded tiny tokenizer.
fn tokenizer_json(tokenizer: &Tokenizer) -> Result<String, ModelSourceError> {
    let origin = tokenizer.origin();
    let tiny = Tokenizer::tiny()?;
    if origin == tiny.origin() {
        return Ok(TINY_TOKENIZER_JSON.to_string());
    }
    let path = PathBuf::from(origin);
    std::fs::read_to_string(&path).map_err(|source| ModelSourceError::Io { path, source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiny_default_exports_and_reloads_as_a_hf_dir_and_a_checkpoint() {
        let device = crate::device::test_device();
        let tmp = tempfile::tempdir().unwrap();
        let loaded = load_model(&ModelConfig::default(), 3, &device).unwrap();
        assert_eq!(loaded.origin, ModelOrigin::Tiny(3));

        let hf = tmp.path().join("final");
        export_model(&loaded.model, &loaded.config_json, &loaded.tokenizer, &hf).unwrap();
        let cfg = ModelConfig {
            path: Some(hf.clone()),
            ..Default::default()
        };
        let again = load_model(&cfg, 99, &device).unwrap();
        assert_eq!(again.origin, ModelOrigin::HfDir(hf));
        assert_eq!(again.tokenizer.vocab_size(), loaded.tokenizer.vocab_size());
        let weights = |m: &QwenVl| {
            m.model
                .language_model
                .embed_tokens
                .weight
                .val()
                .into_data()
                .try_to_vec::<f32>()
                .unwrap()
        };
        assert_eq!(weights(&again.model), weights(&loaded.model));

        let ckpt = tmp.path().join("step_000001");
        std::fs::create_dir_all(&ckpt).unwrap();
        train_state::save_actor(&ckpt, &loaded.model, &loaded.config_json).unwrap();
        let cfg = ModelConfig {
            path: Some(ckpt.clone()),
            ..Default::default()
        };
        let from_ckpt = load_model(&cfg, 99, &device).unwrap();
        assert_eq!(from_ckpt.origin, ModelOrigin::Checkpoint(ckpt));
        assert_eq!(weights(&from_ckpt.model), weights(&loaded.model));

        let cfg = ModelConfig {
            path: Some(tmp.path().to_path_buf()),
            ..Default::default()
        };
        assert!(matches!(
            load_model(&cfg, 0, &device),
            Err(ModelSourceError::NotAModel { .. })
        ));
    }
}

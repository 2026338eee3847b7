//! What a checkpoint holds so that a resumed run continues bit for bit:
//!
//! ```text
//! step_000010/
//!   actor.bpk           actor weights, Burn's burnpack store, with parameter ids
//!   (adapters.bpk)      instead, in a LoRA run: only the adapter factors —
//!                       the frozen base is rebuilt from the run's model
//!   optimizer.bpk       AdamW moments and step counts, keyed by parameter id
//!   model_config.json   the HF config.json the actor was built from
//!   train_state.json    step, RNG states, data cursor, JSONL lengths, counters
//! ```
//!
//! The weights go through Burn's own record format on purpose. AdamW's state
//! is keyed by each parameter's `ParamId`; burnpack stores those ids and
//! loading restores them, so the reloaded optimizer state re-attaches to the
//! right tensors. A safetensors round trip keeps only names: the fresh
//! model's random ids would then match no optimizer entry, and AdamW would
//! silently restart from zero moments (a resumed step then equals a
//! fresh-optimizer step). Safetensors is for HF import/export only.
//!
//! The frozen reference model of GRPO is not in the checkpoint: it never
//! changes, so a resumed run rebuilds it from the run's starting weights.
//!
//! [`save`] is meant to run inside [`crate::checkpoint::CheckpointDir::save`]'s
//! closure, which makes the directory appear atomically.

use std::path::{Path, PathBuf};

use burn::module::{Module, ParamGroup};
use burn::store::ModuleRecord;
use serde::{Deserialize, Serialize};

use crate::data::dataset::Cursor;
use crate::model::{ModelError, QwenVl, QwenVlConfig};
use crate::optim::{OptimError, Optimizer};
use crate::rng::Rng;

pub const ACTOR_FILE: &str = "actor.bpk";
pub const ADAPTERS_FILE: &str = "adapters.bpk";
pub const OPTIMIZER_FILE: &str = "optimizer.bpk";
pub const MODEL_CONFIG_FILE: &str = "model_config.json";
pub const STATE_FILE: &str = "train_state.json";

/// Version of `train_state.json`; bumped when its meaning changes.
pub const STATE_FORMAT: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum TrainStateError {
    #[error("{path}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not a valid train state")]
    Json {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("{path}: train state format {found}, this build reads format {expected}")]
    Format {
        path: PathBuf,
        found: u32,
        expected: u32,
    },
    #[error("{path}: {message}")]
    Weights { path: PathBuf, message: String },
    #[error("{path}")]
    ModelConfig { path: PathBuf, source: ModelError },
    #[error(
        "{path}: the checkpoint's model differs from the run's model ({difference}); \
         resume with the model the checkpoint was trained from"
    )]
    ConfigMismatch { path: PathBuf, difference: String },
    #[error(
        "{path}: {}",
        if *checkpoint_has_adapters {
            "the checkpoint holds LoRA adapters but the run has no [lora] section"
        } else {
            "the checkpoint holds full weights but the run has a [lora] section"
        }
    )]
    LoraMismatch {
        path: PathBuf,
        checkpoint_has_adapters: bool,
    },
    #[error(transparent)]
    Optimizer(#[from] OptimError),
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> TrainStateError + '_ {
    move |source| TrainStateError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The random generators a run draws from, by consumer. Data order needs no
/// entry: it is a pure function of the seed and the [`Cursor`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RngStates {
    /// Token sampling of the rollouts.
    pub rollout: Rng,
    /// Shuffling of rollouts into mini-batches across the μ update passes.
    pub update: Rng,
}

impl RngStates {
    /// The generators of a fresh run with `seed`.
    pub fn new(seed: u64) -> Self {
        RngStates {
            rollout: Rng::stream(seed, "rollout"),
            update: Rng::stream(seed, "update"),
        }
    }
}

/// Everything besides tensors that a resumed run needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainState {
    /// [`STATE_FORMAT`] of the writer.
    pub format: u32,
    /// Optimizer updates completed (the next update is number `step`).
    pub step: u64,
    /// The run's seed, so a resume under another seed can be refused.
    pub seed: u64,
    pub rng: RngStates,
    /// Where the next batch starts.
    pub data: Cursor,
    /// Committed byte length of `metrics.jsonl`.
    pub metrics_len: u64,
    /// Committed byte length of `cooloff.jsonl`.
    pub cooloff_len: u64,
    /// Committed byte length of `rollouts.jsonl` (when every rollout is
    /// logged; absent in older checkpoints).
    #[serde(default)]
    pub rollouts_len: u64,
    /// Non-finite updates skipped in a row just before this checkpoint.
    pub consecutive_non_finite: u32,
    /// Non-finite updates skipped over the whole run.
    pub total_non_finite: u64,
}

impl TrainState {
    /// The state at the start of a fresh run.
    pub fn fresh(seed: u64) -> Self {
        TrainState {
            format: STATE_FORMAT,
            step: 0,
            seed,
            rng: RngStates::new(seed),
            data: Cursor::default(),
            metrics_len: 0,
            cooloff_len: 0,
            rollouts_len: 0,
            consecutive_non_finite: 0,
            total_non_finite: 0,
        }
    }

    pub fn write(&self, path: &Path) -> Result<(), TrainStateError> {
        let text = serde_json::to_string_pretty(self).map_err(|source| TrainStateError::Json {
            path: path.to_path_buf(),
            source,
        })?;
        std::fs::write(path, text + "\n").map_err(io(path))
    }

    pub fn read(path: &Path) -> Result<Self, TrainStateError> {
        let text = std::fs::read_to_string(path).map_err(io(path))?;
        // The format is checked before the fields, so an old or newer file
        // says so instead of naming the first field that changed.
        #[derive(Deserialize)]
        struct Format {
            format: u32,
        }
        let json = |source| TrainStateError::Json {
            path: path.to_path_buf(),
            source,
        };
        let Format { format } = serde_json::from_str(&text).map_err(json)?;
        if format != STATE_FORMAT {
            return Err(TrainStateError::Format {
                path: path.to_path_buf(),
                found: format,
                expected: STATE_FORMAT,
            });
        }
        serde_json::from_str(&text).map_err(json)
    }
}

/// Writes any module's weights with their parameter ids (burnpack), so a
/// resumed optimizer's state re-attaches to them.
pub fn save_module<M: Module>(path: &Path, module: &M) -> Result<(), TrainStateError> {
    // `into_record` takes the module; a clone shares the tensors.
    module
        .clone()
        .into_record()
        .save(path)
        .map_err(|e| TrainStateError::Weights {
            path: path.to_path_buf(),
            message: e.to_string(),
        })
}

/// Loads the weights [`save_module`] wrote into `fresh` (built the same
/// way), restoring the parameter ids; every tensor must match by name and
/// shape.
pub fn load_module<M: Module>(path: &Path, fresh: M) -> Result<M, TrainStateError> {
    let weights = |e: burn::store::RecordError| TrainStateError::Weights {
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    let record = ModuleRecord::load(path).map_err(weights)?;
    fresh.try_load_record(record).map_err(weights)
}

/// Writes the actor's weights with their parameter ids and the
/// `config.json` text it was built from. An actor with adapters writes only
/// them ([`ADAPTERS_FILE`]): its base is frozen, so the run's model
/// rebuilds it exactly, and only the adapters have optimizer state.
pub fn save_actor(dir: &Path, actor: &QwenVl, config_json: &str) -> Result<(), TrainStateError> {
    let config_path = dir.join(MODEL_CONFIG_FILE);
    let parsed =
        QwenVlConfig::from_json(config_json).map_err(|source| TrainStateError::ModelConfig {
            path: config_path.clone(),
            source,
        })?;
    // The text must describe this very model, or a later load would check
    // against the wrong thing.
    check_same_config(&config_path, &parsed, &actor.config)?;
    std::fs::write(&config_path, config_json).map_err(io(&config_path))?;
    let adapters = actor.adapter_ids();
    if adapters.is_empty() {
        return save_module(&dir.join(ACTOR_FILE), actor);
    }
    let path = dir.join(ADAPTERS_FILE);
    actor
        .clone()
        .into_record_group(ParamGroup::from_ids(adapters))
        .save(&path)
        .map_err(|e| TrainStateError::Weights {
            path: path.clone(),
            message: e.to_string(),
        })
}

/// Loads the weights [`save_actor`] wrote into `fresh` (a model built from
/// the run's config on the training device — for a LoRA checkpoint, the
/// run's base with fresh adapters on the same projections), restoring the
/// parameter ids. Every saved tensor must match by name and shape; the
/// checkpoint's model config must equal `fresh`'s.
pub fn load_actor(dir: &Path, fresh: QwenVl) -> Result<QwenVl, TrainStateError> {
    let config_path = dir.join(MODEL_CONFIG_FILE);
    let text = std::fs::read_to_string(&config_path).map_err(io(&config_path))?;
    let saved = QwenVlConfig::from_json(&text).map_err(|source| TrainStateError::ModelConfig {
        path: config_path.clone(),
        source,
    })?;
    check_same_config(&config_path, &saved, &fresh.config)?;
    let adapters = dir.join(ADAPTERS_FILE);
    match (adapters.is_file(), fresh.has_adapters()) {
        (false, false) => load_module(&dir.join(ACTOR_FILE), fresh),
        (true, true) => load_adapters(&adapters, fresh),
        (saved, _) => Err(TrainStateError::LoraMismatch {
            path: dir.to_path_buf(),
            checkpoint_has_adapters: saved,
        }),
    }
}

/// Applies an adapters-only record over `fresh`: every adapter of `fresh`
/// must be in it (and nothing else may be), the base stays as built.
fn load_adapters(path: &Path, fresh: QwenVl) -> Result<QwenVl, TrainStateError> {
    let weights = |message: String| TrainStateError::Weights {
        path: path.to_path_buf(),
        message,
    };
    let record = ModuleRecord::load(path).map_err(|e| weights(e.to_string()))?;
    let saved = record.len();
    let expected = fresh.adapter_ids().len();
    if saved != expected {
        return Err(weights(format!(
            "{saved} adapter tensors, the run's [lora] gives {expected}"
        )));
    }
    fresh
        .try_load_record(record.allow_partial(true))
        .map_err(|e| weights(e.to_string()))
}

/// Errors unless the two configs are equal, naming the first differing field.
fn check_same_config(
    path: &Path,
    saved: &QwenVlConfig,
    current: &QwenVlConfig,
) -> Result<(), TrainStateError> {
    if saved == current {
        return Ok(());
    }
    let (a, b) = (format!("{saved:#?}"), format!("{current:#?}"));
    let difference = a
        .lines()
        .zip(b.lines())
        .find(|(x, y)| x != y)
        .map(|(x, y)| format!("checkpoint `{}` vs run `{}`", x.trim(), y.trim()))
        .unwrap_or_else(|| "configs differ".to_string());
    Err(TrainStateError::ConfigMismatch {
        path: path.to_path_buf(),
        difference,
    })
}

/// One checkpoint's contents, borrowed for writing.
pub struct Snapshot<'a> {
    pub actor: &'a QwenVl,
    /// The `config.json` text the actor was built from.
    pub model_config_json: &'a str,
    pub optimizer: &'a Optimizer,
    pub state: &'a TrainState,
}

/// Writes a checkpoint into `dir` (the temporary directory
/// `CheckpointDir::save` hands its closure).
pub fn save(dir: &Path, snapshot: &Snapshot<'_>) -> Result<(), TrainStateError> {
    save_actor(dir, snapshot.actor, snapshot.model_config_json)?;
    snapshot.optimizer.save(&dir.join(OPTIMIZER_FILE))?;
    snapshot.state.write(&dir.join(STATE_FILE))
}

/// The checkpoint writer a trainer of a [`QwenVl`] hands the run lifecycle
/// (`crate::run::Run::end_step`): it saves the actor, its optimizer and the
/// state the lifecycle passes in ([`save`]).
pub fn writer<'a>(
    actor: &'a QwenVl,
    model_config_json: &'a str,
    optimizer: &'a Optimizer,
) -> impl FnOnce(&Path, &TrainState) -> Result<(), TrainStateError> + 'a {
    move |dir, state| {
        let snapshot = Snapshot {
            actor,
            model_config_json,
            optimizer,
            state,
        };
        save(dir, &snapshot)
    }
}

/// A checkpoint read back: the actor with its saved weights and ids, the
/// optimizer with its moments re-attached, and the run state.
pub struct Restored {
    pub actor: QwenVl,
    pub optimizer: Optimizer,
    pub state: TrainState,
}

/// Reads checkpoint `dir` into a freshly built actor and optimizer.
/// Apply any freezing (e.g. [`crate::optim::freeze_vision`]) after loading,
/// as on a fresh start.
pub fn load(
    dir: &Path,
    fresh_actor: QwenVl,
    fresh_optimizer: Optimizer,
) -> Result<Restored, TrainStateError> {
    let state = TrainState::read(&dir.join(STATE_FILE))?;
    let actor = load_actor(dir, fresh_actor)?;
    let optimizer = fresh_optimizer.load(&dir.join(OPTIMIZER_FILE))?;
    Ok(Restored {
        actor,
        optimizer,
        state,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::default_model::{TINY_CONFIG_JSON, tiny_model};

    #[test]
    fn state_round_trips_and_refuses_other_formats() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join(STATE_FILE);
        let mut state = TrainState::fresh(42);
        state.step = 7;
        state.rng.rollout.next_u64();
        state.data = Cursor {
            epoch: 2,
            position: 8,
        };
        state.metrics_len = 1234;
        state.write(&path).unwrap();
        assert_eq!(TrainState::read(&path).unwrap(), state);
        // u64 states above 2^53 survive JSON exactly.
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains(&state.rng.rollout.state().to_string()));

        std::fs::write(&path, text.replace("\"format\": 1", "\"format\": 9")).unwrap();
        let err = TrainState::read(&path).unwrap_err().to_string();
        assert!(
            err.contains("train state format 9, this build reads format 1"),
            "{err}"
        );
        std::fs::write(&path, text.replace("\"step\"", "\"steps\"")).unwrap();
        assert!(matches!(
            TrainState::read(&path),
            Err(TrainStateError::Json { .. })
        ));
    }

    #[test]
    fn actor_round_trip_keeps_values_and_ids_and_checks_the_config() {
        let tmp = tempfile::tempdir().unwrap();
        let device = crate::device::test_device();
        let actor = tiny_model(1, &device).unwrap();
        save_actor(tmp.path(), &actor, TINY_CONFIG_JSON).unwrap();
        let loaded = load_actor(tmp.path(), tiny_model(2, &device).unwrap()).unwrap();
        let a = &actor.model.language_model.embed_tokens.weight;
        let b = &loaded.model.language_model.embed_tokens.weight;
        assert_eq!(a.id, b.id, "parameter id restored");
        assert_eq!(
            a.val().into_data().try_to_vec::<f32>().unwrap(),
            b.val().into_data().try_to_vec::<f32>().unwrap()
        );

        // A model of another size is refused by name.
        let other_json =
            TINY_CONFIG_JSON.replace("\"num_hidden_layers\": 4", "\"num_hidden_layers\": 3");
        let other = QwenVl::new(&QwenVlConfig::from_json(&other_json).unwrap(), &device);
        let err = load_actor(tmp.path(), other).unwrap_err();
        assert!(matches!(err, TrainStateError::ConfigMismatch { .. }));
        assert!(err.to_string().contains("num_hidden_layers: 4"), "{err}");

        // Saving refuses a config text that does not describe the actor.
        let err = save_actor(tmp.path(), &actor, &other_json).unwrap_err();
        assert!(
            matches!(err, TrainStateError::ConfigMismatch { .. }),
            "{err}"
        );
    }
}

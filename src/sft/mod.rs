//! `vgrpo sft`: supervised fine-tuning of the judge, for the cold start
//! (think-first answers from the manifest's rationales) and the cool-off
//! (rating-first answers harvested from GRPO), paper §4.2.2–4.2.3.
//!
//! Loss per micro-batch: α·CE over the answer tokens + β·(score − MOS_norm)²
//! with the softmax-expectation score read at the rating position
//! ([`crate::sft_loss`]). AdamW with global clipping and the `[optim]`
//! schedule ([`crate::optim`]); `grad_accum` micro-batches per update, each
//! loss divided by `grad_accum` so the summed gradient is the mean's.
//!
//! Run directory `runs/<name>/`: `config.toml`, `metrics.jsonl` (one row per
//! update), `checkpoints/step_XXXXXX/` (weights, AdamW state, data cursor,
//! `metrics.jsonl` length; [`crate::train_state`]) and `final/` (HF layout:
//! `config.json`, `model.safetensors`, `tokenizer.json`). `--resume auto`
//! continues from `checkpoints/latest`, truncating `metrics.jsonl` to what
//! that checkpoint committed.

pub mod data;

use crate::checkpoint::{CheckpointDir, CheckpointError, Resume};
use crate::config::{Config, ConfigError, Rules, Validate};
use crate::cooloff::CoolOffRow;
use crate::data::{BatchCursor, CursorError, Manifest, ManifestError};
use crate::inputs::InputSpec;
use crate::jsonl::{JsonlError, JsonlWriter, read_rows};
use crate::model::{ModelError, QwenVl};
use crate::model_source::{ModelSourceError, export_model, load_model};
use crate::optim::{GradAccumulator, OptimError, Optimizer, StepOutcome, freeze_vision};
use crate::progress::Progress;
use crate::score::gather_rating_logits;
use crate::sft_loss::{SftLossConfig, SftLossError, SftLossInputs, SftLossMetrics, sft_loss};
use crate::text::{AnswerOrder, RatingSite};
use crate::train_state::{self, Snapshot, TrainState, TrainStateError};
use crate::video::OrderedPool;
use burn::optim::GradientsParams;
use burn::tensor::Device;
use data::{SftDataError, SftItem, SftSample, SftTensors, prepare_sample, sft_tensors};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

/// Updates skipped in a row for a non-finite gradient before the run stops.
pub const MAX_CONSECUTIVE_NON_FINITE: u32 = 5;

/// Which SFT stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SftMode {
    /// Manifest rationales, think-first answers.
    ColdStart,
    /// GRPO's correct rollouts (`sft.cooloff`), rating-first answers.
    CoolOff,
}

impl SftMode {
    pub fn order(self) -> AnswerOrder {
        match self {
            SftMode::ColdStart => AnswerOrder::ThinkFirst,
            SftMode::CoolOff => AnswerOrder::RatingFirst,
        }
    }
}

/// `[sft]` settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SftConfig {
    pub mode: SftMode,
    /// `rollouts/<run>/cooloff.jsonl` (cool-off only).
    pub cooloff: Option<PathBuf>,
    /// Passes over the data (paper: 3).
    pub epochs: u64,
    /// Examples per micro-batch (paper: 8 per update).
    pub batch: usize,
    /// Micro-batches per optimizer update.
    pub grad_accum: usize,
    /// Stop after this many updates (0: `epochs` decide).
    pub max_steps: u64,
    /// α, weight of the answer-token cross-entropy.
    pub ce_weight: f32,
    /// β, weight of the score regression.
    pub mse_weight: f32,
    /// Checkpoint every N updates (0: only at the end).
    pub checkpoint_every: u64,
    /// Checkpoints kept.
    pub keep_last: usize,
    /// Video decoding threads.
    pub workers: usize,
    /// Keep the vision tower fixed.
    pub freeze_vision: bool,
}

impl Default for SftConfig {
    fn default() -> Self {
        SftConfig {
            mode: SftMode::ColdStart,
            cooloff: None,
            epochs: 3,
            batch: 8,
            grad_accum: 1,
            max_steps: 0,
            ce_weight: 1.0,
            mse_weight: 1.0,
            checkpoint_every: 0,
            keep_last: 2,
            workers: 2,
            freeze_vision: false,
        }
    }
}

impl SftConfig {
    pub fn loss(&self) -> SftLossConfig {
        SftLossConfig {
            ce_weight: self.ce_weight,
            mse_weight: self.mse_weight,
        }
    }
}

impl Validate for SftConfig {
    fn validate(&self, p: &str, rules: &mut Rules) {
        rules.check(
            self.mode != SftMode::CoolOff || self.cooloff.is_some(),
            &format!("{p}.cooloff"),
            || {
                "mode = \"cool-off\" trains on GRPO's cool-off data: set cooloff = \
                 \"rollouts/<run>/cooloff.jsonl\""
                    .into()
            },
        );
        rules.check(
            self.mode != SftMode::ColdStart || self.cooloff.is_none(),
            &format!("{p}.cooloff"),
            || "cooloff has no effect with mode = \"cold-start\"; remove it".into(),
        );
        rules.check(
            self.epochs >= 1 || self.max_steps >= 1,
            &format!("{p}.epochs"),
            || "epochs (or max_steps) must be ≥ 1".into(),
        );
        for (key, v) in [
            ("batch", self.batch),
            ("grad_accum", self.grad_accum),
            ("keep_last", self.keep_last),
            ("workers", self.workers),
        ] {
            rules.check(v >= 1, &format!("{p}.{key}"), || {
                format!("{key} must be ≥ 1, got {v}")
            });
        }
        for (key, v) in [
            ("ce_weight", self.ce_weight),
            ("mse_weight", self.mse_weight),
        ] {
            rules.check(v.is_finite() && v >= 0.0, &format!("{p}.{key}"), || {
                format!("{key} must be ≥ 0, got {v}")
            });
        }
        rules.check_keys(
            self.ce_weight > 0.0 || self.mse_weight > 0.0,
            &[&format!("{p}.ce_weight"), &format!("{p}.mse_weight")],
            || "ce_weight and mse_weight cannot both be 0 (nothing would be trained)".into(),
        );
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SftError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error(transparent)]
    Data(#[from] SftDataError),
    #[error(transparent)]
    Model(#[from] ModelSourceError),
    #[error(transparent)]
    Forward(#[from] ModelError),
    #[error(transparent)]
    Loss(#[from] SftLossError),
    #[error(transparent)]
    Optim(#[from] OptimError),
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error(transparent)]
    State(#[from] TrainStateError),
    #[error(transparent)]
    Jsonl(#[from] JsonlError),
    #[error(transparent)]
    Cursor(#[from] CursorError),
    #[error("{path}: no training examples ({skipped} train rows have no rationale)")]
    NoData { path: PathBuf, skipped: usize },
    #[error(
        "{dir} already has checkpoints; pass --resume auto to continue it or choose another \
         run.name"
    )]
    RunExists { dir: PathBuf },
    #[error("{count} updates in a row had a non-finite gradient (last norm {grad_norm}); stopping")]
    NonFinite { count: u32, grad_norm: f64 },
    #[error("the decoding worker for item {index} panicked: {message}")]
    Panicked { index: usize, message: String },
    #[error("a run of {steps} updates needs at least one: more data, more epochs or smaller batch")]
    NoSteps { steps: u64 },
}

/// One `metrics.jsonl` row (one optimizer update).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SftStepMetrics {
    /// 1-based update number.
    pub step: u64,
    /// Fractional epoch reached.
    pub epoch: f64,
    /// Mean over the update's micro-batches.
    pub loss: f32,
    pub ce: f32,
    pub mse: f32,
    pub lr: f64,
    /// Global gradient norm before clipping (absent when skipped).
    pub grad_norm: Option<f64>,
    pub skipped_non_finite: bool,
    pub answer_tokens: usize,
    /// All tokens (prompt included) forwarded per second.
    pub tokens_per_s: f64,
    pub seconds: f64,
    /// Examples whose video failed to load (left out of this update).
    pub failed_examples: usize,
}

/// What a finished run did.
#[derive(Debug, Clone, PartialEq)]
pub struct SftSummary {
    pub run_dir: PathBuf,
    /// The exported HF-layout model.
    pub final_dir: PathBuf,
    pub steps: u64,
    pub items: usize,
    /// Cold start: train rows without a rationale.
    pub skipped_no_rationale: usize,
    pub last: Option<SftStepMetrics>,
    pub seconds: f64,
}

/// The forward pass and loss of one micro-batch; the loss keeps its graph.
pub fn micro_batch_loss(
    model: &QwenVl,
    tensors: SftTensors,
    rating_ids: [u32; 5],
    loss: &SftLossConfig,
    device: &Device,
) -> Result<crate::sft_loss::SftLossOutput, SftError> {
    let hidden = model.forward_hidden(&tensors.batch, None, device)?; // [B, L, H]
    let [_, l, _] = hidden.dims();
    // Only the window of answer-predicting positions reaches the LM head:
    // [B, W, H] → [B, W, V].
    let logits = model.logits(hidden.narrow(1, tensors.start, l - 1 - tensors.start));
    let rating_logits = gather_rating_logits(logits.clone(), tensors.rating_positions, rating_ids); // [B, 5]
    Ok(sft_loss(
        SftLossInputs {
            logits,
            targets: tensors.targets,
            answer_mask: tensors.mask,
            rating_logits,
            target_score: tensors.target_score,
        },
        loss,
    )?)
}

/// The data a run trains on.
pub struct SftData {
    pub manifest: Arc<Manifest>,
    pub items: Arc<Vec<SftItem>>,
    pub skipped_no_rationale: usize,
}

/// Reads the manifest and the stage's answers.
pub fn load_sft_data(cfg: &Config) -> Result<SftData, SftError> {
    let scale = cfg.data.mos_scale();
    let (manifest, items, skipped) = match (&cfg.sft.mode, &cfg.sft.cooloff) {
        // The rollouts join back to the rows GRPO drew them from.
        (SftMode::CoolOff, Some(path)) => {
            let manifest = Manifest::load(cfg.grpo_manifest())?;
            let rows: Vec<CoolOffRow> = read_rows(path)?;
            let items = data::cooloff_items(&manifest, &rows, scale)?;
            (manifest, items, 0)
        }
        _ => {
            let manifest = Manifest::load(&cfg.data.manifest)?;
            let (items, skipped) = data::cold_start_items(&manifest, scale);
            (manifest, items, skipped)
        }
    };
    if skipped > 0 {
        log::warn!("sft: {skipped} train rows have no rationale and are skipped");
    }
    if items.is_empty() {
        return Err(SftError::NoData {
            path: manifest.path.clone(),
            skipped,
        });
    }
    Ok(SftData {
        manifest: Arc::new(manifest),
        items: Arc::new(items),
        skipped_no_rationale: skipped,
    })
}

type SampleJob = Result<SftSample, SftDataError>;

/// `vgrpo sft`: trains `[model]` on the `[sft]` data and exports the result.
pub fn run_sft(cfg: &Config, resume: &Resume, device: &Device) -> Result<SftSummary, SftError> {
    let started = Instant::now();
    let sft = &cfg.sft;
    let data = load_sft_data(cfg)?;
    let run_dir = cfg.run.dir();
    let checkpoints = CheckpointDir::new(run_dir.join("checkpoints"), sft.keep_last);
    let from = checkpoints.resolve(resume)?;
    if from.is_none() && checkpoints.latest()?.is_some() {
        return Err(SftError::RunExists {
            dir: checkpoints.root().to_path_buf(),
        });
    }
    cfg.write_resolved(&run_dir)?;

    let train_device = device.clone().autodiff();
    let loaded = load_model(&cfg.model, cfg.run.seed, &train_device)?;
    let tokenizer = loaded.tokenizer.clone();
    let config_json = loaded.config_json.clone();
    let mut model = loaded.model;
    let mut optimizer = Optimizer::new(&cfg.optim);
    let mut state = TrainState::fresh(cfg.run.seed);
    if let Some(dir) = &from {
        let restored = train_state::load(dir, model, optimizer)?;
        model = restored.actor;
        optimizer = restored.optimizer;
        state = restored.state;
        log::info!("sft: resuming from {} (step {})", dir.display(), state.step);
    }
    if sft.freeze_vision {
        model = freeze_vision(model);
    }
    let metrics_path = run_dir.join("metrics.jsonl");
    let mut metrics = if from.is_some() {
        JsonlWriter::resume(&metrics_path, state.metrics_len)?
    } else {
        JsonlWriter::create(&metrics_path)?
    };

    let order = sft.mode.order();
    let spec = Arc::new(InputSpec::new(&model.config, &cfg.video));
    let cursor = BatchCursor::resume(cfg.run.seed, data.items.len(), sft.batch, state.data)?;
    let micro_per_epoch = cursor.steps_per_epoch() as u64;
    let total = if sft.max_steps > 0 {
        sft.max_steps
    } else {
        sft.epochs * micro_per_epoch / sft.grad_accum as u64
    };
    if total == 0 {
        return Err(SftError::NoSteps { steps: total });
    }
    let schedule = cfg.optim.to_schedule();
    let rating_ids = tokenizer.ratings().ids(RatingSite::for_order(order));
    let special = *tokenizer.special();

    // Workers decode ahead on their own copy of the cursor; the trainer's
    // cursor advances when it takes a micro-batch (what checkpoints store).
    let mut cursor = cursor;
    let mut ahead = cursor.clone();
    let job_tokenizer = Arc::new(tokenizer.clone());
    let (manifest, items) = (Arc::clone(&data.manifest), Arc::clone(&data.items));
    let job_spec = Arc::clone(&spec);
    let mut pool: OrderedPool<usize, SampleJob> = OrderedPool::new(
        std::iter::from_fn(move || Some(ahead.next_batch())).flatten(),
        sft.workers,
        2 * sft.batch,
        move |i| prepare_sample(&manifest, &items[i], &job_spec, &job_tokenizer, order),
    );

    let loss_cfg = sft.loss();
    let progress = Progress::new("sft", total, state.step);
    let mut last = None;
    while state.step < total {
        let t0 = Instant::now();
        let mut grads: GradAccumulator<QwenVl> = GradAccumulator::new();
        let mut sums = SftLossMetrics {
            loss: 0.0,
            ce: 0.0,
            mse: 0.0,
            answer_tokens: 0,
        };
        let (mut micro, mut tokens, mut failed) = (0usize, 0usize, 0usize);
        for _ in 0..sft.grad_accum {
            let mut samples = Vec::with_capacity(sft.batch);
            for index in cursor.next_batch() {
                match pool.next() {
                    Some(Ok(Ok(sample))) => samples.push(sample),
                    Some(Ok(Err(e))) => {
                        log::warn!("sft: leaving out item {index}: {e}");
                        failed += 1;
                    }
                    Some(Err(panic)) => {
                        return Err(SftError::Panicked {
                            index,
                            message: panic.0,
                        });
                    }
                    None => {
                        return Err(SftError::Panicked {
                            index,
                            message: "the decoding pool stopped".into(),
                        });
                    }
                }
            }
            if samples.is_empty() {
                continue;
            }
            let tensors = sft_tensors(
                &samples,
                special.endoftext,
                special.video_pad,
                &train_device,
            );
            tokens += tensors.tokens;
            let out = micro_batch_loss(&model, tensors, rating_ids, &loss_cfg, &train_device)?;
            let scaled = out.loss.div_scalar(sft.grad_accum as f32);
            grads.add(
                &model,
                GradientsParams::from_grads(scaled.backward(), &model),
            );
            sums.loss += out.metrics.loss;
            sums.ce += out.metrics.ce;
            sums.mse += out.metrics.mse;
            sums.answer_tokens += out.metrics.answer_tokens;
            micro += 1;
        }
        let lr = schedule.lr_at(state.step, total);
        let (grad_norm, skipped) = match grads.micro_batches() {
            0 => (None, false),
            _ => {
                let (updated, outcome) = optimizer.step(model, grads.take(), lr)?;
                model = updated;
                match outcome {
                    StepOutcome::Applied(stats) => {
                        state.consecutive_non_finite = 0;
                        (Some(stats.grad_norm), false)
                    }
                    StepOutcome::SkippedNonFinite { grad_norm } => {
                        state.consecutive_non_finite += 1;
                        state.total_non_finite += 1;
                        log::warn!(
                            "sft: update {} skipped: non-finite gradient norm {grad_norm}",
                            state.step + 1
                        );
                        if state.consecutive_non_finite >= MAX_CONSECUTIVE_NON_FINITE {
                            return Err(SftError::NonFinite {
                                count: state.consecutive_non_finite,
                                grad_norm,
                            });
                        }
                        (None, true)
                    }
                }
            }
        };
        state.step += 1;
        state.data = cursor.cursor();
        let seconds = t0.elapsed().as_secs_f64();
        let n = micro.max(1) as f32;
        let row = SftStepMetrics {
            step: state.step,
            epoch: (state.data.epoch as f64)
                + state.data.position as f64 / (micro_per_epoch as f64 * sft.batch as f64),
            loss: sums.loss / n,
            ce: sums.ce / n,
            mse: sums.mse / n,
            lr,
            grad_norm,
            skipped_non_finite: skipped,
            answer_tokens: sums.answer_tokens,
            tokens_per_s: tokens as f64 / seconds.max(1e-9),
            seconds,
            failed_examples: failed,
        };
        metrics.append(&row)?;
        progress.step(&format!(
            "loss {:.4} ce {:.4} mse {:.4} lr {:.2e}",
            row.loss, row.ce, row.mse, row.lr
        ));
        last = Some(row);
        let periodic = sft.checkpoint_every > 0 && state.step.is_multiple_of(sft.checkpoint_every);
        if periodic || state.step == total {
            metrics.sync()?;
            state.metrics_len = metrics.len();
            let snapshot = Snapshot {
                actor: &model,
                model_config_json: &config_json,
                optimizer: &optimizer,
                state: &state,
            };
            checkpoints.save(state.step, |dir| train_state::save(dir, &snapshot))?;
        }
    }
    progress.finish();
    pool.shutdown();
    let final_dir = run_dir.join("final");
    export_model(&model, &config_json, &tokenizer, &final_dir)?;
    Ok(SftSummary {
        run_dir,
        final_dir,
        steps: state.step,
        items: data.items.len(),
        skipped_no_rationale: data.skipped_no_rationale,
        last,
        seconds: started.elapsed().as_secs_f64(),
    })
}

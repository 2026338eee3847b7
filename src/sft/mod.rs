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

pub mod chunked;
pub mod config;
pub mod data;

pub use config::{SftConfig, SftMode};

use crate::checkpoint::{CheckpointError, Resume};
use crate::config::{Config, ConfigError};
use crate::cooloff::CoolOffRow;
use crate::data::{BatchCursor, CursorError, Manifest, ManifestError};
use crate::inputs::InputSpec;
use crate::jsonl::{JsonlError, read_rows};
use crate::model::{ModelError, QwenVl};
use crate::model_source::{AdapterExport, ModelSourceError, export_trained, load_model};
use crate::optim::{GradAccumulator, OptimError, Optimizer, StepOutcome, freeze_vision};
use crate::progress::Progress;
use crate::run::{ExtraLogs, Finish, Run, RunError, RunSpec};
use crate::score::gather_rating_logits;
use crate::sft_loss::{SftLossConfig, SftLossError, SftLossInputs, sft_loss};
use crate::text::RatingSite;
use crate::train_state::{self, TrainState, TrainStateError};
use crate::trainable::{seed_dropout, trainable};
use crate::video::OrderedPool;
use burn::module::Module;
use burn::optim::GradientsParams;
use burn::tensor::Device;
use data::{SftDataError, SftItem, SftSample, SftTensors, prepare_sample, sft_tensors};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

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
    #[error(transparent)]
    Run(#[from] RunError),
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
    /// The exported HF-layout model (written only when not interrupted).
    pub final_dir: PathBuf,
    pub steps: u64,
    /// Stopped by Ctrl-C before the last update (a checkpoint was written).
    pub interrupted: bool,
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
            let drawn_from = cfg.sft.manifest.as_deref().unwrap_or(&cfg.data.manifest);
            let manifest = Manifest::load_in_scale(drawn_from, scale)?;
            let rows: Vec<CoolOffRow> = read_rows(path)?;
            let items = data::cooloff_items(&manifest, &rows, scale)?;
            (manifest, items, 0)
        }
        _ => {
            let manifest = Manifest::load_in_scale(&cfg.data.manifest, scale)?;
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

/// Config sections SFT's results do not depend on (a resume ignores edits
/// there).
const IGNORED_SECTIONS: &[&str] = &["eval", "grpo", "pretrain", "pipeline"];

/// `vgrpo sft`: trains `[model]` on the `[sft]` data and exports the
/// result. `interrupt` is polled between updates: when set, the run
/// checkpoints and returns with `interrupted`.
pub fn run_sft(
    cfg: &Config,
    resume: &Resume,
    device: &Device,
    interrupt: &AtomicBool,
) -> Result<SftSummary, SftError> {
    let started = Instant::now();
    let sft = &cfg.sft;
    // Inputs first, so a missing model or manifest is reported before a
    // clash with an existing run directory.
    let data = load_sft_data(cfg)?;
    let train_device = cfg.run.train_device(device);
    let source = cfg.model.for_training(cfg.lora.is_some())?;
    let loaded = load_model(&source, cfg.run.seed, &train_device)?;
    let micro_per_epoch =
        BatchCursor::new(cfg.run.seed, data.items.len(), sft.batch)?.steps_per_epoch() as u64;
    let total = match sft.max_steps {
        0 => sft.epochs * micro_per_epoch / sft.grad_accum as u64,
        n => n,
    };
    if total == 0 {
        return Err(SftError::NoSteps { steps: total });
    }
    let spec = RunSpec {
        config: cfg,
        total_steps: total,
        save_every: sft.checkpoint_every,
        keep_last: sft.keep_last,
        ignored_sections: IGNORED_SECTIONS,
    };
    let run = Run::open(&spec, resume)?;
    let tokenizer = loaded.tokenizer;
    let origin = loaded.origin;
    let config_json = loaded.config_json;
    let optimizer = Optimizer::new(&cfg.optim);
    let fresh = (
        trainable(loaded.model, cfg.lora.as_ref(), cfg.run.seed),
        optimizer,
    );
    let ((model, mut optimizer), mut state) = run.restore(
        || fresh.clone(),
        |dir| {
            let restored = train_state::load(dir, fresh.0.clone(), fresh.1.clone())?;
            Ok::<_, SftError>(((restored.actor, restored.optimizer), restored.state))
        },
    )?;
    let mut model = if sft.freeze_vision {
        freeze_vision(model)
    } else {
        model
    };
    let mut logs = run.logs(&state, ExtraLogs::default())?;

    let order = sft.mode.order();
    let mut cursor = BatchCursor::resume(cfg.run.seed, data.items.len(), sft.batch, state.data)?;
    let mut pool = sample_pool(&data, &cursor, &model, cfg, &tokenizer);
    let step_cfg = UpdateSettings {
        loss: sft.loss(),
        rating_ids: tokenizer.ratings().ids(RatingSite::for_order(order)),
        special: *tokenizer.special(),
        grad_accum: sft.grad_accum,
        logit_chunk: sft.logit_chunk,
        device: &train_device,
    };
    let schedule = cfg.optim.to_schedule();
    let progress = Progress::new("sft", total, state.step);
    let mut last = None;
    while state.step < total && !interrupt.load(Ordering::SeqCst) {
        let t0 = Instant::now();
        let lr = schedule.lr_at(state.step, total);
        seed_dropout(cfg.lora.as_ref(), &train_device, &mut state.rng.update);
        let (updated, outcome, sums) =
            sft_update(model, &mut optimizer, &mut pool, &mut cursor, &step_cfg, lr)?;
        model = updated;
        if let Some(outcome) = outcome {
            let step = state.step + 1;
            run.guard(&mut state, step, outcome)?;
        }
        state.step += 1;
        state.data = cursor.cursor();
        let row = sums.metrics_row(&state, outcome, lr, micro_per_epoch, sft.batch, t0);
        logs.step_row(&row)?;
        run.end_step(
            &mut logs,
            &mut state,
            train_state::writer(&model, &config_json, &optimizer),
        )?;
        progress.step(&format!(
            "loss {:.4} ce {:.4} mse {:.4} lr {:.2e}",
            row.loss, row.ce, row.mse, row.lr
        ));
        last = Some(row);
    }
    progress.finish();
    pool.shutdown();
    let finish = run.finish(
        &mut logs,
        &mut state,
        train_state::writer(&model, &config_json, &optimizer),
    )?;
    let final_dir = run.dir().join("final");
    let interrupted = matches!(finish, Finish::Interrupted { .. });
    if !interrupted {
        let adapter = cfg.lora.as_ref().map(|lora| AdapterExport {
            lora,
            base: origin.to_string(),
        });
        export_trained(
            &model.valid(),
            &config_json,
            &tokenizer,
            &final_dir,
            adapter,
        )?;
    }
    Ok(SftSummary {
        run_dir: run.dir().to_path_buf(),
        final_dir,
        steps: state.step,
        interrupted,
        items: data.items.len(),
        skipped_no_rationale: data.skipped_no_rationale,
        last,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Decoding workers that prepare the items in `cursor`'s order, ahead of
/// the trainer, on their own copy of the cursor; the trainer's cursor
/// advances when it takes a micro-batch (what checkpoints store).
fn sample_pool(
    data: &SftData,
    cursor: &BatchCursor,
    model: &QwenVl,
    cfg: &Config,
    tokenizer: &crate::text::Tokenizer,
) -> OrderedPool<usize, SampleJob> {
    let mut ahead = cursor.clone();
    let spec = Arc::new(InputSpec::new(&model.config, &cfg.video));
    let tokenizer = Arc::new(tokenizer.clone());
    let (manifest, items) = (Arc::clone(&data.manifest), Arc::clone(&data.items));
    let order = cfg.sft.mode.order();
    OrderedPool::new(
        std::iter::from_fn(move || Some(ahead.next_batch())).flatten(),
        cfg.sft.workers,
        2 * cfg.sft.batch,
        move |i| prepare_sample(&manifest, &items[i], &spec, &tokenizer, order),
    )
}

/// The fixed settings of an SFT update.
struct UpdateSettings<'a> {
    loss: SftLossConfig,
    rating_ids: [u32; 5],
    special: crate::text::SpecialTokens,
    grad_accum: usize,
    /// `sft.logit_chunk`.
    logit_chunk: usize,
    device: &'a Device,
}

/// Sums over an update's micro-batches.
#[derive(Default)]
struct UpdateSums {
    loss: f32,
    ce: f32,
    mse: f32,
    answer_tokens: usize,
    micro_batches: usize,
    tokens: usize,
    failed: usize,
}

impl UpdateSums {
    /// The update's `metrics.jsonl` row (`state` already counts it).
    fn metrics_row(
        &self,
        state: &TrainState,
        outcome: Option<StepOutcome>,
        lr: f64,
        micro_per_epoch: u64,
        batch: usize,
        started: Instant,
    ) -> SftStepMetrics {
        let seconds = started.elapsed().as_secs_f64();
        let n = self.micro_batches.max(1) as f32;
        SftStepMetrics {
            step: state.step,
            epoch: (state.data.epoch as f64)
                + state.data.position as f64 / (micro_per_epoch as f64 * batch as f64),
            loss: self.loss / n,
            ce: self.ce / n,
            mse: self.mse / n,
            lr,
            grad_norm: match outcome {
                Some(StepOutcome::Applied(stats)) => Some(stats.grad_norm),
                _ => None,
            },
            skipped_non_finite: matches!(outcome, Some(StepOutcome::SkippedNonFinite { .. })),
            answer_tokens: self.answer_tokens,
            tokens_per_s: self.tokens as f64 / seconds.max(1e-9),
            seconds,
            failed_examples: self.failed,
        }
    }
}

/// One optimizer update: `grad_accum` micro-batches of `batch` items from
/// the pool (an item whose video failed is logged and left out), their
/// gradients summed, one AdamW step (`None` when every item failed).
fn sft_update(
    model: QwenVl,
    optimizer: &mut Optimizer,
    pool: &mut OrderedPool<usize, SampleJob>,
    cursor: &mut BatchCursor,
    cfg: &UpdateSettings<'_>,
    lr: f64,
) -> Result<(QwenVl, Option<StepOutcome>, UpdateSums), SftError> {
    let mut grads: GradAccumulator<QwenVl> = GradAccumulator::new();
    let mut sums = UpdateSums::default();
    for _ in 0..cfg.grad_accum {
        let samples = next_samples(pool, cursor, &mut sums)?;
        if samples.is_empty() {
            continue;
        }
        let tensors = sft_tensors(
            &samples,
            cfg.special.endoftext,
            cfg.special.video_pad,
            cfg.device,
        );
        sums.tokens += tensors.tokens;
        let (micro, metrics) = micro_batch_gradients(&model, tensors, cfg)?;
        grads.add(&model, micro);
        sums.loss += metrics.loss;
        sums.ce += metrics.ce;
        sums.mse += metrics.mse;
        sums.answer_tokens += metrics.answer_tokens;
        sums.micro_batches += 1;
    }
    if grads.micro_batches() == 0 {
        return Ok((model, None, sums));
    }
    let (model, outcome) = optimizer.step(model, grads.take(), lr)?;
    Ok((model, Some(outcome), sums))
}

/// The gradient of one micro-batch's loss / `grad_accum`, and its
/// metrics: in one backward through the answer window's logits, or with
/// the LM head over `logit_chunk` positions at a time when the window is
/// wider ([`chunked::chunked_gradients`]).
fn micro_batch_gradients(
    model: &QwenVl,
    tensors: SftTensors,
    cfg: &UpdateSettings<'_>,
) -> Result<(GradientsParams, crate::sft_loss::SftLossMetrics), SftError> {
    let width = tensors.batch.len() - 1 - tensors.start;
    if cfg.logit_chunk == 0 || cfg.logit_chunk >= width {
        let out = micro_batch_loss(model, tensors, cfg.rating_ids, &cfg.loss, cfg.device)?;
        let scaled = out.loss.div_scalar(cfg.grad_accum as f32);
        let grads = GradientsParams::from_grads(scaled.backward(), model);
        return Ok((grads, out.metrics));
    }
    let hidden = model.forward_hidden(&tensors.batch, None, cfg.device)?; // [B, L, H]
    let inputs = chunked::ChunkedInputs {
        window: hidden.narrow(1, tensors.start, width),
        targets: tensors.targets,
        answer_mask: tensors.mask,
        rating_positions: tensors.rating_positions,
        rating_ids: cfg.rating_ids,
        target_score: tensors.target_score,
        loss: &cfg.loss,
        grad_accum: cfg.grad_accum,
    };
    chunked::chunked_gradients(model, inputs, cfg.logit_chunk)
}

/// The prepared samples of the cursor's next micro-batch.
fn next_samples(
    pool: &mut OrderedPool<usize, SampleJob>,
    cursor: &mut BatchCursor,
    sums: &mut UpdateSums,
) -> Result<Vec<SftSample>, SftError> {
    let mut samples = Vec::new();
    for index in cursor.next_batch() {
        match pool.next() {
            Some(Ok(Ok(sample))) => samples.push(sample),
            Some(Ok(Err(e))) => {
                log::warn!(
                    "sft: leaving out item {index}: {}",
                    crate::errors::chain(&e)
                );
                sums.failed += 1;
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
    Ok(samples)
}

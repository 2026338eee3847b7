//! The GRPO loop, one step per batch of prompts, in verl's stage names:
//!
//! ```text
//! collect        gen + reward (+ refill)           super::collect
//! logprobs       old_log_prob + ref                super::forcing
//! advantages     adv (KL into the reward first)    super::credit
//! update         update_actor, μ passes            super::update
//! cool-off       correct rollouts → JSONL          crate::cooloff
//! end_step       metrics, save_checkpoint          crate::run
//! ```
//!
//! The math lives in pure functions beside this file ([`super::advantage`],
//! [`super::loss`], [`crate::reward`]); the run's lifecycle (refusing or
//! resuming a run directory, logs, checkpoints, Ctrl-C, the non-finite
//! guard) is [`crate::run`]'s, shared with SFT and pre-training.
//!
//! Devices: the actor lives on the autodiff device and is trained there;
//! rollouts and the `old` log-probs use its `valid()` snapshot (plain
//! device, no graph); the reference is the starting actor with its
//! adapters off on the plain device ([`reference_of`]: with `[lora]` the
//! frozen base itself, shared, else a snapshot of the starting weights),
//! or `grpo.reference`. Decoding of the next batches runs
//! on worker threads while the model updates ([`TrainLoader`]).

pub use super::error::TrainError;

use super::collect::{Collected, Collector};
use super::credit::{StepAdvantages, advantages};
use super::forcing::{LogProbPasses, TeacherForcing, logprobs};
use super::metrics::{AccuracyByDimension, RolloutRow, StageSeconds, StepMetrics};
use super::update::{UpdateAccumulator, UpdateSettings, update};
use crate::checkpoint::Resume;
use crate::config::Config;
use crate::cooloff::{self, CoolOffRow};
use crate::data::synth::ensure_synthetic_set;
use crate::data::{BatchCursor, Manifest, Split};
use crate::jsonl::JsonlWriter;
use crate::loader::{Preparer, TrainLoader};
use crate::model::QwenVl;
use crate::model_source::{AdapterExport, ModelConfig, export_trained, load_model};
use crate::optim::{Optimizer, freeze_vision};
use crate::progress::Progress;
use crate::rollout::{FinishReason, Tokens};
use crate::run::{ExtraLogs, Finish, Logs, Run, RunSpec};
use crate::text::AnswerOrder;
use crate::train_state::{self, TrainState};
use crate::trainable::{reference_of, seed_dropout, trainable};
use burn::module::Module;
use burn::tensor::Device;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

/// How a run ended.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainSummary {
    pub run_dir: PathBuf,
    /// Steps completed (the total when finished).
    pub steps: u64,
    /// True when stopped by Ctrl-C (a checkpoint was written).
    pub interrupted: bool,
    /// The HF export of the final actor (absent when interrupted).
    pub final_dir: Option<PathBuf>,
    pub cooloff: PathBuf,
}

/// Config sections GRPO's results do not depend on (a resume ignores
/// edits there).
const IGNORED_SECTIONS: &[&str] = &["eval", "sft", "pretrain", "pipeline"];

/// Runs (or resumes) GRPO as `config` describes. `interrupt` is polled
/// between steps: when set, the run checkpoints and returns.
pub fn train(
    config: &Config,
    resume: &Resume,
    device: &Device,
    interrupt: &AtomicBool,
) -> Result<TrainSummary, TrainError> {
    let g = &config.grpo;
    // Inputs first, so a missing model or manifest is reported before a
    // clash with an existing run directory.
    let manifest = Arc::new(load_manifest(config)?);
    let train_device = config.run.train_device(device);
    let source = config.model.for_training(config.lora.is_some())?;
    let loaded = load_model(&source, config.run.seed, &train_device)?;
    let start = trainable(loaded.model, config.lora.as_ref(), config.run.seed);
    let reference = load_reference(config, &start, device)?;

    let spec = RunSpec {
        config,
        total_steps: g.steps,
        save_every: g.save_every,
        keep_last: g.keep_last,
        ignored_sections: IGNORED_SECTIONS,
    };
    let run = Run::open(&spec, resume)?;
    let config_json = loaded.config_json.clone();
    let (mut actor, mut optimizer, mut state) = restore(&run, start, config)?;
    let tokenizer = Arc::new(loaded.tokenizer);
    let tokens = Tokens::of(&tokenizer);
    let mut loader = train_loader(config, &manifest, &actor, &tokenizer, &state)?;
    let cooloff_path = cooloff::path(&g.rollouts_dir, &config.run.name);
    let rollouts_path = run.dir().join("rollouts.jsonl");
    let extra = ExtraLogs {
        cooloff: Some(&cooloff_path),
        rollouts: g.log_rollouts.then_some(rollouts_path.as_path()),
    };
    let mut logs = run.logs(&state, extra)?;

    let collector = Collector {
        cfg: g,
        tokenizer: &tokenizer,
        tokens: &tokens,
        scale: config.data.mos_scale(),
        device,
    };
    let schedule = config.optim.to_schedule();
    let settings = UpdateSettings::of(g, &train_device);
    let passes = LogProbPasses {
        need_old: !settings.on_policy || g.kl_placement == super::config::KlPlacement::Reward,
        temperature: settings.temperature,
        logit_chunk: g.logit_chunk,
        micro_batch_size: g.micro_batch_size,
    };
    let (p, size, origin) = (g.prompts_per_step, g.group_size, &loaded.origin);
    log::info!(
        "grpo: {} steps × {p} prompts × G = {size}, model {origin}",
        g.steps
    );
    let progress = Progress::new("grpo", g.steps, state.step);

    while state.step < g.steps && !interrupt.load(Ordering::SeqCst) {
        let started = Instant::now();
        let step = state.step + 1;
        let epoch = loader.cursor().epoch;
        let policy = actor.valid();

        let batch = collector.collect(&mut loader, &policy, step, &mut state.rng.rollout)?;
        let forcing = TeacherForcing::new(&batch, g.group_size, &tokens);
        let logp = logprobs(&forcing, &policy, &reference, &passes, device)?;
        let t = Instant::now();
        let adv = advantages(&batch.scored, &logp, g)?;
        let adv_seconds = t.elapsed().as_secs_f64();

        let t = Instant::now();
        let lr = schedule.lr_at(step - 1, g.steps);
        seed_dropout(config.lora.as_ref(), &train_device, &mut state.rng.update);
        let (updated, acc) = update(
            actor,
            &mut optimizer,
            (&forcing, &logp, &adv),
            &settings,
            lr,
            &mut state,
            &run,
        )?;
        actor = updated;
        let update_seconds = t.elapsed().as_secs_f64();

        let cooloff_rows = append_cooloff(&mut logs, &batch, &manifest, step)?;
        if let Some(log) = &mut logs.rollouts {
            append_rollouts(log, &batch, &adv, step)?;
        }
        logs.events
            .text(step, "rollouts", &sampled_rollouts(&batch, 2))?;
        let metrics = step_metrics(StepRecord {
            step,
            epoch,
            batch: &batch,
            adv: &adv,
            acc: &acc,
            lr,
            max_new_tokens: g.max_new_tokens,
            cooloff_rows,
            timing: StageSeconds {
                data: batch.data_seconds,
                generate: batch.generate_seconds,
                reward: batch.reward_seconds,
                old_log_prob: logp.old_seconds,
                reference: logp.reference_seconds,
                adv: adv_seconds,
                update_actor: update_seconds,
                step: started.elapsed().as_secs_f64(),
            },
        });
        state.step = step;
        state.data = loader.cursor();
        // The row goes into the log first, so the checkpoint commits it.
        logs.step_row(&metrics)?;
        run.end_step(
            &mut logs,
            &mut state,
            train_state::writer(&actor, &config_json, &optimizer),
        )?;
        progress.step(&format!(
            "reward {:.3} acc {:.2} exact {:.2} kl {:.4}",
            metrics.reward_mean,
            metrics.reward_acc,
            metrics.reward_exact.unwrap_or(f32::NAN),
            metrics.kl
        ));
    }
    progress.finish();

    let final_dir = match run.finish(
        &mut logs,
        &mut state,
        train_state::writer(&actor, &config_json, &optimizer),
    )? {
        Finish::Interrupted { .. } => None,
        Finish::Done { final_dir } => {
            let adapter = config.lora.as_ref().map(|lora| AdapterExport {
                lora,
                base: loaded.origin.to_string(),
            });
            export_trained(
                &actor.valid(),
                &config_json,
                &tokenizer,
                &final_dir,
                adapter,
            )?;
            Some(final_dir)
        }
    };
    Ok(TrainSummary {
        run_dir: run.dir().to_path_buf(),
        steps: state.step,
        interrupted: final_dir.is_none(),
        final_dir,
        cooloff: cooloff_path,
    })
}

/// GRPO's manifest (`grpo.manifest`, written from `grpo.synth` when
/// missing, else `data.manifest`).
fn load_manifest(config: &Config) -> Result<Manifest, TrainError> {
    let g = &config.grpo;
    if let (Some(path), Some(synth)) = (&g.manifest, &g.synth) {
        ensure_synthetic_set(path, synth, "the GRPO data set")?;
    }
    Ok(Manifest::load_in_scale(
        config.grpo_manifest(),
        config.data.mos_scale(),
    )?)
}

/// The frozen reference: `grpo.reference`, else the starting actor with its
/// adapters off ([`reference_of`]).
fn load_reference(config: &Config, start: &QwenVl, device: &Device) -> Result<QwenVl, TrainError> {
    Ok(match &config.grpo.reference {
        Some(dir) => {
            let source = ModelConfig {
                path: Some(dir.clone()),
                ..Default::default()
            };
            load_model(&source, config.run.seed, device)?.model
        }
        None => reference_of(start),
    })
}

/// The actor, its optimizer and the run state: fresh, or the checkpoint's;
/// the vision tower frozen after loading with `grpo.freeze_vision`, as on
/// a fresh start.
fn restore(
    run: &Run,
    actor: QwenVl,
    config: &Config,
) -> Result<(QwenVl, Optimizer, TrainState), TrainError> {
    let optimizer = Optimizer::new(&config.optim);
    let ((actor, optimizer), state) = run.restore(
        || (actor.clone(), optimizer.clone()),
        |dir| {
            let restored = train_state::load(dir, actor.clone(), optimizer.clone())?;
            Ok::<_, TrainError>(((restored.actor, restored.optimizer), restored.state))
        },
    )?;
    let actor = match config.grpo.freeze_vision {
        true => freeze_vision(actor),
        false => actor,
    };
    Ok((actor, optimizer, state))
}

/// Decodes GRPO's prompts (the manifest's non-test rows) ahead of the
/// trainer, from the state's data cursor.
fn train_loader(
    config: &Config,
    manifest: &Arc<Manifest>,
    actor: &QwenVl,
    tokenizer: &Arc<crate::text::Tokenizer>,
    state: &TrainState,
) -> Result<TrainLoader, TrainError> {
    let p = config.grpo.prompts_per_step;
    let rows: Vec<usize> = (0..manifest.rows.len())
        .filter(|&i| manifest.rows[i].split != Some(Split::Test))
        .collect();
    let cursor = BatchCursor::resume(config.run.seed, rows.len(), p, state.data)?;
    let preparer = Preparer {
        manifest: Arc::clone(manifest),
        spec: Arc::new(crate::inputs::InputSpec::new(&actor.config, &config.video)),
        tokenizer: Arc::clone(tokenizer),
        order: AnswerOrder::ThinkFirst,
    };
    Ok(TrainLoader::new(
        preparer,
        rows,
        cursor,
        p,
        config.video.workers,
        config.video.queue_depth,
    ))
}

/// cool-off: every qualifying rollout of the step, rating-first.
fn append_cooloff(
    logs: &mut Logs,
    batch: &Collected,
    manifest: &Manifest,
    step: u64,
) -> Result<usize, TrainError> {
    let Some(log) = &mut logs.cooloff else {
        return Ok(0);
    };
    let mut rows = 0;
    for s in &batch.scored {
        let e = &batch.examples[s.prompt];
        let source = cooloff::Source {
            row: &e.row,
            video: manifest.video_path(&e.row),
            step,
        };
        let judged = cooloff::Judged {
            answer: s.answer.as_ref(),
            label: s.label,
            exact: s.exact,
            fmt: s.fmt,
            reward: s.reward,
            group: s.rollout.group,
            sample: s.rollout.sample,
        };
        if let Some(row) = CoolOffRow::of_rollout(source, judged) {
            log.append(&row)?;
            rows += 1;
        }
    }
    Ok(rows)
}

/// Every rollout of the step with its reward and advantage
/// (`grpo.log_rollouts`).
fn append_rollouts(
    log: &mut JsonlWriter,
    batch: &Collected,
    adv: &StepAdvantages,
    step: u64,
) -> Result<(), TrainError> {
    for (i, s) in batch.scored.iter().enumerate() {
        let e = &batch.examples[s.prompt];
        log.append(&RolloutRow {
            step,
            group: s.rollout.group,
            sample: s.rollout.sample,
            id: e.row.id.clone(),
            dimension: e.row.dimension,
            label: s.label,
            text: s.text.clone(),
            tokens: s.rollout.tokens.len(),
            finish: s.rollout.finish,
            acc: s.acc,
            fmt: s.fmt,
            reward: s.reward,
            exact: s.exact,
            advantage: adv.advantages.values[i],
        })?;
    }
    Ok(())
}

/// The first rollout of each of the step's first `groups` groups, as the
/// Markdown TensorBoard's text panel shows.
fn sampled_rollouts(batch: &Collected, groups: usize) -> String {
    let g = batch.scored.len() / batch.examples.len().max(1);
    batch
        .scored
        .iter()
        .step_by(g.max(1))
        .take(groups)
        .map(|s| {
            let row = &batch.examples[s.prompt].row;
            format!(
                "**{}** ({}, label {}, R_acc {}, R_fmt {}, R {:.2}):\n\n```\n{}\n```",
                row.id,
                row.dimension,
                s.label.word(),
                s.acc,
                s.fmt,
                s.reward,
                s.text
            )
        })
        .collect::<Vec<_>>()
        .join("\n\n")
}

/// What a step's metrics row is computed from.
struct StepRecord<'a> {
    step: u64,
    epoch: u64,
    batch: &'a Collected,
    adv: &'a StepAdvantages,
    acc: &'a UpdateAccumulator,
    lr: f64,
    max_new_tokens: usize,
    cooloff_rows: usize,
    timing: StageSeconds,
}

/// The step's `metrics.jsonl` row.
fn step_metrics(r: StepRecord<'_>) -> StepMetrics {
    let scored = &r.batch.scored;
    let n = scored.len().max(1) as f64;
    let mean = |f: &dyn Fn(&super::collect::Scored) -> f64| scored.iter().map(f).sum::<f64>() / n;
    let rewards = &r.adv.rewards;
    let reward_mean = rewards.iter().map(|&x| f64::from(x)).sum::<f64>() / n;
    let reward_var = rewards
        .iter()
        .map(|&x| (f64::from(x) - reward_mean).powi(2))
        .sum::<f64>()
        / (n - 1.0).max(1.0);
    let acc = r.acc;
    StepMetrics {
        step: r.step,
        epoch: r.epoch,
        prompts: r.batch.examples.len(),
        skipped_videos: r.batch.failed_videos,
        reward_mean: reward_mean as f32,
        reward_std: reward_var.sqrt() as f32,
        reward_acc: mean(&|s| f64::from(s.acc)) as f32,
        reward_exact: Some(mean(&|s| f64::from(u8::from(s.exact))) as f32),
        reward_fmt: mean(&|s| f64::from(s.fmt)) as f32,
        reward_acc_by_dimension: AccuracyByDimension::of(
            scored
                .iter()
                .map(|s| (r.batch.examples[s.prompt].row.dimension, s.acc)),
        ),
        reward_exact_by_dimension: AccuracyByDimension::of(scored.iter().map(|s| {
            (
                r.batch.examples[s.prompt].row.dimension,
                f32::from(u8::from(s.exact)),
            )
        })),
        frac_reward_zero_std: r.batch.frac_zero_std(),
        pg_loss: acc.pg_loss(),
        kl: acc.kl(),
        entropy: acc.entropy(),
        clip_ratio_low: acc.clip_low(),
        clip_ratio_high: acc.clip_high(),
        clip_ratio: acc.clip(),
        grad_norm: acc.grad_norm(),
        lr: r.lr,
        updates: acc.applied,
        skipped_updates: acc.skipped,
        response_length_mean: mean(&|s| s.rollout.tokens.len() as f64) as f32,
        response_length_clip_ratio: mean(&|s| {
            f64::from(u8::from(
                s.rollout.finish == FinishReason::Length
                    && s.rollout.tokens.len() >= r.max_new_tokens,
            ))
        }) as f32,
        cooloff_rows: r.cooloff_rows,
        tokens_per_s: r.batch.generated_tokens as f64 / r.timing.generate.max(1e-9),
        timing: r.timing,
    }
}

//! The GRPO loop: one step per batch of prompts, in verl's stage names
//! `gen → reward → old_log_prob → ref → adv → update_actor →
//! save_checkpoint`.
//!
//! The math lives in pure functions beside this file ([`super::advantage`],
//! [`super::loss`], [`crate::reward`]); this module only orchestrates them,
//! keeps the state a resume needs in [`TrainState`], and writes the run's
//! files: `metrics.jsonl`, checkpoints, the cool-off data and `final/`.
//!
//! Devices: the actor lives on the autodiff device and is trained there;
//! rollouts and the `old` log-probs use its `valid()` snapshot (plain
//! device, no graph); the reference is a frozen plain-device copy of the
//! starting actor (or `grpo.reference`). Decoding of the next batches runs
//! on worker threads while the model updates ([`TrainLoader`]).

use super::advantage::group_advantages;
use super::config::{KlPlacement, ZeroStd};
use super::kl_reward::{penalise_rewards, sequence_kl};
use super::loss::{PolicyLossInputs, policy_loss};
use super::metrics::{AccuracyByDimension, RolloutRow, StageSeconds, StepMetrics};
use crate::checkpoint::{CheckpointDir, Resume};
use crate::config::Config;
use crate::cooloff::{CoolOffRow, Provenance};
use crate::data::synth::ensure_synthetic_set;
use crate::data::{BatchCursor, Manifest, Rating, Split};
use crate::inputs::{Example, InputSpec};
use crate::jsonl::JsonlWriter;
use crate::loader::{Preparer, TrainLoader};
use crate::logits::{masked_mean, token_entropy, token_log_probs};
use crate::model::QwenVl;
use crate::model::logprob::{
    CompletionBatch, completion_logits, completion_logprobs, completion_targets,
};
use crate::model_source::{ModelConfig, export_model, load_model};
use crate::optim::{Optimizer, StepOutcome, freeze_vision};
use crate::progress::Progress;
use crate::reward::judge_completion;
use crate::rng::Rng;
use crate::rollout::{FinishReason, GroupPrompt, Rollout, Tokens, generate, left_padded_batch};
use crate::text::AnswerOrder;
use crate::text::prompt::user_prompt;
use crate::train_state::{self, Snapshot, TrainState};
use burn::module::Module;
use burn::optim::GradientsParams;
use burn::tensor::{Bool, Device, Tensor, TensorData};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

/// Why a run stopped early or could not start.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error(
        "run directory {0} already has a run (metrics.jsonl exists); continue it with \
         `--resume auto`, or pick another `run.name`"
    )]
    RunExists(PathBuf),
    #[error(
        "checkpoint {dir} was written with seed {found}, this run has seed {expected}: \
         resuming would not reproduce the run"
    )]
    SeedMismatch {
        dir: PathBuf,
        found: u64,
        expected: u64,
    },
    #[error("every video of step {step} failed to load; see the warnings above")]
    EmptyBatch { step: u64 },
    #[error(
        "{count} non-finite updates in a row (grpo.max_nonfinite = {max}) at step {step}: \
         lower optim.lr or check the data"
    )]
    NonFinite { count: u32, max: u32, step: u64 },
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error("writing the GRPO data set: {0}")]
    Synth(#[from] crate::data::synth::SynthError),
    #[error(transparent)]
    Manifest(#[from] crate::data::ManifestError),
    #[error(transparent)]
    Cursor(#[from] crate::data::CursorError),
    #[error(transparent)]
    Load(#[from] crate::model_source::ModelSourceError),
    #[error(transparent)]
    Model(#[from] crate::model::ModelError),
    #[error(transparent)]
    Checkpoint(#[from] crate::checkpoint::CheckpointError),
    #[error(transparent)]
    State(#[from] crate::train_state::TrainStateError),
    #[error(transparent)]
    Jsonl(#[from] crate::jsonl::JsonlError),
    #[error(transparent)]
    Optim(#[from] crate::optim::OptimError),
    #[error(transparent)]
    Loss(#[from] super::loss::PolicyLossError),
    #[error(transparent)]
    Advantage(#[from] super::advantage::AdvantageError),
    #[error(transparent)]
    KlReward(#[from] super::kl_reward::KlRewardError),
    #[error(transparent)]
    Tokenizer(#[from] crate::text::TokenizerError),
}

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

/// One rollout with its reward, ready for the update.
#[derive(Clone)]
struct Scored {
    rollout: Rollout,
    /// Index of its prompt in the step's batch.
    prompt: usize,
    label: Rating,
    acc: f32,
    fmt: f32,
    reward: f32,
    /// The well-formed answer, when the completion parsed.
    answer: Option<crate::text::Answer>,
    /// The completion without its stop token.
    text: String,
}

/// Runs (or resumes) GRPO as `config` describes. `interrupt` is polled
/// between steps: when set, the run checkpoints and returns.
pub fn train(
    config: &Config,
    resume: &Resume,
    device: &Device,
    interrupt: &AtomicBool,
) -> Result<TrainSummary, TrainError> {
    let g = &config.grpo;
    let seed = config.run.seed;
    let run_dir = config.run.dir();
    let checkpoints = CheckpointDir::new(run_dir.join("checkpoints"), g.keep_last);
    let start = checkpoints.resolve(resume)?;
    let metrics_path = run_dir.join("metrics.jsonl");
    if start.is_none() && metrics_path.exists() {
        return Err(TrainError::RunExists(run_dir));
    }
    config.write_resolved(&run_dir)?;

    if let (Some(path), Some(synth)) = (&g.manifest, &g.synth) {
        ensure_synthetic_set(path, synth, "the GRPO data set")?;
    }
    let manifest = Arc::new(Manifest::load(config.grpo_manifest())?);
    let train_rows: Vec<usize> = (0..manifest.rows.len())
        .filter(|&i| manifest.rows[i].split != Some(Split::Test))
        .collect();
    let scale = config.data.mos_scale();

    // Actor (trained), reference (frozen starting point).
    let train_device = device.clone().autodiff();
    let loaded = load_model(&config.model, seed, &train_device)?;
    let config_json = loaded.config_json;
    let loaded_origin = loaded.origin.clone();
    let reference: QwenVl = match &g.reference {
        Some(dir) => {
            let reference = ModelConfig {
                path: Some(dir.clone()),
                tokenizer: None,
            };
            load_model(&reference, seed, device)?.model
        }
        None => loaded.model.valid(),
    };
    let optimizer = Optimizer::new(&config.optim);
    let (actor, mut optimizer, mut state) = match &start {
        Some(dir) => {
            log::info!("resuming from {}", dir.display());
            let restored = train_state::load(dir, loaded.model, optimizer)?;
            if restored.state.seed != seed {
                return Err(TrainError::SeedMismatch {
                    dir: dir.clone(),
                    found: restored.state.seed,
                    expected: seed,
                });
            }
            (restored.actor, restored.optimizer, restored.state)
        }
        None => (loaded.model, optimizer, TrainState::fresh(seed)),
    };
    let mut actor = if g.freeze_vision {
        freeze_vision(actor)
    } else {
        actor
    };
    let tokenizer = Arc::new(loaded.tokenizer);
    let special = *tokenizer.special();
    let tokens = Tokens {
        stop: special.stop_ids().to_vec(),
        pad: special.endoftext,
        video_pad: special.video_pad,
    };

    let spec = Arc::new(InputSpec::new(&actor.config, &config.video));
    let preparer = Preparer {
        manifest: Arc::clone(&manifest),
        spec,
        tokenizer: Arc::clone(&tokenizer),
        order: AnswerOrder::ThinkFirst,
    };
    let p = g.prompts_per_step;
    let cursor = BatchCursor::resume(seed, train_rows.len(), p, state.data)?;
    let mut loader = TrainLoader::new(
        preparer,
        train_rows,
        cursor,
        p,
        config.video.workers,
        config.video.queue_depth,
    );

    let cooloff_path = g.rollouts_dir.join(&config.run.name).join("cooloff.jsonl");
    let resumed = start.is_some();
    let mut logs = RunLogs {
        metrics: open_log(&metrics_path, resumed, state.metrics_len)?,
        cooloff: open_log(&cooloff_path, resumed, state.cooloff_len)?,
        rollouts: match g.log_rollouts {
            true => Some(open_log(
                &run_dir.join("rollouts.jsonl"),
                resumed,
                state.rollouts_len,
            )?),
            false => None,
        },
    };

    let schedule = config.optim.to_schedule();
    let rollout_cfg = g.rollout();
    let loss_cfg = g.policy_loss();
    let on_policy = g.ppo_epochs == 1 && g.update_size() == p * g.group_size;
    log::info!(
        "grpo: {} steps × {p} prompts × G = {}, model {}, run dir {}",
        g.steps,
        g.group_size,
        loaded_origin,
        run_dir.display()
    );
    let progress = Progress::new("grpo", g.steps, state.step);

    while state.step < g.steps {
        if interrupt.load(Ordering::SeqCst) {
            break;
        }
        let step_started = Instant::now();
        let mut timing = StageSeconds::default();
        let step = state.step + 1;
        let epoch = loader.cursor().epoch;

        // gen + reward, batch by batch: one batch, or with `zero_std =
        // "refill"` more batches until `p` groups with distinct rewards are
        // collected (DAPO's dynamic sampling), at most `refill_batches` more.
        let policy = actor.valid();
        let reward_cfg = g.reward();
        let g_size = g.group_size;
        let mut examples: Vec<Example> = Vec::with_capacity(p);
        let mut prompts: Vec<GroupPrompt> = Vec::with_capacity(p);
        let mut scored: Vec<Scored> = Vec::with_capacity(p * g_size);
        let (mut failed_videos, mut generated_tokens) = (0, 0);
        let (mut drawn_groups, mut zero_std_groups) = (0usize, 0usize);
        // Refill mode: the first batch as drawn, used when no batch had a
        // group with distinct rewards (a fresh policy that never scores).
        let mut first_draw: Option<(Vec<Example>, Vec<GroupPrompt>, Vec<Scored>)> = None;
        let draws = match g.zero_std {
            ZeroStd::Refill => 1 + g.refill_batches,
            ZeroStd::Keep | ZeroStd::Filter => 1,
        };
        for draw in 0..draws {
            // Data: decoded on worker threads, usually ready already.
            let t = Instant::now();
            let (batch, failed) = loader.next_batch();
            for e in &failed {
                log::warn!("skipping a video: {e}");
            }
            failed_videos += failed.len();
            timing.data += t.elapsed().as_secs_f64();
            if batch.is_empty() {
                continue;
            }

            // gen: G rollouts per prompt from the current policy. Group ids
            // (which seed the rollouts) are unique over the run: refill
            // draws number after all first draws.
            let t = Instant::now();
            let first = match draw {
                0 => (step - 1) * p as u64,
                d => {
                    g.steps * p as u64
                        + ((step - 1) * g.refill_batches as u64 + d as u64 - 1) * p as u64
                }
            };
            let batch_prompts: Vec<GroupPrompt> = batch
                .iter()
                .enumerate()
                .map(|(i, e)| GroupPrompt {
                    group: first + i as u64,
                    ids: e.prompt_ids.iter().map(|&id| i64::from(id)).collect(),
                    video: Some(e.video.to_input(device)),
                })
                .collect();
            let base = Rng::new(state.rng.rollout.next_u64());
            let (rollouts, gen_stats) = generate(
                &policy,
                &batch_prompts,
                &rollout_cfg,
                &tokens,
                &base,
                device,
            )?;
            generated_tokens += gen_stats.generated_tokens;
            timing.generate += t.elapsed().as_secs_f64();

            // reward: parse every completion, R = R_acc + λ·R_fmt.
            let t = Instant::now();
            let batch_scored: Vec<Scored> = rollouts
                .into_iter()
                .enumerate()
                .map(|(i, rollout)| {
                    let prompt = i / g_size;
                    let label = scale.rating(batch[prompt].row.mos);
                    let text = tokenizer.decode(rollout.body(), false)?;
                    let judged =
                        judge_completion(&text, AnswerOrder::ThinkFirst, label, &reward_cfg);
                    Ok(Scored {
                        prompt,
                        label,
                        acc: judged.reward.acc,
                        fmt: judged.reward.fmt,
                        reward: judged.reward.total,
                        answer: judged.answer.ok(),
                        text,
                        rollout,
                    })
                })
                .collect::<Result<_, TrainError>>()?;
            timing.reward += t.elapsed().as_secs_f64();

            if g.zero_std == ZeroStd::Refill && first_draw.is_none() {
                first_draw = Some((batch.clone(), batch_prompts.clone(), batch_scored.clone()));
            }
            // Keep the batch's groups (all, or the informative ones).
            let mut groups: Vec<Vec<Scored>> = (0..batch.len()).map(|_| Vec::new()).collect();
            for s in batch_scored {
                groups[s.prompt].push(s);
            }
            for ((example, prompt), group) in batch.into_iter().zip(batch_prompts).zip(groups) {
                drawn_groups += 1;
                let constant = group.iter().all(|s| s.reward == group[0].reward);
                zero_std_groups += usize::from(constant);
                let keep = g.zero_std != ZeroStd::Refill || (!constant && prompts.len() < p);
                if keep {
                    let index = prompts.len();
                    examples.push(example);
                    prompts.push(prompt);
                    scored.extend(group.into_iter().map(|s| Scored { prompt: index, ..s }));
                }
            }
            if prompts.len() >= p {
                break;
            }
        }
        if prompts.is_empty()
            && let Some((e, pr, sc)) = first_draw.take()
        {
            log::warn!(
                "step {step}: no group had distinct rewards in {draws} batches; training on the \
                 first batch (every advantage is 0: only the KL term moves the policy)"
            );
            (examples, prompts, scored) = (e, pr, sc);
        }
        if prompts.is_empty() {
            return Err(TrainError::EmptyBatch { step });
        }
        if g.zero_std == ZeroStd::Refill && prompts.len() < p {
            log::warn!(
                "step {step}: only {} of {p} groups had distinct rewards after {} refill batches",
                prompts.len(),
                g.refill_batches
            );
        }

        // Teacher-forcing inputs: each rollout after its own prompt.
        let row_prompts: Vec<&GroupPrompt> = scored.iter().map(|s| &prompts[s.prompt]).collect();
        let completions: Vec<Vec<i64>> = scored
            .iter()
            .map(|s| s.rollout.tokens.iter().map(|&t| i64::from(t)).collect())
            .collect();
        let temperature = f64::from(g.temperature.max(f32::EPSILON));
        // Rows that are whole groups in order share their group's prompt row
        // (the prompt and video run once per group, not G times); any other
        // selection (a mini-batch that splits groups) repeats it per row.
        let batch_of = |rows: &[usize]| -> Result<CompletionBatch, TrainError> {
            let group = if whole_groups(rows, g_size) {
                g_size
            } else {
                1
            };
            let prompts = rows.iter().step_by(group).map(|&r| row_prompts[r]);
            let batch = left_padded_batch(prompts, &tokens);
            let comps: Vec<Vec<i64>> = rows.iter().map(|&r| completions[r].clone()).collect();
            Ok(CompletionBatch::new(
                &batch,
                group,
                &comps,
                i64::from(tokens.pad),
            )?)
        };
        let all_rows: Vec<usize> = (0..scored.len()).collect();
        let full = batch_of(&all_rows)?;

        // old_log_prob: skipped on-policy (ρ = 1 exactly; the update uses the
        // detached current log-probs), unless the KL goes into the reward.
        let t = Instant::now();
        let need_old = !on_policy || g.kl_placement == KlPlacement::Reward;
        let old_all = if need_old {
            Some(completion_logprobs(&policy, &full, temperature, device)?)
        } else {
            None
        };
        timing.old_log_prob = t.elapsed().as_secs_f64();

        // ref: the frozen reference's log-probs of the same tokens.
        let t = Instant::now();
        let ref_all = completion_logprobs(&reference, &full, temperature, device)?;
        timing.reference = t.elapsed().as_secs_f64();
        let mask_all = bool_mask(&full.completion_mask, device);

        // adv: group-relative advantages (KL penalty first if in reward).
        let t = Instant::now();
        let rewards: Vec<f32> = scored.iter().map(|s| s.reward).collect();
        let rewards = match (g.kl_placement, &old_all) {
            (KlPlacement::Reward, Some(old)) => {
                let kl = sequence_kl(
                    old.clone(),
                    ref_all.clone(),
                    mask_all.clone(),
                    g.kl_estimator,
                )?;
                penalise_rewards(&rewards, &kl, g.kl_coef)?
            }
            _ => rewards,
        };
        let adv = group_advantages(&rewards, g_size, &g.advantage())?;
        let mut update_rows: Vec<usize> = match g.zero_std {
            ZeroStd::Keep | ZeroStd::Refill => all_rows.clone(),
            ZeroStd::Filter => all_rows
                .iter()
                .copied()
                .filter(|&r| !adv.zero_std[r / g_size])
                .collect(),
        };
        timing.adv = t.elapsed().as_secs_f64();

        // update_actor: μ passes of mini-batch updates.
        let t = Instant::now();
        let lr = schedule.lr_at(step - 1, g.steps);
        let mut acc = UpdateAccumulator::default();
        let chunk = g.update_size().min(update_rows.len().max(1));
        for _ in 0..g.ppo_epochs {
            if update_rows.len() > chunk {
                shuffle_update_rows(&mut update_rows, chunk, g_size, &mut state.rng.update);
            }
            for rows in update_rows.chunks(chunk) {
                let cb = batch_of(rows)?;
                let logits = completion_logits(&actor, &cb, temperature, &train_device)?;
                let targets = completion_targets(&cb, &train_device);
                let mask = bool_mask(&cb.completion_mask, &train_device);
                let log_probs = token_log_probs(logits.clone(), targets, 1.0);
                let entropy = masked_mean(token_entropy(logits.detach(), 1.0), mask.clone());
                let [_, width] = log_probs.dims();
                let pick = |all: &Tensor<2>| select_rows(all, rows, width, &train_device);
                let old = match &old_all {
                    Some(old) if !on_policy => pick(old),
                    _ => log_probs.clone().detach(),
                };
                let advantages = Tensor::<1>::from_data(
                    TensorData::new(rows.iter().map(|&r| adv.values[r]).collect(), [rows.len()]),
                    &train_device,
                );
                let out = policy_loss(
                    PolicyLossInputs {
                        log_probs,
                        old_log_probs: old,
                        ref_log_probs: Some(pick(&ref_all)),
                        advantages,
                        response_mask: mask,
                    },
                    &loss_cfg,
                )?;
                let grads = GradientsParams::from_grads(out.loss.backward(), &actor);
                let (updated, outcome) = optimizer.step(actor, grads, lr)?;
                actor = updated;
                acc.add(&out.metrics, scalar(entropy), outcome);
                match outcome {
                    StepOutcome::Applied(_) => state.consecutive_non_finite = 0,
                    StepOutcome::SkippedNonFinite { grad_norm } => {
                        state.consecutive_non_finite += 1;
                        state.total_non_finite += 1;
                        log::warn!(
                            "step {step}: non-finite gradient norm {grad_norm}, update skipped"
                        );
                        if state.consecutive_non_finite >= g.max_nonfinite {
                            return Err(TrainError::NonFinite {
                                count: state.consecutive_non_finite,
                                max: g.max_nonfinite,
                                step,
                            });
                        }
                    }
                }
            }
        }
        timing.update_actor = t.elapsed().as_secs_f64();

        // Cool-off data: every correct, well-formed rollout, rating-first.
        let mut cooloff_rows = 0;
        for s in scored.iter().filter(|s| s.acc == 1.0 && s.fmt == 1.0) {
            let Some(answer) = &s.answer else { continue };
            let e: &Example = &examples[s.prompt];
            let row = CoolOffRow::new(
                &user_prompt(e.row.dimension, &e.row.prompt, AnswerOrder::RatingFirst),
                answer.render(AnswerOrder::RatingFirst),
                Provenance {
                    id: e.row.id.clone(),
                    video: manifest.video_path(&e.row),
                    dimension: e.row.dimension,
                    label: s.label,
                    mos: e.row.mos,
                    reward: s.reward,
                    step,
                    group: s.rollout.group,
                    sample: s.rollout.sample,
                },
            );
            logs.cooloff.append(&row)?;
            cooloff_rows += 1;
        }

        if let Some(log) = &mut logs.rollouts {
            for (i, s) in scored.iter().enumerate() {
                let e = &examples[s.prompt];
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
                    advantage: adv.values[i],
                })?;
            }
        }

        let metrics = step_metrics(
            step,
            epoch,
            &examples,
            failed_videos,
            &scored,
            &rewards,
            zero_std_groups as f32 / drawn_groups.max(1) as f32,
            &acc,
            lr,
            g.max_new_tokens,
            cooloff_rows,
            generated_tokens as f64 / timing.generate.max(1e-9),
        );
        state.step = step;
        state.data = loader.cursor();

        timing.step = step_started.elapsed().as_secs_f64();
        let metrics = StepMetrics { timing, ..metrics };

        // save_checkpoint (periodic and final). The row goes into the log
        // first, so the checkpoint commits it.
        logs.metrics.append(&metrics)?;
        if step == g.steps || (g.save_every > 0 && step.is_multiple_of(g.save_every)) {
            let t = Instant::now();
            save(
                &checkpoints,
                &actor,
                &config_json,
                &optimizer,
                &mut state,
                &mut logs,
            )?;
            log::debug!(
                "step {step}: checkpoint written in {:.2}s",
                t.elapsed().as_secs_f64()
            );
        }
        progress.step(&format!(
            "reward {:.3} acc {:.2} kl {:.4}",
            metrics.reward_mean, metrics.reward_acc, metrics.kl
        ));
    }
    progress.finish();

    let interrupted = state.step < g.steps;
    if interrupted {
        log::info!("interrupted at step {}: writing a checkpoint", state.step);
        save(
            &checkpoints,
            &actor,
            &config_json,
            &optimizer,
            &mut state,
            &mut logs,
        )?;
    }
    let final_dir = if interrupted {
        None
    } else {
        let dir = run_dir.join("final");
        export_model(&actor.valid(), &config_json, &tokenizer, &dir)?;
        Some(dir)
    };
    Ok(TrainSummary {
        run_dir,
        steps: state.step,
        interrupted,
        final_dir,
        cooloff: cooloff_path,
    })
}

/// Syncs both logs, commits their lengths into the state and writes the
/// checkpoint, so a resume continues exactly after the last logged step.
fn save(
    checkpoints: &CheckpointDir,
    actor: &QwenVl,
    config_json: &str,
    optimizer: &Optimizer,
    state: &mut TrainState,
    logs: &mut RunLogs,
) -> Result<(), TrainError> {
    logs.commit(state)?;
    let snapshot = Snapshot {
        actor,
        model_config_json: config_json,
        optimizer,
        state,
    };
    checkpoints.save(state.step, |dir| train_state::save(dir, &snapshot))?;
    Ok(())
}

/// The append-only files of a run, committed together with a checkpoint.
struct RunLogs {
    metrics: JsonlWriter,
    cooloff: JsonlWriter,
    rollouts: Option<JsonlWriter>,
}

impl RunLogs {
    /// Syncs every log and records its length in the state.
    fn commit(&mut self, state: &mut TrainState) -> Result<(), TrainError> {
        self.metrics.sync()?;
        self.cooloff.sync()?;
        state.metrics_len = self.metrics.len();
        state.cooloff_len = self.cooloff.len();
        if let Some(log) = &mut self.rollouts {
            log.sync()?;
            state.rollouts_len = log.len();
        }
        Ok(())
    }
}

/// A fresh log, or the resumed one cut back to its committed length.
fn open_log(path: &Path, resumed: bool, committed: u64) -> Result<JsonlWriter, TrainError> {
    Ok(if resumed {
        JsonlWriter::resume(path, committed)?
    } else {
        JsonlWriter::create(path)?
    })
}

fn bool_mask(mask: &[Vec<bool>], device: &Device) -> Tensor<2, Bool> {
    let rows = mask.len();
    let width = mask.first().map_or(0, Vec::len);
    let flat: Vec<bool> = mask.iter().flatten().copied().collect();
    Tensor::from_data(TensorData::new(flat, [rows, width]), device)
}

/// Rows `rows` of a `[B, T]` tensor of the whole step, cut to the first
/// `width` columns (a mini-batch is padded only to its own longest
/// completion; completions are right-padded, so the columns line up), moved
/// to `device`.
fn select_rows(all: &Tensor<2>, rows: &[usize], width: usize, device: &Device) -> Tensor<2> {
    let index: Vec<i64> = rows.iter().map(|&r| r as i64).collect();
    let index = Tensor::<1, burn::tensor::Int>::from_data(
        TensorData::new(index, [rows.len()]),
        &all.device(),
    );
    let picked = all.clone().select(0, index).narrow(1, 0, width);
    Tensor::<2>::from_data(picked.into_data(), device)
}

/// Shuffles the rows of a step's update before they are cut into
/// mini-batches of `chunk`. When a mini-batch holds whole groups (`chunk` a
/// multiple of `g`, `rows` whole groups), the groups are shuffled as units,
/// their rollouts kept together and in order, so every mini-batch still
/// shares one prompt prefill per group ([`whole_groups`]); otherwise the
/// rows themselves are shuffled.
fn shuffle_update_rows(rows: &mut Vec<usize>, chunk: usize, g: usize, rng: &mut Rng) {
    if g > 1 && chunk.is_multiple_of(g) && whole_groups(rows, g) {
        let mut groups: Vec<usize> = rows.chunks(g).map(|c| c[0] / g).collect();
        rng.shuffle(&mut groups);
        *rows = groups.iter().flat_map(|&k| k * g..(k + 1) * g).collect();
    } else {
        rng.shuffle(rows);
    }
}

/// Whether `rows` are whole groups of `g` consecutive rollouts in order
/// (`[k·g, k·g+1, .., k·g+g−1]` for each group k taken), so each group can
/// share one prompt row.
fn whole_groups(rows: &[usize], g: usize) -> bool {
    g > 0
        && rows.len().is_multiple_of(g)
        && rows
            .chunks(g)
            .all(|c| c[0].is_multiple_of(g) && c.iter().zip(c[0]..).all(|(&r, want)| r == want))
}

fn scalar(t: Tensor<1>) -> f32 {
    t.into_scalar::<f32>()
}

/// Means of the per-update loss metrics over a step.
#[derive(Default)]
struct UpdateAccumulator {
    n: usize,
    pg_loss: f64,
    kl: f64,
    entropy: f64,
    clip_low: f64,
    clip_high: f64,
    grad_norm: f64,
    applied: usize,
    skipped: usize,
}

impl UpdateAccumulator {
    fn add(&mut self, m: &super::loss::PolicyLossMetrics, entropy: f32, outcome: StepOutcome) {
        self.n += 1;
        self.pg_loss += f64::from(m.pg_loss);
        self.kl += f64::from(m.kl.unwrap_or(0.0));
        self.entropy += f64::from(entropy);
        self.clip_low += f64::from(m.clip_ratio_low);
        self.clip_high += f64::from(m.clip_ratio_high);
        match outcome {
            StepOutcome::Applied(s) => {
                self.applied += 1;
                self.grad_norm += s.grad_norm;
            }
            StepOutcome::SkippedNonFinite { .. } => self.skipped += 1,
        }
    }

    fn mean(&self, total: f64) -> f32 {
        (total / self.n.max(1) as f64) as f32
    }
}

#[allow(clippy::too_many_arguments)]
fn step_metrics(
    step: u64,
    epoch: u64,
    examples: &[Example],
    skipped_videos: usize,
    scored: &[Scored],
    rewards: &[f32],
    frac_reward_zero_std: f32,
    acc: &UpdateAccumulator,
    lr: f64,
    max_new_tokens: usize,
    cooloff_rows: usize,
    tokens_per_s: f64,
) -> StepMetrics {
    let n = scored.len().max(1) as f64;
    let mean = |f: &dyn Fn(&Scored) -> f64| scored.iter().map(f).sum::<f64>() / n;
    let reward_mean = rewards.iter().map(|&r| f64::from(r)).sum::<f64>() / n;
    let reward_var = rewards
        .iter()
        .map(|&r| (f64::from(r) - reward_mean).powi(2))
        .sum::<f64>()
        / (n - 1.0).max(1.0);
    StepMetrics {
        step,
        epoch,
        prompts: examples.len(),
        skipped_videos,
        reward_mean: reward_mean as f32,
        reward_std: reward_var.sqrt() as f32,
        reward_acc: mean(&|s| f64::from(s.acc)) as f32,
        reward_fmt: mean(&|s| f64::from(s.fmt)) as f32,
        reward_acc_by_dimension: AccuracyByDimension::of(
            scored
                .iter()
                .map(|s| (examples[s.prompt].row.dimension, s.acc)),
        ),
        frac_reward_zero_std,
        pg_loss: acc.mean(acc.pg_loss),
        kl: acc.mean(acc.kl),
        entropy: acc.mean(acc.entropy),
        clip_ratio_low: acc.mean(acc.clip_low),
        clip_ratio_high: acc.mean(acc.clip_high),
        clip_ratio: acc.mean(acc.clip_low + acc.clip_high),
        grad_norm: acc.grad_norm / acc.applied.max(1) as f64,
        lr,
        updates: acc.applied,
        skipped_updates: acc.skipped,
        response_length_mean: mean(&|s| s.rollout.tokens.len() as f64) as f32,
        response_length_clip_ratio: mean(&|s| {
            f64::from(u8::from(
                s.rollout.finish == FinishReason::Length
                    && s.rollout.tokens.len() >= max_new_tokens,
            ))
        }) as f32,
        cooloff_rows,
        tokens_per_s,
        timing: StageSeconds::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn select_rows_picks_rows_and_cuts_to_the_mini_batch_width() {
        // The step's [3, 4] log-probs; a mini-batch of rows 2 and 0 whose
        // longest completion is 2 tokens.
        let device = Device::default();
        let all = Tensor::<2>::from_data(
            TensorData::new((0..12).map(|v| v as f32).collect::<Vec<_>>(), [3, 4]),
            &device,
        );
        let picked = select_rows(&all, &[2, 0], 2, &device);
        assert_eq!(picked.dims(), [2, 2]);
        let values: Vec<f32> = picked.try_into_vec_as::<f32>().unwrap();
        assert_eq!(values, vec![8.0, 9.0, 0.0, 1.0]);
    }

    #[test]
    fn mini_batches_of_whole_groups_shuffle_groups_as_units() {
        let mut rng = Rng::new(3);
        let mut rows: Vec<usize> = (0..12).collect();
        shuffle_update_rows(&mut rows, 6, 3, &mut rng);
        assert_ne!(rows, (0..12).collect::<Vec<_>>(), "seed 3 moves something");
        assert!(whole_groups(&rows, 3), "{rows:?}");
        for batch in rows.chunks(6) {
            assert!(whole_groups(batch, 3), "{batch:?}");
        }
        // A mini-batch that splits groups shuffles rows.
        let mut rows: Vec<usize> = (0..12).collect();
        shuffle_update_rows(&mut rows, 4, 3, &mut rng);
        let mut sorted = rows.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..12).collect::<Vec<_>>());
        assert!(!whole_groups(&rows, 3), "{rows:?}");
    }

    #[test]
    fn only_whole_groups_in_order_share_a_prompt_row() {
        assert!(whole_groups(&[0, 1, 2, 3, 4, 5], 3));
        assert!(whole_groups(&[3, 4, 5], 3)); // a filtered step: group 1 only
        assert!(!whole_groups(&[1, 2, 3], 3)); // straddles two groups
        assert!(!whole_groups(&[0, 2, 1], 3)); // shuffled
        assert!(!whole_groups(&[0, 1], 3)); // part of a group
        assert!(whole_groups(&[2, 0, 1], 1)); // G = 1: every row is a group
    }
}

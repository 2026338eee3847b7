//! One run lifecycle for every trainer: GRPO, SFT (cold start and
//! cool-off) and perception pre-training supply only their step; this
//! module does the rest the same way for all three.
//!
//! ```text
//! Run::open      refuse an existing run (with the fix) or resolve the resume
//!                checkpoint; check its config against this one; write the
//!                resolved config.toml
//! Run::restore   a fresh state, or the checkpoint's (seed checked)
//! Run::logs      every append-only log, fresh or cut back to the length the
//!                checkpoint committed (a run killed before its first
//!                checkpoint starts again at step 0 with its logs emptied)
//! loop           the trainer's step; Run::guard counts non-finite updates
//!                (`run.max_nonfinite`); Run::end_step checkpoints when due;
//!                the loop stops early when Ctrl-C set the interrupt flag
//! Run::finish    the interrupted run's checkpoint, or the final export
//! ```
//!
//! What a checkpoint holds is the trainer's ([`crate::train_state`]); how
//! it appears on disk atomically is [`crate::checkpoint`]'s. A crash at any
//! moment leaves the previous checkpoint or the new one, and the logs are
//! cut back to what that checkpoint committed, so `--resume auto` continues
//! byte for byte. Tests simulate crashes at named moments with
//! [`crash_point`].

mod crash;
mod interrupt;

pub use crash::{CRASH_ENV, crash_point};
pub use interrupt::{INTERRUPTED_EXIT, Interrupt};

use crate::checkpoint::{CheckpointDir, CheckpointError, Resume};
use crate::config::{Config, ConfigError};
use crate::jsonl::{JsonlError, JsonlWriter};
use crate::optim::StepOutcome;
use crate::tensorboard::{EventError, EventWriter};
use crate::train_state::{TrainState, TrainStateError};
use std::path::{Path, PathBuf};

/// The file every trainer logs one row per step to.
pub const METRICS_FILE: &str = "metrics.jsonl";
/// The resolved config a run writes into its directory.
pub const CONFIG_FILE: &str = "config.toml";

/// Why a run could not start or had to stop.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(
        "run directory {} already has a run ({found}); continue it with `--resume auto`, or \
         pick another `run.name`",
        dir.display()
    )]
    Exists { dir: PathBuf, found: &'static str },
    #[error(
        "checkpoint {} was written with seed {found}, this run has seed {expected}: resuming \
         would not reproduce the run",
        dir.display()
    )]
    SeedMismatch {
        dir: PathBuf,
        found: u64,
        expected: u64,
    },
    #[error(
        "checkpoint {} belongs to a run of another config ({differences}); resume with the \
         config it was trained with, or start a new run with another `run.name`",
        dir.display()
    )]
    ConfigChanged { dir: PathBuf, differences: String },
    #[error(
        "{count} non-finite updates in a row (run.max_nonfinite = {max}) at step {step}: lower \
         the learning rate or check the data"
    )]
    NonFinite { count: u32, max: u32, step: u64 },
    #[error("reading the saved config of the run being resumed")]
    SavedConfig(#[source] ConfigError),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error(transparent)]
    State(#[from] TrainStateError),
    #[error(transparent)]
    Log(#[from] JsonlError),
    #[error(transparent)]
    Events(#[from] EventError),
}

/// What a trainer tells the lifecycle about itself.
#[derive(Debug, Clone)]
pub struct RunSpec<'a> {
    /// The whole resolved config (its `[run]` section names the directory,
    /// the seed and the non-finite limit).
    pub config: &'a Config,
    /// Updates the run makes in all.
    pub total_steps: u64,
    /// Checkpoint every N steps (0: only at the end and on Ctrl-C).
    pub save_every: u64,
    /// Complete checkpoints kept.
    pub keep_last: usize,
    /// Top-level config sections the trainer's results do not depend on:
    /// a resume ignores changes there.
    pub ignored_sections: &'a [&'a str],
}

/// Keys that may change between a run and its resume: they say how long
/// the run is and how it is checkpointed and logged, not what it computes
/// up to the checkpoint.
const RESUMABLE_KEYS: &[&str] = &[
    "grpo.steps",
    "grpo.save_every",
    "grpo.keep_last",
    "grpo.log_rollouts",
    "sft.epochs",
    "sft.max_steps",
    "sft.checkpoint_every",
    "sft.keep_last",
    "sft.workers",
    "pretrain.steps",
    "pretrain.save_every",
    "pretrain.keep_last",
    "run.max_nonfinite",
    "run.device",
    "video.workers",
    "video.queue_depth",
];

/// An open run directory.
#[derive(Debug)]
pub struct Run {
    dir: PathBuf,
    checkpoints: CheckpointDir,
    resume_from: Option<PathBuf>,
    seed: u64,
    total_steps: u64,
    save_every: u64,
    max_nonfinite: u32,
}

impl Run {
    /// Opens `spec.config`'s run directory. Without `--resume`, a directory
    /// that already holds a run (a metrics log or a checkpoint) is refused
    /// with the fix; with `--resume auto` and no checkpoint the run starts
    /// afresh (a run killed before its first checkpoint); a checkpoint to
    /// resume from must come from a run of the same config, but for
    /// [`RESUMABLE_KEYS`] and `spec.ignored_sections`. Then the resolved
    /// config is written.
    pub fn open(spec: &RunSpec<'_>, resume: &Resume) -> Result<Run, RunError> {
        let config = spec.config;
        let dir = config.run.dir();
        let checkpoints = CheckpointDir::new(dir.join("checkpoints"), spec.keep_last);
        let resume_from = checkpoints.resolve(resume)?;
        if *resume == Resume::No
            && let Some(found) = existing_run(&dir, &checkpoints)?
        {
            return Err(RunError::Exists { dir, found });
        }
        if let Some(checkpoint) = &resume_from {
            check_resumed_config(checkpoint, config, spec.ignored_sections)?;
        }
        config.write_resolved(&dir)?;
        Ok(Run {
            dir,
            checkpoints,
            resume_from,
            seed: config.run.seed,
            total_steps: spec.total_steps,
            save_every: spec.save_every,
            max_nonfinite: config.run.max_nonfinite,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The checkpoint this run continues from, if any.
    pub fn resume_from(&self) -> Option<&Path> {
        self.resume_from.as_deref()
    }

    pub fn total_steps(&self) -> u64 {
        self.total_steps
    }

    /// The run's state: fresh, or read from the resume checkpoint by `read`
    /// (which restores the trainer's modules alongside) and checked to have
    /// this run's seed.
    pub fn restore<T, E>(
        &self,
        fresh: impl FnOnce() -> T,
        read: impl FnOnce(&Path) -> Result<(T, TrainState), E>,
    ) -> Result<(T, TrainState), E>
    where
        E: From<RunError>,
    {
        let Some(dir) = &self.resume_from else {
            return Ok((fresh(), TrainState::fresh(self.seed)));
        };
        log::info!("resuming from {}", dir.display());
        let (restored, state) = read(dir)?;
        if state.seed != self.seed {
            return Err(RunError::SeedMismatch {
                dir: dir.clone(),
                found: state.seed,
                expected: self.seed,
            }
            .into());
        }
        Ok((restored, state))
    }

    /// The run's logs: `metrics.jsonl` in the run directory, and the other
    /// append-only files the trainer names (cool-off data, rollouts), each
    /// fresh or cut back to what `state`'s checkpoint committed.
    pub fn logs(&self, state: &TrainState, extra: ExtraLogs<'_>) -> Result<Logs, RunError> {
        let open = |path: &Path, committed: u64| match self.resume_from {
            Some(_) => JsonlWriter::resume(path, committed),
            None => JsonlWriter::create(path),
        };
        Ok(Logs {
            events: EventWriter::create(&self.dir)?,
            metrics: open(&self.dir.join(METRICS_FILE), state.metrics_len)?,
            cooloff: extra
                .cooloff
                .map(|p| open(p, state.cooloff_len))
                .transpose()?,
            rollouts: extra
                .rollouts
                .map(|p| open(p, state.rollouts_len))
                .transpose()?,
        })
    }

    /// Counts a skipped non-finite update; the run stops once
    /// `run.max_nonfinite` come in a row.
    pub fn guard(
        &self,
        state: &mut TrainState,
        step: u64,
        outcome: StepOutcome,
    ) -> Result<(), RunError> {
        match outcome {
            StepOutcome::Applied(_) => state.consecutive_non_finite = 0,
            StepOutcome::SkippedNonFinite { grad_norm } => {
                state.consecutive_non_finite += 1;
                state.total_non_finite += 1;
                log::warn!("step {step}: non-finite gradient norm {grad_norm}, update skipped");
                if state.consecutive_non_finite >= self.max_nonfinite {
                    return Err(RunError::NonFinite {
                        count: state.consecutive_non_finite,
                        max: self.max_nonfinite,
                        step,
                    });
                }
            }
        }
        Ok(())
    }

    /// Whether step `step` ends with a checkpoint: every `save_every` and
    /// the last.
    pub fn checkpoint_due(&self, step: u64) -> bool {
        step == self.total_steps || (self.save_every > 0 && step.is_multiple_of(self.save_every))
    }

    /// After the step's rows are logged: checkpoints when due. `fill`
    /// writes the trainer's files into the checkpoint directory.
    pub fn end_step(
        &self,
        logs: &mut Logs,
        state: &mut TrainState,
        fill: impl FnOnce(&Path, &TrainState) -> Result<(), TrainStateError>,
    ) -> Result<(), RunError> {
        crash_point(&format!("step-{}", state.step));
        if self.checkpoint_due(state.step) {
            self.save(logs, state, fill)?;
        }
        Ok(())
    }

    /// Commits the logs into `state` and writes checkpoint `state.step`.
    pub fn save(
        &self,
        logs: &mut Logs,
        state: &mut TrainState,
        fill: impl FnOnce(&Path, &TrainState) -> Result<(), TrainStateError>,
    ) -> Result<(), RunError> {
        logs.commit(state)?;
        let step = state.step;
        let state = &*state;
        self.checkpoints.save(step, |dir| {
            fill(dir, state)?;
            crash_point(&format!("checkpoint-{step}"));
            Ok::<(), TrainStateError>(())
        })?;
        Ok(())
    }

    /// Ends the loop: an interrupted run (fewer than `total_steps` done)
    /// writes a checkpoint and returns [`Finish::Interrupted`]; a finished
    /// one returns [`Finish::Done`] for the trainer to export its model.
    pub fn finish(
        &self,
        logs: &mut Logs,
        state: &mut TrainState,
        fill: impl FnOnce(&Path, &TrainState) -> Result<(), TrainStateError>,
    ) -> Result<Finish, RunError> {
        if state.step < self.total_steps {
            log::info!("interrupted at step {}: writing a checkpoint", state.step);
            self.save(logs, state, fill)?;
            return Ok(Finish::Interrupted {
                checkpoint: self.checkpoints.latest()?.unwrap_or_default(),
            });
        }
        crash_point("export");
        Ok(Finish::Done {
            final_dir: self.dir.join("final"),
        })
    }
}

/// How a run's loop ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finish {
    /// Stopped by Ctrl-C; the checkpoint it wrote.
    Interrupted { checkpoint: PathBuf },
    /// Every step done; the model goes to `final_dir`.
    Done { final_dir: PathBuf },
}

/// The append-only files besides `metrics.jsonl` a trainer keeps.
#[derive(Debug, Clone, Copy, Default)]
pub struct ExtraLogs<'a> {
    /// `rollouts/<run>/cooloff.jsonl` (GRPO).
    pub cooloff: Option<&'a Path>,
    /// `<run dir>/rollouts.jsonl` (GRPO with `log_rollouts`).
    pub rollouts: Option<&'a Path>,
}

/// The open logs of a run, committed together with each checkpoint (but
/// the TensorBoard events, which a viewer reads and no resume needs).
#[derive(Debug)]
pub struct Logs {
    pub metrics: JsonlWriter,
    pub cooloff: Option<JsonlWriter>,
    pub rollouts: Option<JsonlWriter>,
    /// `events.out.tfevents.*`: the metrics as TensorBoard scalars.
    pub events: EventWriter,
}

impl Logs {
    /// Logs a step's `metrics.jsonl` row, and its numbers as TensorBoard
    /// scalars at the row's `step`.
    pub fn step_row<T: serde::Serialize>(&mut self, row: &T) -> Result<(), RunError> {
        self.metrics.append(row)?;
        let value = serde_json::to_value(row).map_err(|e| JsonlError::Serialize {
            path: self.metrics.path().to_path_buf(),
            source: e,
        })?;
        let step = value.get("step").and_then(serde_json::Value::as_u64);
        self.events.scalars(step.unwrap_or(0), &value)?;
        self.events.flush()?;
        Ok(())
    }

    /// Syncs every log and records its length in `state`, so a resume from
    /// the checkpoint about to be written cuts each log back to here.
    pub fn commit(&mut self, state: &mut TrainState) -> Result<(), JsonlError> {
        self.metrics.sync()?;
        state.metrics_len = self.metrics.len();
        if let Some(log) = &mut self.cooloff {
            log.sync()?;
            state.cooloff_len = log.len();
        }
        if let Some(log) = &mut self.rollouts {
            log.sync()?;
            state.rollouts_len = log.len();
        }
        Ok(())
    }
}

/// What in `dir` shows a run already started there, if anything.
fn existing_run(
    dir: &Path,
    checkpoints: &CheckpointDir,
) -> Result<Option<&'static str>, CheckpointError> {
    if checkpoints.latest()?.is_some() {
        return Ok(Some("it has checkpoints"));
    }
    if dir.join(METRICS_FILE).exists() {
        return Ok(Some("metrics.jsonl exists"));
    }
    Ok(None)
}

/// Refuses to resume `checkpoint` under a config that differs from the one
/// its run was written with, but for [`RESUMABLE_KEYS`] and `ignored`
/// sections. The run's `config.toml` sits two levels above the checkpoint
/// (`<run>/checkpoints/step_XXXXXX`); a run without one is not checked.
fn check_resumed_config(
    checkpoint: &Path,
    config: &Config,
    ignored: &[&str],
) -> Result<(), RunError> {
    let Some(run_dir) = checkpoint.parent().and_then(Path::parent) else {
        return Ok(());
    };
    let path = run_dir.join(CONFIG_FILE);
    if !path.is_file() {
        log::warn!("{}: no config.toml; resuming unchecked", run_dir.display());
        return Ok(());
    }
    let saved = crate::config::load(&path, &[]).map_err(RunError::SavedConfig)?;
    let differences: Vec<String> = config
        .changes_from(&saved, ignored)
        .into_iter()
        .filter(|c| !RESUMABLE_KEYS.contains(&c.key.as_str()))
        .map(|c| c.to_string())
        .collect();
    if differences.is_empty() {
        Ok(())
    } else {
        Err(RunError::ConfigChanged {
            dir: checkpoint.to_path_buf(),
            differences: differences.join(", "),
        })
    }
}

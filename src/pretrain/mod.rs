//! `vgrpo pretrain`: perception pre-training of the vision tower, the
//! stand-in for the pretrained VLM the paper starts from.
//!
//! Why it exists: Q-Save fine-tunes Qwen2.5-VL-7B, whose vision encoder
//! already sees blur, noise and motion. The embedded tiny model starts from
//! random weights, and through the language model (a rating token read
//! through four decoder layers attending over ~250 tokens, most of them
//! prompt) it does not learn to perceive in CPU minutes: SFT teaches it the
//! answer format and the rationale text, not the judgement (docs/experiments.md, "Why the
//! tiny model is pre-trained"). Here the tower gets a short, dense path to a
//! perception target instead: the merger's tokens of a clip are mean-pooled
//! and a linear head regresses the clip's visual and dynamic quality.
//!
//! The pre-training set is a synthetic set of its own (its own seed and
//! directory; a config that points it at the judged manifest is refused), so
//! no video the judge is later tested on is seen here, and alignment, which
//! needs the prompt, is left to the language model. The head is thrown away:
//! the result, `runs/<name>/final/`, is an ordinary HF-layout model whose
//! vision tower is trained and whose language model is untouched (for the
//! tiny model, the fresh initialisation of `run.seed`). The later stages
//! load it through `[model] path` and may keep the tower frozen
//! (`sft.freeze_vision`, `grpo.freeze_vision`).
//!
//! It runs on the one run lifecycle of every trainer ([`crate::run`]):
//! checkpoints every `pretrain.save_every` updates and on Ctrl-C, `--resume
//! auto` continues byte for byte. Its export, like every `final/`
//! ([`export_model`]), replaces the directory whole, so `final/` is never
//! half-written.

pub mod config;

pub use config::PretrainConfig;

use crate::checkpoint::Resume;
use crate::config::Config;
use crate::data::synth::{SynthError, ensure_synthetic_set};
use crate::data::{Dimension, Manifest, ManifestError, MosScale, Split, same_file};
use crate::eval::metrics::srcc;
use crate::inputs::{HostVideo, InputError, InputSpec, prepare_video};
use crate::jsonl::JsonlError;
use crate::model::VideoInput;
use crate::model::vision::VisionModel;
use crate::model_source::{ModelSourceError, export_model, load_model};
use crate::optim::{OptimError, Optimizer, StepOutcome};
use crate::progress::Progress;
use crate::rng::Rng;
use crate::run::{ExtraLogs, Finish, Run, RunError, RunSpec};
use crate::train_state::{self, OPTIMIZER_FILE, STATE_FILE, TrainState, TrainStateError};
use crate::video::load_clips;
use burn::module::{Module, Param};
use burn::nn::Linear;
use burn::optim::GradientsParams;
use burn::tensor::activation::sigmoid;
use burn::tensor::{Device, Tensor, TensorData};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

/// The dimensions the head regresses, in output order. Alignment is not
/// among them: it depends on the prompt, which the tower never sees.
pub const TARGETS: [Dimension; 2] = [Dimension::Visual, Dimension::Dynamic];

#[derive(Debug, thiserror::Error)]
pub enum PretrainError {
    #[error(
        "pretrain.manifest is the judged manifest ({}): pre-training on it would show the \
         judge its own test videos; point pretrain.manifest at a set of its own",
        path.display()
    )]
    SameManifest { path: PathBuf },
    #[error("writing the pre-training set")]
    Synth(#[from] SynthError),
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error(transparent)]
    Model(#[from] ModelSourceError),
    #[error(transparent)]
    Optim(#[from] OptimError),
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Run(#[from] RunError),
    #[error(transparent)]
    State(#[from] TrainStateError),
    #[error(transparent)]
    Metrics(#[from] JsonlError),
    #[error(
        "{} has no train video with both a visual and a dynamic score ({skipped} failed to load)",
        path.display()
    )]
    NoData { path: PathBuf, skipped: usize },
    #[error("cannot {action} {}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("reading scores back from the device failed: {0}")]
    Readback(String),
}

/// One clip of the pre-training set and its targets.
#[derive(Debug, Clone, PartialEq)]
pub struct ClipTarget {
    pub video: PathBuf,
    pub split: Option<Split>,
    /// Normalised MOS per [`TARGETS`] entry, in `[0, 1]`.
    pub scores: [f32; 2],
}

/// The manifest's clips with a score for every [`TARGETS`] dimension, in
/// video order (rows name the same video once per dimension).
pub fn clip_targets(manifest: &Manifest, scale: MosScale) -> Vec<ClipTarget> {
    let mut by_video: BTreeMap<PathBuf, (Option<Split>, [Option<f32>; 2])> = BTreeMap::new();
    for row in &manifest.rows {
        let Some(slot) = TARGETS.iter().position(|&d| d == row.dimension) else {
            continue;
        };
        let entry = by_video
            .entry(manifest.video_path(row))
            .or_insert((row.split, [None; 2]));
        entry.1[slot] = Some(scale.normalise(row.mos));
    }
    by_video
        .into_iter()
        .filter_map(|(video, (split, scores))| {
            Some(ClipTarget {
                video,
                split,
                scores: [scores[0]?, scores[1]?],
            })
        })
        .collect()
}

/// The vision tower with a throw-away regression head.
#[derive(Module, Debug)]
pub struct PerceptionProbe {
    pub visual: VisionModel,
    /// `[H] -> [len(TARGETS)]`, H = the tower's output width.
    pub head: Linear,
}

impl PerceptionProbe {
    /// A head drawn from `rng` (N(0, 0.02²) weights, zero bias, as the model
    /// itself is initialised) on top of `visual`.
    pub fn new(visual: VisionModel, rng: &mut Rng, device: &Device) -> Self {
        let width = visual.config.out_hidden_size;
        let outputs = TARGETS.len();
        let weights: Vec<f32> = (0..width * outputs)
            .map(|_| (rng.normal() * 0.02) as f32)
            .collect();
        let weight = Tensor::<2>::from_data(TensorData::new(weights, [width, outputs]), device);
        let bias = Tensor::<1>::zeros([outputs], device);
        PerceptionProbe {
            visual,
            head: Linear {
                weight: Param::from_tensor(weight),
                bias: Some(Param::from_tensor(bias)),
            },
        }
    }

    /// Predicted normalised scores `[B, len(TARGETS)]` of `clips`.
    pub fn forward(&self, clips: &[&HostVideo], device: &Device) -> Tensor<2> {
        let inputs: Vec<VideoInput> = clips.iter().map(|v| v.to_input(device)).collect();
        let Some(all) = VideoInput::concat(&inputs) else {
            return Tensor::zeros([0, TARGETS.len()], device);
        };
        // [visual tokens of all clips, H], clips in order.
        let embeds = self.visual.forward(all.pixel_values, &all.grids).embeds;
        let mut start = 0;
        let pooled: Vec<Tensor<2>> = clips
            .iter()
            .map(|clip| {
                let n = clip.tokens();
                let mean = embeds.clone().narrow(0, start, n).mean_dim(0); // [1, H]
                start += n;
                mean
            })
            .collect();
        sigmoid(self.head.forward(Tensor::cat(pooled, 0)))
    }
}

/// One logged update.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StepRow {
    step: u64,
    loss: f32,
    lr: f64,
    grad_norm: f64,
}

/// What a pre-training run did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PretrainSummary {
    pub steps: u64,
    /// Stopped by Ctrl-C before the last update (a checkpoint was written;
    /// nothing exported).
    #[serde(default)]
    pub interrupted: bool,
    pub train_clips: usize,
    pub held_out_clips: usize,
    /// Clips that failed to decode (logged with path and reason).
    pub skipped: usize,
    /// SRCC of the head's scores against the MOS on the pre-training set's
    /// own test split, per [`TARGETS`] entry (`None`: too few clips).
    pub held_out_srcc: [Option<f64>; 2],
    pub seconds: f64,
    pub final_dir: PathBuf,
}

/// Decodes `clips` on the video workers and prepares them for the tower; a
/// clip that fails is logged with its path and reason and counted, not fatal.
fn prepare_clips(
    clips: Vec<ClipTarget>,
    spec: &InputSpec,
) -> (Vec<(HostVideo, ClipTarget)>, usize) {
    let paths = clips.iter().map(|c| c.video.clone()).collect();
    let mut ready = Vec::new();
    let mut skipped = 0;
    for (decoded, clip) in load_clips(paths, &spec.video).zip(clips) {
        let prepared = decoded
            .map_err(InputError::from)
            .and_then(|decoded| prepare_video(&decoded, spec));
        match prepared {
            Ok(video) => ready.push((video, clip)),
            Err(e) => {
                let reason = crate::errors::chain(&e);
                log::warn!("pretrain: skipping {}: {reason}", clip.video.display());
                skipped += 1;
            }
        }
    }
    (ready, skipped)
}

/// SRCC per target of `probe` on `set` (batches of `batch` clips).
fn held_out_srcc(
    probe: &PerceptionProbe,
    set: &[(HostVideo, ClipTarget)],
    batch: usize,
    device: &Device,
) -> Result<[Option<f64>; 2], PretrainError> {
    let mut pred: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    for chunk in set.chunks(batch.max(1)) {
        let clips: Vec<&HostVideo> = chunk.iter().map(|(v, _)| v).collect();
        let scores = probe
            .forward(&clips, device)
            .into_data()
            .try_into_vec_as::<f32>()
            .map_err(|e| PretrainError::Readback(format!("{e:?}")))?;
        for (i, s) in scores.into_iter().enumerate() {
            pred[i % TARGETS.len()].push(f64::from(s));
        }
    }
    Ok(std::array::from_fn(|t| {
        let truth: Vec<f64> = set.iter().map(|(_, c)| f64::from(c.scores[t])).collect();
        srcc(&pred[t], &truth).ok()
    }))
}

/// Config sections pre-training's results do not depend on (a resume
/// ignores edits there): it reads `[run]`, `[data]`'s scale, `[video]`,
/// `[model]` and `[pretrain]`.
const IGNORED_SECTIONS: &[&str] = &["eval", "optim", "sft", "grpo", "pipeline"];

/// The probe's weights inside a pre-training checkpoint.
const PROBE_FILE: &str = "probe.bpk";

/// `vgrpo pretrain`: trains `[model]`'s vision tower on `[pretrain]` and
/// exports the model to `runs/<name>/final/`. `interrupt` is polled between
/// updates: when set, the run checkpoints and returns with `interrupted`.
pub fn run_pretrain(
    cfg: &Config,
    resume: &Resume,
    device: &Device,
    interrupt: &AtomicBool,
) -> Result<PretrainSummary, PretrainError> {
    let started = Instant::now();
    let pre = &cfg.pretrain;
    let train_device = cfg.run.train_device(device);
    let (loaded, set) = load_inputs(cfg, &train_device)?;
    let spec = RunSpec {
        config: cfg,
        total_steps: pre.steps,
        save_every: pre.save_every,
        keep_last: pre.keep_last,
        ignored_sections: IGNORED_SECTIONS,
    };
    let run = Run::open(&spec, resume)?;

    // The head is drawn first from the run's pre-training stream, which
    // then picks the clips of every update (checkpointed as `rng.update`).
    let mut rng = Rng::stream(cfg.run.seed, "pretrain");
    let mut model = loaded.model;
    let fresh = (
        PerceptionProbe::new(model.model.visual.clone(), &mut rng, &train_device),
        Optimizer::new(&pre.optim),
    );
    let ((mut probe, mut optimizer), mut state) = run.restore(
        || fresh.clone(),
        |dir| {
            let state = TrainState::read(&dir.join(STATE_FILE))?;
            let probe = train_state::load_module(&dir.join(PROBE_FILE), fresh.0.clone())?;
            let optimizer = fresh.1.clone().load(&dir.join(OPTIMIZER_FILE))?;
            Ok::<_, PretrainError>(((probe, optimizer), state))
        },
    )?;
    if run.resume_from().is_none() {
        state.rng.update = rng;
    }
    let mut logs = run.logs(&state, ExtraLogs::default())?;
    let schedule = pre.optim.to_schedule();
    let progress = Progress::new("pretrain", pre.steps, state.step);
    while state.step < pre.steps && !interrupt.load(Ordering::SeqCst) {
        let lr = schedule.lr_at(state.step, pre.steps);
        let (next, row) = probe_update(probe, &mut optimizer, &set.train, &mut state, lr, pre)?;
        probe = next;
        let step = state.step + 1;
        run.guard(&mut state, step, row.outcome)?;
        state.step = step;
        logs.step_row(&row.log)?;
        run.end_step(&mut logs, &mut state, checkpoint(&probe, &optimizer))?;
        progress.step(&format!("loss {:.4} lr {lr:.2e}", row.log.loss));
    }
    progress.finish();
    let finish = run.finish(&mut logs, &mut state, checkpoint(&probe, &optimizer))?;
    let final_dir = run.dir().join("final");
    let mut summary = PretrainSummary {
        steps: state.step,
        interrupted: matches!(finish, Finish::Interrupted { .. }),
        train_clips: set.train.len(),
        held_out_clips: set.held_out.len(),
        skipped: set.skipped,
        held_out_srcc: [None, None],
        seconds: 0.0,
        final_dir: final_dir.clone(),
    };
    if summary.interrupted {
        return Ok(summary);
    }

    let probe = probe.valid();
    summary.held_out_srcc = held_out_srcc(&probe, &set.held_out, pre.batch, device)?;
    for (dim, s) in TARGETS.iter().zip(summary.held_out_srcc) {
        match s {
            Some(s) => log::info!("pretrain: held-out SRCC {dim}: {s:.3}"),
            None => log::info!("pretrain: held-out SRCC {dim}: – (too few clips)"),
        }
    }
    model.model.visual = probe.visual;
    export_model(
        &model.valid(),
        &loaded.config_json,
        &loaded.tokenizer,
        &final_dir,
    )?;
    summary.seconds = started.elapsed().as_secs_f64();
    write_summary(&run.dir().join("pretrain.json"), &summary)?;
    Ok(summary)
}

/// The pre-training set, decoded and split.
struct ClipSet {
    train: Vec<(HostVideo, ClipTarget)>,
    held_out: Vec<(HostVideo, ClipTarget)>,
    /// Clips that failed to decode.
    skipped: usize,
}

/// The model and the pre-training set (written when missing, refused when
/// it is the judged manifest), every clip decoded.
fn load_inputs(
    cfg: &Config,
    train_device: &Device,
) -> Result<(crate::model_source::LoadedModel, ClipSet), PretrainError> {
    let pre = &cfg.pretrain;
    if same_file(&pre.manifest, &cfg.data.manifest) {
        return Err(PretrainError::SameManifest {
            path: pre.manifest.clone(),
        });
    }
    ensure_synthetic_set(&pre.manifest, &pre.synth, "the pre-training set")?;
    let manifest = Manifest::load_in_scale(&pre.manifest, cfg.data.mos_scale())?;
    let loaded = load_model(&cfg.model, cfg.run.seed, train_device)?;
    let spec = InputSpec::new(&loaded.model.config, &cfg.video);
    let targets = clip_targets(&manifest, cfg.data.mos_scale());
    let (clips, skipped) = prepare_clips(targets, &spec);
    let (train, held_out): (Vec<_>, Vec<_>) = clips
        .into_iter()
        .partition(|(_, c)| c.split != Some(Split::Test));
    if train.is_empty() {
        return Err(PretrainError::NoData {
            path: pre.manifest.clone(),
            skipped,
        });
    }
    log::info!(
        "pretrain: {} steps × {} clips on {} train clips ({} held out, {skipped} skipped) of {}",
        pre.steps,
        pre.batch,
        train.len(),
        held_out.len(),
        pre.manifest.display()
    );
    let set = ClipSet {
        train,
        held_out,
        skipped,
    };
    Ok((loaded, set))
}

/// One logged update and its outcome.
struct ProbeStep {
    log: StepRow,
    outcome: StepOutcome,
}

/// One update of the probe on `batch` clips drawn from `train` with the
/// state's update stream.
fn probe_update(
    probe: PerceptionProbe,
    optimizer: &mut Optimizer,
    train: &[(HostVideo, ClipTarget)],
    state: &mut TrainState,
    lr: f64,
    pre: &PretrainConfig,
) -> Result<(PerceptionProbe, ProbeStep), PretrainError> {
    let device = probe.head.weight.device();
    let picks: Vec<usize> = (0..pre.batch)
        .map(|_| state.rng.update.below(train.len() as u64) as usize)
        .collect();
    let clips: Vec<&HostVideo> = picks.iter().map(|&i| &train[i].0).collect();
    let truth: Vec<f32> = picks.iter().flat_map(|&i| train[i].1.scores).collect();
    let truth = Tensor::<2>::from_data(TensorData::new(truth, [pre.batch, TARGETS.len()]), &device);
    let loss = (probe.forward(&clips, &device) - truth)
        .powi_scalar(2)
        .mean();
    let loss_value: f32 = loss.clone().into_scalar();
    let grads = GradientsParams::from_grads(loss.backward(), &probe);
    let (next, outcome) = optimizer.step(probe, grads, lr)?;
    let log = StepRow {
        step: state.step + 1,
        loss: loss_value,
        lr,
        grad_norm: match outcome {
            StepOutcome::Applied(stats) => stats.grad_norm,
            StepOutcome::SkippedNonFinite { grad_norm } => grad_norm,
        },
    };
    Ok((next, ProbeStep { log, outcome }))
}

/// What a pre-training checkpoint holds: the probe (tower and head) with
/// its parameter ids, its AdamW state and the run state.
fn checkpoint<'a>(
    probe: &'a PerceptionProbe,
    optimizer: &'a Optimizer,
) -> impl FnOnce(&std::path::Path, &TrainState) -> Result<(), TrainStateError> + 'a {
    move |dir, state| {
        train_state::save_module(&dir.join(PROBE_FILE), probe)?;
        optimizer.save(&dir.join(OPTIMIZER_FILE))?;
        state.write(&dir.join(STATE_FILE))
    }
}

fn write_summary(path: &std::path::Path, summary: &PretrainSummary) -> Result<(), PretrainError> {
    let json = serde_json::to_string_pretty(summary).map_err(|e| PretrainError::Io {
        action: "serialise",
        path: path.to_path_buf(),
        source: std::io::Error::other(e),
    })?;
    std::fs::write(path, json).map_err(|source| PretrainError::Io {
        action: "write",
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::ManifestRow;

    fn row(video: &str, dimension: Dimension, mos: f32, split: Split) -> ManifestRow {
        ManifestRow {
            id: format!("{video}-{dimension}"),
            video: PathBuf::from(video),
            prompt: "a red circle".into(),
            dimension,
            mos,
            generator: "gen-a".into(),
            rationale: None,
            split: Some(split),
            clean_mos: None,
        }
    }

    #[test]
    fn targets_pair_the_visual_and_dynamic_rows_of_each_video() {
        let manifest = Manifest {
            path: PathBuf::from("/d/manifest.jsonl"),
            rows: vec![
                row("b.mp4", Dimension::Dynamic, 2.0, Split::Train),
                row("a.mp4", Dimension::Visual, 5.0, Split::Test),
                row("b.mp4", Dimension::Alignment, 1.0, Split::Train),
                row("a.mp4", Dimension::Dynamic, 1.0, Split::Test),
                row("b.mp4", Dimension::Visual, 4.0, Split::Train),
                // No dynamic row: left out.
                row("c.mp4", Dimension::Visual, 3.0, Split::Train),
            ],
        };
        let scale = MosScale { min: 1.0, max: 5.0 };
        let got = clip_targets(&manifest, scale);
        assert_eq!(
            got,
            vec![
                ClipTarget {
                    video: PathBuf::from("/d/a.mp4"),
                    split: Some(Split::Test),
                    scores: [1.0, 0.0],
                },
                ClipTarget {
                    video: PathBuf::from("/d/b.mp4"),
                    split: Some(Split::Train),
                    scores: [0.75, 0.25],
                },
            ]
        );
    }
}

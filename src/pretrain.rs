//! `vgrpo pretrain`: perception pre-training of the vision tower, the
//! stand-in for the pretrained VLM the paper starts from.
//!
//! Why it exists: Q-Save fine-tunes Qwen2.5-VL-7B, whose vision encoder
//! already sees blur, noise and motion. The embedded tiny model starts from
//! random weights, and through the language model (a rating token read
//! through four decoder layers attending over ~250 tokens, most of them
//! prompt) it does not learn to perceive in CPU minutes: SFT teaches it the
//! answer format and the rationale text, not the judgement (README, "Why the
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
//! The stage is short (minutes) and has no mid-run checkpoints: an
//! interrupted run starts again. Its export, like every `final/`
//! ([`export_model`]), replaces the directory whole, so `final/` is never
//! half-written.

use crate::config::{Config, Rules, Validate};
use crate::data::synth::{SynthConfig, SynthError, ensure_synthetic_set};
use crate::data::{Dimension, Manifest, ManifestError, MosScale, Split, same_file};
use crate::eval::metrics::srcc;
use crate::inputs::{HostVideo, InputError, InputSpec, prepare_video};
use crate::jsonl::{JsonlError, JsonlWriter};
use crate::model::VideoInput;
use crate::model::vision::VisionModel;
use crate::model_source::{ModelSourceError, export_model, load_model};
use crate::optim::{OptimConfig, OptimError, Optimizer, StepOutcome};
use crate::progress::Progress;
use crate::rng::Rng;
use crate::schedule::ScheduleKind;
use crate::video::load_clips;
use burn::module::{Module, Param};
use burn::nn::Linear;
use burn::optim::GradientsParams;
use burn::tensor::activation::sigmoid;
use burn::tensor::{Device, Tensor, TensorData};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

/// The dimensions the head regresses, in output order. Alignment is not
/// among them: it depends on the prompt, which the tower never sees.
pub const TARGETS: [Dimension; 2] = [Dimension::Visual, Dimension::Dynamic];

/// `[pretrain]` settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PretrainConfig {
    /// Manifest of the pre-training set, written from `synth` when missing.
    pub manifest: PathBuf,
    /// The pre-training set: a seed of its own, so its videos are not the
    /// judged set's.
    pub synth: SynthConfig,
    /// Optimizer updates. The probe's loss first sits on a plateau (the
    /// mean prediction) for a seed-dependent 600–1000 updates, so the
    /// default leaves room after it.
    pub steps: u64,
    /// Clips per update.
    pub batch: usize,
    /// AdamW settings of the tower and the head.
    pub optim: OptimConfig,
}

impl Default for PretrainConfig {
    fn default() -> Self {
        PretrainConfig {
            manifest: PathBuf::from("data/synth-pretrain/manifest.jsonl"),
            synth: SynthConfig {
                videos: 480,
                seed: 1000,
                ..SynthConfig::default()
            },
            steps: 4000,
            batch: 8,
            optim: OptimConfig {
                lr: 2e-3,
                schedule: ScheduleKind::WarmupCosine,
                warmup_ratio: 0.03,
                min_lr_ratio: 0.05,
                ..OptimConfig::default()
            },
        }
    }
}

impl Validate for PretrainConfig {
    fn validate(&self, p: &str, rules: &mut Rules) {
        self.synth.check(&format!("{p}.synth"), rules);
        rules.check(self.steps >= 1, &format!("{p}.steps"), || {
            format!("steps must be ≥ 1, got {}", self.steps)
        });
        rules.check(self.batch >= 1, &format!("{p}.batch"), || {
            format!("batch must be ≥ 1, got {}", self.batch)
        });
        self.optim.validate(&format!("{p}.optim"), rules);
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PretrainError {
    #[error(
        "pretrain.manifest is the judged manifest ({}): pre-training on it would show the \
         judge its own test videos; point pretrain.manifest at a set of its own",
        path.display()
    )]
    SameManifest { path: PathBuf },
    #[error("writing the pre-training set: {0}")]
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
    Metrics(#[from] JsonlError),
    #[error(
        "{} has no train video with both a visual and a dynamic score ({skipped} failed to load)",
        path.display()
    )]
    NoData { path: PathBuf, skipped: usize },
    #[error("cannot {action} {}: {source}", path.display())]
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
                log::warn!("pretrain: skipping {}: {e}", clip.video.display());
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

/// `vgrpo pretrain`: trains `[model]`'s vision tower on `[pretrain]` and
/// exports the model to `runs/<name>/final/`.
pub fn run_pretrain(cfg: &Config, device: &Device) -> Result<PretrainSummary, PretrainError> {
    let started = Instant::now();
    let pre = &cfg.pretrain;
    if same_file(&pre.manifest, &cfg.data.manifest) {
        return Err(PretrainError::SameManifest {
            path: pre.manifest.clone(),
        });
    }
    ensure_synthetic_set(&pre.manifest, &pre.synth, "the pre-training set")?;
    let manifest = Manifest::load(&pre.manifest)?;
    let train_device = device.clone().autodiff();
    let loaded = load_model(&cfg.model, cfg.run.seed, &train_device)?;
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

    let mut rng = Rng::stream(cfg.run.seed, "pretrain");
    let mut model = loaded.model;
    let mut probe = PerceptionProbe::new(model.model.visual.clone(), &mut rng, &train_device);
    let mut optimizer = Optimizer::new(&pre.optim);
    let schedule = pre.optim.to_schedule();
    let run_dir = cfg.run.dir();
    std::fs::create_dir_all(&run_dir).map_err(|source| PretrainError::Io {
        action: "create",
        path: run_dir.clone(),
        source,
    })?;
    cfg.write_resolved(&run_dir)?;
    let mut metrics = JsonlWriter::create(&run_dir.join("metrics.jsonl"))?;
    let progress = Progress::new("pretrain", pre.steps, 0);
    for step in 0..pre.steps {
        let picks: Vec<usize> = (0..pre.batch)
            .map(|_| rng.below(train.len() as u64) as usize)
            .collect();
        let clips: Vec<&HostVideo> = picks.iter().map(|&i| &train[i].0).collect();
        let truth: Vec<f32> = picks.iter().flat_map(|&i| train[i].1.scores).collect();
        let truth = Tensor::<2>::from_data(
            TensorData::new(truth, [pre.batch, TARGETS.len()]),
            &train_device,
        );
        let loss = (probe.forward(&clips, &train_device) - truth)
            .powi_scalar(2)
            .mean();
        let loss_value: f32 = loss.clone().into_scalar();
        let grads = GradientsParams::from_grads(loss.backward(), &probe);
        let lr = schedule.lr_at(step, pre.steps);
        let (next, outcome) = optimizer.step(probe, grads, lr)?;
        probe = next;
        metrics.append(&StepRow {
            step: step + 1,
            loss: loss_value,
            lr,
            grad_norm: match outcome {
                StepOutcome::Applied(stats) => stats.grad_norm,
                StepOutcome::SkippedNonFinite { grad_norm } => grad_norm,
            },
        })?;
        progress.step(&format!("loss {loss_value:.4} lr {lr:.2e}"));
    }
    progress.finish();
    metrics.sync()?;

    let probe = probe.valid();
    let held_out_srcc = held_out_srcc(&probe, &held_out, pre.batch, device)?;
    for (dim, s) in TARGETS.iter().zip(held_out_srcc) {
        match s {
            Some(s) => log::info!("pretrain: held-out SRCC {dim}: {s:.3}"),
            None => log::info!("pretrain: held-out SRCC {dim}: – (too few clips)"),
        }
    }
    model.model.visual = probe.visual;
    let final_dir = run_dir.join("final");
    export_model(
        &model.valid(),
        &loaded.config_json,
        &loaded.tokenizer,
        &final_dir,
    )?;
    let summary = PretrainSummary {
        steps: pre.steps,
        train_clips: train.len(),
        held_out_clips: held_out.len(),
        skipped,
        held_out_srcc,
        seconds: started.elapsed().as_secs_f64(),
        final_dir,
    };
    let json = serde_json::to_string_pretty(&summary).map_err(|e| PretrainError::Io {
        action: "serialise",
        path: run_dir.join("pretrain.json"),
        source: std::io::Error::other(e),
    })?;
    let path = run_dir.join("pretrain.json");
    std::fs::write(&path, json).map_err(|source| PretrainError::Io {
        action: "write",
        path,
        source,
    })?;
    Ok(summary)
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

//! `vgrpo eval` and `vgrpo score`: a model judged on a manifest split, or on
//! one video.
//!
//! Videos are decoded on worker threads ([`crate::loader::prepare_all`])
//! while the model judges the previous batch; a row whose video fails to
//! load is logged with its reason, counted in the report and left out.

use super::config::EvalConfig;
use super::judge::{JudgeError, JudgeInput, JudgeSettings, Verdict, judge_batch};
use super::report::{AnswerRecord, EvalReport, Prediction, aggregate};
use super::scatter::{SCATTER_FILE, render_scatter};
use crate::chart::ChartError;
use crate::config::Config;
use crate::data::{Dimension, Manifest, ManifestError, MosScale, Rating, Split};
use crate::errors::chain;
use crate::inputs::{Example, InputError, InputSpec, judge_prompt, prepare_video};
use crate::jsonl::{JsonlError, JsonlWriter};
use crate::loader::{Preparer, prepare_all};
use crate::model::QwenVl;
use crate::model_source::{ModelConfig, ModelSourceError, load_model};
use crate::progress::Progress;
use crate::score::rating_probabilities;
use crate::text::{AnswerOrder, ChatError, Tokenizer};
use crate::video::{VideoConfig, load_clip};
use burn::tensor::Device;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error(transparent)]
    Model(#[from] ModelSourceError),
    #[error(transparent)]
    Input(#[from] InputError),
    #[error(transparent)]
    Judge(#[from] JudgeError),
    #[error("building the judging prompt")]
    Prompt(#[from] ChatError),
    #[error(transparent)]
    Jsonl(#[from] JsonlError),
    #[error("interrupted after {judged} of {rows} rows; nothing was written")]
    Interrupted { judged: usize, rows: usize },
    #[error("{path}: no {split:?} rows to evaluate")]
    NoRows { path: PathBuf, split: Split },
    #[error("every one of the {failed} rows failed to load (first: {first})")]
    AllFailed { failed: usize, first: String },
    #[error("writing {path}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the scatter plot")]
    Scatter(#[source] ChartError),
}

/// A finished evaluation: the report and every row's prediction.
#[derive(Debug, Clone, PartialEq)]
pub struct EvalOutput {
    pub report: EvalReport,
    pub predictions: Vec<Prediction>,
}

impl EvalOutput {
    /// Writes `report.json`, `report.md` (which shows the scatter plot),
    /// `predictions.jsonl` and `scatter.png` into `dir`.
    pub fn write(&self, dir: &Path) -> Result<(), EvalError> {
        let write = |name: &str, text: String| {
            let path = dir.join(name);
            std::fs::write(&path, text).map_err(|source| EvalError::Write { path, source })
        };
        std::fs::create_dir_all(dir).map_err(|source| EvalError::Write {
            path: dir.to_path_buf(),
            source,
        })?;
        let json = serde_json::to_string_pretty(&self.report).map_err(|e| EvalError::Write {
            path: dir.join("report.json"),
            source: std::io::Error::other(e),
        })?;
        write("report.json", json + "\n")?;
        // The link is in the file only: the printed report has no image.
        let link = format!("\n![Predicted score against MOS, per dimension]({SCATTER_FILE})\n");
        write("report.md", self.report.to_markdown() + &link)?;
        let mut rows = JsonlWriter::create(&dir.join("predictions.jsonl"))?;
        for p in &self.predictions {
            rows.append(p)?;
        }
        render_scatter(&self.report, &self.predictions)
            .and_then(|image| image.write_png(&dir.join(SCATTER_FILE)))
            .map_err(EvalError::Scatter)
    }
}

/// What the evaluation runs on, besides the model.
pub struct EvalData {
    pub manifest: Arc<Manifest>,
    /// Manifest indices of the rows to judge, in order.
    pub rows: Vec<usize>,
    pub scale: MosScale,
}

impl EvalData {
    /// The rows of `cfg.split` (at most `cfg.limit` when it is not 0).
    pub fn split(manifest: Manifest, scale: MosScale, cfg: &EvalConfig) -> Result<Self, EvalError> {
        let mut rows: Vec<usize> = manifest
            .rows
            .iter()
            .enumerate()
            .filter(|(_, r)| r.split.is_none_or(|s| s == cfg.split))
            .map(|(i, _)| i)
            .collect();
        if cfg.limit > 0 {
            rows.truncate(cfg.limit);
        }
        if rows.is_empty() {
            return Err(EvalError::NoRows {
                path: manifest.path.clone(),
                split: cfg.split,
            });
        }
        Ok(EvalData {
            manifest: Arc::new(manifest),
            rows,
            scale,
        })
    }
}

/// Judges every row of `data` with `model` and aggregates the report.
/// `model_name` names the model in the report.
pub fn evaluate(
    model: &QwenVl,
    tokenizer: &Tokenizer,
    spec: &InputSpec,
    data: &EvalData,
    cfg: &EvalConfig,
    model_name: &str,
    device: &Device,
) -> Result<EvalOutput, EvalError> {
    let never = AtomicBool::new(false);
    let job = EvalJob {
        model,
        tokenizer,
        spec,
        data,
        cfg,
        model_name,
    };
    evaluate_until(job, device, &never)
}

/// What [`evaluate_until`] judges.
pub struct EvalJob<'a> {
    pub model: &'a QwenVl,
    pub tokenizer: &'a Tokenizer,
    pub spec: &'a InputSpec,
    pub data: &'a EvalData,
    pub cfg: &'a EvalConfig,
    /// Names the model in the report.
    pub model_name: &'a str,
}

/// [`evaluate`], stopping between batches with
/// [`EvalError::Interrupted`] once `interrupt` is set (Ctrl-C).
pub fn evaluate_until(
    job: EvalJob<'_>,
    device: &Device,
    interrupt: &AtomicBool,
) -> Result<EvalOutput, EvalError> {
    let EvalJob {
        model,
        tokenizer,
        spec,
        data,
        cfg,
        model_name,
    } = job;
    let start = Instant::now();
    let preparer = Preparer {
        manifest: Arc::clone(&data.manifest),
        spec: Arc::new(spec.clone()),
        tokenizer: Arc::new(tokenizer.clone()),
        order: cfg.order,
    };
    let settings = cfg.judge_settings();
    let progress = Progress::new("eval", data.rows.len() as u64, 0);
    let mut prepared = prepare_all(
        preparer,
        data.rows.clone(),
        cfg.workers,
        2 * cfg.batch.max(1),
    );
    let mut predictions = Vec::with_capacity(data.rows.len());
    let mut failed: Vec<InputError> = Vec::new();
    loop {
        let mut batch: Vec<Example> = Vec::with_capacity(cfg.batch);
        for result in prepared.by_ref() {
            match result {
                Ok(example) => batch.push(example),
                Err(e) => {
                    log::warn!("eval: skipping a row: {}", chain(&e));
                    progress.tick();
                    failed.push(e);
                }
            }
            if batch.len() == cfg.batch {
                break;
            }
        }
        if batch.is_empty() {
            break;
        }
        if interrupt.load(Ordering::SeqCst) {
            return Err(EvalError::Interrupted {
                judged: predictions.len(),
                rows: data.rows.len(),
            });
        }
        let inputs: Vec<JudgeInput<'_>> = batch
            .iter()
            .map(|e| JudgeInput {
                prompt_ids: &e.prompt_ids,
                video: &e.video,
            })
            .collect();
        let verdicts = judge_batch(model, tokenizer, &inputs, &settings, device)?;
        for (example, verdict) in batch.iter().zip(verdicts) {
            predictions.push(prediction(example, verdict, data.scale));
        }
        let done = predictions.len();
        let mean = predictions.iter().map(|p| f64::from(p.score)).sum::<f64>() / done as f64;
        for _ in 1..batch.len() {
            progress.tick();
        }
        progress.step(&format!("mean score {mean:.3}"));
    }
    progress.finish();
    if predictions.is_empty() {
        return Err(EvalError::AllFailed {
            failed: failed.len(),
            first: failed.first().map_or_else(String::new, |e| chain(e)),
        });
    }
    let (dimensions, overall) = aggregate(&predictions, data.scale, cfg.pairwise());
    let report = EvalReport {
        model: model_name.to_string(),
        order: cfg.order,
        scale: data.scale,
        pairwise_config: cfg.pairwise(),
        dimensions,
        overall,
        failed_rows: failed.len(),
        seconds: start.elapsed().as_secs_f64(),
    };
    Ok(EvalOutput {
        report,
        predictions,
    })
}

fn prediction(example: &Example, verdict: Verdict, scale: MosScale) -> Prediction {
    let row = &example.row;
    Prediction {
        id: row.id.clone(),
        dimension: row.dimension,
        generator: row.generator.clone(),
        mos: row.mos,
        clean_mos: row.clean_mos,
        label: scale.rating(row.mos),
        score: verdict.score,
        mos_scale_score: scale.denormalise(verdict.score),
        rating_probs: rating_probabilities(verdict.rating_logits),
        answer: verdict
            .completion
            .map(|c| AnswerRecord::new(c.text, &c.answer, c.closed_think, c.tokens)),
    }
}

/// `vgrpo eval`: loads `[model]` and `[data]`, judges the `[eval]` split.
pub fn run_eval(
    cfg: &Config,
    device: &Device,
    interrupt: &AtomicBool,
) -> Result<EvalOutput, EvalError> {
    let scale = cfg.data.mos_scale();
    let manifest = Manifest::load_in_scale(&cfg.data.manifest, scale)?;
    let data = EvalData::split(manifest, scale, &cfg.eval)?;
    let loaded = load_model(&cfg.model, cfg.run.seed, device)?;
    let spec = InputSpec::new(&loaded.model.config, &cfg.video);
    log::info!(
        "eval: {} on {} {:?} rows of {}",
        loaded.origin,
        data.rows.len(),
        cfg.eval.split,
        cfg.data.manifest.display()
    );
    let job = EvalJob {
        model: &loaded.model,
        tokenizer: &loaded.tokenizer,
        spec: &spec,
        data: &data,
        cfg: &cfg.eval,
        model_name: &loaded.origin.to_string(),
    };
    evaluate_until(job, device, interrupt)
}

/// One video to judge.
#[derive(Debug, Clone)]
pub struct ScoreRequest {
    pub model: ModelConfig,
    pub video: PathBuf,
    pub dimension: Dimension,
    /// The text prompt the video was generated from (what alignment is
    /// judged against; may be empty for the other dimensions).
    pub generation_prompt: String,
    pub order: AnswerOrder,
    pub max_new_tokens: usize,
    pub video_config: VideoConfig,
    pub scale: MosScale,
    /// Initialises the tiny model when `model.path` is absent.
    pub seed: u64,
}

/// One judgement, as `vgrpo score` prints it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Judgement {
    pub video: PathBuf,
    pub dimension: Dimension,
    /// The rating the model wrote (absent when its answer is malformed).
    pub rating: Option<Rating>,
    /// Softmax-expectation score in [0, 1].
    pub score: f32,
    /// The score on the MOS scale.
    pub mos_scale_score: f32,
    /// Probabilities of Bad … Excellent at the rating position.
    pub rating_probs: [f32; 5],
    /// The rationale of a well-formed answer.
    pub rationale: Option<String>,
    /// The whole greedy answer.
    pub completion: String,
    /// Why the answer is malformed, if it is.
    pub violation: Option<String>,
}

/// `vgrpo score`: judges one video on one dimension.
pub fn score_video(req: &ScoreRequest, device: &Device) -> Result<Judgement, EvalError> {
    let loaded = load_model(&req.model, req.seed, device)?;
    let spec = InputSpec::new(&loaded.model.config, &req.video_config);
    let clip = load_clip(&req.video, &spec.video).map_err(InputError::from)?;
    let video = prepare_video(&clip, &spec)?;
    let prompt_ids = judge_prompt(
        &loaded.tokenizer,
        &spec,
        &video,
        req.dimension,
        &req.generation_prompt,
        req.order,
    )?;
    let settings = JudgeSettings {
        order: req.order,
        max_new_tokens: req.max_new_tokens,
        generate: true,
    };
    let input = JudgeInput {
        prompt_ids: &prompt_ids,
        video: &video,
    };
    let verdict = judge_batch(
        &loaded.model,
        &loaded.tokenizer,
        &[input],
        &settings,
        device,
    )?
    .remove(0);
    let completion = verdict.completion.as_ref();
    let answer = completion.and_then(|c| c.answer.as_ref().ok());
    Ok(Judgement {
        video: req.video.clone(),
        dimension: req.dimension,
        rating: answer.map(|a| a.rating),
        score: verdict.score,
        mos_scale_score: req.scale.denormalise(verdict.score),
        rating_probs: rating_probabilities(verdict.rating_logits),
        rationale: answer.map(|a| a.rationale.clone()),
        completion: completion.map_or_else(String::new, |c| c.text.clone()),
        violation: completion.and_then(|c| c.answer.as_ref().err().map(ToString::to_string)),
    })
}

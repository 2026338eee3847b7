//! `vgrpo pipeline`: the whole Q-Save recipe from one config —
//! synth (if the manifest is missing) → SFT cold start → eval → GRPO →
//! eval → SFT cool-off → eval — and the stage table (paper Table 4 style).
//! With `[pipeline.validation]` every eval also judges a validation set of
//! its own, printed as a second table, so settings are chosen without
//! looking at the test split.
//!
//! Each stage is an ordinary run of its own command with a config derived
//! from the pipeline's: run name `<name>-<stage>`, `[model] path` set to the
//! previous stage's `final/` export, the stage's optimizer settings from
//! `[pipeline]`. Stages hand models over as HF directories, exactly as a user
//! chaining `vgrpo sft`, `vgrpo train` and `vgrpo eval` by hand would. A
//! rerun skips the stages whose outputs exist and resumes an interrupted
//! one from its latest checkpoint.

use crate::checkpoint::Resume;
use crate::config::{self, Config, Rules, Validate};
use crate::data::synth::{SynthConfig, ensure_synthetic_set};
use crate::data::{Dimension, same_file};
use crate::eval::report::EvalReport;
use crate::eval::run::run_eval;
use crate::grpo::trainer::train;
use crate::optim::OptimConfig;
use crate::pretrain::run_pretrain;
use crate::schedule::ScheduleKind;
use crate::sft::{SftMode, run_sft};
use crate::text::AnswerOrder;
use burn::tensor::Device;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::Instant;

/// `[pipeline]` settings: what differs between the stages.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PipelineConfig {
    /// The synthetic data set written when `data.manifest` does not exist
    /// (into the manifest's directory).
    pub synth: SynthConfig,
    /// Optimizer of the SFT stages (paper: AdamW 5e-6, warmup 3%).
    pub sft_optim: OptimConfig,
    /// Optimizer of the cool-off stage when it should differ from
    /// `sft_optim` (absent: `sft_optim`). The cool-off set is GRPO's correct
    /// rollouts, far smaller than the cold start's, so it may want a lower
    /// learning rate.
    pub cooloff_optim: Option<OptimConfig>,
    /// Optimizer of the GRPO stage (paper: 2e-6, constant).
    pub grpo_optim: OptimConfig,
    /// Epochs of the cool-off stage (the cold start uses `sft.epochs`).
    pub cooloff_epochs: u64,
    /// Start with `vgrpo pretrain` (`[pretrain]`) and hand its model to the
    /// cold start: the stand-in for a pretrained VLM when `[model]` is the
    /// randomly initialised tiny model (see [`crate::pretrain`]).
    pub pretrain: bool,
    /// A validation set of its own (absent: none). Every stage is judged on
    /// its test split too, in a second table, so settings can be chosen
    /// without looking at the test split.
    pub validation: Option<ValidationConfig>,
}

/// `[pipeline.validation]`: a held-out set no stage trains on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ValidationConfig {
    /// Its manifest, written from `synth` when missing. Must be none of the
    /// sets a stage trains on (`data.manifest`, `grpo.manifest`,
    /// `pretrain.manifest`).
    pub manifest: PathBuf,
    /// The synthetic validation set: a seed of its own, and most videos in
    /// the test split (the split that is judged).
    pub synth: SynthConfig,
}

impl Default for ValidationConfig {
    fn default() -> Self {
        ValidationConfig {
            manifest: PathBuf::from("data/synth-val/manifest.jsonl"),
            synth: SynthConfig {
                videos: 300,
                seed: 3000,
                test_fraction: 0.8,
                ..SynthConfig::default()
            },
        }
    }
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            synth: SynthConfig::default(),
            sft_optim: OptimConfig {
                lr: 5e-6,
                schedule: ScheduleKind::WarmupCosine,
                warmup_ratio: 0.03,
                ..OptimConfig::default()
            },
            cooloff_optim: None,
            grpo_optim: OptimConfig::default(),
            cooloff_epochs: 3,
            pretrain: false,
            validation: None,
        }
    }
}

impl Validate for PipelineConfig {
    fn validate(&self, p: &str, rules: &mut Rules) {
        self.synth.check(&format!("{p}.synth"), rules);
        self.sft_optim.validate(&format!("{p}.sft_optim"), rules);
        self.grpo_optim.validate(&format!("{p}.grpo_optim"), rules);
        if let Some(optim) = &self.cooloff_optim {
            optim.validate(&format!("{p}.cooloff_optim"), rules);
        }
        rules.check(
            self.cooloff_epochs >= 1,
            &format!("{p}.cooloff_epochs"),
            || format!("cooloff_epochs must be ≥ 1, got {}", self.cooloff_epochs),
        );
        if let Some(v) = &self.validation {
            v.synth.check(&format!("{p}.validation.synth"), rules);
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("writing the synthetic data set: {0}")]
    Synth(#[from] crate::data::synth::SynthError),
    #[error("stage {stage}: {message}")]
    Stage {
        stage: &'static str,
        message: String,
    },
    #[error(
        "{} holds a finished run of another config ({differences}); delete that directory to \
         redo the stage with this config, or give the pipeline another run.name",
        dir.display()
    )]
    StaleStage { dir: PathBuf, differences: String },
    #[error(
        "pipeline.validation.manifest is {key} ({}): a stage trains on that set, so it cannot \
         validate; point pipeline.validation.manifest at a set of its own",
        path.display()
    )]
    ValidationTrainedOn { key: &'static str, path: PathBuf },
    #[error("the GRPO stage was interrupted; rerun the pipeline to continue it")]
    Interrupted,
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

fn stage_err(stage: &'static str) -> impl Fn(String) -> PipelineError {
    move |message| PipelineError::Stage { stage, message }
}

/// One evaluated stage of the table.
#[derive(Debug, Clone, Serialize)]
pub struct StageRow {
    pub stage: String,
    pub model: PathBuf,
    /// On the test split of `data.manifest`.
    pub report: EvalReport,
    /// Where the evaluation wrote `report.json` and `predictions.jsonl`.
    pub eval_dir: PathBuf,
    /// On the validation set's test split, with `pipeline.validation`
    /// (written to `eval-validation/`).
    pub validation: Option<EvalReport>,
    /// Wall time of the stage's training (0 for the base model) and its
    /// evaluations.
    pub train_seconds: f64,
    pub eval_seconds: f64,
}

impl StageRow {
    /// Mean instance-level SRCC over the dimensions on the test split (the
    /// stage table's "mean SRCC"; an undefined correlation counts as 0).
    pub fn mean_srcc(&self) -> f64 {
        mean(&dimension_srcc(&self.report)).unwrap_or(0.0)
    }

    /// The same on the validation set, with `pipeline.validation`.
    pub fn validation_mean_srcc(&self) -> Option<f64> {
        self.validation
            .as_ref()
            .map(|r| mean(&dimension_srcc(r)).unwrap_or(0.0))
    }
}

/// Instance-level SRCC of each dimension, in [`Dimension::ALL`] order.
fn dimension_srcc(report: &EvalReport) -> Vec<Option<f64>> {
    Dimension::ALL
        .iter()
        .map(|&d| {
            report
                .dimensions
                .iter()
                .find(|x| x.dimension == d)
                .and_then(|x| x.instance.value().map(|c| c.srcc))
        })
        .collect()
}

/// What the pipeline produced.
#[derive(Debug, Clone, Serialize)]
pub struct PipelineSummary {
    pub rows: Vec<StageRow>,
    pub seconds: f64,
    pub table: String,
}

/// Runs every stage (skipping finished ones) and returns the stage table.
pub fn run_pipeline(
    config: &Config,
    device: &Device,
    interrupt: &AtomicBool,
) -> Result<PipelineSummary, PipelineError> {
    let started = Instant::now();
    let name = &config.run.name;
    let p = &config.pipeline;

    ensure_synthetic_set(&config.data.manifest, &p.synth, "the synthetic data set")?;
    let validation = match &p.validation {
        Some(v) => {
            check_validation_set(config, &v.manifest)?;
            ensure_synthetic_set(&v.manifest, &v.synth, "the validation set")?;
            Some(v.manifest.as_path())
        }
        None => None,
    };

    let stage = |suffix: &str| {
        let mut c = config.clone();
        c.run.name = format!("{name}-{suffix}");
        c
    };
    let final_of = |c: &Config| c.run.dir().join(FINAL);
    let mut rows = Vec::new();

    // 0. Perception pre-training of the vision tower, if asked for.
    let mut cold = stage("cold");
    // Whether the previous stage was trained by this invocation (then no
    // earlier run of the next stage may be reused or resumed).
    let mut trained = false;
    if p.pretrain {
        let pre = stage("pretrain");
        if !finished(&pre, Stage::Pretrain, false)? {
            trained = true;
            log::info!(
                "pipeline: perception pre-training ({})",
                pre.run.dir().display()
            );
            run_pretrain(&pre, device).map_err(|e| stage_err("pretrain")(e.to_string()))?;
        }
        cold.model.path = Some(final_of(&pre));
        cold.model.tokenizer = None;
    }

    // 1. SFT cold start on the manifest's rationales.
    cold.optim = p.sft_optim.clone();
    cold.sft.mode = SftMode::ColdStart;
    let t = Instant::now();
    if !finished(&cold, Stage::ColdStart, trained)? {
        trained = true;
        log::info!("pipeline: SFT cold start ({})", cold.run.dir().display());
        run_sft(&cold, &Resume::Auto, device)
            .map_err(|e| stage_err("cold start")(e.to_string()))?;
    }
    let cold_seconds = t.elapsed().as_secs_f64();
    rows.push(evaluate(
        &cold,
        "SFT cold start",
        final_of(&cold),
        AnswerOrder::ThinkFirst,
        cold_seconds,
        validation,
        device,
    )?);

    // 2. GRPO from the cold-start model.
    let mut grpo = stage("grpo");
    grpo.optim = p.grpo_optim.clone();
    grpo.model.path = Some(final_of(&cold));
    grpo.model.tokenizer = None;
    let t = Instant::now();
    let cooloff_data = grpo
        .grpo
        .rollouts_dir
        .join(&grpo.run.name)
        .join("cooloff.jsonl");
    if !finished(&grpo, Stage::Grpo, trained)? {
        trained = true;
        log::info!("pipeline: GRPO ({})", grpo.run.dir().display());
        let summary = train(&grpo, &Resume::Auto, device, interrupt)
            .map_err(|e| stage_err("grpo")(e.to_string()))?;
        if summary.interrupted {
            return Err(PipelineError::Interrupted);
        }
    }
    let grpo_seconds = t.elapsed().as_secs_f64();
    rows.push(evaluate(
        &grpo,
        "+ GRPO",
        final_of(&grpo),
        AnswerOrder::ThinkFirst,
        grpo_seconds,
        validation,
        device,
    )?);

    // 3. SFT cool-off on GRPO's correct rollouts, rating-first.
    let mut cool = stage("cooloff");
    cool.optim = p.cooloff_optim.as_ref().unwrap_or(&p.sft_optim).clone();
    cool.model.path = Some(final_of(&grpo));
    cool.model.tokenizer = None;
    cool.sft.mode = SftMode::CoolOff;
    cool.sft.cooloff = Some(cooloff_data);
    cool.sft.epochs = p.cooloff_epochs;
    let t = Instant::now();
    if !finished(&cool, Stage::CoolOff, trained)? {
        log::info!("pipeline: SFT cool-off ({})", cool.run.dir().display());
        run_sft(&cool, &Resume::Auto, device).map_err(|e| stage_err("cool-off")(e.to_string()))?;
    }
    let cool_seconds = t.elapsed().as_secs_f64();
    rows.push(evaluate(
        &cool,
        "+ SFT cool-off",
        final_of(&cool),
        AnswerOrder::RatingFirst,
        cool_seconds,
        validation,
        device,
    )?);

    let table = stage_table(&rows);
    let summary = PipelineSummary {
        rows,
        seconds: started.elapsed().as_secs_f64(),
        table,
    };
    let dir = config.run.dir();
    write(&dir.join("pipeline.md"), &summary.table)?;
    let json = serde_json::to_string_pretty(&summary).map_err(|e| PipelineError::Stage {
        stage: "report",
        message: e.to_string(),
    })?;
    write(&dir.join("pipeline.json"), &json)?;
    Ok(summary)
}

/// A stage's exported model, inside its run directory.
const FINAL: &str = "final";

/// The pipeline's stages, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Pretrain,
    ColdStart,
    Grpo,
    CoolOff,
}

impl Stage {
    /// Top-level config sections the stage's model does not depend on:
    /// `[eval]`; `[pipeline]`, whose settings the pipeline copies into each
    /// stage's own sections (`optim`, `sft.epochs`, `model.path`), where they
    /// are compared; and the sections only later stages read. Everything
    /// else counts, the settings of earlier stages included.
    fn ignored_sections(self) -> &'static [&'static str] {
        match self {
            Stage::Pretrain => &["eval", "pipeline", "optim", "sft", "grpo"],
            Stage::ColdStart => &["eval", "pipeline", "grpo"],
            Stage::Grpo | Stage::CoolOff => &["eval", "pipeline"],
        }
    }
}

/// Whether `stage` already ran to the end with this very config: then its
/// `final/` is reused. Refused, with the reason, rather than reported under
/// this config's name: a finished run of a config that differs in a setting
/// the stage depends on ([`Stage::ignored_sections`]), and any run at all
/// (finished or interrupted) when `upstream_trained`, i.e. when the stage
/// it starts from was trained again by this invocation.
fn finished(cfg: &Config, stage: Stage, upstream_trained: bool) -> Result<bool, PipelineError> {
    let dir = cfg.run.dir();
    let stale = |differences: String| PipelineError::StaleStage {
        dir: dir.clone(),
        differences,
    };
    if upstream_trained && dir.exists() {
        return Err(stale(
            "it started from the previous stage's model, which this run trained again".into(),
        ));
    }
    if !dir.join(FINAL).join("config.json").is_file() {
        return Ok(false);
    }
    let saved = config::load(&dir.join("config.toml"), &[])
        .map_err(|e| stale(format!("its config.toml cannot be read: {e}")))?;
    let ignored = stage.ignored_sections();
    let differences: Vec<String> = cfg
        .differences_from(&saved)
        .into_iter()
        .filter(|d| {
            let section = d.split(['.', ':']).next().unwrap_or_default();
            !ignored.contains(&section)
        })
        .collect();
    if differences.is_empty() {
        Ok(true)
    } else {
        Err(stale(differences.join(", ")))
    }
}

/// Refuses a validation manifest that a stage trains on.
fn check_validation_set(config: &Config, manifest: &Path) -> Result<(), PipelineError> {
    let trained_on = [
        ("data.manifest", Some(&config.data.manifest)),
        ("grpo.manifest", config.grpo.manifest.as_ref()),
        (
            "pretrain.manifest",
            config
                .pipeline
                .pretrain
                .then_some(&config.pretrain.manifest),
        ),
    ];
    match trained_on
        .into_iter()
        .find(|(_, path)| path.is_some_and(|p| same_file(p, manifest)))
    {
        Some((key, _)) => Err(PipelineError::ValidationTrainedOn {
            key,
            path: manifest.to_path_buf(),
        }),
        None => Ok(()),
    }
}

/// Evaluates a stage's exported model on the test split of `data.manifest`
/// and, given `validation`, on that manifest's test split too.
fn evaluate(
    stage_cfg: &Config,
    label: &str,
    model: PathBuf,
    order: AnswerOrder,
    train_seconds: f64,
    validation: Option<&Path>,
    device: &Device,
) -> Result<StageRow, PipelineError> {
    let dir = stage_cfg.run.dir().join("eval");
    let mut cfg = stage_cfg.clone();
    cfg.model.path = Some(model.clone());
    cfg.model.tokenizer = None;
    cfg.eval.order = order;
    let t = Instant::now();
    let report = evaluate_cached(&cfg, &dir, label, device)?;
    let validation = match validation {
        Some(manifest) => {
            let mut cfg = cfg.clone();
            cfg.data.manifest = manifest.to_path_buf();
            let dir = stage_cfg.run.dir().join("eval-validation");
            Some(evaluate_cached(
                &cfg,
                &dir,
                &format!("{label} (validation set)"),
                device,
            )?)
        }
        None => None,
    };
    Ok(StageRow {
        stage: label.to_string(),
        model,
        report,
        eval_dir: dir,
        validation,
        train_seconds,
        eval_seconds: t.elapsed().as_secs_f64(),
    })
}

/// Runs `vgrpo eval` with `cfg` into `dir`. The result is cached there with
/// the config that produced it (`config.toml`) and reused only for that same
/// config.
fn evaluate_cached(
    cfg: &Config,
    dir: &Path,
    label: &str,
    device: &Device,
) -> Result<EvalReport, PipelineError> {
    let same_config = config::load(&dir.join("config.toml"), &[])
        .is_ok_and(|saved| cfg.differences_from(&saved).is_empty());
    let cached = std::fs::read_to_string(dir.join("report.json"))
        .ok()
        .and_then(|text| serde_json::from_str::<EvalReport>(&text).ok());
    if let Some(report) = cached.filter(|_| same_config) {
        return Ok(report);
    }
    log::info!("pipeline: evaluating {label}");
    let out = run_eval(cfg, device).map_err(|e| stage_err("eval")(e.to_string()))?;
    out.write(dir)
        .map_err(|e| stage_err("eval")(e.to_string()))?;
    // Written last: a config.toml beside a report means the report is complete.
    cfg.write_resolved(dir)
        .map_err(|e| stage_err("eval")(e.to_string()))?;
    Ok(out.report)
}

fn write(path: &Path, text: &str) -> Result<(), PipelineError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|source| PipelineError::Write {
            path: path.to_path_buf(),
            source,
        })?;
    }
    std::fs::write(path, text).map_err(|source| PipelineError::Write {
        path: path.to_path_buf(),
        source,
    })
}

/// The markdown stage table: instance-level SRCC per dimension and their
/// mean, PLCC, model-level SRCC, pairwise accuracy, format rate and exact
/// rating accuracy, with the noise ceiling of the test set; then the same on
/// the validation set when the rows have one.
pub fn stage_table(rows: &[StageRow]) -> String {
    let test: Vec<(&str, &EvalReport)> =
        rows.iter().map(|r| (r.stage.as_str(), &r.report)).collect();
    let mut out = report_table(&test);
    let validation: Option<Vec<(&str, &EvalReport)>> = rows
        .iter()
        .map(|r| r.validation.as_ref().map(|v| (r.stage.as_str(), v)))
        .collect();
    if let Some(validation) = validation.filter(|v| !v.is_empty()) {
        out.push_str("\nValidation set (`pipeline.validation`, its test split):\n\n");
        out.push_str(&report_table(&validation));
    }
    out
}

/// One table of [`stage_table`]: a row per (stage, report), and the first
/// report's noise ceiling.
fn report_table(rows: &[(&str, &EvalReport)]) -> String {
    let fmt = |v: Option<f64>| v.map_or("–".to_string(), |x| format!("{x:.3}"));
    let mut out = String::from(
        "| stage | SRCC visual | SRCC dynamic | SRCC alignment | mean SRCC | mean PLCC | model SRCC | pairwise acc (w/o ties) | format | exact |\n\
         |---|---|---|---|---|---|---|---|---|---|\n",
    );
    for &(stage, r) in rows {
        let srcc = dimension_srcc(r);
        let plcc: Vec<Option<f64>> = Dimension::ALL
            .iter()
            .map(|&d| {
                r.dimensions
                    .iter()
                    .find(|x| x.dimension == d)
                    .and_then(|x| x.instance.value().map(|c| c.plcc))
            })
            .collect();
        out.push_str(&format!(
            "| {stage} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            fmt(srcc[0]),
            fmt(srcc[1]),
            fmt(srcc[2]),
            fmt(mean(&srcc)),
            fmt(mean(&plcc)),
            fmt(r.overall.model_srcc),
            fmt(r.overall.pairwise_without_ties),
            fmt(r.overall.format_rate),
            fmt(r.overall.exact_rating_accuracy),
        ));
    }
    if let Some(ceiling) = rows.first().and_then(|(_, r)| r.overall.noise_ceiling_srcc) {
        out.push_str(&format!(
            "\nNoise ceiling (SRCC of the noise-free score against the MOS, test split): {ceiling:.3}\n"
        ));
    }
    out
}

/// Mean over the dimensions; an undefined correlation (a judge that gives
/// every video the same score) counts as 0 — it ranks nothing.
fn mean(values: &[Option<f64>]) -> Option<f64> {
    (!values.is_empty())
        .then(|| values.iter().map(|v| v.unwrap_or(0.0)).sum::<f64>() / values.len() as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stage config writing under `root`, with `extra` TOML appended.
    fn stage(root: &Path, extra: &str) -> Config {
        let text = format!(
            "[run]\nname = \"demo-cold\"\nout_dir = \"{}\"\n{extra}",
            root.display()
        );
        config::from_str(Path::new("stage.toml"), &text, &[]).unwrap()
    }

    /// What a finished stage leaves behind: its config and a final model.
    fn finish(cfg: &Config) {
        let dir = cfg.run.dir();
        cfg.write_resolved(&dir).unwrap();
        std::fs::create_dir_all(dir.join(FINAL)).unwrap();
        std::fs::write(dir.join(FINAL).join("config.json"), "{}").unwrap();
    }

    #[test]
    fn the_validation_set_must_be_one_no_stage_trains_on() {
        let cfg = |extra: &str| {
            let text = format!(
                "[data]\nmanifest = \"a/manifest.jsonl\"\n[grpo]\nmanifest = \"b/manifest.jsonl\"\n\
                 [pretrain]\nmanifest = \"c/manifest.jsonl\"\n{extra}"
            );
            config::from_str(Path::new("p.toml"), &text, &[]).unwrap()
        };
        let with_pretrain = cfg("[pipeline]\npretrain = true\n");
        for (dir, key) in [
            ("a", "data.manifest"),
            ("b", "grpo.manifest"),
            ("c", "pretrain.manifest"),
        ] {
            let path = PathBuf::from(format!("{dir}/manifest.jsonl"));
            let err = check_validation_set(&with_pretrain, &path).unwrap_err();
            let message = err.to_string();
            assert!(
                message.contains(&format!("pipeline.validation.manifest is {key}")),
                "{message}"
            );
        }
        let fresh = Path::new("d/manifest.jsonl");
        assert!(check_validation_set(&with_pretrain, fresh).is_ok());
        // Without the pre-training stage its set trains nothing.
        assert!(check_validation_set(&cfg(""), Path::new("c/manifest.jsonl")).is_ok());
    }

    /// A report whose visual SRCC is `sign` (±1) and whose other dimensions
    /// are empty.
    fn report(sign: f32) -> EvalReport {
        use crate::data::{MosScale, Rating};
        use crate::eval::metrics::PairwiseConfig;
        use crate::eval::report::{Prediction, aggregate};
        let predictions: Vec<Prediction> = (1..=3)
            .map(|i| {
                let mos = i as f32;
                let score = 0.5 + sign * 0.1 * mos;
                Prediction {
                    id: format!("v{i}"),
                    dimension: Dimension::Visual,
                    generator: "g".into(),
                    mos,
                    clean_mos: None,
                    label: Rating::Fair,
                    score,
                    mos_scale_score: 1.0 + 4.0 * score,
                    rating_probs: [0.2; 5],
                    answer: None,
                }
            })
            .collect();
        let scale = MosScale::default();
        let (dimensions, overall) = aggregate(&predictions, scale, PairwiseConfig::default());
        EvalReport {
            model: "m".into(),
            order: AnswerOrder::ThinkFirst,
            scale,
            pairwise_config: PairwiseConfig::default(),
            dimensions,
            overall,
            failed_rows: 0,
            seconds: 0.0,
        }
    }

    fn row(stage: &str, test: f32, validation: Option<f32>) -> StageRow {
        StageRow {
            stage: stage.into(),
            model: PathBuf::from("m"),
            report: report(test),
            eval_dir: PathBuf::from("e"),
            validation: validation.map(report),
            train_seconds: 0.0,
            eval_seconds: 0.0,
        }
    }

    #[test]
    fn the_stage_table_adds_the_validation_set_when_every_stage_has_one() {
        // Visual SRCC ±1, the other dimensions undefined (0): mean ±1/3.
        let rows = [row("cold", 1.0, Some(-1.0)), row("+ GRPO", -1.0, Some(1.0))];
        assert!((rows[0].mean_srcc() - 1.0 / 3.0).abs() < 1e-12);
        assert_eq!(
            rows[1].validation_mean_srcc().map(|m| (m * 3.0).round()),
            Some(1.0)
        );
        let table = stage_table(&rows);
        let (test, validation) = table
            .split_once("Validation set")
            .unwrap_or_else(|| panic!("{table}"));
        assert!(test.contains("| cold | 1.000 | – | – | 0.333 |"), "{table}");
        assert!(test.contains("| + GRPO | -1.000 |"), "{table}");
        assert!(validation.contains("| cold | -1.000 |"), "{table}");
        assert!(
            validation.contains("| + GRPO | 1.000 | – | – | 0.333 |"),
            "{table}"
        );

        let without = [row("cold", 1.0, None), row("+ GRPO", -1.0, Some(1.0))];
        assert!(!stage_table(&without).contains("Validation set"));
    }

    #[test]
    fn a_finished_stage_is_reused_only_for_the_same_training_config() {
        let tmp = tempfile::tempdir().unwrap();
        let ran = stage(tmp.path(), "[sft]\nepochs = 2\n");
        assert!(
            !finished(&ran, Stage::ColdStart, false).unwrap(),
            "nothing ran yet"
        );
        finish(&ran);
        assert!(finished(&ran, Stage::ColdStart, false).unwrap());
        // Evaluation settings do not change the trained model.
        let eval_only = stage(
            tmp.path(),
            "[sft]\nepochs = 2\n[eval]\nmax_new_tokens = 9\n",
        );
        assert!(finished(&eval_only, Stage::ColdStart, false).unwrap());
        // A training setting does: refused, naming the key and both values.
        let edited = stage(tmp.path(), "[sft]\nepochs = 6\n");
        let err = finished(&edited, Stage::ColdStart, false).unwrap_err();
        assert!(matches!(err, PipelineError::StaleStage { .. }));
        let message = err.to_string();
        assert!(message.contains("sft.epochs: 2 → 6"), "{message}");
        assert!(message.contains("demo-cold"), "{message}");
    }

    #[test]
    fn a_finished_stage_without_its_config_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let ran = stage(tmp.path(), "");
        finish(&ran);
        std::fs::remove_file(ran.run.dir().join("config.toml")).unwrap();
        let message = finished(&ran, Stage::ColdStart, false)
            .unwrap_err()
            .to_string();
        assert!(message.contains("config.toml cannot be read"), "{message}");
    }

    #[test]
    fn a_stage_ignores_the_sections_only_later_stages_read() {
        let tmp = tempfile::tempdir().unwrap();
        let ran = stage(tmp.path(), "[grpo]\ntop_k = 0\n");
        finish(&ran);
        let edited = stage(tmp.path(), "[grpo]\ntop_k = 20\n");
        // The cold start does not read [grpo]; GRPO itself does.
        assert!(finished(&edited, Stage::ColdStart, false).unwrap());
        let message = finished(&edited, Stage::Grpo, false)
            .unwrap_err()
            .to_string();
        assert!(message.contains("grpo.top_k: 0 → 20"), "{message}");
        // [pipeline] is compared through the stage sections it sets.
        let pipeline_only = stage(
            tmp.path(),
            "[grpo]\ntop_k = 0\n[pipeline]\ncooloff_epochs = 9\n",
        );
        assert!(finished(&pipeline_only, Stage::Grpo, false).unwrap());
    }

    #[test]
    fn no_run_is_reused_or_resumed_after_its_input_model_was_trained_again() {
        let tmp = tempfile::tempdir().unwrap();
        let ran = stage(tmp.path(), "");
        // Nothing there: the stage trains.
        assert!(!finished(&ran, Stage::Grpo, true).unwrap());
        // An interrupted run (no final/) and a finished one are refused.
        std::fs::create_dir_all(ran.run.dir().join("checkpoints")).unwrap();
        let message = finished(&ran, Stage::Grpo, true).unwrap_err().to_string();
        assert!(message.contains("trained again"), "{message}");
        finish(&ran);
        assert!(finished(&ran, Stage::Grpo, true).is_err());
        assert!(finished(&ran, Stage::Grpo, false).unwrap());
    }
}

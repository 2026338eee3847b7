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

pub mod config;

pub use config::{PipelineConfig, ValidationConfig};

use crate::checkpoint::Resume;
use crate::config::Config;
use crate::data::synth::ensure_synthetic_set;
use crate::data::{Dimension, same_file};
use crate::eval::report::EvalReport;
use crate::eval::run::run_eval;
use crate::grpo::trainer::train;
use crate::pretrain::run_pretrain;
use crate::sft::{SftMode, run_sft};
use crate::text::AnswerOrder;
use burn::tensor::Device;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::Instant;

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("writing the synthetic data set")]
    Synth(#[from] crate::data::synth::SynthError),
    #[error("stage {stage}")]
    Stage {
        stage: &'static str,
        #[source]
        source: Box<StageError>,
    },
    #[error("{}: its config.toml cannot be read", dir.display())]
    StageConfig {
        dir: PathBuf,
        #[source]
        source: crate::config::ConfigError,
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
    #[error("interrupted in the {stage} stage; rerun the same command to continue there")]
    Interrupted { stage: &'static str },
    #[error("writing {path}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The error of the stage that failed, kept whole (its chain prints after
/// the stage's name).
#[derive(Debug, thiserror::Error)]
pub enum StageError {
    #[error(transparent)]
    Pretrain(#[from] crate::pretrain::PretrainError),
    #[error(transparent)]
    Sft(#[from] crate::sft::SftError),
    #[error(transparent)]
    Grpo(#[from] crate::grpo::trainer::TrainError),
    #[error(transparent)]
    Eval(#[from] crate::eval::EvalError),
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error("serialising the stage table")]
    Report(#[source] serde_json::Error),
}

/// Wraps a stage's error with the stage's name; an interrupted stage
/// (Ctrl-C inside it) becomes [`PipelineError::Interrupted`].
fn stage_err<E: Into<StageError>>(stage: &'static str) -> impl Fn(E) -> PipelineError {
    move |e| match e.into() {
        StageError::Eval(crate::eval::EvalError::Interrupted { .. }) => {
            PipelineError::Interrupted { stage }
        }
        source => PipelineError::Stage {
            stage,
            source: Box::new(source),
        },
    }
}

/// `Err(Interrupted)` when the stage that just returned stopped early.
fn stopped(stage: &'static str, interrupted: bool) -> Result<(), PipelineError> {
    match interrupted {
        true => Err(PipelineError::Interrupted { stage }),
        false => Ok(()),
    }
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
    /// (written to [`StageRow::validation_dir`]).
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

    /// Where the validation-set evaluation wrote its files, with
    /// `pipeline.validation`: beside `eval_dir`.
    pub fn validation_dir(&self) -> Option<PathBuf> {
        (self.validation.as_ref()).map(|_| self.eval_dir.with_file_name(VALIDATION_EVAL_DIR))
    }
}

/// Where each stage's evaluations go, inside its run directory: on the test
/// split, and on the validation set.
const EVAL_DIR: &str = "eval";
const VALIDATION_EVAL_DIR: &str = "eval-validation";

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
    let judge = Judge {
        validation,
        device,
        interrupt,
    };

    let stage = |stage: &str| {
        let mut c = config.clone();
        c.run.name = stage_name(name, stage, p.branch.as_deref());
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
            let summary = run_pretrain(&pre, &Resume::Auto, device, interrupt)
                .map_err(stage_err("pretrain"))?;
            stopped("pretrain", summary.interrupted)?;
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
        let summary =
            run_sft(&cold, &Resume::Auto, device, interrupt).map_err(stage_err("cold start"))?;
        stopped("cold start", summary.interrupted)?;
    }
    let cold_seconds = t.elapsed().as_secs_f64();
    rows.push(judge.stage(
        &cold,
        Stage::ColdStart,
        "SFT cold start",
        AnswerOrder::ThinkFirst,
        cold_seconds,
    )?);

    // 2. GRPO from the cold-start model.
    let mut grpo = stage("grpo");
    grpo.optim = p.grpo_optim.clone();
    grpo.model.path = Some(final_of(&cold));
    grpo.model.tokenizer = None;
    let t = Instant::now();
    let cooloff_data = crate::cooloff::path(&grpo.grpo.rollouts_dir, &grpo.run.name);
    if !finished(&grpo, Stage::Grpo, trained)? {
        trained = true;
        log::info!("pipeline: GRPO ({})", grpo.run.dir().display());
        let summary = train(&grpo, &Resume::Auto, device, interrupt).map_err(stage_err("grpo"))?;
        stopped("grpo", summary.interrupted)?;
    }
    let grpo_seconds = t.elapsed().as_secs_f64();
    rows.push(judge.stage(
        &grpo,
        Stage::Grpo,
        "+ GRPO",
        AnswerOrder::ThinkFirst,
        grpo_seconds,
    )?);

    // 3. SFT cool-off on GRPO's correct rollouts, rating-first (none when
    // GRPO wrote none: there is nothing to train on).
    if !crate::cooloff::has_rows(&cooloff_data) {
        log::warn!(
            "pipeline: GRPO wrote no correct rollouts to {}; no cool-off stage",
            cooloff_data.display()
        );
    } else {
        let mut cool = stage("cooloff");
        cool.optim = p.cooloff_optim.as_ref().unwrap_or(&p.sft_optim).clone();
        cool.model.path = Some(final_of(&grpo));
        cool.model.tokenizer = None;
        cool.sft.mode = SftMode::CoolOff;
        cool.sft.cooloff = Some(cooloff_data);
        cool.sft.manifest = config.grpo.manifest.clone();
        cool.sft.epochs = p.cooloff_epochs;
        let t = Instant::now();
        if !finished(&cool, Stage::CoolOff, trained)? {
            log::info!("pipeline: SFT cool-off ({})", cool.run.dir().display());
            let summary =
                run_sft(&cool, &Resume::Auto, device, interrupt).map_err(stage_err("cool-off"))?;
            stopped("cool-off", summary.interrupted)?;
        }
        let cool_seconds = t.elapsed().as_secs_f64();
        rows.push(judge.stage(
            &cool,
            Stage::CoolOff,
            "+ SFT cool-off",
            AnswerOrder::RatingFirst,
            cool_seconds,
        )?);
    }

    let table = stage_table(&rows);
    let summary = PipelineSummary {
        rows,
        seconds: started.elapsed().as_secs_f64(),
        table,
    };
    let table_path = table_path(config);
    write(&table_path, &summary.table)?;
    let json = serde_json::to_string_pretty(&summary)
        .map_err(|e| stage_err("report")(StageError::Report(e)))?;
    write(&table_path.with_extension("json"), &json)?;
    Ok(summary)
}

/// Where [`run_pipeline`] writes the stage table: `pipeline.md` in the run
/// directory of `config`, `pipeline-<branch>.md` with `pipeline.branch`
/// (the same name with `.json` holds the [`PipelineSummary`]).
pub fn table_path(config: &Config) -> PathBuf {
    config.run.dir().join(match &config.pipeline.branch {
        Some(branch) => format!("pipeline-{branch}.md"),
        None => "pipeline.md".into(),
    })
}

/// The run name of one stage of pipeline `name`: `<name>-<stage>`, and for
/// the stages after the cold start `<name>-<stage>-<branch>` with
/// `pipeline.branch`, so that branches share what comes before GRPO.
fn stage_name(name: &str, stage: &str, branch: Option<&str>) -> String {
    match branch {
        Some(branch) if matches!(stage, "grpo" | "cooloff") => format!("{name}-{stage}-{branch}"),
        _ => format!("{name}-{stage}"),
    }
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
    let saved = crate::config::load(&dir.join("config.toml"), &[]).map_err(|source| {
        PipelineError::StageConfig {
            dir: dir.clone(),
            source,
        }
    })?;
    let differences: Vec<String> = cfg
        .changes_from(&saved, stage.ignored_sections())
        .iter()
        .map(ToString::to_string)
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

/// Where and how every stage's model is judged.
struct Judge<'a> {
    /// The validation manifest, with `pipeline.validation`.
    validation: Option<&'a Path>,
    device: &'a Device,
    interrupt: &'a AtomicBool,
}

impl Judge<'_> {
    /// Evaluates a stage's exported model (`<run dir>/final`) on the test
    /// split of `data.manifest` and, with a validation set, on its test
    /// split too.
    fn stage(
        &self,
        stage_cfg: &Config,
        stage: Stage,
        label: &str,
        order: AnswerOrder,
        train_seconds: f64,
    ) -> Result<StageRow, PipelineError> {
        let model = stage_cfg.run.dir().join(FINAL);
        let dir = stage_cfg.run.dir().join(EVAL_DIR);
        let mut cfg = stage_cfg.clone();
        cfg.model.path = Some(model.clone());
        cfg.model.tokenizer = None;
        cfg.eval.order = order;
        let t = Instant::now();
        let report = self.cached(&cfg, stage, &dir, label)?;
        let validation = match self.validation {
            Some(manifest) => {
                let mut cfg = cfg.clone();
                cfg.data.manifest = manifest.to_path_buf();
                let dir = stage_cfg.run.dir().join(VALIDATION_EVAL_DIR);
                Some(self.cached(&cfg, stage, &dir, &format!("{label} (validation set)"))?)
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

    /// Runs `vgrpo eval` with `cfg` into `dir`. The result is cached there
    /// with the config that produced it (`config.toml`) and reused only for
    /// a config equal in every setting the evaluated stage's model or the
    /// evaluation depends on (the stage's [`Stage::ignored_sections`] but
    /// `[eval]`): so pipelines that differ only in GRPO settings
    /// (`pipeline.branch`) judge their shared cold start once.
    fn cached(
        &self,
        cfg: &Config,
        stage: Stage,
        dir: &Path,
        label: &str,
    ) -> Result<EvalReport, PipelineError> {
        let ignored: Vec<&str> = (stage.ignored_sections().iter().copied())
            .filter(|&section| section != "eval")
            .collect();
        let same_config = crate::config::load(&dir.join("config.toml"), &[])
            .is_ok_and(|saved| cfg.changes_from(&saved, &ignored).is_empty());
        let cached = std::fs::read_to_string(dir.join("report.json"))
            .ok()
            .and_then(|text| serde_json::from_str::<EvalReport>(&text).ok());
        if let Some(report) = cached.filter(|_| same_config) {
            return Ok(report);
        }
        log::info!("pipeline: evaluating {label}");
        let out = run_eval(cfg, self.device, self.interrupt).map_err(stage_err("eval"))?;
        out.write(dir).map_err(stage_err("eval"))?;
        // Written last: a config.toml beside a report means the report is
        // complete.
        cfg.write_resolved(dir).map_err(stage_err("eval"))?;
        Ok(out.report)
    }
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
        crate::config::from_str(Path::new("stage.toml"), &text, &[]).unwrap()
    }

    /// What a finished stage leaves behind: its config and a final model.
    fn finish(cfg: &Config) {
        let dir = cfg.run.dir();
        cfg.write_resolved(&dir).unwrap();
        std::fs::create_dir_all(dir.join(FINAL)).unwrap();
        std::fs::write(dir.join(FINAL).join("config.json"), "{}").unwrap();
    }

    #[test]
    fn a_branch_renames_only_the_stages_after_the_cold_start() {
        let names =
            |branch| ["pretrain", "cold", "grpo", "cooloff"].map(|s| stage_name("demo", s, branch));
        assert_eq!(
            names(None),
            ["demo-pretrain", "demo-cold", "demo-grpo", "demo-cooloff"]
        );
        assert_eq!(
            names(Some("gaussian")),
            [
                "demo-pretrain",
                "demo-cold",
                "demo-grpo-gaussian",
                "demo-cooloff-gaussian"
            ]
        );
    }

    #[test]
    fn a_branch_must_fit_in_a_directory_name() {
        let load = |branch: &str| {
            let text = format!("[pipeline]\nbranch = \"{branch}\"\n");
            crate::config::from_str(Path::new("p.toml"), &text, &[])
        };
        assert!(load("gaussian_2").is_ok());
        for bad in ["", "a/b", "x.y", "two words"] {
            let err = load(bad).unwrap_err().to_string();
            assert!(err.contains("pipeline.branch"), "{bad:?}: {err}");
        }
    }

    #[test]
    fn the_validation_set_must_be_one_no_stage_trains_on() {
        let cfg = |extra: &str| {
            let text = format!(
                "[data]\nmanifest = \"a/manifest.jsonl\"\n[grpo]\nmanifest = \"b/manifest.jsonl\"\n\
                 [pretrain]\nmanifest = \"c/manifest.jsonl\"\n{extra}"
            );
            crate::config::from_str(Path::new("p.toml"), &text, &[]).unwrap()
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

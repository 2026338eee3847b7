//! Learning benchmark: does the recipe teach? (issue 6)
//!
//! Runs the whole pipeline (synth → [perception pre-training, with
//! `pipeline.pretrain`] → SFT cold start → GRPO → SFT cool-off, each
//! evaluated on the held-out test split) once per seed and prints, per
//! seed, the mean instance-level SRCC over the three dimensions after each
//! stage. The claims checked:
//!
//! 1. GRPO beats the cold start on every seed (mean SRCC after GRPO >
//!    mean SRCC after cold start);
//! 2. the cool-off does not fall back beyond seed noise: its mean over
//!    seeds is at least the GRPO mean minus two standard errors of the
//!    seed-to-seed spread of the GRPO values.
//!
//! The seed is `run.seed` (model initialisation, pre-training and data order,
//! sampling); the synthetic data sets are the config's (`pipeline.synth`,
//! `pretrain.synth`), the same for every seed, so the test split is fixed. Finished stages are reused (each seed's
//! run directories are kept under `runs/`), so an interrupted benchmark
//! continues where it stopped.
//!
//! With `pipeline.validation` each seed also prints the three stages' mean
//! SRCC on the validation set (the claims are judged on the test split
//! only).
//!
//! Beside each seed's GRPO − cold start difference the benchmark prints its
//! paired-bootstrap standard deviation over the test videos
//! ([`paired_srcc_difference`]): how large a difference the test split can
//! resolve at all.
//!
//! Run: `cargo bench --bench learning` (add
//! `-- --config configs/quickstart.toml --seeds 0,1,2`). About 3 × the
//! pipeline's wall time. Exits non-zero when a claim fails.

use anyhow::{Context, Result, bail};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use vgrpo::config;
use vgrpo::data::Dimension;
use vgrpo::eval::{PairedScores, Prediction, paired_srcc_difference};
use vgrpo::grpo::advantage::mean_and_sample_std;
use vgrpo::jsonl::read_rows;
use vgrpo::pipeline::{PipelineSummary, StageRow, run_pipeline};
use vgrpo::rng::Rng;

/// Bootstrap resamples of the test videos per seed.
const RESAMPLES: usize = 1000;

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

/// Mean SRCC over the dimensions of each stage row, in stage order.
fn stage_means(summary: &PipelineSummary) -> Vec<f64> {
    summary.rows.iter().map(StageRow::mean_srcc).collect()
}

/// Each dimension's test predictions of two stages, paired by row id (a
/// row only one stage scored is left out).
fn paired_scores(first: &StageRow, second: &StageRow) -> Result<Vec<PairedScores>> {
    let read = |row: &StageRow| -> Result<Vec<Prediction>> {
        let path = row.eval_dir.join("predictions.jsonl");
        read_rows(&path).with_context(|| format!("reading {}", path.display()))
    };
    let (a, b) = (read(first)?, read(second)?);
    let b_by_id: HashMap<&str, &Prediction> = b.iter().map(|p| (p.id.as_str(), p)).collect();
    let mut dims = Vec::new();
    for dimension in Dimension::ALL {
        let mut scores = PairedScores {
            truth: Vec::new(),
            first: Vec::new(),
            second: Vec::new(),
        };
        for p in a.iter().filter(|p| p.dimension == dimension) {
            if let Some(q) = b_by_id.get(p.id.as_str()) {
                scores.truth.push(f64::from(p.mos));
                scores.first.push(f64::from(p.score));
                scores.second.push(f64::from(q.score));
            }
        }
        if !scores.truth.is_empty() {
            dims.push(scores);
        }
    }
    Ok(dims)
}

fn main() -> Result<()> {
    vgrpo::process::init();
    let config_path =
        PathBuf::from(arg("--config").unwrap_or_else(|| "configs/quickstart.toml".into()));
    let seeds: Vec<u64> = arg("--seeds")
        .unwrap_or_else(|| "0,1,2".into())
        .split(',')
        .map(|s| s.trim().parse().context("--seeds takes numbers like 0,1,2"))
        .collect::<Result<_>>()?;
    if seeds.len() < 2 {
        bail!("--seeds needs at least two seeds to measure seed noise");
    }
    let device = vgrpo::device::test_device();
    let interrupt = AtomicBool::new(false);
    let base = config::load(&config_path, &[])?;

    let mut per_seed = Vec::new();
    for &seed in &seeds {
        let sets = [
            format!("run.seed={seed}"),
            format!("run.name={}-learning-s{seed}", base.run.name),
        ];
        let cfg = config::load(&config_path, &sets)?;
        eprintln!("seed {seed}: pipeline into {}", cfg.run.dir().display());
        let summary = run_pipeline(&cfg, &device, &interrupt)?;
        let means = stage_means(&summary);
        let gain = paired_srcc_difference(
            &paired_scores(&summary.rows[0], &summary.rows[1])?,
            RESAMPLES,
            &mut Rng::stream(seed, "learning-bootstrap"),
        )?;
        println!(
            "seed {seed}: mean SRCC  cold start {:+.3}  + GRPO {:+.3}  + cool-off {:+.3}  \
             (GRPO − cold start {:+.3} ± {:.3} test-split bootstrap sd; {:.1} min)",
            means[0],
            means[1],
            means[2],
            gain.observed,
            gain.sd,
            summary.seconds / 60.0
        );
        let validation: Option<Vec<f64>> = summary
            .rows
            .iter()
            .map(StageRow::validation_mean_srcc)
            .collect();
        if let Some(v) = validation {
            println!(
                "seed {seed}: validation set (pipeline.validation)  cold start {:+.3}  + GRPO {:+.3}  \
                 + cool-off {:+.3}",
                v[0], v[1], v[2]
            );
        }
        per_seed.push(means);
    }

    let column = |i: usize| per_seed.iter().map(|m| m[i]).collect::<Vec<f64>>();
    let (cold, grpo, cool) = (column(0), column(1), column(2));
    println!();
    for (label, xs) in [
        ("cold start", &cold),
        ("+ GRPO", &grpo),
        ("+ cool-off", &cool),
    ] {
        let (m, sd) = mean_and_sample_std(xs);
        println!(
            "{label:<11} mean SRCC {m:+.3} ± {sd:.3} (sd over {} seeds)",
            xs.len()
        );
    }
    let gains: Vec<f64> = grpo.iter().zip(&cold).map(|(g, c)| g - c).collect();
    let grpo_wins = gains.iter().filter(|&&g| g > 0.0).count();
    let (grpo_mean, grpo_sd) = mean_and_sample_std(&grpo);
    let (cool_mean, _) = mean_and_sample_std(&cool);
    let noise = 2.0 * grpo_sd / (grpo.len() as f64).sqrt();
    println!(
        "GRPO − cold start per seed: {}",
        gains
            .iter()
            .map(|g| format!("{g:+.3}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let (gain_mean, gain_sd) = mean_and_sample_std(&gains);
    println!(
        "GRPO − cold start over seeds: {gain_mean:+.3} ± {:.3} (standard error)",
        gain_sd / (gains.len() as f64).sqrt()
    );
    let claim1 = grpo_wins == gains.len();
    let claim2 = cool_mean >= grpo_mean - noise;
    println!(
        "claim 1, GRPO beats the cold start on every seed: {} ({grpo_wins}/{})",
        if claim1 { "yes" } else { "NO" },
        gains.len()
    );
    println!(
        "claim 2, cool-off within seed noise of GRPO or better: {} (cool-off {cool_mean:+.3} vs \
         GRPO {grpo_mean:+.3} − 2·SE {noise:.3})",
        if claim2 { "yes" } else { "NO" }
    );
    if !(claim1 && claim2) {
        bail!("the learning benchmark's claims do not hold");
    }
    Ok(())
}

//! Learning benchmark: which accuracy reward teaches the judge, chosen on the
//! validation set, and does the recipe teach with it? (issues 6 and 23)
//!
//! Every seed's pipeline (synth → perception pre-training, with
//! `pipeline.pretrain` → SFT cold start → GRPO → SFT cool-off) is judged
//! after each stage on the test split and on the validation set
//! (`pipeline.validation`, required with more than one form). The forms of
//! R_acc (`--rewards`, default `exact`, `distance`, `gaussian`) are branches
//! of one seed's pipeline (`pipeline.branch`): they share its pre-training
//! and cold start, and differ from GRPO on.
//!
//! The stages, in order:
//!
//! 1. **select**: every form on the selection seeds (`--select-seeds`, by
//!    default every seed), then, on the validation set only, by a rule fixed
//!    before any run: the form with the highest mean over those seeds of the
//!    validation mean SRCC after GRPO wins (the cold start is shared, so
//!    this is also the largest mean GRPO − cold start gain); a tie goes to
//!    the form listed first (`exact`, the paper's). The test split is not
//!    read;
//! 2. **run** the chosen form on the other seeds;
//! 3. **report** the chosen form per seed on the test split and on the
//!    validation set: the mean SRCC over the three dimensions after each
//!    stage, and GRPO − cold start with its paired-bootstrap standard
//!    deviation over the set's videos ([`paired_srcc_difference`]: how large
//!    a difference the set can resolve at all);
//! 4. **claims**, on each set: (1) GRPO beats the cold start on every seed;
//!    (2) the cool-off's mean over seeds is at least the GRPO mean minus two
//!    standard errors of the seed-to-seed spread of the GRPO values. The
//!    benchmark exits non-zero when one fails.
//!
//! The seed is `run.seed` (model initialisation, pre-training and data order,
//! sampling); the synthetic data sets are the config's, the same for every
//! seed, so the test split and the validation set are fixed. Finished stages
//! are reused from `runs/`, so an interrupted benchmark continues where it
//! stopped.
//!
//! Run: `cargo bench --bench learning` (add
//! `-- --config configs/quickstart.toml --seeds 0,1,2 --select-seeds 0
//! --rewards exact,distance,gaussian`). Per seed: one pre-training and cold
//! start, then one GRPO and cool-off per form it runs.

use anyhow::{Context, Result, bail};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use vgrpo::config;
use vgrpo::data::Dimension;
use vgrpo::eval::{PairedScores, Prediction, paired_srcc_difference};
use vgrpo::grpo::advantage::mean_and_sample_std;
use vgrpo::jsonl::read_rows;
use vgrpo::pipeline::{PipelineSummary, StageRow, run_pipeline};
use vgrpo::rng::Rng;

/// Bootstrap resamples of the videos per seed and set.
const RESAMPLES: usize = 1000;

/// The stages of one pipeline, in table order.
const STAGES: [&str; 3] = ["cold start", "+ GRPO", "+ cool-off"];

/// Validated command-line arguments.
struct Args {
    config: PathBuf,
    seeds: Vec<u64>,
    /// The seeds every form runs on, to choose among them (a subset of
    /// `seeds`).
    select_seeds: Vec<u64>,
    /// `grpo.accuracy_reward` values, in tie-breaking order.
    rewards: Vec<String>,
}

/// One of the two sets every stage is judged on.
#[derive(Clone, Copy)]
enum Set {
    Test,
    Validation,
}

impl Set {
    fn name(self) -> &'static str {
        match self {
            Set::Test => "test split",
            Set::Validation => "validation set",
        }
    }
}

/// One seed's pipeline with one reward form, reduced to what the tables
/// print.
struct Run {
    seed: u64,
    reward: String,
    minutes: f64,
    /// Per set, the mean SRCC after each of [`STAGES`].
    test: SetResult,
    validation: Option<SetResult>,
}

struct SetResult {
    means: [f64; 3],
    /// GRPO − cold start, observed and its paired-bootstrap sd.
    gain: f64,
    gain_sd: f64,
}

impl Run {
    fn on(&self, set: Set) -> &SetResult {
        match set {
            Set::Test => &self.test,
            Set::Validation => self
                .validation
                .as_ref()
                .expect("validation checked in reduce"),
        }
    }
}

fn parse_args() -> Result<Args> {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1).cloned())
    };
    let list = |name: &str, default: &str| -> Vec<String> {
        arg(name)
            .unwrap_or_else(|| default.into())
            .split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect()
    };
    let numbers = |name: &str, default: &str| -> Result<Vec<u64>> {
        list(name, default)
            .iter()
            .map(|s| {
                s.parse()
                    .with_context(|| format!("{name} takes numbers like 0,1,2"))
            })
            .collect()
    };
    let seeds = numbers("--seeds", "0,1,2")?;
    if seeds.len() < 2 {
        bail!("--seeds needs at least two seeds to measure seed noise");
    }
    let select_seeds = match arg("--select-seeds") {
        Some(_) => numbers("--select-seeds", "")?,
        None => seeds.clone(),
    };
    if select_seeds.is_empty() || select_seeds.iter().any(|s| !seeds.contains(s)) {
        bail!("--select-seeds takes one or more of the --seeds");
    }
    let rewards = list("--rewards", "exact,distance,gaussian");
    if rewards.is_empty() {
        bail!("--rewards needs at least one form of grpo.accuracy_reward");
    }
    Ok(Args {
        config: PathBuf::from(arg("--config").unwrap_or_else(|| "configs/quickstart.toml".into())),
        seeds,
        select_seeds,
        rewards,
    })
}

/// The pipeline of every seed × form given (stages 1 and 2).
fn run_grid(args: &Args, seeds: &[u64], rewards: &[String]) -> Result<Vec<Run>> {
    let base = config::load(&args.config, &[])?;
    let device = vgrpo::device::test_device();
    let interrupt = AtomicBool::new(false);
    let mut runs = Vec::new();
    for &seed in seeds {
        for reward in rewards {
            let sets = [
                format!("run.seed={seed}"),
                format!("run.name={}-learning-s{seed}", base.run.name),
                format!("grpo.accuracy_reward={reward}"),
                format!("pipeline.branch={reward}"),
            ];
            let cfg = config::load(&args.config, &sets)?;
            eprintln!(
                "seed {seed}, {reward}: pipeline into {}",
                cfg.run.dir().display()
            );
            let summary = run_pipeline(&cfg, &device, &interrupt)?;
            let run = reduce(seed, reward, &summary, args.rewards.len() > 1)?;
            eprintln!(
                "seed {seed}, {reward}: test {}, validation {} ({:.1} min)",
                means_text(&run.test.means),
                run.validation
                    .as_ref()
                    .map_or("-".into(), |v| means_text(&v.means)),
                run.minutes
            );
            runs.push(run);
        }
    }
    Ok(runs)
}

fn means_text(means: &[f64; 3]) -> String {
    format!("{:.3} → {:.3} → {:.3}", means[0], means[1], means[2])
}

/// One pipeline's summary reduced to a [`Run`].
fn reduce(
    seed: u64,
    reward: &str,
    summary: &PipelineSummary,
    need_validation: bool,
) -> Result<Run> {
    let [cold, grpo, cool] = summary.rows.as_slice() else {
        bail!(
            "seed {seed}, {reward}: the pipeline judged {} stages, not 3 (no cool-off: GRPO wrote \
             no correct rollout)",
            summary.rows.len()
        );
    };
    let rng = |set: &str| Rng::stream(seed, &format!("learning-bootstrap-{reward}-{set}"));
    let test = set_result(
        [cold, grpo, cool].map(StageRow::mean_srcc),
        (&cold.eval_dir, &grpo.eval_dir),
        rng("test"),
    )?;
    let validation = match (cold.validation_dir(), grpo.validation_dir()) {
        (Some(cold_dir), Some(grpo_dir)) => {
            let means = [cold, grpo, cool].map(|r| r.validation_mean_srcc().unwrap_or(0.0));
            Some(set_result(
                means,
                (&cold_dir, &grpo_dir),
                rng("validation"),
            )?)
        }
        _ if need_validation => {
            bail!(
                "choosing among several rewards needs a validation set: set [pipeline.validation]"
            )
        }
        _ => None,
    };
    Ok(Run {
        seed,
        reward: reward.to_string(),
        minutes: summary.seconds / 60.0,
        test,
        validation,
    })
}

fn set_result(means: [f64; 3], dirs: (&Path, &Path), mut rng: Rng) -> Result<SetResult> {
    let gain = paired_srcc_difference(&paired_scores(dirs.0, dirs.1)?, RESAMPLES, &mut rng)?;
    Ok(SetResult {
        means,
        gain: gain.observed,
        gain_sd: gain.sd,
    })
}

/// Each dimension's predictions of two evaluations, paired by row id (a row
/// only one of them scored is left out).
fn paired_scores(first: &Path, second: &Path) -> Result<Vec<PairedScores>> {
    let read = |dir: &Path| -> Result<Vec<Prediction>> {
        let path = dir.join("predictions.jsonl");
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

/// Stage 1's choice: the form chosen on the validation set (the only one,
/// without one), after printing the selection table.
fn select<'a>(args: &'a Args, runs: &[Run]) -> &'a str {
    if args.rewards.len() == 1 {
        return &args.rewards[0];
    }
    println!("Selection on the validation set: mean SRCC after GRPO (GRPO − cold start)\n");
    let seeds: Vec<String> = (args.select_seeds.iter())
        .map(|s| format!("seed {s}"))
        .collect();
    println!("| reward | {} | mean |", seeds.join(" | "));
    println!("|---|{}---|", "---|".repeat(seeds.len()));
    let mut best: Option<(&str, f64)> = None;
    for reward in &args.rewards {
        let vals: Vec<&SetResult> = runs
            .iter()
            .filter(|r| &r.reward == reward)
            .map(|r| r.on(Set::Validation))
            .collect();
        let grpo: Vec<f64> = vals.iter().map(|v| v.means[1]).collect();
        let (mean, _) = mean_and_sample_std(&grpo);
        let cells: Vec<String> = vals
            .iter()
            .map(|v| format!("{:.3} ({:+.3})", v.means[1], v.gain))
            .collect();
        println!("| {reward} | {} | {mean:.3} |", cells.join(" | "));
        // Strictly greater: a tie keeps the form listed first.
        if best.is_none_or(|(_, b)| mean > b) {
            best = Some((reward, mean));
        }
    }
    let (chosen, mean) = best.expect("at least one reward");
    println!("\nchosen: {chosen} (validation mean SRCC after GRPO {mean:.3})\n");
    chosen
}

/// Stages 3 and 4 for one set: the chosen form's table and its claims;
/// whether both hold.
fn report(set: Set, runs: &[&Run]) -> bool {
    println!("{}: mean SRCC over the three dimensions\n", set.name());
    println!(
        "| seed | {} | GRPO − cold start (bootstrap sd) |",
        STAGES.join(" | ")
    );
    println!("|---|---|---|---|---|");
    for run in runs {
        let r = run.on(set);
        println!(
            "| {} | {:.3} | {:.3} | {:.3} | {:+.3} ± {:.3} |",
            run.seed, r.means[0], r.means[1], r.means[2], r.gain, r.gain_sd
        );
    }
    let column = |i: usize| {
        runs.iter()
            .map(|r| r.on(set).means[i])
            .collect::<Vec<f64>>()
    };
    let stats: Vec<(f64, f64)> = (0..3).map(|i| mean_and_sample_std(&column(i))).collect();
    let cells: Vec<String> = stats
        .iter()
        .map(|(m, sd)| format!("{m:.3} ± {sd:.3}"))
        .collect();
    println!("| mean ± sd | {} | |\n", cells.join(" | "));

    let gains: Vec<f64> = runs.iter().map(|r| r.on(set).gain).collect();
    let wins = gains.iter().filter(|&&g| g > 0.0).count();
    let (gain_mean, gain_sd) = mean_and_sample_std(&gains);
    let n = runs.len() as f64;
    println!(
        "GRPO − cold start over seeds: {gain_mean:+.3} ± {:.3} (standard error)",
        gain_sd / n.sqrt()
    );
    let ((grpo_mean, grpo_sd), (cool_mean, _)) = (stats[1], stats[2]);
    let noise = 2.0 * grpo_sd / n.sqrt();
    let claim1 = wins == runs.len();
    let claim2 = cool_mean >= grpo_mean - noise;
    let verdict = |ok: bool| if ok { "yes" } else { "NO" };
    println!(
        "claim 1, GRPO beats the cold start on every seed: {} ({wins}/{})",
        verdict(claim1),
        runs.len()
    );
    println!(
        "claim 2, cool-off within 2·SE of GRPO or better: {} (cool-off {cool_mean:.3} vs GRPO \
         {grpo_mean:.3} − {noise:.3})\n",
        verdict(claim2)
    );
    claim1 && claim2
}

fn main() -> Result<()> {
    vgrpo::process::init();
    let args = parse_args()?;
    let mut runs = run_grid(&args, &args.select_seeds, &args.rewards)?;
    let chosen = select(&args, &runs).to_string();
    let others: Vec<u64> = (args.seeds.iter().copied())
        .filter(|s| !args.select_seeds.contains(s))
        .collect();
    runs.extend(run_grid(&args, &others, std::slice::from_ref(&chosen))?);
    let mut chosen_runs: Vec<&Run> = runs.iter().filter(|r| r.reward == chosen).collect();
    chosen_runs.sort_by_key(|r| args.seeds.iter().position(|&s| s == r.seed));
    let minutes: f64 = runs.iter().map(|r| r.minutes).sum();
    println!("reward {chosen}; {minutes:.1} min of pipelines in all\n");
    let mut hold = report(Set::Test, &chosen_runs);
    if chosen_runs.iter().all(|r| r.validation.is_some()) {
        hold &= report(Set::Validation, &chosen_runs);
    }
    if !hold {
        bail!("the learning benchmark's claims do not hold");
    }
    Ok(())
}

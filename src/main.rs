//! The `vgrpo` command line. Library errors are typed; here they become an
//! `anyhow` chain printed once on one line, and an exit code: 0 success,
//! 1 the job failed, 2 the command line or the config is wrong, 130 stopped
//! by Ctrl-C (a trainer then wrote a checkpoint and printed how to resume).

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use vgrpo::checkpoint::Resume;
use vgrpo::config::{self, ConfigError};
use vgrpo::data::Dimension;
use vgrpo::data::synth::{self, SynthConfig};
use vgrpo::device::DeviceSpec;
use vgrpo::eval::EvalError;
use vgrpo::pipeline::PipelineError;
use vgrpo::run::{INTERRUPTED_EXIT, Interrupt};
use vgrpo::video::{VideoConfig, inspect_video};

#[derive(Parser)]
#[command(
    name = "vgrpo",
    version,
    about = "Train a video-language model to judge AI-generated video (Q-Save: SFT → GRPO → SFT)"
)]
struct Cli {
    /// Print debug-level log lines.
    #[arg(long, global = true)]
    verbose: bool,
    #[command(subcommand)]
    command: Command,
}

/// Options shared by every command that reads a run config.
#[derive(clap::Args)]
struct ConfigArgs {
    /// The run config (TOML).
    #[arg(long, short)]
    config: PathBuf,
    /// Override any key: `--set grpo.group_size=8` (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    sets: Vec<String>,
    /// The device to run on (`cpu`, `tch-cpu`, `tch-cuda:N`, `cuda:N`);
    /// the same as `--set run.device=…`.
    #[arg(long)]
    device: Option<DeviceSpec>,
}

impl ConfigArgs {
    fn load(&self) -> Result<config::Config, ConfigError> {
        let mut sets = self.sets.clone();
        if let Some(device) = self.device {
            sets.push(format!("run.device={device}"));
        }
        config::load(&self.config, &sets)
    }

    /// The command line that reruns `command` on this config, with `extra`
    /// flags after it (what an interrupted run prints).
    fn command_line(&self, command: &str, extra: &str) -> String {
        let quote = |s: &str| {
            if s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_./=:,".contains(c))
            {
                s.to_string()
            } else {
                format!("'{}'", s.replace('\'', "'\\''"))
            }
        };
        let mut line = format!(
            "vgrpo {command} --config {}",
            quote(&self.config.to_string_lossy())
        );
        for set in &self.sets {
            line.push_str(&format!(" --set {}", quote(set)));
        }
        if !extra.is_empty() {
            line.push(' ');
            line.push_str(extra);
        }
        line
    }
}

/// What an interrupted trainer prints: where it stopped, and how to go on.
fn interrupted(steps: u64, resume_with: &str) -> ExitCode {
    println!(
        "interrupted after step {steps}; a checkpoint is written. Continue with:\n  {resume_with}"
    );
    ExitCode::from(INTERRUPTED_EXIT)
}

#[derive(Subcommand)]
enum Command {
    /// Write the synthetic video-evaluation data set: videos/*.mp4 and manifest.jsonl.
    Synth(SynthArgs),
    /// Validate a config and print it with every default filled in.
    Config(ConfigArgs),
    /// The whole recipe: synth (if missing) → [pretrain] → SFT cold start →
    /// eval → GRPO → eval → SFT cool-off → eval, then the stage table.
    Pipeline(ConfigArgs),
    /// Run GRPO (writes runs/<name>/ and rollouts/<name>/cooloff.jsonl).
    Train {
        #[command(flatten)]
        config: ConfigArgs,
        /// `auto` continues from checkpoints/latest if there is one; a
        /// path continues from that checkpoint directory.
        #[arg(long, value_name = "auto|PATH")]
        resume: Option<Resume>,
    },
    /// Sample a group of judgements of one video from the configured model
    /// and print them as JSON lines.
    Rollout {
        #[command(flatten)]
        config: ConfigArgs,
        /// The video file.
        #[arg(long)]
        video: PathBuf,
        /// visual, dynamic or alignment.
        #[arg(long)]
        dimension: String,
        /// The text the video was generated from (used by the prompt).
        #[arg(long, default_value = "")]
        prompt: String,
        /// Rollouts to sample (default: grpo.group_size).
        #[arg(long)]
        group: Option<usize>,
        /// Sampling seed (default: run.seed).
        #[arg(long)]
        seed: Option<u64>,
    },
    /// Show what the model sees of a video: each sampled frame's time,
    /// slow/fast kind, size and visual tokens.
    Frames {
        /// The video file.
        video: PathBuf,
        /// Also write a contact sheet PNG of the frames here.
        #[arg(long)]
        sheet: Option<PathBuf>,
        /// Print the report as JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Run a HF Qwen-VL checkpoint on the inputs of a transformers reference
    /// file and compare the logits (max|Δ| / max|reference|).
    CheckModel {
        /// Model directory (config.json + *.safetensors).
        dir: PathBuf,
        /// Safetensors file with the inputs and logits transformers produced.
        #[arg(long)]
        reference: PathBuf,
        /// A PEFT LoRA adapter directory to run on top of the model (not
        /// merged: the factored forward is what is checked).
        #[arg(long, value_name = "DIR")]
        adapter: Option<PathBuf>,
        /// Largest accepted relative error.
        #[arg(long, default_value_t = 1e-4)]
        tolerance: f64,
        /// The device to run on (`cpu`, `tch-cpu`, `tch-cuda:N`, `cuda:N`).
        #[arg(long, default_value = "cpu")]
        device: DeviceSpec,
    },
    /// Perception pre-training of the vision tower on a synthetic set of its
    /// own (`[pretrain]`); exports `<run dir>/final`.
    Pretrain {
        #[command(flatten)]
        args: ConfigArgs,
        /// `auto` (continue from checkpoints/latest if any), a checkpoint
        /// directory, or `no`.
        #[arg(long, default_value = "no")]
        resume: Resume,
    },
    /// Supervised fine-tuning (`[sft] mode = "cold-start" | "cool-off"`):
    /// CE on the answer + MSE on the softmax score; exports `<run dir>/final`.
    Sft {
        #[command(flatten)]
        args: ConfigArgs,
        /// `auto` (continue from checkpoints/latest if any), a checkpoint
        /// directory, or `no`.
        #[arg(long, default_value = "no")]
        resume: vgrpo::checkpoint::Resume,
    },
    /// Draw every metric of RUN_DIR/metrics.jsonl into RUN_DIR/metrics.png.
    Plot {
        /// A run directory (runs/<name>).
        run_dir: PathBuf,
    },
    /// Judge the test split with `[model]`: SRCC/PLCC/KRCC, pairwise
    /// accuracy, format rate; writes `<run dir>/eval/report.{json,md}` and
    /// `predictions.jsonl`.
    Eval(ConfigArgs),
    /// Judge one video on one dimension; prints the judgement as JSON.
    Score {
        /// Model directory (HF layout or a checkpoint); absent: the tiny model.
        #[arg(long)]
        model: Option<PathBuf>,
        /// A PEFT LoRA adapter directory (`adapter_config.json` +
        /// `adapter_model.safetensors`), merged into the model at load.
        #[arg(long, value_name = "DIR")]
        adapter: Option<PathBuf>,
        /// The video file.
        video: PathBuf,
        /// visual, dynamic or alignment.
        #[arg(long)]
        dimension: String,
        /// The text prompt the video was generated from.
        #[arg(long, default_value = "")]
        prompt: String,
        /// Answer layout the model was trained for.
        #[arg(long, default_value = "think-first")]
        order: String,
        /// Longest answer.
        #[arg(long, default_value_t = 256)]
        max_new_tokens: usize,
        /// The device to run on (`cpu`, `tch-cpu`, `tch-cuda:N`, `cuda:N`).
        #[arg(long, default_value = "cpu")]
        device: DeviceSpec,
    },
}

/// Unset options keep the defaults of `SynthConfig`.
#[derive(clap::Args)]
struct SynthArgs {
    /// Output directory (created; rerunning with the same options reuses it).
    #[arg(long)]
    out: PathBuf,
    /// Number of videos (three manifest rows each) [default: 120].
    #[arg(long)]
    videos: Option<usize>,
    /// Root seed [default: 0].
    #[arg(long)]
    seed: Option<u64>,
    /// Frame width in pixels, even [default: 96].
    #[arg(long)]
    width: Option<u32>,
    /// Frame height in pixels, even [default: 64].
    #[arg(long)]
    height: Option<u32>,
    /// Frames per second [default: 8].
    #[arg(long)]
    fps: Option<u32>,
    /// Clip length in seconds [default: 2].
    #[arg(long)]
    seconds: Option<f32>,
    /// Fraction of each generator's videos in the test split [default: 0.2].
    #[arg(long)]
    test_fraction: Option<f32>,
    /// Standard deviation of simulated rater noise, MOS points [default: 0.25].
    #[arg(long)]
    rater_noise: Option<f32>,
}

impl SynthArgs {
    fn config(&self) -> SynthConfig {
        let d = SynthConfig::default();
        SynthConfig {
            videos: self.videos.unwrap_or(d.videos),
            seed: self.seed.unwrap_or(d.seed),
            width: self.width.unwrap_or(d.width),
            height: self.height.unwrap_or(d.height),
            fps: self.fps.unwrap_or(d.fps),
            seconds: self.seconds.unwrap_or(d.seconds),
            test_fraction: self.test_fraction.unwrap_or(d.test_fraction),
            rater_noise: self.rater_noise.unwrap_or(d.rater_noise),
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    vgrpo::logging::init(if cli.verbose {
        log::LevelFilter::Debug
    } else {
        log::LevelFilter::Info
    });
    match run(cli.command) {
        Ok(code) => code,
        Err(err) => {
            // The whole chain once, outermost first: `error: a: b: c`.
            eprintln!("error: {err:#}");
            let usage = err
                .chain()
                .any(|c| c.downcast_ref::<ConfigError>().is_some());
            ExitCode::from(if usage { 2 } else { 1 })
        }
    }
}

fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Synth(args) => {
            let start = std::time::Instant::now();
            let summary = synth::generate(&args.out, &args.config())
                .with_context(|| format!("vgrpo synth --out {}", args.out.display()))?;
            print!("{summary}");
            println!(
                "wrote {} in {:.1} s",
                args.out.join("manifest.jsonl").display(),
                start.elapsed().as_secs_f64()
            );
        }
        Command::Pipeline(args) => {
            let cfg = args.load()?;
            let interrupt = Interrupt::ctrl_c()?;
            let summary = match vgrpo::pipeline::run_pipeline(
                &cfg,
                &cfg.run.device.device()?,
                interrupt.flag(),
            ) {
                Err(PipelineError::Interrupted { stage }) => {
                    println!(
                        "interrupted in the {stage} stage (its checkpoint is written). \
                             Continue with:\n  {}",
                        args.command_line("pipeline", "")
                    );
                    return Ok(ExitCode::from(INTERRUPTED_EXIT));
                }
                other => other?,
            };
            print!("{}", summary.table);
            println!(
                "pipeline finished in {:.1} min; table written to {}",
                summary.seconds / 60.0,
                cfg.run.dir().join("pipeline.md").display()
            );
        }
        Command::Config(args) => {
            let cfg = args.load()?;
            print!("{}", cfg.to_toml());
        }
        Command::Train { config, resume } => {
            let cfg = config.load()?;
            let interrupt = Interrupt::ctrl_c()?;
            let summary = vgrpo::grpo::trainer::train(
                &cfg,
                &resume.unwrap_or(Resume::No),
                &cfg.run.device.device()?,
                interrupt.flag(),
            )?;
            if summary.interrupted {
                let code = interrupted(
                    summary.steps,
                    &config.command_line("train", "--resume auto"),
                );
                println!("cool-off data so far: {}", summary.cooloff.display());
                return Ok(code);
            } else if let Some(dir) = &summary.final_dir {
                println!(
                    "trained {} steps; final model: {}",
                    summary.steps,
                    dir.display()
                );
            }
            println!("cool-off data: {}", summary.cooloff.display());
        }
        Command::Rollout {
            config,
            video,
            dimension,
            prompt,
            group,
            seed,
        } => {
            let cfg = config.load()?;
            let dimension = Dimension::from_id(&dimension).ok_or_else(|| {
                anyhow::anyhow!(
                    "--dimension must be visual, dynamic or alignment, got {dimension:?}"
                )
            })?;
            let device = cfg.run.device.device()?;
            let loaded = vgrpo::model_source::load_model(&cfg.model, cfg.run.seed, &device)?;
            let mut rollout = cfg.grpo.rollout();
            if let Some(g) = group {
                rollout.group_size = g.max(1);
            }
            let query = vgrpo::rollout::VideoQuery {
                path: &video,
                dimension,
                generation_prompt: &prompt,
            };
            let reports = vgrpo::rollout::judge_video(
                &loaded,
                query,
                &cfg.video,
                &rollout,
                seed.unwrap_or(cfg.run.seed),
                &device,
            )?;
            for r in reports {
                println!("{}", serde_json::to_string(&r)?);
            }
        }
        Command::Frames { video, sheet, json } => {
            let report = inspect_video(&video, &VideoConfig::default(), sheet.as_deref())?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                println!("{report}");
            }
            if let Some(sheet) = sheet {
                println!("contact sheet: {}", sheet.display());
            }
        }
        Command::CheckModel {
            dir,
            reference,
            adapter,
            tolerance,
            device,
        } => {
            let device = device.device()?;
            let report = match adapter {
                None => vgrpo::model::check_model(&dir, &reference, tolerance, &device)?,
                Some(adapter) => {
                    let base = vgrpo::model::QwenVl::from_hf_dir(&dir, &device)?;
                    let model = vgrpo::model::load_adapter(&adapter, base)?;
                    let data = vgrpo::model::check::Reference::read(&reference)?;
                    vgrpo::model::check::check_loaded(
                        &model, &data, &reference, tolerance, &device,
                    )?
                }
            };
            let grids: Vec<[usize; 3]> = report.grids.iter().map(|g| [g.t, g.h, g.w]).collect();
            println!(
                "logits rel error {:.3e} (max|Δ| {:.3e}, max|ref| {:.3e}, {} positions, vocab {}, grids {grids:?})",
                report.rel_error,
                report.max_abs_diff,
                report.max_abs_reference,
                report.positions,
                report.vocab,
            );
            if !report.passed() {
                bail!(
                    "rel error {:.3e} is above the tolerance {tolerance:e}",
                    report.rel_error
                );
            }
        }
        Command::Sft { args, resume } => {
            let cfg = args.load()?;
            let interrupt = Interrupt::ctrl_c()?;
            let summary =
                vgrpo::sft::run_sft(&cfg, &resume, &cfg.run.device.device()?, interrupt.flag())?;
            if summary.interrupted {
                return Ok(interrupted(
                    summary.steps,
                    &args.command_line("sft", "--resume auto"),
                ));
            }
            println!(
                "sft: {} updates on {} examples in {:.1} s; model exported to {}",
                summary.steps,
                summary.items,
                summary.seconds,
                summary.final_dir.display()
            );
        }
        Command::Pretrain { args, resume } => {
            let cfg = args.load()?;
            let interrupt = Interrupt::ctrl_c()?;
            let summary = vgrpo::pretrain::run_pretrain(
                &cfg,
                &resume,
                &cfg.run.device.device()?,
                interrupt.flag(),
            )?;
            if summary.interrupted {
                return Ok(interrupted(
                    summary.steps,
                    &args.command_line("pretrain", "--resume auto"),
                ));
            }
            let srcc = |s: Option<f64>| s.map_or("–".to_string(), |s| format!("{s:.3}"));
            println!(
                "pretrain: {} updates on {} clips in {:.1} s; held-out SRCC visual {}, dynamic {}; \
                 model exported to {}",
                summary.steps,
                summary.train_clips,
                summary.seconds,
                srcc(summary.held_out_srcc[0]),
                srcc(summary.held_out_srcc[1]),
                summary.final_dir.display()
            );
        }
        Command::Plot { run_dir } => {
            let path = vgrpo::plot::plot_run(&run_dir)?;
            println!("{}", path.display());
        }
        Command::Eval(args) => {
            let cfg = args.load()?;
            let interrupt = Interrupt::ctrl_c()?;
            let out = match vgrpo::eval::run_eval(&cfg, &cfg.run.device.device()?, interrupt.flag())
            {
                Err(e @ EvalError::Interrupted { .. }) => {
                    println!("eval {e}; rerun with:\n  {}", args.command_line("eval", ""));
                    return Ok(ExitCode::from(INTERRUPTED_EXIT));
                }
                other => other?,
            };
            let dir = cfg.run.dir().join("eval");
            out.write(&dir)?;
            print!("{}", out.report.to_markdown());
            println!("written to {}", dir.display());
        }
        Command::Score {
            model,
            adapter,
            video,
            dimension,
            prompt,
            order,
            max_new_tokens,
            device,
        } => {
            let Some(dimension) = vgrpo::data::Dimension::from_id(&dimension) else {
                bail!("--dimension must be visual, dynamic or alignment, got {dimension:?}");
            };
            let order: vgrpo::text::AnswerOrder =
                serde_json::from_value(serde_json::Value::String(order.clone())).map_err(|_| {
                    anyhow::anyhow!("--order must be think-first or rating-first, got {order:?}")
                })?;
            let request = vgrpo::eval::ScoreRequest {
                model: vgrpo::model_source::ModelConfig {
                    path: model,
                    tokenizer: None,
                    adapter,
                },
                video,
                dimension,
                generation_prompt: prompt,
                order,
                max_new_tokens,
                video_config: VideoConfig::default(),
                scale: vgrpo::data::MosScale::default(),
                seed: 0,
            };
            let judgement = vgrpo::eval::score_video(&request, &device.device()?)?;
            println!("{}", serde_json::to_string_pretty(&judgement)?);
        }
    }
    Ok(ExitCode::SUCCESS)
}

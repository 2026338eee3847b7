//! The `vgrpo` command line. Library errors are typed; here they become an
//! `anyhow` chain printed once, and an exit code: 0 success, 1 the job
//! failed, 2 the command line or the config is wrong.

use anyhow::bail;
use burn::tensor::Device;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use vgrpo::config::{self, ConfigError};
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
}

impl ConfigArgs {
    fn load(&self) -> Result<config::Config, ConfigError> {
        config::load(&self.config, &self.sets)
    }
}

#[derive(Subcommand)]
enum Command {
    /// Validate a config and print it with every default filled in.
    Config(ConfigArgs),
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
        /// Largest accepted relative error.
        #[arg(long, default_value_t = 1e-4)]
        tolerance: f64,
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
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    vgrpo::logging::init(if cli.verbose {
        log::LevelFilter::Debug
    } else {
        log::LevelFilter::Info
    });
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            for cause in err.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            let usage = err
                .chain()
                .any(|c| c.downcast_ref::<ConfigError>().is_some());
            ExitCode::from(if usage { 2 } else { 1 })
        }
    }
}

fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Config(args) => {
            let cfg = args.load()?;
            print!("{}", cfg.to_toml());
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
            tolerance,
        } => {
            let report =
                vgrpo::model::check_model(&dir, &reference, tolerance, &Device::default())?;
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
            let summary = vgrpo::sft::run_sft(&cfg, &resume, &Device::default())?;
            println!(
                "sft: {} updates on {} examples in {:.1} s; model exported to {}",
                summary.steps,
                summary.items,
                summary.seconds,
                summary.final_dir.display()
            );
        }
        Command::Plot { run_dir } => {
            let path = vgrpo::plot::plot_run(&run_dir)?;
            println!("{}", path.display());
        }
        Command::Eval(args) => {
            let cfg = args.load()?;
            let out = vgrpo::eval::run_eval(&cfg, &Device::default())?;
            let dir = cfg.run.dir().join("eval");
            out.write(&dir)?;
            print!("{}", out.report.to_markdown());
            println!("written to {}", dir.display());
        }
        Command::Score {
            model,
            video,
            dimension,
            prompt,
            order,
            max_new_tokens,
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
            let judgement = vgrpo::eval::score_video(&request, &Device::default())?;
            println!("{}", serde_json::to_string_pretty(&judgement)?);
        }
    }
    Ok(())
}

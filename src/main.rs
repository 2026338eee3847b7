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
use vgrpo::plan::{ByteSize, Mode, Plan, PlanInput, PlanOptions, Stage, WeightDtype};
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
    /// The device memory the config's run needs, full fine-tuning and LoRA
    /// side by side, from the model's config.json alone (no weights), and
    /// what to change when it does not fit `--gpu-memory`.
    Plan(PlanArgs),
    /// Draw the metrics of RUN_DIR/metrics.jsonl into RUN_DIR/metrics.png:
    /// a panel per varying series (raw points, smoothed curve); constant
    /// series are listed (in the image and here), not drawn.
    Plot {
        /// A run directory (runs/<name>).
        run_dir: PathBuf,
        /// TensorBoard's smoothing weight w, 0 ≤ w < 1 (0: none): the curve
        /// is the debiased exponential moving average of the raw points.
        // Negative numbers are taken as the value, so that `-0.5` meets
        // the range rule rather than clap's unknown-flag error.
        #[arg(
            long,
            default_value_t = vgrpo::plot::Smoothing::default(),
            value_name = "W",
            allow_negative_numbers = true
        )]
        smoothing: vgrpo::plot::Smoothing,
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

#[derive(clap::Args)]
struct PlanArgs {
    #[command(flatten)]
    config: ConfigArgs,
    /// Memory of one device (`80GiB`, `141GiB`, `80GB`); without it the
    /// plan only gives totals.
    #[arg(long, value_name = "SIZE")]
    gpu_memory: Option<ByteSize>,
    /// The trainer to plan: `grpo` (vgrpo train) or `sft`.
    #[arg(long, default_value = "grpo")]
    stage: Stage,
    /// The dtype frozen weights are held in (the LoRA base, the full
    /// fine-tuning reference): `checkpoint` (config.json's), `bf16`,
    /// `f16` or `f32` (what the CPU backend runs).
    #[arg(long, default_value = "checkpoint", value_name = "DTYPE")]
    frozen_dtype: String,
    /// The source videos' size, `WIDTHxHEIGHT`: with `[video]`'s frame
    /// count and token budget it sets the visual tokens.
    #[arg(long, default_value = "1280x720", value_name = "WxH")]
    video_size: String,
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
    vgrpo::process::init();
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
                vgrpo::pipeline::table_path(&cfg).display()
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
        Command::Plan(args) => plan(&args)?,
        Command::Plot { run_dir, smoothing } => {
            let summary = vgrpo::plot::plot_run(&run_dir, smoothing)?;
            println!("{}", summary.path.display());
            if !summary.constant.is_empty() {
                println!("constant over the run (listed, not drawn):");
                for line in &summary.constant {
                    println!("  {line}");
                }
            }
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
                    adapter,
                    ..Default::default()
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

/// `vgrpo plan`: reads the config and the model's config.json, prints the
/// two plans side by side and, for each that does not fit the device,
/// what to change.
fn plan(args: &PlanArgs) -> anyhow::Result<()> {
    let cfg = args.config.load()?;
    let shapes = vgrpo::plan::model_shapes(&cfg.model)?;
    let checkpoint = shapes.checkpoint_dtype()?;
    let frozen_dtype = match args.frozen_dtype.as_str() {
        "checkpoint" => None,
        name => Some(WeightDtype::parse(name).ok_or_else(|| {
            anyhow::anyhow!("--frozen-dtype must be checkpoint, bf16, f16 or f32, got {name:?}")
        })?),
    };
    let video_size = args
        .video_size
        .split_once(['x', 'X'])
        .and_then(|(w, h)| Some([w.parse().ok()?, h.parse().ok()?]))
        .filter(|[w, h]: &[u32; 2]| *w > 0 && *h > 0)
        .ok_or_else(|| {
            anyhow::anyhow!(
                "--video-size must be WIDTHxHEIGHT, got {:?}",
                args.video_size
            )
        })?;
    let options = PlanOptions {
        stage: args.stage,
        frozen_dtype,
        video_size,
    };
    let input = PlanInput::new(&cfg, &shapes.config, checkpoint, &options)
        .context("the prompt's visual tokens")?;
    let plans = [
        vgrpo::plan::estimate(&input, Mode::Full),
        vgrpo::plan::estimate(&input, Mode::Lora),
    ];
    let model_file = shapes
        .path
        .as_ref()
        .map_or("the embedded tiny model".to_string(), |p| {
            p.display().to_string()
        });
    print!("{}", plan_header(args, &input, &plans[0], &model_file));
    print!("{}", plan_table(&input, &plans, args.gpu_memory));
    if let Some(device) = args.gpu_memory {
        for plan in plans.iter().filter(|p| !p.fits(device.0)) {
            print!("{}", plan_changes(&input, plan, device));
        }
    }
    Ok(())
}

/// `8.77 B`, `43.6 M`, `1.31 M`, `950 k`.
fn count(n: u64) -> String {
    let n = n as f64;
    if n >= 1e9 {
        format!("{:.2} B", n / 1e9)
    } else if n >= 1e6 {
        format!("{:.1} M", n / 1e6)
    } else if n >= 1e3 {
        format!("{:.0} k", n / 1e3)
    } else {
        format!("{n}")
    }
}

/// `1 row`, `8 rows`.
fn plural(n: u64, noun: &str) -> String {
    format!("{n} {noun}{}", if n == 1 { "" } else { "s" })
}

fn mode_name(mode: Mode) -> &'static str {
    match mode {
        Mode::Full => "full fine-tuning",
        Mode::Lora => "LoRA",
    }
}

fn plan_header(args: &PlanArgs, input: &PlanInput, plan: &Plan, model_file: &str) -> String {
    let m = &input.model;
    let p = &input.prompt;
    let arch = match m.arch {
        vgrpo::model::Arch::Qwen25Vl => "Qwen2.5-VL",
        vgrpo::model::Arch::Qwen3Vl => "Qwen3-VL",
    };
    let [cols, rows] = p.cells;
    let [w, h] = input.video_size;
    let mut out = format!(
        "memory plan of {} ({}), per device\n",
        args.config.config.display(),
        match input.stage {
            Stage::Grpo => "GRPO, vgrpo train",
            Stage::Sft => "SFT, vgrpo sft",
        }
    );
    out += &format!(
        "  model   {model_file}: {arch}, {} parameters (text {}, vision {}), checkpoint {}\n",
        count(plan.params.total()),
        count(plan.params.text),
        count(plan.params.vision),
        input.checkpoint_dtype.name()
    );
    out += &format!(
        "  prompt  {} tokens: {} visual ({} frames of {w}x{h} → {} groups of {cols}×{rows} tokens, \
         {} patches) + {} text\n",
        p.tokens(),
        p.visual_tokens,
        p.frames,
        p.groups,
        p.patches,
        p.text_tokens
    );
    let (prompt_rows, _) = input.update_prompts();
    out += &match input.stage {
        Stage::Grpo => format!(
            "  step    {} prompts × G {} = {} rollouts of ≤ {} tokens; {} rows per update \
             ({})\n",
            input.prompts_per_step,
            input.group_size,
            input.prompts_per_step * input.group_size,
            input.max_new_tokens,
            input.update_rows,
            plural(prompt_rows as u64, "prompt row")
        ),
        Stage::Sft => format!(
            "  step    {} examples per micro-batch of ≤ {} answer tokens (grpo.max_new_tokens), \
             grad_accum {}\n",
            input.update_rows, input.max_new_tokens, input.grad_accum
        ),
    };
    out += "\n";
    out
}

/// The two plans side by side: a label column and one column per plan.
fn plan_table(input: &PlanInput, plans: &[Plan; 2], device: Option<ByteSize>) -> String {
    use vgrpo::plan::bytes::show;
    let [full, lora] = plans;
    let mut rows: Vec<[String; 3]> = Vec::new();
    let mut row = |label: &str, f: String, l: String| rows.push([label.to_string(), f, l]);
    let both = |f: &dyn Fn(&Plan) -> String| (f(full), f(lora));
    let dash = || "–".to_string();
    let lora_label = {
        let l = &input.lora;
        format!(
            "LoRA r {}{}",
            l.rank,
            if input.lora_from_config {
                ""
            } else {
                " (default)"
            }
        )
    };
    let run = |p: &Plan| {
        if p.mode == input.run_mode() {
            " (the run)"
        } else {
            ""
        }
    };
    row(
        "",
        format!("{}{}", mode_name(Mode::Full), run(full)),
        format!("{lora_label}{}", run(lora)),
    );
    let (f, l) = both(&|p| count(p.trainable));
    row("parameters trained", f, l);
    let (f, l) = both(&|p| show(p.persistent.total()));
    row("persistent", f, l);
    let (f, l) = both(&|p| {
        format!(
            "{} {}",
            show(p.persistent.weights),
            p.persistent.weights_dtype.name()
        )
    });
    row("  weights", f, l);
    row(
        "  LoRA masters (f32)",
        dash(),
        show(lora.persistent.masters),
    );
    let (f, l) = both(&|p| show(p.persistent.adam));
    row("  AdamW moments (2 × f32)", f, l);
    if input.stage == Stage::Grpo {
        let reference = |p: &Plan| {
            if p.persistent.reference == 0 {
                "0 (adapters off)".to_string()
            } else {
                format!(
                    "{} {}",
                    show(p.persistent.reference),
                    p.persistent.reference_dtype.name()
                )
            }
        };
        let label = if input.kl_coef == 0.0 {
            "  reference model (kept at kl_coef 0)"
        } else {
            "  reference model"
        };
        row(label, reference(full), reference(lora));
    }
    let (f, l) = both(&|p| show(p.persistent.pixels));
    row("  pixel patches of the step (f32)", f, l);
    let (f, l) = both(&|p| show(p.persistent.runtime));
    row("  runtime reserve", f, l);

    let peak = |p: &Plan, phase: vgrpo::plan::Phase, bytes: u64| {
        let mark = if p.peak == phase { " ◀ peak" } else { "" };
        format!("{}{mark}", show(bytes))
    };
    if let (Some(fr), Some(lr)) = (&full.rollout, &lora.rollout) {
        let p = input.prompts_per_step * input.group_size;
        row(
            &format!("rollout ({p} rows)"),
            peak(full, vgrpo::plan::Phase::Rollout, fr.total()),
            peak(lora, vgrpo::plan::Phase::Rollout, lr.total()),
        );
        row(
            "  KV cache, prompt shared per group",
            show(fr.cache.stored),
            show(lr.cache.stored),
        );
        row(
            "    (copied per rollout it would be)",
            show(fr.cache.unshared),
            show(lr.cache.unshared),
        );
        row("  prefill peak", show(fr.prefill), show(lr.prefill));
        row("  decode step peak", show(fr.decode), show(lr.decode));
    }
    if let (Some(fl), Some(ll)) = (&full.logprobs, &lora.logprobs) {
        let rows = input.prompts_per_step * input.group_size;
        row(
            &format!("log-probs (reference, old; {rows} rows, no grad)"),
            peak(full, vgrpo::plan::Phase::LogProbs, fl.total()),
            peak(lora, vgrpo::plan::Phase::LogProbs, ll.total()),
        );
        row("  KV cache", show(fl.cache), show(ll.cache));
        row("  prefill peak", show(fl.prefill), show(ll.prefill));
        row(
            "  completion layer peak",
            show(fl.completions),
            show(ll.completions),
        );
        row(
            &format!(
                "  logits [{rows}, {}, V] × {}, f32",
                input.max_new_tokens,
                vgrpo::plan::logits::NO_GRAD_LOGITS_TENSORS
            ),
            show(fl.logits),
            show(ll.logits),
        );
    }
    let (fu, lu) = (&full.update, &lora.update);
    row(
        &format!(
            "update ({}, {})",
            plural(fu.rows, "row"),
            plural(fu.prompts, "prompt row")
        ),
        peak(full, vgrpo::plan::Phase::Update, fu.total()),
        peak(lora, vgrpo::plan::Phase::Update, lu.total()),
    );
    row("  gradients (f32)", show(fu.gradients), show(lu.gradients));
    row(
        "  decoder activations",
        show(fu.decoder.layers),
        show(lu.decoder.layers),
    );
    row(
        "  K/V of the pass",
        show(fu.decoder.kv),
        show(lu.decoder.kv),
    );
    row(
        "  embeddings, final norm, head input",
        show(fu.decoder.outside),
        show(lu.decoder.outside),
    );
    let vision = |u: &vgrpo::plan::estimate::UpdatePhase| match u.vision {
        Some(v) => show(v.saved),
        None => format!("{} (frozen, peak)", show(u.vision_frozen)),
    };
    row("  vision tower activations", vision(fu), vision(lu));
    let one = |u: &vgrpo::plan::estimate::UpdatePhase| {
        let all = u.vision.map_or(u.vision_frozen, |v| v.saved);
        show(all / u.prompts.max(1))
    };
    row("    one prompt's video", one(fu), one(lu));
    let logits_label = match input.stage {
        Stage::Grpo => format!(
            "  logits [{}, {}, V] × {}, f32",
            fu.rows,
            vgrpo::plan::logits::chunk_positions(fu.positions, input.logit_chunk as u64),
            vgrpo::plan::logits::UPDATE_LOGITS_TENSORS
        ),
        Stage::Sft => format!(
            "  logits [{}, {}, V] × {}",
            fu.rows,
            vgrpo::plan::logits::chunk_positions(fu.positions, input.logit_chunk as u64),
            vgrpo::plan::logits::SFT_LOGITS_TENSORS
        ),
    };
    row(&logits_label, show(fu.logits), show(lu.logits));
    let ckpt = if input.checkpointing {
        "  saved activations (checkpointing on)"
    } else {
        "  saved with per-layer checkpointing"
    };
    row(
        ckpt,
        show(fu.saved_checkpointed()),
        show(lu.saved_checkpointed()),
    );
    row(
        "16-bit matmul operands widened to f32 (flex)",
        show(full.widening),
        show(lora.widening),
    );
    row(
        "optimizer step",
        peak(full, vgrpo::plan::Phase::Optimizer, full.optimizer.total()),
        peak(lora, vgrpo::plan::Phase::Optimizer, lora.optimizer.total()),
    );
    row(
        "  AdamW temporaries",
        show(full.optimizer.temporaries),
        show(lora.optimizer.temporaries),
    );
    let (f, l) = both(&|p| format!("{} (peak: {})", show(p.total), p.peak.name()));
    row("total per device", f, l);
    if let Some(device) = device {
        let verdict = |p: &Plan| {
            if p.fits(device.0) {
                format!("yes, {} free", show(device.0 - p.total))
            } else {
                format!("no, {} over", show(p.total - device.0))
            }
        };
        row(&format!("fits {device}"), verdict(full), verdict(lora));
    }

    let width = |i: usize| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0);
    let (w0, w1) = (width(0), width(1));
    let pad = |s: &str, w: usize| format!("{s}{}", " ".repeat(w - s.chars().count()));
    let mut out = String::new();
    for r in &rows {
        let line = format!("{}  {}  {}", pad(&r[0], w0), pad(&r[1], w1), r[2]);
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// What to change for `plan` to fit `device`.
fn plan_changes(input: &PlanInput, plan: &Plan, device: ByteSize) -> String {
    use vgrpo::plan::bytes::show;
    let mut out = format!(
        "\n{} does not fit {device} ({} needed). Each change alone, largest effect first:\n",
        mode_name(plan.mode),
        show(plan.total)
    );
    let changes = vgrpo::plan::suggestions(input, plan.mode, device.0);
    let width = changes
        .iter()
        .map(|c| c.setting.chars().count())
        .max()
        .unwrap_or(0);
    for c in &changes {
        let pad = " ".repeat(width - c.setting.chars().count());
        let fits = if c.fits { "fits" } else { "does not fit" };
        out += &format!("  {}{pad}  → {} ({fits})\n", c.setting, show(c.total));
    }
    match vgrpo::plan::combination(input, plan.mode, device.0) {
        Some(combo) => {
            out += &format!(
                "together{}:\n",
                if combo.fits {
                    ""
                } else {
                    " (still does not fit)"
                }
            );
            for s in &combo.settings {
                out += &format!("  {s}\n");
            }
            out += &format!("  → {}\n", show(combo.total));
        }
        None if changes.is_empty() => out += "  (no setting the plan knows shrinks it)\n",
        None => {}
    }
    out
}

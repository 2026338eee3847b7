//! The `vgrpo` command line.

use anyhow::Context;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;
use vgrpo::data::synth::{self, SynthConfig};

#[derive(Parser)]
#[command(
    name = "vgrpo",
    version,
    about = "Train a video-language model to judge AI-generated video (Q-Save recipe)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write the synthetic video-evaluation data set: videos/*.mp4 and manifest.jsonl.
    Synth(SynthArgs),
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

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Synth(args) => {
            let start = Instant::now();
            let summary = synth::generate(&args.out, &args.config())
                .with_context(|| format!("vgrpo synth --out {}", args.out.display()))?;
            print!("{summary}");
            println!(
                "wrote {} in {:.1} s",
                args.out.join("manifest.jsonl").display(),
                start.elapsed().as_secs_f64()
            );
            Ok(())
        }
    }
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

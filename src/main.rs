//! vgrpo command line. (Minimal: only `check-model` so far.)

use std::path::PathBuf;
use std::process::ExitCode;

use burn::tensor::Device;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "vgrpo",
    about = "GRPO trainer for video-quality judges (Q-Save recipe)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::CheckModel {
            dir,
            reference,
            tolerance,
        } => match vgrpo::model::check_model(&dir, &reference, tolerance, &Device::default()) {
            Ok(report) => {
                println!(
                    "logits rel error {:.3e} (max|Δ| {:.3e}, max|ref| {:.3e}, {} positions, vocab {}, grids {:?})",
                    report.rel_error,
                    report.max_abs_diff,
                    report.max_abs_reference,
                    report.positions,
                    report.vocab,
                    report
                        .grids
                        .iter()
                        .map(|g| [g.t, g.h, g.w])
                        .collect::<Vec<_>>()
                );
                if report.passed() {
                    ExitCode::SUCCESS
                } else {
                    eprintln!(
                        "error: rel error {:.3e} above tolerance {tolerance:e}",
                        report.rel_error
                    );
                    ExitCode::FAILURE
                }
            }
            Err(err) => {
                eprintln!("error: {err}");
                ExitCode::from(2)
            }
        },
    }
}

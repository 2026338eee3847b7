//! The `vgrpo` command line. Subcommands appear as they become real.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use vgrpo::video::{VideoConfig, inspect_video};

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
    /// Show what the model sees of a video: each sampled frame's time,
    /// slow/fast kind, size and tokens.
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
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
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
    }
    Ok(())
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

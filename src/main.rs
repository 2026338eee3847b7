//! The `vgrpo` command line. Library errors are typed; here they become an
//! `anyhow` chain printed once, and an exit code: 0 success, 1 the job
//! failed, 2 the command line or the config is wrong.

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use vgrpo::config::{self, ConfigError};

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
            Ok(())
        }
    }
}

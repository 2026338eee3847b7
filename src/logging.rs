//! Log lines for the whole program, through the `log` facade.
//!
//! Library code reports with `log::info!`/`warn!` (never `println!`); this
//! logger writes them to stderr. While a progress bar is on screen the lines
//! go through the bar's `MultiProgress` so they print above it instead of
//! tearing it; when stderr is not a terminal the bars are hidden and lines
//! are plain, one per event, so logs of batch jobs stay readable.

use indicatif::MultiProgress;
use std::io::Write;
use std::sync::{Mutex, OnceLock};

struct Logger {
    level: log::LevelFilter,
    /// The active progress display, if any.
    bars: Mutex<Option<MultiProgress>>,
}

static LOGGER: OnceLock<Logger> = OnceLock::new();

impl log::Log for Logger {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        metadata.level() <= self.level
            && (metadata.target().starts_with("vgrpo") || metadata.level() <= log::Level::Warn)
    }

    fn log(&self, record: &log::Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let line = match record.level() {
            log::Level::Info => format!("{}", record.args()),
            level => format!("{}: {}", level.as_str().to_lowercase(), record.args()),
        };
        let bars = self.bars.lock().unwrap_or_else(|p| p.into_inner());
        match bars.as_ref() {
            Some(multi) if !multi.is_hidden() => multi.suspend(|| eprintln!("{line}")),
            _ => {
                // A failed write to stderr has nowhere better to be reported.
                let _ = writeln!(std::io::stderr().lock(), "{line}");
            }
        }
    }

    fn flush(&self) {}
}

/// Installs the logger once; later calls only change nothing.
pub fn init(level: log::LevelFilter) {
    let logger = LOGGER.get_or_init(|| Logger {
        level,
        bars: Mutex::new(None),
    });
    if log::set_logger(logger).is_ok() {
        log::set_max_level(level);
    }
}

/// Routes log lines through `multi` while it is on screen (`None` detaches).
pub fn attach_progress(multi: Option<MultiProgress>) {
    if let Some(logger) = LOGGER.get() {
        *logger.bars.lock().unwrap_or_else(|p| p.into_inner()) = multi;
    }
}

//! Progress bars for long stages (training steps, evaluation, synthesis).
//!
//! On a terminal: an indicatif bar with position, rate, ETA and a live
//! message (e.g. `reward 1.12 kl 0.003`); log lines print above it. When
//! stderr is not a terminal (CI, `nohup`, a log file) the bar is hidden and
//! each update that carries a message becomes one plain log line instead,
//! so batch logs stay readable and greppable.

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;

/// One progress display for a stage of `total` units.
pub struct Progress {
    bar: ProgressBar,
    label: String,
    plain: bool,
}

impl Progress {
    /// Starts a bar; `position` > 0 when a resumed run continues.
    pub fn new(label: &str, total: u64, position: u64) -> Progress {
        let plain = !std::io::stderr().is_terminal();
        let target = if plain {
            ProgressDrawTarget::hidden()
        } else {
            ProgressDrawTarget::stderr()
        };
        let multi = MultiProgress::with_draw_target(target);
        let bar = multi.add(ProgressBar::new(total));
        bar.set_style(
            ProgressStyle::with_template(
                "{prefix:>8} [{bar:30}] {pos}/{len} {per_sec} eta {eta} {msg}",
            )
            .expect("static progress template is valid")
            .progress_chars("=> "),
        );
        bar.set_prefix(label.to_string());
        bar.set_position(position);
        crate::logging::attach_progress(Some(multi));
        Progress {
            bar,
            label: label.to_string(),
            plain,
        }
    }

    /// Advances by one unit and shows `message` (also logged when plain).
    pub fn step(&self, message: &str) {
        self.bar.inc(1);
        self.bar.set_message(message.to_string());
        if self.plain && !message.is_empty() {
            log::info!(
                "{} {}/{} {}",
                self.label,
                self.bar.position(),
                self.bar.length().unwrap_or(0),
                message
            );
        }
    }

    /// Advances by one unit without a message.
    pub fn tick(&self) {
        self.bar.inc(1);
    }

    /// Removes the bar and routes log lines straight to stderr again.
    pub fn finish(self) {
        self.bar.finish_and_clear();
        crate::logging::attach_progress(None);
    }
}

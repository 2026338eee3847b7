//! Simulated crashes at named moments of a run, for the tests that show a
//! run killed at any moment resumes byte for byte.
//!
//! With `VGRPO_CRASH_AT=<point>` in the environment the process aborts
//! (SIGABRT: no destructors, no flushing, like `kill -9`) when it reaches
//! that point. The points a run passes, in order:
//!
//! ```text
//! step-N         step N is logged, its checkpoint (if due) not yet written
//! checkpoint-N   checkpoint N's files are written into its temporary
//!                directory, which is not yet renamed into place
//! export         every step and the last checkpoint are done, the final
//!                export has not started
//! ```
//!
//! Unset (always, outside those tests) it costs one environment lookup per
//! process.

use std::sync::OnceLock;

/// The environment variable that names the crash point.
pub const CRASH_ENV: &str = "VGRPO_CRASH_AT";

/// Aborts the process if `point` is the one `VGRPO_CRASH_AT` names.
pub fn crash_point(point: &str) {
    static TARGET: OnceLock<Option<String>> = OnceLock::new();
    let target = TARGET.get_or_init(|| std::env::var(CRASH_ENV).ok());
    if target.as_deref() == Some(point) {
        eprintln!("{CRASH_ENV}={point}: aborting here");
        std::process::abort();
    }
}

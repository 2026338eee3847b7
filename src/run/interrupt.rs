//! Ctrl-C: the first one asks the running trainer to stop after its current
//! step (it then writes a checkpoint, prints how to resume and the process
//! exits with 130); a second one exits at once.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// The flag Ctrl-C sets; trainers poll it between steps.
#[derive(Debug, Clone, Default)]
pub struct Interrupt(Arc<AtomicBool>);

/// The exit status of a process stopped by Ctrl-C (128 + SIGINT).
pub const INTERRUPTED_EXIT: u8 = 130;

impl Interrupt {
    /// A flag nothing sets (library callers, tests).
    pub fn never() -> Self {
        Interrupt::default()
    }

    /// A flag set by Ctrl-C (SIGINT).
    /// Installs the process-wide handler; call it once.
    pub fn ctrl_c() -> Result<Self, ctrlc::Error> {
        let flag = Interrupt::default();
        let handler = flag.clone();
        ctrlc::set_handler(move || {
            if handler.0.swap(true, Ordering::SeqCst) {
                std::process::exit(i32::from(INTERRUPTED_EXIT));
            }
            eprintln!(
                "\ninterrupt: finishing the current step, then writing a checkpoint \
                 (Ctrl-C again to abort)"
            );
        })?;
        Ok(flag)
    }

    /// The flag itself, for code that takes an `&AtomicBool`.
    pub fn flag(&self) -> &AtomicBool {
        &self.0
    }

    pub fn is_set(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

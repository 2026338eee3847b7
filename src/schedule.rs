//! Learning-rate schedules: constant, or linear warmup then cosine decay.
//!
//! Pure functions of `(step, total_steps)`, so a resumed run recomputes the
//! rate from the checkpointed step and needs no scheduler state of its own.
//! Conventions follow HF `get_cosine_schedule_with_warmup` (which TRL and the
//! paper's SFT recipe use): `lr·s/w` for `s < w` warmup steps, then
//! `lr_min + (lr − lr_min)·½(1 + cos(π·p))` with progress
//! `p = (s − w)/(S − w)`. Step `s` counts optimizer updates from 0.

use serde::{Deserialize, Serialize};

/// Which shape the learning rate follows over the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum ScheduleKind {
    /// The same rate every step (the paper's GRPO stage).
    #[default]
    Constant,
    /// Linear warmup to the peak, then cosine decay to `min_lr_ratio · lr`
    /// (the paper's SFT stages: warmup 3%).
    WarmupCosine,
}

/// A learning-rate schedule, as configured.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Schedule {
    pub kind: ScheduleKind,
    /// Peak learning rate.
    pub lr: f64,
    /// Fraction of all steps spent warming up (ignored by `constant`).
    pub warmup_ratio: f64,
    /// Floor of the cosine decay as a fraction of `lr`.
    pub min_lr_ratio: f64,
}

impl Schedule {
    /// Number of warmup steps in a run of `total` steps.
    pub fn warmup_steps(&self, total: u64) -> u64 {
        match self.kind {
            ScheduleKind::Constant => 0,
            ScheduleKind::WarmupCosine => (self.warmup_ratio * total as f64).ceil() as u64,
        }
    }

    /// The learning rate of update `step` (0-based) in a run of `total`.
    pub fn lr_at(&self, step: u64, total: u64) -> f64 {
        match self.kind {
            ScheduleKind::Constant => self.lr,
            ScheduleKind::WarmupCosine => {
                let warmup = self.warmup_steps(total);
                if step < warmup {
                    return self.lr * step as f64 / warmup as f64;
                }
                let span = total.saturating_sub(warmup).max(1) as f64;
                let progress = ((step - warmup) as f64 / span).min(1.0);
                let floor = self.lr * self.min_lr_ratio;
                floor + (self.lr - floor) * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cosine(lr: f64, warmup_ratio: f64, min_lr_ratio: f64) -> Schedule {
        Schedule {
            kind: ScheduleKind::WarmupCosine,
            lr,
            warmup_ratio,
            min_lr_ratio,
        }
    }

    #[test]
    fn constant_is_constant() {
        let s = Schedule {
            kind: ScheduleKind::Constant,
            lr: 2e-6,
            warmup_ratio: 0.5,
            min_lr_ratio: 0.0,
        };
        assert_eq!(s.lr_at(0, 32), 2e-6);
        assert_eq!(s.lr_at(31, 32), 2e-6);
    }

    #[test]
    fn warmup_then_cosine_hand_values() {
        // 100 steps, 10% warmup: lr rises 0, .1, …, .9 of peak, peaks at
        // step 10, is half-way down at step 55 and at the floor at step 100.
        let s = cosine(1.0, 0.1, 0.0);
        assert_eq!(s.warmup_steps(100), 10);
        assert_eq!(s.lr_at(0, 100), 0.0);
        assert!((s.lr_at(5, 100) - 0.5).abs() < 1e-12);
        assert!((s.lr_at(10, 100) - 1.0).abs() < 1e-12);
        assert!((s.lr_at(55, 100) - 0.5).abs() < 1e-12);
        assert!(s.lr_at(100, 100).abs() < 1e-12);
        let floored = cosine(1.0, 0.1, 0.1);
        assert!((floored.lr_at(100, 100) - 0.1).abs() < 1e-12);
        assert!((floored.lr_at(55, 100) - 0.55).abs() < 1e-12);
    }

    #[test]
    fn three_percent_warmup_rounds_up() {
        // The paper's SFT: warmup 3% of e.g. 45 steps is 2 steps (ceil 1.35).
        assert_eq!(cosine(5e-6, 0.03, 0.0).warmup_steps(45), 2);
    }
}

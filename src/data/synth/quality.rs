//! Synthetic "generators" of different quality, the severities they
//! produce, and the map from severity to MOS with simulated rater noise.
//!
//! Severity `s ∈ [0, 1]` is drawn in two steps: a quality bucket `k ∈ 0..5`
//! from the generator's bucket probabilities, then `s` uniform in
//! `[k/5, (k+1)/5)`. The noise-free score is `clean_mos = 5 − 4s`, so bucket
//! `k` lands exactly in rating interval `4 − k` (Excellent for bucket 0 …
//! Bad for bucket 4) of the paper's map, and the mean of the four
//! generators' bucket probabilities is close to uniform: the five ratings
//! come out balanced over the whole set while each generator is skewed.
//! Alignment severity is a discrete level (see `alignment`), whose clean MOS
//! is its bucket's centre, so every visible difference — and nothing
//! invisible — moves the score.

use super::dynamic::DynamicKind;
use super::visual::VisualKind;
use crate::data::MosScale;
use crate::rng::Rng;

/// One synthetic video generator.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Generator {
    pub name: &'static str,
    /// Probability of quality bucket 0 (best) … 4 (worst), per dimension.
    pub buckets: [f64; 5],
    /// The visual defect this generator is prone to (drawn twice as often).
    pub visual_habit: VisualKind,
    /// The dynamic defect this generator is prone to.
    pub dynamic_habit: DynamicKind,
}

/// Four generators from best to worst. Column means are
/// (.1875, .2, .225, .2, .1875): near-uniform ratings over the set.
pub const GENERATORS: [Generator; 4] = [
    Generator {
        name: "gen-a",
        buckets: [0.35, 0.30, 0.20, 0.10, 0.05],
        visual_habit: VisualKind::Noise,
        dynamic_habit: DynamicKind::Jitter,
    },
    Generator {
        name: "gen-b",
        buckets: [0.25, 0.25, 0.25, 0.15, 0.10],
        visual_habit: VisualKind::Blur,
        dynamic_habit: DynamicKind::Stutter,
    },
    Generator {
        name: "gen-c",
        buckets: [0.10, 0.15, 0.25, 0.25, 0.25],
        visual_habit: VisualKind::Blocking,
        dynamic_habit: DynamicKind::Freeze,
    },
    Generator {
        name: "gen-d",
        buckets: [0.05, 0.10, 0.20, 0.30, 0.35],
        visual_habit: VisualKind::Blur,
        dynamic_habit: DynamicKind::Jump,
    },
];

/// The MOS scale of the synthetic set.
pub const SCALE: MosScale = MosScale { min: 1.0, max: 5.0 };

impl Generator {
    /// Draws a quality bucket, 0 (best) … 4 (worst).
    pub fn bucket(&self, rng: &mut Rng) -> u8 {
        let u = rng.next_f64();
        let mut acc = 0.0;
        for (k, p) in self.buckets.iter().enumerate() {
            acc += p;
            if u < acc {
                return k as u8;
            }
        }
        4
    }

    /// Draws a continuous severity in the bucket's fifth of `[0, 1)`.
    pub fn severity(&self, rng: &mut Rng) -> f32 {
        let k = f64::from(self.bucket(rng));
        ((k + rng.next_f64()) / 5.0) as f32
    }
}

/// Noise-free MOS of a severity: `5 − 4s`, computed in f64 and rounded to
/// three decimals so the manifest shows `1.4`, not `1.4000001`.
pub fn clean_mos(severity: f32) -> f32 {
    let (lo, hi) = (f64::from(SCALE.min), f64::from(SCALE.max));
    let mos = hi - (hi - lo) * f64::from(severity.clamp(0.0, 1.0));
    ((mos * 1000.0).round() / 1000.0) as f32
}

/// Severity of an alignment level: the centre of its bucket.
pub fn level_severity(level: u8) -> f32 {
    (f32::from(level) + 0.5) / 5.0
}

/// A rater's score: clean MOS plus Gaussian noise of `sigma`, clamped to the
/// scale and rounded to two decimals like a mean of a few ratings.
pub fn rated_mos(clean: f32, sigma: f32, rng: &mut Rng) -> f32 {
    let noisy = f64::from(clean) + f64::from(sigma) * rng.normal();
    round2(noisy.clamp(f64::from(SCALE.min), f64::from(SCALE.max)) as f32)
}

pub fn round2(x: f32) -> f32 {
    (x * 100.0).round() / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::Rating;

    #[test]
    fn buckets_map_to_their_rating_and_mos_falls_with_severity() {
        for k in 0..5u8 {
            for frac in [0.01f32, 0.5, 0.99] {
                let s = (f32::from(k) + frac) / 5.0;
                assert_eq!(
                    SCALE.rating(clean_mos(s)),
                    Rating::ALL[4 - usize::from(k)],
                    "s={s}"
                );
            }
            assert_eq!(
                SCALE.rating(clean_mos(level_severity(k))),
                Rating::ALL[4 - usize::from(k)]
            );
        }
        assert_eq!(clean_mos(0.0), 5.0);
        assert_eq!(clean_mos(1.0), 1.0);
        assert!(clean_mos(0.3) > clean_mos(0.31));
    }

    #[test]
    fn generators_are_ordered_and_balanced_together() {
        let mean_bucket = |g: &Generator| -> f64 {
            g.buckets
                .iter()
                .enumerate()
                .map(|(k, p)| k as f64 * p)
                .sum()
        };
        for pair in GENERATORS.windows(2) {
            assert!(mean_bucket(&pair[0]) < mean_bucket(&pair[1]));
        }
        for g in &GENERATORS {
            assert!(
                (g.buckets.iter().sum::<f64>() - 1.0).abs() < 1e-12,
                "{}",
                g.name
            );
        }
        for k in 0..5 {
            let mean = GENERATORS.iter().map(|g| g.buckets[k]).sum::<f64>() / 4.0;
            assert!((0.15..=0.25).contains(&mean), "bucket {k}: {mean}");
        }
    }

    #[test]
    fn rater_noise_is_clamped_and_zero_noise_is_exact() {
        let mut rng = Rng::new(4);
        assert_eq!(rated_mos(3.27, 0.0, &mut rng), 3.27);
        for _ in 0..1000 {
            let m = rated_mos(4.9, 1.0, &mut rng);
            assert!((1.0..=5.0).contains(&m));
        }
    }
}

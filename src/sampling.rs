//! Drawing the next token from one row of logits: temperature, top-k,
//! top-p, on the host with the run's RNG.
//!
//! Sampling on the host (rather than with a backend's random kernels) makes
//! a draw a pure function of `(logits, settings, rng state)`, identical on
//! every backend and thread count, and lets every rollout row own its RNG
//! stream so the samples do not depend on how rows were batched.
//!
//! The log-prob returned with a token is `log softmax(logits / T)[token]` over
//! the *full* vocabulary — not over the top-k/top-p truncated distribution —
//! because that is the quantity the trainer recomputes teacher-forced for
//! `old_log_prob` (verl and TRL use the same convention), so ratios start at
//! exactly 1.

use crate::rng::Rng;
use serde::{Deserialize, Serialize};

/// How the next token is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SamplingConfig {
    /// Softmax temperature; 0 means greedy (argmax).
    pub temperature: f32,
    /// Keep only the `top_k` most likely tokens (0 = no limit).
    pub top_k: usize,
    /// Keep the smallest set of tokens whose probability reaches `top_p`
    /// (1.0 = no limit).
    pub top_p: f32,
}

impl Default for SamplingConfig {
    fn default() -> Self {
        SamplingConfig {
            temperature: 1.0,
            top_k: 0,
            top_p: 1.0,
        }
    }
}

impl SamplingConfig {
    pub fn greedy() -> Self {
        SamplingConfig {
            temperature: 0.0,
            ..Self::default()
        }
    }
}

impl crate::config::rules::Validate for SamplingConfig {
    fn validate(&self, p: &str, rules: &mut crate::config::rules::Rules) {
        rules.check(
            self.temperature.is_finite() && self.temperature >= 0.0,
            &format!("{p}.temperature"),
            || {
                format!(
                    "temperature must be ≥ 0 (0 = greedy), got {}",
                    self.temperature
                )
            },
        );
        rules.check(
            self.top_p > 0.0 && self.top_p <= 1.0,
            &format!("{p}.top_p"),
            || format!("top_p must be in (0, 1], got {}", self.top_p),
        );
    }
}

/// A drawn token and its log-probability under the (tempered) policy.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Draw {
    pub token: u32,
    /// `log softmax(logits / T)[token]` (T = 1 when greedy).
    pub logprob: f32,
}

/// `log softmax(logits / t)` computed stably in f64, then the entry for
/// `token`.
pub fn token_logprob(logits: &[f32], temperature: f32, token: usize) -> f32 {
    let t = if temperature > 0.0 {
        f64::from(temperature)
    } else {
        1.0
    };
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let lse = logits
        .iter()
        .map(|&l| ((f64::from(l) - max) / t).exp())
        .sum::<f64>()
        .ln();
    ((f64::from(logits[token]) - max) / t - lse) as f32
}

/// Draws one token from `logits` (one row, `[vocab]`).
///
/// # Panics
/// If `logits` is empty (a model bug, not a user error).
pub fn sample(logits: &[f32], cfg: &SamplingConfig, rng: &mut Rng) -> Draw {
    assert!(!logits.is_empty(), "sample() needs at least one logit");
    if cfg.temperature == 0.0 {
        // First maximum wins, so ties resolve to the lowest id, as torch.argmax.
        let token = logits
            .iter()
            .enumerate()
            .fold(0, |best, (i, &l)| if l > logits[best] { i } else { best });
        return Draw {
            token: token as u32,
            logprob: token_logprob(logits, 1.0, token),
        };
    }
    let t = f64::from(cfg.temperature);
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let weights: Vec<f64> = logits
        .iter()
        .map(|&l| ((f64::from(l) - max) / t).exp())
        .collect();
    // Candidates sorted by probability, highest first; ties by id so the
    // order (and hence the draw) is deterministic. One integer key per id —
    // the weight's descending total order above the id — sorts to exactly
    // that order, several times faster than a comparator sort of
    // (id, weight) pairs.
    let mut order: Vec<u128> = weights
        .iter()
        .enumerate()
        .map(|(i, &w)| (u128::from(!total_order_key(w)) << 64) | i as u128)
        .collect();
    order.sort_unstable();
    let cand: Vec<usize> = order.into_iter().map(|k| k as u64 as usize).collect();
    let total: f64 = cand.iter().map(|&i| weights[i]).sum();
    let mut keep = cand.len();
    if cfg.top_k > 0 {
        keep = keep.min(cfg.top_k);
    }
    if cfg.top_p < 1.0 {
        // Smallest prefix whose mass reaches top_p (at least one token).
        let target = f64::from(cfg.top_p) * total;
        let mut mass = 0.0;
        let mut n = 0;
        while n < keep {
            mass += weights[cand[n]];
            n += 1;
            if mass >= target {
                break;
            }
        }
        keep = n.max(1);
    }
    let kept = &cand[..keep];
    let kept_mass: f64 = kept.iter().map(|&i| weights[i]).sum();
    let mut u = rng.next_f64() * kept_mass;
    let mut token = kept[keep - 1];
    for &i in kept {
        let w = weights[i];
        if u < w {
            token = i;
            break;
        }
        u -= w;
    }
    Draw {
        token: token as u32,
        logprob: ((f64::from(logits[token]) - max) / t - total.ln()) as f32,
    }
}

/// `x` as an unsigned integer whose order is [`f64::total_cmp`]'s.
fn total_order_key(x: f64) -> u64 {
    let bits = x.to_bits() as i64;
    // total_cmp's signed key, then the sign bit flipped for unsigned order.
    let key = bits ^ ((((bits >> 63) as u64) >> 1) as i64);
    (key as u64) ^ (1 << 63)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_takes_the_first_maximum() {
        let mut rng = Rng::new(0);
        let d = sample(&[0.1, 2.0, 2.0, -1.0], &SamplingConfig::greedy(), &mut rng);
        assert_eq!(d.token, 1);
        let p: f64 = [0.1f64, 2.0, 2.0, -1.0].iter().map(|x| x.exp()).sum();
        assert!((d.logprob as f64 - (2.0 - p.ln())).abs() < 1e-6);
    }

    #[test]
    fn logprob_matches_a_hand_value_and_uses_the_full_vocabulary() {
        // logits [0, ln 3] at T=1: probs 1/4, 3/4.
        let logits = [0.0, 3f32.ln()];
        assert!((token_logprob(&logits, 1.0, 1) - 0.75f32.ln()).abs() < 1e-6);
        // top_k = 1 forces token 1 but the log-prob stays the full one.
        let cfg = SamplingConfig {
            temperature: 1.0,
            top_k: 1,
            top_p: 1.0,
        };
        let d = sample(&logits, &cfg, &mut Rng::new(5));
        assert_eq!(d.token, 1);
        assert!((d.logprob - 0.75f32.ln()).abs() < 1e-6);
        // T = 2 flattens: probs ∝ 1, √3.
        let s3 = 3f64.sqrt();
        let want = (s3 / (1.0 + s3)).ln() as f32;
        assert!((token_logprob(&logits, 2.0, 1) - want).abs() < 1e-6);
    }

    #[test]
    fn frequencies_follow_the_distribution() {
        let logits = [0.0, 3f32.ln()];
        let mut rng = Rng::new(9);
        let n = 20_000;
        let ones = (0..n)
            .filter(|_| sample(&logits, &SamplingConfig::default(), &mut rng).token == 1)
            .count();
        let f = ones as f64 / n as f64;
        assert!((f - 0.75).abs() < 0.015, "{f}");
    }

    #[test]
    fn top_p_keeps_the_smallest_sufficient_prefix() {
        // probs ≈ .6, .3, .1: top_p .5 keeps only the first; .85 keeps two.
        let logits = [0.6f32.ln(), 0.3f32.ln(), 0.1f32.ln()];
        let mut rng = Rng::new(1);
        let only = SamplingConfig {
            temperature: 1.0,
            top_k: 0,
            top_p: 0.5,
        };
        assert!((0..200).all(|_| sample(&logits, &only, &mut rng).token == 0));
        let two = SamplingConfig {
            top_p: 0.85,
            ..only
        };
        let drawn: std::collections::BTreeSet<u32> = (0..500)
            .map(|_| sample(&logits, &two, &mut rng).token)
            .collect();
        assert_eq!(drawn.into_iter().collect::<Vec<_>>(), vec![0, 1]);
    }

    /// The sampler as first written (a comparator sort of (id, weight)
    /// pairs): the key sort must reproduce its draws exactly.
    fn reference_sample(logits: &[f32], cfg: &SamplingConfig, rng: &mut Rng) -> Draw {
        let t = f64::from(cfg.temperature);
        let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
        let mut cand: Vec<(usize, f64)> = logits
            .iter()
            .enumerate()
            .map(|(i, &l)| (i, ((f64::from(l) - max) / t).exp()))
            .collect();
        cand.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        let total: f64 = cand.iter().map(|c| c.1).sum();
        let mut keep = cand.len();
        if cfg.top_k > 0 {
            keep = keep.min(cfg.top_k);
        }
        if cfg.top_p < 1.0 {
            let target = f64::from(cfg.top_p) * total;
            let (mut mass, mut n) = (0.0, 0);
            while n < keep {
                mass += cand[n].1;
                n += 1;
                if mass >= target {
                    break;
                }
            }
            keep = n.max(1);
        }
        let kept = &cand[..keep];
        let kept_mass: f64 = kept.iter().map(|c| c.1).sum();
        let mut u = rng.next_f64() * kept_mass;
        let mut token = kept[keep - 1].0;
        for &(i, w) in kept {
            if u < w {
                token = i;
                break;
            }
            u -= w;
        }
        Draw {
            token: token as u32,
            logprob: ((f64::from(logits[token]) - max) / t - total.ln()) as f32,
        }
    }

    #[test]
    fn key_sort_draws_exactly_like_the_comparator_sort() {
        let mut draws = Rng::new(11);
        for case in 0..300 {
            let n = 1 + case % 97;
            // Few distinct values (many ties) in every third case.
            let logits: Vec<f32> = (0..n)
                .map(|_| {
                    let x = draws.next_f64() as f32 * 8.0 - 4.0;
                    if case % 3 == 0 { x.round() } else { x }
                })
                .collect();
            let cfg = SamplingConfig {
                temperature: [1.0, 0.7, 1.5][case % 3],
                top_k: [0, 1, 5][case % 3],
                top_p: [1.0, 0.9, 0.5][(case / 3) % 3],
            };
            let (mut a, mut b) = (Rng::new(case as u64), Rng::new(case as u64));
            for _ in 0..5 {
                let want = reference_sample(&logits, &cfg, &mut a);
                let got = sample(&logits, &cfg, &mut b);
                assert_eq!(got.token, want.token, "case {case}");
                assert_eq!(got.logprob.to_bits(), want.logprob.to_bits(), "case {case}");
            }
        }
        for x in [
            0.0,
            -0.0,
            1.0,
            -1.0,
            f64::INFINITY,
            f64::NEG_INFINITY,
            1e-300,
        ] {
            for y in [
                0.0,
                -0.0,
                1.0,
                -1.0,
                f64::INFINITY,
                f64::NEG_INFINITY,
                1e-300,
            ] {
                assert_eq!(
                    total_order_key(x).cmp(&total_order_key(y)),
                    x.total_cmp(&y),
                    "{x} vs {y}"
                );
            }
        }
    }

    #[test]
    fn same_rng_state_same_draw() {
        let logits: Vec<f32> = (0..50).map(|i| (i as f32 * 0.37).sin()).collect();
        let cfg = SamplingConfig::default();
        let a: Vec<u32> = {
            let mut r = Rng::new(3);
            (0..20)
                .map(|_| sample(&logits, &cfg, &mut r).token)
                .collect()
        };
        let b: Vec<u32> = {
            let mut r = Rng::new(3);
            (0..20)
                .map(|_| sample(&logits, &cfg, &mut r).token)
                .collect()
        };
        assert_eq!(a, b);
    }
}

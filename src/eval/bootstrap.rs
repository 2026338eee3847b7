//! How much of a difference between two models' test scores is measurement
//! noise: the paired bootstrap over test items.
//!
//! Two models judged the same test videos. The statistic is the difference
//! of their mean SRCC over dimensions, `Δ = mean_d ρ_d(second) − mean_d
//! ρ_d(first)`. One bootstrap resample draws, per dimension, `n_d` of that
//! dimension's items with replacement and recomputes Δ on them, scoring
//! both models on the *same* draw (paired): what the two share — which
//! videos happen to be in the test split — cancels, and the spread left is
//! that of Δ itself. Its standard deviation over resamples says how large a
//! Δ the test split can resolve; it does not cover the seed-to-seed
//! variation of what training learns (that is the benchmark's seeds).

use super::metrics::{MetricError, srcc};
use crate::rng::Rng;

/// One dimension's test items as both models scored them.
#[derive(Debug, Clone, PartialEq)]
pub struct PairedScores {
    /// Ground truth per item (MOS).
    pub truth: Vec<f64>,
    /// The first model's score per item.
    pub first: Vec<f64>,
    /// The second model's score per item.
    pub second: Vec<f64>,
}

/// `Δ` on the full test split and its bootstrap standard deviation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PairedDifference {
    pub observed: f64,
    pub sd: f64,
    /// Resamples that entered `sd` (a draw on which a correlation is
    /// undefined — every drawn item scored alike — is dropped).
    pub resamples: usize,
}

/// `mean_d ρ_d(second) − mean_d ρ_d(first)` on the items `pick(d)` of each
/// dimension.
fn mean_srcc_difference(
    dims: &[PairedScores],
    mut pick: impl FnMut(usize, usize) -> Vec<usize>,
) -> Result<f64, MetricError> {
    let mut total = 0.0;
    for (d, scores) in dims.iter().enumerate() {
        let items = pick(d, scores.truth.len());
        let take = |xs: &[f64]| items.iter().map(|&i| xs[i]).collect::<Vec<f64>>();
        let truth = take(&scores.truth);
        total += srcc(&take(&scores.second), &truth)? - srcc(&take(&scores.first), &truth)?;
    }
    Ok(total / dims.len() as f64)
}

/// The paired bootstrap of `Δ` with `resamples` draws from `rng`.
pub fn paired_srcc_difference(
    dims: &[PairedScores],
    resamples: usize,
    rng: &mut Rng,
) -> Result<PairedDifference, MetricError> {
    if dims.is_empty() {
        return Err(MetricError::TooFew { n: 0, min: 1 });
    }
    for d in dims {
        for len in [d.first.len(), d.second.len()] {
            if len != d.truth.len() {
                return Err(MetricError::LengthMismatch {
                    pred: len,
                    truth: d.truth.len(),
                });
            }
        }
    }
    let observed = mean_srcc_difference(dims, |_, n| (0..n).collect())?;
    let mut draws = Vec::with_capacity(resamples);
    for _ in 0..resamples {
        let draw = mean_srcc_difference(dims, |_, n| (0..n).map(|_| rng.index(n)).collect());
        match draw {
            Ok(delta) => draws.push(delta),
            Err(MetricError::Constant { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    if draws.len() < 2 {
        return Err(MetricError::TooFew {
            n: draws.len(),
            min: 2,
        });
    }
    let mean = draws.iter().sum::<f64>() / draws.len() as f64;
    let var = draws.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (draws.len() - 1) as f64;
    Ok(PairedDifference {
        observed,
        sd: var.sqrt(),
        resamples: draws.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scores(truth: &[f64], first: &[f64], second: &[f64]) -> PairedScores {
        PairedScores {
            truth: truth.to_vec(),
            first: first.to_vec(),
            second: second.to_vec(),
        }
    }

    #[test]
    fn identical_models_differ_by_exactly_zero() {
        let truth = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        let pred = [2.0, 1.0, 3.0, 6.0, 4.0, 5.0];
        let d =
            paired_srcc_difference(&[scores(&truth, &pred, &pred)], 200, &mut Rng::new(0)).unwrap();
        assert_eq!((d.observed, d.sd), (0.0, 0.0));
    }

    #[test]
    fn a_perfect_and_a_reversed_judge_differ_by_two_on_every_draw() {
        // ρ = 1 and ρ = −1 on any draw with two distinct items, and ties from
        // drawing an item twice are shared by truth and both predictions.
        let truth: Vec<f64> = (0..12).map(f64::from).collect();
        let reversed: Vec<f64> = truth.iter().map(|x| -x).collect();
        let d = paired_srcc_difference(&[scores(&truth, &reversed, &truth)], 300, &mut Rng::new(1))
            .unwrap();
        assert!((d.observed - 2.0).abs() < 1e-12, "{}", d.observed);
        assert!(d.sd < 1e-12, "{}", d.sd);
    }

    #[test]
    fn observed_difference_is_the_mean_over_dimensions() {
        // Dimension 1: second perfect (1) vs first reversed (−1): +2.
        // Dimension 2: both predictions identical: 0. Mean: +1.
        let truth = [1.0, 2.0, 3.0, 4.0];
        let d = paired_srcc_difference(
            &[
                scores(&truth, &[4.0, 3.0, 2.0, 1.0], &truth),
                scores(&truth, &[1.0, 3.0, 2.0, 4.0], &[1.0, 3.0, 2.0, 4.0]),
            ],
            100,
            &mut Rng::new(2),
        )
        .unwrap();
        assert!((d.observed - 1.0).abs() < 1e-12, "{}", d.observed);
    }

    #[test]
    fn more_test_items_resolve_smaller_differences() {
        // Two unrelated noisy judges of the same truth: the sd of Δ shrinks
        // about as 1/√n (here n = 40 vs 640: a factor of 4).
        let judged = |n: usize, seed: u64| {
            let mut rng = Rng::new(seed);
            let truth: Vec<f64> = (0..n).map(|_| rng.normal()).collect();
            let noisy = |rng: &mut Rng| truth.iter().map(|t| t + 2.0 * rng.normal()).collect();
            let (first, second) = (noisy(&mut rng), noisy(&mut rng));
            let d = paired_srcc_difference(
                &[PairedScores {
                    truth: truth.clone(),
                    first,
                    second,
                }],
                400,
                &mut rng,
            )
            .unwrap();
            d.sd
        };
        let (small, large) = (judged(40, 3), judged(640, 4));
        let ratio = small / large;
        assert!((2.5..6.0).contains(&ratio), "sd {small:.3} vs {large:.3}");
    }

    #[test]
    fn mismatched_lengths_are_an_error() {
        let err = paired_srcc_difference(
            &[scores(&[1.0, 2.0, 3.0], &[1.0, 2.0], &[1.0, 2.0, 3.0])],
            10,
            &mut Rng::new(0),
        )
        .unwrap_err();
        assert!(matches!(
            err,
            MetricError::LengthMismatch { pred: 2, truth: 3 }
        ));
    }
}

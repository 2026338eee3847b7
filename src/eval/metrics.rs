//! Agreement between predicted scores and human scores (Q-Save appendix B).
//!
//! - SRCC: Spearman's ρ = Pearson correlation of the ranks, ties given their
//!   average rank (scipy `spearmanr`).
//! - PLCC: Pearson's r of the raw scores. Q-Save defines PLCC = corr(ŝ, s)
//!   with no nonlinear mapping; many VQA papers first fit a 4/5-parameter
//!   logistic from ŝ to s, Q-Save does not say it does, so neither do we.
//! - KRCC: Kendall's τ-b, which corrects for ties in either list (scipy
//!   `kendalltau` default).
//! - Model level: predictions and MOS averaged per generator, then the
//!   correlations over generators ([`aggregate_by_generator`]).
//! - Pairwise preference accuracy with and without ties
//!   ([`pairwise_accuracy`]; definitions there).
//!
//! Inputs are `f64` slices of equal length; a correlation of a constant list
//! is undefined and reported as [`MetricError::Constant`] (scipy returns NaN),
//! so a collapsed judge that always answers the same is visible, not a 0.

use crate::data::Rating;
use crate::text::parse::{Answer, FormatViolation};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;
use thiserror::Error;

#[derive(Debug, Clone, PartialEq, Error)]
pub enum MetricError {
    #[error("predictions ({pred}) and ground truth ({truth}) differ in length")]
    LengthMismatch { pred: usize, truth: usize },
    #[error("{n} items; at least {min} are needed")]
    TooFew { n: usize, min: usize },
    #[error("the {which} scores are all equal, so the correlation is undefined")]
    Constant { which: &'static str },
    #[error("no pair of items to compare")]
    NoPairs,
    #[error("{which} score {index} is not finite ({value})")]
    NonFinite {
        which: &'static str,
        index: usize,
        value: f64,
    },
}

/// SRCC, PLCC and KRCC of one list of predictions against its ground truth.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Correlations {
    pub srcc: f64,
    pub plcc: f64,
    pub krcc: f64,
    /// Number of items (videos, or generators at model level).
    pub n: usize,
}

/// All three correlations.
pub fn correlations(pred: &[f64], truth: &[f64]) -> Result<Correlations, MetricError> {
    Ok(Correlations {
        srcc: srcc(pred, truth)?,
        plcc: plcc(pred, truth)?,
        krcc: krcc(pred, truth)?,
        n: pred.len(),
    })
}

/// Spearman's rank correlation, average ranks for ties.
pub fn srcc(pred: &[f64], truth: &[f64]) -> Result<f64, MetricError> {
    check(pred, truth, 2)?;
    pearson(&average_ranks(pred), &average_ranks(truth))
}

/// Pearson's linear correlation.
pub fn plcc(pred: &[f64], truth: &[f64]) -> Result<f64, MetricError> {
    check(pred, truth, 2)?;
    pearson(pred, truth)
}

/// Kendall's τ-b: (n_c − n_d) / √((n_0 − n_1)(n_0 − n_2)) with n_0 = n(n−1)/2
/// pairs, n_c/n_d concordant/discordant pairs, n_1/n_2 pairs tied in the
/// prediction/truth (a pair tied in both counts in n_1 and n_2). O(n²).
pub fn krcc(pred: &[f64], truth: &[f64]) -> Result<f64, MetricError> {
    check(pred, truth, 2)?;
    let n = pred.len();
    let (mut concordant, mut discordant, mut tied_pred, mut tied_truth) = (0u64, 0u64, 0u64, 0u64);
    for i in 0..n {
        for j in i + 1..n {
            let dp = pred[i] - pred[j];
            let dt = truth[i] - truth[j];
            if dp == 0.0 {
                tied_pred += 1;
            }
            if dt == 0.0 {
                tied_truth += 1;
            }
            if dp != 0.0 && dt != 0.0 {
                if (dp > 0.0) == (dt > 0.0) {
                    concordant += 1;
                } else {
                    discordant += 1;
                }
            }
        }
    }
    let pairs = (n * (n - 1) / 2) as u64;
    if tied_pred == pairs {
        return Err(MetricError::Constant { which: "predicted" });
    }
    if tied_truth == pairs {
        return Err(MetricError::Constant {
            which: "ground-truth",
        });
    }
    let denom = (((pairs - tied_pred) as f64) * ((pairs - tied_truth) as f64)).sqrt();
    Ok((concordant as f64 - discordant as f64) / denom)
}

/// 1-based ranks with ties sharing the average of the ranks they span
/// (`[10, 20, 20, 30]` → `[1, 2.5, 2.5, 4]`). Inputs must be finite.
pub fn average_ranks(xs: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..xs.len()).collect();
    order.sort_by(|&a, &b| xs[a].total_cmp(&xs[b]));
    let mut ranks = vec![0.0; xs.len()];
    let mut start = 0;
    while start < order.len() {
        let mut end = start + 1;
        while end < order.len() && xs[order[end]] == xs[order[start]] {
            end += 1;
        }
        // Positions start..end (0-based) hold ranks start+1..=end; average.
        let rank = (start + 1 + end) as f64 / 2.0;
        for &i in &order[start..end] {
            ranks[i] = rank;
        }
        start = end;
    }
    ranks
}

/// Predictions and ground truth averaged per generator (paper appendix B,
/// model level), generators in name order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelLevel {
    pub generators: Vec<String>,
    pub mean_pred: Vec<f64>,
    pub mean_truth: Vec<f64>,
    /// Videos per generator.
    pub counts: Vec<usize>,
}

impl ModelLevel {
    /// SRCC/PLCC/KRCC over the generators (needs at least 2 generators).
    pub fn correlations(&self) -> Result<Correlations, MetricError> {
        correlations(&self.mean_pred, &self.mean_truth)
    }
}

/// Averages `pred` and `truth` per generator name.
pub fn aggregate_by_generator<S: AsRef<str>>(
    pred: &[f64],
    truth: &[f64],
    generators: &[S],
) -> Result<ModelLevel, MetricError> {
    check(pred, truth, 1)?;
    if generators.len() != pred.len() {
        return Err(MetricError::LengthMismatch {
            pred: pred.len(),
            truth: generators.len(),
        });
    }
    // name -> (Σ pred, Σ truth, count)
    let mut sums: BTreeMap<&str, (f64, f64, usize)> = BTreeMap::new();
    for ((p, t), g) in pred.iter().zip(truth).zip(generators) {
        let entry = sums.entry(g.as_ref()).or_insert((0.0, 0.0, 0));
        entry.0 += p;
        entry.1 += t;
        entry.2 += 1;
    }
    let mut level = ModelLevel {
        generators: vec![],
        mean_pred: vec![],
        mean_truth: vec![],
        counts: vec![],
    };
    for (name, (sp, st, count)) in sums {
        level.generators.push(name.to_string());
        level.mean_pred.push(sp / count as f64);
        level.mean_truth.push(st / count as f64);
        level.counts.push(count);
    }
    Ok(level)
}

/// Tie thresholds of the pairwise preference accuracy.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PairwiseConfig {
    /// The judge predicts a tie when its two scores differ by less than this
    /// (Q-Save appendix A: 0.05, on the [0, 1] softmax-expectation score;
    /// multiply by M − m if the scores were mapped to the MOS scale).
    pub pred_tie_threshold: f64,
    /// Two videos are a human tie when their MOS differ by at most this
    /// (0: only exactly equal MOS).
    pub truth_tie_threshold: f64,
}

impl Default for PairwiseConfig {
    fn default() -> Self {
        PairwiseConfig {
            pred_tie_threshold: 0.05,
            truth_tie_threshold: 0.0,
        }
    }
}

/// Pairwise preference accuracy over all pairs of items.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PairwiseAccuracy {
    /// Over all pairs: the predicted label (A better, B better, tie) equals
    /// the human label.
    pub with_ties: f64,
    /// Over the pairs humans did not tie: the sign of the score difference
    /// equals the human preference (no tie band; equal scores are wrong).
    /// `None` when every pair is a human tie.
    pub without_ties: Option<f64>,
    pub pairs: usize,
    pub truth_ties: usize,
    pub predicted_ties: usize,
}

/// Pairwise preference accuracy of predictions against MOS, over every
/// unordered pair of distinct items.
///
/// For a pair (i, j) let Δt = truth_i − truth_j and Δp = pred_i − pred_j.
/// The human label is "tie" if |Δt| ≤ `truth_tie_threshold`, else sign(Δt).
/// - **with ties** (Q-Save appendix B: "if the score difference is below a
///   small threshold, we predict a tie"): the predicted label is "tie" if
///   |Δp| < `pred_tie_threshold` or Δp = 0, else sign(Δp); accuracy is the
///   fraction of all pairs whose predicted label equals the human label.
/// - **without ties**: human ties are dropped; a pair is correct iff
///   sign(Δp) = sign(Δt), and Δp = 0 counts as wrong. This is
///   `calc_accuracy_without_ties` of the VideoGen-RewardBench evaluation
///   (VideoAlign), i.e. C / (C + D) with no model tie band.
///
/// Pairwise preference benchmarks with a tie-calibrated "w/ ties" accuracy
/// (Deutsch et al. 2023, searching the threshold that maximises accuracy)
/// differ from this fixed-threshold version; Q-Save fixes it at 0.05.
pub fn pairwise_accuracy(
    pred: &[f64],
    truth: &[f64],
    config: &PairwiseConfig,
) -> Result<PairwiseAccuracy, MetricError> {
    check(pred, truth, 2)?;
    let n = pred.len();
    let pairs = (0..n).flat_map(|i| (i + 1..n).map(move |j| (i, j)));
    count_pairs(pred, truth, pairs, config).ok_or(MetricError::NoPairs)
}

/// [`pairwise_accuracy`] over the pairs of items that share a group key
/// only — e.g. videos generated from the same prompt, the pairs a preference
/// benchmark would show side by side.
pub fn pairwise_accuracy_within<K: Eq + Hash>(
    pred: &[f64],
    truth: &[f64],
    groups: &[K],
    config: &PairwiseConfig,
) -> Result<PairwiseAccuracy, MetricError> {
    check(pred, truth, 2)?;
    if groups.len() != pred.len() {
        return Err(MetricError::LengthMismatch {
            pred: pred.len(),
            truth: groups.len(),
        });
    }
    // Item indices per group, in first-seen order (deterministic).
    let mut members: HashMap<&K, Vec<usize>> = HashMap::new();
    let mut order: Vec<&K> = Vec::new();
    for (i, key) in groups.iter().enumerate() {
        members
            .entry(key)
            .or_insert_with(|| {
                order.push(key);
                Vec::new()
            })
            .push(i);
    }
    let pairs = order.iter().flat_map(|key| {
        let items = &members[key];
        (0..items.len()).flat_map(move |a| (a + 1..items.len()).map(move |b| (items[a], items[b])))
    });
    count_pairs(pred, truth, pairs, config).ok_or(MetricError::NoPairs)
}

/// Counts the pairwise statistics over the given pairs; `None` if there is
/// no pair.
fn count_pairs(
    pred: &[f64],
    truth: &[f64],
    pairs: impl Iterator<Item = (usize, usize)>,
    config: &PairwiseConfig,
) -> Option<PairwiseAccuracy> {
    let (mut n_pairs, mut truth_ties, mut predicted_ties) = (0usize, 0usize, 0usize);
    let (mut correct_with, mut correct_without) = (0usize, 0usize);
    for (i, j) in pairs {
        let dt = truth[i] - truth[j];
        let dp = pred[i] - pred[j];
        let human = if dt.abs() <= config.truth_tie_threshold {
            0
        } else {
            sign(dt)
        };
        let predicted = if dp.abs() < config.pred_tie_threshold {
            0
        } else {
            sign(dp)
        };
        n_pairs += 1;
        if human == 0 {
            truth_ties += 1;
        }
        if predicted == 0 {
            predicted_ties += 1;
        }
        if predicted == human {
            correct_with += 1;
        }
        if human != 0 && sign(dp) == human {
            correct_without += 1;
        }
    }
    if n_pairs == 0 {
        return None;
    }
    let decided = n_pairs - truth_ties;
    Some(PairwiseAccuracy {
        with_ties: correct_with as f64 / n_pairs as f64,
        without_ties: (decided > 0).then(|| correct_without as f64 / decided as f64),
        pairs: n_pairs,
        truth_ties,
        predicted_ties,
    })
}

/// How well the judge follows the answer format and names the right level.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AnswerStats {
    /// Fraction of well-formed answers.
    pub format_rate: f64,
    /// Fraction of all answers that are well formed and name the label.
    pub exact_rating_accuracy: f64,
    pub n: usize,
}

/// Format-following rate and exact-rating accuracy of parsed answers.
pub fn answer_stats(
    answers: &[Result<Answer, FormatViolation>],
    labels: &[Rating],
) -> Result<AnswerStats, MetricError> {
    if answers.len() != labels.len() {
        return Err(MetricError::LengthMismatch {
            pred: answers.len(),
            truth: labels.len(),
        });
    }
    if answers.is_empty() {
        return Err(MetricError::TooFew { n: 0, min: 1 });
    }
    let n = answers.len();
    let formatted = answers.iter().filter(|a| a.is_ok()).count();
    let exact = answers
        .iter()
        .zip(labels)
        .filter(|(a, l)| matches!(a, Ok(answer) if answer.rating == **l))
        .count();
    Ok(AnswerStats {
        format_rate: formatted as f64 / n as f64,
        exact_rating_accuracy: exact as f64 / n as f64,
        n,
    })
}

fn sign(x: f64) -> i8 {
    if x > 0.0 {
        1
    } else if x < 0.0 {
        -1
    } else {
        0
    }
}

fn check(pred: &[f64], truth: &[f64], min: usize) -> Result<(), MetricError> {
    if pred.len() != truth.len() {
        return Err(MetricError::LengthMismatch {
            pred: pred.len(),
            truth: truth.len(),
        });
    }
    if pred.len() < min {
        return Err(MetricError::TooFew { n: pred.len(), min });
    }
    for (which, xs) in [("predicted", pred), ("ground-truth", truth)] {
        if let Some((index, &value)) = xs.iter().enumerate().find(|(_, x)| !x.is_finite()) {
            return Err(MetricError::NonFinite {
                which,
                index,
                value,
            });
        }
    }
    Ok(())
}

/// Pearson's r; the caller has checked lengths and finiteness.
fn pearson(x: &[f64], y: &[f64]) -> Result<f64, MetricError> {
    let n = x.len() as f64;
    let mx = x.iter().sum::<f64>() / n;
    let my = y.iter().sum::<f64>() / n;
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (a, b) in x.iter().zip(y) {
        let (dx, dy) = (a - mx, b - my);
        sxy += dx * dy;
        sxx += dx * dx;
        syy += dy * dy;
    }
    if sxx == 0.0 {
        return Err(MetricError::Constant { which: "predicted" });
    }
    if syy == 0.0 {
        return Err(MetricError::Constant {
            which: "ground-truth",
        });
    }
    // Clamp rounding excursions just past ±1.
    Ok((sxy / (sxx.sqrt() * syy.sqrt())).clamp(-1.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn average_ranks_share_tied_positions() {
        assert_eq!(
            average_ranks(&[10.0, 20.0, 20.0, 30.0]),
            vec![1.0, 2.5, 2.5, 4.0]
        );
        assert_eq!(
            average_ranks(&[3.0, 1.0, 3.0, 3.0, 2.0]),
            vec![4.0, 1.0, 4.0, 4.0, 2.0]
        );
    }

    #[test]
    fn srcc_with_ties_by_hand() {
        // pred ranks [1, 2.5, 2.5, 4], truth ranks [1, 2, 3, 4].
        // Centered: p = [-1.5, 0, 0, 1.5], t = [-1.5, -.5, .5, 1.5];
        // Σpt = 4.5, Σp² = 4.5, Σt² = 5 → 4.5/√(4.5·5) = √0.9.
        let r = srcc(&[0.1, 0.5, 0.5, 0.9], &[1.0, 2.0, 3.0, 4.0]).unwrap();
        assert!(close(r, 0.9f64.sqrt()), "{r}");
        // Monotone but nonlinear: SRCC 1, PLCC < 1.
        let x = [1.0, 2.0, 3.0, 4.0];
        let y = [1.0, 8.0, 27.0, 64.0];
        assert!(close(srcc(&x, &y).unwrap(), 1.0));
        assert!(plcc(&x, &y).unwrap() < 0.99);
        assert!(close(srcc(&x, &[4.0, 3.0, 2.0, 1.0]).unwrap(), -1.0));
    }

    #[test]
    fn plcc_by_hand() {
        // x = [1, 2, 3], y = [1, 3, 2]: centered [-1, 0, 1], [-1, 1, 0];
        // Σxy = 1, Σx² = 2, Σy² = 2 → 0.5.
        assert!(close(
            plcc(&[1.0, 2.0, 3.0], &[1.0, 3.0, 2.0]).unwrap(),
            0.5
        ));
        // Invariant to affine maps of either side.
        assert!(close(
            plcc(&[1.0, 2.0, 3.0], &[3.0, 7.0, 5.0]).unwrap(),
            0.5
        ));
    }

    #[test]
    fn krcc_tau_b_with_ties_by_hand() {
        // pred [1, 2, 2, 3], truth [1, 2, 3, 3]: 6 pairs.
        // (0,1) C, (0,2) C, (0,3) C, (1,2) pred tie, (1,3) C, (2,3) truth tie.
        // n_c = 4, n_d = 0, n_1 = 1, n_2 = 1 → 4/√(5·5) = 0.8.
        assert!(close(
            krcc(&[1.0, 2.0, 2.0, 3.0], &[1.0, 2.0, 3.0, 3.0]).unwrap(),
            0.8
        ));
        // No ties: [1,2,3] vs [1,3,2]: C = 2, D = 1 → 1/3.
        assert!(close(
            krcc(&[1.0, 2.0, 3.0], &[1.0, 3.0, 2.0]).unwrap(),
            1.0 / 3.0
        ));
        // A pair tied in both lists: [1,1,2] vs [5,5,6]: n_c = 2, n_1 = n_2 = 1
        // → 2/√(2·2) = 1.
        assert!(close(
            krcc(&[1.0, 1.0, 2.0], &[5.0, 5.0, 6.0]).unwrap(),
            1.0
        ));
    }

    #[test]
    fn undefined_and_bad_inputs_are_errors() {
        assert_eq!(
            plcc(&[1.0, 1.0], &[1.0, 2.0]),
            Err(MetricError::Constant { which: "predicted" })
        );
        assert_eq!(
            srcc(&[1.0, 2.0], &[3.0, 3.0]),
            Err(MetricError::Constant {
                which: "ground-truth"
            })
        );
        assert_eq!(
            krcc(&[1.0, 1.0, 1.0], &[1.0, 2.0, 3.0]),
            Err(MetricError::Constant { which: "predicted" })
        );
        assert_eq!(
            srcc(&[1.0], &[1.0]),
            Err(MetricError::TooFew { n: 1, min: 2 })
        );
        assert_eq!(
            plcc(&[1.0, 2.0], &[1.0]),
            Err(MetricError::LengthMismatch { pred: 2, truth: 1 })
        );
        assert!(matches!(
            srcc(&[1.0, f64::NAN], &[1.0, 2.0]),
            Err(MetricError::NonFinite { index: 1, .. })
        ));
    }

    #[test]
    fn model_level_aggregation_by_hand() {
        // Generator a: pred (0.2, 0.4) → 0.3, MOS (2, 3) → 2.5.
        // Generator b: pred 0.9 → 0.9, MOS 4.5.
        // Generator c: pred (0.5, 0.6, 0.7) → 0.6, MOS (3, 4, 2) → 3.
        let pred = [0.2, 0.9, 0.5, 0.4, 0.6, 0.7];
        let mos = [2.0, 4.5, 3.0, 3.0, 4.0, 2.0];
        let gens = ["a", "b", "c", "a", "c", "c"];
        let level = aggregate_by_generator(&pred, &mos, &gens).unwrap();
        assert_eq!(level.generators, vec!["a", "b", "c"]);
        assert_eq!(level.counts, vec![2, 1, 3]);
        for (got, want) in level.mean_pred.iter().zip([0.3, 0.9, 0.6]) {
            assert!((got - want).abs() < 1e-12);
        }
        assert_eq!(level.mean_truth, vec![2.5, 4.5, 3.0]);
        // Means (0.3, 0.9, 0.6) vs (2.5, 4.5, 3): same order → SRCC = KRCC = 1.
        // PLCC: centered x = (−.3, .3, 0), y = (−5/6, 7/6, −1/3);
        // Σxy = .6, Σx² = .18, Σy² = 13/6 → .6/√.39.
        let c = level.correlations().unwrap();
        assert!(close(c.srcc, 1.0) && close(c.krcc, 1.0), "{c:?}");
        assert!((c.plcc - 0.6 / 0.39f64.sqrt()).abs() < 1e-9, "{c:?}");
        assert_eq!(c.n, 3);
        // Instance level on the same data is worse: a model-level metric
        // hides within-generator errors.
        assert!(srcc(&pred, &mos).unwrap() < 0.9);
    }

    #[test]
    fn pairwise_accuracy_by_hand() {
        // Items 0..4: MOS [1, 2, 2, 4], pred [0.10, 0.50, 0.52, 0.30].
        // Pairs (Δt, Δp, human, predicted with τ = .05):
        // (0,1) −1, −.40: −, −  ✓ both
        // (0,2) −1, −.42: −, −  ✓ both
        // (0,3) −3, −.20: −, −  ✓ both
        // (1,2)  0, −.02: tie, tie ✓ with ties (dropped without)
        // (1,3) −2, +.20: −, +  ✗ both
        // (2,3) −2, +.22: −, +  ✗ both
        let pred = [0.10, 0.50, 0.52, 0.30];
        let mos = [1.0, 2.0, 2.0, 4.0];
        let acc = pairwise_accuracy(&pred, &mos, &PairwiseConfig::default()).unwrap();
        assert_eq!((acc.pairs, acc.truth_ties, acc.predicted_ties), (6, 1, 1));
        assert!(close(acc.with_ties, 4.0 / 6.0));
        assert!(close(acc.without_ties.unwrap(), 3.0 / 5.0));
        // A wider human tie band makes (0,1), (0,2) ties too (|Δt| ≤ 1):
        // with ties they are now wrong (judge prefers), without ties they drop.
        let wide = PairwiseConfig {
            pred_tie_threshold: 0.05,
            truth_tie_threshold: 1.0,
        };
        let acc = pairwise_accuracy(&pred, &mos, &wide).unwrap();
        assert_eq!(acc.truth_ties, 3);
        assert!(close(acc.with_ties, 2.0 / 6.0));
        assert!(close(acc.without_ties.unwrap(), 1.0 / 3.0));
        // Equal predictions are a predicted tie even with τ = 0, and wrong
        // without ties.
        let exact = PairwiseConfig {
            pred_tie_threshold: 0.0,
            truth_tie_threshold: 0.0,
        };
        let acc = pairwise_accuracy(&[0.5, 0.5], &[1.0, 2.0], &exact).unwrap();
        assert_eq!(
            (acc.with_ties, acc.without_ties, acc.predicted_ties),
            (0.0, Some(0.0), 1)
        );
        // All human ties: no "without ties" accuracy.
        let acc = pairwise_accuracy(&[0.1, 0.9], &[3.0, 3.0], &exact).unwrap();
        assert_eq!(acc.without_ties, None);
    }

    #[test]
    fn pairwise_accuracy_within_groups_by_hand() {
        // Prompts p: items 0, 2; q: items 1, 3, 4; r: item 5 (no pair).
        // p (0,2): Δt = 1 − 3 < 0, Δp = .2 − .6 < 0 ✓.
        // q (1,3): Δt = 4 − 2 > 0, Δp = .3 − .5 < 0 ✗.
        // q (1,4): Δt = 4 − 4 = 0 tie, Δp = .3 − .31 → tie ✓ (with ties only).
        // q (3,4): Δt = 2 − 4 < 0, Δp = .5 − .31 > 0 ✗.
        let pred = [0.2, 0.3, 0.6, 0.5, 0.31, 0.9];
        let mos = [1.0, 4.0, 3.0, 2.0, 4.0, 5.0];
        let prompts = ["p", "q", "p", "q", "q", "r"];
        let acc =
            pairwise_accuracy_within(&pred, &mos, &prompts, &PairwiseConfig::default()).unwrap();
        assert_eq!((acc.pairs, acc.truth_ties, acc.predicted_ties), (4, 1, 1));
        assert!(close(acc.with_ties, 2.0 / 4.0));
        assert!(close(acc.without_ties.unwrap(), 1.0 / 3.0));
        // Only singleton groups: nothing to compare.
        assert_eq!(
            pairwise_accuracy_within(
                &[0.1, 0.2],
                &[1.0, 2.0],
                &["a", "b"],
                &PairwiseConfig::default()
            ),
            Err(MetricError::NoPairs)
        );
    }

    #[test]
    fn answer_stats_by_hand() {
        let answers = vec![
            Ok(Answer {
                rationale: "x".into(),
                rating: Rating::Good,
            }),
            Ok(Answer {
                rationale: "x".into(),
                rating: Rating::Bad,
            }),
            Err(FormatViolation::EmptyRationale),
            Ok(Answer {
                rationale: "x".into(),
                rating: Rating::Fair,
            }),
        ];
        let labels = [Rating::Good, Rating::Poor, Rating::Good, Rating::Fair];
        let stats = answer_stats(&answers, &labels).unwrap();
        assert_eq!(
            stats,
            AnswerStats {
                format_rate: 0.75,
                exact_rating_accuracy: 0.5,
                n: 4
            }
        );
    }
}

//! The GRPO reward of one rollout: R = R_acc + λ·R_fmt (docs/design.md, "Reward").
//!
//! - R_fmt = 1 iff the completion is a well-formed answer in the expected
//!   layout ([`parse_answer`]): a non-empty `<think>…</think>` rationale and
//!   exactly one exact rating word, nothing else but whitespace.
//! - R_acc ∈ [0, 1] scores a well-formed answer's rating against its row
//!   ([`Target`]: the label R(MOS) and the MOS), in the form
//!   `grpo.accuracy_reward` names ([`AccuracyReward`]): `exact`, the paper's
//!   and the default (1 iff the rating equals the label), or a graded one,
//!   `distance` or `gaussian`. A malformed answer has no rating (see
//!   [`crate::text::parse`]), so it gets R_acc = 0 under every form, and
//!   format hacks such as two ratings, a rating only inside the think block
//!   or text after the rating earn neither term.
//! - Whether the rating equals the label is kept as a fact of its own
//!   ([`RewardBreakdown::exact`]), whatever the form: it selects the
//!   cool-off rows and is logged as `reward/exact`, so runs with different
//!   forms compare on one number.
//!
//! The terms are kept apart on every rollout ([`RewardBreakdown`]) so the
//! trainer can log reward per term and the accuracy.

use crate::data::{MosScale, Rating};
use crate::text::parse::{Answer, FormatViolation, parse_answer};
use crate::text::prompt::AnswerOrder;
use serde::{Deserialize, Serialize};

/// The form of R_acc (`grpo.accuracy_reward`). With i the answer's rating
/// index and j the label's (Bad..Excellent = 0..4):
///
/// | form | R_acc of a well-formed answer | one off | two off |
/// |---|---|---|---|
/// | `exact` | 1 if i = j, else 0 | 0 | 0 |
/// | `distance` | 1 − \|i − j\|/4 | 0.75 | 0.5 |
/// | `gaussian` | exp(−(c_i − μ)² / (2σ²)) | by the MOS | by the MOS |
///
/// A malformed answer gets 0 under every form.
///
/// A VisualQuality-R1 style fidelity reward is not offered: it compares
/// the predicted and the true preference probability of *pairs* of videos
/// (Thurstone), so a rollout's reward would depend on the other groups of
/// the batch, which the per-rollout reward here does not see.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AccuracyReward {
    /// The paper's: R_acc = 1 iff the rating equals the label R(MOS).
    #[default]
    Exact,
    /// R_acc = 1 − |i − j|/4: linear in the distance on the five-level
    /// scale, 1, 0.75, 0.5, 0.25, 0. It uses the label only.
    Distance,
    /// R_acc = exp(−(c_i − μ)² / (2σ²)), where μ is the row's MOS mapped to
    /// [0, 1] (`(mos − m)/(M − m)`) and c_i the centre of rating i's
    /// interval there: rating i of 5 on `[m, M]` covers
    /// `(m + i(M − m)/5, m + (i + 1)(M − m)/5]`, centre
    /// `m + (i + ½)(M − m)/5`, normalised `c_i = (i + ½)/5` = 0.1, 0.3, 0.5,
    /// 0.7, 0.9. σ is `grpo.accuracy_sigma` (default
    /// [`DEFAULT_ACCURACY_SIGMA`]). The centre nearest μ is the label's
    /// centre, so for any σ the label earns the most (ties only at an
    /// interval's edge), and a near miss is paid by how near the MOS lies
    /// to it: a MOS at the top of Fair pays Good almost as much as Fair.
    Gaussian,
}

/// σ of the `gaussian` accuracy reward on the normalised MOS scale: 0.1,
/// half a rating interval (an interval is 0.2 wide; on a 1–5 scale σ is
/// 0.4 MOS points). Then
/// - the label earns ≥ e^{−1/2} ≈ 0.61 wherever the MOS lies in its
///   interval (1 at its centre, e^{−1/2} at an edge);
/// - the neighbour on the near side earns between e^{−2} ≈ 0.14 (MOS at the
///   label's centre) and e^{−1/2} (MOS at the shared edge, a tie: the MOS
///   is as close to either rating);
/// - a rating two or more off earns ≤ e^{−4.5} ≈ 0.011, about what a wrong
///   answer earns under `exact`.
///
/// So the reward is graded where a rating is plausibly right: σ is 1.6 times
/// the synthetic set's rater noise (0.25 MOS points = 0.0625 normalised),
/// and a neighbour the noise could have made the label is paid as such,
/// while hedging is not. A σ of a whole interval (0.2) would pay an
/// always-`Fair` judge 0.50 on average over labels at their interval
/// centres, against 0.25 with σ = 0.1 (and 0.2 under `exact`), rewarding
/// the hedging GRPO already drifts to; `distance` is the form for a signal
/// over the whole scale.
pub const DEFAULT_ACCURACY_SIGMA: f32 = 0.1;

impl AccuracyReward {
    /// R_acc of a well-formed answer rated `rating` against `target`; `sigma`
    /// is used by `gaussian` only.
    pub fn score(self, rating: Rating, target: &Target, sigma: f32) -> f32 {
        match self {
            AccuracyReward::Exact => {
                if rating == target.label {
                    1.0
                } else {
                    0.0
                }
            }
            AccuracyReward::Distance => {
                1.0 - rating.index().abs_diff(target.label.index()) as f32 / 4.0
            }
            AccuracyReward::Gaussian => {
                let d = centre(rating) - f64::from(target.mos);
                let sigma = f64::from(sigma);
                (-(d * d) / (2.0 * sigma * sigma)).exp() as f32
            }
        }
    }
}

/// The centre of `rating`'s interval on the MOS scale mapped to [0, 1]:
/// `(i + ½)/5`, whatever the scale.
fn centre(rating: Rating) -> f64 {
    (rating.index() as f64 + 0.5) / 5.0
}

/// What a rollout is scored against: its row's label and MOS.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Target {
    /// R(MOS), the rating whose interval holds the MOS (paper §3.4.2).
    pub label: Rating,
    /// The MOS mapped to [0, 1] ([`MosScale::normalise`]).
    pub mos: f32,
}

impl Target {
    /// The target of a row with MOS `mos` on `scale`.
    pub fn new(mos: f32, scale: &MosScale) -> Target {
        Target {
            label: scale.rating(mos),
            mos: scale.normalise(mos),
        }
    }
}

/// Reward weights and the form of the accuracy term.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RewardConfig {
    /// λ, the weight of the format term (paper appendix A: 0.5).
    pub format_weight: f32,
    /// The form of R_acc (default: the paper's exact match).
    pub accuracy: AccuracyReward,
    /// σ of the `gaussian` form on the normalised MOS scale.
    pub accuracy_sigma: f32,
}

impl Default for RewardConfig {
    fn default() -> Self {
        RewardConfig {
            format_weight: 0.5,
            accuracy: AccuracyReward::Exact,
            accuracy_sigma: DEFAULT_ACCURACY_SIGMA,
        }
    }
}

/// The reward of one rollout, per term.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RewardBreakdown {
    /// R_acc ∈ [0, 1] ({0, 1} under `exact`); 0 for a malformed answer.
    pub acc: f32,
    /// R_fmt ∈ {0, 1} (unweighted).
    pub fmt: f32,
    /// R = acc + λ·fmt.
    pub total: f32,
    /// The answer is well formed and its rating equals the label, whatever
    /// the accuracy form (under `exact`, iff `acc == 1`).
    pub exact: bool,
}

impl RewardBreakdown {
    /// The reward of an already parsed completion against its target.
    pub fn of(
        parsed: &Result<Answer, FormatViolation>,
        target: &Target,
        config: &RewardConfig,
    ) -> Self {
        let (acc, fmt, exact) = match parsed {
            Ok(answer) => (
                config
                    .accuracy
                    .score(answer.rating, target, config.accuracy_sigma),
                1.0,
                answer.rating == target.label,
            ),
            Err(_) => (0.0, 0.0, false),
        };
        RewardBreakdown {
            acc,
            fmt,
            total: acc + config.format_weight * fmt,
            exact,
        }
    }
}

/// A rollout's parsed answer together with its reward.
#[derive(Debug, Clone, PartialEq)]
pub struct JudgedCompletion {
    pub answer: Result<Answer, FormatViolation>,
    pub reward: RewardBreakdown,
}

/// Parses `completion` in the `order` layout and scores it against `target`.
pub fn judge_completion(
    completion: &str,
    order: AnswerOrder,
    target: &Target,
    config: &RewardConfig,
) -> JudgedCompletion {
    let answer = parse_answer(completion, order);
    let reward = RewardBreakdown::of(&answer, target, config);
    JudgedCompletion { answer, reward }
}

#[cfg(test)]
mod tests {
    use super::*;
    use AnswerOrder::{RatingFirst, ThinkFirst};

    /// Format hacks, each checked against a label of Good.
    const HACKS: [&str; 13] = [
        "<think></think>Good",                      // empty rationale
        "<think> \n</think>Good",                   // blank rationale
        "<think>x</think>Good Good",                // two ratings
        "<think>x</think>Good Excellent",           // two different ratings
        "<think>The rating is Good</think>",        // rating only inside think
        "<think>x</think>Good, because it is nice", // text after the rating
        "<think>x</think>good",                     // wrong case
        "<think>x</think>GOOD",                     // wrong case
        "<think>x</think>Goood",                    // misspelt
        "<think>a<think>b</think>c</think>Good",    // nested think
        "<think>a</think><think>b</think>Good",     // two think blocks
        "<think>x",                                 // truncated
        "Good",                                     // no rationale at all
    ];

    /// A row whose MOS sits at the centre of `label`'s interval.
    fn at(label: Rating) -> Target {
        Target {
            label,
            mos: centre(label) as f32,
        }
    }

    fn reward(text: &str, order: AnswerOrder, label: Rating) -> RewardBreakdown {
        judge_completion(text, order, &at(label), &RewardConfig::default()).reward
    }

    /// An `exact`-form breakdown: the rating matched iff R_acc = 1.
    fn breakdown(acc: f32, fmt: f32, total: f32) -> RewardBreakdown {
        RewardBreakdown {
            acc,
            fmt,
            total,
            exact: acc == 1.0,
        }
    }

    fn with(accuracy: AccuracyReward) -> RewardConfig {
        RewardConfig {
            accuracy,
            ..RewardConfig::default()
        }
    }

    /// R_acc under `config` of the well-formed answer `rating` for a row
    /// with MOS `mos` on the 1–5 scale, checked against its breakdown.
    fn acc_of(rating: Rating, mos: f32, config: &RewardConfig) -> f32 {
        let target = Target::new(mos, &MosScale::default());
        let text = format!("<think>x</think>{rating}");
        let r = judge_completion(&text, ThinkFirst, &target, config).reward;
        assert_eq!(r.fmt, 1.0);
        assert_eq!(r.total, r.acc + config.format_weight);
        assert_eq!(r.exact, rating == target.label, "{rating} at MOS {mos}");
        r.acc
    }

    fn assert_near(got: f32, want: f64) {
        assert!(
            (f64::from(got) - want).abs() < 1e-6,
            "got {got}, want {want}"
        );
    }

    #[test]
    fn correct_wrong_and_malformed_answers() {
        let good = Rating::Good;
        assert_eq!(
            reward("<think>sharp</think>Good", ThinkFirst, good),
            breakdown(1.0, 1.0, 1.5)
        );
        assert_eq!(
            reward("<think>sharp</think>Fair", ThinkFirst, good),
            breakdown(0.0, 1.0, 0.5)
        );
        assert_eq!(
            reward("Good<think>sharp</think>", RatingFirst, good),
            breakdown(1.0, 1.0, 1.5)
        );
        // A think-first answer checked as rating-first is malformed.
        assert_eq!(
            reward("<think>sharp</think>Good", RatingFirst, good),
            breakdown(0.0, 0.0, 0.0)
        );
    }

    #[test]
    fn reward_hacking_gets_nothing() {
        let label = Rating::Good;
        for hack in HACKS {
            assert_eq!(
                reward(hack, ThinkFirst, label),
                breakdown(0.0, 0.0, 0.0),
                "{hack:?}"
            );
        }
    }

    #[test]
    fn format_weight_scales_only_the_format_term() {
        let config = RewardConfig {
            format_weight: 0.25,
            ..RewardConfig::default()
        };
        let judged = judge_completion("<think>x</think>Bad", ThinkFirst, &at(Rating::Bad), &config);
        assert_eq!(judged.reward, breakdown(1.0, 1.0, 1.25));
        let judged = judge_completion(
            "<think>x</think>Poor",
            ThinkFirst,
            &at(Rating::Bad),
            &config,
        );
        assert_eq!(judged.reward, breakdown(0.0, 1.0, 0.25));
        assert_eq!(judged.answer.map(|a| a.rating), Ok(Rating::Poor));
    }

    #[test]
    fn the_default_reward_is_the_papers_exact_match() {
        let config = RewardConfig::default();
        assert_eq!(config.accuracy, AccuracyReward::Exact);
        for label in Rating::ALL {
            for rating in Rating::ALL {
                let want = if rating == label { 1.0 } else { 0.0 };
                assert_eq!(
                    acc_of(rating, 1.0 + 4.0 * centre(label) as f32, &config),
                    want
                );
            }
        }
    }

    #[test]
    fn distance_reward_on_hand_computed_values() {
        let config = with(AccuracyReward::Distance);
        let t = |label| at(label);
        let acc = |rating: Rating, label| config.accuracy.score(rating, &t(label), 0.1);
        use Rating::*;
        // 1 − |i − j|/4 with Bad..Excellent = 0..4.
        assert_eq!(acc(Good, Fair), 0.75); // |3 − 2| = 1
        assert_eq!(acc(Fair, Good), 0.75);
        assert_eq!(acc(Fair, Bad), 0.5); // |2 − 0| = 2
        assert_eq!(acc(Poor, Excellent), 0.25); // |1 − 4| = 3
        assert_eq!(acc(Excellent, Bad), 0.0); // |4 − 0| = 4
        for r in Rating::ALL {
            assert_eq!(acc(r, r), 1.0);
        }
        // Through the judge: predicted Good, MOS 3.0 (label Fair).
        let judged = judge_completion("<think>x</think>Good", ThinkFirst, &t(Fair), &config);
        assert_eq!(
            judged.reward,
            RewardBreakdown {
                acc: 0.75,
                fmt: 1.0,
                total: 1.25,
                exact: false,
            }
        );
        assert_eq!(acc_of(Good, 3.0, &config), 0.75);
        assert_eq!(acc_of(Fair, 3.0, &config), 1.0);
    }

    #[test]
    fn gaussian_reward_on_hand_computed_values() {
        // σ = 0.1 (the default). Centres c_i = (i + ½)/5 = 0.1, 0.3, 0.5,
        // 0.7, 0.9; μ = (mos − 1)/4.
        let config = with(AccuracyReward::Gaussian);
        assert_eq!(config.accuracy_sigma, 0.1);
        use Rating::*;
        // MOS 3.8 (Good's centre): μ = 0.7.
        assert_near(acc_of(Good, 3.8, &config), 1.0); // d = 0
        // d = 0.2: exp(−0.04/0.02) = e^−2 = 0.1353352832.
        assert_near(acc_of(Fair, 3.8, &config), 0.135_335_283_2);
        assert_near(acc_of(Excellent, 3.8, &config), 0.135_335_283_2);
        // d = 0.4: exp(−0.16/0.02) = e^−8 = 0.0003354626.
        assert_near(acc_of(Poor, 3.8, &config), 0.000_335_462_6);
        // MOS 4.0 (label Good): μ = 0.75.
        // Good, d = 0.05: exp(−0.0025/0.02) = e^−0.125 = 0.8824969026.
        assert_near(acc_of(Good, 4.0, &config), 0.882_496_902_6);
        // Excellent, d = 0.15: exp(−0.0225/0.02) = e^−1.125 = 0.3246524674.
        assert_near(acc_of(Excellent, 4.0, &config), 0.324_652_467_4);
        // Fair, d = 0.25: exp(−0.0625/0.02) = e^−3.125 = 0.0439369336.
        assert_near(acc_of(Fair, 4.0, &config), 0.043_936_933_6);
        // MOS 3.4, the top of Fair: μ = 0.6 is 0.1 from both Fair and Good,
        // e^−0.5 = 0.6065306597 each; only Fair is the exact match.
        assert_near(acc_of(Fair, 3.4, &config), 0.606_530_659_7);
        assert_near(acc_of(Good, 3.4, &config), 0.606_530_659_7);
        // MOS 2.2 (Poor's centre, μ = 0.3), Excellent at 0.9: d = 0.6,
        // e^−18 = 1.52e−8.
        assert_near(acc_of(Excellent, 2.2, &config), 1.523e-8);
        // σ = 0.2, MOS 3.0 (μ = 0.5), Good: d = 0.2, exp(−0.04/0.08) = e^−0.5.
        let wide = RewardConfig {
            accuracy_sigma: 0.2,
            ..config
        };
        assert_near(acc_of(Good, 3.0, &wide), 0.606_530_659_7);
        // The MOS is normalised on its own scale: MOS 50 of 0–100 is μ = 0.5,
        // and Good (c = 0.7) earns e^−2 as at MOS 3.0 of 1–5.
        let percent = MosScale {
            min: 0.0,
            max: 100.0,
        };
        let target = Target::new(50.0, &percent);
        assert_eq!(target.label, Fair);
        assert_near(config.accuracy.score(Good, &target, 0.1), 0.135_335_283_2);
    }

    #[test]
    fn the_label_earns_the_most_under_every_form() {
        let scale = MosScale::default();
        for form in [
            AccuracyReward::Exact,
            AccuracyReward::Distance,
            AccuracyReward::Gaussian,
        ] {
            // MOS 1.0 to 5.0 in steps of 0.05.
            for k in 0..=80 {
                let target = Target::new(1.0 + k as f32 * 0.05, &scale);
                let label = form.score(target.label, &target, 0.1);
                for r in Rating::ALL {
                    let acc = form.score(r, &target, 0.1);
                    assert!((0.0..=1.0).contains(&acc), "{form:?} {r} {target:?}");
                    // Ties only at an interval's edge, within rounding.
                    assert!(
                        acc <= label + 1e-6,
                        "{form:?}: {r} beats the label at {target:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn malformed_answers_get_nothing_under_every_form() {
        let forms = [
            AccuracyReward::Exact,
            AccuracyReward::Distance,
            AccuracyReward::Gaussian,
        ];
        // Every label, so a hack's rating word is sometimes the label.
        for form in forms {
            for label in Rating::ALL {
                for hack in HACKS.into_iter().chain(["", "<think>x</think>"]) {
                    let judged = judge_completion(hack, ThinkFirst, &at(label), &with(form));
                    assert!(judged.answer.is_err(), "{hack:?}");
                    assert_eq!(
                        judged.reward,
                        RewardBreakdown {
                            acc: 0.0,
                            fmt: 0.0,
                            total: 0.0,
                            exact: false,
                        },
                        "{form:?} {label} {hack:?}"
                    );
                }
            }
        }
    }
}

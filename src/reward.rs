//! The GRPO reward of one rollout: R = R_acc + λ·R_fmt (docs/design.md, "Reward").
//!
//! - R_fmt = 1 iff the completion is a well-formed answer in the expected
//!   layout ([`parse_answer`]): a non-empty `<think>…</think>` rationale and
//!   exactly one exact rating word, nothing else but whitespace.
//! - R_acc = 1 iff the answer is well formed and its rating equals the label.
//!   A malformed answer has no rating (see [`crate::text::parse`]), so format
//!   hacks such as two ratings, a rating only inside the think block or text
//!   after the rating earn neither term.
//!
//! The terms are kept apart on every rollout ([`RewardBreakdown`]) so the
//! trainer can log reward per term and the accuracy.

use crate::data::Rating;
use crate::text::parse::{Answer, FormatViolation, parse_answer};
use crate::text::prompt::AnswerOrder;
use serde::{Deserialize, Serialize};

/// Reward weights.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RewardConfig {
    /// λ, the weight of the format term (paper appendix A: 0.5).
    pub format_weight: f32,
}

impl Default for RewardConfig {
    fn default() -> Self {
        RewardConfig { format_weight: 0.5 }
    }
}

/// The reward of one rollout, per term.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RewardBreakdown {
    /// R_acc ∈ {0, 1}.
    pub acc: f32,
    /// R_fmt ∈ {0, 1} (unweighted).
    pub fmt: f32,
    /// R = acc + λ·fmt.
    pub total: f32,
}

impl RewardBreakdown {
    /// The reward of an already parsed completion against its label.
    pub fn of(
        parsed: &Result<Answer, FormatViolation>,
        label: Rating,
        config: &RewardConfig,
    ) -> Self {
        let (acc, fmt) = match parsed {
            Ok(answer) => (if answer.rating == label { 1.0 } else { 0.0 }, 1.0),
            Err(_) => (0.0, 0.0),
        };
        RewardBreakdown {
            acc,
            fmt,
            total: acc + config.format_weight * fmt,
        }
    }
}

/// A rollout's parsed answer together with its reward.
#[derive(Debug, Clone, PartialEq)]
pub struct JudgedCompletion {
    pub answer: Result<Answer, FormatViolation>,
    pub reward: RewardBreakdown,
}

/// Parses `completion` in the `order` layout and scores it against `label`.
pub fn judge_completion(
    completion: &str,
    order: AnswerOrder,
    label: Rating,
    config: &RewardConfig,
) -> JudgedCompletion {
    let answer = parse_answer(completion, order);
    let reward = RewardBreakdown::of(&answer, label, config);
    JudgedCompletion { answer, reward }
}

#[cfg(test)]
mod tests {
    use super::*;
    use AnswerOrder::{RatingFirst, ThinkFirst};

    fn reward(text: &str, order: AnswerOrder, label: Rating) -> RewardBreakdown {
        judge_completion(text, order, label, &RewardConfig::default()).reward
    }

    fn breakdown(acc: f32, fmt: f32, total: f32) -> RewardBreakdown {
        RewardBreakdown { acc, fmt, total }
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
        let hacks = [
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
        for hack in hacks {
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
        };
        let judged = judge_completion("<think>x</think>Bad", ThinkFirst, Rating::Bad, &config);
        assert_eq!(judged.reward, breakdown(1.0, 1.0, 1.25));
        let judged = judge_completion("<think>x</think>Poor", ThinkFirst, Rating::Bad, &config);
        assert_eq!(judged.reward, breakdown(0.0, 1.0, 0.25));
        assert_eq!(judged.answer.map(|a| a.rating), Ok(Rating::Poor));
    }
}

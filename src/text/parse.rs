//! Parsing a judge's completion into its rationale and its rating.
//!
//! Two answer layouts exist (docs/design.md, "The prompt and the answer"):
//! - think-first, `<think>…</think>Good`: the GRPO rollouts and the SFT cold
//!   start;
//! - rating-first, `Good<think>…</think>`: the SFT cool-off data, so the
//!   softmax score can be read at the first answer token.
//!
//! The grammar is strict because the format reward R_fmt and the accuracy
//! reward R_acc are computed from it, and a lenient parser is a reward-hacking
//! surface. A completion is well formed iff, after removing at most one
//! trailing stop marker (see [`STOP_MARKERS`]), it is, with `W` one of the
//! five rating words spelt exactly (`Bad`, `Poor`, `Fair`, `Good`,
//! `Excellent`, case-sensitive) and `R` a rationale that contains a
//! non-whitespace character and no think tag:
//!
//! ```text
//! think-first:   ws* "<think>" R "</think>" ws* W ws*
//! rating-first:  ws* W ws* "<think>" R "</think>" ws*
//! ```
//!
//! Everything else is a [`FormatViolation`] that names what is wrong: an
//! empty `<think></think>`, two ratings, a rating only inside the think
//! block, text after the rating, a wrong-case or misspelt rating word, nested
//! or repeated think blocks, an unclosed (truncated) think block. A malformed
//! answer has no rating at all, so it can earn neither reward term.

use crate::data::Rating;
use thiserror::Error;

use super::prompt::{AnswerOrder, THINK_CLOSE, THINK_OPEN};

/// Qwen's end-of-turn markers. The rollout engine stops on the stop token and
/// returns the text without it, but a decoder that keeps special tokens
/// leaves exactly one at the very end; that marker is not something the model
/// wrote after its answer, so one trailing marker (after trailing whitespace)
/// is removed before parsing. Text after the marker, or a second marker, stays
/// and is then text after the answer.
pub const STOP_MARKERS: [&str; 2] = ["<|im_end|>", "<|endoftext|>"];

/// Violations quote at most this many characters of the offending text, so
/// a long runaway completion does not bloat logs and metrics.
const QUOTE_CHARS: usize = 48;

/// A well-formed answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The text between `<think>` and `</think>`, exactly as written
    /// (not trimmed; guaranteed to contain a non-whitespace character).
    pub rationale: String,
    /// The single rating word outside the think block.
    pub rating: Rating,
}

impl Answer {
    /// Writes the answer in the given layout, with no whitespace added: the
    /// inverse of [`parse_answer`]. The cool-off writer uses this to turn a
    /// think-first rollout into a rating-first training target.
    pub fn render(&self, order: AnswerOrder) -> String {
        match order {
            AnswerOrder::ThinkFirst => {
                format!(
                    "{THINK_OPEN}{}{THINK_CLOSE}{}",
                    self.rationale,
                    self.rating.word()
                )
            }
            AnswerOrder::RatingFirst => {
                format!(
                    "{}{THINK_OPEN}{}{THINK_CLOSE}",
                    self.rating.word(),
                    self.rationale
                )
            }
        }
    }
}

/// Why a completion is not a well-formed answer. The first problem found is
/// reported, checked in this order: emptiness, think-tag structure, the
/// rationale, the rating slot, text outside the answer.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FormatViolation {
    #[error("the completion is empty")]
    Empty,
    #[error("the completion has no <think> tag")]
    MissingThinkOpen,
    #[error("<think> is never closed by </think> (truncated answer?)")]
    UnclosedThink,
    #[error("</think> comes before <think>")]
    CloseBeforeOpen,
    #[error("a <think> block is nested inside another")]
    NestedThink,
    #[error("{count} think blocks; exactly one is allowed")]
    MultipleThinkBlocks { count: usize },
    #[error("the rationale inside <think></think> is empty")]
    EmptyRationale,
    #[error("the rationale contains the chat/vision marker {marker:?}")]
    MarkerInRationale { marker: &'static str },
    #[error("no rating word outside the think block")]
    MissingRating,
    #[error("{} rating words ({found:?}); exactly one is allowed", found.len())]
    MultipleRatings { found: Vec<Rating> },
    #[error("rating word in the wrong case: {found:?}")]
    WrongCase { found: String },
    #[error("not a rating word: {found:?}")]
    NotARating { found: String },
    #[error("text before the rating word: {text:?}")]
    TextBeforeRating { text: String },
    #[error("text after the rating word: {text:?}")]
    TextAfterRating { text: String },
    #[error("text before <think>: {text:?}")]
    TextBeforeThink { text: String },
    #[error("text after </think>: {text:?}")]
    TextAfterThink { text: String },
}

/// Parses a completion in the given layout (see the module docs for the
/// grammar). Returns the rationale and rating, or the first violation.
pub fn parse_answer(completion: &str, order: AnswerOrder) -> Result<Answer, FormatViolation> {
    let text = strip_stop_marker(completion);
    if text.trim().is_empty() {
        return Err(FormatViolation::Empty);
    }
    let block = think_block(text)?;
    let rationale = &text[block.inner_start..block.inner_end];
    let before = &text[..block.open];
    let after = &text[block.inner_end + THINK_CLOSE.len()..];
    let rating = match order {
        AnswerOrder::ThinkFirst => {
            if !before.trim().is_empty() {
                return Err(FormatViolation::TextBeforeThink {
                    text: quote(before.trim()),
                });
            }
            check_rationale(rationale)?;
            rating_slot(after)?
        }
        AnswerOrder::RatingFirst => {
            check_rationale(rationale)?;
            let rating = rating_slot(before)?;
            if !after.trim().is_empty() {
                return Err(FormatViolation::TextAfterThink {
                    text: quote(after.trim()),
                });
            }
            rating
        }
    };
    Ok(Answer {
        rationale: rationale.to_string(),
        rating,
    })
}

/// Removes trailing whitespace and then one trailing stop marker.
fn strip_stop_marker(completion: &str) -> &str {
    let trimmed = completion.trim_end();
    STOP_MARKERS
        .iter()
        .find_map(|marker| trimmed.strip_suffix(marker))
        .unwrap_or(trimmed)
}

/// Byte offsets of the single think block: `open` is where `<think>` starts,
/// the rationale is `inner_start..inner_end`, `</think>` starts at
/// `inner_end`.
struct ThinkBlock {
    open: usize,
    inner_start: usize,
    inner_end: usize,
}

fn think_block(text: &str) -> Result<ThinkBlock, FormatViolation> {
    let opens: Vec<usize> = text.match_indices(THINK_OPEN).map(|(i, _)| i).collect();
    let closes: Vec<usize> = text.match_indices(THINK_CLOSE).map(|(i, _)| i).collect();
    match (opens.as_slice(), closes.as_slice()) {
        ([], _) => Err(FormatViolation::MissingThinkOpen),
        (_, []) => Err(FormatViolation::UnclosedThink),
        (&[open], &[close]) => {
            if close < open {
                Err(FormatViolation::CloseBeforeOpen)
            } else {
                Ok(ThinkBlock {
                    open,
                    inner_start: open + THINK_OPEN.len(),
                    inner_end: close,
                })
            }
        }
        _ => {
            // More than one tag of some kind. A second <think> before the
            // first </think> opens a block inside a block; otherwise the
            // blocks follow each other.
            if opens.len() > 1 && opens[1] < closes[0] {
                Err(FormatViolation::NestedThink)
            } else {
                Err(FormatViolation::MultipleThinkBlocks {
                    count: opens.len().max(closes.len()),
                })
            }
        }
    }
}

/// Chat and vision markers: text the model may emit as tokens but that can
/// never be part of an answer (as training data it would open or close a
/// turn, or shift the video placeholders).
const MARKERS: [&str; 8] = [
    "<|im_start|>",
    "<|im_end|>",
    "<|endoftext|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|video_pad|>",
    "<|image_pad|>",
    "<|vision_pad|>",
];

fn check_rationale(rationale: &str) -> Result<(), FormatViolation> {
    if rationale.trim().is_empty() {
        return Err(FormatViolation::EmptyRationale);
    }
    match MARKERS.iter().find(|m| rationale.contains(**m)) {
        Some(marker) => Err(FormatViolation::MarkerInRationale { marker }),
        None => Ok(()),
    }
}

/// Reads the text outside the think block where the rating belongs: it must
/// be exactly one rating word with only whitespace around it.
fn rating_slot(slot: &str) -> Result<Rating, FormatViolation> {
    let slot = slot.trim();
    if slot.is_empty() {
        return Err(FormatViolation::MissingRating);
    }
    if let Some(rating) = Rating::from_word(slot) {
        return Ok(rating);
    }
    // Classify the failure. Words are maximal alphanumeric runs, so
    // "Good." has the word "Good" and "Good,Fair" has two.
    let words: Vec<&str> = slot
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .collect();
    let exact: Vec<Rating> = words.iter().filter_map(|w| Rating::from_word(w)).collect();
    match exact.as_slice() {
        [] => {
            let wrong_case = words
                .iter()
                .find(|w| Rating::ALL.iter().any(|r| r.word().eq_ignore_ascii_case(w)));
            match wrong_case {
                Some(word) => Err(FormatViolation::WrongCase { found: quote(word) }),
                None => Err(FormatViolation::NotARating { found: quote(slot) }),
            }
        }
        [rating] => match slot.strip_prefix(rating.word()) {
            Some(rest) => Err(FormatViolation::TextAfterRating {
                text: quote(rest.trim()),
            }),
            None => {
                let prefix = slot.split(rating.word()).next().unwrap_or(slot);
                Err(FormatViolation::TextBeforeRating {
                    text: quote(prefix.trim()),
                })
            }
        },
        _ => Err(FormatViolation::MultipleRatings { found: exact }),
    }
}

/// The first [`QUOTE_CHARS`] characters of `text` (cut on a char boundary).
fn quote(text: &str) -> String {
    match text.char_indices().nth(QUOTE_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use AnswerOrder::{RatingFirst, ThinkFirst};
    use FormatViolation as V;

    fn ok(text: &str, order: AnswerOrder) -> Answer {
        match parse_answer(text, order) {
            Ok(answer) => answer,
            Err(v) => panic!("{text:?} should parse, got {v}"),
        }
    }

    fn err(text: &str, order: AnswerOrder) -> FormatViolation {
        match parse_answer(text, order) {
            Ok(answer) => panic!("{text:?} should be rejected, parsed as {answer:?}"),
            Err(v) => v,
        }
    }

    #[test]
    fn well_formed_think_first() {
        let a = ok("<think>Sharp frames, no artifacts.</think>Good", ThinkFirst);
        assert_eq!(a.rating, Rating::Good);
        assert_eq!(a.rationale, "Sharp frames, no artifacts.");
        // Surrounding whitespace and newlines are allowed, and the rationale
        // may mention rating words.
        let a = ok(
            "\n<think>\nNot Bad, not Excellent.\n</think>\n  Fair \n",
            ThinkFirst,
        );
        assert_eq!(a.rating, Rating::Fair);
        assert_eq!(a.rationale, "\nNot Bad, not Excellent.\n");
        for r in Rating::ALL {
            assert_eq!(
                ok(&format!("<think>x</think>{}", r.word()), ThinkFirst).rating,
                r
            );
        }
    }

    #[test]
    fn well_formed_rating_first() {
        let a = ok("Excellent<think>Smooth motion.</think>", RatingFirst);
        assert_eq!(a.rating, Rating::Excellent);
        assert_eq!(a.rationale, "Smooth motion.");
        assert_eq!(
            ok(" Poor \n<think> jitter </think>\n", RatingFirst).rating,
            Rating::Poor
        );
    }

    #[test]
    fn one_trailing_stop_marker_is_removed() {
        assert_eq!(
            ok("<think>x</think>Good<|im_end|>", ThinkFirst).rating,
            Rating::Good
        );
        assert_eq!(
            ok("<think>x</think>Good <|endoftext|>\n", ThinkFirst).rating,
            Rating::Good
        );
        assert_eq!(
            ok("Bad<think>x</think><|im_end|>", RatingFirst).rating,
            Rating::Bad
        );
        // Only one, and only at the very end.
        assert!(matches!(
            err("<think>x</think>Good<|im_end|><|im_end|>", ThinkFirst),
            V::TextAfterRating { .. }
        ));
        assert!(matches!(
            err("<think>x</think>Good<|im_end|> more", ThinkFirst),
            V::TextAfterRating { .. }
        ));
    }

    #[test]
    fn reward_hacking_shapes_are_rejected_think_first() {
        assert_eq!(err("<think></think>Good", ThinkFirst), V::EmptyRationale);
        assert_eq!(
            err("<think>sharp<|vision_end|></think>Good", ThinkFirst),
            V::MarkerInRationale {
                marker: "<|vision_end|>"
            }
        );
        assert_eq!(
            err("<think>  \n </think>Good", ThinkFirst),
            V::EmptyRationale
        );
        assert_eq!(
            err("<think>x</think>Good Good", ThinkFirst),
            V::MultipleRatings {
                found: vec![Rating::Good, Rating::Good]
            }
        );
        assert_eq!(
            err("<think>x</think>Good, Excellent", ThinkFirst),
            V::MultipleRatings {
                found: vec![Rating::Good, Rating::Excellent]
            }
        );
        assert_eq!(
            err("<think>It is Good</think>", ThinkFirst),
            V::MissingRating
        );
        assert_eq!(
            err("<think>It is Good</think>  \n", ThinkFirst),
            V::MissingRating
        );
        assert_eq!(
            err("<think>x</think>Good. The video is great.", ThinkFirst),
            V::TextAfterRating {
                text: ". The video is great.".into()
            }
        );
        assert_eq!(
            err("<think>x</think>Good.", ThinkFirst),
            V::TextAfterRating { text: ".".into() }
        );
        assert_eq!(
            err("<think>x</think>Rating: Good", ThinkFirst),
            V::TextBeforeRating {
                text: "Rating:".into()
            }
        );
        assert_eq!(
            err("<think>x</think>good", ThinkFirst),
            V::WrongCase {
                found: "good".into()
            }
        );
        assert_eq!(
            err("<think>x</think>EXCELLENT", ThinkFirst),
            V::WrongCase {
                found: "EXCELLENT".into()
            }
        );
        assert_eq!(
            err("<think>x</think>Exellent", ThinkFirst),
            V::NotARating {
                found: "Exellent".into()
            }
        );
        assert_eq!(
            err("<think>x</think>4/5", ThinkFirst),
            V::NotARating {
                found: "4/5".into()
            }
        );
        assert_eq!(
            err("<think>a<think>b</think>c</think>Good", ThinkFirst),
            V::NestedThink
        );
        assert_eq!(
            err("<think>a</think><think>b</think>Good", ThinkFirst),
            V::MultipleThinkBlocks { count: 2 }
        );
        assert_eq!(
            err("<think>a</think>Good<think>b</think>", ThinkFirst),
            V::MultipleThinkBlocks { count: 2 }
        );
        assert_eq!(
            err("<think>a</think>Good</think>", ThinkFirst),
            V::MultipleThinkBlocks { count: 2 }
        );
        assert_eq!(
            err("<think>analysis goes on and on", ThinkFirst),
            V::UnclosedThink
        );
        assert_eq!(err("Good", ThinkFirst), V::MissingThinkOpen);
        assert_eq!(err("x</think>Good", ThinkFirst), V::MissingThinkOpen);
        assert_eq!(err("</think>x<think>Good", ThinkFirst), V::CloseBeforeOpen);
        assert_eq!(err("", ThinkFirst), V::Empty);
        assert_eq!(err(" \n<|im_end|>", ThinkFirst), V::Empty);
        // The layout of the other order is not accepted.
        assert_eq!(
            err("Good<think>x</think>", ThinkFirst),
            V::TextBeforeThink {
                text: "Good".into()
            }
        );
    }

    #[test]
    fn reward_hacking_shapes_are_rejected_rating_first() {
        assert_eq!(err("Good<think></think>", RatingFirst), V::EmptyRationale);
        assert_eq!(
            err("Good Fair<think>x</think>", RatingFirst),
            V::MultipleRatings {
                found: vec![Rating::Good, Rating::Fair]
            }
        );
        assert_eq!(
            err("<think>It is Good</think>", RatingFirst),
            V::MissingRating
        );
        assert_eq!(
            err("Good<think>x</think>Good", RatingFirst),
            V::TextAfterThink {
                text: "Good".into()
            }
        );
        assert_eq!(
            err("Good!<think>x</think>", RatingFirst),
            V::TextAfterRating { text: "!".into() }
        );
        assert_eq!(
            err("fair<think>x</think>", RatingFirst),
            V::WrongCase {
                found: "fair".into()
            }
        );
        assert_eq!(
            err("Faire<think>x</think>", RatingFirst),
            V::NotARating {
                found: "Faire".into()
            }
        );
        assert_eq!(
            err("Good<think>a<think>b</think></think>", RatingFirst),
            V::NestedThink
        );
        assert_eq!(err("<think>x</think>Good", RatingFirst), V::MissingRating);
    }

    #[test]
    fn render_inverts_parse() {
        let a = Answer {
            rationale: "Crisp detail.".into(),
            rating: Rating::Good,
        };
        assert_eq!(a.render(ThinkFirst), "<think>Crisp detail.</think>Good");
        assert_eq!(a.render(RatingFirst), "Good<think>Crisp detail.</think>");
        for order in [ThinkFirst, RatingFirst] {
            assert_eq!(ok(&a.render(order), order), a);
        }
    }

    #[test]
    fn long_offending_text_is_quoted_briefly() {
        let tail = "é".repeat(500);
        match err(&format!("<think>x</think>{tail}"), ThinkFirst) {
            V::NotARating { found } => assert_eq!(found.chars().count(), QUOTE_CHARS + 1),
            v => panic!("unexpected {v:?}"),
        }
    }
}

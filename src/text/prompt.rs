//! The judge's user prompt: the paper's chain-of-thought template (Q-Save
//! §3.4.1), one per quality dimension. This module is the only place the
//! wording lives; the tests pin it character for character, and the
//! embedded tiny tokenizer is trained on its renderings.
//!
//! The rendered prompt is two lines that follow the video in the user turn:
//!
//! ```text
//! The video was generated from this prompt: "{generation prompt}"
//! Judge its {dimension} based on the following {n} criteria: {criteria}.
//! Considering the above video standards, you need to answer the following
//! two questions: 1. Provide quality analysis of the video in this dimension.
//! 2. How would you rate the {dimension} of this video? Your rating can only
//! be selected from the following five levels: [Bad, Poor, Fair, Good,
//! Excellent]. Please integrate your answer with the following format:
//! <think>Your analysis here</think>Rating
//! ```
//!
//! (the second line is one line; it is wrapped here for reading).
//!
//! Where this departs from the paper's text, and why:
//! - Question 2 names the dimension being judged; the paper's text says
//!   "visual quality" for every dimension, which would ask a dynamic-quality
//!   judge about the wrong thing.
//! - The criteria count is the real count (visual quality has four) and the
//!   question count is two; the paper says "three" for both.
//! - The first line gives the video's generation prompt. Text-video
//!   alignment cannot be judged without it, and the paper's evaluator uses
//!   the prompt as context for every dimension (§5, Observation 1).
//! - The format line follows the answer order being trained: rating-first
//!   cool-off targets (`Rating<think>…</think>`) are paired with a prompt
//!   that asks for that order, so SFT never teaches the model to disobey its
//!   instruction.

use crate::data::{Dimension, Rating};
use serde::{Deserialize, Serialize};

/// The think tags that wrap the rationale. Both are added tokens in Qwen's
/// tokenizer and in the embedded tiny one.
pub const THINK_OPEN: &str = "<think>";
pub const THINK_CLOSE: &str = "</think>";

/// Which of the two answer layouts a prompt asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AnswerOrder {
    /// `<think>…</think>Rating`: GRPO rollouts and the SFT cold start.
    ThinkFirst,
    /// `Rating<think>…</think>`: SFT cool-off, so the softmax score can be
    /// read at the first answer token.
    RatingFirst,
}

/// One named criterion of a dimension, with the short gloss the judge reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Criterion {
    pub name: &'static str,
    pub gloss: &'static str,
}

const VISUAL_CRITERIA: [Criterion; 4] = [
    Criterion {
        name: "fidelity",
        gloss: "shapes, colours and textures look like the real thing",
    },
    Criterion {
        name: "sharpness",
        gloss: "edges and details are crisp, not blurred",
    },
    Criterion {
        name: "artifacts",
        gloss: "no noise, blocks, banding or distorted regions",
    },
    Criterion {
        name: "aesthetics",
        gloss: "pleasing composition, lighting and colour",
    },
];

const DYNAMIC_CRITERIA: [Criterion; 3] = [
    Criterion {
        name: "smoothness",
        gloss: "motion flows without stutter, jumps or frozen frames",
    },
    Criterion {
        name: "coherence",
        gloss: "objects keep their shape, size and colour from frame to frame",
    },
    Criterion {
        name: "physical plausibility",
        gloss: "movement follows gravity, inertia and contact",
    },
];

const ALIGNMENT_CRITERIA: [Criterion; 3] = [
    Criterion {
        name: "objects",
        gloss: "every object the prompt names is present",
    },
    Criterion {
        name: "attributes",
        gloss: "colours, sizes and counts match the prompt",
    },
    Criterion {
        name: "actions",
        gloss: "the motion matches what the prompt describes",
    },
];

/// The dimension's name as the prompt writes it.
pub fn dimension_name(dimension: Dimension) -> &'static str {
    match dimension {
        Dimension::Visual => "visual quality",
        Dimension::Dynamic => "dynamic quality",
        Dimension::Alignment => "text-video alignment",
    }
}

/// The criteria the judge is told to apply for a dimension.
pub fn criteria(dimension: Dimension) -> &'static [Criterion] {
    match dimension {
        Dimension::Visual => &VISUAL_CRITERIA,
        Dimension::Dynamic => &DYNAMIC_CRITERIA,
        Dimension::Alignment => &ALIGNMENT_CRITERIA,
    }
}

/// How many criteria the dimension has, spelled out for the prompt. Kept
/// beside the lists (the `count_words_match_the_lists` test checks them).
fn criteria_count_word(dimension: Dimension) -> &'static str {
    match dimension {
        Dimension::Visual => "four",
        Dimension::Dynamic | Dimension::Alignment => "three",
    }
}

/// The answer layout the prompt's last sentence shows.
pub fn format_example(order: AnswerOrder) -> String {
    match order {
        AnswerOrder::ThinkFirst => format!("{THINK_OPEN}Your analysis here{THINK_CLOSE}Rating"),
        AnswerOrder::RatingFirst => format!("Rating{THINK_OPEN}Your analysis here{THINK_CLOSE}"),
    }
}

/// The user-turn text that follows the video: see the module docs for the
/// template. `generation_prompt` is the text the video was generated from
/// (the manifest's `prompt`), inserted verbatim.
pub fn user_prompt(dimension: Dimension, generation_prompt: &str, order: AnswerOrder) -> String {
    let name = dimension_name(dimension);
    let list = criteria(dimension);
    let levels: Vec<&str> = Rating::ALL.iter().map(|r| r.word()).collect();
    format!(
        "The video was generated from this prompt: \"{generation_prompt}\"\n\
         Judge its {name} based on the following {count} criteria: {criteria}. \
         Considering the above video standards, you need to answer the following two questions: \
         1. Provide quality analysis of the video in this dimension. \
         2. How would you rate the {name} of this video? \
         Your rating can only be selected from the following five levels: [{levels}]. \
         Please integrate your answer with the following format: {format}",
        count = criteria_count_word(dimension),
        criteria = criteria_list(list),
        levels = levels.join(", "),
        format = format_example(order),
    )
}

/// `a (x), b (y) and c (z)`.
fn criteria_list(list: &[Criterion]) -> String {
    let items: Vec<String> = list
        .iter()
        .map(|c| format!("{} ({})", c.name, c.gloss))
        .collect();
    match items.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} and {last}", rest.join(", ")),
        Some((last, _)) => last.clone(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn visual_prompt_is_pinned() {
        let text = user_prompt(
            Dimension::Visual,
            "a red ball bounces on a wooden floor",
            AnswerOrder::ThinkFirst,
        );
        assert_eq!(
            text,
            "The video was generated from this prompt: \"a red ball bounces on a wooden floor\"\n\
             Judge its visual quality based on the following four criteria: \
             fidelity (shapes, colours and textures look like the real thing), \
             sharpness (edges and details are crisp, not blurred), \
             artifacts (no noise, blocks, banding or distorted regions) and \
             aesthetics (pleasing composition, lighting and colour). \
             Considering the above video standards, you need to answer the following two questions: \
             1. Provide quality analysis of the video in this dimension. \
             2. How would you rate the visual quality of this video? \
             Your rating can only be selected from the following five levels: \
             [Bad, Poor, Fair, Good, Excellent]. \
             Please integrate your answer with the following format: \
             <think>Your analysis here</think>Rating"
        );
    }

    #[test]
    fn dynamic_prompt_is_pinned() {
        let text = user_prompt(
            Dimension::Dynamic,
            "a blue cube slides left",
            AnswerOrder::ThinkFirst,
        );
        assert_eq!(
            text,
            "The video was generated from this prompt: \"a blue cube slides left\"\n\
             Judge its dynamic quality based on the following three criteria: \
             smoothness (motion flows without stutter, jumps or frozen frames), \
             coherence (objects keep their shape, size and colour from frame to frame) and \
             physical plausibility (movement follows gravity, inertia and contact). \
             Considering the above video standards, you need to answer the following two questions: \
             1. Provide quality analysis of the video in this dimension. \
             2. How would you rate the dynamic quality of this video? \
             Your rating can only be selected from the following five levels: \
             [Bad, Poor, Fair, Good, Excellent]. \
             Please integrate your answer with the following format: \
             <think>Your analysis here</think>Rating"
        );
    }

    #[test]
    fn alignment_rating_first_prompt_is_pinned() {
        let text = user_prompt(
            Dimension::Alignment,
            "two green stars spin",
            AnswerOrder::RatingFirst,
        );
        assert_eq!(
            text,
            "The video was generated from this prompt: \"two green stars spin\"\n\
             Judge its text-video alignment based on the following three criteria: \
             objects (every object the prompt names is present), \
             attributes (colours, sizes and counts match the prompt) and \
             actions (the motion matches what the prompt describes). \
             Considering the above video standards, you need to answer the following two questions: \
             1. Provide quality analysis of the video in this dimension. \
             2. How would you rate the text-video alignment of this video? \
             Your rating can only be selected from the following five levels: \
             [Bad, Poor, Fair, Good, Excellent]. \
             Please integrate your answer with the following format: \
             Rating<think>Your analysis here</think>"
        );
    }

    #[test]
    fn question_two_names_the_judged_dimension() {
        for dimension in Dimension::ALL {
            let text = user_prompt(dimension, "x", AnswerOrder::ThinkFirst);
            let question = format!(
                "2. How would you rate the {} of this video?",
                dimension_name(dimension)
            );
            assert!(text.contains(&question), "{dimension}: {text}");
        }
    }

    #[test]
    fn count_words_match_the_lists() {
        let words = ["zero", "one", "two", "three", "four", "five"];
        for dimension in Dimension::ALL {
            assert_eq!(
                criteria_count_word(dimension),
                words[criteria(dimension).len()],
                "{dimension}"
            );
        }
    }

    #[test]
    fn criteria_list_joins_with_and() {
        let one = [VISUAL_CRITERIA[0]];
        assert_eq!(
            criteria_list(&one),
            "fidelity (shapes, colours and textures look like the real thing)"
        );
        let two = [DYNAMIC_CRITERIA[0], DYNAMIC_CRITERIA[2]];
        assert_eq!(
            criteria_list(&two),
            "smoothness (motion flows without stutter, jumps or frozen frames) and \
             physical plausibility (movement follows gravity, inertia and contact)"
        );
    }
}

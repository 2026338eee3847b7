//! Qwen-VL chat templates: one user turn holding the video then the judge
//! prompt, followed by the opening of the assistant turn, as token ids with
//! the video placeholder expanded to one `<|video_pad|>` per vision token.
//!
//! What the official templates and processors produce (pinned by tests
//! against renderings of the real Jinja templates, see
//! `tests/fixtures/chat/`):
//!
//! Qwen2.5-VL (`chat_template.json` adds a default system turn when the
//! conversation has none; the processor repeats `<|video_pad|>` once per
//! merged patch of the whole video):
//!
//! ```text
//! <|im_start|>system\nYou are a helpful assistant.<|im_end|>\n
//! <|im_start|>user\n<|vision_start|><|video_pad|>×N<|vision_end|>{text}<|im_end|>\n
//! <|im_start|>assistant\n
//! ```
//!
//! Qwen3-VL (no default system turn; the processor replaces the template's
//! `<|vision_start|><|video_pad|><|vision_end|>` with one block per temporal
//! group, each preceded by its timestamp written with one decimal):
//!
//! ```text
//! <|im_start|>user\n<0.5 seconds><|vision_start|><|video_pad|>×n₁<|vision_end|>
//! <1.5 seconds><|vision_start|><|video_pad|>×n₂<|vision_end|>…{text}<|im_end|>\n
//! <|im_start|>assistant\n
//! ```
//!
//! (the `\n`s are newline characters; lines are broken here for reading).
//! An SFT target is the assistant's answer followed by `<|im_end|>`; the
//! template's trailing newline after it is not trained (generation stops
//! at `<|im_end|>`).

use crate::data::{Dimension, Rating};
use crate::text::prompt::{AnswerOrder, user_prompt};
use crate::text::tokenizer::{RatingSite, SpecialTokens, Tokenizer, TokenizerError};
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Qwen2.5-VL's default system message.
pub const QWEN25_DEFAULT_SYSTEM: &str = "You are a helpful assistant.";

/// Which model family's chat template and video placeholder layout to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ChatTemplate {
    /// Qwen2.5-VL: default system turn, one vision block for the video.
    Qwen25Vl,
    /// Qwen3-VL: no system turn, one timestamped vision block per temporal
    /// group.
    Qwen3Vl,
}

impl ChatTemplate {
    /// The template for a HuggingFace `config.json` `model_type`.
    pub fn from_model_type(model_type: &str) -> Option<ChatTemplate> {
        match model_type {
            "qwen2_5_vl" => Some(ChatTemplate::Qwen25Vl),
            "qwen3_vl" => Some(ChatTemplate::Qwen3Vl),
            _ => None,
        }
    }
}

/// One temporal group of the video as the vision tower encodes it: the
/// frames merged by the temporal patch (2 for Qwen-VL) give `tokens`
/// merged patches. `timestamp_s` is the group's time in seconds, which
/// Qwen3-VL writes as text before the group (the processor uses the mean
/// of the group's first and last frame times); Qwen2.5-VL ignores it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct VideoGroup {
    pub timestamp_s: f64,
    pub tokens: usize,
}

#[derive(Debug, Error)]
pub enum ChatError {
    #[error("a video needs at least one frame group")]
    NoVideoGroups,
    #[error("video frame group {index} has no vision tokens")]
    EmptyGroup { index: usize },
    #[error(
        "video frame group {index} has timestamp {timestamp_s} s; timestamps must be finite, \
         non-negative and non-decreasing"
    )]
    BadTimestamp { index: usize, timestamp_s: f64 },
    #[error(
        "the {part} contains the chat/vision marker {token:?}; it would open or close a turn \
         or shift the video placeholders"
    )]
    ReservedToken {
        part: &'static str,
        token: &'static str,
    },
    #[error("temporal patch size must be at least 1")]
    ZeroTemporalPatch,
    #[error(transparent)]
    Tokenizer(#[from] TokenizerError),
    #[error(
        "the answer {answer:?} does not put {rating}'s token {expected} where a {order:?} \
         answer keeps its rating (answer token {index}, found {found:?})"
    )]
    RatingTokenNotFound {
        answer: String,
        rating: Rating,
        order: AnswerOrder,
        expected: u32,
        index: usize,
        found: Option<u32>,
    },
}

/// A tokenised prompt, ready for prefill: ends with the opening of the
/// assistant turn (`<|im_start|>assistant\n`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromptTokens {
    pub ids: Vec<u32>,
    /// How many `<|video_pad|>` ids `ids` holds: must equal the number of
    /// vision embeddings the model substitutes for them.
    pub video_pad_count: usize,
}

/// A tokenised SFT example: prompt, answer, closing `<|im_end|>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SftExample {
    pub ids: Vec<u32>,
    /// `true` where `ids[i]` is a target (the answer tokens and the final
    /// `<|im_end|>`), `false` on the prompt. Same length as `ids`.
    pub target_mask: Vec<bool>,
    /// Number of prompt ids (the first target is `ids[prompt_len]`).
    pub prompt_len: usize,
    /// Index in `ids` of the rating word's first token: the logits at
    /// `rating_index - 1` are the ones the softmax score reads.
    pub rating_index: usize,
    pub video_pad_count: usize,
}

/// A piece of the rendered conversation. Runs of video pads are kept as
/// counts so a long video never becomes a long string, and text pieces
/// always meet pads at an added token, so encoding piece by piece gives
/// the same ids as encoding the whole rendered text.
enum Piece {
    Text(String),
    VideoPads(usize),
}

/// Markers that must not occur in user or answer text: each one would be
/// encoded as its special token (as transformers does too) and so forge
/// turn boundaries or vision placeholders. The think tags are allowed: the
/// prompt and the answers use them.
const RESERVED_MARKERS: [&str; 8] = [
    SpecialTokens::IM_START,
    SpecialTokens::IM_END,
    SpecialTokens::ENDOFTEXT,
    SpecialTokens::VISION_START,
    SpecialTokens::VISION_END,
    SpecialTokens::VIDEO_PAD,
    SpecialTokens::IMAGE_PAD,
    "<|vision_pad|>",
];

fn check_text(part: &'static str, text: &str) -> Result<(), ChatError> {
    match RESERVED_MARKERS.iter().find(|m| text.contains(*m)) {
        Some(token) => Err(ChatError::ReservedToken { part, token }),
        None => Ok(()),
    }
}

/// Timestamps of the temporal groups the way Qwen3-VL's processor computes
/// them: frames are taken `temporal_patch` at a time (2 for Qwen3-VL), the
/// last frame repeated to fill the final group, and each group is stamped
/// with the mean of its first and last frame times. `frame_times_s` are the
/// sampled frames' times in seconds, in order.
pub fn qwen3_group_timestamps(
    frame_times_s: &[f64],
    temporal_patch: usize,
) -> Result<Vec<f64>, ChatError> {
    if temporal_patch == 0 {
        return Err(ChatError::ZeroTemporalPatch);
    }
    Ok(frame_times_s
        .chunks(temporal_patch)
        .map(|chunk| {
            // A short final chunk is padded with its last frame, so its
            // last time is the chunk's own last.
            let first = chunk[0];
            let last = chunk[chunk.len() - 1];
            (first + last) / 2.0
        })
        .collect())
}

fn check_groups(groups: &[VideoGroup]) -> Result<(), ChatError> {
    if groups.is_empty() {
        return Err(ChatError::NoVideoGroups);
    }
    let mut previous = 0.0;
    for (index, group) in groups.iter().enumerate() {
        if group.tokens == 0 {
            return Err(ChatError::EmptyGroup { index });
        }
        let t = group.timestamp_s;
        if !t.is_finite() || t < previous {
            return Err(ChatError::BadTimestamp {
                index,
                timestamp_s: t,
            });
        }
        previous = t;
    }
    Ok(())
}

/// Qwen3-VL's timestamp text, `<1.5 seconds>` (Python's `f"{t:.1f}"`).
fn timestamp_text(timestamp_s: f64) -> String {
    format!("<{timestamp_s:.1} seconds>")
}

fn prompt_pieces(template: ChatTemplate, groups: &[VideoGroup], user_text: &str) -> Vec<Piece> {
    let vision_start = SpecialTokens::VISION_START;
    let vision_end = SpecialTokens::VISION_END;
    let im_start = SpecialTokens::IM_START;
    let im_end = SpecialTokens::IM_END;
    let mut pieces = Vec::with_capacity(2 * groups.len() + 2);
    match template {
        ChatTemplate::Qwen25Vl => {
            pieces.push(Piece::Text(format!(
                "{im_start}system\n{QWEN25_DEFAULT_SYSTEM}{im_end}\n{im_start}user\n{vision_start}"
            )));
            pieces.push(Piece::VideoPads(groups.iter().map(|g| g.tokens).sum()));
            pieces.push(Piece::Text(format!(
                "{vision_end}{user_text}{im_end}\n{im_start}assistant\n"
            )));
        }
        ChatTemplate::Qwen3Vl => {
            let mut text = format!("{im_start}user\n");
            for group in groups {
                text.push_str(&timestamp_text(group.timestamp_s));
                text.push_str(vision_start);
                pieces.push(Piece::Text(std::mem::take(&mut text)));
                pieces.push(Piece::VideoPads(group.tokens));
                text.push_str(vision_end);
            }
            text.push_str(&format!("{user_text}{im_end}\n{im_start}assistant\n"));
            pieces.push(Piece::Text(text));
        }
    }
    pieces
}

/// The rendered prompt text with every video pad written out, as the
/// official template plus processor produce it (for inspection and
/// fixtures; the model path uses [`encode_prompt`]).
pub fn render_prompt_text(
    template: ChatTemplate,
    groups: &[VideoGroup],
    user_text: &str,
) -> Result<String, ChatError> {
    check_groups(groups)?;
    check_text("user text", user_text)?;
    let mut out = String::new();
    for piece in prompt_pieces(template, groups, user_text) {
        match piece {
            Piece::Text(text) => out.push_str(&text),
            Piece::VideoPads(n) => out.push_str(&SpecialTokens::VIDEO_PAD.repeat(n)),
        }
    }
    Ok(out)
}

/// Token ids of the prompt: chat template around one video and `user_text`.
pub fn encode_prompt(
    tokenizer: &Tokenizer,
    template: ChatTemplate,
    groups: &[VideoGroup],
    user_text: &str,
) -> Result<PromptTokens, ChatError> {
    check_groups(groups)?;
    check_text("user text", user_text)?;
    let video_pad = tokenizer.special().video_pad;
    let mut ids = Vec::new();
    let mut video_pad_count = 0;
    for piece in prompt_pieces(template, groups, user_text) {
        match piece {
            Piece::Text(text) => ids.extend(tokenizer.encode(&text)?),
            Piece::VideoPads(n) => {
                ids.extend(std::iter::repeat_n(video_pad, n));
                video_pad_count += n;
            }
        }
    }
    Ok(PromptTokens {
        ids,
        video_pad_count,
    })
}

/// The judge prompt for a video: [`user_prompt`] inside the chat template.
pub fn encode_judge_prompt(
    tokenizer: &Tokenizer,
    template: ChatTemplate,
    groups: &[VideoGroup],
    dimension: Dimension,
    generation_prompt: &str,
    order: AnswerOrder,
) -> Result<PromptTokens, ChatError> {
    let text = user_prompt(dimension, generation_prompt, order);
    encode_prompt(tokenizer, template, groups, &text)
}

/// The assistant turn's trained text: the answer and the end-of-turn token.
pub fn assistant_target_text(answer: &str) -> String {
    format!("{answer}{}", SpecialTokens::IM_END)
}

/// Tokenises an SFT example: `prompt`, then `answer` (rendered in `order`,
/// e.g. by `parse::Answer::render`) and `<|im_end|>` as targets. Checks
/// that `rating`'s first token sits where `order` puts it (first answer
/// token, or right after the last `</think>`) and returns its index.
pub fn encode_sft(
    tokenizer: &Tokenizer,
    prompt: &PromptTokens,
    answer: &str,
    rating: Rating,
    order: AnswerOrder,
) -> Result<SftExample, ChatError> {
    check_text("answer", answer)?;
    let answer_ids = tokenizer.encode(answer)?;
    let expected = tokenizer.ratings().id(rating, RatingSite::for_order(order));
    let answer_index = match order {
        AnswerOrder::RatingFirst => 0,
        AnswerOrder::ThinkFirst => {
            let think_close = tokenizer.special().think_close;
            answer_ids
                .iter()
                .rposition(|&id| id == think_close)
                .map_or(answer_ids.len(), |i| i + 1)
        }
    };
    let found = answer_ids.get(answer_index).copied();
    if found != Some(expected) {
        return Err(ChatError::RatingTokenNotFound {
            answer: answer.to_string(),
            rating,
            order,
            expected,
            index: answer_index,
            found,
        });
    }
    let prompt_len = prompt.ids.len();
    let mut ids = Vec::with_capacity(prompt_len + answer_ids.len() + 1);
    ids.extend_from_slice(&prompt.ids);
    ids.extend_from_slice(&answer_ids);
    ids.push(tokenizer.special().im_end);
    let mut target_mask = vec![false; prompt_len];
    target_mask.resize(ids.len(), true);
    Ok(SftExample {
        ids,
        target_mask,
        prompt_len,
        rating_index: prompt_len + answer_index,
        video_pad_count: prompt.video_pad_count,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn groups() -> Vec<VideoGroup> {
        vec![
            VideoGroup {
                timestamp_s: 0.25,
                tokens: 2,
            },
            VideoGroup {
                timestamp_s: 1.0,
                tokens: 3,
            },
        ]
    }

    #[test]
    fn qwen25_prompt_text_is_pinned() {
        let text = render_prompt_text(ChatTemplate::Qwen25Vl, &groups(), "Rate it.").unwrap();
        assert_eq!(
            text,
            "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n\
             <|vision_start|><|video_pad|><|video_pad|><|video_pad|><|video_pad|><|video_pad|>\
             <|vision_end|>Rate it.<|im_end|>\n<|im_start|>assistant\n"
        );
    }

    #[test]
    fn qwen3_prompt_text_is_pinned() {
        let text = render_prompt_text(ChatTemplate::Qwen3Vl, &groups(), "Rate it.").unwrap();
        // 0.25 is a tie in binary; Python's format rounds it to even, "0.2".
        assert_eq!(
            text,
            "<|im_start|>user\n<0.2 seconds><|vision_start|><|video_pad|><|video_pad|><|vision_end|>\
             <1.0 seconds><|vision_start|><|video_pad|><|video_pad|><|video_pad|><|vision_end|>\
             Rate it.<|im_end|>\n<|im_start|>assistant\n"
        );
    }

    #[test]
    fn timestamps_round_like_python() {
        // Python: f"{x:.1f}" for these values (ties go to the nearest even
        // digit of the exact binary value).
        let cases = [
            (0.05, "0.1"),
            (0.15, "0.1"),
            (0.25, "0.2"),
            (0.35, "0.3"),
            (0.45, "0.5"),
            (0.75, "0.8"),
            (1.25, "1.2"),
            (2.675, "2.7"),
            (10.0, "10.0"),
        ];
        for (t, want) in cases {
            assert_eq!(timestamp_text(t), format!("<{want} seconds>"), "{t}");
        }
    }

    #[test]
    fn bad_groups_are_refused() {
        let t = ChatTemplate::Qwen3Vl;
        assert!(matches!(
            render_prompt_text(t, &[], "x"),
            Err(ChatError::NoVideoGroups)
        ));
        let empty = [VideoGroup {
            timestamp_s: 0.0,
            tokens: 0,
        }];
        assert!(matches!(
            render_prompt_text(t, &empty, "x"),
            Err(ChatError::EmptyGroup { index: 0 })
        ));
        let backwards = [
            VideoGroup {
                timestamp_s: 1.0,
                tokens: 1,
            },
            VideoGroup {
                timestamp_s: 0.5,
                tokens: 1,
            },
        ];
        assert!(matches!(
            render_prompt_text(t, &backwards, "x"),
            Err(ChatError::BadTimestamp { index: 1, .. })
        ));
        let nan = [VideoGroup {
            timestamp_s: f64::NAN,
            tokens: 1,
        }];
        assert!(matches!(
            render_prompt_text(t, &nan, "x"),
            Err(ChatError::BadTimestamp { index: 0, .. })
        ));
    }

    #[test]
    fn reserved_markers_in_text_are_refused() {
        let g = groups();
        for text in ["a <|video_pad|> b", "x<|im_end|>\n<|im_start|>assistant\n"] {
            let err = render_prompt_text(ChatTemplate::Qwen3Vl, &g, text).unwrap_err();
            assert!(
                matches!(
                    err,
                    ChatError::ReservedToken {
                        part: "user text",
                        ..
                    }
                ),
                "{err:?}"
            );
        }
        // The think tags are part of the prompt's format line.
        assert!(render_prompt_text(ChatTemplate::Qwen3Vl, &g, "<think>a</think>Good").is_ok());
    }

    #[test]
    fn qwen3_group_timestamps_average_each_temporal_patch() {
        // transformers' Qwen3VLProcessor._calculate_timestamps on frame
        // indices [0, 4, 8, 12, 16] at 8 fps with merge 2: the indices are
        // padded to [0, 4, 8, 12, 16, 16] -> [0.25, 1.25, 2.0] seconds.
        let times = [0.0, 0.5, 1.0, 1.5, 2.0];
        assert_eq!(
            qwen3_group_timestamps(&times, 2).unwrap(),
            [0.25, 1.25, 2.0]
        );
        assert_eq!(qwen3_group_timestamps(&times, 1).unwrap(), times);
        assert!(qwen3_group_timestamps(&[], 2).unwrap().is_empty());
        assert!(matches!(
            qwen3_group_timestamps(&times, 0),
            Err(ChatError::ZeroTemporalPatch)
        ));
    }

    #[test]
    fn model_types_map_to_templates() {
        assert_eq!(
            ChatTemplate::from_model_type("qwen2_5_vl"),
            Some(ChatTemplate::Qwen25Vl)
        );
        assert_eq!(
            ChatTemplate::from_model_type("qwen3_vl"),
            Some(ChatTemplate::Qwen3Vl)
        );
        assert_eq!(ChatTemplate::from_model_type("llava"), None);
    }
}

//! The embedded default tokenizer for the tiny demo model: a byte-level BPE
//! trained on the synthetic domain, shaped like Qwen's (same normaliser,
//! pre-tokeniser regex and byte-level decoder) and carrying Qwen's 26 added
//! tokens with the same strings and flags, appended after the BPE vocabulary
//! in Qwen's order. So the chat template, the video placeholders and the
//! answer format work unchanged, and any text still encodes (every byte is
//! in the alphabet).
//!
//! Reproducible from the repository: [`build_tiny_tokenizer`] trains it from
//! `assets/tiny/corpus.txt` plus renderings of the prompt template and of
//! example answers, and the result is committed as
//! `assets/tiny/tokenizer.json` (regenerate with
//! `cargo run --release --example build_tiny_tokenizer`). A test rebuilds it
//! and compares byte for byte, so the committed file cannot drift from its
//! recipe; the BPE trainer is deterministic (merge ties break on token ids,
//! which come from the sorted byte alphabet).

use crate::data::{Dimension, Rating};
use crate::text::chat::{ChatError, ChatTemplate, VideoGroup, render_prompt_text};
use crate::text::prompt::{AnswerOrder, THINK_CLOSE, THINK_OPEN, user_prompt};
use crate::text::tokenizer::{Tokenizer, TokenizerError};
use thiserror::Error;
use tokenizers::models::bpe::{BPE, BpeTrainerBuilder};
use tokenizers::normalizers::unicode::NFC;
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{AddedToken, SplitDelimiterBehavior, TokenizerBuilder};

/// The committed tokenizer, embedded so the default needs no files.
pub const TINY_TOKENIZER_JSON: &str = include_str!("../../assets/tiny/tokenizer.json");

/// The domain text it is trained on (comment lines start with `#`).
pub const TINY_CORPUS: &str = include_str!("../../assets/tiny/corpus.txt");

/// Target size of the BPE vocabulary (256 byte symbols plus merges), before
/// the 26 added tokens.
pub const TINY_BPE_VOCAB_SIZE: usize = 1024;

/// Qwen's pre-tokeniser: contractions, letter runs with one optional
/// leading non-letter, single digits, punctuation runs, newlines, spaces.
const QWEN_SPLIT_REGEX: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// Qwen2.5/Qwen3's added tokens in id order, with their `special` flag
/// (the think and tool tags are added but not special: decoding with
/// `skip_special` keeps them).
pub const QWEN_ADDED_TOKENS: [(&str, bool); 26] = [
    ("<|endoftext|>", true),
    ("<|im_start|>", true),
    ("<|im_end|>", true),
    ("<|object_ref_start|>", true),
    ("<|object_ref_end|>", true),
    ("<|box_start|>", true),
    ("<|box_end|>", true),
    ("<|quad_start|>", true),
    ("<|quad_end|>", true),
    ("<|vision_start|>", true),
    ("<|vision_end|>", true),
    ("<|vision_pad|>", true),
    ("<|image_pad|>", true),
    ("<|video_pad|>", true),
    ("<tool_call>", false),
    ("</tool_call>", false),
    ("<|fim_prefix|>", false),
    ("<|fim_middle|>", false),
    ("<|fim_suffix|>", false),
    ("<|fim_pad|>", false),
    ("<|repo_name|>", false),
    ("<|file_sep|>", false),
    ("<tool_response>", false),
    ("</tool_response>", false),
    ("<think>", false),
    ("</think>", false),
];

/// Generation prompts rendered into the corpus, the first in the Qwen2.5-VL
/// template and the second in the Qwen3-VL one.
const EXAMPLE_PROMPTS: [&str; 2] = [
    "a red ball moves left over a grey floor",
    "a blue square bounces and a yellow triangle stays still over a sandy beach",
];

/// Frame groups of the example video rendered into the corpus (Qwen3-VL
/// writes their timestamps as text).
const EXAMPLE_VIDEO: [VideoGroup; 4] = [
    VideoGroup {
        timestamp_s: 0.25,
        tokens: 1,
    },
    VideoGroup {
        timestamp_s: 0.75,
        tokens: 1,
    },
    VideoGroup {
        timestamp_s: 1.25,
        tokens: 1,
    },
    VideoGroup {
        timestamp_s: 1.75,
        tokens: 1,
    },
];

#[derive(Debug, Error)]
pub enum TinyTokenizerError {
    #[error("rendering the tiny tokenizer's corpus failed")]
    Corpus(#[from] ChatError),
    #[error("building the tiny tokenizer failed at {stage}: {message}")]
    Build {
        stage: &'static str,
        message: String,
    },
    #[error("the trained tiny tokenizer is unusable")]
    Unusable(#[from] TokenizerError),
    #[error(
        "the trained tiny tokenizer splits the rating word {word:?} into {count} tokens; \
         raise TINY_BPE_VOCAB_SIZE or the word's frequency in the corpus"
    )]
    RatingNotSingleToken { word: String, count: usize },
}

impl Tokenizer {
    /// The embedded tiny tokenizer ([`TINY_TOKENIZER_JSON`]).
    pub fn tiny() -> Result<Tokenizer, TokenizerError> {
        Tokenizer::from_bytes(TINY_TOKENIZER_JSON.as_bytes(), "embedded tiny tokenizer")
    }
}

/// The training text, one sequence per entry: the corpus file's lines; the
/// judge prompt for every dimension and answer order, once per chat
/// template (each template with its own example prompt); and an example
/// answer for every rating in both orders. Added-token strings are replaced
/// by newlines: they are matched whole before BPE ever sees the text, so
/// their pieces should not spend vocabulary, and a newline keeps a rating
/// word after `</think>` without a leading space, as the judge writes it.
pub fn tiny_corpus() -> Result<Vec<String>, ChatError> {
    let mut texts: Vec<String> = TINY_CORPUS
        .lines()
        .filter(|line| !line.trim().is_empty() && !line.starts_with('#'))
        .map(str::to_string)
        .collect();
    for dimension in Dimension::ALL {
        for order in [AnswerOrder::ThinkFirst, AnswerOrder::RatingFirst] {
            for (prompt, template) in EXAMPLE_PROMPTS
                .into_iter()
                .zip([ChatTemplate::Qwen25Vl, ChatTemplate::Qwen3Vl])
            {
                let user_text = user_prompt(dimension, prompt, order);
                texts.push(render_prompt_text(template, &EXAMPLE_VIDEO, &user_text)?);
            }
        }
    }
    for rating in Rating::ALL {
        let rationale = format!("The video looks {} overall.", rating.word().to_lowercase());
        let word = rating.word();
        texts.push(format!("{THINK_OPEN}{rationale}{THINK_CLOSE}{word}"));
        texts.push(format!("{word}{THINK_OPEN}{rationale}{THINK_CLOSE}"));
        texts.push(format!("I would rate it {word}. The rating is {word}."));
    }
    Ok(texts
        .into_iter()
        .map(|text| {
            QWEN_ADDED_TOKENS
                .iter()
                .fold(text, |t, (token, _)| t.replace(token, "\n"))
        })
        .collect())
}

/// Trains the tiny tokenizer and returns its `tokenizer.json` text
/// (pretty-printed, as committed in `assets/tiny/tokenizer.json`). Fails if
/// a rating word (bare or after a space) is not one token, or if the result
/// does not load as a judge tokenizer.
pub fn build_tiny_tokenizer() -> Result<String, TinyTokenizerError> {
    let build = |stage: &'static str| {
        move |e: Box<dyn std::error::Error + Send + Sync>| TinyTokenizerError::Build {
            stage,
            message: e.to_string(),
        }
    };
    let split = Split::new(
        SplitPattern::Regex(QWEN_SPLIT_REGEX.to_string()),
        SplitDelimiterBehavior::Isolated,
        false,
    )
    .map_err(build("pre-tokenizer regex"))?;
    let pre_tokenizer = Sequence::new(vec![
        PreTokenizerWrapper::Split(split),
        PreTokenizerWrapper::ByteLevel(ByteLevel::new(false, false, false)),
    ]);
    let mut trainable = TokenizerBuilder::new()
        .with_model(BPE::default())
        .with_normalizer(Some(NFC))
        .with_pre_tokenizer(Some(pre_tokenizer))
        .with_post_processor(Some(ByteLevel::new(false, false, false)))
        .with_decoder(Some(ByteLevel::new(false, false, false)))
        .build()
        .map_err(build("tokenizer assembly"))?;
    let mut trainer = BpeTrainerBuilder::new()
        .vocab_size(TINY_BPE_VOCAB_SIZE)
        .min_frequency(1)
        .show_progress(false)
        .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
        .build();
    trainable
        .train(&mut trainer, tiny_corpus()?.into_iter())
        .map_err(build("BPE training"))?;

    let mut tokenizer = tokenizers::Tokenizer::from(trainable);
    for (content, special) in QWEN_ADDED_TOKENS {
        // Qwen's flags: matched verbatim, never normalised or stripped.
        let token = AddedToken::from(content, special).normalized(false);
        if special {
            tokenizer.add_special_tokens(&[token]);
        } else {
            tokenizer.add_tokens(&[token]);
        }
    }
    let json = tokenizer.to_string(true).map_err(build("serialisation"))?;

    let judge = Tokenizer::from_bytes(json.as_bytes(), "freshly built tiny tokenizer")?;
    for rating in Rating::ALL {
        for word in [rating.word().to_string(), format!(" {}", rating.word())] {
            let count = judge.encode(&word)?.len();
            if count != 1 {
                return Err(TinyTokenizerError::RatingNotSingleToken { word, count });
            }
        }
    }
    Ok(json)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn committed_tiny_tokenizer_is_reproducible() {
        let rebuilt = build_tiny_tokenizer().unwrap();
        assert!(
            rebuilt == TINY_TOKENIZER_JSON,
            "assets/tiny/tokenizer.json differs from what its recipe builds; \
             run `cargo run --release --example build_tiny_tokenizer`"
        );
    }

    #[test]
    fn corpus_has_no_added_token_strings() {
        for text in tiny_corpus().unwrap() {
            for (token, _) in QWEN_ADDED_TOKENS {
                assert!(!text.contains(token), "{token} in {text:?}");
            }
        }
    }
}

//! A HuggingFace `tokenizer.json` (through the `tokenizers` crate) with the
//! ids the judge depends on resolved once, at load time, so a tokenizer that
//! cannot serve the recipe fails with a named error instead of producing a
//! wrong score later:
//! - the chat and vision special tokens (`<|im_start|>`, `<|video_pad|>`, …)
//!   and the think tags, each of which must encode to exactly one token;
//! - the first token of each rating word where the judge writes it, which
//!   the softmax-expectation score reads (paper §4.2.2): five distinct ids,
//!   or the score would sum one token's probability twice.
//!
//! `Tokenizer::tiny()` (in `tiny_tokenizer.rs`) loads the embedded default.

use crate::data::Rating;
use crate::text::prompt::{AnswerOrder, THINK_CLOSE};
use std::path::{Path, PathBuf};
use thiserror::Error;

/// Text that opens the assistant turn in every Qwen chat template; a
/// rating-first answer starts right after it.
const ASSISTANT_TURN_OPEN: &str = "<|im_start|>assistant\n";

#[derive(Debug, Error)]
pub enum TokenizerError {
    #[error("cannot read tokenizer file {path}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot parse tokenizer {origin}: {message}")]
    Parse { origin: String, message: String },
    #[error("tokenizer {origin} has no token {token:?} (needed for {role})")]
    MissingToken {
        origin: String,
        token: &'static str,
        role: &'static str,
    },
    #[error(
        "tokenizer {origin}: the text {token:?} encodes to {ids:?}, not to its single token {id}; \
         it must be an added token"
    )]
    NotAtomic {
        origin: String,
        token: &'static str,
        id: u32,
        ids: Vec<u32>,
    },
    #[error("cannot encode {text:?}: {message}")]
    Encode { text: String, message: String },
    #[error("cannot decode {count} token ids: {message}")]
    Decode { count: usize, message: String },
    #[error(
        "tokenizer {origin}: encoding {context:?} followed by {word:?} changes the tokens of \
         {context:?}, so the word has no first token of its own there"
    )]
    MergesAcrossBoundary {
        origin: String,
        context: &'static str,
        word: &'static str,
    },
    #[error(
        "tokenizer {origin}: ratings {first} and {second} share their first token {id} \
         ({token:?}) {position}; the softmax score needs five distinct rating tokens"
    )]
    SharedRatingToken {
        origin: String,
        first: Rating,
        second: Rating,
        id: u32,
        token: String,
        position: &'static str,
    },
}

/// Ids of the special tokens the chat template, the vision placeholders and
/// the answer format use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpecialTokens {
    /// `<|im_start|>`: opens a chat turn.
    pub im_start: u32,
    /// `<|im_end|>`: closes a turn; the rollout stop token.
    pub im_end: u32,
    /// `<|endoftext|>`: end of document; Qwen's pad token, also a stop token.
    pub endoftext: u32,
    /// `<|vision_start|>` / `<|vision_end|>`: bracket a run of vision tokens.
    pub vision_start: u32,
    pub vision_end: u32,
    /// `<|video_pad|>`: one per merged video patch; the model replaces
    /// their embeddings with the vision tower's output.
    pub video_pad: u32,
    /// `<|image_pad|>`: the same for still images.
    pub image_pad: u32,
    /// `<think>` / `</think>`: wrap the rationale.
    pub think_open: u32,
    pub think_close: u32,
}

impl SpecialTokens {
    pub const IM_START: &'static str = "<|im_start|>";
    pub const IM_END: &'static str = "<|im_end|>";
    pub const ENDOFTEXT: &'static str = "<|endoftext|>";
    pub const VISION_START: &'static str = "<|vision_start|>";
    pub const VISION_END: &'static str = "<|vision_end|>";
    pub const VIDEO_PAD: &'static str = "<|video_pad|>";
    pub const IMAGE_PAD: &'static str = "<|image_pad|>";
    pub const THINK_OPEN: &'static str = crate::text::prompt::THINK_OPEN;
    pub const THINK_CLOSE: &'static str = crate::text::prompt::THINK_CLOSE;

    /// The tokens that end a completion: `<|im_end|>` (end of the
    /// assistant turn) and `<|endoftext|>`.
    pub fn stop_ids(&self) -> [u32; 2] {
        [self.im_end, self.endoftext]
    }
}

/// Where in a completion a rating word's first token is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RatingSite {
    /// Right after `</think>` (think-first answers: `…</think>Good`).
    AfterThink,
    /// First token of the assistant answer (rating-first: `Good<think>…`).
    AnswerStart,
    /// After a space (`</think> Good`): not the trained format, but what a
    /// model that adds a space emits; useful for diagnostics.
    Spaced,
}

impl RatingSite {
    /// The site at which the score is read for an answer order.
    pub fn for_order(order: AnswerOrder) -> RatingSite {
        match order {
            AnswerOrder::ThinkFirst => RatingSite::AfterThink,
            AnswerOrder::RatingFirst => RatingSite::AnswerStart,
        }
    }

    fn describe(self) -> &'static str {
        match self {
            RatingSite::AfterThink => "right after </think>",
            RatingSite::AnswerStart => "at the start of the answer",
            RatingSite::Spaced => "after a space",
        }
    }
}

/// First-token ids of the five rating words at each [`RatingSite`], indexed
/// by [`Rating::index`] (Bad first). Each array holds five distinct ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RatingTokens {
    pub after_think: [u32; 5],
    pub answer_start: [u32; 5],
    pub spaced: [u32; 5],
    /// Whether the word right after `</think>` is exactly one token (true
    /// for all five in Qwen3's tokenizer and in the embedded tiny one).
    pub single_token: [bool; 5],
}

impl RatingTokens {
    /// The five first-token ids at a site, Bad first.
    pub fn ids(&self, site: RatingSite) -> [u32; 5] {
        match site {
            RatingSite::AfterThink => self.after_think,
            RatingSite::AnswerStart => self.answer_start,
            RatingSite::Spaced => self.spaced,
        }
    }

    /// The first-token id of one rating at a site.
    pub fn id(&self, rating: Rating, site: RatingSite) -> u32 {
        self.ids(site)[rating.index()]
    }

    /// The rating whose first token at `site` is `id`, if any.
    pub fn rating_of(&self, id: u32, site: RatingSite) -> Option<Rating> {
        let ids = self.ids(site);
        Rating::ALL.into_iter().find(|r| ids[r.index()] == id)
    }
}

/// A loaded tokenizer with its special and rating token ids.
#[derive(Debug, Clone)]
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    /// Where it came from (a path, or "embedded tiny"), for error messages.
    origin: String,
    special: SpecialTokens,
    ratings: RatingTokens,
}

impl Tokenizer {
    /// Loads a `tokenizer.json` file.
    pub fn from_file(path: &Path) -> Result<Tokenizer, TokenizerError> {
        let bytes = std::fs::read(path).map_err(|source| TokenizerError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Tokenizer::from_bytes(&bytes, &path.display().to_string())
    }

    /// Parses `tokenizer.json` content; `origin` names it in errors.
    pub fn from_bytes(bytes: &[u8], origin: &str) -> Result<Tokenizer, TokenizerError> {
        let inner =
            tokenizers::Tokenizer::from_bytes(bytes).map_err(|e| TokenizerError::Parse {
                origin: origin.to_string(),
                message: e.to_string(),
            })?;
        let probe = Probe {
            inner: &inner,
            origin,
        };
        let special = probe.resolve_special()?;
        let ratings = probe.resolve_ratings()?;
        Ok(Tokenizer {
            inner,
            origin: origin.to_string(),
            special,
            ratings,
        })
    }

    /// Where this tokenizer was loaded from.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    pub fn special(&self) -> &SpecialTokens {
        &self.special
    }

    pub fn ratings(&self) -> &RatingTokens {
        &self.ratings
    }

    /// Number of ids, added tokens included (the smallest embedding table
    /// that covers every id this tokenizer can produce).
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// The id of a token string (vocabulary or added token).
    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// The token string of an id (byte-level form for Qwen, e.g. `ĠGood`).
    pub fn token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    /// Encodes text with no BOS/EOS added. Special-token strings in `text`
    /// (`<think>`, `<|im_end|>`, …) become their single ids, as in
    /// transformers.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, TokenizerError> {
        encode_with(&self.inner, text)
    }

    /// Decodes ids to text. With `skip_special` the tokens marked special
    /// (`<|im_end|>`, `<|video_pad|>`, …) are dropped; the think tags are
    /// not marked special in Qwen's tokenizer and always stay.
    pub fn decode(&self, ids: &[u32], skip_special: bool) -> Result<String, TokenizerError> {
        self.inner
            .decode(ids, skip_special)
            .map_err(|e| TokenizerError::Decode {
                count: ids.len(),
                message: e.to_string(),
            })
    }
}

/// Resolves the ids a [`Tokenizer`] caches, before it exists.
struct Probe<'a> {
    inner: &'a tokenizers::Tokenizer,
    origin: &'a str,
}

impl Probe<'_> {
    fn encode(&self, text: &str) -> Result<Vec<u32>, TokenizerError> {
        encode_with(self.inner, text)
    }

    fn token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    fn resolve_special(&self) -> Result<SpecialTokens, TokenizerError> {
        Ok(SpecialTokens {
            im_start: self.atomic_id(SpecialTokens::IM_START, "the chat template")?,
            im_end: self.atomic_id(
                SpecialTokens::IM_END,
                "the chat template and the stop token",
            )?,
            endoftext: self.atomic_id(SpecialTokens::ENDOFTEXT, "the stop token")?,
            vision_start: self.atomic_id(SpecialTokens::VISION_START, "the video placeholder")?,
            vision_end: self.atomic_id(SpecialTokens::VISION_END, "the video placeholder")?,
            video_pad: self.atomic_id(SpecialTokens::VIDEO_PAD, "the video placeholder")?,
            image_pad: self.atomic_id(SpecialTokens::IMAGE_PAD, "the image placeholder")?,
            think_open: self.atomic_id(SpecialTokens::THINK_OPEN, "the answer format")?,
            think_close: self.atomic_id(SpecialTokens::THINK_CLOSE, "the answer format")?,
        })
    }

    /// The id of `token`, checked to be what encoding its text yields.
    fn atomic_id(&self, token: &'static str, role: &'static str) -> Result<u32, TokenizerError> {
        let id = self
            .inner
            .token_to_id(token)
            .ok_or_else(|| TokenizerError::MissingToken {
                origin: self.origin.to_string(),
                token,
                role,
            })?;
        let ids = self.encode(token)?;
        if ids != [id] {
            return Err(TokenizerError::NotAtomic {
                origin: self.origin.to_string(),
                token,
                id,
                ids,
            });
        }
        Ok(id)
    }

    fn resolve_ratings(&self) -> Result<RatingTokens, TokenizerError> {
        let mut ratings = RatingTokens {
            after_think: [0; 5],
            answer_start: [0; 5],
            spaced: [0; 5],
            single_token: [false; 5],
        };
        for rating in Rating::ALL {
            let i = rating.index();
            let word = rating.word();
            let (first, rest) = self.first_token_after(THINK_CLOSE, word)?;
            ratings.after_think[i] = first;
            ratings.single_token[i] = rest == 0;
            ratings.answer_start[i] = self.first_token_after(ASSISTANT_TURN_OPEN, word)?.0;
            ratings.spaced[i] = self.first_token_after(THINK_CLOSE, spaced_word(rating))?.0;
        }
        for site in [
            RatingSite::AfterThink,
            RatingSite::AnswerStart,
            RatingSite::Spaced,
        ] {
            self.check_distinct(&ratings.ids(site), site)?;
        }
        Ok(ratings)
    }

    /// Encodes `context + word` and returns the first token after the
    /// context's tokens and how many more tokens the word takes. Fails if
    /// the word merges with the context's last token.
    fn first_token_after(
        &self,
        context: &'static str,
        word: &'static str,
    ) -> Result<(u32, usize), TokenizerError> {
        let boundary = || TokenizerError::MergesAcrossBoundary {
            origin: self.origin.to_string(),
            context,
            word,
        };
        let prefix = self.encode(context)?;
        let joined = self.encode(&format!("{context}{word}"))?;
        if !joined.starts_with(&prefix) {
            return Err(boundary());
        }
        let tail = &joined[prefix.len()..];
        let (&first, rest) = tail.split_first().ok_or_else(boundary)?;
        Ok((first, rest.len()))
    }

    fn check_distinct(&self, ids: &[u32; 5], site: RatingSite) -> Result<(), TokenizerError> {
        for (a, &id_a) in ids.iter().enumerate() {
            for (b, &id_b) in ids.iter().enumerate().skip(a + 1) {
                if id_a == id_b {
                    return Err(TokenizerError::SharedRatingToken {
                        origin: self.origin.to_string(),
                        first: Rating::ALL[a],
                        second: Rating::ALL[b],
                        id: id_a,
                        token: self.token(id_a).unwrap_or_default(),
                        position: site.describe(),
                    });
                }
            }
        }
        Ok(())
    }
}

fn encode_with(inner: &tokenizers::Tokenizer, text: &str) -> Result<Vec<u32>, TokenizerError> {
    let encoding = inner
        .encode(text, false)
        .map_err(|e| TokenizerError::Encode {
            text: text.to_string(),
            message: e.to_string(),
        })?;
    Ok(encoding.get_ids().to_vec())
}

/// `" Good"` etc. as static strings (the error type keeps `&'static str`).
fn spaced_word(rating: Rating) -> &'static str {
    match rating {
        Rating::Bad => " Bad",
        Rating::Poor => " Poor",
        Rating::Fair => " Fair",
        Rating::Good => " Good",
        Rating::Excellent => " Excellent",
    }
}

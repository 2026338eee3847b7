//! Judging a batch of prepared videos: the softmax-expectation score at the
//! rating position, and (optionally) the greedy answer it belongs to.
//!
//! Where the rating position is depends on the answer layout the model was
//! trained for (docs/design.md, "The prompt and the answer"):
//! - **think-first** (cold start, GRPO): the model first writes its
//!   rationale. It is generated greedily (the rollout engine with one sample
//!   per prompt, temperature 0), then prompt + completion up to and including
//!   the last `</think>` is teacher-forced and the five rating-token logits
//!   are read at the position after `</think>`. When the model never closed
//!   its think block, `</think>` is appended to what it wrote and the score
//!   is read there; the answer then fails the format check (counted).
//! - **rating-first** (cool-off): the rating is the first answer token, so
//!   the logits at the last prompt position are read directly. Generation
//!   only serves the format statistics and the rationale, and can be off.
//!
//! All prompts of a batch share one left-padded forward pass; completions
//! are right-padded after them, so each row's rating position is
//! `prompt width + prefix length − 1`.

use crate::inputs::HostVideo;
use crate::model::position::TOKEN_TEXT;
use crate::model::{ModelError, QwenVl};
use crate::rng::Rng;
use crate::rollout::{
    FinishReason, GroupPrompt, RolloutConfig, Tokens, generate, left_padded_batch,
};
use crate::sampling::SamplingConfig;
use crate::score::{expected_score_of, gather_rating_logits};
use crate::text::{
    Answer, AnswerOrder, FormatViolation, RatingSite, Tokenizer, TokenizerError, parse_answer,
};
use burn::tensor::{Device, Int, Tensor, TensorData};

#[derive(Debug, thiserror::Error)]
pub enum JudgeError {
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Tokenizer(#[from] TokenizerError),
    #[error("reading the rating logits back from the device: {0}")]
    Readback(String),
}

/// How the judge answers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct JudgeSettings {
    /// The layout the model was trained to answer in.
    pub order: AnswerOrder,
    /// Longest generated answer.
    pub max_new_tokens: usize,
    /// Generate the answer (always done for think-first; for rating-first it
    /// only feeds the format statistics and the rationale).
    pub generate: bool,
}

/// One prompt to judge: the chat-templated judging prompt (ending with the
/// assistant turn's opening) and its video.
#[derive(Debug, Clone, Copy)]
pub struct JudgeInput<'a> {
    pub prompt_ids: &'a [u32],
    pub video: &'a HostVideo,
}

/// The greedy answer of one prompt.
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    /// Decoded text, without the stop token, special tokens kept (a stray
    /// special token is then visible, and fails the format).
    pub text: String,
    /// The parsed answer, or the first format problem.
    pub answer: Result<Answer, FormatViolation>,
    /// Think-first: whether the model wrote `</think>` itself (false: it was
    /// appended to read the score). Always true for rating-first.
    pub closed_think: bool,
    /// Generated tokens (stop token included).
    pub tokens: usize,
    pub finish: FinishReason,
}

/// The judgement of one prompt.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    /// Logits of Bad … Excellent at the rating position.
    pub rating_logits: [f32; 5],
    /// Softmax-expectation score in [0, 1].
    pub score: f32,
    pub completion: Option<Completion>,
}

/// The rollout engine's ids for this tokenizer.
pub fn rollout_tokens(tokenizer: &Tokenizer) -> Tokens {
    Tokens::of(tokenizer)
}

/// Judges every input; verdicts come back in input order.
pub fn judge_batch(
    model: &QwenVl,
    tokenizer: &Tokenizer,
    inputs: &[JudgeInput<'_>],
    settings: &JudgeSettings,
    device: &Device,
) -> Result<Vec<Verdict>, JudgeError> {
    if inputs.is_empty() {
        return Ok(Vec::new());
    }
    let tokens = rollout_tokens(tokenizer);
    let prompts: Vec<GroupPrompt> = inputs
        .iter()
        .enumerate()
        .map(|(i, input)| GroupPrompt {
            group: i as u64,
            ids: input.prompt_ids.iter().map(|&id| i64::from(id)).collect(),
            video: Some(input.video.to_input(device)),
        })
        .collect();
    let think_first = settings.order == AnswerOrder::ThinkFirst;
    let mut completions: Vec<Option<Completion>> = vec![None; inputs.len()];
    // The tokens teacher-forced after each prompt before the rating position.
    let mut prefixes: Vec<Vec<u32>> = vec![Vec::new(); inputs.len()];
    if think_first || settings.generate {
        // Group size 1 is fine for the engine; RolloutConfig's ≥ 2 rule is
        // a GRPO rule, checked only where a config file sets it.
        let greedy = RolloutConfig {
            group_size: 1,
            max_new_tokens: settings.max_new_tokens,
            sampling: SamplingConfig::greedy(),
        };
        let (rollouts, _) = generate(model, &prompts, &greedy, &tokens, &Rng::new(0), device)?;
        let think_close = tokenizer.special().think_close;
        for (i, rollout) in rollouts.into_iter().enumerate() {
            let mut ids = rollout.tokens.clone();
            if rollout.finish == FinishReason::Stop {
                ids.pop();
            }
            let text = tokenizer.decode(&ids, false)?;
            let answer = parse_answer(&text, settings.order);
            let mut closed_think = true;
            if think_first {
                match ids.iter().rposition(|&id| id == think_close) {
                    Some(k) => ids.truncate(k + 1),
                    None => {
                        closed_think = false;
                        ids.push(think_close);
                    }
                }
                prefixes[i] = ids;
            }
            completions[i] = Some(Completion {
                text,
                answer,
                closed_think,
                tokens: rollout.tokens.len(),
                finish: rollout.finish,
            });
        }
    }
    let site = RatingSite::for_order(settings.order);
    let rating_ids = tokenizer.ratings().ids(site);
    let logits = rating_logits_after(model, &prompts, &prefixes, &tokens, rating_ids, device)?;
    Ok(logits
        .into_iter()
        .zip(completions)
        .map(|(rating_logits, completion)| Verdict {
            rating_logits,
            score: expected_score_of(rating_logits),
            completion,
        })
        .collect())
}

/// Teacher-forces `prompts[b]` followed by `prefixes[b]` and returns the
/// five rating-token logits at the last position of each row (the position
/// that predicts the token after the prefix).
pub fn rating_logits_after(
    model: &QwenVl,
    prompts: &[GroupPrompt],
    prefixes: &[Vec<u32>],
    tokens: &Tokens,
    rating_ids: [u32; 5],
    device: &Device,
) -> Result<Vec<[f32; 5]>, JudgeError> {
    let mut batch = left_padded_batch(prompts, tokens);
    let prompt_width = batch.len();
    let width = prefixes.iter().map(Vec::len).max().unwrap_or(0);
    let mut positions = Vec::with_capacity(prefixes.len());
    for (b, prefix) in prefixes.iter().enumerate() {
        let pad = width - prefix.len();
        batch.input_ids[b].extend(
            prefix
                .iter()
                .map(|&id| i64::from(id))
                .chain(std::iter::repeat_n(i64::from(tokens.pad), pad)),
        );
        batch.attention_mask[b].extend((0..width).map(|i| i < prefix.len()));
        batch.token_types[b].extend(std::iter::repeat_n(TOKEN_TEXT, width));
        positions.push((prompt_width + prefix.len()) as i64 - 1);
    }
    let hidden = model.forward_hidden(&batch, None, device)?; // [B, L, H]
    let [b, _, h] = hidden.dims();
    // Only the rating positions go through the LM head: [B] → [B, 1, H].
    let index = Tensor::<1, Int>::from_data(TensorData::new(positions, [b]), device)
        .reshape([b, 1, 1])
        .expand([b, 1, h]);
    let logits = model.logits(hidden.gather(1, index)); // [B, 1, V]
    let zeros = Tensor::<1, Int>::zeros([b], device);
    let rating = gather_rating_logits(logits, zeros, rating_ids); // [B, 5]
    let flat = rating
        .into_data()
        .try_into_vec_as::<f32>()
        .map_err(|e| JudgeError::Readback(format!("{e:?}")))?;
    Ok(flat
        .chunks(5)
        .map(|c| [c[0], c[1], c[2], c[3], c[4]])
        .collect())
}

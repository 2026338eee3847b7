//! The rollout engine: G sampled judgements per prompt, sharing one prefill.
//!
//! GRPO spends most of its time here. For a batch of P prompts (each a video
//! and a judging question) the engine
//! 1. left-pads the prompts into one batch and runs the vision tower and the
//!    decoder over it ONCE (`prefill`), filling a KV cache of P rows;
//! 2. repeats every cache row G times (`KvCache::repeat_rows`), so the
//!    G samples of a group reuse the video and prompt keys/values instead of
//!    recomputing them;
//! 3. decodes all P·G rows together, one token per step, until every row has
//!    emitted a stop token or `max_new_tokens`.
//!
//! Tokens are drawn on the host ([`crate::sampling`]) and every row owns an
//! RNG forked from `(base, group id, sample index)`, so a rollout does not
//! depend on which other prompts shared its batch. Left padding keeps the
//! last prompt token of every row at the same index, and the cache's key
//! mask hides the padding from attention.

use crate::model::position::{TOKEN_TEXT, TOKEN_VIDEO};
use crate::model::{Batch, KvCache, ModelError, QwenVl, VideoInput};
use crate::rng::Rng;
use crate::sampling::{Draw, SamplingConfig, sample};
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

/// Settings of the rollout phase.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RolloutConfig {
    /// Completions sampled per prompt (the GRPO group size G).
    pub group_size: usize,
    /// Longest completion; a row that reaches it ends with `Length`.
    pub max_new_tokens: usize,
    #[serde(flatten)]
    pub sampling: SamplingConfig,
}

impl Default for RolloutConfig {
    fn default() -> Self {
        RolloutConfig {
            group_size: 8,
            max_new_tokens: 96,
            sampling: SamplingConfig::default(),
        }
    }
}

impl crate::config::rules::Validate for RolloutConfig {
    fn validate(&self, p: &str, rules: &mut crate::config::rules::Rules) {
        rules.check(self.group_size >= 2, &format!("{p}.group_size"), || {
            format!(
                "group_size must be ≥ 2 (advantages compare the rollouts of a group), got {}",
                self.group_size
            )
        });
        rules.check(
            self.max_new_tokens >= 1,
            &format!("{p}.max_new_tokens"),
            || format!("max_new_tokens must be ≥ 1, got {}", self.max_new_tokens),
        );
        self.sampling.validate(p, rules);
    }
}

/// One prompt to sample a group for: token ids with the video placeholder
/// tokens already expanded, and the video's pixel patches.
#[derive(Debug, Clone)]
pub struct GroupPrompt {
    /// Caller-chosen id of the group (unique within a step); it seeds the
    /// group's RNG streams.
    pub group: u64,
    pub ids: Vec<i64>,
    /// The video (one per prompt), or `None` for a text-only prompt.
    pub video: Option<VideoInput>,
}

/// Why a completion ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FinishReason {
    /// The model emitted a stop token (included in `tokens`).
    Stop,
    /// `max_new_tokens` was reached.
    Length,
}

/// One sampled completion.
#[derive(Debug, Clone, PartialEq)]
pub struct Rollout {
    pub group: u64,
    /// Index within the group, `0..G`.
    pub sample: usize,
    /// Generated ids, including the stop token when `finish == Stop`.
    pub tokens: Vec<u32>,
    /// `log π(token | prefix)` at the sampling temperature, per token.
    pub logprobs: Vec<f32>,
    pub finish: FinishReason,
}

impl Rollout {
    /// The generated tokens without the stop token: the completion's text.
    pub fn body(&self) -> &[u32] {
        match self.finish {
            FinishReason::Stop => &self.tokens[..self.tokens.len().saturating_sub(1)],
            FinishReason::Length => &self.tokens,
        }
    }
}

/// Counters that show the work the engine did (and prove prefix sharing).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct RolloutStats {
    /// Prefill forward passes (1 per call of [`generate`]).
    pub prefill_passes: usize,
    /// Prompt rows prefilled (P, not P·G).
    pub prefill_rows: usize,
    /// Decode forward passes.
    pub decode_passes: usize,
    /// Tokens sampled over all rows.
    pub generated_tokens: usize,
}

/// Ids the engine needs from the tokenizer.
#[derive(Debug, Clone)]
pub struct Tokens {
    /// Any of these ends a row.
    pub stop: Vec<u32>,
    /// Fed to rows that have finished (masked out of attention).
    pub pad: u32,
    /// `<|video_pad|>`: positions the vision features fill.
    pub video_pad: u32,
}

impl Tokens {
    /// The engine's ids for `tokenizer`.
    pub fn of(tokenizer: &crate::text::Tokenizer) -> Tokens {
        let special = tokenizer.special();
        Tokens {
            stop: special.stop_ids().to_vec(),
            pad: special.endoftext,
            video_pad: special.video_pad,
        }
    }
}

/// The RNG of one row: a pure function of the base stream, the group and
/// the sample index.
pub fn row_rng(base: &Rng, group: u64, sample: usize) -> Rng {
    base.fork(group).fork(sample as u64)
}

/// Samples `cfg.group_size` completions for every prompt.
///
/// Rollouts come back grouped: all samples of `prompts[0]`, then of
/// `prompts[1]`, …
pub fn generate(
    model: &QwenVl,
    prompts: &[GroupPrompt],
    cfg: &RolloutConfig,
    tokens: &Tokens,
    base: &Rng,
    device: &Device,
) -> Result<(Vec<Rollout>, RolloutStats), ModelError> {
    let mut stats = RolloutStats::default();
    if prompts.is_empty() {
        return Ok((Vec::new(), stats));
    }
    let g = cfg.group_size;
    let batch = left_padded_batch(prompts, tokens);
    let prompt_len = batch.len();
    let mut cache = model.new_cache(prompt_len + cfg.max_new_tokens);

    // Prefill once: [P, L, H] → the last position's logits [P, V].
    let hidden = model.forward_hidden(&batch, Some(&mut cache), device)?;
    stats.prefill_passes += 1;
    stats.prefill_rows += prompts.len();
    let [p, l, h] = hidden.dims();
    let last = hidden.slice([0..p, l - 1..l, 0..h]);
    let first_logits = rows_to_host(model.logits(last))?;
    let mut cache: KvCache = cache.repeat_rows(g, device);

    let mut rows: Vec<Rollout> = Vec::with_capacity(p * g);
    let mut rngs: Vec<Rng> = Vec::with_capacity(p * g);
    for prompt in prompts {
        for s in 0..g {
            rows.push(Rollout {
                group: prompt.group,
                sample: s,
                tokens: Vec::new(),
                logprobs: Vec::new(),
                finish: FinishReason::Length,
            });
            rngs.push(row_rng(base, prompt.group, s));
        }
    }
    let mut logits: Vec<Vec<f32>> = (0..p * g).map(|r| first_logits[r / g].clone()).collect();
    let mut done = vec![false; p * g];

    for step in 0..cfg.max_new_tokens {
        let draws = sample_rows(&logits, &done, &cfg.sampling, &mut rngs);
        let mut next = vec![i64::from(tokens.pad); p * g];
        for (r, draw) in draws.into_iter().enumerate() {
            let Some(draw) = draw else { continue };
            rows[r].tokens.push(draw.token);
            rows[r].logprobs.push(draw.logprob);
            stats.generated_tokens += 1;
            next[r] = i64::from(draw.token);
            if tokens.stop.contains(&draw.token) {
                rows[r].finish = FinishReason::Stop;
                done[r] = true;
            }
        }
        if done.iter().all(|&d| d) || step + 1 == cfg.max_new_tokens {
            break;
        }
        // Finished rows still occupy their batch slot; their (pad) token is
        // marked invalid so no live row ever attends to it.
        let valid: Vec<bool> = done.iter().map(|&d| !d).collect();
        let hidden = model.decode_hidden(&next, &valid, &mut cache, device)?;
        stats.decode_passes += 1;
        logits = rows_to_host(model.logits(hidden))?;
    }
    Ok((rows, stats))
}

/// Rows below this many per thread are sampled on the calling thread.
const ROWS_PER_SAMPLING_THREAD: usize = 8;

/// The next token of every row not `done` (`None` for those that are). Rows
/// are independent — each has its own logits and RNG — so they are sampled
/// in parallel chunks and the draws do not depend on the split.
fn sample_rows(
    logits: &[Vec<f32>],
    done: &[bool],
    cfg: &SamplingConfig,
    rngs: &mut [Rng],
) -> Vec<Option<Draw>> {
    use rayon::prelude::*;
    rngs.par_iter_mut()
        .zip(logits.par_iter().zip(done.par_iter()))
        .with_min_len(ROWS_PER_SAMPLING_THREAD)
        .map(|(rng, (logits, &done))| (!done).then(|| sample(logits, cfg, rng)))
        .collect()
}

/// `[B, 1, V]` logits → one host vector per row.
fn rows_to_host(logits: Tensor<3>) -> Result<Vec<Vec<f32>>, ModelError> {
    let [b, _, v] = logits.dims();
    let flat: Vec<f32> = logits
        .try_into_vec_as::<f32>()
        .map_err(|e| ModelError::Input(format!("logits to host: {e:?}")))?;
    Ok(flat.chunks(v).take(b).map(<[f32]>::to_vec).collect())
}

/// Stacks prompts into one left-padded batch with their videos in order
/// (row `i` of the batch is `prompts[i]`; the trainer repeats a prompt per
/// rollout to teacher-force completions).
pub fn left_padded_batch<'a>(
    prompts: impl IntoIterator<Item = &'a GroupPrompt>,
    tokens: &Tokens,
) -> Batch {
    let prompts: Vec<&GroupPrompt> = prompts.into_iter().collect();
    let len = prompts.iter().map(|p| p.ids.len()).max().unwrap_or(0);
    let video_pad = i64::from(tokens.video_pad);
    let mut batch = Batch {
        input_ids: Vec::with_capacity(prompts.len()),
        attention_mask: Vec::with_capacity(prompts.len()),
        token_types: Vec::with_capacity(prompts.len()),
        video: None,
    };
    for p in &prompts {
        let pad = len - p.ids.len();
        let mut ids = vec![i64::from(tokens.pad); pad];
        ids.extend_from_slice(&p.ids);
        let mut mask = vec![false; pad];
        mask.extend(std::iter::repeat_n(true, p.ids.len()));
        let types = ids
            .iter()
            .zip(&mask)
            .map(|(&id, &m)| {
                if m && id == video_pad {
                    TOKEN_VIDEO
                } else {
                    TOKEN_TEXT
                }
            })
            .collect();
        batch.input_ids.push(ids);
        batch.attention_mask.push(mask);
        batch.token_types.push(types);
    }
    batch.video = VideoInput::concat(prompts.iter().filter_map(|p| p.video.as_ref()));
    batch
}

/// One rollout as `vgrpo rollout` prints it.
#[derive(Debug, Clone, Serialize)]
pub struct RolloutReport {
    pub sample: usize,
    /// The completion without its stop token.
    pub text: String,
    pub tokens: Vec<u32>,
    pub logprobs: Vec<f32>,
    pub finish: FinishReason,
    /// The rating the completion gives, when it follows the format.
    pub rating: Option<crate::data::Rating>,
    /// Why it does not follow the format, when it does not.
    pub format_error: Option<String>,
}

/// One video to judge on one dimension.
#[derive(Debug, Clone, Copy)]
pub struct VideoQuery<'a> {
    pub path: &'a std::path::Path,
    pub dimension: crate::data::Dimension,
    /// The text the video was generated from.
    pub generation_prompt: &'a str,
}

/// What the policy says about one video: `group_size` sampled judgements of
/// the query's dimension, parsed (think-first, as GRPO samples them).
pub fn judge_video(
    loaded: &crate::model_source::LoadedModel,
    query: VideoQuery<'_>,
    video: &crate::video::VideoConfig,
    cfg: &RolloutConfig,
    seed: u64,
    device: &Device,
) -> Result<Vec<RolloutReport>, crate::inputs::InputError> {
    use crate::inputs::{InputError, InputSpec, judge_prompt, prepare_video};
    use crate::text::AnswerOrder;
    let VideoQuery {
        path: video_path,
        dimension,
        generation_prompt,
    } = query;
    let spec = InputSpec::new(&loaded.model.config, video);
    let clip = crate::video::load_clip(video_path, &spec.video)?;
    let host = prepare_video(&clip, &spec)?;
    let tok = &loaded.tokenizer;
    let ids = judge_prompt(
        tok,
        &spec,
        &host,
        dimension,
        generation_prompt,
        AnswerOrder::ThinkFirst,
    )
    .map_err(|source| InputError::Prompt {
        id: video_path.display().to_string(),
        source,
    })?;
    let tokens = Tokens::of(tok);
    let prompt = GroupPrompt {
        group: 0,
        ids: ids.iter().map(|&i| i64::from(i)).collect(),
        video: Some(host.to_input(device)),
    };
    let model_err = |source| InputError::Process {
        path: video_path.display().to_string(),
        source,
    };
    let (rollouts, _) = generate(
        &loaded.model,
        &[prompt],
        cfg,
        &tokens,
        &Rng::stream(seed, "rollout"),
        device,
    )
    .map_err(model_err)?;
    rollouts
        .into_iter()
        .map(|r| {
            let text = tok
                .decode(r.body(), false)
                .map_err(|e| model_err(ModelError::Input(e.to_string())))?;
            let parsed = crate::text::parse_answer(&text, AnswerOrder::ThinkFirst);
            Ok(RolloutReport {
                sample: r.sample,
                rating: parsed.as_ref().ok().map(|a| a.rating),
                format_error: parsed.err().map(|e| e.to_string()),
                text,
                tokens: r.tokens,
                logprobs: r.logprobs,
                finish: r.finish,
            })
        })
        .collect()
}

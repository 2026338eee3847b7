//! Teacher-forced per-token log-probabilities of completions given their
//! prompts — the quantity the actor, the old policy and the reference model
//! all provide to GRPO (`log π(y_t | x, y_<t)`, logits divided by the
//! sampling temperature).

use burn::tensor::{Device, Int, Tensor, TensorData};

use super::error::{ModelError, Result};
use super::layers::to_f32;
use super::qwen_vl::{Batch, QwenVl};
use crate::logits::token_log_probs;

/// Completions after their prompts. Completion `r` continues prompt row
/// `r / group`: a GRPO group's G completions share one prompt row (`group =
/// G`), so the prompt — most of the tokens, and the video — is run once per
/// group instead of once per completion. `group = 1` gives every completion
/// a prompt row of its own.
#[derive(Debug, Clone)]
pub struct CompletionBatch {
    /// `[P]` left-padded prompts (generation's layout: every row ends at the
    /// last column).
    pub prompts: Batch,
    /// Consecutive completions per prompt row.
    pub group: usize,
    /// `[P·group][width]` completion ids, right-padded with the pad id.
    pub completions: Vec<Vec<i64>>,
    /// `[P·group][width]`: true for real completion tokens.
    pub completion_mask: Vec<Vec<bool>>,
}

impl CompletionBatch {
    /// `completions[r]` after `prompts` row `r / group`; `pad_id` fills the
    /// right padding (masked, never scored).
    pub fn new(
        prompts: &Batch,
        group: usize,
        completions: &[Vec<i64>],
        pad_id: i64,
    ) -> Result<Self> {
        if group == 0 || prompts.rows() * group != completions.len() {
            return Err(ModelError::Input(format!(
                "{} prompt rows × group {group} for {} completions",
                prompts.rows(),
                completions.len()
            )));
        }
        if prompts.is_empty() {
            return Err(ModelError::Input(
                "completions need a non-empty prompt".into(),
            ));
        }
        let width = completions.iter().map(Vec::len).max().unwrap_or(0);
        if width == 0 {
            return Err(ModelError::Input("all completions are empty".into()));
        }
        let padded = completions
            .iter()
            .map(|c| {
                let pad = std::iter::repeat_n(pad_id, width - c.len());
                c.iter().copied().chain(pad).collect()
            })
            .collect();
        let completion_mask = completions
            .iter()
            .map(|c| (0..width).map(|i| i < c.len()).collect())
            .collect();
        Ok(CompletionBatch {
            prompts: prompts.clone(),
            group,
            completions: padded,
            completion_mask,
        })
    }

    /// Completions in the batch.
    pub fn rows(&self) -> usize {
        self.completions.len()
    }

    /// Padded completion width.
    pub fn width(&self) -> usize {
        self.completions.first().map_or(0, Vec::len)
    }

    /// The completion mask as a float tensor `[B, completion width]`.
    pub fn mask_tensor(&self, device: &Device) -> Tensor<2> {
        let data: Vec<f32> = self
            .completion_mask
            .iter()
            .flatten()
            .map(|&m| f32::from(u8::from(m)))
            .collect();
        Tensor::from_data(TensorData::new(data, [self.rows(), self.width()]), device)
    }
}

/// Positions `(start, len)` of at most `chunk` completion positions each,
/// covering `0..width` in order; `chunk = 0` (or `chunk ≥ width`) is one
/// span of the whole width.
pub fn chunk_spans(width: usize, chunk: usize) -> impl Iterator<Item = (usize, usize)> {
    let step = if chunk == 0 { width.max(1) } else { chunk };
    (0..width)
        .step_by(step)
        .map(move |start| (start, step.min(width - start)))
}

/// `[B, C, V]` logits of `hidden [B, C, H]` (final-normed hidden states),
/// in f32 whatever the model's dtype, divided by `temperature`.
pub fn tempered_logits(model: &QwenVl, hidden: Tensor<3>, temperature: f64) -> Tensor<3> {
    to_f32(model.logits(hidden)).div_scalar(temperature)
}

/// `[B, completion width, V]` logits (divided by `temperature`) at the
/// positions that predict the completion tokens: the LM head over all of
/// [`completion_hidden`] at once, differentiable when the model lives on
/// an autodiff device.
pub fn completion_logits(
    model: &QwenVl,
    input: &CompletionBatch,
    temperature: f64,
    device: &Device,
) -> Result<Tensor<3>> {
    check_temperature(temperature)?;
    let hidden = completion_hidden(model, input, device)?;
    Ok(tempered_logits(model, hidden, temperature))
}

/// The final-normed hidden states at the positions that predict the
/// completion tokens — what the LM head turns into [`completion_logits`].
///
/// # Shapes
///
/// `[B, W, H]`: B = `input.rows()`, W = `input.width()`, H the model's
/// hidden size; position `i` predicts completion token `i`.
///
/// The prompts are prefilled into a KV cache (`[P, L]` tokens), each row's
/// keys/values are shared by its `group` completions
/// ([`KvCache::repeat_rows`](super::cache::KvCache::repeat_rows)), and the
/// completions run as one step of `width − 1` tokens on top: the same
/// computation as the concatenated rows, with the prompt's cost paid once
/// per group. Differentiable when the model lives on an autodiff device;
/// gradients flow through the cache into the prompt's keys and values.
pub fn completion_hidden(
    model: &QwenVl,
    input: &CompletionBatch,
    device: &Device,
) -> Result<Tensor<3>> {
    let (group, width) = (input.group, input.width());
    let mut cache = model.new_cache(input.prompts.len() + width - 1);
    let hidden = model.forward_hidden(&input.prompts, Some(&mut cache), device)?; // [P, L, H]
    let [p, l, _] = hidden.dims();
    // The last prompt position predicts the first completion token: [B, 1, H].
    let mut last = hidden.narrow(1, l - 1, 1);
    if group > 1 {
        let rows: Vec<i64> = (0..p * group).map(|r| (r / group) as i64).collect();
        last = last.select(
            0,
            Tensor::from_data(TensorData::new(rows, [p * group]), device),
        );
    }
    if width == 1 {
        return Ok(last);
    }
    // Completion token i predicts token i + 1; the last one predicts nothing.
    let mut cache = cache.repeat_rows(group, device);
    let own = model.extend_hidden(
        &without_last(&input.completions),
        &without_last(&input.completion_mask),
        &mut cache,
        device,
    )?; // [B, W−1, H]
    Ok(Tensor::cat(vec![last, own], 1)) // [B, W, H]
}

/// Log-probs divide the logits by the temperature: it must be positive.
pub fn check_temperature(temperature: f64) -> Result<()> {
    if temperature <= 0.0 {
        return Err(ModelError::Input(format!(
            "temperature {temperature} must be positive"
        )));
    }
    Ok(())
}

/// Every row but its last column.
fn without_last<T: Copy>(rows: &[Vec<T>]) -> Vec<Vec<T>> {
    rows.iter().map(|r| r[..r.len() - 1].to_vec()).collect()
}

/// The completion tokens `[B, completion width]` as an index tensor.
pub fn completion_targets(input: &CompletionBatch, device: &Device) -> Tensor<2, Int> {
    let targets: Vec<i64> = input.completions.iter().flatten().copied().collect();
    Tensor::from_data(
        TensorData::new(targets, [input.rows(), input.width()]),
        device,
    )
}

/// `[B, completion width]` log-probabilities of the completion tokens (0 at
/// padding), differentiable when the model lives on an autodiff device; the
/// logits of the whole width at once ([`completion_logprobs_chunked`] with
/// chunk 0).
pub fn completion_logprobs(
    model: &QwenVl,
    input: &CompletionBatch,
    temperature: f64,
    device: &Device,
) -> Result<Tensor<2>> {
    completion_logprobs_chunked(model, input, temperature, 0, device)
}

/// [`completion_logprobs`] with the LM head run over `chunk` completion
/// positions at a time (0 = the whole width at once): per chunk, logits /
/// T in f32, log-softmax, the targets gathered; only `[B, chunk]` is kept.
/// Every position's value is computed as in the whole-width pass.
///
/// # Shapes
///
/// `[B, W]` out; at most `[B, chunk, V]` logits exist at a time — on a plain
/// device. On an autodiff device the result is differentiable but each
/// chunk's logits stay in the graph until the backward; the update bounds
/// that memory with [`crate::grpo::chunked`] instead.
pub fn completion_logprobs_chunked(
    model: &QwenVl,
    input: &CompletionBatch,
    temperature: f64,
    chunk: usize,
    device: &Device,
) -> Result<Tensor<2>> {
    check_temperature(temperature)?;
    let hidden = completion_hidden(model, input, device)?; // [B, W, H]
    let targets = completion_targets(input, device); // [B, W]
    let mut parts: Vec<Tensor<2>> = chunk_spans(input.width(), chunk)
        .map(|(start, len)| {
            let logits = tempered_logits(model, hidden.clone().narrow(1, start, len), temperature);
            token_log_probs(logits, targets.clone().narrow(1, start, len), 1.0) // [B, len]
        })
        .collect();
    let picked = match parts.len() {
        1 => parts.remove(0),
        _ => Tensor::cat(parts, 1),
    };
    Ok(picked * input.mask_tensor(device))
}

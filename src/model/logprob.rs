//! Teacher-forced per-token log-probabilities of completions given their
//! prompts — the quantity the actor, the old policy and the reference model
//! all provide to GRPO (`log π(y_t | x, y_<t)`, logits divided by the
//! sampling temperature).

use burn::tensor::activation::log_softmax;
use burn::tensor::{Device, Int, Tensor, TensorData};

use super::error::{ModelError, Result};
use super::layers::to_f32;
use super::position::TOKEN_TEXT;
use super::qwen_vl::{Batch, QwenVl};

/// Prompts followed by completions, padded into one rectangular batch:
/// prompts keep their (left) padding, completions are appended and padded
/// on the right.
#[derive(Debug, Clone)]
pub struct CompletionBatch {
    pub batch: Batch,
    /// Column where the completions start (prompt width).
    pub prompt_len: usize,
    /// `[B][completion width]`: true for real completion tokens.
    pub completion_mask: Vec<Vec<bool>>,
}

impl CompletionBatch {
    /// Appends `completions[b]` to prompt row `b` (`prompts` must have one
    /// row per completion; repeat rows for a group). `pad_id` fills the
    /// right padding (masked, never scored).
    pub fn new(prompts: &Batch, completions: &[Vec<i64>], pad_id: i64) -> Result<Self> {
        if prompts.rows() != completions.len() {
            return Err(ModelError::Input(format!(
                "{} prompt rows for {} completions",
                prompts.rows(),
                completions.len()
            )));
        }
        let width = completions.iter().map(Vec::len).max().unwrap_or(0);
        if width == 0 {
            return Err(ModelError::Input("all completions are empty".into()));
        }
        let mut batch = prompts.clone();
        let mut completion_mask = Vec::with_capacity(completions.len());
        for (b, completion) in completions.iter().enumerate() {
            let pad = width - completion.len();
            batch.input_ids[b].extend(
                completion
                    .iter()
                    .copied()
                    .chain(std::iter::repeat_n(pad_id, pad)),
            );
            let mask: Vec<bool> = (0..width).map(|i| i < completion.len()).collect();
            batch.attention_mask[b].extend_from_slice(&mask);
            batch.token_types[b].extend(std::iter::repeat_n(TOKEN_TEXT, width));
            completion_mask.push(mask);
        }
        Ok(CompletionBatch {
            batch,
            prompt_len: prompts.len(),
            completion_mask,
        })
    }

    /// The completion mask as a float tensor `[B, completion width]`.
    pub fn mask_tensor(&self, device: &Device) -> Tensor<2> {
        let rows = self.completion_mask.len();
        let width = self.completion_mask.first().map_or(0, Vec::len);
        let data: Vec<f32> = self
            .completion_mask
            .iter()
            .flatten()
            .map(|&m| f32::from(u8::from(m)))
            .collect();
        Tensor::from_data(TensorData::new(data, [rows, width]), device)
    }
}

/// `[B, completion width, V]` logits (divided by `temperature`) at the
/// positions that predict the completion tokens, differentiable when the
/// model lives on an autodiff device. Only those positions go through the
/// LM head.
pub fn completion_logits(
    model: &QwenVl,
    input: &CompletionBatch,
    temperature: f64,
    device: &Device,
) -> Result<Tensor<3>> {
    if temperature <= 0.0 {
        return Err(ModelError::Input(format!(
            "temperature {temperature} must be positive"
        )));
    }
    if input.prompt_len == 0 {
        return Err(ModelError::Input(
            "completions need a non-empty prompt".into(),
        ));
    }
    let hidden = model.forward_hidden(&input.batch, None, device)?; // [B, L, H]
    let [_, l, _] = hidden.dims();
    let width = l - input.prompt_len;
    // Position i predicts token i + 1: the last prompt position predicts the
    // first completion token.
    let predicting = hidden.narrow(1, input.prompt_len - 1, width);
    // Log-softmax in f32 whatever the model's dtype.
    Ok(to_f32(model.logits(predicting)).div_scalar(temperature))
}

/// The completion tokens `[B, completion width]` as an index tensor.
pub fn completion_targets(input: &CompletionBatch, device: &Device) -> Tensor<2, Int> {
    let b = input.batch.rows();
    let width = input.batch.len() - input.prompt_len;
    let targets: Vec<i64> = input
        .batch
        .input_ids
        .iter()
        .flat_map(|row| row[input.prompt_len..].iter().copied())
        .collect();
    Tensor::from_data(TensorData::new(targets, [b, width]), device)
}

/// `[B, completion width]` log-probabilities of the completion tokens (0 at
/// padding), differentiable when the model lives on an autodiff device.
pub fn completion_logprobs(
    model: &QwenVl,
    input: &CompletionBatch,
    temperature: f64,
    device: &Device,
) -> Result<Tensor<2>> {
    let logits = completion_logits(model, input, temperature, device)?; // [B, W, V]
    let [b, width, _] = logits.dims();
    let logp = log_softmax(logits, 2);
    let targets = completion_targets(input, device).reshape([b, width, 1]);
    let picked = logp.gather(2, targets).reshape([b, width]);
    Ok(picked * input.mask_tensor(device))
}

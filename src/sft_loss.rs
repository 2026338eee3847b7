//! The SFT loss of the cold-start and cool-off stages (paper §4.2.3):
//!
//! ```text
//! L = α · CE(answer tokens) + β · (score − MOS_normalised)²,   α = β = 1
//! ```
//!
//! CE is the token mean of −log p(target) over the answer tokens (the
//! assistant turn: rationale, tags and rating; not the prompt or padding).
//! `score` is the softmax-expectation score at the rating position
//! ([`crate::score::expected_score`]) and the squared error is averaged over
//! the batch. Both terms share one graph, so one `backward()` trains both.

use crate::logits::{masked_mean, token_log_probs};
use crate::score::expected_score;
use burn::tensor::{Bool, Int, Tensor};
use serde::{Deserialize, Serialize};
use thiserror::Error;

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SftLossConfig {
    /// α, the weight of the cross-entropy term.
    pub ce_weight: f32,
    /// β, the weight of the score regression term.
    pub mse_weight: f32,
}

impl Default for SftLossConfig {
    /// Paper appendix A: (α, β) = (1, 1).
    fn default() -> Self {
        SftLossConfig {
            ce_weight: 1.0,
            mse_weight: 1.0,
        }
    }
}

#[derive(Debug, Error)]
pub enum SftLossError {
    #[error("{name} has shape {got:?}, expected {want:?}")]
    ShapeMismatch {
        name: &'static str,
        got: Vec<usize>,
        want: Vec<usize>,
    },
    #[error("the answer mask selects no token")]
    EmptyMask,
    #[error("loss weight {name} = {value} must be finite and >= 0")]
    BadWeight { name: &'static str, value: f32 },
    #[error("reading an SFT loss metric back from the device failed")]
    Readback(#[from] burn::tensor::TensorReadError),
}

/// One batch of SFT examples.
pub struct SftLossInputs {
    /// Next-token logits, `[B, T, V]`, already aligned so position t predicts
    /// `targets[t]`.
    pub logits: Tensor<3>,
    /// Target token ids, `[B, T]`.
    pub targets: Tensor<2, Int>,
    /// True on the answer tokens the CE term trains, `[B, T]`.
    pub answer_mask: Tensor<2, Bool>,
    /// Logits of the five rating tokens (Bad … Excellent) at the rating
    /// position, `[B, 5]` ([`crate::score::gather_rating_logits`]).
    pub rating_logits: Tensor<2>,
    /// The MOS normalised to [0, 1] (`MosScale::normalise`), `[B]`.
    pub target_score: Tensor<1>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SftLossMetrics {
    /// The total loss α·ce + β·mse.
    pub loss: f32,
    pub ce: f32,
    pub mse: f32,
    pub answer_tokens: usize,
}

pub struct SftLossOutput {
    /// One-element tensor; keeps the graph.
    pub loss: Tensor<1>,
    pub metrics: SftLossMetrics,
}

/// Token-mean cross-entropy of `targets` under `logits` over the masked
/// positions (temperature 1). Returns a one-element tensor.
pub fn answer_cross_entropy(
    logits: Tensor<3>,
    targets: Tensor<2, Int>,
    mask: Tensor<2, Bool>,
) -> Tensor<1> {
    masked_mean(token_log_probs(logits, targets, 1.0), mask).neg()
}

/// Mean squared error between predicted and target scores, `[B]` → one
/// element.
pub fn score_mse(score: Tensor<1>, target: Tensor<1>) -> Tensor<1> {
    score.sub(target).square().mean()
}

/// α·CE + β·MSE for one batch, with its metrics.
pub fn sft_loss(
    inputs: SftLossInputs,
    config: &SftLossConfig,
) -> Result<SftLossOutput, SftLossError> {
    let [batch, tokens, _] = inputs.logits.dims();
    check_shape("targets", &inputs.targets.dims(), &[batch, tokens])?;
    let log_probs = token_log_probs(inputs.logits, inputs.targets, 1.0);
    sft_loss_of_log_probs(
        SftLogProbInputs {
            log_probs,
            answer_mask: inputs.answer_mask,
            rating_logits: inputs.rating_logits,
            target_score: inputs.target_score,
        },
        config,
    )
}

/// [`SftLossInputs`] with the answer tokens' log-probabilities in place of
/// the logits (what a loss computed over chunks of positions has).
pub struct SftLogProbInputs {
    /// `log p(targets[t])` at every position, `[B, T]`.
    pub log_probs: Tensor<2>,
    pub answer_mask: Tensor<2, Bool>,
    pub rating_logits: Tensor<2>,
    pub target_score: Tensor<1>,
}

/// [`sft_loss`] of the answer tokens' log-probabilities.
pub fn sft_loss_of_log_probs(
    inputs: SftLogProbInputs,
    config: &SftLossConfig,
) -> Result<SftLossOutput, SftLossError> {
    for (name, value) in [
        ("ce_weight", config.ce_weight),
        ("mse_weight", config.mse_weight),
    ] {
        if !(value.is_finite() && value >= 0.0) {
            return Err(SftLossError::BadWeight { name, value });
        }
    }
    let SftLogProbInputs {
        log_probs,
        answer_mask,
        rating_logits,
        target_score,
    } = inputs;
    let [batch, tokens] = log_probs.dims();
    check_shape("answer_mask", &answer_mask.dims(), &[batch, tokens])?;
    check_shape("rating_logits", &rating_logits.dims(), &[batch, 5])?;
    check_shape("target_score", &target_score.dims(), &[batch])?;
    let answer_tokens: i64 = answer_mask.clone().int().sum().try_into_scalar()?;
    if answer_tokens == 0 {
        return Err(SftLossError::EmptyMask);
    }

    let ce = masked_mean(log_probs, answer_mask).neg();
    let mse = score_mse(expected_score(rating_logits), target_score);
    let loss = ce
        .clone()
        .mul_scalar(config.ce_weight)
        .add(mse.clone().mul_scalar(config.mse_weight));

    let parts = Tensor::cat(vec![loss.clone().detach(), ce.detach(), mse.detach()], 0);
    let data = parts
        .try_into_data()
        .map_err(burn::tensor::TensorReadError::from)?;
    let values = data
        .try_into_vec_as::<f32>()
        .map_err(burn::tensor::TensorReadError::from)?;
    let &[total, ce, mse] = values.as_slice() else {
        return Err(SftLossError::ShapeMismatch {
            name: "metrics",
            got: vec![values.len()],
            want: vec![3],
        });
    };
    let metrics = SftLossMetrics {
        loss: total,
        ce,
        mse,
        answer_tokens: answer_tokens as usize,
    };
    Ok(SftLossOutput { loss, metrics })
}

fn check_shape(name: &'static str, got: &[usize], want: &[usize]) -> Result<(), SftLossError> {
    if got == want {
        Ok(())
    } else {
        Err(SftLossError::ShapeMismatch {
            name,
            got: got.to_vec(),
            want: want.to_vec(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, TensorData};

    fn close(a: f32, b: f32) -> bool {
        (a - b).abs() < 1e-5
    }

    /// B = 1, T = 2, V = 5. Position 0 uniform (CE ln 5), position 1 has
    /// logits (0, 0, 0, ln 2, ln 3) and target 4 (p = 3/8).
    fn inputs(device: &Device, mask: [bool; 2]) -> SftLossInputs {
        let row1 = [0.0f32, 0.0, 0.0, 2f32.ln(), 3f32.ln()];
        let mut flat = vec![0.0f32; 5];
        flat.extend(row1);
        SftLossInputs {
            logits: Tensor::from_data(TensorData::new(flat, [1, 2, 5]), device),
            targets: Tensor::from_data(TensorData::new(vec![1i64, 4], [1, 2]), device),
            answer_mask: Tensor::from_data(TensorData::new(mask.to_vec(), [1, 2]), device),
            rating_logits: Tensor::from_data(TensorData::new(row1.to_vec(), [1, 5]), device),
            target_score: Tensor::from_floats([0.5], device),
        }
    }

    #[test]
    fn loss_by_hand() {
        let d = crate::device::test_device();
        let out = sft_loss(inputs(&d, [true, true]), &SftLossConfig::default()).unwrap();
        let ce = (5f32.ln() - (3.0f32 / 8.0).ln()) / 2.0;
        // score = 5.25/8 (see score.rs), target 0.5.
        let mse = (5.25f32 / 8.0 - 0.5).powi(2);
        assert!(
            close(out.metrics.ce, ce) && close(out.metrics.mse, mse),
            "{:?}",
            out.metrics
        );
        assert!(close(out.metrics.loss, ce + mse));
        assert_eq!(out.metrics.answer_tokens, 2);
        let total: f32 = out.loss.into_scalar();
        assert!(close(total, ce + mse));
        // Masking position 0 leaves only position 1 in the CE; weights scale.
        let config = SftLossConfig {
            ce_weight: 2.0,
            mse_weight: 0.5,
        };
        let out = sft_loss(inputs(&d, [false, true]), &config).unwrap();
        assert!(close(out.metrics.ce, -(3.0f32 / 8.0).ln()));
        assert!(close(out.metrics.loss, 2.0 * out.metrics.ce + 0.5 * mse));
    }

    #[test]
    fn both_terms_reach_the_logits() {
        let d = crate::device::test_device().autodiff();
        let mut x = inputs(&d, [true, true]);
        let rating = x.rating_logits.require_grad();
        x.rating_logits = rating.clone();
        let logits = x.logits.require_grad();
        x.logits = logits.clone();
        let out = sft_loss(x, &SftLossConfig::default()).unwrap();
        let grads = out.loss.backward();
        let g_rating = rating.grad(&grads).expect("rating logits get a gradient");
        let g_logits = logits.grad(&grads).expect("logits get a gradient");
        let g_rating: f32 = g_rating.abs().sum().into_scalar();
        let g_logits: f32 = g_logits.abs().sum().into_scalar();
        assert!(g_rating > 0.0 && g_logits > 0.0);
    }

    #[test]
    fn empty_mask_and_bad_shapes_are_errors() {
        let d = crate::device::test_device();
        assert!(matches!(
            sft_loss(inputs(&d, [false, false]), &SftLossConfig::default()),
            Err(SftLossError::EmptyMask)
        ));
        let mut x = inputs(&d, [true, true]);
        x.target_score = Tensor::from_floats([0.5, 0.5], &d);
        assert!(matches!(
            sft_loss(x, &SftLossConfig::default()),
            Err(SftLossError::ShapeMismatch {
                name: "target_score",
                ..
            })
        ));
    }
}

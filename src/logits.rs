//! Per-token quantities read from a language model's logits: the
//! log-probability of the tokens that were actually produced, and the entropy
//! of the next-token distribution. Shared by the GRPO update (log-probs of
//! the actor, the old policy and the reference; entropy metric) and the SFT
//! loss (cross-entropy on the answer tokens).
//!
//! Shapes: logits `[B, T, V]` where position t holds the distribution of the
//! token at t (the caller has already shifted the model's output by one),
//! tokens `[B, T]`.

use burn::tensor::activation::log_softmax;
use burn::tensor::{Bool, Int, Tensor};

/// log p(token_t) under softmax(logits_t / temperature), shape `[B, T]`.
///
/// The temperature is the one the rollouts were sampled with, so the
/// importance ratio compares the distributions that actually produced the
/// tokens (verl and TRL both divide the logits by it). Gradients flow into
/// `logits` (`log_softmax(..).gather(..)` is differentiable).
pub fn token_log_probs(logits: Tensor<3>, tokens: Tensor<2, Int>, temperature: f32) -> Tensor<2> {
    let scaled = if temperature == 1.0 {
        logits
    } else {
        logits.div_scalar(temperature)
    };
    // [B, T, V] -> gather along V with indices [B, T, 1] -> [B, T, 1] -> [B, T]
    log_softmax(scaled, 2)
        .gather(2, tokens.unsqueeze_dim::<3>(2))
        .squeeze_dim::<2>(2)
}

/// Entropy H_t = −Σ_v p_v log p_v of softmax(logits_t / temperature), shape
/// `[B, T]`. A monitoring metric: it falls when the policy collapses onto
/// one answer.
pub fn token_entropy(logits: Tensor<3>, temperature: f32) -> Tensor<2> {
    let scaled = if temperature == 1.0 {
        logits
    } else {
        logits.div_scalar(temperature)
    };
    let log_p = log_softmax(scaled, 2);
    // [B, T, V] -> sum over V -> [B, T, 1] -> [B, T]
    log_p
        .clone()
        .exp()
        .mul(log_p)
        .sum_dim(2)
        .neg()
        .squeeze_dim::<2>(2)
}

/// [`token_log_probs`] and [`token_entropy`] of the same logits from one
/// log-softmax: `([B, T], [B, T])`, the values of the two functions.
pub fn token_log_probs_and_entropy(
    logits: Tensor<3>,
    tokens: Tensor<2, Int>,
    temperature: f32,
) -> (Tensor<2>, Tensor<2>) {
    let scaled = if temperature == 1.0 {
        logits
    } else {
        logits.div_scalar(temperature)
    };
    let log_p = log_softmax(scaled, 2);
    let picked = log_p
        .clone()
        .gather(2, tokens.unsqueeze_dim::<3>(2))
        .squeeze_dim::<2>(2);
    // [B, T, V] -> sum over V -> [B, T, 1] -> [B, T]
    let entropy = log_p
        .clone()
        .exp()
        .mul(log_p)
        .sum_dim(2)
        .neg()
        .squeeze_dim::<2>(2);
    (picked, entropy)
}

/// Mean of `values` over the positions where `mask` is true, as a one-element
/// tensor (keeps gradients). Masked-out positions are replaced by 0, not
/// multiplied by 0, so a non-finite value there does not turn the mean into
/// NaN. The caller guarantees at least one true entry; with none the result
/// is NaN (0/0), like `masked_mean` in verl.
pub fn masked_mean(values: Tensor<2>, mask: Tensor<2, Bool>) -> Tensor<1> {
    let count = mask.clone().float().sum();
    values.mask_fill(mask.bool_not(), 0.0).sum().div(count)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, TensorData};

    fn device() -> Device {
        crate::device::test_device()
    }

    fn values(t: Tensor<2>) -> Vec<f32> {
        t.into_data().try_into_vec_as::<f32>().unwrap()
    }

    #[test]
    fn log_probs_of_chosen_tokens_by_hand() {
        // One sequence, two positions, vocabulary of 3.
        // Position 0: logits [0, ln 2, ln 3] -> p = [1/6, 2/6, 3/6].
        // Position 1: logits [0, 0, 0] -> p = 1/3 each.
        let d = device();
        let logits = Tensor::<3>::from_data(
            TensorData::new(vec![0.0f32, 2f32.ln(), 3f32.ln(), 0.0, 0.0, 0.0], [1, 2, 3]),
            &d,
        );
        let tokens = Tensor::<2, Int>::from_data(TensorData::new(vec![2i32, 0], [1, 2]), &d);
        let lp = values(token_log_probs(logits.clone(), tokens.clone(), 1.0));
        assert!((lp[0] - 0.5f32.ln()).abs() < 1e-6, "{lp:?}");
        assert!((lp[1] - (1.0f32 / 3.0).ln()).abs() < 1e-6, "{lp:?}");
        // Temperature 2 halves the logits: position 0 becomes [0, ln√2, ln√3]
        // so p(2) = √3 / (1 + √2 + √3).
        let lp = values(token_log_probs(logits, tokens, 2.0));
        let want = (3f32.sqrt() / (1.0 + 2f32.sqrt() + 3f32.sqrt())).ln();
        assert!((lp[0] - want).abs() < 1e-6, "{lp:?}");
    }

    #[test]
    fn entropy_by_hand() {
        let d = device();
        // Uniform over 4 -> ln 4; one-hot-ish (huge gap) -> ~0.
        let logits = Tensor::<3>::from_data(
            TensorData::new(vec![1.0f32, 1.0, 1.0, 1.0, 50.0, 0.0, 0.0, 0.0], [1, 2, 4]),
            &d,
        );
        let h = values(token_entropy(logits, 1.0));
        assert!((h[0] - 4f32.ln()).abs() < 1e-6, "{h:?}");
        assert!(h[1].abs() < 1e-6, "{h:?}");
    }

    #[test]
    fn masked_mean_ignores_masked_positions() {
        let d = device();
        let v = Tensor::<2>::from_data(
            TensorData::new(vec![1.0f32, 2.0, f32::NAN, 4.0], [2, 2]),
            &d,
        );
        let m = Tensor::<2, Bool>::from_data(
            TensorData::new(vec![true, true, false, true], [2, 2]),
            &d,
        );
        let mean: f32 = masked_mean(v, m).into_scalar();
        assert!((mean - 7.0 / 3.0).abs() < 1e-6);
    }
}

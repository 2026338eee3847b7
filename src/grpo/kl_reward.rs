//! KL placed in the reward instead of the loss (verl
//! `algorithm.use_kl_in_reward`, `apply_kl_penalty`).
//!
//! verl subtracts β·KL_t from the token-level rewards, where KL_t compares
//! the policy that sampled (old) with the reference; GRPO's outcome
//! advantage then sums the token rewards of a rollout. With one outcome
//! reward R_i per rollout this is
//!
//! ```text
//! R'_i = R_i − β · Σ_t m_it · KL_t(old ‖ ref)
//! ```
//!
//! computed before the group advantages, with no gradient (the old and
//! reference log-probs are constants). The trainer then runs
//! [`super::policy_loss`] with `kl_coef = 0` (no double counting).

use super::loss::{KlEstimator, kl_per_token};
use burn::tensor::{Bool, Tensor, TensorReadError};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum KlRewardError {
    #[error("{name} has shape {got:?}, expected {want:?}")]
    ShapeMismatch {
        name: &'static str,
        got: Vec<usize>,
        want: Vec<usize>,
    },
    #[error("{rewards} rewards but {kl} per-rollout KL values")]
    LengthMismatch { rewards: usize, kl: usize },
    #[error("kl_coef must be finite and >= 0, got {kl_coef}")]
    BadCoef { kl_coef: f32 },
    #[error("reading the per-rollout KL back from the device failed")]
    Readback(#[from] TensorReadError),
}

/// Σ_t m_it · KL_t(old ‖ ref) per rollout: `[B, T]` inputs → `B` numbers on
/// the host. Padding positions are ignored even if non-finite.
pub fn sequence_kl(
    old_log_probs: Tensor<2>,
    ref_log_probs: Tensor<2>,
    response_mask: Tensor<2, Bool>,
    estimator: KlEstimator,
) -> Result<Vec<f32>, KlRewardError> {
    let dims = old_log_probs.dims();
    for (name, got) in [
        ("ref_log_probs", ref_log_probs.dims()),
        ("response_mask", response_mask.dims()),
    ] {
        if got != dims {
            return Err(KlRewardError::ShapeMismatch {
                name,
                got: got.to_vec(),
                want: dims.to_vec(),
            });
        }
    }
    let padding = response_mask.bool_not();
    let old = old_log_probs.detach().mask_fill(padding.clone(), 0.0);
    let reference = ref_log_probs.detach().mask_fill(padding.clone(), 0.0);
    // Padded positions have old = ref = 0, so KL_t = 0 there for every
    // estimator; the fill below only guards against rounding.
    let kl = kl_per_token(old, reference, estimator).mask_fill(padding, 0.0);
    // [B, T] -> [B, 1] -> [B]
    let [batch, _] = dims;
    let sums = kl.sum_dim(1).reshape([batch]);
    let data = sums.try_into_data().map_err(TensorReadError::from)?;
    Ok(data
        .try_into_vec_as::<f32>()
        .map_err(TensorReadError::from)?)
}

/// R'_i = R_i − β · KL_i for every rollout.
pub fn penalise_rewards(
    rewards: &[f32],
    sequence_kl: &[f32],
    kl_coef: f32,
) -> Result<Vec<f32>, KlRewardError> {
    if rewards.len() != sequence_kl.len() {
        return Err(KlRewardError::LengthMismatch {
            rewards: rewards.len(),
            kl: sequence_kl.len(),
        });
    }
    if !(kl_coef.is_finite() && kl_coef >= 0.0) {
        return Err(KlRewardError::BadCoef { kl_coef });
    }
    Ok(rewards
        .iter()
        .zip(sequence_kl)
        .map(|(r, kl)| r - kl_coef * kl)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::TensorData;

    #[test]
    fn sequence_kl_by_hand() {
        let d = crate::device::test_device();
        // Rollout 0: δ = ref − old = ln 2 on both tokens → k3 = 1 − ln 2 each.
        // Rollout 1: one token with δ = 0, then padding holding garbage.
        let l2 = 2f32.ln();
        let old = Tensor::<2>::from_data(
            TensorData::new(vec![-1.0f32, -2.0, -0.5, f32::NAN], [2, 2]),
            &d,
        );
        let reference = Tensor::<2>::from_data(
            TensorData::new(vec![-1.0 + l2, -2.0 + l2, -0.5, f32::INFINITY], [2, 2]),
            &d,
        );
        let mask = Tensor::<2, Bool>::from_data(
            TensorData::new(vec![true, true, true, false], [2, 2]),
            &d,
        );
        let kl = sequence_kl(
            old.clone(),
            reference.clone(),
            mask.clone(),
            KlEstimator::K3,
        )
        .unwrap();
        assert!((kl[0] - 2.0 * (1.0 - l2)).abs() < 1e-6, "{kl:?}");
        assert_eq!(kl[1], 0.0);
        // k1 = old − ref = −ln 2 per token.
        let kl = sequence_kl(old, reference, mask, KlEstimator::K1).unwrap();
        assert!((kl[0] + 2.0 * l2).abs() < 1e-6, "{kl:?}");
    }

    #[test]
    fn penalty_by_hand() {
        let r = penalise_rewards(&[1.5, 0.0], &[2.0, 0.5], 0.1).unwrap();
        assert!((r[0] - 1.3).abs() < 1e-6 && (r[1] + 0.05).abs() < 1e-6);
        assert!(matches!(
            penalise_rewards(&[1.0], &[1.0, 2.0], 0.1),
            Err(KlRewardError::LengthMismatch { .. })
        ));
        assert!(matches!(
            penalise_rewards(&[1.0], &[1.0], -0.1),
            Err(KlRewardError::BadCoef { .. })
        ));
    }
}

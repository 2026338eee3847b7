//! The GRPO policy loss: PPO's clipped surrogate on group-relative
//! advantages, plus β·KL to a frozen reference, aggregated over the response
//! tokens.
//!
//! Per response token t of rollout i (shapes `[B, T]`, B rollouts, T padded
//! response length; A_i broadcast over the tokens of rollout i):
//!
//! ```text
//! ρ_t   = exp(clamp(logπ_t − logπ_old,t, −20, 20))
//! pg_t  = −min(ρ_t·A, clip(ρ_t, 1−ε_low, 1+ε_high)·A)
//! pg_t  = min(pg_t, −c·A)      if A < 0 and dual clip c is set (Dual-clip PPO, verl `clip_ratio_c`)
//! L_t   = pg_t + β·KL_t        KL_t from the estimator chosen (k1, k2, k3)
//! ```
//!
//! The ±20 clamp on the log-ratio is verl's guard against `exp` overflow; it
//! never binds in a sane update. The loss is aggregated with one of three
//! modes ([`LossAggregation`]); since aggregation is linear, aggregating
//! pg and KL separately and adding equals aggregating L_t (what TRL does).
//!
//! Metric definitions follow TRL's `GRPOTrainer` where it has them:
//! `clip_ratio_low` = fraction of response tokens with ρ < 1−ε_low and A < 0
//! (the lower clip is what bounds the objective there), `clip_ratio_high` =
//! fraction with ρ > 1+ε_high and A > 0, `clip_ratio` = their sum; `kl` =
//! token mean of KL_t. From verl: `ppo_kl` = token mean of logπ_old − logπ,
//! `dual_clip_frac` = verl's `pg_clipfrac_lower`.

use crate::logits::masked_mean;
use burn::tensor::{Bool, Tensor};
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// The guard on the log importance ratio (verl: ±20).
const LOG_RATIO_CLAMP: f32 = 20.0;

/// Estimator of KL(π_θ ‖ π_ref) from samples of π_θ (Schulman, "Approximating
/// KL divergence"), with δ = logπ_ref − logπ_θ:
/// - k1 = −δ (unbiased, high variance, can be negative; verl `kl`);
/// - k2 = ½δ² (verl `mse`);
/// - k3 = e^δ − δ − 1 (unbiased, ≥ 0, low variance; verl `low_var_kl`, TRL's
///   and DeepSeekMath's choice). Unlike verl we do not clamp k3 to ±10,
///   matching TRL and docs/design.md ("Policy loss").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KlEstimator {
    K1,
    K2,
    #[default]
    K3,
}

/// How per-token losses `[B, T]` become one number (verl `loss_agg_mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LossAggregation {
    /// Σ_it m·L / Σ_it m: every response token weighs the same (DAPO; verl's
    /// default).
    #[default]
    TokenMean,
    /// mean_i (Σ_t m·L / Σ_t m): every rollout weighs the same (the original
    /// GRPO objective). A rollout with no response token contributes 0.
    SeqMeanTokenMean,
    /// Σ_it m·L / (B · max_len) with a constant `max_len` (Dr. GRPO; TRL's
    /// `loss_type = "dr_grpo"`, which divides by batch size times
    /// `max_completion_length`). verl's mode of the same name divides by the
    /// padded length only, without B — a constant factor B apart.
    SeqMeanTokenSumNorm { max_len: usize },
}

/// Settings of the policy loss.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PolicyLossConfig {
    /// ε_low: the ratio is clipped below at 1 − ε_low (PPO/GRPO 0.2).
    pub clip_low: f32,
    /// ε_high: the ratio is clipped above at 1 + ε_high (0.2; DAPO's
    /// clip-higher uses 0.28).
    pub clip_high: f32,
    /// Dual-clip constant c > 1 (verl `clip_ratio_c`, usually 3.0): for
    /// A < 0 the per-token loss is capped at −c·A. `None` disables it.
    pub dual_clip: Option<f32>,
    /// β, the weight of the KL term in the loss. 0 disables the KL term.
    pub kl_coef: f32,
    pub kl_estimator: KlEstimator,
    pub aggregation: LossAggregation,
}

impl Default for PolicyLossConfig {
    /// PPO/GRPO clip 0.2 on both sides, no dual clip, β = 0.04 (the
    /// DeepSeekMath GRPO value) with k3, token-mean aggregation.
    fn default() -> Self {
        PolicyLossConfig {
            clip_low: 0.2,
            clip_high: 0.2,
            dual_clip: None,
            kl_coef: 0.04,
            kl_estimator: KlEstimator::K3,
            aggregation: LossAggregation::TokenMean,
        }
    }
}

impl PolicyLossConfig {
    pub fn validate(&self) -> Result<(), PolicyLossError> {
        let bad = |name: &'static str, value: f32, rule: &'static str| {
            Err(PolicyLossError::BadSetting { name, value, rule })
        };
        if !(self.clip_low.is_finite() && (0.0..1.0).contains(&self.clip_low)) {
            return bad("clip_low", self.clip_low, "0 <= clip_low < 1");
        }
        if !(self.clip_high.is_finite() && self.clip_high >= 0.0) {
            return bad("clip_high", self.clip_high, "clip_high >= 0");
        }
        if let Some(c) = self.dual_clip
            && !(c.is_finite() && c > 1.0)
        {
            return bad("dual_clip", c, "dual_clip > 1");
        }
        if !(self.kl_coef.is_finite() && self.kl_coef >= 0.0) {
            return bad("kl_coef", self.kl_coef, "kl_coef >= 0");
        }
        if let LossAggregation::SeqMeanTokenSumNorm { max_len: 0 } = self.aggregation {
            return bad("max_len", 0.0, "max_len >= 1");
        }
        Ok(())
    }
}

#[derive(Debug, Error)]
pub enum PolicyLossError {
    #[error("policy loss setting {name} = {value} breaks the rule {rule}")]
    BadSetting {
        name: &'static str,
        value: f32,
        rule: &'static str,
    },
    #[error("{name} has shape {got:?}, expected {want:?}")]
    ShapeMismatch {
        name: &'static str,
        got: Vec<usize>,
        want: Vec<usize>,
    },
    #[error("the response mask selects no token")]
    EmptyMask,
    #[error("kl_coef = {kl_coef} > 0 but no reference log-probs were given")]
    MissingReference { kl_coef: f32 },
    #[error("internal: {got} loss metric values read back, {expected} computed")]
    MetricCount { got: usize, expected: usize },
    #[error("reading a loss metric back from the device failed")]
    Readback(#[from] burn::tensor::TensorReadError),
}

/// The tensors of one (mini-)batch of rollouts.
pub struct PolicyLossInputs {
    /// logπ_θ of the sampled response tokens, `[B, T]`, carrying gradients.
    pub log_probs: Tensor<2>,
    /// logπ_old (the policy that sampled), `[B, T]`, no gradients. For a
    /// single on-policy pass this is `log_probs.clone().detach()`.
    pub old_log_probs: Tensor<2>,
    /// logπ_ref of the frozen reference, `[B, T]`; required when β > 0,
    /// optional (KL monitored only) when β = 0.
    pub ref_log_probs: Option<Tensor<2>>,
    /// One advantage per rollout, `[B]`.
    pub advantages: Tensor<1>,
    /// True on response tokens that count (not padding, not prompt), `[B, T]`.
    pub response_mask: Tensor<2, Bool>,
}

/// The loss metrics as plain numbers (over the response tokens of the batch).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PolicyLossMetrics {
    /// The aggregated clipped-surrogate term (without the KL term).
    pub pg_loss: f32,
    /// Token mean of KL_t whenever reference log-probs are given (also with
    /// β = 0, when it is measured but not trained); `None` without them.
    pub kl: Option<f32>,
    /// Fraction of tokens with ρ < 1 − ε_low and A < 0.
    pub clip_ratio_low: f32,
    /// Fraction of tokens with ρ > 1 + ε_high and A > 0.
    pub clip_ratio_high: f32,
    /// clip_ratio_low + clip_ratio_high.
    pub clip_ratio: f32,
    /// Fraction of tokens where the dual clip −c·A bound the loss (A < 0).
    pub dual_clip_frac: f32,
    /// Token mean of logπ_old − logπ_θ (verl `ppo_kl`).
    pub ppo_kl: f32,
    /// Number of response tokens.
    pub response_tokens: usize,
}

/// The loss to differentiate and its metrics.
pub struct PolicyLossOutput {
    /// One-element tensor; keeps the graph back to `log_probs`.
    pub loss: Tensor<1>,
    pub metrics: PolicyLossMetrics,
}

/// KL_t between the actor and the reference per token, `[B, T]`
/// (see [`KlEstimator`]). Gradients flow through `log_probs`.
pub fn kl_per_token(
    log_probs: Tensor<2>,
    ref_log_probs: Tensor<2>,
    estimator: KlEstimator,
) -> Tensor<2> {
    match estimator {
        KlEstimator::K1 => log_probs.sub(ref_log_probs),
        KlEstimator::K2 => log_probs.sub(ref_log_probs).square().mul_scalar(0.5),
        KlEstimator::K3 => {
            let delta = ref_log_probs.sub(log_probs);
            delta.clone().exp().sub(delta).sub_scalar(1.0)
        }
    }
}

/// Aggregates per-token values `[B, T]` over the tokens where `mask` is true
/// (see [`LossAggregation`]). Returns a one-element tensor that keeps
/// gradients. Masked-out positions are replaced by 0 (not multiplied by 0),
/// so non-finite values there do not reach the result. The caller guarantees at least one true mask entry for
/// `TokenMean`.
pub fn aggregate(values: Tensor<2>, mask: Tensor<2, Bool>, mode: LossAggregation) -> Tensor<1> {
    match mode {
        LossAggregation::TokenMean => masked_mean(values, mask),
        LossAggregation::SeqMeanTokenMean => {
            let counts = mask.clone().float().sum_dim(1).clamp_min(1.0);
            // [B, T] -> [B, 1] per-rollout token sums, divided by counts.
            let sums = values.mask_fill(mask.bool_not(), 0.0).sum_dim(1);
            sums.div(counts).mean()
        }
        LossAggregation::SeqMeanTokenSumNorm { max_len } => {
            let [batch, _] = values.dims();
            values
                .mask_fill(mask.bool_not(), 0.0)
                .sum()
                .div_scalar((batch * max_len) as f32)
        }
    }
}

/// The GRPO policy loss of one (mini-)batch. See the module docs for the
/// formulas and metric definitions.
pub fn policy_loss(
    inputs: PolicyLossInputs,
    config: &PolicyLossConfig,
) -> Result<PolicyLossOutput, PolicyLossError> {
    config.validate()?;
    let PolicyLossInputs {
        log_probs,
        old_log_probs,
        ref_log_probs,
        advantages,
        response_mask,
    } = inputs;
    let dims = log_probs.dims();
    let want = dims.to_vec();
    check_shape("old_log_probs", &old_log_probs.dims(), &want)?;
    check_shape("response_mask", &response_mask.dims(), &want)?;
    check_shape("advantages", &advantages.dims(), &want[..1])?;
    if let Some(r) = &ref_log_probs {
        check_shape("ref_log_probs", &r.dims(), &want)?;
    }
    if ref_log_probs.is_none() && config.kl_coef > 0.0 {
        return Err(PolicyLossError::MissingReference {
            kl_coef: config.kl_coef,
        });
    }
    let response_tokens = count_true(&response_mask)?;
    if response_tokens == 0 {
        return Err(PolicyLossError::EmptyMask);
    }

    // Padding positions may hold anything (−inf, NaN, stale values): set
    // them to 0 in every input so they can poison neither the masked sums
    // nor the gradients (0 · inf = NaN otherwise).
    let padding = response_mask.clone().bool_not();
    let log_probs = log_probs.mask_fill(padding.clone(), 0.0);
    let old_log_probs = old_log_probs.mask_fill(padding.clone(), 0.0);
    let ref_log_probs = ref_log_probs.map(|r| r.mask_fill(padding.clone(), 0.0));

    // [B] -> [B, 1] -> [B, T]
    let adv = advantages.unsqueeze_dim::<2>(1).expand(dims);
    let log_ratio = log_probs
        .clone()
        .sub(old_log_probs)
        .clamp(-LOG_RATIO_CLAMP, LOG_RATIO_CLAMP);
    let ratio = log_ratio.clone().exp();
    let surrogate = ratio.clone().mul(adv.clone());
    let clipped = ratio
        .clone()
        .clamp(1.0 - config.clip_low, 1.0 + config.clip_high)
        .mul(adv.clone());
    let mut pg = surrogate.min_pair(clipped).neg();
    let negative_adv = adv.clone().lower_elem(0.0);
    let mut dual_active = None;
    if let Some(c) = config.dual_clip {
        let cap = adv.clone().mul_scalar(-c);
        // verl counts a token as dual-clipped when the capped loss is strictly
        // below the clipped surrogate, for A < 0 only.
        dual_active = Some(
            pg.clone()
                .greater(cap.clone())
                .bool_and(negative_adv.clone()),
        );
        pg = pg
            .clone()
            .mask_where(negative_adv.clone(), pg.min_pair(cap));
    }
    let pg_loss = aggregate(pg, response_mask.clone(), config.aggregation);
    // With β = 0 the KL is still measured (for monitoring) but not trained.
    let (loss, kl_tokens) = match ref_log_probs {
        Some(reference) => {
            let kl = kl_per_token(log_probs, reference, config.kl_estimator);
            let loss = if config.kl_coef > 0.0 {
                let kl_loss = aggregate(kl.clone(), response_mask.clone(), config.aggregation);
                pg_loss.clone().add(kl_loss.mul_scalar(config.kl_coef))
            } else {
                pg_loss.clone()
            };
            (loss, Some(kl))
        }
        None => (pg_loss.clone(), None),
    };

    // Metrics: one [k] tensor, one readback.
    let mask = response_mask;
    let low = ratio
        .clone()
        .lower_elem(1.0 - config.clip_low)
        .bool_and(negative_adv);
    let high = ratio
        .greater_elem(1.0 + config.clip_high)
        .bool_and(adv.greater_elem(0.0));
    let frac = |b: Tensor<2, Bool>| masked_mean(b.float(), mask.clone());
    let mut parts = vec![
        pg_loss.detach(),
        frac(low),
        frac(high),
        masked_mean(log_ratio.neg().detach(), mask.clone()),
    ];
    if let Some(active) = dual_active {
        parts.push(frac(active));
    }
    if let Some(kl) = &kl_tokens {
        parts.push(masked_mean(kl.clone().detach(), mask.clone()));
    }
    let values = read_f32(Tensor::cat(parts, 0))?;
    // Positions as pushed above: the four fixed metrics, then the dual-clip
    // fraction if enabled, then the KL if there is a reference.
    let has_dual = config.dual_clip.is_some();
    let expected = 4 + usize::from(has_dual) + usize::from(kl_tokens.is_some());
    if values.len() != expected {
        return Err(PolicyLossError::MetricCount {
            got: values.len(),
            expected,
        });
    }
    let dual_clip_frac = if has_dual { values[4] } else { 0.0 };
    let kl = kl_tokens.map(|_| values[expected - 1]);
    let metrics = PolicyLossMetrics {
        pg_loss: values[0],
        kl,
        clip_ratio_low: values[1],
        clip_ratio_high: values[2],
        clip_ratio: values[1] + values[2],
        dual_clip_frac,
        ppo_kl: values[3],
        response_tokens,
    };
    Ok(PolicyLossOutput { loss, metrics })
}

fn check_shape(name: &'static str, got: &[usize], want: &[usize]) -> Result<(), PolicyLossError> {
    if got == want {
        Ok(())
    } else {
        Err(PolicyLossError::ShapeMismatch {
            name,
            got: got.to_vec(),
            want: want.to_vec(),
        })
    }
}

/// Reads a small tensor back to the host as f32 (casting from bf16/f16 on
/// devices that compute in half precision).
fn read_f32(t: Tensor<1>) -> Result<Vec<f32>, PolicyLossError> {
    let data = t
        .try_into_data()
        .map_err(burn::tensor::TensorReadError::from)?;
    Ok(data
        .try_into_vec_as::<f32>()
        .map_err(burn::tensor::TensorReadError::from)?)
}

fn count_true(mask: &Tensor<2, Bool>) -> Result<usize, PolicyLossError> {
    let n: i64 = mask.clone().int().sum().try_into_scalar()?;
    Ok(n as usize)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, TensorData};

    fn t2(values: &[f32], shape: [usize; 2], device: &Device) -> Tensor<2> {
        Tensor::from_data(TensorData::new(values.to_vec(), shape), device)
    }

    fn mask(values: &[bool], shape: [usize; 2], device: &Device) -> Tensor<2, Bool> {
        Tensor::from_data(TensorData::new(values.to_vec(), shape), device)
    }

    fn scalar(t: Tensor<1>) -> f32 {
        t.into_scalar()
    }

    fn close(a: f32, b: f32) -> bool {
        (a - b).abs() < 1e-6
    }

    /// One rollout, three tokens with ratios 1.5, 0.5, 1.
    fn one_rollout(adv: f32, device: &Device) -> PolicyLossInputs {
        let old = [-1.0f32, -2.0, -0.5];
        let new = [old[0] + 1.5f32.ln(), old[1] + 0.5f32.ln(), old[2]];
        PolicyLossInputs {
            log_probs: t2(&new, [1, 3], device),
            old_log_probs: t2(&old, [1, 3], device),
            ref_log_probs: None,
            advantages: Tensor::from_floats([adv], device),
            response_mask: mask(&[true, true, true], [1, 3], device),
        }
    }

    fn no_kl() -> PolicyLossConfig {
        PolicyLossConfig {
            kl_coef: 0.0,
            ..PolicyLossConfig::default()
        }
    }

    #[test]
    fn clipped_surrogate_positive_advantage_by_hand() {
        let d = crate::device::test_device();
        // A = 1: ρA = [1.5, .5, 1], clip(ρ)A = [1.2, .8, 1], min = [1.2, .5, 1],
        // pg = −[1.2, .5, 1], token mean −0.9. Only token 0 is clipped (high).
        let out = policy_loss(one_rollout(1.0, &d), &no_kl()).unwrap();
        assert!(close(scalar(out.loss), -0.9));
        let m = out.metrics;
        assert!(close(m.pg_loss, -0.9));
        assert!(close(m.clip_ratio_high, 1.0 / 3.0) && m.clip_ratio_low == 0.0);
        assert!(close(m.clip_ratio, 1.0 / 3.0));
        assert_eq!(m.kl, None);
        assert_eq!(m.response_tokens, 3);
        // ppo_kl = mean(old − new) = −(ln 1.5 + ln .5)/3.
        assert!(close(m.ppo_kl, -(1.5f32.ln() + 0.5f32.ln()) / 3.0));
    }

    #[test]
    fn clipped_surrogate_negative_advantage_and_dual_clip_by_hand() {
        let d = crate::device::test_device();
        // A = −1: ρA = [−1.5, −.5, −1], clip(ρ)A = [−1.2, −.8, −1],
        // min = [−1.5, −.8, −1], pg = [1.5, .8, 1], mean 1.1; token 1 is
        // clipped low.
        let out = policy_loss(one_rollout(-1.0, &d), &no_kl()).unwrap();
        assert!(close(scalar(out.loss), 1.1));
        assert!(close(out.metrics.clip_ratio_low, 1.0 / 3.0) && out.metrics.clip_ratio_high == 0.0);
        assert_eq!(out.metrics.dual_clip_frac, 0.0);
        // Dual clip c = 1.4 caps the loss at −cA = 1.4: pg = [1.4, .8, 1].
        let config = PolicyLossConfig {
            dual_clip: Some(1.4),
            ..no_kl()
        };
        let out = policy_loss(one_rollout(-1.0, &d), &config).unwrap();
        assert!(close(scalar(out.loss), 3.2 / 3.0));
        assert!(close(out.metrics.dual_clip_frac, 1.0 / 3.0));
        // For A > 0 the dual clip changes nothing.
        let out = policy_loss(one_rollout(1.0, &d), &config).unwrap();
        assert!(close(scalar(out.loss), -0.9));
        assert_eq!(out.metrics.dual_clip_frac, 0.0);
    }

    #[test]
    fn kl_is_zero_when_actor_equals_reference() {
        let d = crate::device::test_device();
        let logp = [-0.3f32, -2.5, -1.0, -4.0];
        for estimator in [KlEstimator::K1, KlEstimator::K2, KlEstimator::K3] {
            let kl = kl_per_token(t2(&logp, [2, 2], &d), t2(&logp, [2, 2], &d), estimator);
            let values = kl.into_data().try_into_vec_as::<f32>().unwrap();
            assert_eq!(values, vec![0.0; 4], "{estimator:?}");
            let inputs = PolicyLossInputs {
                log_probs: t2(&logp, [2, 2], &d),
                old_log_probs: t2(&logp, [2, 2], &d),
                ref_log_probs: Some(t2(&logp, [2, 2], &d)),
                advantages: Tensor::from_floats([0.5, -0.5], &d),
                response_mask: mask(&[true; 4], [2, 2], &d),
            };
            let config = PolicyLossConfig {
                kl_coef: 0.1,
                kl_estimator: estimator,
                ..PolicyLossConfig::default()
            };
            let out = policy_loss(inputs, &config).unwrap();
            assert_eq!(out.metrics.kl, Some(0.0));
            // ρ = 1 everywhere: pg = −A per token, mean over tokens = 0.
            assert!(close(scalar(out.loss), 0.0));
        }
    }

    #[test]
    fn kl_is_measured_but_not_trained_when_beta_is_zero() {
        let d = crate::device::test_device();
        let mut inputs = one_rollout(1.0, &d);
        // δ = ref − logπ = ln 2 on every token: k3 = 1 − ln 2.
        let logp = inputs.log_probs.clone();
        inputs.ref_log_probs = Some(logp.add_scalar(2f32.ln()));
        let out = policy_loss(inputs, &no_kl()).unwrap();
        assert!(close(out.metrics.kl.unwrap(), 1.0 - 2f32.ln()));
        assert!(close(scalar(out.loss), -0.9));
        // With β = 0.5 the same KL enters the loss.
        let mut inputs = one_rollout(1.0, &d);
        inputs.ref_log_probs = Some(inputs.log_probs.clone().add_scalar(2f32.ln()));
        let config = PolicyLossConfig {
            kl_coef: 0.5,
            ..no_kl()
        };
        let out = policy_loss(inputs, &config).unwrap();
        assert!(close(scalar(out.loss), -0.9 + 0.5 * (1.0 - 2f32.ln())));
    }

    #[test]
    fn kl_estimators_by_hand() {
        let d = crate::device::test_device();
        // δ = ref − logπ = ln 2: k1 = −ln 2, k2 = ½ ln²2, k3 = 2 − ln 2 − 1.
        let logp = t2(&[-2.0], [1, 1], &d);
        let reference = t2(&[-2.0 + 2f32.ln()], [1, 1], &d);
        let k = |e| -> f32 {
            kl_per_token(logp.clone(), reference.clone(), e)
                .sum()
                .into_scalar()
        };
        let l2 = 2f32.ln();
        assert!(close(k(KlEstimator::K1), -l2));
        assert!(close(k(KlEstimator::K2), 0.5 * l2 * l2));
        assert!(close(k(KlEstimator::K3), 1.0 - l2));
    }

    #[test]
    fn aggregation_modes_by_hand() {
        let d = crate::device::test_device();
        // Rollout 0 has tokens [1, 2, 3], rollout 1 has [4] and two pads:
        // values [[1, 2, 3], [4, NaN, inf]], mask [[1, 1, 1], [1, 0, 0]]: the
        // padding values must not reach any mode.
        let v = t2(&[1.0, 2.0, 3.0, 4.0, f32::NAN, f32::INFINITY], [2, 3], &d);
        let m = mask(&[true, true, true, true, false, false], [2, 3], &d);
        let agg = |mode| scalar(aggregate(v.clone(), m.clone(), mode));
        assert!(close(agg(LossAggregation::TokenMean), 10.0 / 4.0));
        assert!(close(
            agg(LossAggregation::SeqMeanTokenMean),
            (2.0 + 4.0) / 2.0
        ));
        assert!(close(
            agg(LossAggregation::SeqMeanTokenSumNorm { max_len: 5 }),
            10.0 / (2.0 * 5.0)
        ));
    }

    #[test]
    fn loss_keeps_gradients_to_the_log_probs() {
        let d = crate::device::test_device().autodiff();
        let mut inputs = one_rollout(1.0, &d);
        let logp = inputs.log_probs.require_grad();
        inputs.log_probs = logp.clone();
        // Mask out token 2 to check masked tokens get no gradient.
        inputs.response_mask = mask(&[true, true, false], [1, 3], &d);
        let out = policy_loss(inputs, &no_kl()).unwrap();
        let grads = out.loss.backward();
        let g = logp.grad(&grads).expect("log_probs has a gradient");
        let g = g.into_data().try_into_vec_as::<f32>().unwrap();
        // Token 0 is clipped (ρ = 1.5 > 1.2, A > 0): zero gradient. Token 1:
        // d(−ρA/2)/dlogπ = −ρA/2 = −0.25. Token 2 is masked: zero.
        assert!(
            close(g[0], 0.0) && close(g[1], -0.25) && close(g[2], 0.0),
            "{g:?}"
        );
    }

    #[test]
    fn non_finite_padding_is_ignored() {
        let d = crate::device::test_device().autodiff();
        let mut inputs = one_rollout(-1.0, &d);
        // Token 2 is padding and holds garbage in every input.
        let logp = t2(
            &[-1.0 + 1.5f32.ln(), -2.0 + 0.5f32.ln(), f32::NEG_INFINITY],
            [1, 3],
            &d,
        )
        .require_grad();
        inputs.log_probs = logp.clone();
        inputs.old_log_probs = t2(&[-1.0, -2.0, f32::NAN], [1, 3], &d);
        inputs.ref_log_probs = Some(t2(&[-1.0, -2.0, f32::INFINITY], [1, 3], &d));
        inputs.response_mask = mask(&[true, true, false], [1, 3], &d);
        let config = PolicyLossConfig {
            kl_coef: 0.1,
            ..PolicyLossConfig::default()
        };
        let out = policy_loss(inputs, &config).unwrap();
        assert!(out.metrics.kl.unwrap().is_finite());
        let grads = out.loss.backward();
        let g = logp
            .grad(&grads)
            .unwrap()
            .into_data()
            .try_into_vec_as::<f32>()
            .unwrap();
        assert!(g.iter().all(|x| x.is_finite()), "{g:?}");
        assert_eq!(g[2], 0.0);
    }

    #[test]
    fn bad_inputs_are_errors() {
        let d = crate::device::test_device();
        let mut inputs = one_rollout(1.0, &d);
        inputs.response_mask = mask(&[false; 3], [1, 3], &d);
        assert!(matches!(
            policy_loss(inputs, &no_kl()),
            Err(PolicyLossError::EmptyMask)
        ));
        let mut inputs = one_rollout(1.0, &d);
        inputs.advantages = Tensor::from_floats([1.0, 2.0], &d);
        assert!(matches!(
            policy_loss(inputs, &no_kl()),
            Err(PolicyLossError::ShapeMismatch {
                name: "advantages",
                ..
            })
        ));
        let inputs = one_rollout(1.0, &d);
        assert!(matches!(
            policy_loss(inputs, &PolicyLossConfig::default()),
            Err(PolicyLossError::MissingReference { .. })
        ));
        let inputs = one_rollout(1.0, &d);
        let config = PolicyLossConfig {
            dual_clip: Some(1.0),
            ..no_kl()
        };
        assert!(matches!(
            policy_loss(inputs, &config),
            Err(PolicyLossError::BadSetting {
                name: "dual_clip",
                ..
            })
        ));
    }
}

//! GRPO math against numbers from `tests/golden/make_golden.py`, which
//! re-implements verl's and TRL's formulas in numpy (float64 on float32
//! inputs): group advantages in the three scaling modes, and the clipped
//! surrogate with dual clip, k1/k2/k3 and the three aggregation modes,
//! including the gradient with respect to the log-probs.

use burn::tensor::{Bool, Device, Tensor, TensorData};
use serde::Deserialize;
use vgrpo::grpo::{
    AdvantageConfig, AdvantageScale, KlEstimator, LossAggregation, PolicyLossConfig,
    PolicyLossInputs, group_advantages, policy_loss,
};

fn load<T: for<'de> Deserialize<'de>>(name: &str) -> T {
    let path = format!("{}/tests/golden/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("parsing {path}: {e}"))
}

/// Within 1e-5 (relative above 1); a NaN or infinity on either side fails.
fn assert_close(what: &str, got: f64, want: f64) {
    assert!(
        got.is_finite() && want.is_finite(),
        "{what}: got {got}, want {want}"
    );
    let tol = 1e-5 * want.abs().max(1.0);
    assert!((got - want).abs() <= tol, "{what}: got {got}, want {want}");
}

#[derive(Deserialize)]
struct AdvantageCase {
    group_size: usize,
    scale: String,
    epsilon: f32,
    rewards: Vec<f32>,
    advantages: Vec<f64>,
    frac_reward_zero_std: f64,
}

#[test]
fn advantages_match_verl_and_trl() {
    let cases: Vec<AdvantageCase> = load("advantages.json");
    assert_eq!(cases.len(), 9);
    for (i, case) in cases.iter().enumerate() {
        let scale = match case.scale.as_str() {
            "group" => AdvantageScale::Group,
            "batch" => AdvantageScale::Batch,
            "none" => AdvantageScale::None,
            other => panic!("unknown scale {other}"),
        };
        let config = AdvantageConfig {
            scale,
            epsilon: case.epsilon,
        };
        let adv = group_advantages(&case.rewards, case.group_size, &config).unwrap();
        for (j, (got, want)) in adv.values.iter().zip(&case.advantages).enumerate() {
            assert_close(
                &format!("case {i} ({}) advantage {j}", case.scale),
                f64::from(*got),
                *want,
            );
        }
        assert_close(
            &format!("case {i} frac_reward_zero_std"),
            f64::from(adv.frac_reward_zero_std),
            case.frac_reward_zero_std,
        );
        // Every case has an all-correct and an all-wrong group.
        assert!(adv.zero_std[1] && adv.zero_std[adv.n_groups() - 1]);
    }
}

#[derive(Deserialize)]
struct LossCase {
    batch: usize,
    tokens: usize,
    aggregation: String,
    max_len: usize,
    clip_low: f32,
    clip_high: f32,
    dual_clip: Option<f32>,
    kl_coef: f32,
    kl_estimator: String,
    log_probs: Vec<f32>,
    old_log_probs: Vec<f32>,
    ref_log_probs: Option<Vec<f32>>,
    advantages: Vec<f32>,
    mask: Vec<bool>,
    loss: f64,
    pg_loss: f64,
    kl: Option<f64>,
    clip_ratio_low: f64,
    clip_ratio_high: f64,
    dual_clip_frac: f64,
    ppo_kl: f64,
    grad: Vec<f64>,
}

impl LossCase {
    fn config(&self) -> PolicyLossConfig {
        PolicyLossConfig {
            clip_low: self.clip_low,
            clip_high: self.clip_high,
            dual_clip: self.dual_clip,
            kl_coef: self.kl_coef,
            kl_estimator: match self.kl_estimator.as_str() {
                "k1" => KlEstimator::K1,
                "k2" => KlEstimator::K2,
                "k3" => KlEstimator::K3,
                other => panic!("unknown estimator {other}"),
            },
            aggregation: match self.aggregation.as_str() {
                "token-mean" => LossAggregation::TokenMean,
                "seq-mean-token-mean" => LossAggregation::SeqMeanTokenMean,
                "seq-mean-token-sum-norm" => LossAggregation::SeqMeanTokenSumNorm {
                    max_len: self.max_len,
                },
                other => panic!("unknown aggregation {other}"),
            },
        }
    }
}

fn t2(values: &[f32], shape: [usize; 2], device: &Device) -> Tensor<2> {
    Tensor::from_data(TensorData::new(values.to_vec(), shape), device)
}

#[test]
fn policy_loss_and_its_gradient_match_verl_and_trl() {
    let cases: Vec<LossCase> = load("policy_loss.json");
    assert_eq!(cases.len(), 9);
    let device = vgrpo::device::test_device().autodiff();
    let mut dual_clip_exercised = false;
    for (i, case) in cases.iter().enumerate() {
        let shape = [case.batch, case.tokens];
        let log_probs = t2(&case.log_probs, shape, &device).require_grad();
        let inputs = PolicyLossInputs {
            log_probs: log_probs.clone(),
            old_log_probs: t2(&case.old_log_probs, shape, &device),
            ref_log_probs: case.ref_log_probs.as_ref().map(|r| t2(r, shape, &device)),
            advantages: Tensor::from_data(
                TensorData::new(case.advantages.clone(), [case.batch]),
                &device,
            ),
            response_mask: Tensor::<2, Bool>::from_data(
                TensorData::new(case.mask.clone(), shape),
                &device,
            ),
        };
        let out = policy_loss(inputs, &case.config()).unwrap();
        let label = format!(
            "case {i} ({}, dual {:?}, {})",
            case.aggregation, case.dual_clip, case.kl_estimator
        );
        let m = out.metrics;
        assert_close(
            &format!("{label} pg_loss"),
            f64::from(m.pg_loss),
            case.pg_loss,
        );
        assert_close(
            &format!("{label} clip_ratio_low"),
            f64::from(m.clip_ratio_low),
            case.clip_ratio_low,
        );
        assert_close(
            &format!("{label} clip_ratio_high"),
            f64::from(m.clip_ratio_high),
            case.clip_ratio_high,
        );
        assert_close(
            &format!("{label} dual_clip_frac"),
            f64::from(m.dual_clip_frac),
            case.dual_clip_frac,
        );
        assert_close(&format!("{label} ppo_kl"), f64::from(m.ppo_kl), case.ppo_kl);
        match (m.kl, case.kl) {
            (Some(got), Some(want)) => assert_close(&format!("{label} kl"), f64::from(got), want),
            (None, None) => {}
            (got, want) => panic!("{label} kl: got {got:?}, want {want:?}"),
        }
        assert_eq!(m.response_tokens, case.mask.iter().filter(|&&b| b).count());
        dual_clip_exercised |= case.dual_clip_frac > 0.0;

        let loss: f32 = out.loss.clone().detach().into_scalar();
        assert_close(&format!("{label} loss"), f64::from(loss), case.loss);
        let grads = out.loss.backward();
        let grad = log_probs
            .grad(&grads)
            .expect("the loss reaches the log-probs");
        let grad = grad.into_data().try_into_vec_as::<f32>().unwrap();
        for (j, (got, want)) in grad.iter().zip(&case.grad).enumerate() {
            assert_close(
                &format!("{label} d loss / d logp[{j}]"),
                f64::from(*got),
                *want,
            );
        }
    }
    assert!(
        dual_clip_exercised,
        "the fixture must exercise the dual clip"
    );
}

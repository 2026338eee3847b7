//! `update_actor`: μ passes of mini-batch updates over a step's rollouts,
//! each a teacher-forced forward of the actor with gradients, the clipped,
//! KL-regularised policy loss ([`super::loss`]), its gradient with the LM
//! head run a chunk of positions at a time ([`super::chunked`]) and one
//! AdamW step.
//!
//! A mini-batch runs as micro-batches of `[grpo] micro_batch_size`
//! rollouts (whole groups, in order; 0 = the whole mini-batch at once):
//! one forward + backward each, the loss of each scaled by its share of
//! the mini-batch ([`MicroBatchWeights`]) so that the summed gradients
//! ([`GradAccumulator`]) are those of the mini-batch's loss, then one
//! optimizer step on the sum — the global norm clip and the non-finite
//! guard apply to it, once. The loss metrics are weighted the same way, so
//! they are the whole mini-batch's up to float rounding.

use super::chunked::policy_gradients;
use super::config::{GrpoConfig, micro_size};
use super::credit::StepAdvantages;
use super::error::TrainError;
use super::forcing::{StepLogProbs, TeacherForcing, bool_mask};
use super::loss::{
    LossAggregation, PolicyLossConfig, PolicyLossInputs, PolicyLossMetrics, policy_loss,
};
use crate::logits::masked_mean;
use crate::model::QwenVl;
use crate::optim::{GradAccumulator, Optimizer, StepOutcome};
use crate::rng::Rng;
use crate::run::Run;
use crate::train_state::TrainState;
use burn::optim::GradientsParams;
use burn::tensor::{Device, Int, Tensor, TensorData};

/// The fixed settings of a step's update.
pub struct UpdateSettings<'a> {
    pub loss: PolicyLossConfig,
    /// μ, passes over the step's rollouts.
    pub ppo_epochs: usize,
    /// Rollouts per optimizer update.
    pub update_size: usize,
    /// Rollouts per forward/backward within an update (0 = all of them).
    pub micro_batch_size: usize,
    pub group_size: usize,
    /// Log-probs use logits / T.
    pub temperature: f64,
    /// Completion positions per chunk of LM-head logits (0 = all at once).
    pub logit_chunk: usize,
    /// One update over exactly the rollouts just sampled: the old
    /// log-probs are the detached current ones.
    pub on_policy: bool,
    /// The autodiff device the actor trains on.
    pub device: &'a Device,
}

impl<'a> UpdateSettings<'a> {
    /// The update `[grpo]` describes, on the autodiff `device`.
    pub fn of(g: &GrpoConfig, device: &'a Device) -> Self {
        UpdateSettings {
            loss: g.policy_loss(),
            ppo_epochs: g.ppo_epochs,
            update_size: g.update_size(),
            micro_batch_size: g.micro_batch_size,
            group_size: g.group_size,
            temperature: f64::from(g.temperature),
            logit_chunk: g.logit_chunk,
            on_policy: g.ppo_epochs == 1 && g.update_size() == g.prompts_per_step * g.group_size,
            device,
        }
    }
}

/// The step's inputs to the update: its teacher-forcing batches, the
/// log-probs to compare against, and the advantages.
pub type UpdateInputs<'a> = (&'a TeacherForcing<'a>, &'a StepLogProbs, &'a StepAdvantages);

/// Runs the update passes at learning rate `lr` and returns the actor and
/// the step's means. Every update's outcome goes through the run's
/// non-finite guard.
pub fn update(
    mut actor: QwenVl,
    optimizer: &mut Optimizer,
    (forcing, logp, adv): UpdateInputs<'_>,
    settings: &UpdateSettings<'_>,
    lr: f64,
    state: &mut TrainState,
    run: &Run,
) -> Result<(QwenVl, UpdateAccumulator), TrainError> {
    let step = state.step + 1;
    let mut acc = UpdateAccumulator::default();
    let mut rows = adv.update_rows.clone();
    let chunk = settings.update_size.min(rows.len().max(1));
    for _ in 0..settings.ppo_epochs {
        if rows.len() > chunk {
            shuffle_update_rows(&mut rows, chunk, settings.group_size, &mut state.rng.update);
        }
        for mini in rows.chunks(chunk) {
            let inputs = (forcing, logp, adv);
            let (updated, outcome) =
                mini_batch_update(actor, optimizer, inputs, mini, settings, lr, &mut acc)?;
            actor = updated;
            run.guard(state, step, outcome)?;
        }
    }
    Ok((actor, acc))
}

/// One optimizer update on the rollouts `rows`: the policy loss's
/// gradient, micro-batch by micro-batch ([`micro_batch_gradients`], the LM
/// head `logit_chunk` positions at a time) and summed, then one optimizer
/// step. A mini-batch that fits in one micro-batch takes one pass, its
/// loss unscaled (the numbers of an update without micro-batches).
fn mini_batch_update(
    actor: QwenVl,
    optimizer: &mut Optimizer,
    inputs: UpdateInputs<'_>,
    rows: &[usize],
    settings: &UpdateSettings<'_>,
    lr: f64,
    acc: &mut UpdateAccumulator,
) -> Result<(QwenVl, StepOutcome), TrainError> {
    let micro = micro_size(settings.micro_batch_size, rows.len());
    let (grads, metrics, entropy) = if micro >= rows.len() {
        let g = micro_batch_gradients(&actor, inputs, rows, settings, 1.0)?;
        (g.grads, g.metrics, g.entropy)
    } else {
        let forcing = inputs.0;
        let mini = BatchSize {
            rows: rows.len(),
            tokens: forcing.tokens(rows),
        };
        let mut sum = GradAccumulator::new();
        let mut weighted = WeightedMetrics::default();
        for part in rows.chunks(micro) {
            let size = BatchSize {
                rows: part.len(),
                tokens: forcing.tokens(part),
            };
            let w = MicroBatchWeights::of(settings.loss.aggregation, size, mini);
            let g = micro_batch_gradients(&actor, inputs, part, settings, w.loss)?;
            sum.add(&actor, g.grads);
            weighted.add(&g.metrics, g.entropy, w);
        }
        let (metrics, entropy) = weighted.finish();
        (sum.take(), metrics, entropy)
    };
    let (updated, outcome) = optimizer.step(actor, grads, lr)?;
    acc.add(&metrics, entropy, outcome);
    Ok((updated, outcome))
}

/// One micro-batch's share of the update's gradient.
struct MicroGradients {
    /// ∂(scale · L_micro)/∂θ.
    grads: GradientsParams,
    /// The micro-batch's own loss metrics (unscaled).
    metrics: PolicyLossMetrics,
    /// Its token-mean entropy.
    entropy: f32,
}

/// The gradient of `scale` times the policy loss of the rollouts `rows`
/// ([`policy_gradients`]): one teacher-forced forward and backward.
fn micro_batch_gradients(
    actor: &QwenVl,
    (forcing, logp, adv): UpdateInputs<'_>,
    rows: &[usize],
    settings: &UpdateSettings<'_>,
    scale: f64,
) -> Result<MicroGradients, TrainError> {
    let device = settings.device;
    let cb = forcing.batch(rows)?;
    let mask = bool_mask(&cb.completion_mask, device);
    let width = cb.width();
    let pick = |all: &Tensor<2>| select_rows(all, rows, width, device);
    let old = match &logp.old {
        Some(old) if !settings.on_policy => Some(pick(old)),
        _ => None,
    };
    let advantages = Tensor::<1>::from_data(
        TensorData::new(
            rows.iter().map(|&r| adv.advantages.values[r]).collect(),
            [rows.len()],
        ),
        device,
    );
    let inputs = |log_probs: Tensor<2>| PolicyLossInputs {
        // On-policy the old log-probs are the detached current ones.
        old_log_probs: old.unwrap_or_else(|| log_probs.clone().detach()),
        log_probs,
        ref_log_probs: Some(pick(&logp.reference)),
        advantages,
        response_mask: mask.clone(),
    };
    let loss = |log_probs| {
        let mut out = policy_loss(inputs(log_probs), &settings.loss)?;
        if scale != 1.0 {
            out.loss = out.loss.mul_scalar(scale);
        }
        Ok(out)
    };
    let (t, chunk) = (settings.temperature, settings.logit_chunk);
    let grads = policy_gradients(actor, &cb, t, chunk, device, loss)?;
    let entropy = masked_mean(grads.entropy, mask.inner());
    Ok(MicroGradients {
        grads: grads.grads,
        metrics: grads.metrics,
        entropy: entropy.into_scalar::<f32>(),
    })
}

/// Rollouts and response tokens of a (micro- or mini-) batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchSize {
    pub rows: usize,
    /// Response tokens (mask entries that are true).
    pub tokens: usize,
}

/// The factors that make a mini-batch's micro-batches add up to it.
///
/// A mini-batch of B rollouts and N = Σ_i n_i response tokens is cut into
/// micro-batches k of B_k rollouts and N_k tokens (Σ_k B_k = B,
/// Σ_k N_k = N). [`aggregate`](super::loss::aggregate) over the whole
/// mini-batch, with L_it the per-token loss (mask applied) and L_k the same
/// mode over micro-batch k alone:
///
/// ```text
/// token-mean:              Σ_it L / N                = Σ_k (N_k/N) · (Σ_{it∈k} L / N_k)
///                                                    = Σ_k (N_k/N) · L_k
/// seq-mean-token-mean:     (1/B) Σ_i (Σ_t L / n_i)   = Σ_k (B_k/B) · (1/B_k) Σ_{i∈k} (Σ_t L / n_i)
///                                                    = Σ_k (B_k/B) · L_k
/// seq-mean-token-sum-norm: Σ_it L / (B · max_len)    = Σ_k (B_k/B) · Σ_{it∈k} L / (B_k · max_len)
///                                                    = Σ_k (B_k/B) · L_k
/// ```
///
/// So micro-batch k's loss is scaled by `loss` = N_k/N (token-mean) or
/// B_k/B (the two sequence means), and by linearity of the gradient the
/// sum of the scaled micro-batch gradients is the mini-batch's. pg and KL
/// are aggregated by the same mode, so `pg_loss` takes the same factor.
/// The other loss metrics are token means whatever the mode (`kl`, the
/// clip ratios, `dual_clip_frac`, `ppo_kl`, the entropy):
/// Σ_it x / N = Σ_k (N_k/N) · (Σ_{it∈k} x / N_k), the factor `tokens`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MicroBatchWeights {
    /// The factor of the micro-batch's loss and `pg_loss`.
    pub loss: f64,
    /// The factor of its token means: N_k/N.
    pub tokens: f64,
}

impl MicroBatchWeights {
    /// The factors of `micro` within `mini` under `aggregation`.
    pub fn of(aggregation: LossAggregation, micro: BatchSize, mini: BatchSize) -> Self {
        let tokens = micro.tokens as f64 / mini.tokens.max(1) as f64;
        let rows = micro.rows as f64 / mini.rows.max(1) as f64;
        let loss = match aggregation {
            LossAggregation::TokenMean => tokens,
            LossAggregation::SeqMeanTokenMean | LossAggregation::SeqMeanTokenSumNorm { .. } => rows,
        };
        MicroBatchWeights { loss, tokens }
    }
}

/// A mini-batch's loss metrics from its micro-batches' (weighted sums in
/// f64, [`MicroBatchWeights`]).
#[derive(Debug, Default)]
struct WeightedMetrics {
    pg_loss: f64,
    kl: Option<f64>,
    clip_low: f64,
    clip_high: f64,
    dual_clip: f64,
    ppo_kl: f64,
    entropy: f64,
    tokens: usize,
}

impl WeightedMetrics {
    fn add(&mut self, m: &PolicyLossMetrics, entropy: f32, w: MicroBatchWeights) {
        let t = |x: f32| w.tokens * f64::from(x);
        self.pg_loss += w.loss * f64::from(m.pg_loss);
        if let Some(kl) = m.kl {
            *self.kl.get_or_insert(0.0) += t(kl);
        }
        self.clip_low += t(m.clip_ratio_low);
        self.clip_high += t(m.clip_ratio_high);
        self.dual_clip += t(m.dual_clip_frac);
        self.ppo_kl += t(m.ppo_kl);
        self.entropy += t(entropy);
        self.tokens += m.response_tokens;
    }

    /// The mini-batch's metrics and token-mean entropy.
    fn finish(&self) -> (PolicyLossMetrics, f32) {
        let (low, high) = (self.clip_low as f32, self.clip_high as f32);
        let metrics = PolicyLossMetrics {
            pg_loss: self.pg_loss as f32,
            kl: self.kl.map(|kl| kl as f32),
            clip_ratio_low: low,
            clip_ratio_high: high,
            clip_ratio: low + high,
            dual_clip_frac: self.dual_clip as f32,
            ppo_kl: self.ppo_kl as f32,
            response_tokens: self.tokens,
        };
        (metrics, self.entropy as f32)
    }
}

/// Rows `rows` of a `[B, T]` tensor of the whole step, cut to the first
/// `width` columns (a mini-batch is padded only to its own longest
/// completion; completions are right-padded, so the columns line up), moved
/// to `device`.
pub fn select_rows(all: &Tensor<2>, rows: &[usize], width: usize, device: &Device) -> Tensor<2> {
    let index: Vec<i64> = rows.iter().map(|&r| r as i64).collect();
    let index = Tensor::<1, Int>::from_data(TensorData::new(index, [rows.len()]), &all.device());
    let picked = all.clone().select(0, index).narrow(1, 0, width);
    Tensor::<2>::from_data(picked.into_data(), device)
}

/// Shuffles the rows of a step's update before they are cut into
/// mini-batches of `chunk`. When a mini-batch holds whole groups (`chunk` a
/// multiple of `g`, `rows` whole groups), the groups are shuffled as units,
/// their rollouts kept together and in order, so every mini-batch still
/// shares one prompt prefill per group
/// ([`super::forcing::whole_groups`]); otherwise the rows themselves are
/// shuffled.
pub fn shuffle_update_rows(rows: &mut Vec<usize>, chunk: usize, g: usize, rng: &mut Rng) {
    if g > 1 && chunk.is_multiple_of(g) && super::forcing::whole_groups(rows, g) {
        let mut groups: Vec<usize> = rows.chunks(g).map(|c| c[0] / g).collect();
        rng.shuffle(&mut groups);
        *rows = groups.iter().flat_map(|&k| k * g..(k + 1) * g).collect();
    } else {
        rng.shuffle(rows);
    }
}

/// Means of the per-update loss metrics over a step.
#[derive(Debug, Default)]
pub struct UpdateAccumulator {
    n: usize,
    pg_loss: f64,
    kl: f64,
    entropy: f64,
    clip_low: f64,
    clip_high: f64,
    grad_norm: f64,
    pub applied: usize,
    pub skipped: usize,
}

impl UpdateAccumulator {
    fn add(&mut self, m: &PolicyLossMetrics, entropy: f32, outcome: StepOutcome) {
        self.n += 1;
        self.pg_loss += f64::from(m.pg_loss);
        self.kl += f64::from(m.kl.unwrap_or(0.0));
        self.entropy += f64::from(entropy);
        self.clip_low += f64::from(m.clip_ratio_low);
        self.clip_high += f64::from(m.clip_ratio_high);
        match outcome {
            StepOutcome::Applied(s) => {
                self.applied += 1;
                self.grad_norm += s.grad_norm;
            }
            StepOutcome::SkippedNonFinite { .. } => self.skipped += 1,
        }
    }

    fn mean(&self, total: f64) -> f32 {
        (total / self.n.max(1) as f64) as f32
    }

    pub fn pg_loss(&self) -> f32 {
        self.mean(self.pg_loss)
    }
    pub fn kl(&self) -> f32 {
        self.mean(self.kl)
    }
    pub fn entropy(&self) -> f32 {
        self.mean(self.entropy)
    }
    pub fn clip_low(&self) -> f32 {
        self.mean(self.clip_low)
    }
    pub fn clip_high(&self) -> f32 {
        self.mean(self.clip_high)
    }
    pub fn clip(&self) -> f32 {
        self.mean(self.clip_low + self.clip_high)
    }
    /// Mean gradient norm of the applied updates.
    pub fn grad_norm(&self) -> f64 {
        self.grad_norm / self.applied.max(1) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::super::forcing::whole_groups;
    use super::*;

    #[test]
    fn select_rows_picks_rows_and_cuts_to_the_mini_batch_width() {
        // The step's [3, 4] log-probs; a mini-batch of rows 2 and 0 whose
        // longest completion is 2 tokens.
        let device = crate::device::test_device();
        let all = Tensor::<2>::from_data(
            TensorData::new((0..12).map(|v| v as f32).collect::<Vec<_>>(), [3, 4]),
            &device,
        );
        let picked = select_rows(&all, &[2, 0], 2, &device);
        assert_eq!(picked.dims(), [2, 2]);
        let values: Vec<f32> = picked.try_into_vec_as::<f32>().unwrap();
        assert_eq!(values, vec![8.0, 9.0, 0.0, 1.0]);
    }

    /// Off-policy inputs of `rows` of a 4-rollout batch (ragged lengths
    /// 5, 3, 1, 4 in width 5), `log_probs` a leaf on `device`.
    fn loss_inputs(rows: std::ops::Range<usize>, device: &Device) -> (PolicyLossInputs, Tensor<2>) {
        const LENGTHS: [usize; 4] = [5, 3, 1, 4];
        let (b, w) = (rows.len(), 5);
        let at = |f: &dyn Fn(usize, usize) -> f32| {
            let v: Vec<f32> = rows
                .clone()
                .flat_map(|i| (0..w).map(move |t| (i, t)))
                .map(|(i, t)| f(i, t))
                .collect();
            Tensor::<2>::from_data(TensorData::new(v, [b, w]), device)
        };
        let lp = |i: usize, t: usize| -0.2 - 1.5 * (1.0 + ((3 * i + 7 * t) as f32).sin());
        let log_probs = at(&lp).require_grad();
        let old = at(&|i, t| lp(i, t) + 0.6 * ((5 * i + 2 * t) as f32).cos());
        let reference = at(&|i, t| lp(i, t) - 0.2 * ((i + 3 * t) as f32).sin());
        let adv = [1.0f32, -0.5, 0.8, -1.2];
        let mask: Vec<bool> = rows
            .clone()
            .flat_map(|i| (0..w).map(move |t| t < LENGTHS[i]))
            .collect();
        let inputs = PolicyLossInputs {
            log_probs: log_probs.clone(),
            old_log_probs: old,
            ref_log_probs: Some(reference),
            advantages: Tensor::from_data(TensorData::new(adv[rows].to_vec(), [b]), device),
            response_mask: Tensor::from_data(TensorData::new(mask, [b, w]), device),
        };
        (inputs, log_probs)
    }

    fn values(t: Tensor<2>) -> Vec<f32> {
        t.into_data().try_into_vec_as::<f32>().unwrap()
    }

    #[test]
    fn scaled_micro_batches_add_up_to_the_mini_batch_loss_gradient_and_metrics() {
        let device = crate::device::test_device().autodiff();
        let modes = [
            LossAggregation::TokenMean,
            LossAggregation::SeqMeanTokenMean,
            LossAggregation::SeqMeanTokenSumNorm { max_len: 6 },
        ];
        for aggregation in modes {
            let config = PolicyLossConfig {
                dual_clip: Some(1.5),
                kl_coef: 0.3,
                aggregation,
                ..PolicyLossConfig::default()
            };
            let (inputs, leaf) = loss_inputs(0..4, &device);
            let whole = policy_loss(inputs, &config).unwrap();
            let whole_loss: f32 = whole.loss.clone().into_scalar();
            let whole_grad = values(leaf.grad(&whole.loss.backward()).unwrap());
            let m = whole.metrics;
            assert!(m.clip_ratio > 0.0 && m.dual_clip_frac > 0.0, "{m:?}");
            let tokens = |r: std::ops::Range<usize>| r.map(|i| [5, 3, 1, 4][i]).sum();
            let mini = BatchSize {
                rows: 4,
                tokens: 13,
            };
            // Uneven cuts too: the weights are not 1/K.
            for cuts in [vec![0..2, 2..4], vec![0..1, 1..4], vec![0..3, 3..4]] {
                let (mut loss, mut grad) = (0.0f64, Vec::new());
                let mut weighted = WeightedMetrics::default();
                for part in cuts.clone() {
                    let size = BatchSize {
                        rows: part.len(),
                        tokens: tokens(part.clone()),
                    };
                    let w = MicroBatchWeights::of(aggregation, size, mini);
                    let (inputs, leaf) = loss_inputs(part, &device);
                    let out = policy_loss(inputs, &config).unwrap();
                    let scaled = out.loss.mul_scalar(w.loss);
                    loss += f64::from(scaled.clone().into_scalar::<f32>());
                    grad.extend(values(leaf.grad(&scaled.backward()).unwrap()));
                    weighted.add(&out.metrics, 0.0, w);
                }
                let what = format!("{aggregation:?}, cuts {cuts:?}");
                assert!(
                    (loss - f64::from(whole_loss)).abs() < 1e-6,
                    "{what}: loss {loss} vs {whole_loss}"
                );
                for (a, b) in grad.iter().zip(&whole_grad) {
                    assert!(
                        (a - b).abs() < 1e-6,
                        "{what}: gradient {grad:?} vs {whole_grad:?}"
                    );
                }
                let (got, _) = weighted.finish();
                let pairs = [
                    (got.pg_loss, m.pg_loss),
                    (got.kl.unwrap(), m.kl.unwrap()),
                    (got.clip_ratio_low, m.clip_ratio_low),
                    (got.clip_ratio_high, m.clip_ratio_high),
                    (got.clip_ratio, m.clip_ratio),
                    (got.dual_clip_frac, m.dual_clip_frac),
                    (got.ppo_kl, m.ppo_kl),
                ];
                for (a, b) in pairs {
                    assert!((a - b).abs() < 1e-6, "{what}: {got:?} vs {m:?}");
                }
                assert_eq!(got.response_tokens, m.response_tokens);
            }
        }
    }

    #[test]
    fn micro_batch_weights_by_mode() {
        let micro = BatchSize { rows: 2, tokens: 3 };
        let mini = BatchSize {
            rows: 8,
            tokens: 12,
        };
        let w = MicroBatchWeights::of(LossAggregation::TokenMean, micro, mini);
        assert_eq!(
            w,
            MicroBatchWeights {
                loss: 0.25,
                tokens: 0.25
            }
        );
        for mode in [
            LossAggregation::SeqMeanTokenMean,
            LossAggregation::SeqMeanTokenSumNorm { max_len: 64 },
        ] {
            let w = MicroBatchWeights::of(mode, micro, mini);
            assert_eq!(
                w,
                MicroBatchWeights {
                    loss: 0.25,
                    tokens: 0.25
                },
                "{mode:?}"
            );
        }
        let micro = BatchSize { rows: 2, tokens: 9 };
        let w = MicroBatchWeights::of(LossAggregation::TokenMean, micro, mini);
        assert_eq!((w.loss, w.tokens), (0.75, 0.75));
        let w = MicroBatchWeights::of(LossAggregation::SeqMeanTokenMean, micro, mini);
        assert_eq!((w.loss, w.tokens), (0.25, 0.75));
    }

    #[test]
    fn mini_batches_of_whole_groups_shuffle_groups_as_units() {
        let mut rng = Rng::new(3);
        let mut rows: Vec<usize> = (0..12).collect();
        shuffle_update_rows(&mut rows, 6, 3, &mut rng);
        assert_ne!(rows, (0..12).collect::<Vec<_>>(), "seed 3 moves something");
        assert!(whole_groups(&rows, 3), "{rows:?}");
        for batch in rows.chunks(6) {
            assert!(whole_groups(batch, 3), "{batch:?}");
        }
        // A mini-batch that splits groups shuffles rows.
        let mut rows: Vec<usize> = (0..12).collect();
        shuffle_update_rows(&mut rows, 4, 3, &mut rng);
        let mut sorted = rows.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..12).collect::<Vec<_>>());
        assert!(!whole_groups(&rows, 3), "{rows:?}");
    }
}

//! `update_actor`: μ passes of mini-batch updates over a step's rollouts,
//! each a teacher-forced forward of the actor with gradients, the clipped,
//! KL-regularised policy loss ([`super::loss`]), its gradient with the LM
//! head run a chunk of positions at a time ([`super::chunked`]) and one
//! AdamW step.

use super::chunked::policy_gradients;
use super::config::GrpoConfig;
use super::credit::StepAdvantages;
use super::error::TrainError;
use super::forcing::{StepLogProbs, TeacherForcing, bool_mask};
use super::loss::{PolicyLossConfig, PolicyLossInputs, PolicyLossMetrics, policy_loss};
use crate::logits::masked_mean;
use crate::model::QwenVl;
use crate::optim::{Optimizer, StepOutcome};
use crate::rng::Rng;
use crate::run::Run;
use crate::train_state::TrainState;
use burn::tensor::{Device, Int, Tensor, TensorData};

/// The fixed settings of a step's update.
pub struct UpdateSettings<'a> {
    pub loss: PolicyLossConfig,
    /// μ, passes over the step's rollouts.
    pub ppo_epochs: usize,
    /// Rollouts per optimizer update.
    pub update_size: usize,
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

/// One optimizer update on the rollouts `rows`: the policy loss's gradient
/// ([`policy_gradients`], the LM head `logit_chunk` positions at a time)
/// and one optimizer step.
fn mini_batch_update(
    actor: QwenVl,
    optimizer: &mut Optimizer,
    (forcing, logp, adv): UpdateInputs<'_>,
    rows: &[usize],
    settings: &UpdateSettings<'_>,
    lr: f64,
    acc: &mut UpdateAccumulator,
) -> Result<(QwenVl, StepOutcome), TrainError> {
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
    let loss = |log_probs| Ok(policy_loss(inputs(log_probs), &settings.loss)?);
    let (t, chunk) = (settings.temperature, settings.logit_chunk);
    let grads = policy_gradients(&actor, &cb, t, chunk, device, loss)?;
    let entropy = masked_mean(grads.entropy, mask.inner());
    let (updated, outcome) = optimizer.step(actor, grads.grads, lr)?;
    acc.add(&grads.metrics, entropy.into_scalar::<f32>(), outcome);
    Ok((updated, outcome))
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

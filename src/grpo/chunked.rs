//! The update's gradient with the logits never whole: the LM head runs
//! over `[grpo] logit_chunk` completion positions at a time, and the
//! gradient is the one-shot path's (up to float rounding).
//!
//! A real vocabulary has V = 151,936 words, so one-shot `[B, W, V]` f32
//! logits of 8 rows × 1024 tokens are 5 GB, and autodiff keeps that and
//! several more V-sized intermediates of the log-softmax for the backward.
//! A two-stage backward (the vector–Jacobian trick of Liger's fused linear
//! cross-entropy and of torch's chunked losses) needs only one chunk's. With
//! h the final-normed hidden states, lp = log softmax(head(h) / T) at the
//! completion tokens and L the policy loss of lp:
//!
//! 1. the model forward to h, with its graph;
//! 2. *values*: lp and the entropy per chunk, from a plain copy of h and
//!    the actor's plain snapshot (no graph);
//! 3. L on lp as a leaf, backward: ∂L/∂lp, `[B, W]`;
//! 4. per chunk c: lp_c recomputed from h_c as a leaf through the LM head,
//!    with a graph; the backward of Σ lp_c · ∂L/∂lp_c gives ∂L/∂h_c and the
//!    head's share of ∂L/∂θ (the tied embedding table's or `lm_head`'s,
//!    when they train);
//! 5. the backward of Σ h · ∂L/∂h through the model's graph: the rest of
//!    ∂L/∂θ (vision tower, decoder, embeddings, LoRA adapters).
//!
//! The shares are summed per parameter ([`GradAccumulator`]); frozen
//! parameters have none. Every value is computed by the same operations as
//! in the one-shot path; only the order in which the head's gradient is
//! summed over chunks (and, tied, with the embedding lookups') differs, so
//! gradients agree to rounding and the loss metrics exactly
//! (`tests/logit_chunk.rs`).

use super::error::TrainError;
use super::loss::{PolicyLossMetrics, PolicyLossOutput};
use crate::logits::{token_entropy, token_log_probs, token_log_probs_and_entropy};
use crate::model::QwenVl;
use crate::model::logprob::{
    CompletionBatch, check_temperature, chunk_spans, completion_hidden, completion_logits,
    completion_targets, tempered_logits,
};
use crate::optim::GradAccumulator;
use burn::module::Module;
use burn::optim::GradientsParams;
use burn::tensor::{Device, Int, Tensor};

/// The policy loss's gradient for one optimizer update.
pub struct PolicyGradients {
    /// ∂L/∂θ of every trainable parameter.
    pub grads: GradientsParams,
    pub metrics: PolicyLossMetrics,
    /// The per-token entropy of the tempered distribution, `[B, W]`, on the
    /// plain device (a metric; no gradient).
    pub entropy: Tensor<2>,
}

/// The loss of the update from the actor's log-probs `[B, W]` (carrying
/// gradients).
pub trait LossOf: FnOnce(Tensor<2>) -> Result<PolicyLossOutput, TrainError> {}
impl<F: FnOnce(Tensor<2>) -> Result<PolicyLossOutput, TrainError>> LossOf for F {}

/// The gradient of `loss` of the actor's completion log-probs on `batch`
/// (logits / `temperature`), the LM head run `chunk` positions at a time.
/// `chunk = 0`, or a width that fits in one chunk, takes the one-shot path
/// ([`one_shot`]: the same memory then, and no recomputed head); else the
/// two-stage backward ([`two_stage`]). `device` is the actor's autodiff
/// device.
pub fn policy_gradients(
    actor: &QwenVl,
    batch: &CompletionBatch,
    temperature: f64,
    chunk: usize,
    device: &Device,
    loss: impl LossOf,
) -> Result<PolicyGradients, TrainError> {
    if chunk == 0 || chunk >= batch.width() {
        one_shot(actor, batch, temperature, device, loss)
    } else {
        two_stage(actor, batch, temperature, chunk, device, loss)
    }
}

/// One backward through `[B, W, V]` logits computed at once.
pub fn one_shot(
    actor: &QwenVl,
    batch: &CompletionBatch,
    temperature: f64,
    device: &Device,
    loss: impl LossOf,
) -> Result<PolicyGradients, TrainError> {
    let logits = completion_logits(actor, batch, temperature, device)?; // [B, W, V]
    let targets = completion_targets(batch, device);
    let log_probs = token_log_probs(logits.clone(), targets, 1.0);
    let entropy = token_entropy(logits.detach(), 1.0).inner();
    let out = loss(log_probs)?;
    let grads = GradientsParams::from_grads(out.loss.backward(), actor);
    Ok(PolicyGradients {
        grads,
        metrics: out.metrics,
        entropy,
    })
}

/// The two-stage backward (module docs) with chunks of `chunk ≥ 1`
/// positions.
///
/// # Shapes
///
/// h `[B, W, H]`; lp, ∂L/∂lp, entropy `[B, W]`; at a time at most
/// `[B, chunk, V]` logits and their log-softmax (with the graph of one
/// chunk in stage 4).
pub fn two_stage(
    actor: &QwenVl,
    batch: &CompletionBatch,
    temperature: f64,
    chunk: usize,
    device: &Device,
    loss: impl LossOf,
) -> Result<PolicyGradients, TrainError> {
    check_temperature(temperature)?;
    let spans: Vec<(usize, usize)> = chunk_spans(batch.width(), chunk.max(1)).collect();
    let hidden = completion_hidden(actor, batch, device)?; // [B, W, H], with the graph
    let h = hidden.clone().inner(); // the same values, no graph
    let targets = completion_targets(batch, device);
    let (values, entropy) = chunk_values(
        &actor.valid(),
        &h,
        &targets.clone().inner(),
        temperature,
        &spans,
    );
    let lp = values.autodiff().require_grad(); // [B, W] leaf
    let out = loss(lp.clone())?;
    let mut grads = out.loss.backward();
    let dlp = lp
        .grad_remove(&mut grads)
        .unwrap_or_else(|| lp.clone().inner().zeros_like()); // [B, W]
    drop(grads);
    let mut acc = GradAccumulator::new();
    let head = HeadPass {
        actor,
        h: &h,
        targets: &targets,
        temperature,
    };
    let dh = head.backward(&dlp, &spans, &mut acc); // [B, W, H]
    let rest = hidden.mul(dh.autodiff()).sum().backward();
    acc.add(actor, GradientsParams::from_grads(rest, actor));
    Ok(PolicyGradients {
        grads: acc.take(),
        metrics: out.metrics,
        entropy,
    })
}

/// Stage 2: log-probs and entropy `([B, W], [B, W])` of the plain `h [B, W,
/// H]` through the plain snapshot `plain` of the actor, chunk by chunk.
pub(crate) fn chunk_values(
    plain: &QwenVl,
    h: &Tensor<3>,
    targets: &Tensor<2, Int>,
    temperature: f64,
    spans: &[(usize, usize)],
) -> (Tensor<2>, Tensor<2>) {
    let (lp, entropy): (Vec<Tensor<2>>, Vec<Tensor<2>>) = spans
        .iter()
        .map(|&(start, len)| {
            let logits = tempered_logits(plain, h.clone().narrow(1, start, len), temperature);
            token_log_probs_and_entropy(logits, targets.clone().narrow(1, start, len), 1.0)
        })
        .unzip();
    (Tensor::cat(lp, 1), Tensor::cat(entropy, 1))
}

/// Stage 4: the LM head chunk by chunk, with a graph from a leaf h_c
/// (shared with SFT's chunked loss, `sft/chunked.rs`).
pub(crate) struct HeadPass<'a> {
    pub actor: &'a QwenVl,
    /// `[B, W, H]`, plain.
    pub h: &'a Tensor<3>,
    /// `[B, W]` on the autodiff device.
    pub targets: &'a Tensor<2, Int>,
    pub temperature: f64,
}

impl HeadPass<'_> {
    /// ∂L/∂h `[B, W, H]` (plain) from ∂L/∂lp `[B, W]`; the head's
    /// parameter gradients go into `acc`.
    pub fn backward(
        &self,
        dlp: &Tensor<2>,
        spans: &[(usize, usize)],
        acc: &mut GradAccumulator<QwenVl>,
    ) -> Tensor<3> {
        let parts = spans
            .iter()
            .map(|&(start, len)| {
                let h_c = self
                    .h
                    .clone()
                    .narrow(1, start, len)
                    .autodiff()
                    .require_grad();
                let logits = tempered_logits(self.actor, h_c.clone(), self.temperature);
                let targets = self.targets.clone().narrow(1, start, len);
                let lp_c = token_log_probs(logits, targets, 1.0); // [B, len]
                let weight = dlp.clone().narrow(1, start, len).autodiff();
                let mut grads = lp_c.mul(weight).sum().backward();
                let dh_c = h_c
                    .grad_remove(&mut grads)
                    .expect("a chunk's hidden states are a leaf of its graph"); // [B, len, H]
                acc.add(self.actor, GradientsParams::from_grads(grads, self.actor));
                dh_c
            })
            .collect();
        Tensor::cat(parts, 1)
    }
}

//! SFT's gradient with the logits never whole: the LM head runs over
//! `[sft] logit_chunk` answer positions at a time, by the two-stage
//! backward GRPO's update uses (`grpo/chunked.rs`, whose module docs give
//! the derivation). The loss α·CE + β·MSE has two inputs from the head:
//! the answer tokens' log-probs lp `[B, W]` (chunked) and the rating
//! logits at one position per row `[B, 5]` (from that position's hidden
//! state alone). With h the answer window's hidden states:
//!
//! 1. the model forward to h, with its graph;
//! 2. lp per chunk from a plain copy of h (no graph);
//! 3. the loss of lp as a leaf and of the rating logits computed from a
//!    leaf copy of h; backward: ∂L/∂lp and the rating path's ∂L/∂h;
//! 4. per chunk, lp_c recomputed from a leaf h_c: ∂L/∂h_c and the head's
//!    gradient;
//! 5. the backward of Σ h · ∂L/∂h through the model.

use super::SftError;
use crate::grpo::chunked::{HeadPass, chunk_values};
use crate::model::QwenVl;
use crate::model::logprob::chunk_spans;
use crate::optim::GradAccumulator;
use crate::score::gather_rating_logits;
use crate::sft_loss::{SftLogProbInputs, SftLossConfig, SftLossMetrics, sft_loss_of_log_probs};
use burn::module::Module;
use burn::optim::GradientsParams;
use burn::tensor::{Bool, Int, Tensor};

/// What the chunked loss reads besides the model.
pub struct ChunkedInputs<'a> {
    /// The answer window's hidden states `[B, W, H]`, with the graph.
    pub window: Tensor<3>,
    /// `[B, W]` target ids (autodiff device).
    pub targets: Tensor<2, Int>,
    pub answer_mask: Tensor<2, Bool>,
    /// `[B]` rating positions within the window.
    pub rating_positions: Tensor<1, Int>,
    pub rating_ids: [u32; 5],
    pub target_score: Tensor<1>,
    pub loss: &'a SftLossConfig,
    /// The loss is divided by it (micro-batches per update).
    pub grad_accum: usize,
}

/// ∂(L / grad_accum)/∂θ and the loss metrics, the LM head `chunk` positions at
/// a time.
///
/// # Shapes
///
/// h `[B, W, H]`; lp, ∂L/∂lp `[B, W]`; at a time at most `[B, chunk, V]`
/// logits (with one chunk's graph in stage 4) and `[B, 1, V]` for the
/// rating position.
pub fn chunked_gradients(
    model: &QwenVl,
    inputs: ChunkedInputs<'_>,
    chunk: usize,
) -> Result<(GradientsParams, SftLossMetrics), SftError> {
    let [b, w, hidden] = inputs.window.dims();
    let spans: Vec<(usize, usize)> = chunk_spans(w, chunk.max(1)).collect();
    let h = inputs.window.clone().inner(); // plain, no graph
    let (values, _) = chunk_values(
        &model.valid(),
        &h,
        &inputs.targets.clone().inner(),
        1.0,
        &spans,
    );
    let lp = values.autodiff().require_grad(); // [B, W] leaf
    let h_leaf = h.clone().autodiff().require_grad(); // [B, W, H] leaf
    // The rating position's hidden state alone through the head: [B, 1, H] → [B, 5].
    let index = inputs
        .rating_positions
        .clone()
        .reshape([b, 1, 1])
        .expand([b, 1, hidden]);
    let at_rating = model.logits(h_leaf.clone().gather(1, index)); // [B, 1, V]
    let device = at_rating.device();
    let rating_logits =
        gather_rating_logits(at_rating, Tensor::zeros([b], &device), inputs.rating_ids);
    let out = sft_loss_of_log_probs(
        SftLogProbInputs {
            log_probs: lp.clone(),
            answer_mask: inputs.answer_mask,
            rating_logits,
            target_score: inputs.target_score,
        },
        inputs.loss,
    )?;
    let mut grads = out.loss.div_scalar(inputs.grad_accum as f32).backward();
    let dlp = lp
        .grad_remove(&mut grads)
        .unwrap_or_else(|| lp.clone().inner().zeros_like()); // [B, W]
    let dh_rating = h_leaf
        .grad_remove(&mut grads)
        .unwrap_or_else(|| h.zeros_like()); // [B, W, H]
    let mut acc = GradAccumulator::new();
    acc.add(model, GradientsParams::from_grads(grads, model));
    let head = HeadPass {
        actor: model,
        h: &h,
        targets: &inputs.targets,
        temperature: 1.0,
    };
    let dh = head.backward(&dlp, &spans, &mut acc) + dh_rating;
    let rest = inputs.window.mul(dh.autodiff()).sum().backward();
    acc.add(model, GradientsParams::from_grads(rest, model));
    Ok((acc.take(), out.metrics))
}

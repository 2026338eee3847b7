//! The logits: `[rows, positions, V]` tensors, the largest single tensors
//! of a step at a real vocabulary (152 k).
//!
//! Only the positions that predict completion (or answer) tokens reach the
//! LM head (`model/logprob.rs`, `sft/mod.rs`), but at `V = 151 936` one
//! row of 512 positions is already 311 MB in f32.

/// V-sized f32 tensors alive at the peak of the GRPO update's loss path
/// (`grpo/update.rs`, `logits.rs`): the log-softmax's shifted logits,
/// kept by `exp` for the backward pass, and the entropy metric's
/// log-softmax output, its `exp` and their product (the logits / T
/// themselves are freed once both log-softmaxes have shifted them). The
/// backward pass peaks no higher: the kept tensor, the gather's scattered
/// gradient and `exp`'s recomputed output and product.
pub const UPDATE_LOGITS_TENSORS: u64 = 4;

/// V-sized f32 tensors alive at the peak of a log-prob pass without a
/// graph (reference, old policy; `completion_logprobs`): each step of the
/// log-softmax (the division by T, the max shift, `exp`, the subtraction
/// of the log-sum) holds its input and its output, and nothing keeps
/// either once the next has run. (A backend that works in place on a
/// uniquely held tensor holds fewer.)
pub const NO_GRAD_LOGITS_TENSORS: u64 = 2;

/// V-sized tensors, in the compute dtype, of the SFT loss (`sft_loss.rs`:
/// the logits, the shifted logits kept by `exp`, and `exp`'s output).
pub const SFT_LOGITS_TENSORS: u64 = 3;

/// Positions per chunk of the `logits_chunked` comparison figure (what 64
/// positions at a time would hold, whatever the config's chunk).
pub const LOGITS_CHUNK: u64 = 64;

/// The positions one LM-head call covers: `chunk` of the `positions`
/// (`grpo.logit_chunk`; 0, or a chunk as wide as the completions, runs
/// the whole width at once).
pub fn chunk_positions(positions: u64, chunk: u64) -> u64 {
    if chunk == 0 {
        positions
    } else {
        positions.min(chunk)
    }
}

/// The GRPO update's loss path over `rows × positions` logits.
///
/// # Shapes
///
/// [`UPDATE_LOGITS_TENSORS`]` × [rows, positions, V] × 4` bytes.
pub fn update_logits(rows: u64, positions: u64, vocab: u64) -> u64 {
    UPDATE_LOGITS_TENSORS * rows * positions * vocab * 4
}

/// The same for one chunk of `chunk` positions (or fewer).
pub fn update_logits_chunked(rows: u64, positions: u64, vocab: u64, chunk: u64) -> u64 {
    update_logits(rows, chunk_positions(positions, chunk), vocab)
}

/// A log-prob pass without a graph.
///
/// # Shapes
///
/// [`NO_GRAD_LOGITS_TENSORS`]` × [rows, positions, V] × 4` bytes.
pub fn no_grad_logits(rows: u64, positions: u64, vocab: u64) -> u64 {
    NO_GRAD_LOGITS_TENSORS * rows * positions * vocab * 4
}

/// The SFT loss path, in the compute dtype of `a` bytes.
///
/// # Shapes
///
/// [`SFT_LOGITS_TENSORS`]` × [rows, positions, V] × a` bytes.
pub fn sft_logits(rows: u64, positions: u64, vocab: u64, a: u64) -> u64 {
    SFT_LOGITS_TENSORS * rows * positions * vocab * a
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logits_by_hand() {
        // 256 rows × 512 positions × 151 936 × 4 bytes = 79.7 GB per tensor.
        let one = 256 * 512 * 151_936 * 4;
        assert_eq!(update_logits(256, 512, 151_936), 4 * one);
        assert_eq!(no_grad_logits(256, 512, 151_936), 2 * one);
        assert_eq!(update_logits_chunked(256, 512, 151_936, 64), 4 * one / 8);
        assert_eq!(update_logits_chunked(2, 10, 7, 64), update_logits(2, 10, 7));
        assert_eq!(update_logits_chunked(2, 10, 7, 0), update_logits(2, 10, 7));
        assert_eq!(chunk_positions(512, 256), 256);
        assert_eq!(sft_logits(8, 100, 1000, 2), 3 * 8 * 100 * 1000 * 2);
    }
}

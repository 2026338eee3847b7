//! Activation memory: what Burn's autodiff graph keeps for the backward
//! pass of a decoder layer or a vision block, and what a pass without a
//! graph holds at its peak.
//!
//! Counted from the code (`model/text.rs`, `model/vision.rs`,
//! `model/layers.rs`) and Burn 0.22's autodiff, which keeps an operation's
//! inputs when its backward needs them: a matmul keeps each operand whose
//! partner is tracked, `exp` and `sigmoid` keep their input, a division
//! its two operands; additions, scalar products, casts, reshapes and
//! gathers keep nothing of tensor size. `a` is the compute dtype's bytes
//! per element (the weights' dtype: 4 for f32 full fine-tuning, 2 for a
//! bf16 LoRA base); norm statistics, attention scores and softmax are f32
//! whatever `a` is.
//!
//! Every constant below is an assumption of the count, named so a
//! calibration against measured peaks can adjust it.

use super::prompt::PromptShape;
use crate::model::config::{Arch, QwenVlConfig, TextConfig};

/// Bytes per element of a norm's saved f32 copy of its input (RMSNorm and
/// LayerNorm compute in f32: `x.square()` and `x / rms` keep it).
pub const NORM_F32_BYTES: u64 = 4;

/// Tensors of MLP width a SwiGLU MLP keeps: the gate projection's output
/// (kept by `sigmoid` and the product), `sigmoid(gate)`, `silu(gate)`,
/// the up projection's output, and their product (kept by `down_proj`).
pub const GATED_MLP_SAVED: u64 = 5;

/// Tensors of MLP width a GELU-tanh MLP (Qwen3-VL's tower) keeps: `fc1`'s
/// output (kept by `powf` and the product), `tanh`'s input, `1 + tanh`,
/// and the activation's output (kept by `fc2`).
pub const GELU_MLP_SAVED: u64 = 4;

/// f32 tensors of score size an attention softmax keeps with a graph:
/// `exp`'s input (the max-shifted scores) and `exp`'s output (kept by the
/// division). The probabilities in the compute dtype, kept by the value
/// matmul, come on top (see [`score_bytes_saved`]).
pub const SCORE_F32_SAVED: u64 = 2;

/// f32 tensors of score size alive at once without a graph: each
/// element-wise step (cast, scale, mask, shift, exp, normalise) reads one
/// and writes the next.
pub const SCORE_F32_LIVE: u64 = 2;

/// Tensors of `heads·head_dim` a decoder layer keeps per token besides
/// the norms and K/V: the rotated queries (kept by the score matmul) and
/// the attention output re-laid out for `o_proj`.
pub const ATTENTION_SAVED: u64 = 2;

/// Tensors of vision width D a vision block keeps per patch besides its
/// norms and MLP: q, k, v cut from the fused `qkv` output, the rotated q
/// and k (kept by the score matmul), the attention output for `proj`.
pub const VISION_ATTENTION_SAVED: u64 = 6;

/// Tensors of width D a patch merger keeps per patch (its `merge²` patches
/// gathered into `M = D·merge²`): the gathered input, `fc1`'s output, the
/// GELU's two saved tensors and its output (kept by `fc2`).
pub const MERGER_SAVED: u64 = 5;

/// Tensors of width H kept per prompt token outside the layers: the token
/// embeddings and the visual features gathered into them.
pub const EMBED_SAVED: u64 = 2;

/// Bytes one attention score element (one query-key pair of one head)
/// costs with a graph: [`SCORE_F32_SAVED`] f32 copies and the
/// probabilities in the compute dtype.
pub fn score_bytes_saved(a: u64) -> u64 {
    SCORE_F32_SAVED * 4 + a
}

/// Bytes one score element costs at the peak of a pass without a graph.
pub fn score_bytes_live() -> u64 {
    SCORE_F32_LIVE * 4
}

/// Bytes of keys and values one token adds to one layer: `2·kv_heads·head_dim·a`.
pub fn kv_token_bytes(t: &TextConfig, a: u64) -> u64 {
    2 * (t.num_key_value_heads * t.head_dim) as u64 * a
}

/// The token layout of one teacher-forced pass over the decoder.
///
/// GRPO: `prompts` prompt rows of `prompt_len` tokens are prefilled, then
/// `rows` completions run `extend = W − 1` tokens on top, each seeing its
/// prompt's keys (shared by its group) and its own; K/V buffers hold
/// `capacity = L + W − 1` positions per prompt row (`model/logprob.rs`).
/// SFT: `prompts` rows of prompt and answer in one pass, no extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pass {
    pub prompts: u64,
    pub prompt_len: u64,
    /// K/V positions allocated per prompt row.
    pub capacity: u64,
    pub rows: u64,
    pub extend: u64,
}

impl Pass {
    /// Token positions through the layers: `prompts·L + rows·extend`.
    pub fn tokens(&self) -> u64 {
        self.prompts * self.prompt_len + self.rows * self.extend
    }

    /// Query-key pairs per head: `prompts·L² + rows·extend·(L + extend)`
    /// (the eager attention materialises the full square; the causal
    /// mask only zeroes half of it).
    pub fn score_pairs(&self) -> u64 {
        self.prompts * self.prompt_len.pow(2)
            + self.rows * self.extend * (self.prompt_len + self.extend)
    }

    /// K/V positions stored: the prompt rows' buffers and the rows' own.
    pub fn kv_positions(&self) -> u64 {
        self.prompts * self.capacity + self.rows * self.extend
    }
}

/// Bytes one decoder layer keeps per token for the backward pass, its
/// scores and keys/values aside.
///
/// # Shapes
///
/// `2·(4 + a)·H` (two RMSNorms: the f32 input and the normalised output in
/// the compute dtype) + `(4 + a)·(n_q + n_kv)` (Qwen3's q/k norms) +
/// [`ATTENTION_SAVED`]`·a·n_q` + [`GATED_MLP_SAVED`]`·a·I` +
/// `adapters·a·r` (each LoRA adapter keeps its `[T, r]` down-projection).
pub fn decoder_token_bytes(t: &TextConfig, a: u64, adapters: u64, rank: u64) -> u64 {
    let h = t.hidden_size as u64;
    let q = (t.num_attention_heads * t.head_dim) as u64;
    let kv = (t.num_key_value_heads * t.head_dim) as u64;
    let norms = 2 * (NORM_F32_BYTES + a) * h;
    let qk_norm = if t.qk_norm {
        (NORM_F32_BYTES + a) * (q + kv)
    } else {
        0
    };
    let attention = ATTENTION_SAVED * a * q;
    let mlp = GATED_MLP_SAVED * a * t.intermediate_size as u64;
    norms + qk_norm + attention + mlp + adapters * a * rank
}

/// What the decoder keeps for the backward pass of one update.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DecoderSaved {
    /// Every layer's per-token tensors and scores (K/V aside).
    pub layers: u64,
    /// The keys and values every layer's buffers hold (kept by the score
    /// and value matmuls).
    pub kv: u64,
    /// Outside the layers: embeddings, the final norm, the LM head's input.
    pub outside: u64,
    /// The part the backward pass reaches last (GRPO: the prompt pass,
    /// whose keys the completions attended to; its K/V included).
    pub prompt_part: u64,
    /// The same with per-layer checkpointing: each layer keeps its input
    /// (`a·H` per token), one layer is recomputed in full at a time, the
    /// K/V buffers stay (the completion pass reads the prompt's).
    pub checkpointed: u64,
}

impl DecoderSaved {
    pub fn total(&self) -> u64 {
        self.layers + self.kv + self.outside
    }
}

/// The decoder's saved activations for `pass`, with `adapters` LoRA
/// adapters of rank `rank` per layer.
///
/// # Shapes
///
/// Per layer: `tokens·`[`decoder_token_bytes`] + `heads·pairs·`
/// [`score_bytes_saved`] ([`Pass::tokens`], [`Pass::score_pairs`]); K/V:
/// `layers·`[`Pass::kv_positions`]`·`[`kv_token_bytes`]; outside:
/// `prompts·L·`[`EMBED_SAVED`]`·a·H` + `tokens·(4 + a)·H` (final norm) +
/// `head_positions·a·H` (LM head input).
pub fn decoder_saved(
    t: &TextConfig,
    a: u64,
    (adapters, rank): (u64, u64),
    pass: &Pass,
    head_positions: u64,
) -> DecoderSaved {
    let layers = t.num_hidden_layers as u64;
    let (h, heads) = (t.hidden_size as u64, t.num_attention_heads as u64);
    let per_token = decoder_token_bytes(t, a, adapters, rank);
    let score = score_bytes_saved(a);
    let layer = pass.tokens() * per_token + heads * pass.score_pairs() * score;
    let kv_token = kv_token_bytes(t, a);
    let outside = pass.prompts * pass.prompt_len * EMBED_SAVED * a * h
        + pass.tokens() * (NORM_F32_BYTES + a) * h
        + head_positions * a * h;
    let prompt_tokens = pass.prompts * pass.prompt_len;
    let prompt_layer =
        prompt_tokens * per_token + heads * pass.prompts * pass.prompt_len.pow(2) * score;
    let kv = layers * pass.kv_positions() * kv_token;
    DecoderSaved {
        layers: layers * layer,
        kv,
        outside,
        prompt_part: layers * (prompt_layer + pass.prompts * pass.capacity * kv_token),
        checkpointed: layers * pass.tokens() * a * h + layer + kv + outside,
    }
}

/// One layer's peak without a graph (rollout prefill, the reference and
/// old log-prob passes): `rows` rows of `queries` tokens over `keys` keys.
///
/// # Shapes
///
/// `max(attention, mlp) + mask + hidden`, with attention
/// `rows·(heads·queries·keys·`[`score_bytes_live`]` + queries·a·(2H + n_q +
/// 2·n_kv))` (scores, the layer input and its norm, q/k/v), mlp
/// `rows·queries·a·(2H + 3I)` (gate, up, product), the additive mask
/// `4·rows·(heads/kv_heads)·queries·keys` (f32, built once per pass) and
/// `rows·queries·a·H·(1 + deepstack levels)` of hidden states and
/// DeepStack features waiting for their layer.
pub fn decoder_peak_no_grad(
    t: &TextConfig,
    a: u64,
    rows: u64,
    queries: u64,
    keys: u64,
    deepstack_levels: u64,
) -> u64 {
    let (h, i) = (t.hidden_size as u64, t.intermediate_size as u64);
    let heads = t.num_attention_heads as u64;
    let rep = (t.num_attention_heads / t.num_key_value_heads) as u64;
    let (q, kv) = (
        (t.num_attention_heads * t.head_dim) as u64,
        (t.num_key_value_heads * t.head_dim) as u64,
    );
    let attention =
        rows * (heads * queries * keys * score_bytes_live() + queries * a * (2 * h + q + 2 * kv));
    let mlp = rows * queries * a * (2 * h + 3 * i);
    let mask = 4 * rows * rep * queries * keys;
    let hidden = rows * queries * a * h * (1 + deepstack_levels);
    attention.max(mlp) + mask + hidden
}

/// What the vision tower keeps for one prompt's video when it trains.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct VisionSaved {
    pub saved: u64,
    /// With per-block checkpointing: each block's input, one block in
    /// full, the mergers and the pixels.
    pub checkpointed: u64,
}

/// The vision tower's saved activations for one prompt of shape `shape`,
/// with `adapters` LoRA adapters of rank `rank` per block.
///
/// # Shapes
///
/// N patches of width D, MLP width I_v, per block:
/// `N·(2·(4 + a)·D + `[`VISION_ATTENTION_SAVED`]`·a·D + k·a·I_v +
/// adapters·a·r)` with k = [`GATED_MLP_SAVED`] (Qwen2.5-VL) or
/// [`GELU_MLP_SAVED`] (Qwen3-VL), plus `heads·Σ segment²·`
/// [`score_bytes_saved`] ([`PromptShape::attention_pairs`]: windows or
/// temporal groups). Mergers (1 + DeepStack levels):
/// `N·((4 + a)·D + `[`MERGER_SAVED`]`·a·D)` each. The f32 pixels
/// (`N·C·T·p²·4`) are kept by the patch projection.
pub fn vision_saved(
    model: &QwenVlConfig,
    a: u64,
    shape: &PromptShape,
    (adapters, rank): (u64, u64),
) -> VisionSaved {
    let v = &model.vision;
    let (n, d, iv) = (
        shape.patches as u64,
        v.hidden_size as u64,
        v.intermediate_size as u64,
    );
    let mlp = match model.arch {
        Arch::Qwen25Vl => GATED_MLP_SAVED,
        Arch::Qwen3Vl => GELU_MLP_SAVED,
    };
    let per_patch = 2 * (NORM_F32_BYTES + a) * d
        + VISION_ATTENTION_SAVED * a * d
        + mlp * a * iv
        + adapters * a * rank;
    let heads = v.num_heads as u64;
    let block =
        |b: usize| n * per_patch + heads * shape.attention_pairs(model, b) * score_bytes_saved(a);
    let blocks: u64 = (0..v.depth).map(block).sum();
    let largest_block = (0..v.depth).map(block).max().unwrap_or(0);
    let levels = 1 + v.deepstack_visual_indexes.len() as u64;
    let mergers = levels * n * ((NORM_F32_BYTES + a) * d + MERGER_SAVED * a * d);
    let pixels = n * v.patch_dim() as u64 * 4;
    VisionSaved {
        saved: blocks + mergers + pixels,
        checkpointed: v.depth as u64 * n * a * d + largest_block + mergers + pixels,
    }
}

/// The vision tower's peak without a graph for `prompts` videos of shape
/// `shape` run together (the prefill batch concatenates them).
///
/// # Shapes
///
/// One block at a time: `max(attention, mlp) + out`, attention
/// `prompts·(heads·Σ segment²·`[`score_bytes_live`]` + N·a·7D)` (the block
/// input, its norm, fused qkv and q, k, v), mlp `prompts·N·a·(2D + 3·I_v)`,
/// out `prompts·tokens·a·H·(1 + DeepStack levels)` (the merged features,
/// kept for the decoder).
pub fn vision_peak_no_grad(model: &QwenVlConfig, a: u64, shape: &PromptShape, prompts: u64) -> u64 {
    let v = &model.vision;
    let (n, d, iv) = (
        shape.patches as u64,
        v.hidden_size as u64,
        v.intermediate_size as u64,
    );
    let pairs = (0..v.depth)
        .map(|b| shape.attention_pairs(model, b))
        .max()
        .unwrap_or(0);
    let attention = prompts * (v.num_heads as u64 * pairs * score_bytes_live() + n * a * 7 * d);
    let mlp = prompts * n * a * (2 * d + 3 * iv);
    let levels = 1 + v.deepstack_visual_indexes.len() as u64;
    let out = prompts * shape.visual_tokens as u64 * a * model.text.hidden_size as u64 * levels;
    attention.max(mlp) + out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::default_model::tiny_config;
    use crate::video::VideoConfig;

    #[test]
    fn the_tiny_decoder_layer_by_hand() {
        // H 128, 4 heads × 32 (n_q 128), 2 KV heads (n_kv 64), I 384, f32:
        // norms 2·8·128 = 2048, q/k norms 8·(128 + 64) = 1536, attention
        // 2·4·128 = 1024, MLP 5·4·384 = 7680 → 12 288 bytes per token.
        let t = tiny_config().unwrap().text;
        assert_eq!(decoder_token_bytes(&t, 4, 0, 0), 12_288);
        // Seven rank-16 adapters add 7·4·16.
        assert_eq!(decoder_token_bytes(&t, 4, 7, 16), 12_288 + 448);
        assert_eq!(kv_token_bytes(&t, 4), 2 * 64 * 4);
        assert_eq!(score_bytes_saved(4), 12);
        assert_eq!(score_bytes_saved(2), 10);
    }

    #[test]
    fn a_grpo_pass_counts_prompt_and_completion_tokens() {
        // 2 prompts of 10 tokens, 16 completions of W = 5 (extend 4).
        let pass = Pass {
            prompts: 2,
            prompt_len: 10,
            capacity: 14,
            rows: 16,
            extend: 4,
        };
        assert_eq!(pass.tokens(), 20 + 64);
        assert_eq!(pass.score_pairs(), 2 * 100 + 16 * 4 * 14);
        assert_eq!(pass.kv_positions(), 28 + 64);
        let t = tiny_config().unwrap().text;
        let saved = decoder_saved(&t, 4, (0, 0), &pass, 16 * 5);
        let layer = 84 * 12_288 + 4 * (200 + 896) * 12;
        assert_eq!(saved.layers, 4 * layer);
        assert_eq!(saved.kv, 4 * 92 * 512);
        assert_eq!(
            saved.outside,
            20 * 2 * 4 * 128 + 84 * 8 * 128 + 80 * 4 * 128
        );
        assert_eq!(
            saved.prompt_part,
            4 * (20 * 12_288 + 4 * 200 * 12 + 28 * 512)
        );
        assert_eq!(
            saved.checkpointed,
            4 * 84 * 4 * 128 + layer + saved.kv + saved.outside
        );
    }

    #[test]
    fn the_tiny_vision_tower_by_hand() {
        // 96 × 64 clip, 4 frames: 32 px tokens → 3 × 2 cells, 2 groups,
        // 12 tokens, 48 patches; each group's 24 patches attend together.
        let model = tiny_config().unwrap();
        let video = VideoConfig {
            max_frames: 4,
            ..VideoConfig::default()
        };
        let shape = PromptShape::of(&model, &video, [96, 64]).unwrap();
        assert_eq!((shape.visual_tokens, shape.patches), (12, 48));
        assert_eq!(shape.full_attention_pairs, 2 * 24 * 24);
        // Per patch (D 64, I_v 256, f32): norms 2·8·64 = 1024, attention
        // 6·4·64 = 1536, GELU MLP 4·4·256 = 4096 → 6656; scores 4 heads ·
        // 1152 pairs · 12 per block; two blocks; two mergers of 48·(8·64 +
        // 5·4·64); pixels 48·1536·4.
        let block = 48 * 6656 + 4 * 1152 * 12;
        let mergers = 2 * 48 * (8 * 64 + 5 * 4 * 64);
        let pixels = 48 * 1536 * 4;
        let saved = vision_saved(&model, 4, &shape, (0, 0));
        assert_eq!(saved.saved, 2 * block + mergers + pixels);
        assert_eq!(
            saved.checkpointed,
            2 * 48 * 4 * 64 + block + mergers + pixels
        );
    }

    #[test]
    fn no_grad_peaks_by_hand() {
        let model = tiny_config().unwrap();
        let t = &model.text;
        // 3 rows × 10 queries over 12 keys, f32, one DeepStack level:
        // attention 3·(4·10·12·8 + 10·4·(256 + 128 + 128)) = 3·(3840 +
        // 20480); mlp 3·10·4·(256 + 1152); mask 4·3·2·10·12; hidden
        // 3·10·4·128·2.
        let attention = 3 * (3840 + 20_480);
        let mlp = 3 * 10 * 4 * (256 + 1152);
        assert!(mlp > attention);
        assert_eq!(
            decoder_peak_no_grad(t, 4, 3, 10, 12, 1),
            mlp + 4 * 3 * 2 * 10 * 12 + 3 * 10 * 4 * 128 * 2
        );
    }
}

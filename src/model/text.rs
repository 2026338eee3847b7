//! The language model: a Qwen2 (Qwen2.5-VL) or Qwen3 (Qwen3-VL) decoder with
//! GQA, SwiGLU, RMSNorm and M-RoPE. Field names follow the HF module tree
//! (`model.language_model.layers.N.self_attn.q_proj`, ...), so weight names
//! come from the module paths.

use burn::module::Module;
use burn::nn::{Embedding, EmbeddingConfig};
use burn::tensor::{Device, Int, Tensor};

use super::cache::{KvCache, LayerSlot, StepKv};
use super::config::{Activation, TextConfig};
use super::layers::{RmsNorm, activate, apply_rotary, softmax_f32, to_f32};
use super::lora::LoraLinear;

/// Self-attention with grouped K/V heads.
#[derive(Module, Debug)]
pub struct Attention {
    pub q_proj: LoraLinear,
    pub k_proj: LoraLinear,
    pub v_proj: LoraLinear,
    pub o_proj: LoraLinear,
    /// Qwen3: RMSNorm over each head's `head_dim` before RoPE.
    pub q_norm: Option<RmsNorm>,
    pub k_norm: Option<RmsNorm>,
    pub num_heads: usize,
    pub num_kv_heads: usize,
    pub head_dim: usize,
}

impl Attention {
    fn new(c: &TextConfig, device: &Device) -> Self {
        let (h, hd) = (c.hidden_size, c.head_dim);
        let qk_norm = || c.qk_norm.then(|| RmsNorm::new(hd, c.rms_norm_eps, device));
        Attention {
            q_proj: LoraLinear::new(h, c.num_attention_heads * hd, c.qkv_bias, device),
            k_proj: LoraLinear::new(h, c.num_key_value_heads * hd, c.qkv_bias, device),
            v_proj: LoraLinear::new(h, c.num_key_value_heads * hd, c.qkv_bias, device),
            o_proj: LoraLinear::new(c.num_attention_heads * hd, h, c.o_bias, device),
            q_norm: qk_norm(),
            k_norm: qk_norm(),
            num_heads: c.num_attention_heads,
            num_kv_heads: c.num_key_value_heads,
            head_dim: hd,
        }
    }

    /// `x [B, T, H]`, rotary `[B, 1, T, hd]`, mask `[B, 1, rep·T, S]` (the
    /// `[B, 1, T, S]` mask repeated for the `rep` query heads per K/V head,
    /// see [`stack_mask`]) where `S` counts cached plus new keys. Writes the
    /// new keys/values into `cache`.
    fn forward(
        &self,
        x: Tensor<3>,
        rotary: &(Tensor<4>, Tensor<4>),
        mask: Tensor<4>,
        cache: Option<LayerSlot<'_>>,
    ) -> Tensor<3> {
        let [b, t, _] = x.dims();
        let heads = |proj: &LoraLinear, n: usize, norm: &Option<RmsNorm>| {
            let y = proj.forward(x.clone()).reshape([b, t, n, self.head_dim]);
            let y = match norm {
                Some(norm) => norm.forward(y),
                None => y,
            };
            y.swap_dims(1, 2) // [B, n, T, hd]
        };
        let (cos, sin) = rotary;
        let q = apply_rotary(
            heads(&self.q_proj, self.num_heads, &self.q_norm),
            cos.clone(),
            sin.clone(),
        );
        let k = apply_rotary(
            heads(&self.k_proj, self.num_kv_heads, &self.k_norm),
            cos.clone(),
            sin.clone(),
        );
        let v = heads(&self.v_proj, self.num_kv_heads, &None);
        // What to attend to: without a cache the step's own keys (transposed,
        // kᵀ [B, nkv, hd, T]) and values [B, nkv, T, hd]; with one, the cached
        // tokens too (views of the cache's buffers, dropped at the end of
        // this call).
        let kv = match cache {
            Some(mut slot) => slot.append(k, v),
            None => StepKv {
                shared: None,
                keys: k.swap_dims(2, 3),
                values: v,
            },
        };
        // GQA without copying K/V: the `rep` query heads that share a K/V
        // head are stacked along the query axis, so one matmul per K/V head
        // serves them all (heads are K/V-major: query head h uses K/V head
        // h / rep). q [B, nh, T, hd] → [B, nkv, rep·T, hd]; the mask's rows
        // already follow the stacked queries (rep-major, t-minor).
        let rep = self.num_heads / self.num_kv_heads;
        let q = q.reshape([b, self.num_kv_heads, rep * t, self.head_dim]);
        let out = attend(q, kv, mask, self.head_dim); // [B, nkv, rep·T, hd]
        let out = out
            .reshape([b, self.num_heads, t, self.head_dim])
            .swap_dims(1, 2)
            .reshape([b, t, self.num_heads * self.head_dim]);
        self.o_proj.forward(out)
    }
}

/// `softmax(q·kᵀ / √hd + mask) · v` for stacked queries `q` `[B, nkv, m, hd]`
/// and the additive mask `[B, 1, m, S]` over all `S` keys (shared, then
/// own); returns `[B, nkv, m, hd]`. Scores, mask and softmax are in f32 (the
/// mask holds `f32::MIN`).
///
/// Keys shared by groups of `g` rows (prefix sharing, see
/// [`KvCache::repeat_rows`]) are scored for the whole group at once: the
/// group's queries are stacked to `[B/g, nkv, g·m, hd]`, so the shared keys
/// and values are read once per group and the matmuls have `g·m` rows
/// instead of `m`.
fn attend(q: Tensor<4>, kv: StepKv, mask: Tensor<4>, head_dim: usize) -> Tensor<4> {
    let [b, nkv, m, _] = q.dims();
    let scale = (head_dim as f64).powf(-0.5);
    let dtype = kv.values.dtype();
    let own_scores = q.clone().matmul(kv.keys); // [B, nkv, m, own]
    let Some(shared) = kv.shared else {
        let scores = to_f32(own_scores).mul_scalar(scale) + mask;
        return softmax_f32(scores, 3, dtype).matmul(kv.values);
    };
    let (g, s_len) = (shared.group, shared.len());
    let p = b / g;
    // Rows r = i·g + j (group i, member j) ↔ stacked rows j·m + .. of group i.
    // [B, nkv, m, x] → [P, nkv, g·m, x]
    let stack = |x: Tensor<4>| {
        let w = x.dims()[3];
        x.reshape([p, g, nkv, m, w])
            .swap_dims(1, 2)
            .reshape([p, nkv, g * m, w])
    };
    // [P, nkv, g·m, x] → [B, nkv, m, x]
    let unstack = |x: Tensor<4>| {
        let w = x.dims()[3];
        x.reshape([p, nkv, g, m, w])
            .swap_dims(1, 2)
            .reshape([b, nkv, m, w])
    };
    let shared_scores = unstack(stack(q).matmul(shared.keys)); // [B, nkv, m, shared]
    let scores = Tensor::cat(vec![shared_scores, own_scores], 3); // [B, nkv, m, S]
    let scores = to_f32(scores).mul_scalar(scale) + mask;
    let probs = softmax_f32(scores, 3, dtype);
    let own_len = kv.values.dims()[2];
    let shared_probs = probs.clone().slice([0..b, 0..nkv, 0..m, 0..s_len]);
    let own_probs = probs.slice([0..b, 0..nkv, 0..m, s_len..s_len + own_len]);
    unstack(stack(shared_probs).matmul(shared.values)) + own_probs.matmul(kv.values)
}

/// The attention mask `[B, 1, T, S]` with its query rows repeated for the
/// query heads stacked per K/V head: `[B, 1, rep·T, S]` (rep-major, t-minor).
fn stack_mask(mask: Tensor<4>, attn: &Attention) -> Tensor<4> {
    let rep = attn.num_heads / attn.num_kv_heads;
    if rep == 1 {
        mask
    } else {
        mask.repeat_dim(2, rep)
    }
}

/// SwiGLU feed-forward: `down(act(gate(x)) * up(x))`.
#[derive(Module, Debug)]
pub struct GatedMlp {
    pub gate_proj: LoraLinear,
    pub up_proj: LoraLinear,
    pub down_proj: LoraLinear,
    #[module(skip)]
    pub act: Activation,
}

impl GatedMlp {
    pub fn new(d_model: usize, d_ff: usize, bias: bool, act: Activation, device: &Device) -> Self {
        GatedMlp {
            gate_proj: LoraLinear::new(d_model, d_ff, bias, device),
            up_proj: LoraLinear::new(d_model, d_ff, bias, device),
            down_proj: LoraLinear::new(d_ff, d_model, bias, device),
            act,
        }
    }

    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        let gate = activate(self.act, self.gate_proj.forward(x.clone()));
        self.down_proj.forward(gate * self.up_proj.forward(x))
    }
}

#[derive(Module, Debug)]
pub struct DecoderLayer {
    pub self_attn: Attention,
    pub mlp: GatedMlp,
    pub input_layernorm: RmsNorm,
    pub post_attention_layernorm: RmsNorm,
}

impl DecoderLayer {
    fn forward(
        &self,
        x: Tensor<3>,
        rotary: &(Tensor<4>, Tensor<4>),
        mask: Tensor<4>,
        cache: Option<LayerSlot<'_>>,
    ) -> Tensor<3> {
        let h = x.clone()
            + self
                .self_attn
                .forward(self.input_layernorm.forward(x), rotary, mask, cache);
        h.clone() + self.mlp.forward(self.post_attention_layernorm.forward(h))
    }
}

/// Visual features added to the hidden states after the first decoder layers
/// (Qwen3-VL DeepStack): `features[i]` `[visual tokens, H]` is added after
/// layer `i` at the visual positions.
#[derive(Debug, Clone)]
pub struct DeepStack {
    /// `[B * T]`: 0 for non-visual positions, `1 + k` for the k-th visual token.
    pub gather: Tensor<1, Int>,
    pub features: Vec<Tensor<2>>,
}

/// `model.language_model`: embeddings, decoder layers, final norm.
#[derive(Module, Debug)]
pub struct TextModel {
    pub embed_tokens: Embedding,
    pub layers: Vec<DecoderLayer>,
    pub norm: RmsNorm,
}

impl TextModel {
    pub fn new(c: &TextConfig, device: &Device) -> Self {
        TextModel {
            embed_tokens: EmbeddingConfig::new(c.vocab_size, c.hidden_size).init(device),
            layers: (0..c.num_hidden_layers)
                .map(|_| DecoderLayer {
                    self_attn: Attention::new(c, device),
                    mlp: GatedMlp::new(
                        c.hidden_size,
                        c.intermediate_size,
                        false,
                        c.hidden_act,
                        device,
                    ),
                    input_layernorm: RmsNorm::new(c.hidden_size, c.rms_norm_eps, device),
                    post_attention_layernorm: RmsNorm::new(c.hidden_size, c.rms_norm_eps, device),
                })
                .collect(),
            norm: RmsNorm::new(c.hidden_size, c.rms_norm_eps, device),
        }
    }

    /// `ids [B, T] -> [B, T, H]`
    pub fn embed(&self, ids: Tensor<2, Int>) -> Tensor<3> {
        self.embed_tokens.forward(ids)
    }

    /// Runs the decoder on `embeds [B, T, H]`; returns the final-normed
    /// hidden states `[B, T, H]`. `cache` receives the new keys/values
    /// (its key validity must already include them: `KvCache::begin_step`).
    pub fn forward(
        &self,
        embeds: Tensor<3>,
        rotary: &(Tensor<4>, Tensor<4>),
        mask: Tensor<4>,
        mut cache: Option<&mut KvCache>,
        deepstack: Option<&DeepStack>,
    ) -> Tensor<3> {
        let [b, t, h] = embeds.dims();
        let mut x = embeds;
        // Built once for all layers.
        let mask = match self.layers.first() {
            Some(layer) => stack_mask(mask, &layer.self_attn),
            None => mask,
        };
        for (i, layer) in self.layers.iter().enumerate() {
            let slot = cache.as_deref_mut().map(|c| c.layer(i));
            x = layer.forward(x, rotary, mask.clone(), slot);
            if let Some(ds) = deepstack
                && let Some(features) = ds.features.get(i)
            {
                let device = features.device();
                let zeros = Tensor::zeros([1, h], (&device, features.dtype()));
                let table = Tensor::cat(vec![zeros, features.clone()], 0);
                let add = table.select(0, ds.gather.clone()).reshape([b, t, h]);
                x = x + add;
            }
        }
        self.norm.forward(x)
    }
}

//! The vision tower (`model.visual`): patch embedding, transformer blocks with
//! 2-D RoPE attending within frame groups (Qwen2.5-VL: within windows except
//! in the full-attention blocks), and the patch merger that turns each
//! `merge x merge` block of patches into one language-model token.
//! Qwen3-VL adds a learned, bilinearly interpolated position table and
//! DeepStack mergers on intermediate blocks.

use burn::module::Module;
use burn::nn::{Embedding, EmbeddingConfig};
use burn::tensor::activation::gelu;
use burn::tensor::{Device, Int, Tensor, TensorData};

use super::config::{Activation, Arch, VisionConfig};
use super::layers::{
    LayerNorm, Norm, RmsNorm, activate, apply_rotary, softmax_f32, to_dtype, to_f32,
};
use super::lora::LoraLinear;
use super::position::{
    Grid, frame_segments, position_table_taps, vision_patch_coords, window_index,
};
use super::rope::vision_rotary;
use super::text::GatedMlp;

/// HF's `Conv3d(C, D, kernel = stride = (T, P, P))` over patches that the
/// processor already cut out is a linear map of the flattened patch
/// (`C * T * P * P` values, channel-major): stored as a `Linear`, the
/// checkpoint's 5-D kernel is reshaped on load and export.
#[derive(Module, Debug)]
pub struct PatchEmbed {
    pub proj: LoraLinear,
}

#[derive(Module, Debug)]
pub struct VisionAttention {
    pub qkv: LoraLinear,
    pub proj: LoraLinear,
    pub num_heads: usize,
}

impl VisionAttention {
    /// `x [N, D]` -> `[N, D]`; attention is restricted to each segment
    /// `[start, end)` of rows (frame groups or windows).
    fn forward(
        &self,
        x: Tensor<2>,
        rotary: &(Tensor<3>, Tensor<3>),
        segments: &[(usize, usize)],
    ) -> Tensor<2> {
        let [n, d] = x.dims();
        let hd = d / self.num_heads;
        let qkv = self.qkv.forward(x).reshape([n, 3, self.num_heads, hd]);
        let part = |i: usize| qkv.clone().narrow(1, i, 1).reshape([n, self.num_heads, hd]);
        let (cos, sin) = rotary;
        let q = apply_rotary(part(0), cos.clone(), sin.clone());
        let k = apply_rotary(part(1), cos.clone(), sin.clone());
        let v = part(2);
        let scale = (hd as f64).powf(-0.5);
        // Consecutive segments of one length run as one batch.
        let mut outputs = Vec::new();
        let mut i = 0;
        while i < segments.len() {
            let len = segments[i].1 - segments[i].0;
            let mut j = i;
            while j < segments.len() && segments[j].1 - segments[j].0 == len {
                j += 1;
            }
            let (start, count) = (segments[i].0, j - i);
            let batch = |y: &Tensor<3>| {
                y.clone()
                    .narrow(0, start, count * len)
                    .reshape([count, len, self.num_heads, hd])
                    .swap_dims(1, 2) // [count, heads, len, hd]
            };
            // Scores and softmax in f32, as HF.
            let scores = to_f32(batch(&q).matmul(batch(&k).swap_dims(2, 3))).mul_scalar(scale);
            let values = batch(&v);
            let out = softmax_f32(scores, 3, values.dtype()).matmul(values);
            outputs.push(out.swap_dims(1, 2).reshape([count * len, d]));
            i = j;
        }
        self.proj.forward(Tensor::cat(outputs, 0))
    }
}

/// Feed-forward of one vision block.
// One per block, built once: the size of the variants does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum VisionMlp {
    /// Qwen2.5-VL: SwiGLU with biases (`gate_proj`, `up_proj`, `down_proj`).
    Gated(GatedMlp),
    /// Qwen3-VL: `linear_fc2(act(linear_fc1(x)))`.
    Plain(PlainMlp),
}

#[derive(Module, Debug)]
pub struct PlainMlp {
    pub linear_fc1: LoraLinear,
    pub linear_fc2: LoraLinear,
    #[module(skip)]
    pub act: Activation,
}

impl VisionMlp {
    fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        match self {
            VisionMlp::Gated(m) => m.forward(x),
            VisionMlp::Plain(m) => m
                .linear_fc2
                .forward(activate(m.act, m.linear_fc1.forward(x))),
        }
    }
}

#[derive(Module, Debug)]
pub struct VisionBlock {
    pub norm1: Norm,
    pub norm2: Norm,
    pub attn: VisionAttention,
    pub mlp: VisionMlp,
}

impl VisionBlock {
    fn forward(
        &self,
        x: Tensor<2>,
        rotary: &(Tensor<3>, Tensor<3>),
        segments: &[(usize, usize)],
    ) -> Tensor<2> {
        let x = x.clone() + self.attn.forward(self.norm1.forward(x), rotary, segments);
        x.clone() + self.mlp.forward(self.norm2.forward(x))
    }
}

/// Qwen2.5-VL merger: `mlp.2(GELU(mlp.0(merge(ln_q(x)))))`. The HF names
/// `mlp.0` / `mlp.2` (a `Sequential`) map to `mlp_0` / `mlp_2` here.
#[derive(Module, Debug)]
pub struct Qwen25Merger {
    pub ln_q: RmsNorm,
    pub mlp_0: LoraLinear,
    pub mlp_2: LoraLinear,
}

/// Qwen3-VL merger: LayerNorm before (`merger`) or after (DeepStack mergers,
/// "post-shuffle") gathering `merge^2` patches, then `fc2(GELU(fc1(x)))`.
#[derive(Module, Debug)]
pub struct Qwen3Merger {
    pub norm: LayerNorm,
    pub linear_fc1: LoraLinear,
    pub linear_fc2: LoraLinear,
    pub postshuffle: bool,
}

#[derive(Module, Debug)]
pub enum PatchMerger {
    Qwen25(Qwen25Merger),
    Qwen3(Qwen3Merger),
}

impl PatchMerger {
    /// `[N, D] -> [N / merge^2, out]`
    fn forward(&self, x: Tensor<2>, unit: usize) -> Tensor<2> {
        let [n, d] = x.dims();
        let gathered = [n / unit, d * unit];
        match self {
            PatchMerger::Qwen25(m) => {
                let x = m.ln_q.forward(x).reshape(gathered);
                m.mlp_2.forward(gelu(m.mlp_0.forward(x)))
            }
            PatchMerger::Qwen3(m) => {
                let x = if m.postshuffle {
                    m.norm.forward(x.reshape(gathered))
                } else {
                    m.norm.forward(x).reshape(gathered)
                };
                m.linear_fc2.forward(gelu(m.linear_fc1.forward(x)))
            }
        }
    }
}

/// What the vision tower hands to the language model.
#[derive(Debug, Clone)]
pub struct VisionOutput {
    /// `[visual tokens, H]`, videos in order, tokens in processor order.
    pub embeds: Tensor<2>,
    /// Qwen3-VL DeepStack features, one `[visual tokens, H]` per level.
    pub deepstack: Vec<Tensor<2>>,
}

#[derive(Module, Debug)]
pub struct VisionModel {
    pub patch_embed: PatchEmbed,
    /// Qwen3-VL: `[num_position_embeddings, D]`, a square grid.
    pub pos_embed: Option<Embedding>,
    pub blocks: Vec<VisionBlock>,
    pub merger: PatchMerger,
    pub deepstack_merger_list: Vec<PatchMerger>,
    #[module(skip)]
    pub arch: Arch,
    #[module(skip)]
    pub config: VisionConfig,
}

impl VisionModel {
    pub fn new(arch: Arch, c: &VisionConfig, device: &Device) -> Self {
        let d = c.hidden_size;
        let merged = d * c.merge_unit();
        let norm = || match arch {
            Arch::Qwen25Vl => Norm::Rms(RmsNorm::new(d, 1e-6, device)),
            Arch::Qwen3Vl => Norm::Layer(LayerNorm::new(d, 1e-6, device)),
        };
        let qwen3_merger = |postshuffle: bool| {
            PatchMerger::Qwen3(Qwen3Merger {
                norm: LayerNorm::new(if postshuffle { merged } else { d }, 1e-6, device),
                linear_fc1: LoraLinear::new(merged, merged, true, device),
                linear_fc2: LoraLinear::new(merged, c.out_hidden_size, true, device),
                postshuffle,
            })
        };
        VisionModel {
            patch_embed: PatchEmbed {
                proj: LoraLinear::new(c.patch_dim(), d, arch == Arch::Qwen3Vl, device),
            },
            pos_embed: (arch == Arch::Qwen3Vl)
                .then(|| EmbeddingConfig::new(c.num_position_embeddings, d).init(device)),
            blocks: (0..c.depth)
                .map(|_| VisionBlock {
                    norm1: norm(),
                    norm2: norm(),
                    attn: VisionAttention {
                        qkv: LoraLinear::new(d, 3 * d, true, device),
                        proj: LoraLinear::new(d, d, true, device),
                        num_heads: c.num_heads,
                    },
                    mlp: match arch {
                        Arch::Qwen25Vl => VisionMlp::Gated(GatedMlp::new(
                            d,
                            c.intermediate_size,
                            true,
                            c.hidden_act,
                            device,
                        )),
                        Arch::Qwen3Vl => VisionMlp::Plain(PlainMlp {
                            linear_fc1: LoraLinear::new(d, c.intermediate_size, true, device),
                            linear_fc2: LoraLinear::new(c.intermediate_size, d, true, device),
                            act: c.hidden_act,
                        }),
                    },
                })
                .collect(),
            merger: match arch {
                Arch::Qwen25Vl => PatchMerger::Qwen25(Qwen25Merger {
                    ln_q: RmsNorm::new(d, 1e-6, device),
                    mlp_0: LoraLinear::new(merged, merged, true, device),
                    mlp_2: LoraLinear::new(merged, c.out_hidden_size, true, device),
                }),
                Arch::Qwen3Vl => qwen3_merger(false),
            },
            deepstack_merger_list: c
                .deepstack_visual_indexes
                .iter()
                .map(|_| qwen3_merger(true))
                .collect(),
            arch,
            config: c.clone(),
        }
    }

    /// `pixels [N, C*T*P*P]` (processor order) for videos with `grids`.
    pub fn forward(&self, pixels: Tensor<2>, grids: &[Grid]) -> VisionOutput {
        let c = &self.config;
        let device = pixels.device();
        let merge = c.spatial_merge_size;
        let unit = c.merge_unit();
        // Pixels arrive in f32; compute in the weights' dtype.
        let dtype = self.patch_embed.proj.weight.val().dtype();
        let mut x = self.patch_embed.proj.forward(to_dtype(pixels, dtype)); // [N, D]
        if let Some(table) = &self.pos_embed {
            x = x + self.interpolated_positions(table, grids, &device);
        }
        let coords = vision_patch_coords(grids, merge);
        let frames = frame_segments(grids);
        // Qwen2.5-VL: lay rows out window by window (in units of merge^2
        // patches) so windows are contiguous; undone after the merger.
        let windows = (self.arch == Arch::Qwen25Vl)
            .then(|| window_index(grids, merge, c.window_size, c.patch_size));
        let (coords, window_order) = match &windows {
            Some((order, _)) => {
                let rows: Vec<usize> = order
                    .iter()
                    .flat_map(|&w| (0..unit).map(move |u| w * unit + u))
                    .collect();
                x = x.select(0, int_tensor(&rows, &device));
                (rows.iter().map(|&r| coords[r]).collect(), Some(order))
            }
            None => (coords, None),
        };
        let rotary = vision_rotary(c.head_dim(), c.rope_theta, &coords, &device);
        let mut deepstack = Vec::new();
        for (i, block) in self.blocks.iter().enumerate() {
            let segments = match &windows {
                Some((_, window_segments)) if !c.fullatt_block_indexes.contains(&i) => {
                    window_segments.as_slice()
                }
                _ => frames.as_slice(),
            };
            x = block.forward(x, &rotary, segments);
            if let Some(level) = c.deepstack_visual_indexes.iter().position(|&b| b == i) {
                deepstack.push(self.deepstack_merger_list[level].forward(x.clone(), unit));
            }
        }
        let mut embeds = self.merger.forward(x, unit);
        if let Some(order) = window_order {
            let mut inverse = vec![0usize; order.len()];
            for (pos, &w) in order.iter().enumerate() {
                inverse[w] = pos;
            }
            embeds = embeds.select(0, int_tensor(&inverse, &device));
        }
        VisionOutput { embeds, deepstack }
    }

    /// Qwen3-VL: bilinear resampling of the square position table to each
    /// frame's patch grid, `[N, D]`.
    fn interpolated_positions(
        &self,
        table: &Embedding,
        grids: &[Grid],
        device: &Device,
    ) -> Tensor<2> {
        let side = (self.config.num_position_embeddings as f64).sqrt() as usize;
        let (indices, weights) = position_table_taps(grids, self.config.spatial_merge_size, side);
        let n = weights.len() / 4;
        let d = self.config.hidden_size;
        let idx = Tensor::<1, Int>::from_data(TensorData::new(indices, [4 * n]), device);
        let taps = table.weight.val().select(0, idx).reshape([n, 4, d]);
        let w = Tensor::<3>::from_data(TensorData::new(weights, [n, 4, 1]), device);
        let w = to_dtype(w, taps.dtype());
        (taps * w).sum_dim(1).reshape([n, d])
    }
}

pub(crate) fn int_tensor(values: &[usize], device: &Device) -> Tensor<1, Int> {
    let data: Vec<i64> = values.iter().map(|&v| v as i64).collect();
    Tensor::from_data(TensorData::new(data, [values.len()]), device)
}

//! Exact parameter counts of a Qwen-VL model from its configuration alone,
//! and of the LoRA adapters a `[lora]` section puts on it.
//!
//! The counts follow the module tree `QwenVl::new` builds (`model/text.rs`,
//! `model/vision.rs`), tensor by tensor; the unit tests check them against
//! the real modules of both architectures, so a wrong formula fails there.
//! For the released checkpoints they give 8,767,123,696 parameters for
//! Qwen3-VL-8B and 8,292,166,656 for Qwen2.5-VL-7B, the counts of their
//! safetensors files.

use crate::model::LoraConfig;
use crate::model::config::{Arch, QwenVlConfig, TextConfig, VisionConfig};

/// One linear projection, named as [`crate::model::QwenVl::projections_mut`]
/// names it (the HF module name LoRA targets are matched against).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Projection {
    pub name: String,
    pub d_in: usize,
    pub d_out: usize,
    pub bias: bool,
}

impl Projection {
    fn new(name: String, d_in: usize, d_out: usize, bias: bool) -> Self {
        Projection {
            name,
            d_in,
            d_out,
            bias,
        }
    }

    /// `d_in·d_out` (+ `d_out` with a bias).
    pub fn params(&self) -> u64 {
        (self.d_in * self.d_out + if self.bias { self.d_out } else { 0 }) as u64
    }
}

/// Every LoRA-targetable projection of the model in
/// [`crate::model::QwenVl::projections_mut`] order: the decoder's seven per
/// layer, then the vision blocks', the merger's and the DeepStack mergers'.
/// The patch embedding and the LM head are not among them.
pub fn projections(config: &QwenVlConfig) -> Vec<Projection> {
    let mut out = text_projections(&config.text, "model.language_model");
    vision_projections(config.arch, &config.vision, "model.visual", &mut out);
    out
}

fn text_projections(t: &TextConfig, prefix: &str) -> Vec<Projection> {
    let (h, q, kv, i) = (
        t.hidden_size,
        t.num_attention_heads * t.head_dim,
        t.num_key_value_heads * t.head_dim,
        t.intermediate_size,
    );
    let mut out = Vec::with_capacity(7 * t.num_hidden_layers);
    for layer in 0..t.num_hidden_layers {
        let at = format!("{prefix}.layers.{layer}");
        let p = |name: &str, d_in, d_out, bias| {
            Projection::new(format!("{at}.{name}"), d_in, d_out, bias)
        };
        out.push(p("self_attn.q_proj", h, q, t.qkv_bias));
        out.push(p("self_attn.k_proj", h, kv, t.qkv_bias));
        out.push(p("self_attn.v_proj", h, kv, t.qkv_bias));
        out.push(p("self_attn.o_proj", q, h, t.o_bias));
        out.push(p("mlp.gate_proj", h, i, false));
        out.push(p("mlp.up_proj", h, i, false));
        out.push(p("mlp.down_proj", i, h, false));
    }
    out
}

fn vision_projections(arch: Arch, v: &VisionConfig, prefix: &str, out: &mut Vec<Projection>) {
    let (d, i) = (v.hidden_size, v.intermediate_size);
    let merged = d * v.merge_unit();
    for block in 0..v.depth {
        let at = format!("{prefix}.blocks.{block}");
        let p =
            |name: &str, d_in, d_out| Projection::new(format!("{at}.{name}"), d_in, d_out, true);
        out.push(p("attn.qkv", d, 3 * d));
        out.push(p("attn.proj", d, d));
        match arch {
            Arch::Qwen25Vl => {
                out.push(p("mlp.gate_proj", d, i));
                out.push(p("mlp.up_proj", d, i));
                out.push(p("mlp.down_proj", i, d));
            }
            Arch::Qwen3Vl => {
                out.push(p("mlp.linear_fc1", d, i));
                out.push(p("mlp.linear_fc2", i, d));
            }
        }
    }
    let merger = |at: String, out: &mut Vec<Projection>| {
        let (first, second) = match arch {
            Arch::Qwen25Vl => ("mlp.0", "mlp.2"),
            Arch::Qwen3Vl => ("linear_fc1", "linear_fc2"),
        };
        out.push(Projection::new(
            format!("{at}.{first}"),
            merged,
            merged,
            true,
        ));
        out.push(Projection::new(
            format!("{at}.{second}"),
            merged,
            v.out_hidden_size,
            true,
        ));
    };
    merger(format!("{prefix}.merger"), out);
    for level in 0..v.deepstack_visual_indexes.len() {
        merger(format!("{prefix}.deepstack_merger_list.{level}"), out);
    }
}

/// Parameter counts of a model, by part.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParamCounts {
    /// The language model: embeddings, decoder layers, final norm, and the
    /// LM head when it is not tied to the embeddings.
    pub text: u64,
    /// The vision tower with its position table and mergers.
    pub vision: u64,
    /// Elements of the largest single tensor (the embedding table of a
    /// real checkpoint): what one optimizer update's temporaries scale with.
    pub largest_tensor: u64,
}

impl ParamCounts {
    pub fn total(&self) -> u64 {
        self.text + self.vision
    }
}

/// The exact parameter counts of `config`'s model.
///
/// # Shapes
///
/// Text (H hidden, I MLP width, V vocabulary, n_q = heads·head_dim,
/// n_kv = kv_heads·head_dim), per decoder layer:
/// `H·n_q + 2·H·n_kv + n_q·H` (plus `n_q + 2·n_kv` q/k/v biases in
/// Qwen2.5-VL, plus an `H` o bias with `attention_bias`) plus
/// `2·head_dim` (Qwen3 q/k norms), `3·H·I` (SwiGLU) and `2·H` (norms);
/// then `V·H` embeddings, `H` final norm and `V·H` untied LM head.
///
/// Vision (D hidden, I_v MLP width, M = D·merge², P = C·T·p² patch
/// values), per block: norms `2·D` (RMSNorm, Qwen2.5-VL) or `4·D`
/// (LayerNorm, Qwen3-VL), `D·3D + 3D` qkv, `D·D + D` proj, MLP
/// `2·(D·I_v + I_v) + I_v·D + D` (gated, Qwen2.5-VL) or
/// `D·I_v + I_v + I_v·D + D` (Qwen3-VL); plus the patch projection `P·D`
/// (+ `D` bias, Qwen3-VL), the position table `num_position_embeddings·D`
/// (Qwen3-VL) and the mergers: `M·M + M + M·out + out` and their norm (`D`
/// RMSNorm; Qwen3-VL `2·D`, and `2·M` for each DeepStack merger).
pub fn param_counts(config: &QwenVlConfig) -> ParamCounts {
    let t = &config.text;
    let v = &config.vision;
    let n = |x: usize| x as u64;
    let projections = projections(config);
    let (text_proj, vision_proj): (Vec<&Projection>, Vec<&Projection>) = projections
        .iter()
        .partition(|p| p.name.starts_with("model.language_model."));
    let sum = |ps: &[&Projection]| ps.iter().map(|p| p.params()).sum::<u64>();

    let embed = n(t.vocab_size * t.hidden_size);
    let head = if config.tie_word_embeddings { 0 } else { embed };
    let qk_norms = if t.qk_norm { 2 * t.head_dim } else { 0 };
    let layer_norms = n(t.num_hidden_layers * (2 * t.hidden_size + qk_norms));
    let text = embed + head + sum(&text_proj) + layer_norms + n(t.hidden_size);

    let d = v.hidden_size;
    let merged = d * v.merge_unit();
    let (block_norms, merger_norm) = match config.arch {
        Arch::Qwen25Vl => (2 * d, d),
        Arch::Qwen3Vl => (4 * d, 2 * d),
    };
    let patch_bias = if config.arch == Arch::Qwen3Vl { d } else { 0 };
    let deepstack_norms = v.deepstack_visual_indexes.len() * 2 * merged;
    let vision = n(v.patch_dim() * d + patch_bias)
        + n(v.num_position_embeddings * d)
        + n(v.depth * block_norms + merger_norm + deepstack_norms)
        + sum(&vision_proj);

    let largest_projection = projections.iter().map(|p| n(p.d_in * p.d_out)).max();
    let largest_tensor = [
        Some(embed),
        Some(n(v.patch_dim() * d)),
        Some(n(v.num_position_embeddings * d)),
        largest_projection,
    ]
    .into_iter()
    .flatten()
    .max()
    .unwrap_or(0);
    ParamCounts {
        text,
        vision,
        largest_tensor,
    }
}

/// What the adapters of `lora` on `config`'s model hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LoraCounts {
    /// Adapted projections.
    pub adapters: usize,
    /// Adapters on each decoder layer (the layers are alike).
    pub per_decoder_layer: usize,
    /// Adapters on each vision block (0 unless `vision = true`).
    pub per_vision_block: usize,
    /// `Σ r·(in + out)` over the adapted projections.
    pub params: u64,
    /// Elements of the largest factor, `r·max(in, out)`.
    pub largest_tensor: u64,
}

/// The adapters [`LoraConfig::targets_module`] puts on `config`'s model.
///
/// # Shapes
///
/// An adapted projection `[in, out]` gets `A [in, r]` and `B [r, out]`:
/// `r·(in + out)` parameters. Biases, norms, embeddings and the LM head
/// get none.
pub fn lora_counts(config: &QwenVlConfig, lora: &LoraConfig) -> LoraCounts {
    let r = lora.rank as u64;
    let mut counts = LoraCounts::default();
    for p in projections(config)
        .iter()
        .filter(|p| lora.targets_module(&p.name))
    {
        counts.adapters += 1;
        if p.name.starts_with("model.language_model.layers.0.") {
            counts.per_decoder_layer += 1;
        }
        if p.name.starts_with("model.visual.blocks.0.") {
            counts.per_vision_block += 1;
        }
        counts.params += r * (p.d_in + p.d_out) as u64;
        counts.largest_tensor = counts.largest_tensor.max(r * p.d_in.max(p.d_out) as u64);
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::default_model::{tiny_config, tiny_model};
    use crate::model::QwenVl;
    use burn::module::{Module, ModuleVisitor, Param};
    use burn::tensor::Tensor;
    use std::path::Path;

    /// Counts a module's parameters (by their shapes, without reading
    /// their values) and remembers the largest tensor.
    #[derive(Default)]
    struct Count {
        total: u64,
        largest: u64,
        /// Parameters under `model.visual`.
        vision: u64,
        path: Vec<String>,
    }

    impl ModuleVisitor for Count {
        fn enter_module(&mut self, name: &str, _: &str) {
            self.path.push(name.to_string());
        }
        fn exit_module(&mut self, _: &str, _: &str) {
            self.path.pop();
        }
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let n = param.lazy_shape().num_elements() as u64;
            self.total += n;
            self.largest = self.largest.max(n);
            if self.path.iter().any(|p| p == "visual") {
                self.vision += n;
            }
        }
    }

    fn count(model: &QwenVl) -> Count {
        let mut c = Count::default();
        model.visit(&mut c);
        c
    }

    fn fixture(arch: &str) -> QwenVlConfig {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/fixtures/{arch}_tiny"));
        QwenVlConfig::from_file(&dir).unwrap()
    }

    #[test]
    fn counts_equal_the_embedded_tiny_models_parameters() {
        let device = crate::device::test_device();
        let config = tiny_config().unwrap();
        let real = count(&tiny_model(0, &device).unwrap());
        let planned = param_counts(&config);
        assert_eq!(planned.total(), real.total);
        assert_eq!(planned.vision, real.vision);
        assert_eq!(planned.largest_tensor, real.largest);
        // By hand: text 1050·128 (tied) + 4 × (128·128 + 2·128·64 + 128·128
        // + 2·32 + 3·128·384 + 2·128) + 128; vision 1536·64 + 64 + 256·64
        // + 2 × (4·64 + 64·192 + 192 + 64·64 + 64 + 64·256 + 256 + 256·64
        // + 64) + (2·64 + 256·256 + 256 + 256·128 + 128) + (2·256 + 256·256
        // + 256 + 256·128 + 128).
        let text = 1050 * 128
            + 4 * (128 * 128 + 2 * 128 * 64 + 128 * 128 + 2 * 32 + 3 * 128 * 384 + 2 * 128)
            + 128;
        let block = 4 * 64 + 64 * 192 + 192 + 64 * 64 + 64 + 64 * 256 + 256 + 256 * 64 + 64;
        let merger = 256 * 256 + 256 + 256 * 128 + 128;
        let vision = 1536 * 64 + 64 + 256 * 64 + 2 * block + (2 * 64 + merger) + (2 * 256 + merger);
        assert_eq!((planned.text, planned.vision), (text, vision));
    }

    #[test]
    fn counts_equal_both_fixture_architectures_parameters() {
        let device = crate::device::test_device();
        for arch in ["qwen3_vl", "qwen2_5_vl"] {
            let config = fixture(arch);
            let real = count(&QwenVl::new(&config, &device));
            let planned = param_counts(&config);
            assert_eq!(planned.total(), real.total, "{arch}");
            assert_eq!(planned.vision, real.vision, "{arch}");
            assert_eq!(planned.largest_tensor, real.largest, "{arch}");
        }
    }

    #[test]
    fn projections_match_the_models_names_and_shapes() {
        let device = crate::device::test_device();
        for config in [tiny_config().unwrap(), fixture("qwen2_5_vl")] {
            let mut model = QwenVl::new(&config, &device);
            let real: Vec<(String, [usize; 2])> = model
                .projections_mut()
                .into_iter()
                .map(|(name, p)| (name, p.dims()))
                .collect();
            let planned: Vec<(String, [usize; 2])> = projections(&config)
                .into_iter()
                .map(|p| (p.name, [p.d_in, p.d_out]))
                .collect();
            assert_eq!(planned, real);
        }
    }

    #[test]
    fn lora_counts_equal_the_adapters_the_model_gets() {
        let device = crate::device::test_device();
        let config = tiny_config().unwrap();
        for lora in [
            LoraConfig::default(),
            LoraConfig {
                rank: 4,
                vision: true,
                targets: vec!["q_proj".into(), "qkv".into(), "linear_fc1".into()],
                ..LoraConfig::default()
            },
        ] {
            let base = count(&QwenVl::new(&config, &device));
            let (adapted, names) = QwenVl::new(&config, &device)
                .with_fresh_adapters(&lora, &mut crate::rng::Rng::new(0));
            let planned = lora_counts(&config, &lora);
            assert_eq!(planned.adapters, names.len());
            assert_eq!(planned.params, count(&adapted).total - base.total);
        }
        // Default targets, rank 16, tiny model: per layer
        // 16·((128+128) + 2·(128+64) + (128+128) + 2·(128+384) + (384+128)).
        let planned = lora_counts(&config, &LoraConfig::default());
        let per_layer = 16 * (256 + 2 * 192 + 256 + 2 * 512 + 512);
        assert_eq!(planned.params, 4 * per_layer);
        assert_eq!(
            (planned.per_decoder_layer, planned.per_vision_block),
            (7, 0)
        );
    }

    #[test]
    fn released_checkpoints_have_their_known_sizes() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/models");
        let q3 = QwenVlConfig::from_file(&dir.join("qwen3-vl-8b")).unwrap();
        let q25 = QwenVlConfig::from_file(&dir.join("qwen2.5-vl-7b")).unwrap();
        let c3 = param_counts(&q3);
        let c25 = param_counts(&q25);
        assert_eq!((c3.text, c3.vision), (8_190_735_360, 576_388_336));
        assert_eq!(c3.total(), 8_767_123_696);
        assert_eq!((c25.text, c25.vision), (7_615_616_512, 676_550_144));
        assert_eq!(c25.total(), 8_292_166_656);
        // The embedding table is the largest tensor.
        assert_eq!(c3.largest_tensor, 151_936 * 4096);
    }
}

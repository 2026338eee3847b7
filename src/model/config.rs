//! Model configuration read from a HuggingFace `config.json`, with HF's field
//! names.
//!
//! Two file shapes exist in the wild and both are read:
//! * transformers 5 writes the text fields under `text_config` and RoPE under
//!   `rope_parameters` (`rope_theta`, `mrope_section`);
//! * the original Qwen2.5-VL checkpoints (transformers 4) keep the text fields
//!   at the top level, with `rope_theta` and `rope_scaling.mrope_section`, and
//!   Qwen3-VL's text config has `rope_theta` + `rope_scaling`.
//!
//! The raw serde structs mirror the file; [`QwenVlConfig`] is the validated
//! form the model code uses.

use std::path::Path;

use burn::tensor::DType;
use serde::Deserialize;

use super::error::{ModelError, Result};

/// Which member of the family: decides norms, MLP shapes, M-RoPE layout,
/// window attention and DeepStack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    /// Qwen2.5-VL: Qwen2 decoder (qkv bias), RMSNorm vision tower with window
    /// attention, sectioned M-RoPE, `tokens_per_second` temporal positions.
    Qwen25Vl,
    /// Qwen3-VL: Qwen3 decoder (q/k RMSNorm, no bias), LayerNorm vision tower
    /// with learned position table, DeepStack, interleaved M-RoPE, timestamps.
    Qwen3Vl,
}

impl Arch {
    pub fn model_type(self) -> &'static str {
        match self {
            Arch::Qwen25Vl => "qwen2_5_vl",
            Arch::Qwen3Vl => "qwen3_vl",
        }
    }
}

/// Activation functions named as in HF's `ACT2FN`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    Silu,
    /// `gelu` (erf form).
    Gelu,
    /// `gelu_pytorch_tanh` (tanh approximation).
    GeluTanh,
}

impl Activation {
    fn parse(name: &str) -> Result<Self> {
        match name {
            "silu" | "swish" => Ok(Activation::Silu),
            "gelu" => Ok(Activation::Gelu),
            "gelu_pytorch_tanh" | "gelu_new" => Ok(Activation::GeluTanh),
            other => Err(ModelError::UnsupportedConfig(format!(
                "hidden_act {other:?}"
            ))),
        }
    }
}

/// The language model's hyper-parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct TextConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    pub head_dim: usize,
    pub rms_norm_eps: f64,
    pub rope_theta: f64,
    /// Frequencies per axis (t, h, w); sums to `head_dim / 2`.
    pub mrope_section: [usize; 3],
    pub max_position_embeddings: usize,
    /// Bias on q/k/v projections (Qwen2.5-VL: always; Qwen3-VL: `attention_bias`).
    pub qkv_bias: bool,
    /// Bias on the output projection (Qwen3-VL `attention_bias`; never in Qwen2.5-VL).
    pub o_bias: bool,
    /// Per-head RMSNorm on queries and keys (Qwen3).
    pub qk_norm: bool,
    pub hidden_act: Activation,
}

/// The vision tower's hyper-parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct VisionConfig {
    pub depth: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_heads: usize,
    pub in_channels: usize,
    pub patch_size: usize,
    pub temporal_patch_size: usize,
    pub spatial_merge_size: usize,
    pub out_hidden_size: usize,
    pub hidden_act: Activation,
    pub rope_theta: f64,
    /// Qwen2.5-VL: window size in pixels and the blocks that attend globally.
    pub window_size: usize,
    pub fullatt_block_indexes: Vec<usize>,
    /// Qwen2.5-VL: temporal rope positions per second of video.
    pub tokens_per_second: f64,
    /// Qwen3-VL: learned position table of `num_position_embeddings` entries
    /// (a square grid), and the blocks whose output feeds DeepStack.
    pub num_position_embeddings: usize,
    pub deepstack_visual_indexes: Vec<usize>,
}

impl VisionConfig {
    /// Values in one flattened patch: `C * T * P * P`.
    pub fn patch_dim(&self) -> usize {
        self.in_channels * self.temporal_patch_size * self.patch_size * self.patch_size
    }

    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_heads
    }

    /// Patches merged into one language-model token.
    pub fn merge_unit(&self) -> usize {
        self.spatial_merge_size * self.spatial_merge_size
    }
}

/// A validated Qwen-VL configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct QwenVlConfig {
    pub arch: Arch,
    pub text: TextConfig,
    pub vision: VisionConfig,
    pub image_token_id: u32,
    pub video_token_id: u32,
    pub vision_start_token_id: u32,
    pub vision_end_token_id: u32,
    pub tie_word_embeddings: bool,
}

#[derive(Debug, Deserialize)]
struct RawRope {
    rope_theta: Option<f64>,
    mrope_section: Option<Vec<usize>>,
    #[serde(alias = "type")]
    rope_type: Option<String>,
}

#[derive(Debug, Deserialize)]
struct RawText {
    vocab_size: usize,
    hidden_size: usize,
    intermediate_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    num_key_value_heads: Option<usize>,
    head_dim: Option<usize>,
    rms_norm_eps: Option<f64>,
    rope_theta: Option<f64>,
    rope_scaling: Option<RawRope>,
    rope_parameters: Option<RawRope>,
    max_position_embeddings: Option<usize>,
    attention_bias: Option<bool>,
    use_sliding_window: Option<bool>,
    hidden_act: Option<String>,
    tie_word_embeddings: Option<bool>,
}

#[derive(Debug, Deserialize)]
struct RawVision {
    depth: usize,
    hidden_size: usize,
    intermediate_size: usize,
    num_heads: usize,
    in_channels: Option<usize>,
    /// transformers-4 name of `in_channels` (the released files carry it).
    in_chans: Option<usize>,
    patch_size: Option<usize>,
    /// Older name of `patch_size`; released Qwen2.5-VL files carry both.
    spatial_patch_size: Option<usize>,
    temporal_patch_size: Option<usize>,
    spatial_merge_size: Option<usize>,
    out_hidden_size: usize,
    hidden_act: Option<String>,
    window_size: Option<usize>,
    fullatt_block_indexes: Option<Vec<usize>>,
    tokens_per_second: Option<f64>,
    num_position_embeddings: Option<usize>,
    deepstack_visual_indexes: Option<Vec<usize>>,
    rope_parameters: Option<RawRope>,
}

#[derive(Debug, Deserialize)]
struct RawConfig {
    model_type: String,
    text_config: Option<serde_json::Value>,
    vision_config: RawVision,
    image_token_id: u32,
    video_token_id: u32,
    vision_start_token_id: u32,
    vision_end_token_id: u32,
    tie_word_embeddings: Option<bool>,
    #[serde(flatten)]
    rest: serde_json::Map<String, serde_json::Value>,
}

impl QwenVlConfig {
    /// Reads `config.json` (the file itself or a model directory holding it).
    pub fn from_file(path: &Path) -> Result<Self> {
        let file = if path.is_dir() {
            path.join("config.json")
        } else {
            path.to_path_buf()
        };
        let text = std::fs::read_to_string(&file).map_err(|source| ModelError::Io {
            path: file.clone(),
            source,
        })?;
        Self::from_json(&text).map_err(|err| match err {
            ModelError::ConfigJson { source, .. } => ModelError::ConfigJson { path: file, source },
            other => other,
        })
    }

    /// Parses the text of a `config.json`.
    /// The dtype `config.json` declares the weights are stored in
    /// (`dtype`, transformers 5, or `torch_dtype`, at the top or in
    /// `text_config`); `None` when it declares none vgrpo knows.
    pub fn declared_dtype(text: &str) -> Option<DType> {
        let value: serde_json::Value = serde_json::from_str(text).ok()?;
        let named = |v: &serde_json::Value| {
            ["dtype", "torch_dtype"]
                .iter()
                .find_map(|k| v.get(k).and_then(|d| d.as_str()).map(str::to_string))
        };
        let name = named(&value).or_else(|| value.get("text_config").and_then(named))?;
        match name.as_str() {
            "float32" => Some(DType::F32),
            "bfloat16" => Some(DType::BF16),
            "float16" => Some(DType::F16),
            _ => None,
        }
    }

    pub fn from_json(text: &str) -> Result<Self> {
        let json_err = |source| ModelError::ConfigJson {
            path: "config.json".into(),
            source,
        };
        let raw: RawConfig = serde_json::from_str(text).map_err(json_err)?;
        let arch = match raw.model_type.as_str() {
            "qwen2_5_vl" => Arch::Qwen25Vl,
            "qwen3_vl" => Arch::Qwen3Vl,
            other => {
                return Err(ModelError::UnsupportedConfig(format!(
                    "model_type {other:?} (expected \"qwen2_5_vl\" or \"qwen3_vl\")"
                )));
            }
        };
        // transformers 5 nests the text fields; older files keep them at the top.
        let text_value = match raw.text_config {
            Some(value) => value,
            None => serde_json::Value::Object(raw.rest),
        };
        let raw_text: RawText = serde_json::from_value(text_value).map_err(json_err)?;
        let tie = raw
            .tie_word_embeddings
            .or(raw_text.tie_word_embeddings)
            .unwrap_or(false);
        let text = text_config(arch, raw_text)?;
        let vision = vision_config(arch, raw.vision_config)?;
        let config = QwenVlConfig {
            arch,
            text,
            vision,
            image_token_id: raw.image_token_id,
            video_token_id: raw.video_token_id,
            vision_start_token_id: raw.vision_start_token_id,
            vision_end_token_id: raw.vision_end_token_id,
            tie_word_embeddings: tie,
        };
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<()> {
        let t = &self.text;
        let v = &self.vision;
        let bad = |msg: String| Err(ModelError::UnsupportedConfig(msg));
        if !t.num_attention_heads.is_multiple_of(t.num_key_value_heads) {
            return bad(format!(
                "num_attention_heads {} is not a multiple of num_key_value_heads {}",
                t.num_attention_heads, t.num_key_value_heads
            ));
        }
        if !t.head_dim.is_multiple_of(2) || t.mrope_section.iter().sum::<usize>() != t.head_dim / 2
        {
            return bad(format!(
                "mrope_section {:?} must sum to head_dim/2 = {}",
                t.mrope_section,
                t.head_dim / 2
            ));
        }
        if !v.hidden_size.is_multiple_of(v.num_heads) || !v.head_dim().is_multiple_of(4) {
            return bad(format!(
                "vision hidden_size {} / num_heads {} must give a head dim divisible by 4",
                v.hidden_size, v.num_heads
            ));
        }
        if v.out_hidden_size != t.hidden_size {
            return bad(format!(
                "vision out_hidden_size {} differs from the text hidden_size {}",
                v.out_hidden_size, t.hidden_size
            ));
        }
        for &i in v
            .fullatt_block_indexes
            .iter()
            .chain(&v.deepstack_visual_indexes)
        {
            if i >= v.depth {
                return bad(format!("vision block index {i} >= depth {}", v.depth));
            }
        }
        if v.deepstack_visual_indexes.len() > t.num_hidden_layers {
            return bad("more DeepStack levels than decoder layers".into());
        }
        if self.arch == Arch::Qwen3Vl {
            let side = (v.num_position_embeddings as f64).sqrt() as usize;
            if side * side != v.num_position_embeddings || side < 2 {
                return bad(format!(
                    "num_position_embeddings {} is not a square grid",
                    v.num_position_embeddings
                ));
            }
        }
        if self.arch == Arch::Qwen25Vl {
            let unit = v.spatial_merge_size * v.patch_size;
            if !v.window_size.is_multiple_of(unit) || v.window_size < unit {
                return bad(format!(
                    "window_size {} is not a multiple of spatial_merge_size * patch_size = {unit}",
                    v.window_size
                ));
            }
        }
        Ok(())
    }
}

impl QwenVlConfig {
    /// A transformers-5 `config.json` for this configuration (what
    /// `save_pretrained` writes, minus training-only fields), so a model
    /// built from scratch can be exported and read back by transformers.
    pub fn to_hf_json(&self) -> serde_json::Value {
        use serde_json::json;
        let t = &self.text;
        let v = &self.vision;
        let act = |a: Activation| match a {
            Activation::Silu => "silu",
            Activation::Gelu => "gelu",
            Activation::GeluTanh => "gelu_pytorch_tanh",
        };
        let (architecture, text_type, vision_type) = match self.arch {
            Arch::Qwen25Vl => (
                "Qwen2_5_VLForConditionalGeneration",
                "qwen2_5_vl_text",
                "qwen2_5_vl_vision",
            ),
            Arch::Qwen3Vl => (
                "Qwen3VLForConditionalGeneration",
                "qwen3_vl_text",
                "qwen3_vl_vision",
            ),
        };
        let mut rope = json!({
            "rope_type": "default",
            "rope_theta": t.rope_theta,
            "mrope_section": t.mrope_section,
        });
        let mut text = json!({
            "model_type": text_type,
            "vocab_size": t.vocab_size,
            "hidden_size": t.hidden_size,
            "intermediate_size": t.intermediate_size,
            "num_hidden_layers": t.num_hidden_layers,
            "num_attention_heads": t.num_attention_heads,
            "num_key_value_heads": t.num_key_value_heads,
            "hidden_act": act(t.hidden_act),
            "max_position_embeddings": t.max_position_embeddings,
            "rms_norm_eps": t.rms_norm_eps,
            "tie_word_embeddings": self.tie_word_embeddings,
        });
        let mut vision = json!({
            "model_type": vision_type,
            "depth": v.depth,
            "hidden_size": v.hidden_size,
            "intermediate_size": v.intermediate_size,
            "num_heads": v.num_heads,
            "in_channels": v.in_channels,
            "patch_size": v.patch_size,
            "temporal_patch_size": v.temporal_patch_size,
            "spatial_merge_size": v.spatial_merge_size,
            "out_hidden_size": v.out_hidden_size,
            "hidden_act": act(v.hidden_act),
            "rope_parameters": {"rope_type": "axial", "rope_theta": v.rope_theta},
        });
        match self.arch {
            Arch::Qwen25Vl => {
                text["use_sliding_window"] = json!(false);
                vision["window_size"] = json!(v.window_size);
                vision["fullatt_block_indexes"] = json!(v.fullatt_block_indexes);
                // HF declares it an int.
                vision["tokens_per_second"] = if v.tokens_per_second.fract() == 0.0 {
                    json!(v.tokens_per_second as i64)
                } else {
                    json!(v.tokens_per_second)
                };
            }
            Arch::Qwen3Vl => {
                rope["mrope_interleaved"] = json!(true);
                text["head_dim"] = json!(t.head_dim);
                text["attention_bias"] = json!(t.qkv_bias);
                vision["num_position_embeddings"] = json!(v.num_position_embeddings);
                vision["deepstack_visual_indexes"] = json!(v.deepstack_visual_indexes);
            }
        }
        text["rope_parameters"] = rope;
        json!({
            "architectures": [architecture],
            "model_type": self.arch.model_type(),
            "dtype": "float32",
            "text_config": text,
            "vision_config": vision,
            "image_token_id": self.image_token_id,
            "video_token_id": self.video_token_id,
            "vision_start_token_id": self.vision_start_token_id,
            "vision_end_token_id": self.vision_end_token_id,
            "tie_word_embeddings": self.tie_word_embeddings,
        })
    }
}

fn rope_of(raw: &RawText) -> Result<(f64, [usize; 3])> {
    // transformers 5: rope_parameters; transformers 4: rope_theta + rope_scaling.
    let (theta, section) = match (&raw.rope_parameters, &raw.rope_scaling) {
        (Some(p), _) => (p.rope_theta.or(raw.rope_theta), p.mrope_section.clone()),
        (None, Some(s)) => (s.rope_theta.or(raw.rope_theta), s.mrope_section.clone()),
        (None, None) => (raw.rope_theta, None),
    };
    for rope in [&raw.rope_parameters, &raw.rope_scaling]
        .into_iter()
        .flatten()
    {
        if let Some(kind) = &rope.rope_type
            && kind != "default"
            && kind != "mrope"
        {
            return Err(ModelError::UnsupportedConfig(format!("rope_type {kind:?}")));
        }
    }
    let theta = theta.ok_or_else(|| ModelError::UnsupportedConfig("rope_theta missing".into()))?;
    let section =
        section.ok_or_else(|| ModelError::UnsupportedConfig("mrope_section missing".into()))?;
    let section: [usize; 3] = section.as_slice().try_into().map_err(|_| {
        ModelError::UnsupportedConfig(format!("mrope_section {section:?} must have 3 entries"))
    })?;
    Ok((theta, section))
}

fn text_config(arch: Arch, raw: RawText) -> Result<TextConfig> {
    if raw.use_sliding_window == Some(true) {
        return Err(ModelError::UnsupportedConfig(
            "use_sliding_window = true (sliding-window text attention)".into(),
        ));
    }
    let (rope_theta, mrope_section) = rope_of(&raw)?;
    let head_dim = match (arch, raw.head_dim) {
        (Arch::Qwen3Vl, Some(d)) => d,
        // Qwen2.5-VL's attention always uses hidden_size / num_heads.
        _ => raw.hidden_size / raw.num_attention_heads,
    };
    let attention_bias = raw.attention_bias.unwrap_or(false);
    Ok(TextConfig {
        vocab_size: raw.vocab_size,
        hidden_size: raw.hidden_size,
        intermediate_size: raw.intermediate_size,
        num_hidden_layers: raw.num_hidden_layers,
        num_attention_heads: raw.num_attention_heads,
        num_key_value_heads: raw.num_key_value_heads.unwrap_or(raw.num_attention_heads),
        head_dim,
        rms_norm_eps: raw.rms_norm_eps.unwrap_or(1e-6),
        rope_theta,
        mrope_section,
        max_position_embeddings: raw.max_position_embeddings.unwrap_or(128_000),
        qkv_bias: match arch {
            Arch::Qwen25Vl => true,
            Arch::Qwen3Vl => attention_bias,
        },
        o_bias: arch == Arch::Qwen3Vl && attention_bias,
        qk_norm: arch == Arch::Qwen3Vl,
        hidden_act: Activation::parse(raw.hidden_act.as_deref().unwrap_or("silu"))?,
    })
}

fn vision_config(arch: Arch, raw: RawVision) -> Result<VisionConfig> {
    let default_act = match arch {
        Arch::Qwen25Vl => "silu",
        Arch::Qwen3Vl => "gelu_pytorch_tanh",
    };
    let rope_theta = raw
        .rope_parameters
        .as_ref()
        .and_then(|r| r.rope_theta)
        .unwrap_or(10_000.0);
    Ok(VisionConfig {
        depth: raw.depth,
        hidden_size: raw.hidden_size,
        intermediate_size: raw.intermediate_size,
        num_heads: raw.num_heads,
        in_channels: raw.in_channels.or(raw.in_chans).unwrap_or(3),
        patch_size: raw.patch_size.or(raw.spatial_patch_size).ok_or_else(|| {
            ModelError::UnsupportedConfig("vision_config.patch_size missing".into())
        })?,
        temporal_patch_size: raw.temporal_patch_size.unwrap_or(2),
        spatial_merge_size: raw.spatial_merge_size.unwrap_or(2),
        out_hidden_size: raw.out_hidden_size,
        hidden_act: Activation::parse(raw.hidden_act.as_deref().unwrap_or(default_act))?,
        rope_theta,
        window_size: match arch {
            Arch::Qwen25Vl => raw.window_size.unwrap_or(112),
            Arch::Qwen3Vl => 0,
        },
        fullatt_block_indexes: match arch {
            Arch::Qwen25Vl => raw
                .fullatt_block_indexes
                .unwrap_or_else(|| vec![7, 15, 23, 31]),
            Arch::Qwen3Vl => Vec::new(),
        },
        tokens_per_second: raw.tokens_per_second.unwrap_or(4.0),
        num_position_embeddings: match arch {
            Arch::Qwen25Vl => 0,
            Arch::Qwen3Vl => raw.num_position_embeddings.unwrap_or(2304),
        },
        deepstack_visual_indexes: match arch {
            Arch::Qwen25Vl => Vec::new(),
            Arch::Qwen3Vl => raw
                .deepstack_visual_indexes
                .unwrap_or_else(|| vec![8, 16, 24]),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_transformers5_qwen3_fixture() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/qwen3_vl_tiny");
        let c = QwenVlConfig::from_file(&dir).unwrap();
        assert_eq!(c.arch, Arch::Qwen3Vl);
        assert_eq!(c.text.head_dim, 16);
        assert_eq!(c.text.mrope_section, [4, 2, 2]);
        assert_eq!(c.vision.deepstack_visual_indexes, vec![0, 1]);
        assert!(!c.tie_word_embeddings && c.text.qk_norm && !c.text.qkv_bias);
    }

    #[test]
    fn reads_a_flat_transformers4_qwen25_config() {
        // The layout of the released Qwen2.5-VL checkpoints (abridged numbers).
        let json = r#"{
          "model_type": "qwen2_5_vl", "vocab_size": 1000, "hidden_size": 64,
          "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
          "num_key_value_heads": 2, "rms_norm_eps": 1e-6, "rope_theta": 1000000.0,
          "rope_scaling": {"type": "mrope", "mrope_section": [2, 3, 3]},
          "tie_word_embeddings": true, "use_sliding_window": false,
          "image_token_id": 5, "video_token_id": 6, "vision_start_token_id": 7,
          "vision_end_token_id": 8,
          "vision_config": {"depth": 2, "hidden_size": 32, "intermediate_size": 64,
            "num_heads": 2, "in_chans": 3, "patch_size": 14, "out_hidden_size": 64,
            "window_size": 112, "fullatt_block_indexes": [1], "tokens_per_second": 2}
        }"#;
        let c = QwenVlConfig::from_json(json).unwrap();
        assert_eq!(c.arch, Arch::Qwen25Vl);
        assert_eq!(c.text.rope_theta, 1e6);
        assert_eq!(c.text.mrope_section, [2, 3, 3]);
        assert!(c.tie_word_embeddings && c.text.qkv_bias && !c.text.o_bias);
        assert_eq!(c.vision.tokens_per_second, 2.0);
    }

    #[test]
    fn hf_json_reads_back_to_the_same_config() {
        for arch in ["qwen3_vl", "qwen2_5_vl"] {
            let dir =
                Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/fixtures/{arch}_tiny"));
            let c = QwenVlConfig::from_file(&dir).unwrap();
            let again = QwenVlConfig::from_json(&c.to_hf_json().to_string()).unwrap();
            assert_eq!(again, c, "{arch}");
        }
    }

    #[test]
    fn reads_the_released_qwen25_vl_7b_config() {
        // The shape of Qwen/Qwen2.5-VL-7B-Instruct's config.json (transformers 4):
        // both in_chans and patch_size/spatial_patch_size appear.
        let json = r#"{
          "architectures": ["Qwen2_5_VLForConditionalGeneration"], "attention_dropout": 0.0,
          "bos_token_id": 151643, "eos_token_id": 151645, "vision_start_token_id": 151652,
          "vision_end_token_id": 151653, "vision_token_id": 151654, "image_token_id": 151655,
          "video_token_id": 151656, "hidden_act": "silu", "hidden_size": 3584,
          "initializer_range": 0.02, "intermediate_size": 18944, "max_position_embeddings": 128000,
          "max_window_layers": 28, "model_type": "qwen2_5_vl", "num_attention_heads": 28,
          "num_hidden_layers": 28, "num_key_value_heads": 4, "rms_norm_eps": 1e-06,
          "rope_theta": 1000000.0, "sliding_window": 32768, "tie_word_embeddings": false,
          "torch_dtype": "bfloat16", "transformers_version": "4.41.2", "use_cache": true,
          "use_sliding_window": false,
          "vision_config": {"depth": 32, "hidden_act": "silu", "hidden_size": 1280,
            "intermediate_size": 3420, "num_heads": 16, "in_chans": 3, "out_hidden_size": 3584,
            "patch_size": 14, "spatial_merge_size": 2, "spatial_patch_size": 14, "window_size": 112,
            "fullatt_block_indexes": [7, 15, 23, 31], "tokens_per_second": 2,
            "temporal_patch_size": 2},
          "rope_scaling": {"type": "mrope", "mrope_section": [16, 24, 24]},
          "vocab_size": 152064
        }"#;
        let c = QwenVlConfig::from_json(json).unwrap();
        assert_eq!((c.text.head_dim, c.text.num_key_value_heads), (128, 4));
        assert_eq!(c.vision.patch_dim(), 3 * 2 * 14 * 14);
        assert!(!c.tie_word_embeddings);
    }

    #[test]
    fn reads_the_released_qwen3_vl_8b_config() {
        // The shape of Qwen/Qwen3-VL-8B-Instruct's config.json (rope_scaling + rope_theta).
        let json = r#"{
          "architectures": ["Qwen3VLForConditionalGeneration"], "image_token_id": 151655,
          "model_type": "qwen3_vl",
          "text_config": {"attention_bias": false, "attention_dropout": 0.0, "bos_token_id": 151643,
            "dtype": "bfloat16", "eos_token_id": 151645, "head_dim": 128, "hidden_act": "silu",
            "hidden_size": 4096, "initializer_range": 0.02, "intermediate_size": 12288,
            "max_position_embeddings": 262144, "model_type": "qwen3_vl_text",
            "num_attention_heads": 32, "num_hidden_layers": 36, "num_key_value_heads": 8,
            "rms_norm_eps": 1e-06,
            "rope_scaling": {"mrope_interleaved": true, "mrope_section": [24, 20, 20], "rope_type": "default"},
            "rope_theta": 5000000, "use_cache": true, "vocab_size": 151936},
          "tie_word_embeddings": false, "transformers_version": "4.57.0.dev0",
          "video_token_id": 151656,
          "vision_config": {"deepstack_visual_indexes": [8, 16, 24], "depth": 27,
            "hidden_act": "gelu_pytorch_tanh", "hidden_size": 1152, "in_channels": 3,
            "initializer_range": 0.02, "intermediate_size": 4304, "model_type": "qwen3_vl",
            "num_heads": 16, "num_position_embeddings": 2304, "out_hidden_size": 4096,
            "patch_size": 16, "spatial_merge_size": 2, "temporal_patch_size": 2},
          "vision_end_token_id": 151653, "vision_start_token_id": 151652
        }"#;
        let c = QwenVlConfig::from_json(json).unwrap();
        assert_eq!(c.arch, Arch::Qwen3Vl);
        assert_eq!(c.text.rope_theta, 5e6);
        assert_eq!(c.vision.deepstack_visual_indexes, vec![8, 16, 24]);
    }

    #[test]
    fn rejects_a_section_that_does_not_cover_the_head() {
        let json = r#"{
          "model_type": "qwen2_5_vl", "vocab_size": 10, "hidden_size": 64,
          "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
          "rope_theta": 1.0, "rope_scaling": {"mrope_section": [2, 3, 2]},
          "image_token_id": 5, "video_token_id": 6, "vision_start_token_id": 7,
          "vision_end_token_id": 8,
          "vision_config": {"depth": 1, "hidden_size": 32, "intermediate_size": 64,
            "num_heads": 2, "patch_size": 14, "out_hidden_size": 64}
        }"#;
        let err = QwenVlConfig::from_json(json).unwrap_err().to_string();
        assert!(err.contains("mrope_section"), "{err}");
    }
}

//! The embedded default model: a tiny Qwen3-VL that runs the whole demo
//! pipeline on a 2-core CPU in minutes.
//!
//! It is the real architecture, configured small: `assets/tiny/config.json`
//! is a HuggingFace-layout `config.json` read by the same
//! [`QwenVlConfig::from_json`] as released checkpoints, so nothing in the
//! trainer special-cases it. Its vocabulary is the embedded tiny tokenizer's
//! (`assets/tiny/tokenizer.json`, 1024 BPE tokens + Qwen's 26 added tokens =
//! 1050 ids; the config's `vocab_size` is exactly that, so the model can never
//! sample an id the tokenizer cannot decode), and its vision ids are that
//! tokenizer's `<|vision_start|>` (1033), `<|vision_end|>` (1034),
//! `<|image_pad|>` (1036) and `<|video_pad|>` (1037). Sizes: text hidden 128,
//! 4 layers, 4 query / 2 key-value heads of 32, MLP 384, tied embeddings,
//! M-RoPE sections [6, 5, 5] (real Qwen3-VL's [24, 20, 20] scaled to the head);
//! vision tower depth 2, hidden 64, 4 heads, patch 16 × temporal 2, merge 2
//! (Qwen3-VL's patch geometry, so the video processor sizes frames the same
//! way), a 16 × 16 position table, DeepStack from block 0. About 1.3 M
//! parameters.
//!
//! Weights are initialised the way transformers' `_init_weights` does for
//! Qwen3-VL — every matrix (linear, embedding, patch projection, position
//! table) from N(0, 0.02²), biases 0, norm scales 1 — drawn from
//! [`crate::rng::Rng`], not from the backend's generator. So a seed gives the
//! same weights on every backend, thread count and process, and the untrained
//! model's next-token distribution is close to uniform (small logits), which
//! is what sampling-based training wants from a fresh policy. Burn's own
//! defaults would differ: `Embedding` draws N(0, 1), which with tied
//! embeddings makes the fresh model's logits ~10 wide.

use burn::module::{Module, ModuleMapper, Param};
use burn::tensor::{Device, Tensor, TensorData};

use crate::model::{QwenVl, QwenVlConfig, Result};
use crate::rng::Rng;

/// The tiny model's `config.json` (HF layout).
pub const TINY_CONFIG_JSON: &str = include_str!("../assets/tiny/config.json");

/// Standard deviation of the initial weight matrices: the config's
/// `initializer_range` (a test keeps the two equal).
pub const INIT_STD: f64 = 0.02;

/// The tiny model's configuration.
pub fn tiny_config() -> Result<QwenVlConfig> {
    QwenVlConfig::from_json(TINY_CONFIG_JSON)
}

/// A freshly initialised tiny model on `device` (use `device.autodiff()` to
/// train it); the same `seed` always gives the same weights.
pub fn tiny_model(seed: u64, device: &Device) -> Result<QwenVl> {
    let config = tiny_config()?;
    Ok(init_like_hf(QwenVl::new(&config, device), seed))
}

/// Re-initialises every parameter of `model` HF-style from `seed` (see the
/// module docs): rank ≥ 2 tensors from N(0, [`INIT_STD`]²), `bias` vectors to
/// 0, other vectors (RMSNorm / LayerNorm scales) kept at their constructed
/// value of 1. Parameters are visited in module order and each draws from its
/// own fork of the seed's stream, so adding a layer elsewhere does not shift
/// the draws of the others. Parameter ids and gradient flags are kept.
pub fn init_like_hf(model: QwenVl, seed: u64) -> QwenVl {
    let mut init = HfInit {
        rng: Rng::stream(seed, "model-init"),
        index: 0,
        leaf: Vec::new(),
    };
    model.map(&mut init)
}

struct HfInit {
    rng: Rng,
    /// Running parameter index: the fork key of the next parameter.
    index: u64,
    /// Module path, to recognise `bias` leaves.
    leaf: Vec<String>,
}

impl ModuleMapper for HfInit {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.leaf.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.leaf.pop();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let mut rng = self.rng.fork(self.index);
        self.index += 1;
        let is_bias = self.leaf.last().is_some_and(|name| name == "bias");
        if D < 2 && !is_bias {
            return param; // a norm scale: keep its constructed ones
        }
        // The shape and device are read without running Burn's lazy
        // initialiser, which would draw from the backend RNG only to be
        // overwritten.
        let shape = param.lazy_shape();
        let device = param.lazy_device();
        let values: Vec<f32> = if is_bias {
            vec![0.0; shape.num_elements()]
        } else {
            (0..shape.num_elements())
                .map(|_| (rng.normal() * INIT_STD) as f32)
                .collect()
        };
        let tensor = Tensor::<D>::from_data(TensorData::new(values, shape), &device);
        // `transform_for_load` keeps the id and re-applies the parameter's
        // gradient requirement, exactly as loading a checkpoint would.
        let id = param.id;
        param.transform_for_load(tensor, id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Batch;
    use crate::text::tokenizer::Tokenizer;
    use burn::module::ModuleVisitor;

    /// Every parameter's path, rank and values, in module order.
    struct Values(Vec<(String, usize, Vec<f32>)>, Vec<String>);

    impl ModuleVisitor for Values {
        fn enter_module(&mut self, name: &str, _: &str) {
            self.1.push(name.to_string());
        }
        fn exit_module(&mut self, _: &str, _: &str) {
            self.1.pop();
        }
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let v = param.val().into_data().try_to_vec::<f32>().unwrap();
            self.0.push((self.1.join("."), D, v));
        }
    }

    fn values(model: &QwenVl) -> Vec<(String, usize, Vec<f32>)> {
        let mut v = Values(Vec::new(), Vec::new());
        model.visit(&mut v);
        v.0
    }

    #[test]
    fn config_matches_the_tiny_tokenizer() {
        let config = tiny_config().unwrap();
        let tok = Tokenizer::tiny().unwrap();
        let special = tok.special();
        assert_eq!(config.text.vocab_size, tok.vocab_size());
        assert_eq!(config.video_token_id, special.video_pad);
        assert_eq!(config.image_token_id, special.image_pad);
        assert_eq!(config.vision_start_token_id, special.vision_start);
        assert_eq!(config.vision_end_token_id, special.vision_end);
        assert!(config.tie_word_embeddings);
        assert_eq!(
            (config.text.hidden_size, config.text.num_hidden_layers),
            (128, 4)
        );
        assert_eq!(config.vision.out_hidden_size, config.text.hidden_size);
        let raw: serde_json::Value = serde_json::from_str(TINY_CONFIG_JSON).unwrap();
        assert_eq!(raw["text_config"]["initializer_range"], INIT_STD);
        assert_eq!(raw["text_config"]["eos_token_id"], special.im_end);
    }

    #[test]
    fn init_is_seeded_hf_style_and_keeps_norms_at_one() {
        let device = crate::device::test_device();
        let a = values(&tiny_model(7, &device).unwrap());
        let b = values(&tiny_model(7, &device).unwrap());
        let c = values(&tiny_model(8, &device).unwrap());
        assert_eq!(a, b, "same seed, same weights");
        assert_ne!(a, c, "different seed, different weights");
        let count: usize = a.iter().map(|(_, _, v)| v.len()).sum();
        assert!(
            (1_000_000..2_000_000).contains(&count),
            "{count} parameters"
        );
        let (_, _, embed) = a
            .iter()
            .find(|(name, _, _)| name.ends_with("embed_tokens.weight"))
            .unwrap();
        let n = embed.len() as f64;
        let std = (embed.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>() / n).sqrt();
        assert!((std - INIT_STD).abs() < 0.001, "embedding std {std}");
        for (name, rank, v) in &a {
            if name.ends_with("bias") {
                assert!(v.iter().all(|&x| x == 0.0), "{name} not zero");
            } else if *rank == 1 {
                // Every other vector is a norm scale.
                assert!(name.contains("norm"), "{name}: unexpected vector parameter");
                assert!(v.iter().all(|&x| x == 1.0), "{name} not one");
            }
        }
    }

    #[test]
    fn forward_on_a_short_text_batch_gives_near_uniform_logits() {
        let device = crate::device::test_device();
        let model = tiny_model(0, &device).unwrap();
        let tok = Tokenizer::tiny().unwrap();
        let ids: Vec<i64> = tok
            .encode("a red ball moves left")
            .unwrap()
            .into_iter()
            .map(i64::from)
            .collect();
        let batch = Batch::text(vec![ids.clone(), ids.iter().rev().copied().collect()]);
        let logits = model.forward(&batch, &device).unwrap();
        assert_eq!(logits.dims(), [2, ids.len(), 1050]);
        let values = logits.into_data().try_to_vec::<f32>().unwrap();
        assert!(values.iter().all(|x| x.is_finite()));
        let max = values.iter().fold(0f32, |m, x| m.max(x.abs()));
        assert!(
            max < 1.0,
            "fresh logits should be small, max |logit| = {max}"
        );
    }

    #[test]
    fn forward_and_backward_through_a_video_prompt() {
        use crate::model::position::{TOKEN_TEXT, TOKEN_VIDEO};
        use crate::model::{Grid, VideoInput};
        use burn::optim::GradientsParams;
        let device = crate::device::test_device().autodiff();
        let model = tiny_model(5, &device).unwrap();
        let c = &model.config;
        // One temporal group (2 frames) of 4 × 6 patches of a 64 × 96 clip:
        // 24 patches, 6 language-model tokens after 2 × 2 merging.
        // (Qwen3-VL brackets each temporal group with its own
        // vision_start/vision_end, so one group keeps the prompt simple.)
        let grid = Grid { t: 1, h: 4, w: 6 };
        let dim = c.vision.patch_dim();
        let mut rng = Rng::new(1);
        let pixels: Vec<f32> = (0..grid.patches() * dim)
            .map(|_| rng.normal() as f32)
            .collect();
        let video_tokens = grid.tokens(c.vision.spatial_merge_size);
        let mut ids = vec![1025, 40, 50, i64::from(c.vision_start_token_id)];
        let mut types = vec![TOKEN_TEXT; ids.len()];
        ids.extend(std::iter::repeat_n(
            i64::from(c.video_token_id),
            video_tokens,
        ));
        types.extend(std::iter::repeat_n(TOKEN_VIDEO, video_tokens));
        ids.extend([i64::from(c.vision_end_token_id), 60, 1026]);
        types.extend([TOKEN_TEXT; 3]);
        let len = ids.len();
        let batch = Batch {
            input_ids: vec![ids],
            attention_mask: vec![vec![true; len]],
            token_types: vec![types],
            video: Some(VideoInput {
                pixel_values: Tensor::from_data(
                    TensorData::new(pixels, [grid.patches(), dim]),
                    &device,
                ),
                grids: vec![grid],
                second_per_grid_ts: vec![1.0],
                shared_across_rows: false,
            }),
        };
        let logits = model.forward(&batch, &device).unwrap();
        assert_eq!(logits.dims(), [1, len, 1050]);
        let grads = GradientsParams::from_grads(logits.mean().backward(), &model);
        // The video reaches the vision tower's first layer and its position
        // table.
        let visual = &model.model.visual;
        let g_patch = grads.get::<2>(visual.patch_embed.proj.weight.id).unwrap();
        let g_pos = grads
            .get::<2>(visual.pos_embed.as_ref().unwrap().weight.id)
            .unwrap();
        for g in [g_patch, g_pos] {
            let v = g.into_data().try_to_vec::<f32>().unwrap();
            assert!(v.iter().all(|x| x.is_finite()) && v.iter().any(|&x| x != 0.0));
        }
    }
}

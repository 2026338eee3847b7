//! The model's projections by HF module name, and adapters across the
//! whole model: attaching fresh ones, taking them off, merging them. The
//! per-layer pieces ([`Adapter`], [`LoraLinear`]) are in `lora`; this file
//! walks the module tree, so it sits above `text`, `vision` and `qwen_vl`
//! (which build their projections from `lora`).

use burn::module::Module;

use super::lora::{Adapter, LoraConfig, LoraLinear};
use super::qwen_vl::QwenVl;
use super::text::TextModel;
use super::vision::{PatchMerger, VisionMlp, VisionModel};
use crate::rng::Rng;

impl TextModel {
    /// Every projection of the decoder with its HF module name.
    fn projections<'a>(&'a mut self, prefix: &str, out: &mut Vec<(String, &'a mut LoraLinear)>) {
        for (i, layer) in self.layers.iter_mut().enumerate() {
            let at = format!("{prefix}.layers.{i}");
            let attn = &mut layer.self_attn;
            out.push((format!("{at}.self_attn.q_proj"), &mut attn.q_proj));
            out.push((format!("{at}.self_attn.k_proj"), &mut attn.k_proj));
            out.push((format!("{at}.self_attn.v_proj"), &mut attn.v_proj));
            out.push((format!("{at}.self_attn.o_proj"), &mut attn.o_proj));
            let mlp = &mut layer.mlp;
            out.push((format!("{at}.mlp.gate_proj"), &mut mlp.gate_proj));
            out.push((format!("{at}.mlp.up_proj"), &mut mlp.up_proj));
            out.push((format!("{at}.mlp.down_proj"), &mut mlp.down_proj));
        }
    }
}

impl PatchMerger {
    fn projections<'a>(&'a mut self, at: &str, out: &mut Vec<(String, &'a mut LoraLinear)>) {
        match self {
            PatchMerger::Qwen25(m) => {
                out.push((format!("{at}.mlp.0"), &mut m.mlp_0));
                out.push((format!("{at}.mlp.2"), &mut m.mlp_2));
            }
            PatchMerger::Qwen3(m) => {
                out.push((format!("{at}.linear_fc1"), &mut m.linear_fc1));
                out.push((format!("{at}.linear_fc2"), &mut m.linear_fc2));
            }
        }
    }
}

impl VisionModel {
    /// Every projection of the tower and its mergers with its HF module
    /// name (the patch embedding, a convolution, is not one).
    fn projections<'a>(&'a mut self, prefix: &str, out: &mut Vec<(String, &'a mut LoraLinear)>) {
        for (i, block) in self.blocks.iter_mut().enumerate() {
            let at = format!("{prefix}.blocks.{i}");
            out.push((format!("{at}.attn.qkv"), &mut block.attn.qkv));
            out.push((format!("{at}.attn.proj"), &mut block.attn.proj));
            match &mut block.mlp {
                VisionMlp::Gated(m) => {
                    out.push((format!("{at}.mlp.gate_proj"), &mut m.gate_proj));
                    out.push((format!("{at}.mlp.up_proj"), &mut m.up_proj));
                    out.push((format!("{at}.mlp.down_proj"), &mut m.down_proj));
                }
                VisionMlp::Plain(m) => {
                    out.push((format!("{at}.mlp.linear_fc1"), &mut m.linear_fc1));
                    out.push((format!("{at}.mlp.linear_fc2"), &mut m.linear_fc2));
                }
            }
        }
        self.merger.projections(&format!("{prefix}.merger"), out);
        for (j, merger) in self.deepstack_merger_list.iter_mut().enumerate() {
            merger.projections(&format!("{prefix}.deepstack_merger_list.{j}"), out);
        }
    }
}

impl QwenVl {
    /// Every [`LoraLinear`] of the model with its HF module name
    /// (`model.language_model.layers.0.self_attn.q_proj`, ...), the
    /// language model first. The LM head is not a target.
    pub fn projections_mut(&mut self) -> Vec<(String, &mut LoraLinear)> {
        let mut out = Vec::new();
        self.model
            .language_model
            .projections("model.language_model", &mut out);
        self.model.visual.projections("model.visual", &mut out);
        out
    }

    /// The model with a fresh adapter on every projection `cfg` targets
    /// and every base parameter frozen (no gradient, so no optimizer
    /// state). `A` is drawn from `rng` in [`projections_mut`] order, so the
    /// same seed gives the same adapters. Returns the adapted module names.
    ///
    /// [`projections_mut`]: Self::projections_mut
    pub fn with_fresh_adapters(self, cfg: &LoraConfig, rng: &mut Rng) -> (Self, Vec<String>) {
        let mut model = self.no_grad();
        let mut names = Vec::new();
        for (name, proj) in model.projections_mut() {
            if !cfg.targets_module(&name) {
                continue;
            }
            let [d_in, d_out] = proj.dims();
            let device = proj.weight.lazy_device();
            proj.adapter = Some(Adapter::fresh(d_in, d_out, cfg, rng, &device));
            names.push(name);
        }
        (model, names)
    }

    /// Whether any projection carries an adapter.
    pub fn has_adapters(&self) -> bool {
        let mut model = self.clone();
        model
            .projections_mut()
            .iter()
            .any(|(_, p)| p.adapter.is_some())
    }

    /// The same model with every adapter removed: the base policy, sharing
    /// the base tensors (a clone of a module shares its tensors). A LoRA
    /// run's reference.
    pub fn without_adapters(&self) -> Self {
        let mut model = self.clone();
        for (_, proj) in model.projections_mut() {
            proj.adapter = None;
        }
        model
    }

    /// The model with every adapter folded into its base weight (in the
    /// weight's dtype) and removed: what an HF export or a new base for
    /// the next stage holds.
    pub fn merged(mut self) -> Self {
        for (_, proj) in self.projections_mut() {
            proj.merge();
        }
        self
    }
}

//! LoRA: low-rank adapters on the model's linear projections.
//!
//! Every projection of the decoder and the vision tower is a
//! [`LoraLinear`]: the HF `weight` (`[in, out]`, Burn's layout) and `bias`,
//! plus an optional [`Adapter`]. With an adapter the layer computes
//!
//! ```text
//! y = x·W + b + (α/r)·((x·A)·B)        A [in, r], B [r, out]
//! ```
//!
//! as two small matmuls: the dense `W + (α/r)·A·B` is never built while
//! training, so neither is a dense gradient. (Burn 0.22's `apply_lora`
//! composes `base + scale·(a @ b)` into a dense weight on every call and
//! backpropagates a weight-shaped gradient into it; `benches/lora.rs`
//! measures the two.) A fresh adapter has `B = 0`, so it leaves the model's
//! output exactly as it was.
//!
//! The base is frozen (no gradient, no optimizer state) and may stay in its
//! checkpoint dtype; the factors are f32 master weights, cast to the
//! activations' dtype inside the forward so their gradients and AdamW
//! moments stay f32. The reference policy of a LoRA run is the same model
//! with the adapters off (`QwenVl::without_adapters`, [`super::adapters`]): no second copy of
//! the weights.
//!
//! Which projections get adapters is [`LoraConfig::targets`]: PEFT's
//! `target_modules` rule (a pattern matches a module whose HF name equals
//! it or ends with `.pattern`), applied to the language model, and to the
//! vision tower and its mergers only with `vision = true` (EasyR1's
//! default leaves the tower out).

use burn::module::{Module, Param};
use burn::tensor::module::linear;
use burn::tensor::{DType, Device, Distribution, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use super::layers::to_dtype;
use crate::config::rules::{Rules, Validate};
use crate::rng::Rng;

/// How the `A` factor starts (`B` always starts at zero).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LoraInit {
    /// PEFT's default (`init_lora_weights = true`): torch's
    /// `kaiming_uniform_(a = √5)`, i.e. `A ~ U(−1/√in, 1/√in)`.
    Kaiming,
    /// PEFT's `init_lora_weights = "gaussian"`: `A ~ N(0, 1/r)`.
    Gaussian,
}

/// `[lora]`: train low-rank adapters instead of every weight. The section
/// being present turns LoRA on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoraConfig {
    /// Rank r of the factors.
    pub rank: usize,
    /// α: the update is scaled by α / r.
    pub alpha: f64,
    /// PEFT `target_modules`: a module whose HF name equals a pattern or
    /// ends with `.pattern` gets an adapter.
    pub targets: Vec<String>,
    /// Also adapt the vision tower and its mergers (matched by the same
    /// patterns, e.g. `qkv`, `proj`, `linear_fc1`).
    pub vision: bool,
    /// How `A` is initialised.
    pub init: LoraInit,
    /// PEFT's `lora_dropout` on the adapter's input while training.
    pub dropout: f64,
}

/// The language model's attention and MLP projections (verl, TRL and
/// LLaMA-Factory's `all-linear` on a Qwen decoder).
pub const DEFAULT_TARGETS: [&str; 7] = [
    "q_proj",
    "k_proj",
    "v_proj",
    "o_proj",
    "gate_proj",
    "up_proj",
    "down_proj",
];

impl Default for LoraConfig {
    fn default() -> Self {
        LoraConfig {
            rank: 16,
            alpha: 32.0,
            targets: DEFAULT_TARGETS.iter().map(|t| t.to_string()).collect(),
            vision: false,
            init: LoraInit::Kaiming,
            dropout: 0.0,
        }
    }
}

impl LoraConfig {
    /// The factor α / r the adapter's output is scaled by.
    pub fn scale(&self) -> f64 {
        self.alpha / self.rank as f64
    }

    /// Whether the projection called `name` (its HF module name) gets an
    /// adapter.
    pub fn targets_module(&self, name: &str) -> bool {
        if name.starts_with("model.visual.") && !self.vision {
            return false;
        }
        self.targets.iter().any(|t| {
            name == t
                || name
                    .strip_suffix(t.as_str())
                    .is_some_and(|s| s.ends_with('.'))
        })
    }
}

impl Validate for LoraConfig {
    fn validate(&self, p: &str, rules: &mut Rules) {
        rules.check(self.rank > 0, &format!("{p}.rank"), || {
            "rank must be at least 1".into()
        });
        rules.check(
            self.alpha.is_finite() && self.alpha > 0.0,
            &format!("{p}.alpha"),
            || format!("alpha must be a positive number, got {}", self.alpha),
        );
        rules.check(!self.targets.is_empty(), &format!("{p}.targets"), || {
            "targets must name at least one module (e.g. \"q_proj\")".into()
        });
        rules.check(
            (0.0..1.0).contains(&self.dropout),
            &format!("{p}.dropout"),
            || format!("dropout must be in [0, 1), got {}", self.dropout),
        );
        rules.check(
            self.targets.iter().all(|t| !t.is_empty()),
            &format!("{p}.targets"),
            || "an empty pattern matches no module".into(),
        );
    }
}

/// The low-rank factors of one projection.
#[derive(Module, Debug)]
pub struct Adapter {
    /// `[in, r]` (PEFT's `lora_A.weight` transposed).
    pub lora_a: Param<Tensor<2>>,
    /// `[r, out]` (PEFT's `lora_B.weight` transposed).
    pub lora_b: Param<Tensor<2>>,
    /// α / r.
    pub scale: f64,
    /// PEFT's `lora_dropout`: the probability an input element is zeroed
    /// (and the rest scaled by 1/(1 − p)) before `A`, in training passes
    /// only — a forward on an autodiff device. 0 in every other pass
    /// (rollouts, log-probs of the old policy, evaluation).
    pub dropout: f64,
}

impl Adapter {
    /// `[in, r]` and `[r, out]` factors from host values (row-major).
    pub fn from_values(
        a: Vec<f32>,
        b: Vec<f32>,
        [d_in, rank, d_out]: [usize; 3],
        scale: f64,
        device: &Device,
    ) -> Self {
        Adapter {
            lora_a: Param::from_tensor(Tensor::from_data(TensorData::new(a, [d_in, rank]), device)),
            lora_b: Param::from_tensor(Tensor::from_data(
                TensorData::new(b, [rank, d_out]),
                device,
            )),
            scale,
            dropout: 0.0,
        }
    }

    /// A fresh adapter: `A` drawn as `init` says, `B = 0`.
    pub fn fresh(
        d_in: usize,
        d_out: usize,
        cfg: &LoraConfig,
        rng: &mut Rng,
        device: &Device,
    ) -> Self {
        let r = cfg.rank;
        let a: Vec<f32> = match cfg.init {
            LoraInit::Kaiming => {
                let bound = 1.0 / (d_in as f64).sqrt();
                (0..d_in * r)
                    .map(|_| rng.uniform(-bound, bound) as f32)
                    .collect()
            }
            LoraInit::Gaussian => {
                let std = 1.0 / r as f64;
                (0..d_in * r).map(|_| (rng.normal() * std) as f32).collect()
            }
        };
        let adapter = Adapter::from_values(
            a,
            vec![0.0; r * d_out],
            [d_in, r, d_out],
            cfg.scale(),
            device,
        );
        Adapter {
            dropout: cfg.dropout,
            ..adapter
        }
    }

    /// `(α/r)·A·B` `[in, out]`, in f32.
    pub fn delta(&self) -> Tensor<2> {
        self.lora_a
            .val()
            .matmul(self.lora_b.val())
            .mul_scalar(self.scale)
    }

    /// `(α/r)·((dropout(x)·A)·B)` `[..., out]` in `x`'s dtype. The
    /// dropout mask comes from the device's generator, which a trainer
    /// seeds from its checkpointed state before each pass.
    fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        let dtype = x.dtype();
        let x = if self.dropout > 0.0 && x.is_autodiff() {
            let keep = 1.0 - self.dropout;
            let mask = Tensor::<D>::random(
                x.shape(),
                Distribution::Bernoulli(keep),
                (&x.device(), dtype),
            );
            x * mask.div_scalar(keep)
        } else {
            x
        };
        let down = linear(x, to_dtype(self.lora_a.val(), dtype), None); // [..., r]
        linear(
            down.mul_scalar(self.scale),
            to_dtype(self.lora_b.val(), dtype),
            None,
        )
    }
}

/// A linear projection with HF parameter names (`weight`, `bias`) and an
/// optional adapter.
#[derive(Module, Debug)]
pub struct LoraLinear {
    /// `[in, out]`
    pub weight: Param<Tensor<2>>,
    /// `[out]`
    pub bias: Option<Param<Tensor<1>>>,
    pub adapter: Option<Adapter>,
}

impl LoraLinear {
    /// torch `nn.Linear`'s initialisation: weight and bias
    /// `~ U(−1/√in, 1/√in)` (Burn's `Linear` default).
    pub fn new(d_in: usize, d_out: usize, bias: bool, device: &Device) -> Self {
        let plain = burn::nn::LinearConfig::new(d_in, d_out)
            .with_bias(bias)
            .init(device);
        LoraLinear {
            weight: plain.weight,
            bias: plain.bias,
            adapter: None,
        }
    }

    /// `[in, out]`
    pub fn dims(&self) -> [usize; 2] {
        self.weight.lazy_shape().dims::<2>()
    }

    /// `[..., in] -> [..., out]`: the base projection plus the adapter's.
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        let base = linear(
            x.clone(),
            self.weight.val(),
            self.bias.as_ref().map(|b| b.val()),
        );
        match &self.adapter {
            Some(adapter) => base + adapter.forward(x),
            None => base,
        }
    }

    /// Folds the adapter into the weight (`W + (α/r)·A·B`, in the weight's
    /// dtype) and removes it. The merged weight is a new leaf with the old
    /// weight's gradient requirement: it does not backpropagate into the
    /// factors or the old weight.
    pub fn merge(&mut self) {
        let Some(adapter) = self.adapter.take() else {
            return;
        };
        self.weight = self.weight.clone().map(|w| {
            let dtype = w.dtype();
            let require_grad = w.is_require_grad();
            to_dtype(to_dtype(w, DType::F32) + adapter.delta(), dtype)
                .detach()
                .set_require_grad(require_grad)
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_follow_peft_suffix_rule_and_skip_the_tower_by_default() {
        let cfg = LoraConfig::default();
        assert!(cfg.targets_module("model.language_model.layers.0.self_attn.q_proj"));
        assert!(cfg.targets_module("model.language_model.layers.3.mlp.down_proj"));
        assert!(!cfg.targets_module("model.language_model.layers.3.mlp.xdown_proj"));
        // Qwen2.5-VL's tower has gate/up/down too: only with `vision`.
        assert!(!cfg.targets_module("model.visual.blocks.0.mlp.gate_proj"));
        let vision = LoraConfig {
            vision: true,
            targets: vec!["qkv".into(), "gate_proj".into()],
            ..LoraConfig::default()
        };
        assert!(vision.targets_module("model.visual.blocks.0.attn.qkv"));
        assert!(vision.targets_module("model.visual.blocks.0.mlp.gate_proj"));
        assert!(!vision.targets_module("model.visual.blocks.0.attn.proj"));
        // A full name matches itself.
        let exact = LoraConfig {
            targets: vec!["model.language_model.layers.1.self_attn.v_proj".into()],
            ..LoraConfig::default()
        };
        assert!(exact.targets_module("model.language_model.layers.1.self_attn.v_proj"));
        assert!(!exact.targets_module("model.language_model.layers.0.self_attn.v_proj"));
    }

    #[test]
    fn rules_name_the_key() {
        let check = |cfg: LoraConfig| {
            let mut rules = Rules::default();
            cfg.validate("lora", &mut rules);
            rules
                .into_violations()
                .into_iter()
                .flat_map(|v| v.keys)
                .collect::<Vec<_>>()
        };
        assert!(check(LoraConfig::default()).is_empty());
        let bad = |f: fn(&mut LoraConfig)| {
            let mut cfg = LoraConfig::default();
            f(&mut cfg);
            check(cfg)
        };
        assert_eq!(bad(|c| c.dropout = 1.0), vec!["lora.dropout"]);
        assert_eq!(bad(|c| c.dropout = -0.1), vec!["lora.dropout"]);
        assert_eq!(bad(|c| c.rank = 0), vec!["lora.rank"]);
        assert_eq!(bad(|c| c.alpha = f64::NAN), vec!["lora.alpha"]);
        assert_eq!(bad(|c| c.targets.clear()), vec!["lora.targets"]);
    }

    #[test]
    fn factored_forward_matches_hand_values() {
        let device = crate::device::test_device();
        // x [1, 2], W [2, 2] = I, b = [1, 0], A [2, 1] = [1, 2]ᵀ, B [1, 2] = [3, −1], α/r = 0.5
        let mut layer = LoraLinear::new(2, 2, true, &device);
        layer.weight = Param::from_tensor(Tensor::from_data(
            TensorData::new(vec![1.0f32, 0.0, 0.0, 1.0], [2, 2]),
            &device,
        ));
        layer.bias = Some(Param::from_tensor(Tensor::from_data(
            TensorData::new(vec![1.0f32, 0.0], [2]),
            &device,
        )));
        layer.adapter = Some(Adapter::from_values(
            vec![1.0, 2.0],
            vec![3.0, -1.0],
            [2, 1, 2],
            0.5,
            &device,
        ));
        let x = Tensor::<2>::from_data(TensorData::new(vec![2.0f32, -1.0], [1, 2]), &device);
        // x·W + b = [3, −1]; x·A = 0; so y = [3, −1].
        let y: Vec<f32> = layer.forward(x).into_data().try_to_vec::<f32>().unwrap();
        assert_eq!(y, vec![3.0, -1.0]);
        let x = Tensor::<2>::from_data(TensorData::new(vec![1.0f32, 1.0], [1, 2]), &device);
        // x·W + b = [2, 1]; x·A = 3; 0.5·3·[3, −1] = [4.5, −1.5] → [6.5, −0.5].
        let y: Vec<f32> = layer
            .forward(x.clone())
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        assert_eq!(y, vec![6.5, -0.5]);
        // Merging gives the same map as one matmul.
        layer.merge();
        assert!(layer.adapter.is_none());
        let merged: Vec<f32> = layer.forward(x).into_data().try_to_vec::<f32>().unwrap();
        assert_eq!(merged, vec![6.5, -0.5]);
    }
}

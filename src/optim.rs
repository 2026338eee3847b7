//! The optimizer step: AdamW with a global gradient-norm clip, a scheduled
//! learning rate, and skipping of non-finite updates.
//!
//! One [`Optimizer::step`] does what `torch.nn.utils.clip_grad_norm_` +
//! `optimizer.step()` do in verl's and TRL's actors:
//! 1. the global L2 norm over the gradients of all trainable parameters,
//!    `‖g‖ = sqrt(Σ_p Σ_i g_{p,i}²)`;
//! 2. if it is NaN or ±inf, nothing is touched (weights and AdamW moments
//!    stay as they were) and the outcome says so, for the trainer to log,
//!    count and stop after K in a row;
//! 3. otherwise every gradient is scaled by `min(1, max_norm / (‖g‖ + 1e-6))`
//!    (torch's coefficient, 1e-6 included) and Burn's AdamW steps with the
//!    learning rate the caller read from the [`Schedule`].
//!
//! Why not Burn's `GradientClipping::Norm`: it clips each parameter tensor
//! to the threshold on its own. That changes the direction of the update
//! (small tensors keep their gradient while large ones are cut) and never
//! yields the global norm, which is the `grad_norm` metric users compare
//! across frameworks. The global clip rescales all gradients by one factor.
//!
//! Frozen parameters (see [`freeze_vision`]) have no gradient: Burn skips
//! parameters that do not require one when it collects gradients, so they
//! count in neither the norm nor the update, and AdamW keeps no state for them.

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::{AdamWConfig, GradientsAccumulator, GradientsParams, ModuleOptimizer};
use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};
use std::path::Path;

use crate::config::rules::{Rules, Validate};
use crate::model::QwenVl;
use crate::schedule::{Schedule, ScheduleKind};

/// torch's `clip_grad_norm_` adds this to the norm before dividing.
const CLIP_EPS: f64 = 1e-6;

/// `[optim]`: AdamW, gradient clipping and the learning-rate schedule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OptimConfig {
    /// Peak learning rate (the paper's GRPO stage: 2e-6; SFT: 5e-6).
    pub lr: f64,
    /// Decoupled weight decay λ: each step multiplies weights by `1 − lr·λ`
    /// (torch `AdamW`; verl's actor default 0.01).
    pub weight_decay: f64,
    /// AdamW first-moment decay β₁.
    pub beta1: f64,
    /// AdamW second-moment decay β₂.
    pub beta2: f64,
    /// AdamW ε, added to `sqrt(v̂)` (torch's default 1e-8, not Burn's 1e-5).
    pub eps: f64,
    /// Global gradient-norm clip; 0 turns clipping off (the norm is still
    /// measured and reported).
    pub max_grad_norm: f64,
    /// `constant` or `warmup-cosine`.
    pub schedule: ScheduleKind,
    /// Fraction of the run spent in linear warmup (`warmup-cosine` only).
    pub warmup_ratio: f64,
    /// Floor of the cosine decay as a fraction of `lr` (`warmup-cosine` only).
    pub min_lr_ratio: f64,
}

impl Default for OptimConfig {
    fn default() -> Self {
        OptimConfig {
            lr: 2e-6,
            weight_decay: 0.01,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            max_grad_norm: 1.0,
            schedule: ScheduleKind::Constant,
            warmup_ratio: 0.0,
            min_lr_ratio: 0.0,
        }
    }
}

impl OptimConfig {
    /// The learning-rate schedule these settings describe.
    pub fn to_schedule(&self) -> Schedule {
        Schedule {
            kind: self.schedule,
            lr: self.lr,
            warmup_ratio: self.warmup_ratio,
            min_lr_ratio: self.min_lr_ratio,
        }
    }

    fn adamw(&self) -> AdamWConfig {
        // Burn's AdamW takes f32 hyper-parameters; its step is torch's
        // (decay `w·(1 − lr·λ)`, bias-corrected moments, ε outside the sqrt).
        AdamWConfig::new()
            .with_beta_1(self.beta1 as f32)
            .with_beta_2(self.beta2 as f32)
            .with_epsilon(self.eps as f32)
            .with_weight_decay(self.weight_decay as f32)
    }
}

impl Validate for OptimConfig {
    fn validate(&self, p: &str, rules: &mut Rules) {
        rules.check(
            self.lr.is_finite() && self.lr > 0.0,
            &format!("{p}.lr"),
            || format!("lr must be a positive number, got {}", self.lr),
        );
        rules.check(
            self.weight_decay.is_finite() && self.weight_decay >= 0.0,
            &format!("{p}.weight_decay"),
            || format!("weight_decay must be ≥ 0, got {}", self.weight_decay),
        );
        rules.check_keys(
            self.lr * self.weight_decay < 1.0,
            &[&format!("{p}.lr"), &format!("{p}.weight_decay")],
            || {
                format!(
                    "lr · weight_decay must be below 1 (each step multiplies the weights by \
                     1 − lr · weight_decay), got {} · {} = {}",
                    self.lr,
                    self.weight_decay,
                    self.lr * self.weight_decay
                )
            },
        );
        for (key, beta) in [("beta1", self.beta1), ("beta2", self.beta2)] {
            rules.check((0.0..1.0).contains(&beta), &format!("{p}.{key}"), || {
                format!("{key} must be in [0, 1), got {beta}")
            });
        }
        rules.check(
            self.eps.is_finite() && self.eps > 0.0,
            &format!("{p}.eps"),
            || format!("eps must be a positive number, got {}", self.eps),
        );
        rules.check(
            self.max_grad_norm.is_finite() && self.max_grad_norm >= 0.0,
            &format!("{p}.max_grad_norm"),
            || {
                format!(
                    "max_grad_norm must be ≥ 0 (0 turns clipping off), got {}",
                    self.max_grad_norm
                )
            },
        );
        rules.check(
            (0.0..1.0).contains(&self.warmup_ratio),
            &format!("{p}.warmup_ratio"),
            || format!("warmup_ratio must be in [0, 1), got {}", self.warmup_ratio),
        );
        rules.check(
            (0.0..=1.0).contains(&self.min_lr_ratio),
            &format!("{p}.min_lr_ratio"),
            || format!("min_lr_ratio must be in [0, 1], got {}", self.min_lr_ratio),
        );
        if self.schedule == ScheduleKind::Constant {
            for (key, value) in [
                ("warmup_ratio", self.warmup_ratio),
                ("min_lr_ratio", self.min_lr_ratio),
            ] {
                rules.check_keys(
                    value == 0.0,
                    &[&format!("{p}.{key}"), &format!("{p}.schedule")],
                    || {
                        format!(
                            "{key} = {value} has no effect with schedule = \"constant\"; \
                             set schedule = \"warmup-cosine\" or remove {key}"
                        )
                    },
                );
            }
        }
    }
}

/// What one update did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum StepOutcome {
    /// The weights moved.
    Applied(UpdateStats),
    /// The gradient norm was NaN or infinite: weights and optimizer state
    /// are untouched.
    SkippedNonFinite { grad_norm: f64 },
}

/// Metrics of an applied update.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct UpdateStats {
    /// Global L2 norm of the gradients before clipping.
    pub grad_norm: f64,
    /// The learning rate used.
    pub lr: f64,
    /// Whether the gradients were scaled down.
    pub clipped: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum OptimError {
    #[error("cannot read the gradient norm back from the device: {0}")]
    Readback(String),
    #[error("optimizer state {path}: {message}")]
    State {
        path: std::path::PathBuf,
        message: String,
    },
}

/// AdamW over a whole module, with a global clip and non-finite skipping.
#[derive(Clone)]
pub struct Optimizer {
    config: OptimConfig,
    adamw: ModuleOptimizer,
}

impl Optimizer {
    pub fn new(config: &OptimConfig) -> Self {
        Optimizer {
            config: config.clone(),
            adamw: config.adamw().init(),
        }
    }

    pub fn config(&self) -> &OptimConfig {
        &self.config
    }

    /// One update of `module` with `grads` at learning rate `lr`. Returns
    /// the (possibly) updated module and what happened.
    pub fn step<M: Module>(
        &mut self,
        module: M,
        mut grads: GradientsParams,
        lr: f64,
    ) -> Result<(M, StepOutcome), OptimError> {
        let grad_norm = global_grad_norm(&module, &grads)?;
        if !grad_norm.is_finite() {
            return Ok((module, StepOutcome::SkippedNonFinite { grad_norm }));
        }
        let clipped = clip_to_norm(&module, &mut grads, grad_norm, self.config.max_grad_norm);
        let module = self.adamw.step(lr, module, grads);
        Ok((
            module,
            StepOutcome::Applied(UpdateStats {
                grad_norm,
                lr,
                clipped,
            }),
        ))
    }

    /// Writes the AdamW moments and step counts (burnpack, keyed by
    /// parameter id — the weights must be saved with their ids too).
    pub fn save(&self, path: &Path) -> Result<(), OptimError> {
        self.adamw.save(path).map_err(|e| OptimError::State {
            path: path.to_path_buf(),
            message: e.to_string(),
        })
    }

    /// Reads the state [`save`](Self::save) wrote, replacing the current one.
    pub fn load(self, path: &Path) -> Result<Self, OptimError> {
        let adamw = self.adamw.load(path).map_err(|e| OptimError::State {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        Ok(Optimizer {
            config: self.config,
            adamw,
        })
    }
}

/// `sqrt(Σ g²)` over every gradient in `grads` that belongs to a parameter
/// of `module`. The per-tensor sums of squares stay on the device and are
/// summed there in f32 (as torch's fp32 norm does); one read-back per step.
/// A sum of squares beyond f32's range (norm ≳ 1.8e19) reads as infinite
/// and so counts as non-finite.
pub fn global_grad_norm<M: Module>(module: &M, grads: &GradientsParams) -> Result<f64, OptimError> {
    struct SumSquares<'a> {
        grads: &'a GradientsParams,
        parts: Vec<Tensor<1>>,
    }
    impl ModuleVisitor for SumSquares<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if let Some(g) = self.grads.get::<D>(param.id) {
                // [d1, …, dD] -> [1]
                self.parts.push(g.square().sum());
            }
        }
    }
    let mut visitor = SumSquares {
        grads,
        parts: Vec::new(),
    };
    module.visit(&mut visitor);
    if visitor.parts.is_empty() {
        return Ok(0.0);
    }
    let total: f32 = Tensor::cat(visitor.parts, 0)
        .sum()
        .try_into_scalar()
        .map_err(|e| OptimError::Readback(format!("{e:?}")))?;
    Ok(f64::from(total).sqrt())
}

/// Scales all gradients by `max_norm / (norm + 1e-6)` when that is below 1
/// (torch `clip_grad_norm_`); `max_norm = 0` disables clipping. Returns
/// whether it scaled.
pub fn clip_to_norm<M: Module>(
    module: &M,
    grads: &mut GradientsParams,
    norm: f64,
    max_norm: f64,
) -> bool {
    if max_norm <= 0.0 {
        return false;
    }
    let coef = max_norm / (norm + CLIP_EPS);
    if coef >= 1.0 {
        return false;
    }
    struct Scale<'a> {
        grads: &'a mut GradientsParams,
        coef: f64,
    }
    impl ModuleVisitor for Scale<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if let Some(g) = self.grads.remove::<D>(param.id) {
                self.grads.register(param.id, g.mul_scalar(self.coef));
            }
        }
    }
    module.visit(&mut Scale { grads, coef });
    true
}

/// Stops gradients to the vision tower (`model.visual`): its parameters no
/// longer require gradients, so they are neither updated nor counted in
/// the gradient norm, and the backward pass skips the tower.
pub fn freeze_vision(mut model: QwenVl) -> QwenVl {
    model.model.visual = model.model.visual.no_grad();
    model
}

/// Sums gradients over micro-batches so one optimizer step can cover a batch
/// that does not fit in memory at once. Gradients are *summed*: the caller
/// scales each micro-batch loss so the sum is the loss it wants (e.g. each
/// micro-batch's token sum divided by the whole batch's token count for a
/// token mean). Clipping happens once, on the sum, when the summed
/// gradients go to [`Optimizer::step`] — as with torch's accumulation.
pub struct GradAccumulator<M> {
    inner: GradientsAccumulator<M>,
    micro_batches: usize,
}

impl<M: Module> Default for GradAccumulator<M> {
    fn default() -> Self {
        GradAccumulator {
            inner: GradientsAccumulator::new(),
            micro_batches: 0,
        }
    }
}

impl<M: Module> GradAccumulator<M> {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one micro-batch's gradients.
    pub fn add(&mut self, module: &M, grads: GradientsParams) {
        self.inner.accumulate(module, grads);
        self.micro_batches += 1;
    }

    /// Micro-batches added since the last [`take`](Self::take).
    pub fn micro_batches(&self) -> usize {
        self.micro_batches
    }

    /// The summed gradients; the accumulator starts over.
    pub fn take(&mut self) -> GradientsParams {
        self.micro_batches = 0;
        self.inner.grads()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::rules::Rules;
    use burn::module::ParamId;
    use burn::tensor::{Device, TensorData};

    /// Two parameters, so "global" and "per tensor" differ.
    #[derive(Module, Debug)]
    struct Two {
        a: Param<Tensor<1>>,
        b: Param<Tensor<1>>,
    }

    fn two(device: &Device) -> Two {
        Two {
            a: Param::from_data([1.0f32, -2.0], device),
            b: Param::from_data([0.5f32], device),
        }
    }

    /// loss = a·ca + b·cb, so the gradients are exactly ca and cb.
    /// The gradient of parameter `id` as host values.
    fn grad_values(g: &GradientsParams, id: ParamId) -> Vec<f32> {
        g.get::<1>(id).unwrap().into_data().try_to_vec().unwrap()
    }

    fn grads_of(model: &Two, ca: [f32; 2], cb: [f32; 1], device: &Device) -> GradientsParams {
        let ca = Tensor::<1>::from_data(TensorData::from(ca), device);
        let cb = Tensor::<1>::from_data(TensorData::from(cb), device);
        let loss = (model.a.val() * ca).sum() + (model.b.val() * cb).sum();
        GradientsParams::from_grads(loss.backward(), model)
    }

    fn vals(model: &Two) -> (Vec<f32>, Vec<f32>) {
        (
            model.a.val().into_data().try_to_vec().unwrap(),
            model.b.val().into_data().try_to_vec().unwrap(),
        )
    }

    fn config(max_grad_norm: f64) -> OptimConfig {
        OptimConfig {
            lr: 0.1,
            max_grad_norm,
            ..OptimConfig::default()
        }
    }

    #[test]
    fn global_norm_and_torch_clip_coefficient() {
        let d = crate::device::test_device().autodiff();
        let m = two(&d);
        // ‖(3, 0, 4)‖ = 5.
        let mut g = grads_of(&m, [3.0, 0.0], [4.0], &d);
        let norm = global_grad_norm(&m, &g).unwrap();
        assert!((norm - 5.0).abs() < 1e-6, "{norm}");
        assert!(clip_to_norm(&m, &mut g, norm, 1.0));
        let coef = 1.0 / (5.0 + CLIP_EPS);
        let (ga, gb) = (grad_values(&g, m.a.id), grad_values(&g, m.b.id));
        assert!((f64::from(ga[0]) - 3.0 * coef).abs() < 1e-7);
        assert_eq!(ga[1], 0.0);
        assert!((f64::from(gb[0]) - 4.0 * coef).abs() < 1e-7);
        // Clipped to ≈ max_norm as a whole (per-tensor clipping would leave
        // each tensor at ≤ 1 and the total at √2).
        let after = global_grad_norm(&m, &g).unwrap();
        assert!((after - 1.0).abs() < 1e-6, "{after}");
        // Below the threshold, or with clipping off, nothing is scaled.
        assert!(!clip_to_norm(&m, &mut g, after, 2.0));
        assert!(!clip_to_norm(&m, &mut g, 5.0, 0.0));
    }

    #[test]
    fn step_reports_norm_lr_and_clipping() {
        let d = crate::device::test_device().autodiff();
        let m = two(&d);
        let g = grads_of(&m, [3.0, 0.0], [4.0], &d);
        let before = vals(&m);
        let mut opt = Optimizer::new(&config(1.0));
        let (m, outcome) = opt.step(m, g, 0.1).unwrap();
        let StepOutcome::Applied(stats) = outcome else {
            panic!("{outcome:?}")
        };
        assert!((stats.grad_norm - 5.0).abs() < 1e-6);
        assert_eq!(stats.lr, 0.1);
        assert!(stats.clipped);
        // AdamW's first step: m̂/(sqrt(v̂) + ε) = g/(|g| + ε) ≈ sign(g), so each
        // weight becomes w·(1 − lr·λ) − lr·sign(g) (0 for a zero gradient).
        let decay = 1.0 - 0.1 * 0.01;
        let after = vals(&m);
        let expected = (
            vec![before.0[0] * decay - 0.1, before.0[1] * decay],
            vec![before.1[0] * decay - 0.1],
        );
        for (x, e) in after
            .0
            .iter()
            .chain(&after.1)
            .zip(expected.0.iter().chain(&expected.1))
        {
            assert!((x - e).abs() < 1e-6, "{after:?} vs {expected:?}");
        }
    }

    #[test]
    fn a_non_finite_gradient_skips_without_touching_weights_or_state() {
        let d = crate::device::test_device().autodiff();
        let cfg = config(1.0);
        // Reference: two finite steps.
        let mut ref_opt = Optimizer::new(&cfg);
        let m = two(&d);
        let g = grads_of(&m, [1.0, 2.0], [3.0], &d);
        let (m, _) = ref_opt.step(m, g, 0.1).unwrap();
        let g = grads_of(&m, [-1.0, 0.5], [2.0], &d);
        let (reference, _) = ref_opt.step(m, g, 0.1).unwrap();

        // The same with a NaN step in between.
        let mut opt = Optimizer::new(&cfg);
        let m = two(&d);
        let g = grads_of(&m, [1.0, 2.0], [3.0], &d);
        let (m, _) = opt.step(m, g, 0.1).unwrap();
        let before = vals(&m);
        let g = grads_of(&m, [f32::NAN, 0.0], [1.0], &d);
        let (m, outcome) = opt.step(m, g, 0.1).unwrap();
        assert!(
            matches!(outcome, StepOutcome::SkippedNonFinite { grad_norm } if grad_norm.is_nan())
        );
        assert_eq!(vals(&m), before, "weights untouched");
        let g = grads_of(&m, [f32::INFINITY, 0.0], [1.0], &d);
        let (m, outcome) = opt.step(m, g, 0.1).unwrap();
        assert!(matches!(outcome, StepOutcome::SkippedNonFinite { .. }));
        let g = grads_of(&m, [-1.0, 0.5], [2.0], &d);
        let (m, _) = opt.step(m, g, 0.1).unwrap();
        // Bit-identical to never having seen the bad steps: the moments and
        // AdamW's step count were not advanced.
        assert_eq!(vals(&m), vals(&reference));
    }

    #[test]
    fn accumulated_micro_batches_sum_their_gradients() {
        let d = crate::device::test_device().autodiff();
        let m = two(&d);
        let mut acc = GradAccumulator::new();
        acc.add(&m, grads_of(&m, [1.0, 2.0], [3.0], &d));
        acc.add(&m, grads_of(&m, [0.5, -1.0], [1.0], &d));
        assert_eq!(acc.micro_batches(), 2);
        let g = acc.take();
        assert_eq!(acc.micro_batches(), 0);
        let (ga, gb) = (grad_values(&g, m.a.id), grad_values(&g, m.b.id));
        assert_eq!(ga, vec![1.5, 1.0]);
        assert_eq!(gb, vec![4.0]);
    }

    #[test]
    fn frozen_vision_gets_no_gradient_and_does_not_move() {
        use crate::default_model::tiny_model;
        use crate::model::Batch;
        let d = crate::device::test_device().autodiff();
        let model = freeze_vision(tiny_model(3, &d).unwrap());
        let batch = Batch::text(vec![vec![1025, 20, 30, 40, 1026]]);
        let loss = model.forward(&batch, &d).unwrap().mean();
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        let visual = model.model.visual.num_params();
        let total = model.num_params();
        // Only the language model's parameters have gradients.
        struct Count<'a>(&'a GradientsParams, usize);
        impl ModuleVisitor for Count<'_> {
            fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
                if let Some(g) = self.0.get::<D>(p.id) {
                    self.1 += g.shape().num_elements();
                }
            }
        }
        let mut count = Count(&grads, 0);
        model.visit(&mut count);
        assert_eq!(count.1, total - visual);
        let vision_before = model.model.visual.clone();
        let text_before = model.model.language_model.norm.weight.val();
        let mut opt = Optimizer::new(&config(1.0));
        let (model, _) = opt.step(model, grads, 1e-2).unwrap();
        let same = |a: Tensor<2>, b: Tensor<2>| {
            a.into_data().try_to_vec::<f32>().unwrap() == b.into_data().try_to_vec::<f32>().unwrap()
        };
        assert!(same(
            vision_before.patch_embed.proj.weight.val(),
            model.model.visual.patch_embed.proj.weight.val()
        ));
        let text_after = model.model.language_model.norm.weight.val();
        assert_ne!(
            text_before.into_data().try_to_vec::<f32>().unwrap(),
            text_after.into_data().try_to_vec::<f32>().unwrap()
        );
    }

    #[test]
    fn config_rules_state_the_numbers() {
        let bad = OptimConfig {
            lr: 0.0,
            beta2: 1.0,
            max_grad_norm: -1.0,
            warmup_ratio: 0.1,
            ..OptimConfig::default()
        };
        let mut rules = Rules::default();
        bad.validate("optim", &mut rules);
        let v = rules.into_violations();
        let text: Vec<String> = v
            .iter()
            .map(|v| format!("{}: {}", v.keys.join("+"), v.message))
            .collect();
        assert_eq!(v.len(), 4, "{text:#?}");
        assert!(text[0].starts_with("optim.lr: lr must be a positive number, got 0"));
        assert!(
            text.iter()
                .any(|t| t.contains("beta2 must be in [0, 1), got 1"))
        );
        assert!(text.iter().any(|t| t.contains("max_grad_norm must be ≥ 0")));
        assert!(text.iter().any(|t| t.contains(
            "optim.warmup_ratio+optim.schedule: warmup_ratio = 0.1 has no effect with schedule"
        )));
        let mut ok = Rules::default();
        OptimConfig::default().validate("optim", &mut ok);
        assert!(ok.into_violations().is_empty());
        let cosine = OptimConfig {
            schedule: ScheduleKind::WarmupCosine,
            warmup_ratio: 0.03,
            ..OptimConfig::default()
        };
        assert_eq!(cosine.to_schedule().warmup_steps(100), 3);
        let parsed: OptimConfig =
            toml::from_str("lr = 5e-6\nschedule = \"warmup-cosine\"\nwarmup_ratio = 0.03").unwrap();
        assert_eq!(parsed, OptimConfig { lr: 5e-6, ..cosine });
        assert!(toml::from_str::<OptimConfig>("learning_rate = 1.0").is_err());
    }
}

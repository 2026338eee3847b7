//! The model a trainer trains, its reference, and what it leaves behind —
//! the same for GRPO and SFT, full fine-tuning or LoRA.
//!
//! With a `[lora]` section the loaded model (base, with any `[model]
//! adapter` already merged into it) is frozen and fresh adapters go on the
//! projections the section targets; the reference policy is then the same
//! model with the adapters off, sharing every base tensor. Without one,
//! every parameter trains and the reference is the starting weights.

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::{Device, Tensor};

use crate::model::{LoraConfig, QwenVl};
use crate::rng::Rng;

/// The model to train from `loaded`: with `lora`, a frozen base with fresh
/// adapters drawn from `seed` (a stream of its own, so no other random
/// choice of the run moves); else `loaded` itself.
pub fn trainable(loaded: QwenVl, lora: Option<&LoraConfig>, seed: u64) -> QwenVl {
    let Some(cfg) = lora else {
        return loaded;
    };
    let (model, adapted) = loaded.with_fresh_adapters(cfg, &mut Rng::stream(seed, "lora"));
    let (trained, total) = (adapter_parameters(&model), parameters(&model));
    log::info!(
        "lora: rank {} α {} on {} projections: {trained} trainable parameters of {total} ({:.2} %)",
        cfg.rank,
        cfg.alpha,
        adapted.len(),
        100.0 * trained as f64 / total.max(1) as f64
    );
    model
}

/// The frozen reference of a run that starts from `start` (on the plain
/// device): `start` with its adapters off — for LoRA the shared base, for
/// full fine-tuning a snapshot of the starting weights.
pub fn reference_of(start: &QwenVl) -> QwenVl {
    start.valid().without_adapters()
}

/// Seeds the training device's generator, which draws the adapters'
/// dropout masks, from the run's checkpointed `rng` at the start of an
/// update, so a resumed run draws the same masks. Only a run with LoRA
/// dropout draws from `rng` here: every other run's streams stay as they
/// were.
pub fn seed_dropout(lora: Option<&LoraConfig>, device: &Device, rng: &mut Rng) {
    if lora.is_some_and(|l| l.dropout > 0.0) {
        device.seed(rng.next_u64());
    }
}

/// Values in every float parameter of `model`.
pub fn parameters(model: &QwenVl) -> usize {
    struct Count(usize);
    impl ModuleVisitor for Count {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            self.0 += param.lazy_shape().num_elements();
        }
    }
    let mut count = Count(0);
    model.visit(&mut count);
    count.0
}

/// Values in the adapter factors of `model`.
pub fn adapter_parameters(model: &QwenVl) -> usize {
    let mut model = model.clone();
    model
        .projections_mut()
        .into_iter()
        .filter_map(|(_, p)| p.adapter.as_ref())
        .map(|a| a.lora_a.lazy_shape().num_elements() + a.lora_b.lazy_shape().num_elements())
        .sum()
}

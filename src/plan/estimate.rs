//! The memory plan of one run on one device: named line items in bytes,
//! grouped by when they are alive, and the total.
//!
//! A GRPO step runs its stages one after another (`grpo/trainer.rs`), and
//! each frees what it allocated before the next starts, so the device has
//! to hold what lives through the whole step plus the largest stage:
//!
//! ```text
//! total = persistent + widening + max(rollout, log-probs, update, optimizer)
//! ```
//!
//! - **persistent**: the weights, the LoRA masters, AdamW's moments, the
//!   reference model, the step's pixel patches, a runtime reserve;
//! - **rollout** (`gen`): the KV cache and the prefill's peak;
//! - **log-probs** (`old_log_prob`, `ref`): the reference (and old policy)
//!   teacher-forced over all P·G rollouts at once, without a graph;
//! - **update** (`update_actor`): one mini-batch's forward activations
//!   and logits, and the gradients;
//! - **optimizer**: the gradients and AdamW's temporaries.
//!
//! SFT has only the update and the optimizer. The estimator is pure: the
//! input is a [`PlanInput`], the output a [`Plan`].

use super::activations::{
    DecoderSaved, Pass, VisionSaved, decoder_peak_no_grad, decoder_saved, kv_token_bytes,
    vision_peak_no_grad, vision_saved,
};
use super::input::{Mode, PlanInput, Stage, WeightDtype};
use super::kv_cache::{RolloutCache, rollout_cache};
use super::logits::{
    LOGITS_CHUNK, chunk_positions, no_grad_logits, sft_logits, update_logits_chunked,
};
use super::params::{LoraCounts, ParamCounts, lora_counts, param_counts};

/// Device memory no tensor accounts for: the CUDA context, kernels, the
/// allocator's slack. An assumption; set it from a measured idle process.
pub const RUNTIME_RESERVE: u64 = 1 << 30;

/// Parameter-sized f32 temporaries of one AdamW update of one tensor
/// (new first and second moments before the old are dropped, and the
/// step): the optimizer updates tensor by tensor, so the largest tensor
/// sets them.
pub const ADAM_TEMPORARIES: u64 = 3;

/// The stages a plan's total takes its largest from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Rollout,
    LogProbs,
    Update,
    Optimizer,
}

impl Phase {
    pub fn name(self) -> &'static str {
        match self {
            Phase::Rollout => "rollout",
            Phase::LogProbs => "log-probs",
            Phase::Update => "update",
            Phase::Optimizer => "optimizer step",
        }
    }
}

/// What lives through the whole step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Persistent {
    /// The model's weights: f32 masters (full fine-tuning) or the frozen
    /// base in its dtype (LoRA): `params · bytes`.
    pub weights: u64,
    pub weights_dtype: WeightDtype,
    /// The LoRA factors' f32 masters, `4·Σ r·(in + out)` (full
    /// fine-tuning: the weights are the masters).
    pub masters: u64,
    /// AdamW's first and second moments, `2·4·trainable`.
    pub adam: u64,
    /// The frozen reference policy: a second full copy in
    /// `reference_dtype` (full fine-tuning, or any run with
    /// `grpo.reference`); 0 for LoRA, whose reference is the base with the
    /// adapters off, and for SFT.
    pub reference: u64,
    pub reference_dtype: WeightDtype,
    /// The step's prompts' pixel patches (f32), held from the rollouts to
    /// the update: `prompts · patches · C·T·p² · 4`.
    pub pixels: u64,
    /// [`RUNTIME_RESERVE`].
    pub runtime: u64,
}

impl Persistent {
    pub fn total(&self) -> u64 {
        self.weights + self.masters + self.adam + self.reference + self.pixels + self.runtime
    }
}

/// `gen`: P prompts prefilled once, P·G rows decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RolloutPhase {
    pub cache: RolloutCache,
    /// The prefill's peak: the larger of the vision tower's over the P
    /// videos and one decoder layer's over the P prompts, without a graph.
    pub prefill: u64,
    /// One decode step's peak (a layer over the P·G rows, and the `[P·G, V]`
    /// logits).
    pub decode: u64,
}

impl RolloutPhase {
    pub fn total(&self) -> u64 {
        self.cache.stored + self.prefill.max(self.decode)
    }
}

/// `old_log_prob` / `ref`: the step's P·G completions teacher-forced
/// after their prompts in one batch, without a graph
/// (`grpo/forcing.rs`); the old-policy pass, when it runs, is the same
/// size and runs after the reference's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogProbPhase {
    /// The pass's cache: `P·(L + W − 1) + P·G·(W − 1)` positions per layer.
    pub cache: u64,
    /// The prompt prefill's peak (as the rollouts').
    pub prefill: u64,
    /// One layer's peak over the P·G completions (`W − 1` queries over
    /// `L + W − 1` keys).
    pub completions: u64,
    /// `[P·G, W, V]` logits and their log-softmax.
    pub logits: u64,
}

impl LogProbPhase {
    pub fn total(&self) -> u64 {
        self.cache + self.prefill.max(self.completions).max(self.logits)
    }
}

/// `update_actor`: one mini-batch forward and backward.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpdatePhase {
    /// Rows (completions) of the mini-batch.
    pub rows: u64,
    /// Prompt rows it runs (one per whole group, else one per row).
    pub prompts: u64,
    /// Logit positions per row (the completion width W).
    pub positions: u64,
    /// The trainable parameters' f32 gradients (twice with SFT gradient
    /// accumulation: the sum so far and the micro-batch's).
    pub gradients: u64,
    pub decoder: DecoderSaved,
    /// The vision tower's saved activations for the mini-batch's videos,
    /// when it trains.
    pub vision: Option<VisionSaved>,
    /// The frozen vision tower's peak without a graph (when it does not
    /// train).
    pub vision_frozen: u64,
    pub logits: u64,
    /// What the loss path would hold computed in chunks of
    /// [`super::logits::LOGITS_CHUNK`] positions (not counted).
    pub logits_chunked: u64,
    /// Whether the total assumes per-layer activation checkpointing.
    pub checkpointing: bool,
    /// Whether the backward pass reaches the prompt pass last (GRPO).
    pub prompt_pass_last: bool,
}

impl UpdatePhase {
    /// The saved activations (decoder, K/V, outside the layers, vision).
    pub fn saved(&self) -> u64 {
        let vision = self.vision.map_or(0, |v| {
            if self.checkpointing {
                v.checkpointed
            } else {
                v.saved
            }
        });
        vision
            + if self.checkpointing {
                self.decoder.checkpointed
            } else {
                self.decoder.total()
            }
    }

    /// The saved activations with checkpointing (what turning it on gives).
    pub fn saved_checkpointed(&self) -> u64 {
        self.decoder.checkpointed + self.vision.map_or(0, |v| v.checkpointed)
    }

    /// The end of the forward pass: everything saved, and the loss path.
    pub fn forward_end(&self) -> u64 {
        self.saved() + self.logits
    }

    /// The backward pass once the completions are done (GRPO): every
    /// layer's gradients exist, the prompt pass's activations and the
    /// vision tower's are still kept. (With checkpointing: the gradients
    /// and all checkpoints, an upper bound.)
    pub fn backward(&self) -> u64 {
        let vision = self.vision.map_or(0, |v| v.saved);
        let rest = if self.checkpointing {
            self.saved()
        } else if self.prompt_pass_last {
            self.decoder.prompt_part + vision
        } else {
            vision
        };
        self.gradients + rest
    }

    pub fn total(&self) -> u64 {
        self.vision_frozen
            .max(self.forward_end())
            .max(self.backward())
    }
}

/// AdamW's step: the gradients and the temporaries of the largest tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OptimizerPhase {
    pub gradients: u64,
    /// [`ADAM_TEMPORARIES`]` · 4 · largest trainable tensor`.
    pub temporaries: u64,
}

impl OptimizerPhase {
    pub fn total(&self) -> u64 {
        self.gradients + self.temporaries
    }
}

/// One column of a memory plan.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub mode: Mode,
    pub stage: Stage,
    pub params: ParamCounts,
    /// The adapters (LoRA plans).
    pub lora: Option<LoraCounts>,
    pub trainable: u64,
    /// Bytes per activation element (the compute dtype's).
    pub compute_bytes: u64,
    pub persistent: Persistent,
    pub rollout: Option<RolloutPhase>,
    pub logprobs: Option<LogProbPhase>,
    pub update: UpdatePhase,
    pub optimizer: OptimizerPhase,
    /// A 16-bit model on a backend that widens matmul operands to f32 on
    /// every call (`flex`): the largest weight (the LM head / tied
    /// embedding table, `V × H`) exists in f32 for the length of its
    /// matmul, in every stage — `4 · largest tensor`. 0 elsewhere.
    pub widening: u64,
    /// The stage the total takes its largest from.
    pub peak: Phase,
    /// Bytes per device.
    pub total: u64,
}

impl Plan {
    /// Every stage with its size, in step order.
    pub fn phases(&self) -> Vec<(Phase, u64)> {
        let mut out = Vec::new();
        if let Some(r) = &self.rollout {
            out.push((Phase::Rollout, r.total()));
        }
        if let Some(l) = &self.logprobs {
            out.push((Phase::LogProbs, l.total()));
        }
        out.push((Phase::Update, self.update.total()));
        out.push((Phase::Optimizer, self.optimizer.total()));
        out
    }

    pub fn fits(&self, device_bytes: u64) -> bool {
        self.total <= device_bytes
    }
}

/// The plan of `input`'s run in `mode`.
pub fn estimate(input: &PlanInput, mode: Mode) -> Plan {
    let m = &input.model;
    let t = &m.text;
    let n = |x: usize| x as u64;
    let params = param_counts(m);
    let lora = lora_counts(m, &input.lora);
    let compute = match mode {
        Mode::Full => WeightDtype::F32,
        Mode::Lora => input.frozen_dtype,
    };
    let a = compute.bytes();
    let (trainable, largest, adapters, vision_adapters) = match mode {
        Mode::Full => {
            let frozen = if input.freeze_vision {
                params.vision
            } else {
                0
            };
            (params.total() - frozen, params.largest_tensor, 0, 0)
        }
        Mode::Lora => (
            lora.params,
            lora.largest_tensor,
            n(lora.per_decoder_layer),
            n(lora.per_vision_block),
        ),
    };
    let rank = n(input.lora.rank);
    let vision_trains = match mode {
        Mode::Full => !input.freeze_vision,
        Mode::Lora => vision_adapters > 0,
    };

    let (p, g, w) = (
        n(input.prompts_per_step),
        n(input.group_size),
        n(input.max_new_tokens),
    );
    let shape = &input.prompt;
    let chunk = n(input.logit_chunk);
    let l = n(shape.tokens());
    let vocab = n(t.vocab_size);
    let levels = n(m.vision.deepstack_visual_indexes.len());
    let patch_bytes = n(shape.patches * m.vision.patch_dim()) * 4;
    let grpo = input.stage == Stage::Grpo;

    // Full fine-tuning's reference is the starting actor's snapshot, in the
    // masters' f32 (`trainable::reference_of`); `grpo.reference` is loaded
    // on its own, in the frozen dtype.
    let (reference, reference_dtype) = if grpo && input.separate_reference {
        (
            params.total() * input.frozen_dtype.bytes(),
            input.frozen_dtype,
        )
    } else if grpo && mode == Mode::Full {
        (params.total() * 4, WeightDtype::F32)
    } else {
        (0, input.frozen_dtype)
    };
    let (update_prompts, _) = input.update_prompts();
    let step_prompts = if grpo { p } else { n(update_prompts) };
    let persistent = Persistent {
        weights: params.total()
            * match mode {
                Mode::Full => 4,
                Mode::Lora => input.frozen_dtype.bytes(),
            },
        weights_dtype: match mode {
            Mode::Full => WeightDtype::F32,
            Mode::Lora => input.frozen_dtype,
        },
        masters: if mode == Mode::Lora { 4 * trainable } else { 0 },
        adam: 8 * trainable,
        reference,
        reference_dtype,
        pixels: step_prompts * patch_bytes,
        runtime: RUNTIME_RESERVE,
    };

    let prefill =
        vision_peak_no_grad(m, a, shape, p).max(decoder_peak_no_grad(t, a, p, l, l, levels));
    let (rollout, logprobs) = if grpo {
        let rollout = RolloutPhase {
            cache: rollout_cache(t, a, p, g, l, w),
            prefill,
            decode: decoder_peak_no_grad(t, a, p * g, 1, l + w, 0) + p * g * vocab * 4,
        };
        let extend = w.saturating_sub(1);
        // `grpo.micro_batch_size` rows (whole groups) at a time, else all.
        let rows = n(input.logprob_rows());
        let prompts = (rows / g.max(1)).max(1);
        let logprobs = LogProbPhase {
            cache: n(t.num_hidden_layers)
                * kv_token_bytes(t, a)
                * (prompts * (l + extend) + rows * extend),
            prefill: vision_peak_no_grad(m, a, shape, prompts)
                .max(decoder_peak_no_grad(t, a, prompts, l, l, levels)),
            completions: decoder_peak_no_grad(t, a, rows, extend, l + extend, 0),
            logits: no_grad_logits(rows, chunk_positions(w, chunk), vocab),
        };
        (Some(rollout), Some(logprobs))
    } else {
        (None, None)
    };

    let rows = n(input.pass_rows());
    let prompts = n(update_prompts);
    let (pass, logits, logits_chunked) = if grpo {
        let extend = w.saturating_sub(1);
        let pass = Pass {
            prompts,
            prompt_len: l,
            capacity: l + extend,
            rows,
            extend,
        };
        (
            pass,
            update_logits_chunked(rows, w, vocab, chunk),
            update_logits_chunked(rows, w, vocab, LOGITS_CHUNK),
        )
    } else {
        let pass = Pass {
            prompts,
            prompt_len: l + w,
            capacity: l + w,
            rows: 0,
            extend: 0,
        };
        (
            pass,
            sft_logits(rows, chunk_positions(w, chunk), vocab, a),
            sft_logits(rows, w.min(LOGITS_CHUNK), vocab, a),
        )
    };
    // A gradient summed over passes is held beside the pass's own.
    let accumulates = if grpo {
        input.pass_rows() < input.update_rows
    } else {
        input.grad_accum > 1
    };
    let accumulated = if accumulates { 2 } else { 1 };
    let gradients = accumulated * 4 * trainable;
    let vision = vision_trains.then(|| {
        let one = vision_saved(m, a, shape, (vision_adapters, rank));
        VisionSaved {
            saved: prompts * one.saved,
            checkpointed: prompts * one.checkpointed,
        }
    });
    let update = UpdatePhase {
        rows,
        prompts,
        positions: w,
        gradients,
        decoder: decoder_saved(t, a, (adapters, rank), &pass, rows * w),
        vision,
        vision_frozen: if vision_trains {
            0
        } else {
            vision_peak_no_grad(m, a, shape, prompts)
        },
        logits,
        logits_chunked,
        checkpointing: input.checkpointing,
        prompt_pass_last: grpo,
    };
    let optimizer = OptimizerPhase {
        gradients: 4 * trainable,
        temporaries: ADAM_TEMPORARIES * 4 * largest,
    };

    let mut plan = Plan {
        mode,
        stage: input.stage,
        params,
        lora: (mode == Mode::Lora).then_some(lora),
        trainable,
        compute_bytes: a,
        persistent,
        rollout,
        logprobs,
        update,
        optimizer,
        widening: if input.widens_half_matmuls && a < 4 {
            4 * params.largest_tensor
        } else {
            0
        },
        peak: Phase::Update,
        total: 0,
    };
    let (peak, largest_phase) =
        plan.phases()
            .into_iter()
            .fold((Phase::Update, 0), |best, (phase, bytes)| {
                if bytes > best.1 { (phase, bytes) } else { best }
            });
    plan.peak = peak;
    plan.total = plan.persistent.total() + plan.widening + largest_phase;
    plan
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::plan::params::param_counts;

    use crate::plan::input::tiny_input;

    #[test]
    fn persistent_items_of_the_tiny_model_by_hand() {
        let input =
            tiny_input("[grpo]\nprompts_per_step = 2\ngroup_size = 4\nmax_new_tokens = 8\n");
        let total = param_counts(&input.model).total();
        let full = estimate(&input, Mode::Full);
        assert_eq!(full.trainable, total);
        assert_eq!(full.persistent.weights, 4 * total);
        assert_eq!(full.persistent.adam, 8 * total);
        assert_eq!(full.persistent.masters, 0);
        // The trainer keeps a frozen copy of the starting actor.
        assert_eq!(full.persistent.reference, 4 * total);
        // 64 frames of 96 × 64 in a budget of 2048: 3 × 2 cells, 32 groups,
        // 192 tokens, 768 patches of 1536 values, for 2 prompts.
        assert_eq!(input.prompt.visual_tokens, 192);
        assert_eq!(full.persistent.pixels, 2 * 768 * 1536 * 4);
        assert_eq!(full.optimizer.gradients, 4 * total);
        // The largest tensor is the 1050 × 128 embedding table.
        assert_eq!(full.optimizer.temporaries, 3 * 4 * 1050 * 128);

        let lora = estimate(&input, Mode::Lora);
        let adapters = lora.lora.unwrap().params;
        assert_eq!(lora.trainable, adapters);
        assert_eq!(lora.persistent.weights, 4 * total); // f32 checkpoint
        assert_eq!(lora.persistent.masters, 4 * adapters);
        assert_eq!(lora.persistent.reference, 0);
        assert!(lora.total < full.total);
    }

    #[test]
    fn the_rollout_cache_shares_the_prompt() {
        let input =
            tiny_input("[grpo]\nprompts_per_step = 2\ngroup_size = 4\nmax_new_tokens = 8\n");
        let plan = estimate(&input, Mode::Full);
        let l = input.prompt.tokens() as u64;
        let rollout = plan.rollout.unwrap();
        // 4 layers × 2 KV heads × 32 × 2 × 4 bytes = 2048 per position.
        assert_eq!(rollout.cache.stored, 2048 * (2 * (l + 8) + 8 * 8));
        let logprobs = plan.logprobs.unwrap();
        assert_eq!(logprobs.cache, 2048 * (2 * (l + 7) + 8 * 7));
        assert_eq!(logprobs.logits, 2 * 8 * 8 * 1050 * 4);
        assert_eq!(plan.update.logits, 4 * 8 * 8 * 1050 * 4);
        assert_eq!((plan.update.rows, plan.update.prompts), (8, 2));
    }

    #[test]
    fn the_total_is_persistent_plus_the_largest_phase() {
        let input = tiny_input("");
        for mode in [Mode::Full, Mode::Lora] {
            let plan = estimate(&input, mode);
            let largest = plan.phases().iter().map(|p| p.1).max().unwrap();
            assert_eq!(plan.total, plan.persistent.total() + largest);
            let peak = plan.phases().iter().find(|p| p.1 == largest).unwrap().0;
            assert_eq!(plan.peak, peak);
        }
    }

    #[test]
    fn freezing_the_tower_trains_the_decoder_only() {
        let input = tiny_input("[grpo]\nfreeze_vision = true\n");
        let plan = estimate(&input, Mode::Full);
        assert_eq!(plan.trainable, plan.params.text);
        assert!(plan.update.vision.is_none() && plan.update.vision_frozen > 0);
        let trained = estimate(&tiny_input(""), Mode::Full);
        assert!(trained.update.vision.is_some());
        assert!(plan.total < trained.total);
    }

    #[test]
    fn checkpointing_and_smaller_updates_shrink_the_update() {
        let input = tiny_input("[grpo]\nprompts_per_step = 4\n");
        let base = estimate(&input, Mode::Full);
        let mut ckpt = input.clone();
        ckpt.checkpointing = true;
        let with = estimate(&ckpt, Mode::Full);
        assert!(with.update.saved() < base.update.saved());
        assert_eq!(with.update.saved(), base.update.saved_checkpointed());
        let mut small = input.clone();
        small.update_rows = 8;
        let smaller = estimate(&small, Mode::Full);
        assert_eq!(smaller.update.prompts, 1);
        assert!(smaller.update.saved() < base.update.saved());
    }

    #[test]
    fn sft_has_no_rollouts_and_no_reference() {
        let mut input = tiny_input("[sft]\nbatch = 4\ngrad_accum = 2\n");
        input.stage = Stage::Sft;
        input.update_rows = 4;
        let plan = estimate(&input, Mode::Full);
        assert!(plan.rollout.is_none() && plan.logprobs.is_none());
        assert_eq!(plan.persistent.reference, 0);
        assert_eq!(plan.update.gradients, 2 * 4 * plan.trainable);
        assert_eq!(plan.update.logits, 3 * 4 * 64 * 1050 * 4);
        assert_eq!(plan.phases().len(), 2);
    }
}

//! `[grpo]`: every knob of the GRPO stage, flat as a user writes it, and
//! the typed component configs built from it.

use super::advantage::{AdvantageConfig, AdvantageScale};
use super::loss::{KlEstimator, LossAggregation, PolicyLossConfig, PolicyLossError};
use crate::config::rules::{Rules, Validate};
use crate::data::synth::SynthConfig;
use crate::reward::{AccuracyReward, DEFAULT_ACCURACY_SIGMA, RewardConfig};
use crate::rollout::RolloutConfig;
use crate::sampling::SamplingConfig;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Where the KL to the reference enters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KlPlacement {
    /// β·KL_t added to the per-token loss (GRPO, DeepSeekMath).
    #[default]
    Loss,
    /// β·KL(sequence) subtracted from the reward before advantages (PPO
    /// style, verl `use_kl_in_reward`).
    Reward,
}

/// What happens to groups whose rewards are all equal (σ_g = 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ZeroStd {
    /// Keep them with A = 0: they still carry the KL term.
    #[default]
    Keep,
    /// Leave them out of the update: the step trains on fewer rollouts.
    Filter,
    /// Leave them out and draw further batches until `prompts_per_step`
    /// groups with distinct rewards are collected (DAPO's dynamic
    /// sampling), at most `refill_batches` more per step.
    Refill,
}

/// How the loss is aggregated, as written in the config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Aggregation {
    #[default]
    TokenMean,
    SeqMeanTokenMean,
    /// Dr. GRPO: normalised by `max_new_tokens`.
    SeqMeanTokenSumNorm,
}

/// `[grpo] logit_chunk`'s default: 256 positions, `[rows, 256, V]` logits
/// (8 rows of a 151,936-word vocabulary: 1.2 GB in f32, against 5 GB for a
/// 1024-token completion at once); completions of up to 256 tokens (the
/// default `max_new_tokens` is 64) take the one-shot path.
pub const DEFAULT_LOGIT_CHUNK: usize = 256;

/// `[grpo]` settings. Defaults are the paper's where it gives them
/// (G = 8, λ = 0.5, 32 steps) and verl/TRL's otherwise; `prompts_per_step`
/// is small by default so the demo runs on a CPU (the paper: 32 × 8 = 256
/// rollouts per step).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GrpoConfig {
    /// GRPO's own data set (the paper's RL warm-up uses "an additional
    /// smaller video dataset", §4.3), read in full but for its test rows;
    /// unset = `data.manifest`'s train split, the cold start's videos.
    pub manifest: Option<PathBuf>,
    /// The synthetic set written to `manifest`'s directory when the manifest
    /// is missing (needs `manifest`).
    pub synth: Option<SynthConfig>,
    /// Optimizer steps (one batch of prompts each).
    pub steps: u64,
    /// Videos × dimension prompts per step; each gets `group_size` rollouts.
    pub prompts_per_step: usize,
    /// G, rollouts per prompt.
    pub group_size: usize,
    /// Longest completion.
    pub max_new_tokens: usize,
    /// Sampling temperature of the rollouts (log-probs use logits / T).
    pub temperature: f32,
    pub top_p: f32,
    /// 0 = no top-k limit.
    pub top_k: usize,
    /// λ in R = R_acc + λ·R_fmt.
    pub format_weight: f32,
    /// The form of R_acc: `exact` (the paper's: 1 iff the rating equals
    /// the label), `distance` (1 − |i − j|/4) or `gaussian`
    /// (exp(−(c_i − μ)²/(2σ²)) against the row's normalised MOS); see
    /// [`AccuracyReward`].
    pub accuracy_reward: AccuracyReward,
    /// σ of the `gaussian` form on the MOS scale mapped to [0, 1] (0.1 =
    /// half a rating interval; see [`DEFAULT_ACCURACY_SIGMA`]).
    pub accuracy_sigma: f32,
    /// β, the KL weight (0 disables the KL term; KL is still measured).
    pub kl_coef: f32,
    pub kl_estimator: KlEstimator,
    pub kl_placement: KlPlacement,
    /// ε_low: ratios clip below at 1 − ε_low.
    pub clip_low: f32,
    /// ε_high: ratios clip above at 1 + ε_high (DAPO's clip-higher: 0.28).
    pub clip_high: f32,
    /// Dual-clip constant c > 1 (verl `clip_ratio_c`); unset = off.
    pub dual_clip: Option<f32>,
    pub advantage_scale: AdvantageScale,
    pub advantage_epsilon: f32,
    pub loss_aggregation: Aggregation,
    /// μ, passes over each step's rollouts.
    pub ppo_epochs: usize,
    /// Rollouts per optimizer update; 0 = all of the step's rollouts.
    pub mini_batch_size: usize,
    /// Rollouts per forward/backward (verl's `ppo_micro_batch_size_per_gpu`
    /// and `log_prob_micro_batch_size_per_gpu` in one): each update's
    /// mini-batch runs as micro-batches of this many rollouts whose
    /// gradients are summed into one optimizer step (the loss of each scaled
    /// so the sum is the mini-batch's, [`super::update`]), and the no-grad
    /// log-prob passes run this many rows at a time. A multiple of
    /// `group_size` that divides the update's size, so every micro-batch is
    /// whole groups and shares one prompt prefill per group. 0 = the whole
    /// mini-batch at once (and the whole step in the no-grad passes).
    pub micro_batch_size: usize,
    /// Completion positions whose LM-head logits exist at once, in the
    /// update and in the no-grad log-prob passes (old policy, reference):
    /// at most `[rows, logit_chunk, V]` logits, whatever the completion
    /// width. 0 = the whole width at once. The update's chunked gradient
    /// is a two-stage backward ([`super::chunked`]); a width that fits in
    /// one chunk runs the one-shot path, so the default (above the tiny
    /// model's widths) gives the same numbers as 0 there.
    pub logit_chunk: usize,
    pub zero_std: ZeroStd,
    /// Extra batches a step may draw with `zero_std = "refill"`.
    pub refill_batches: usize,
    /// Freeze the vision tower (train the decoder only).
    pub freeze_vision: bool,
    /// The reference model: a HF directory; unset = the starting actor.
    pub reference: Option<PathBuf>,
    /// Checkpoint every N steps (0: only at the end and on Ctrl-C).
    pub save_every: u64,
    /// Complete checkpoints kept.
    pub keep_last: usize,
    /// Directory of the cool-off data (`<dir>/<run>/cooloff.jsonl`).
    pub rollouts_dir: PathBuf,
    /// Also write every rollout of every step, with its reward and
    /// advantage, to `<run dir>/rollouts.jsonl` (for inspection).
    pub log_rollouts: bool,
}

impl Default for GrpoConfig {
    fn default() -> Self {
        GrpoConfig {
            manifest: None,
            synth: None,
            steps: 32,
            prompts_per_step: 8,
            group_size: 8,
            max_new_tokens: 64,
            temperature: 1.0,
            top_p: 1.0,
            top_k: 0,
            format_weight: 0.5,
            accuracy_reward: AccuracyReward::Exact,
            accuracy_sigma: DEFAULT_ACCURACY_SIGMA,
            kl_coef: 0.04,
            kl_estimator: KlEstimator::K3,
            kl_placement: KlPlacement::Loss,
            clip_low: 0.2,
            clip_high: 0.2,
            dual_clip: None,
            advantage_scale: AdvantageScale::Group,
            advantage_epsilon: 1e-6,
            loss_aggregation: Aggregation::TokenMean,
            ppo_epochs: 1,
            mini_batch_size: 0,
            micro_batch_size: 0,
            logit_chunk: DEFAULT_LOGIT_CHUNK,
            zero_std: ZeroStd::Keep,
            refill_batches: 2,
            freeze_vision: false,
            reference: None,
            save_every: 10,
            keep_last: 2,
            rollouts_dir: "rollouts".into(),
            log_rollouts: false,
        }
    }
}

impl GrpoConfig {
    pub fn rollout(&self) -> RolloutConfig {
        RolloutConfig {
            group_size: self.group_size,
            max_new_tokens: self.max_new_tokens,
            sampling: SamplingConfig {
                temperature: self.temperature,
                top_k: self.top_k,
                top_p: self.top_p,
            },
        }
    }

    pub fn reward(&self) -> RewardConfig {
        RewardConfig {
            format_weight: self.format_weight,
            accuracy: self.accuracy_reward,
            accuracy_sigma: self.accuracy_sigma,
        }
    }

    pub fn advantage(&self) -> AdvantageConfig {
        AdvantageConfig {
            scale: self.advantage_scale,
            epsilon: self.advantage_epsilon,
        }
    }

    /// The policy loss; with the KL in the reward its loss weight is 0.
    pub fn policy_loss(&self) -> PolicyLossConfig {
        PolicyLossConfig {
            clip_low: self.clip_low,
            clip_high: self.clip_high,
            dual_clip: self.dual_clip,
            kl_coef: match self.kl_placement {
                KlPlacement::Loss => self.kl_coef,
                KlPlacement::Reward => 0.0,
            },
            kl_estimator: self.kl_estimator,
            aggregation: match self.loss_aggregation {
                Aggregation::TokenMean => LossAggregation::TokenMean,
                Aggregation::SeqMeanTokenMean => LossAggregation::SeqMeanTokenMean,
                Aggregation::SeqMeanTokenSumNorm => LossAggregation::SeqMeanTokenSumNorm {
                    max_len: self.max_new_tokens,
                },
            },
        }
    }

    /// Rollouts per optimizer update.
    pub fn update_size(&self) -> usize {
        let all = self.prompts_per_step * self.group_size;
        if self.mini_batch_size == 0 {
            all
        } else {
            self.mini_batch_size.min(all)
        }
    }

    /// Rollouts per forward/backward of an update of `rows` rollouts (and
    /// per no-grad log-prob pass of a step of `rows`): `micro_batch_size`,
    /// or all `rows` when it is 0 or not below them.
    pub fn micro_size(&self, rows: usize) -> usize {
        micro_size(self.micro_batch_size, rows)
    }
}

/// Rows per micro-batch of a batch of `rows` with `[grpo] micro_batch_size
/// = micro` (0 = all of them at once); at least 1.
pub fn micro_size(micro: usize, rows: usize) -> usize {
    match micro {
        0 => rows.max(1),
        m => m.min(rows.max(1)),
    }
}

impl GrpoConfig {
    /// Why `micro_batch_size` is refused, and the values it may take.
    fn micro_batch_message(&self, update: usize) -> String {
        let g = self.group_size.max(1);
        let fits: Vec<String> = (1..=update / g)
            .map(|k| k * g)
            .filter(|m| update.is_multiple_of(*m))
            .map(|m| m.to_string())
            .collect();
        let size = match self.mini_batch_size {
            0 => format!(
                "all {update} rollouts of a step (mini_batch_size 0: prompts_per_step {} × \
                 group_size {})",
                self.prompts_per_step, self.group_size
            ),
            m => format!("mini_batch_size {m}"),
        };
        let set = match fits.is_empty() {
            true => format!(
                "no multiple of group_size {} divides it: set micro_batch_size = 0, or \
                 mini_batch_size to a multiple of group_size",
                self.group_size
            ),
            false => format!("set it to one of {} (or 0)", fits.join(", ")),
        };
        format!(
            "micro_batch_size must be a multiple of group_size {} (every micro-batch is whole \
             groups) that divides the update's size, {size}, or 0 (= the whole mini-batch); \
             got {}: {set}",
            self.group_size, self.micro_batch_size
        )
    }
}

impl Validate for GrpoConfig {
    fn validate(&self, p: &str, rules: &mut Rules) {
        let key = |k: &str| format!("{p}.{k}");
        if let Some(synth) = &self.synth {
            synth.check(&key("synth"), rules);
            rules.check(self.manifest.is_some(), &key("synth"), || {
                "grpo.synth says how to write grpo.manifest, which is not set: set \
                 grpo.manifest to where the set should go"
                    .to_string()
            });
        }
        rules.check(self.steps >= 1, &key("steps"), || {
            format!("steps must be ≥ 1, got {}", self.steps)
        });
        rules.check(self.prompts_per_step >= 1, &key("prompts_per_step"), || {
            format!(
                "prompts_per_step must be ≥ 1, got {}",
                self.prompts_per_step
            )
        });
        self.rollout().validate(p, rules);
        rules.check(
            self.format_weight.is_finite() && self.format_weight >= 0.0,
            &key("format_weight"),
            || format!("format_weight must be ≥ 0, got {}", self.format_weight),
        );
        rules.check(
            self.accuracy_sigma.is_finite() && self.accuracy_sigma > 0.0,
            &key("accuracy_sigma"),
            || {
                format!(
                    "accuracy_sigma must be finite and > 0 (the width of the gaussian accuracy \
                     reward on the MOS scale mapped to [0, 1]; 0.1 = half a rating interval), \
                     got {}",
                    self.accuracy_sigma
                )
            },
        );
        rules.check(self.temperature > 0.0, &key("temperature"), || {
            format!(
                "temperature must be > 0: GRPO samples its rollouts (a greedy group is G \
                     copies of one answer, with no advantage to learn from; eval decodes \
                     greedily on its own), got {}",
                self.temperature
            )
        });
        if let Err(e @ PolicyLossError::BadSetting { name, .. }) = self.policy_loss().validate() {
            // The loss's own names are the config's, but for the length
            // Dr. GRPO normalises by.
            let name = if name == "max_len" {
                "max_new_tokens"
            } else {
                name
            };
            rules.check(false, &key(name), || e.to_string());
        }
        rules.check(
            self.kl_coef.is_finite() && self.kl_coef >= 0.0,
            &key("kl_coef"),
            || format!("kl_coef must be ≥ 0, got {}", self.kl_coef),
        );
        rules.check(
            self.advantage_epsilon.is_finite() && self.advantage_epsilon >= 0.0,
            &key("advantage_epsilon"),
            || {
                format!(
                    "advantage_epsilon must be ≥ 0, got {}",
                    self.advantage_epsilon
                )
            },
        );
        rules.check(self.ppo_epochs >= 1, &key("ppo_epochs"), || {
            format!("ppo_epochs must be ≥ 1, got {}", self.ppo_epochs)
        });
        let all = self.prompts_per_step * self.group_size;
        rules.check_keys(
            self.mini_batch_size == 0 || all.is_multiple_of(self.mini_batch_size),
            &[&key("mini_batch_size"), &key("prompts_per_step")],
            || {
                format!(
                    "mini_batch_size must divide the step's {} rollouts \
                     (prompts_per_step {} × group_size {}) or be 0 (= all), got {}",
                    all, self.prompts_per_step, self.group_size, self.mini_batch_size
                )
            },
        );
        let update = self.update_size();
        rules.check_keys(
            self.micro_batch_size == 0
                || (self.micro_batch_size.is_multiple_of(self.group_size.max(1))
                    && update.is_multiple_of(self.micro_batch_size)),
            &[
                &key("micro_batch_size"),
                &key("group_size"),
                &key("mini_batch_size"),
            ],
            || self.micro_batch_message(update),
        );
        rules.check(self.keep_last >= 1, &key("keep_last"), || {
            format!("keep_last must be ≥ 1, got {}", self.keep_last)
        });
    }
}

//! The plan's input: every number a memory plan is computed from, typed,
//! gathered from a run config ([`Config`]) and the model's `config.json`
//! ([`QwenVlConfig`]). Building it is the only place the plan reads the
//! config; the estimator sees this struct alone.

use super::prompt::PromptShape;
use crate::config::Config;
use crate::model::LoraConfig;
use crate::model::config::QwenVlConfig;
use crate::video::VideoConfig;
use crate::video::slowfast::BudgetError;

/// Which trainer the plan is of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Stage {
    /// `vgrpo train`: rollouts, the reference and old log-prob passes, the
    /// policy update.
    #[default]
    Grpo,
    /// `vgrpo sft` (cold start or cool-off): one teacher-forced update per
    /// micro-batch, no rollouts, no reference.
    Sft,
}

impl std::str::FromStr for Stage {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "grpo" | "train" => Ok(Stage::Grpo),
            "sft" => Ok(Stage::Sft),
            other => Err(format!("stage must be grpo or sft, got {other:?}")),
        }
    }
}

/// The floating-point type weights are held in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightDtype {
    F32,
    Bf16,
    F16,
}

impl WeightDtype {
    pub fn bytes(self) -> u64 {
        match self {
            WeightDtype::F32 => 4,
            WeightDtype::Bf16 | WeightDtype::F16 => 2,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            WeightDtype::F32 => "f32",
            WeightDtype::Bf16 => "bf16",
            WeightDtype::F16 => "f16",
        }
    }

    /// An HF `torch_dtype` / `dtype` value (`"bfloat16"`) or a short name
    /// (`bf16`).
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "float32" | "f32" | "fp32" => Some(WeightDtype::F32),
            "bfloat16" | "bf16" => Some(WeightDtype::Bf16),
            "float16" | "f16" | "fp16" | "half" => Some(WeightDtype::F16),
            _ => None,
        }
    }

    /// The dtype a HF `config.json` says its checkpoint is stored in:
    /// `torch_dtype` or `dtype`, at the top level or in `text_config`;
    /// f32 when it names none (transformers' own default).
    pub fn of_checkpoint(config_json: &str) -> Result<Self, String> {
        let json: serde_json::Value =
            serde_json::from_str(config_json).map_err(|e| format!("config.json: {e}"))?;
        let named = [&json, &json["text_config"]]
            .into_iter()
            .flat_map(|v| [&v["torch_dtype"], &v["dtype"]])
            .find_map(|v| v.as_str());
        match named {
            None => Ok(WeightDtype::F32),
            Some(name) => WeightDtype::parse(name).ok_or_else(|| {
                format!("config.json names the dtype {name:?}, which vgrpo does not load")
            }),
        }
    }
}

/// Full fine-tuning or LoRA: the two columns of a plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Every parameter trains (but the vision tower with `freeze_vision`),
    /// from f32 master weights.
    Full,
    /// Adapters train on a frozen base (`[lora]`).
    Lora,
}

/// What the command line adds to the config.
#[derive(Debug, Clone, PartialEq)]
pub struct PlanOptions {
    pub stage: Stage,
    /// The dtype frozen weights are held in (a LoRA base, the full
    /// fine-tuning reference); `None` = the checkpoint's.
    pub frozen_dtype: Option<WeightDtype>,
    /// Source video size in pixels, `[width, height]`.
    pub video_size: [u32; 2],
}

/// 720p: the usual size of generated clips.
pub const DEFAULT_VIDEO_SIZE: [u32; 2] = [1280, 720];

impl Default for PlanOptions {
    fn default() -> Self {
        PlanOptions {
            stage: Stage::Grpo,
            frozen_dtype: None,
            video_size: DEFAULT_VIDEO_SIZE,
        }
    }
}

/// Everything the estimator reads.
#[derive(Debug, Clone, PartialEq)]
pub struct PlanInput {
    pub model: QwenVlConfig,
    /// The dtype of the checkpoint on disk (`config.json`).
    pub checkpoint_dtype: WeightDtype,
    /// The dtype frozen weights are held in: a LoRA base and the full
    /// fine-tuning reference (default: the checkpoint's).
    pub frozen_dtype: WeightDtype,
    pub stage: Stage,
    /// The config's `[lora]`, or the default one for the comparison column.
    pub lora: LoraConfig,
    /// Whether the config has a `[lora]` section (the run is a LoRA run).
    pub lora_from_config: bool,
    /// `grpo.freeze_vision` / `sft.freeze_vision` (full fine-tuning).
    pub freeze_vision: bool,
    /// `grpo.reference` is set: a reference model loaded on its own, a
    /// full copy in LoRA runs too.
    pub separate_reference: bool,
    /// `grpo.kl_coef`: the trainer keeps its reference whatever it is (the
    /// KL is logged at β = 0 too); shown in the plan.
    pub kl_coef: f32,
    /// P, prompts per step (GRPO).
    pub prompts_per_step: usize,
    /// G, rollouts per prompt (GRPO).
    pub group_size: usize,
    /// Completion width W: `grpo.max_new_tokens`, the longest a rollout
    /// may be; an SFT answer's length is sized by it too (SFT has no
    /// length setting).
    pub max_new_tokens: usize,
    /// Rows of one update: `grpo.update_size()` (GRPO) or `sft.batch`.
    pub update_rows: usize,
    /// `grpo.mini_batch_size` as written (0 = all of a step's rollouts),
    /// to re-derive `update_rows` when a suggestion changes P or G.
    pub mini_batch_size: usize,
    /// `grpo.micro_batch_size` (0 = the whole update in one pass): the
    /// rows of one forward + backward, whose gradients are summed, and of
    /// one chunk of the no-grad log-prob passes.
    pub micro_batch_size: usize,
    /// `sft.grad_accum` (SFT keeps an accumulated gradient beside the
    /// micro-batch's when it is above 1).
    pub grad_accum: usize,
    /// `[video]`, for the prompt length (and to re-derive it when a
    /// suggestion changes the frame count).
    pub video: VideoConfig,
    pub video_size: [u32; 2],
    pub prompt: PromptShape,
    /// Per-layer activation checkpointing of the update (vgrpo has none
    /// yet; the plan shows what it would save, and a suggestion turns it
    /// on).
    pub checkpointing: bool,
    /// `grpo.logit_chunk` (`sft.logit_chunk` for SFT): positions per
    /// LM-head chunk (0 = the whole width at once).
    pub logit_chunk: usize,
    /// The run's backend computes 16-bit matmuls by widening both operands
    /// to f32 on every call (Burn's `flex` CPU backend, `run.device =
    /// "cpu"`); GPU backends multiply bf16 natively.
    pub widens_half_matmuls: bool,
}

impl PlanInput {
    /// The plan input of `config`'s run on `model`, whose checkpoint is
    /// stored as `checkpoint_dtype`.
    pub fn new(
        config: &Config,
        model: &QwenVlConfig,
        checkpoint_dtype: WeightDtype,
        options: &PlanOptions,
    ) -> Result<PlanInput, BudgetError> {
        let g = &config.grpo;
        let video = config.video.for_model_token_side(
            (model.vision.patch_size * model.vision.spatial_merge_size) as u32,
        );
        let prompt = PromptShape::of(model, &video, options.video_size)?;
        let (freeze_vision, update_rows) = match options.stage {
            Stage::Grpo => (g.freeze_vision, g.update_size()),
            Stage::Sft => (config.sft.freeze_vision, config.sft.batch),
        };
        Ok(PlanInput {
            model: model.clone(),
            checkpoint_dtype,
            frozen_dtype: options.frozen_dtype.unwrap_or(checkpoint_dtype),
            stage: options.stage,
            lora: config.lora.clone().unwrap_or_default(),
            lora_from_config: config.lora.is_some(),
            freeze_vision,
            separate_reference: g.reference.is_some(),
            kl_coef: g.kl_coef,
            prompts_per_step: g.prompts_per_step,
            group_size: g.group_size,
            max_new_tokens: g.max_new_tokens,
            update_rows,
            mini_batch_size: g.mini_batch_size,
            micro_batch_size: g.micro_batch_size,
            grad_accum: config.sft.grad_accum,
            video,
            video_size: options.video_size,
            prompt,
            checkpointing: false,
            logit_chunk: match options.stage {
                Stage::Grpo => g.logit_chunk,
                Stage::Sft => config.sft.logit_chunk,
            },
            widens_half_matmuls: config.run.device == crate::device::DeviceSpec::Cpu,
        })
    }

    /// The mode the config's run trains in.
    pub fn run_mode(&self) -> Mode {
        if self.lora_from_config {
            Mode::Lora
        } else {
            Mode::Full
        }
    }

    /// Sets P (GRPO), and the update rows that follow from it: all of the
    /// step's rollouts (`mini_batch_size` 0), else the largest divisor of
    /// them not above `mini_batch_size` (which must divide them).
    pub fn set_prompts_per_step(&mut self, prompts: usize) {
        self.prompts_per_step = prompts;
        let all = prompts * self.group_size;
        let cap = match self.mini_batch_size {
            0 => all,
            mb => mb.min(all),
        };
        self.update_rows = (1..=cap)
            .rev()
            .find(|d| all.is_multiple_of(*d))
            .unwrap_or(1);
        if self.mini_batch_size != 0 {
            self.mini_batch_size = self.update_rows;
        }
    }

    /// Re-derives the prompt after a change to `video` or `video_size`.
    pub fn reshape_prompt(&mut self) -> Result<(), BudgetError> {
        self.prompt = PromptShape::of(&self.model, &self.video, self.video_size)?;
        Ok(())
    }

    /// Rows of one forward + backward: a GRPO micro-batch when it is
    /// smaller than the update, else the update.
    pub fn pass_rows(&self) -> usize {
        match (self.stage, self.micro_batch_size) {
            (Stage::Grpo, m) if m > 0 && m < self.update_rows => m,
            _ => self.update_rows,
        }
    }

    /// Rows of one no-grad log-prob pass (GRPO): a micro-batch, else all
    /// of the step's rollouts.
    pub fn logprob_rows(&self) -> usize {
        let all = self.prompts_per_step * self.group_size;
        match self.micro_batch_size {
            0 => all,
            m => m.min(all),
        }
    }

    /// One pass's prompt rows and the completions each serves: whole
    /// groups share their prompt (`rows / G` prompts, `G` each), any other
    /// batch repeats the prompt per row (`grpo/forcing.rs`); an SFT row has
    /// its own.
    pub fn update_prompts(&self) -> (usize, usize) {
        let (rows, g) = (self.pass_rows(), self.group_size);
        match self.stage {
            Stage::Grpo if g > 1 && rows.is_multiple_of(g) => (rows / g, g),
            _ => (rows, 1),
        }
    }
}

/// The plan input of the tiny model under a config text (the unit tests'
/// fixture: 96x64 clips, an f32 checkpoint).
#[cfg(test)]
pub fn tiny_input(config_toml: &str) -> PlanInput {
    let config: Config = toml::from_str(config_toml).unwrap();
    let model = crate::default_model::tiny_config().unwrap();
    let options = PlanOptions {
        video_size: [96, 64],
        ..PlanOptions::default()
    };
    PlanInput::new(&config, &model, WeightDtype::F32, &options).unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_checkpoint_dtype_is_read_where_hf_writes_it() {
        let of = |s: &str| WeightDtype::of_checkpoint(s);
        assert_eq!(of(r#"{"torch_dtype": "bfloat16"}"#), Ok(WeightDtype::Bf16));
        assert_eq!(of(r#"{"dtype": "float16"}"#), Ok(WeightDtype::F16));
        assert_eq!(
            of(r#"{"text_config": {"dtype": "bfloat16"}}"#),
            Ok(WeightDtype::Bf16)
        );
        assert_eq!(of(r#"{"model_type": "qwen3_vl"}"#), Ok(WeightDtype::F32));
        assert!(of(r#"{"dtype": "int4"}"#).unwrap_err().contains("int4"));
        let tiny = crate::default_model::TINY_CONFIG_JSON;
        assert_eq!(of(tiny), Ok(WeightDtype::F32));
    }

    #[test]
    fn whole_groups_share_a_prompt_row_in_the_update() {
        let config = crate::config::Config {
            grpo: crate::grpo::config::GrpoConfig {
                prompts_per_step: 4,
                group_size: 8,
                mini_batch_size: 16,
                ..Default::default()
            },
            ..toml::from_str("").unwrap()
        };
        let model = crate::default_model::tiny_config().unwrap();
        let options = PlanOptions::default();
        let mut input = PlanInput::new(&config, &model, WeightDtype::F32, &options).unwrap();
        assert_eq!(input.update_prompts(), (2, 8));
        input.update_rows = 4; // splits a group: the prompt per row
        assert_eq!(input.update_prompts(), (4, 1));
        input.stage = Stage::Sft;
        input.update_rows = 8;
        assert_eq!(input.update_prompts(), (8, 1));
        assert_eq!(input.run_mode(), Mode::Full);
    }

    #[test]
    fn micro_batches_size_one_pass_and_the_log_prob_passes() {
        let config = crate::config::Config {
            grpo: crate::grpo::config::GrpoConfig {
                prompts_per_step: 4,
                group_size: 8,
                micro_batch_size: 8,
                ..Default::default()
            },
            ..toml::from_str("").unwrap()
        };
        let model = crate::default_model::tiny_config().unwrap();
        let mut input =
            PlanInput::new(&config, &model, WeightDtype::F32, &PlanOptions::default()).unwrap();
        // The update is all 32 rollouts; one pass is one group of 8.
        assert_eq!((input.update_rows, input.pass_rows()), (32, 8));
        assert_eq!(input.update_prompts(), (1, 8));
        assert_eq!(input.logprob_rows(), 8);
        let micro = crate::plan::estimate(&input, Mode::Full);
        input.micro_batch_size = 0;
        assert_eq!((input.pass_rows(), input.logprob_rows()), (32, 32));
        let whole = crate::plan::estimate(&input, Mode::Full);
        // A summed gradient beside the pass's own, and a smaller pass.
        assert_eq!(micro.update.gradients, 2 * whole.update.gradients);
        assert!(micro.update.decoder.total() < whole.update.decoder.total());
        assert!(micro.logprobs.unwrap().total() < whole.logprobs.unwrap().total());
    }
}

//! `old_log_prob → ref`: teacher forcing of a step's completions after
//! their prompts, and the log-probs the update compares against — the old
//! policy's (only when they differ from the detached current ones) and the
//! frozen reference's.
//!
//! Rows that are whole groups in order share their group's prompt row (the
//! prompt and video run once per group, not G times); any other selection
//! of rows (a mini-batch that splits groups) repeats it per row.
//!
//! The no-grad passes run `[grpo] micro_batch_size` rows at a time (whole
//! groups, in order; 0 = the whole step at once), each micro-batch padded
//! only to its own longest completion, and their `[rows, W]` log-probs are
//! padded to the step's width W and stacked.

use super::collect::Collected;
use super::error::TrainError;
use crate::model::QwenVl;
use crate::model::logprob::{CompletionBatch, completion_logprobs_chunked};
use crate::rollout::{GroupPrompt, Tokens, left_padded_batch};
use burn::tensor::{Bool, Device, Tensor, TensorData};
use std::time::Instant;

/// The teacher-forcing inputs of one step: each rollout's completion after
/// its own prompt.
pub struct TeacherForcing<'a> {
    /// The prompt of each row (rollout), `[P·G]`.
    prompts: Vec<&'a GroupPrompt>,
    /// The completion ids of each row.
    completions: Vec<Vec<i64>>,
    group_size: usize,
    tokens: &'a Tokens,
}

impl<'a> TeacherForcing<'a> {
    pub fn new(collected: &'a Collected, group_size: usize, tokens: &'a Tokens) -> Self {
        TeacherForcing {
            prompts: collected
                .scored
                .iter()
                .map(|s| &collected.prompts[s.prompt])
                .collect(),
            completions: collected
                .scored
                .iter()
                .map(|s| s.rollout.tokens.iter().map(|&t| i64::from(t)).collect())
                .collect(),
            group_size,
            tokens,
        }
    }

    /// Row `r` is `completions[r]` after `prompts[r]`; rows `k·G .. (k+1)·G`
    /// are group k (G = `group_size`) and share their prompt.
    pub fn from_rows(
        prompts: Vec<&'a GroupPrompt>,
        completions: Vec<Vec<i64>>,
        group_size: usize,
        tokens: &'a Tokens,
    ) -> Self {
        assert_eq!(prompts.len(), completions.len(), "one prompt per row");
        TeacherForcing {
            prompts,
            completions,
            group_size,
            tokens,
        }
    }

    /// Rows (rollouts) in the step.
    pub fn rows(&self) -> usize {
        self.completions.len()
    }

    /// The longest completion of the step: the width of its log-probs.
    pub fn width(&self) -> usize {
        self.completions.iter().map(Vec::len).max().unwrap_or(0)
    }

    /// Completion tokens of `rows` (the tokens the loss counts).
    pub fn tokens(&self, rows: &[usize]) -> usize {
        rows.iter().map(|&r| self.completions[r].len()).sum()
    }

    /// `[rows, width]`: true for real completion tokens of every row of the
    /// step, at the step's width.
    pub fn mask(&self, device: &Device) -> Tensor<2, Bool> {
        let width = self.width();
        let mask: Vec<Vec<bool>> = self
            .completions
            .iter()
            .map(|c| (0..width).map(|i| i < c.len()).collect())
            .collect();
        bool_mask(&mask, device)
    }

    /// The batch of `rows`, sharing one prompt row per group when `rows`
    /// are whole groups in order ([`whole_groups`]).
    pub fn batch(&self, rows: &[usize]) -> Result<CompletionBatch, TrainError> {
        let group = if whole_groups(rows, self.group_size) {
            self.group_size
        } else {
            1
        };
        let prompts = rows.iter().step_by(group).map(|&r| self.prompts[r]);
        let batch = left_padded_batch(prompts, self.tokens);
        let completions: Vec<Vec<i64>> =
            rows.iter().map(|&r| self.completions[r].clone()).collect();
        Ok(CompletionBatch::new(
            &batch,
            group,
            &completions,
            i64::from(self.tokens.pad),
        )?)
    }
}

/// The no-grad log-probs of every row of a step, `[P·G, T]` on the plain
/// device, T the longest completion.
pub struct StepLogProbs {
    /// The policy that sampled the rollouts; `None` on-policy, where the
    /// update uses its own detached log-probs (ρ = 1 exactly).
    pub old: Option<Tensor<2>>,
    pub reference: Tensor<2>,
    /// True for real completion tokens.
    pub mask: Tensor<2, Bool>,
    pub old_seconds: f64,
    pub reference_seconds: f64,
}

/// How the no-grad passes run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LogProbPasses {
    /// Off-policy updates (μ > 1 or mini-batches) and the KL in the reward
    /// need the sampling policy's log-probs.
    pub need_old: bool,
    /// Log-probs use logits / T.
    pub temperature: f64,
    /// Completion positions per chunk of LM-head logits (0 = all at once).
    pub logit_chunk: usize,
    /// Rows per forward (`[grpo] micro_batch_size`; 0 = the whole step).
    pub micro_batch_size: usize,
}

/// old_log_prob + ref over every row of the step in order, on the plain
/// `device`: logits / T, the LM head over `logit_chunk` completion
/// positions at a time, `micro_batch_size` rows per forward
/// ([`step_logprobs`]).
pub fn logprobs(
    forcing: &TeacherForcing<'_>,
    policy: &QwenVl,
    reference: &QwenVl,
    passes: &LogProbPasses,
    device: &Device,
) -> Result<StepLogProbs, TrainError> {
    let run = |model| step_logprobs(forcing, model, passes, device);
    let t = Instant::now();
    let old = match passes.need_old {
        true => Some(run(policy)?),
        false => None,
    };
    let old_seconds = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let reference = run(reference)?;
    Ok(StepLogProbs {
        old,
        reference,
        mask: forcing.mask(device),
        old_seconds,
        reference_seconds: t.elapsed().as_secs_f64(),
    })
}

/// `[rows, W]` log-probs of `model` (no graph: `device` is plain) of every
/// row of the step, W its longest completion, 0 at padding. The rows run
/// `passes.micro_batch_size` at a time (0 = all at once), whole groups in
/// order, so each micro-batch shares one prompt prefill per group; each is
/// padded to its own longest completion and its log-probs are padded with
/// zeros to W (completions are right-padded, so the columns line up).
pub fn step_logprobs(
    forcing: &TeacherForcing<'_>,
    model: &QwenVl,
    passes: &LogProbPasses,
    device: &Device,
) -> Result<Tensor<2>, TrainError> {
    let rows: Vec<usize> = (0..forcing.rows()).collect();
    let micro = super::config::micro_size(passes.micro_batch_size, rows.len());
    let width = forcing.width();
    let (t, chunk) = (passes.temperature, passes.logit_chunk);
    // No rows: one (empty) batch, which reports it.
    let micro_batches: Vec<&[usize]> = match rows.is_empty() {
        true => vec![&rows[..]],
        false => rows.chunks(micro).collect(),
    };
    let mut parts = Vec::with_capacity(micro_batches.len());
    for part in micro_batches {
        let batch = forcing.batch(part)?;
        let lp = completion_logprobs_chunked(model, &batch, t, chunk, device)?; // [b, w]
        let w = batch.width();
        parts.push(match w < width {
            true => Tensor::cat(vec![lp, Tensor::zeros([part.len(), width - w], device)], 1),
            false => lp,
        });
    }
    Ok(match parts.len() {
        1 => parts.remove(0),
        _ => Tensor::cat(parts, 0),
    })
}

/// Whether `rows` are whole groups of `g` consecutive rollouts in order
/// (`[k·g, k·g+1, .., k·g+g−1]` for each group k taken), so each group can
/// share one prompt row.
pub fn whole_groups(rows: &[usize], g: usize) -> bool {
    g > 0
        && rows.len().is_multiple_of(g)
        && rows
            .chunks(g)
            .all(|c| c[0].is_multiple_of(g) && c.iter().zip(c[0]..).all(|(&r, want)| r == want))
}

/// `[rows, width]` mask tensor of a completion batch's token mask.
pub fn bool_mask(mask: &[Vec<bool>], device: &Device) -> Tensor<2, Bool> {
    let rows = mask.len();
    let width = mask.first().map_or(0, Vec::len);
    let flat: Vec<bool> = mask.iter().flatten().copied().collect();
    Tensor::from_data(TensorData::new(flat, [rows, width]), device)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_whole_groups_in_order_share_a_prompt_row() {
        assert!(whole_groups(&[0, 1, 2, 3, 4, 5], 3));
        assert!(whole_groups(&[3, 4, 5], 3)); // a filtered step: group 1 only
        assert!(!whole_groups(&[1, 2, 3], 3)); // straddles two groups
        assert!(!whole_groups(&[0, 2, 1], 3)); // shuffled
        assert!(!whole_groups(&[0, 1], 3)); // part of a group
        assert!(whole_groups(&[2, 0, 1], 1)); // G = 1: every row is a group
    }
}

//! `old_log_prob → ref`: teacher forcing of a step's completions after
//! their prompts, and the log-probs the update compares against — the old
//! policy's (only when they differ from the detached current ones) and the
//! frozen reference's.
//!
//! Rows that are whole groups in order share their group's prompt row (the
//! prompt and video run once per group, not G times); any other selection
//! of rows (a mini-batch that splits groups) repeats it per row.

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

    /// Rows (rollouts) in the step.
    pub fn rows(&self) -> usize {
        self.completions.len()
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

/// old_log_prob + ref over the whole step (`full`, every row in order),
/// on the plain `device`: logits / `temperature`, the LM head over
/// `logit_chunk` completion positions at a time (0 = the whole width at
/// once). `need_old`: off-policy updates (μ > 1 or mini-batches) and the
/// KL in the reward need the sampling policy's log-probs.
pub fn logprobs(
    full: &CompletionBatch,
    policy: &QwenVl,
    reference: &QwenVl,
    need_old: bool,
    temperature: f64,
    logit_chunk: usize,
    device: &Device,
) -> Result<StepLogProbs, TrainError> {
    let run = |model| completion_logprobs_chunked(model, full, temperature, logit_chunk, device);
    let t = Instant::now();
    let old = match need_old {
        true => Some(run(policy)?),
        false => None,
    };
    let old_seconds = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let reference = run(reference)?;
    Ok(StepLogProbs {
        old,
        reference,
        mask: bool_mask(&full.completion_mask, device),
        old_seconds,
        reference_seconds: t.elapsed().as_secs_f64(),
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

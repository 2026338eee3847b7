//! `gen → reward` (+ refill): one step's groups of scored rollouts.
//!
//! A step draws a batch of `prompts_per_step` prompts, samples G rollouts
//! for each from the current policy and scores every one
//! (R = R_acc + λ·R_fmt). With `zero_std = "refill"` (DAPO's dynamic
//! sampling) it keeps only groups whose rewards differ and draws up to
//! `refill_batches` more batches until it has `prompts_per_step` of them;
//! which groups are kept is [`GroupSelection`]'s pure rule.

use super::config::{GrpoConfig, ZeroStd};
use super::error::TrainError;
use crate::data::{MosScale, Rating};
use crate::inputs::Example;
use crate::loader::TrainLoader;
use crate::model::QwenVl;
use crate::reward::{Target, judge_completion};
use crate::rng::Rng;
use crate::rollout::{GroupPrompt, Rollout, Tokens, generate};
use crate::text::{Answer, AnswerOrder, Tokenizer};
use burn::tensor::Device;
use std::time::Instant;

/// One rollout with its reward, ready for the update.
#[derive(Debug, Clone)]
pub struct Scored {
    pub rollout: Rollout,
    /// Index of its prompt in the step's batch.
    pub prompt: usize,
    pub label: Rating,
    /// R_acc in the configured form.
    pub acc: f32,
    pub fmt: f32,
    pub reward: f32,
    /// Well formed and rated `label` exactly (whatever the form of R_acc).
    pub exact: bool,
    /// The well-formed answer, when the completion parsed.
    pub answer: Option<Answer>,
    /// The completion without its stop token.
    pub text: String,
}

/// One prompt and its G scored rollouts.
#[derive(Debug, Clone)]
pub struct Group {
    pub example: Example,
    pub prompt: GroupPrompt,
    pub rollouts: Vec<Scored>,
}

impl Group {
    /// Whether every rollout got the same reward (σ_g = 0: no advantage).
    pub fn is_constant(&self) -> bool {
        self.rollouts
            .iter()
            .all(|s| s.reward == self.rollouts[0].reward)
    }
}

/// A step's collected groups, in order: `examples[i]`, `prompts[i]` and
/// the rollouts `scored[i·G .. (i+1)·G]` (each with `prompt == i`).
#[derive(Debug, Clone, Default)]
pub struct Collected {
    pub examples: Vec<Example>,
    pub prompts: Vec<GroupPrompt>,
    pub scored: Vec<Scored>,
    /// Videos that failed to load (logged, skipped).
    pub failed_videos: usize,
    pub generated_tokens: usize,
    /// Groups drawn, kept or not, and those of them with equal rewards.
    pub drawn_groups: usize,
    pub zero_std_groups: usize,
    /// Seconds spent waiting for data, generating and scoring.
    pub data_seconds: f64,
    pub generate_seconds: f64,
    pub reward_seconds: f64,
}

impl Collected {
    /// Fraction of drawn groups whose rewards were all equal.
    pub fn frac_zero_std(&self) -> f32 {
        self.zero_std_groups as f32 / self.drawn_groups.max(1) as f32
    }
}

/// What collecting needs besides the policy and the data.
pub struct Collector<'a> {
    pub cfg: &'a GrpoConfig,
    pub tokenizer: &'a Tokenizer,
    pub tokens: &'a Tokens,
    pub scale: MosScale,
    /// The device rollouts run on (plain, no autodiff graph).
    pub device: &'a Device,
}

impl Collector<'_> {
    /// Draws, generates and scores batches for step `step` (1-based) until
    /// the [`GroupSelection`] is full or out of draws. `rng` seeds each
    /// batch's sampling.
    pub fn collect(
        &self,
        loader: &mut TrainLoader,
        policy: &QwenVl,
        step: u64,
        rng: &mut Rng,
    ) -> Result<Collected, TrainError> {
        let p = self.cfg.prompts_per_step;
        let mut out = Collected::default();
        let mut selection = GroupSelection::new(self.cfg.zero_std, p, self.cfg.refill_batches);
        for draw in 0..selection.draws() {
            let t = Instant::now();
            let (batch, failed) = loader.next_batch();
            for e in &failed {
                log::warn!("skipping a video: {}", crate::errors::chain(e));
            }
            out.failed_videos += failed.len();
            out.data_seconds += t.elapsed().as_secs_f64();
            if batch.is_empty() {
                continue;
            }
            let groups = self.groups(batch, policy, self.first_group(step, draw), rng, &mut out)?;
            selection.offer(groups, Group::is_constant);
            if selection.is_full() {
                break;
            }
        }
        let selected = selection.finish();
        out.drawn_groups = selected.drawn;
        out.zero_std_groups = selected.zero_std;
        if selected.fell_back {
            log::warn!(
                "step {step}: no group had distinct rewards in {} batches; training on the \
                 first batch (every advantage is 0: only the KL term moves the policy)",
                1 + self.cfg.refill_batches
            );
        } else if self.cfg.zero_std == ZeroStd::Refill && selected.groups.len() < p {
            log::warn!(
                "step {step}: only {} of {p} groups had distinct rewards after {} refill batches",
                selected.groups.len(),
                self.cfg.refill_batches
            );
        }
        if selected.groups.is_empty() {
            return Err(TrainError::EmptyBatch { step });
        }
        for (index, group) in selected.groups.into_iter().enumerate() {
            out.examples.push(group.example);
            out.prompts.push(group.prompt);
            out.scored.extend(
                group
                    .rollouts
                    .into_iter()
                    .map(|s| Scored { prompt: index, ..s }),
            );
        }
        Ok(out)
    }

    /// The id of the first group of draw `draw` of step `step`. Group ids
    /// seed the rollouts and are unique over the run: refill draws number
    /// after all first draws.
    fn first_group(&self, step: u64, draw: usize) -> u64 {
        let p = self.cfg.prompts_per_step as u64;
        match draw {
            0 => (step - 1) * p,
            d => {
                let refills = self.cfg.refill_batches as u64;
                self.cfg.steps * p + ((step - 1) * refills + d as u64 - 1) * p
            }
        }
    }

    /// gen + reward for one drawn batch: G rollouts per prompt, each scored.
    fn groups(
        &self,
        batch: Vec<Example>,
        policy: &QwenVl,
        first: u64,
        rng: &mut Rng,
        out: &mut Collected,
    ) -> Result<Vec<Group>, TrainError> {
        let t = Instant::now();
        let prompts: Vec<GroupPrompt> = batch
            .iter()
            .enumerate()
            .map(|(i, e)| GroupPrompt {
                group: first + i as u64,
                ids: e.prompt_ids.iter().map(|&id| i64::from(id)).collect(),
                video: Some(e.video.to_input(self.device)),
            })
            .collect();
        let base = Rng::new(rng.next_u64());
        let (rollouts, stats) = generate(
            policy,
            &prompts,
            &self.cfg.rollout(),
            self.tokens,
            &base,
            self.device,
        )?;
        out.generated_tokens += stats.generated_tokens;
        out.generate_seconds += t.elapsed().as_secs_f64();

        let t = Instant::now();
        let g = self.cfg.group_size;
        let scored = rollouts
            .into_iter()
            .enumerate()
            .map(|(i, rollout)| self.score(rollout, i / g, &batch[i / g]))
            .collect::<Result<Vec<_>, _>>()?;
        let mut scored = scored.into_iter();
        let groups = batch
            .into_iter()
            .zip(prompts)
            .map(|(example, prompt)| Group {
                example,
                prompt,
                rollouts: scored.by_ref().take(g).collect(),
            })
            .collect();
        out.reward_seconds += t.elapsed().as_secs_f64();
        Ok(groups)
    }

    /// reward: parses a completion and scores it against the row's rating
    /// and MOS.
    fn score(&self, rollout: Rollout, prompt: usize, e: &Example) -> Result<Scored, TrainError> {
        let target = Target::new(e.row.mos, &self.scale);
        let text = self.tokenizer.decode(rollout.body(), false)?;
        let judged = judge_completion(&text, AnswerOrder::ThinkFirst, &target, &self.cfg.reward());
        Ok(Scored {
            prompt,
            label: target.label,
            acc: judged.reward.acc,
            fmt: judged.reward.fmt,
            reward: judged.reward.total,
            exact: judged.reward.exact,
            answer: judged.answer.ok(),
            text,
            rollout,
        })
    }
}

/// Which drawn groups a step trains on. `keep` and `filter` take the one
/// batch as drawn (`filter` drops constant groups later, from the update
/// only); `refill` keeps the groups whose rewards differ, up to `want`,
/// over up to `1 + refill_batches` draws, and falls back to the first
/// batch as drawn when none of them had one (a fresh policy that never
/// scores: every advantage is 0, only the KL term moves it).
#[derive(Debug, Clone)]
pub struct GroupSelection<G> {
    mode: ZeroStd,
    want: usize,
    refill_batches: usize,
    kept: Vec<G>,
    first: Option<Vec<G>>,
    drawn: usize,
    zero_std: usize,
}

/// What [`GroupSelection::finish`] chose.
#[derive(Debug, Clone, PartialEq)]
pub struct Selected<G> {
    pub groups: Vec<G>,
    /// Refill found no informative group and took the first batch.
    pub fell_back: bool,
    /// Groups drawn, and those with equal rewards.
    pub drawn: usize,
    pub zero_std: usize,
}

impl<G: Clone> GroupSelection<G> {
    pub fn new(mode: ZeroStd, want: usize, refill_batches: usize) -> Self {
        GroupSelection {
            mode,
            want,
            refill_batches,
            kept: Vec::new(),
            first: None,
            drawn: 0,
            zero_std: 0,
        }
    }

    /// Batches a step may draw.
    pub fn draws(&self) -> usize {
        match self.mode {
            ZeroStd::Refill => 1 + self.refill_batches,
            ZeroStd::Keep | ZeroStd::Filter => 1,
        }
    }

    /// Offers one drawn batch; `constant` tells a group with equal rewards.
    pub fn offer(&mut self, batch: Vec<G>, constant: impl Fn(&G) -> bool) {
        if self.mode == ZeroStd::Refill && self.first.is_none() {
            self.first = Some(batch.clone());
        }
        for group in batch {
            self.drawn += 1;
            let flat = constant(&group);
            self.zero_std += usize::from(flat);
            let keep = self.mode != ZeroStd::Refill || (!flat && self.kept.len() < self.want);
            if keep {
                self.kept.push(group);
            }
        }
    }

    /// Whether enough groups are kept to stop drawing.
    pub fn is_full(&self) -> bool {
        self.kept.len() >= self.want
    }

    pub fn finish(self) -> Selected<G> {
        let fell_back = self.kept.is_empty() && self.first.is_some();
        Selected {
            groups: match (fell_back, self.first) {
                (true, Some(first)) => first,
                _ => self.kept,
            },
            fell_back,
            drawn: self.drawn,
            zero_std: self.zero_std,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Groups are numbers; the odd ones have equal rewards.
    fn flat(g: &u32) -> bool {
        g % 2 == 1
    }

    #[test]
    fn keep_and_filter_take_the_batch_as_drawn() {
        for mode in [ZeroStd::Keep, ZeroStd::Filter] {
            let mut s = GroupSelection::new(mode, 3, 2);
            assert_eq!(s.draws(), 1);
            s.offer(vec![1, 2, 3], flat);
            assert!(s.is_full());
            let out = s.finish();
            assert_eq!(out.groups, vec![1, 2, 3]);
            assert_eq!((out.drawn, out.zero_std, out.fell_back), (3, 2, false));
        }
    }

    #[test]
    fn refill_collects_informative_groups_across_draws() {
        let mut s = GroupSelection::new(ZeroStd::Refill, 3, 2);
        assert_eq!(s.draws(), 3);
        s.offer(vec![1, 2, 3], flat); // keeps 2
        assert!(!s.is_full());
        s.offer(vec![4, 5, 6], flat); // keeps 4, 6
        assert!(s.is_full());
        let out = s.finish();
        assert_eq!(out.groups, vec![2, 4, 6]);
        assert_eq!((out.drawn, out.zero_std, out.fell_back), (6, 3, false));
    }

    #[test]
    fn refill_stops_at_the_wanted_number_of_groups() {
        let mut s = GroupSelection::new(ZeroStd::Refill, 2, 2);
        s.offer(vec![2, 4, 6], flat);
        let out = s.finish();
        assert_eq!(
            out.groups,
            vec![2, 4],
            "the third informative group is left"
        );
        assert_eq!(out.drawn, 3);
    }

    #[test]
    fn refill_without_any_informative_group_falls_back_to_the_first_batch() {
        let mut s = GroupSelection::new(ZeroStd::Refill, 2, 2);
        s.offer(vec![1, 3], flat);
        s.offer(vec![5, 7], flat);
        s.offer(vec![9, 11], flat);
        let out = s.finish();
        assert_eq!(out.groups, vec![1, 3]);
        assert!(out.fell_back);
        assert_eq!((out.drawn, out.zero_std), (6, 6));
    }

    #[test]
    fn refill_short_of_groups_trains_on_those_it_found() {
        let mut s = GroupSelection::new(ZeroStd::Refill, 3, 1);
        s.offer(vec![1, 2], flat);
        s.offer(vec![3, 5], flat);
        let out = s.finish();
        assert_eq!(out.groups, vec![2]);
        assert!(!out.fell_back);
    }
}

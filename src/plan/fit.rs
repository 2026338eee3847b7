//! What to change when a plan does not fit a device: each setting that
//! shrinks it, at the least drastic value that fits (its most drastic one
//! when none does), ordered by the total it gives; and one combination of
//! them that fits, each setting backed off as far as the others allow.

use super::estimate::estimate;
use super::input::{Mode, PlanInput, Stage};

/// A setting a suggestion changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Knob {
    /// `grpo.micro_batch_size`: the same update in passes of fewer whole
    /// groups, gradients summed (changes nothing in the recipe).
    MicroBatch,
    /// `grpo.mini_batch_size` (GRPO) or `sft.batch` with `sft.grad_accum`
    /// keeping the examples per update (SFT).
    RowsPerUpdate,
    /// Per-layer activation checkpointing (vgrpo has no switch for it yet).
    Checkpointing,
    /// LoRA instead of full fine-tuning.
    UseLora,
    /// `freeze_vision = true` (full fine-tuning).
    FreezeVision,
    /// `lora.rank`.
    LoraRank,
    /// `video.max_frames` with `video.token_budget` scaled alike (the frames
    /// keep their size; fewer frames alone would only make them larger).
    Frames,
    /// `grpo.max_new_tokens`.
    MaxNewTokens,
    /// `grpo.prompts_per_step` (the teacher-forced log-prob passes run all
    /// of a step's rollouts at once; nothing else shrinks them).
    PromptsPerStep,
}

/// Every knob, in the order suggestions of equal effect are listed and a
/// combination tries them: what leaves the recipe's results alone first
/// (micro-batches, checkpointing, LoRA, ...), then what changes them —
/// the frames, the completion length, GRPO's mini-batches (more optimizer
/// steps per step, off-policy after the first), the prompts per step.
/// SFT's rows per update (`sft.batch` with `sft.grad_accum` keeping the
/// examples per update) change nothing and come first.
///
/// Per-layer checkpointing is left out: vgrpo does not have it (the plan
/// shows what it would hold), and a suggestion must be a setting.
pub fn knobs(stage: Stage) -> [Knob; 8] {
    let rows_first = stage == Stage::Sft;
    let mut out = [
        Knob::MicroBatch,
        Knob::UseLora,
        Knob::FreezeVision,
        Knob::LoraRank,
        Knob::Frames,
        Knob::MaxNewTokens,
        Knob::RowsPerUpdate,
        Knob::PromptsPerStep,
    ];
    if rows_first {
        out[..7].rotate_right(1);
    }
    out
}

/// One suggested change and the plan's total with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub knob: Knob,
    /// The setting as a user writes it (`grpo.mini_batch_size = 8`).
    pub setting: String,
    pub total: u64,
    pub fits: bool,
}

/// A set of changes applied together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Combination {
    pub settings: Vec<String>,
    pub total: u64,
    pub fits: bool,
}

struct Candidate {
    setting: String,
    input: PlanInput,
    mode: Mode,
}

/// `knob`'s values below the current one, least drastic first.
fn candidates(knob: Knob, input: &PlanInput, mode: Mode) -> Vec<Candidate> {
    let grpo = input.stage == Stage::Grpo;
    let section = if grpo { "grpo" } else { "sft" };
    let with = |setting: String, f: &dyn Fn(&mut PlanInput)| {
        let mut changed = input.clone();
        f(&mut changed);
        Candidate {
            setting,
            input: changed,
            mode,
        }
    };
    let halvings = |from: usize, floor: usize| -> Vec<usize> {
        std::iter::successors(Some(from / 2), |v| Some(v / 2))
            .take_while(|&v| v >= floor.max(1))
            .collect()
    };
    match knob {
        Knob::MicroBatch if grpo => {
            let g = input.group_size.max(1);
            (1..input.pass_rows())
                .rev()
                .filter(|d| d.is_multiple_of(g) && input.update_rows.is_multiple_of(*d))
                .map(|d| {
                    with(format!("grpo.micro_batch_size = {d}"), &|i| {
                        i.micro_batch_size = d
                    })
                })
                .collect()
        }
        Knob::MicroBatch => Vec::new(),
        Knob::RowsPerUpdate if grpo => {
            // Fewer whole groups per update is what micro-batches give
            // without changing the recipe; a mini-batch is suggested only
            // below a group (splitting it: each row then runs its prompt).
            let all = input.prompts_per_step * input.group_size;
            (1..input.update_rows.min(input.group_size))
                .rev()
                .filter(|d| all.is_multiple_of(*d))
                .map(|d| {
                    with(format!("grpo.mini_batch_size = {d}"), &|i| {
                        i.update_rows = d;
                        i.mini_batch_size = d;
                        i.micro_batch_size = 0;
                    })
                })
                .collect()
        }
        Knob::RowsPerUpdate => {
            let (batch, accum) = (input.update_rows, input.grad_accum);
            (1..batch)
                .rev()
                .filter(|b| batch.is_multiple_of(*b))
                .map(|b| {
                    let k = accum * batch / b;
                    with(format!("sft.batch = {b}, sft.grad_accum = {k}"), &|i| {
                        i.update_rows = b;
                        i.grad_accum = k;
                    })
                })
                .collect()
        }
        Knob::Checkpointing if !input.checkpointing => vec![with(
            "activation checkpointing per layer (not in vgrpo yet)".into(),
            &|i| i.checkpointing = true,
        )],
        Knob::UseLora if mode == Mode::Full => vec![Candidate {
            setting: format!(
                "LoRA: a [lora] section (rank {}, {} targets{})",
                input.lora.rank,
                input.lora.targets.len(),
                if input.lora.vision { ", vision" } else { "" }
            ),
            input: input.clone(),
            mode: Mode::Lora,
        }],
        Knob::FreezeVision if mode == Mode::Full && !input.freeze_vision => {
            vec![with(format!("{section}.freeze_vision = true"), &|i| {
                i.freeze_vision = true
            })]
        }
        Knob::LoraRank if mode == Mode::Lora => halvings(input.lora.rank, 1)
            .into_iter()
            .map(|r| with(format!("lora.rank = {r}"), &|i| i.lora.rank = r))
            .collect(),
        Knob::Frames => {
            let (frames, budget) = (input.video.max_frames, input.video.token_budget);
            let mut out: Vec<Candidate> = Vec::new();
            for eighths in [6, 4, 2, 1] {
                let f = (frames * eighths / 8).max(2);
                if f >= frames || out.iter().any(|c| c.input.video.max_frames == f) {
                    continue;
                }
                let b = (budget * f / frames).max(f.div_ceil(2));
                let mut changed = input.clone();
                changed.video.max_frames = f;
                changed.video.min_frames = changed.video.min_frames.min(f);
                changed.video.token_budget = b;
                if changed.reshape_prompt().is_ok() {
                    out.push(Candidate {
                        setting: format!("video.max_frames = {f}, video.token_budget = {b}"),
                        input: changed,
                        mode,
                    });
                }
            }
            out
        }
        Knob::MaxNewTokens if grpo => halvings(input.max_new_tokens, 16)
            .into_iter()
            .map(|m| {
                with(format!("grpo.max_new_tokens = {m}"), &|i| {
                    i.max_new_tokens = m
                })
            })
            .collect(),
        Knob::PromptsPerStep if grpo => halvings(input.prompts_per_step, 1)
            .into_iter()
            .map(|p| {
                with(format!("grpo.prompts_per_step = {p}"), &|i| {
                    i.set_prompts_per_step(p)
                })
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// The index of the first candidate that fits, else the last.
fn pick(candidates: &[Candidate], device: u64) -> Option<(usize, u64)> {
    let totals: Vec<u64> = candidates
        .iter()
        .map(|c| estimate(&c.input, c.mode).total)
        .collect();
    let index = totals
        .iter()
        .position(|&t| t <= device)
        .or(totals.len().checked_sub(1))?;
    Some((index, totals[index]))
}

/// Each knob's change that helps, at its least drastic value that fits
/// `device` bytes (its most drastic when none does), ordered by the total
/// it gives (the largest effect first).
pub fn suggestions(input: &PlanInput, mode: Mode, device: u64) -> Vec<Change> {
    let now = estimate(input, mode).total;
    let mut out: Vec<Change> = knobs(input.stage)
        .iter()
        .filter_map(|&knob| {
            let cands = candidates(knob, input, mode);
            let (index, total) = pick(&cands, device)?;
            (total < now).then(|| Change {
                knob,
                setting: cands[index].setting.clone(),
                total,
                fits: total <= device,
            })
        })
        .collect();
    out.sort_by_key(|c| c.total);
    out
}

/// The input and mode after the knob values `steps` (each an index into
/// that knob's candidates at that point), and the settings they are.
fn apply(input: &PlanInput, mode: Mode, steps: &[(Knob, usize)]) -> (PlanInput, Mode, Vec<String>) {
    let (mut state, mut mode, mut settings) = (input.clone(), mode, Vec::new());
    for &(knob, index) in steps {
        let mut cands = candidates(knob, &state, mode);
        if cands.is_empty() {
            continue;
        }
        let c = cands.swap_remove(index.min(cands.len() - 1));
        settings.push(c.setting);
        state = c.input;
        mode = c.mode;
    }
    (state, mode, settings)
}

fn total_after(input: &PlanInput, mode: Mode, steps: &[(Knob, usize)]) -> u64 {
    let (state, mode, _) = apply(input, mode, steps);
    estimate(&state, mode).total
}

/// Removes each change (last first) without which the rest still fit.
fn drop_unneeded(input: &PlanInput, mode: Mode, device: u64, steps: &mut Vec<(Knob, usize)>) {
    for i in (0..steps.len()).rev() {
        let mut without = steps.clone();
        without.remove(i);
        if !without.is_empty() && total_after(input, mode, &without) <= device {
            *steps = without;
        }
    }
}

/// Changes that together fit `device` bytes: the knobs in [`knobs`] order
/// (the update's size and checkpointing first, what changes the recipe —
/// the frames, the completion length, the prompts per step — last), each
/// taken as far as needed, until the plan fits; then every change that is
/// not needed is dropped and every other backed off to its least drastic
/// value that still fits, the recipe's first (fewer rows per update cost
/// time, not results). `None` when the plan
/// already fits or no knob helps.
pub fn combination(input: &PlanInput, mode: Mode, device: u64) -> Option<Combination> {
    if estimate(input, mode).total <= device {
        return None;
    }
    let mut steps: Vec<(Knob, usize)> = Vec::new();
    let mut total = estimate(input, mode).total;
    for knob in knobs(input.stage) {
        let (state, state_mode, _) = apply(input, mode, &steps);
        let cands = candidates(knob, &state, state_mode);
        let Some((index, after)) = pick(&cands, device) else {
            continue;
        };
        if after < total {
            steps.push((knob, index));
            total = after;
        }
        if total <= device {
            break;
        }
    }
    if steps.is_empty() {
        return None;
    }
    if total <= device {
        // Drop what is not needed, then back off what is: the changes to
        // the recipe (last in the order) first, so the update's size takes
        // what is left; then drop what the others made moot (a
        // micro-batch above a smaller mini-batch).
        drop_unneeded(input, mode, device, &mut steps);
        for i in (0..steps.len()).rev() {
            for j in 0..steps[i].1 {
                let mut lighter = steps.clone();
                lighter[i].1 = j;
                if total_after(input, mode, &lighter) <= device {
                    steps = lighter;
                    break;
                }
            }
        }
    }
    if total <= device {
        drop_unneeded(input, mode, device, &mut steps);
    }
    let (state, state_mode, settings) = apply(input, mode, &steps);
    let total = estimate(&state, state_mode).total;
    Some(Combination {
        settings,
        total,
        fits: total <= device,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::estimate::RUNTIME_RESERVE;

    fn tiny_input() -> PlanInput {
        crate::plan::input::tiny_input(
            "[grpo]\nprompts_per_step = 4\ngroup_size = 4\nmax_new_tokens = 64\n",
        )
    }

    #[test]
    fn suggestions_are_ordered_by_effect_and_each_helps() {
        let input = tiny_input();
        let now = estimate(&input, Mode::Full).total;
        let device = RUNTIME_RESERVE + (now - RUNTIME_RESERVE) / 2;
        let changes = suggestions(&input, Mode::Full, device);
        assert!(!changes.is_empty());
        assert!(changes.windows(2).all(|w| w[0].total <= w[1].total));
        assert!(changes.iter().all(|c| c.total < now));
        assert!(changes.iter().all(|c| c.fits == (c.total <= device)));
        // A fitting value is the least drastic that fits: the next larger
        // mini-batch it may suggest (below a group) would not.
        if let Some(rows) = changes
            .iter()
            .find(|c| c.knob == Knob::RowsPerUpdate && c.fits)
        {
            let d: usize = rows.setting.rsplit(' ').next().unwrap().parse().unwrap();
            let below = input.update_rows.min(input.group_size);
            let larger = (d + 1..below).find(|x| (input.update_rows).is_multiple_of(*x));
            if let Some(larger) = larger {
                let mut i = input.clone();
                i.update_rows = larger;
                assert!(estimate(&i, Mode::Full).total > device);
            }
        }
    }

    #[test]
    fn a_combination_fits_and_needs_each_of_its_changes() {
        let input = tiny_input();
        let now = estimate(&input, Mode::Full).total;
        assert!(combination(&input, Mode::Full, now).is_none());
        let device = RUNTIME_RESERVE + (now - RUNTIME_RESERVE) / 3;
        let combo = combination(&input, Mode::Full, device).unwrap();
        assert!(combo.fits, "{combo:?}");
        assert!(combo.total <= device);
        assert!(!combo.settings.is_empty());
    }

    #[test]
    fn frames_and_budget_scale_together() {
        let input = tiny_input();
        let cands = candidates(Knob::Frames, &input, Mode::Full);
        let frames: Vec<usize> = cands.iter().map(|c| c.input.video.max_frames).collect();
        assert_eq!(frames, vec![48, 32, 16, 8]);
        assert_eq!(cands[1].input.video.token_budget, 1024);
        assert!(cands[1].input.prompt.visual_tokens < input.prompt.visual_tokens);
        // Prompts per step keep the whole-step update.
        let cands = candidates(Knob::PromptsPerStep, &input, Mode::Full);
        assert_eq!(cands[0].input.prompts_per_step, 2);
        assert_eq!(cands[0].input.update_rows, 8);
    }
}

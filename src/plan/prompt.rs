//! How long one judging prompt is, and what its video is to the vision
//! tower: the token and patch counts every other term of the plan scales
//! with.
//!
//! The visual tokens come from the same sizing rule the loader applies
//! ([`crate::video::slowfast::plan_sizes`]): `video.max_frames` frames of
//! a source of the given size, all slow (the worst case for the vision
//! tower's attention: slow frames are the large ones), scaled to fit
//! `video.token_budget`. The frame grid of the clip is then the model's:
//! `tokens = groups × cells`, one temporal group per `temporal_patch_size`
//! frames, `merge²` patches per cell.

use crate::model::config::{Arch, QwenVlConfig};
use crate::model::position::{Grid, frame_segments, window_index};
use crate::video::VideoConfig;
use crate::video::slowfast::{BudgetError, TokenBudget, plan_sizes};

/// Text tokens of a prompt besides its video: the chat template, the
/// judging instructions of `text/prompt.rs` (about 150 Qwen tokens for
/// the longest dimension), the video's generation prompt and the
/// assistant header. An assumption (the plan has no tokenizer); a
/// calibration reads the real length off `vgrpo rollout`'s prompts.
pub const PROMPT_TEXT_TOKENS: usize = 256;

/// Qwen3-VL's text around each temporal group: `<12.3 seconds>` (7 Qwen
/// tokens: `<`, three digits and the point, ` seconds`, `>`) plus
/// `<|vision_start|>` and `<|vision_end|>`. Qwen2.5-VL brackets the whole
/// video once (counted in [`PROMPT_TEXT_TOKENS`]).
pub const QWEN3_GROUP_TOKENS: usize = 9;

/// One prompt's token and patch counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromptShape {
    /// Frames sampled (`video.max_frames`).
    pub frames: usize,
    /// Temporal groups: `ceil(frames / temporal_patch_size)`.
    pub groups: usize,
    /// One frame's size in visual tokens (merged patches), `cols × rows`.
    pub cells: [usize; 2],
    /// Visual tokens: `groups × cols × rows`.
    pub visual_tokens: usize,
    /// Text tokens: [`PROMPT_TEXT_TOKENS`] + Qwen3-VL's
    /// `groups × QWEN3_GROUP_TOKENS`.
    pub text_tokens: usize,
    /// Patches through the vision tower: `visual_tokens × merge²`.
    pub patches: usize,
    /// `Σ segment²` over the attention segments of a full-attention
    /// vision block (one segment per temporal group).
    pub full_attention_pairs: u64,
    /// `Σ segment²` of a Qwen2.5-VL window block (its windows of
    /// `window_size` pixels); equal to `full_attention_pairs` for
    /// Qwen3-VL, whose blocks all attend within a temporal group.
    pub window_attention_pairs: u64,
}

impl PromptShape {
    /// The prompt `video` gives a `width × height` source on `model`.
    pub fn of(
        model: &QwenVlConfig,
        video: &VideoConfig,
        [width, height]: [u32; 2],
    ) -> Result<PromptShape, BudgetError> {
        let v = &model.vision;
        let merge = v.spatial_merge_size;
        let side = (v.patch_size * merge) as u32;
        let budget = TokenBudget {
            max_tokens: video.token_budget,
            fast_ratio: f64::from(video.fast_token_ratio),
            token_side: side,
        };
        let frames = video.max_frames;
        let sizes = plan_sizes(width, height, frames, 0, &budget)?;
        let (cols, rows) = (sizes.slow.cols as usize, sizes.slow.rows as usize);
        let groups = frames.div_ceil(v.temporal_patch_size);
        let grid = Grid {
            t: groups,
            h: rows * merge,
            w: cols * merge,
        };
        let pairs = |segments: &[(usize, usize)]| -> u64 {
            segments
                .iter()
                .map(|&(start, end)| ((end - start) as u64).pow(2))
                .sum()
        };
        let full_attention_pairs = pairs(&frame_segments(&[grid]));
        let window_attention_pairs = match model.arch {
            Arch::Qwen25Vl => pairs(&window_index(&[grid], merge, v.window_size, v.patch_size).1),
            Arch::Qwen3Vl => full_attention_pairs,
        };
        let visual_tokens = groups * cols * rows;
        let text_tokens = PROMPT_TEXT_TOKENS
            + match model.arch {
                Arch::Qwen3Vl => groups * QWEN3_GROUP_TOKENS,
                Arch::Qwen25Vl => 0,
            };
        Ok(PromptShape {
            frames,
            groups,
            cells: [cols, rows],
            visual_tokens,
            text_tokens,
            patches: visual_tokens * v.merge_unit(),
            full_attention_pairs,
            window_attention_pairs,
        })
    }

    /// Prompt length L: text plus visual tokens.
    pub fn tokens(&self) -> usize {
        self.text_tokens + self.visual_tokens
    }

    /// `Σ segment²` of vision block `block`: window attention unless the
    /// block is one of Qwen2.5-VL's `fullatt_block_indexes`.
    pub fn attention_pairs(&self, model: &QwenVlConfig, block: usize) -> u64 {
        if model.arch == Arch::Qwen25Vl && !model.vision.fullatt_block_indexes.contains(&block) {
            self.window_attention_pairs
        } else {
            self.full_attention_pairs
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn model(name: &str) -> QwenVlConfig {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/models");
        QwenVlConfig::from_file(&dir.join(name)).unwrap()
    }

    #[test]
    fn a_720p_clip_fills_the_default_budget_of_qwen3_vl() {
        // 64 frames of 1280×720 at 32 px per token: the widest grid whose
        // 64·cols·rows / 2 ≤ 2048 is 10 × 6 (aspect 0.5625 → rows 6):
        // 32 groups × 60 = 1920 tokens, 7680 patches of 16 px.
        let shape =
            PromptShape::of(&model("qwen3-vl-8b"), &VideoConfig::default(), [1280, 720]).unwrap();
        assert_eq!((shape.frames, shape.groups, shape.cells), (64, 32, [10, 6]));
        assert_eq!(shape.visual_tokens, 1920);
        assert_eq!(shape.patches, 7680);
        assert_eq!(shape.text_tokens, 256 + 32 * 9);
        assert_eq!(shape.tokens(), 1920 + 544);
        // Each group's 20 × 12 = 240 patches attend to each other.
        assert_eq!(shape.full_attention_pairs, 32 * 240 * 240);
        assert_eq!(shape.window_attention_pairs, shape.full_attention_pairs);
    }

    #[test]
    fn qwen25_vl_windows_are_eight_patches_wide() {
        // 28 px per token: 64 frames of 1280×720 → 10 × 6 cells again
        // (cols·rows ≤ 2048 / 32); windows of 112 px = 4 × 4 cells = 64
        // patches.
        let m = model("qwen2.5-vl-7b");
        let shape = PromptShape::of(&m, &VideoConfig::default(), [1280, 720]).unwrap();
        let [cols, rows] = shape.cells;
        assert_eq!((cols, rows, shape.visual_tokens), (10, 6, 1920));
        assert_eq!(shape.text_tokens, 256);
        // Full-width windows of 4 × 4 cells; the last column/row of
        // windows is cut by the grid's edge.
        let win = |n: usize| -> Vec<usize> {
            let mut v = vec![4; n / 4];
            if !n.is_multiple_of(4) {
                v.push(n % 4);
            }
            v
        };
        let per_group: u64 = win(rows)
            .iter()
            .flat_map(|&r| {
                win(cols)
                    .into_iter()
                    .map(move |c| ((r * c * 4) as u64).pow(2))
            })
            .sum();
        assert_eq!(
            shape.window_attention_pairs,
            shape.groups as u64 * per_group
        );
        assert_eq!(
            shape.full_attention_pairs,
            shape.groups as u64 * ((cols * rows * 4) as u64).pow(2)
        );
        // Blocks 7, 15, 23, 31 attend over whole groups.
        assert_eq!(shape.attention_pairs(&m, 7), shape.full_attention_pairs);
        assert_eq!(shape.attention_pairs(&m, 0), shape.window_attention_pairs);
    }
}

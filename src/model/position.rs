//! Position bookkeeping computed on the host: the 3-D (t, h, w) M-RoPE ids of
//! the language model, the vision tower's patch coordinates, Qwen2.5-VL's
//! window order and Qwen3-VL's position-table interpolation.
//!
//! These mirror transformers 5's `get_rope_index`, `get_vision_position_ids`,
//! `get_vision_window_index` and `get_vision_interpolation_indices_and_weights`
//! (`vision_utils.py`); they are plain index arithmetic, kept out of the
//! tensor code so they can be tested on hand-made grids.

use super::config::Arch;
use super::error::{ModelError, Result};

/// Token type as in HF's `mm_token_type_ids`.
pub const TOKEN_TEXT: i64 = 0;
pub const TOKEN_IMAGE: i64 = 1;
pub const TOKEN_VIDEO: i64 = 2;

/// A video's patch grid: temporal groups, patch rows, patch columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grid {
    pub t: usize,
    pub h: usize,
    pub w: usize,
}

impl Grid {
    pub fn patches(&self) -> usize {
        self.t * self.h * self.w
    }

    /// Language-model tokens after `merge x merge` spatial merging.
    pub fn tokens(&self, merge: usize) -> usize {
        self.patches() / (merge * merge)
    }
}

/// Position ids `[3][batch][len]` (t, h, w) plus, per row, the offset of the
/// next text position from the row's token count (HF's `rope_deltas`), which
/// decoding continues from.
#[derive(Debug, Clone, PartialEq)]
pub struct RopePositions {
    pub ids: [Vec<Vec<i64>>; 3],
    pub next_position: Vec<i64>,
}

/// How video groups are laid out in the prompt.
#[derive(Debug, Clone, Copy)]
pub struct RopeLayout {
    pub arch: Arch,
    pub spatial_merge_size: usize,
    pub tokens_per_second: f64,
}

/// HF `get_rope_index` for prompts containing videos (text gets 1-D positions
/// repeated on the three axes; each run of video tokens gets a 3-D grid).
///
/// * Qwen2.5-VL: one run per video; temporal ids are
///   `trunc(i * tokens_per_second * second_per_grid_ts)`.
/// * Qwen3-VL: the processor writes every temporal group as its own run
///   (between timestamp text), so each run takes one frame group of the
///   video's grid and all its tokens share the temporal id.
///
/// After a run the text position advances by `max(h, w) / merge`, as
/// transformers 5.23 does. (Qwen's own code and transformers 4 continue at
/// the largest position of the run + 1, which differs for Qwen2.5-VL when the
/// temporal ids outgrow the spatial ones; the reference here is 5.23.)
/// Padded positions (`attention_mask == 0`) get 0; text-only rows get
/// mask-aware positions (HF uses a plain `arange` when there is no video).
/// With `shared_across_rows`, every row holds the same videos (one list of
/// grids for all rows).
pub fn rope_index(
    layout: RopeLayout,
    token_types: &[Vec<i64>],
    attention_mask: &[Vec<bool>],
    video_grids: &[Grid],
    second_per_grid_ts: &[f32],
    shared_across_rows: bool,
) -> Result<RopePositions> {
    let merge = layout.spatial_merge_size;
    // Qwen3-VL: one grid per temporal group, each with t = 1.
    let groups: Vec<(Grid, f32)> = match layout.arch {
        Arch::Qwen25Vl => video_grids
            .iter()
            .enumerate()
            .map(|(i, g)| {
                let s = second_per_grid_ts.get(i).copied().unwrap_or(1.0);
                (*g, s)
            })
            .collect(),
        Arch::Qwen3Vl => video_grids
            .iter()
            .flat_map(|g| std::iter::repeat_n(Grid { t: 1, ..*g }, g.t))
            .map(|g| (g, 1.0))
            .collect(),
    };
    let mut next_group = 0usize;
    let batch = token_types.len();
    let len = token_types.first().map_or(0, Vec::len);
    let mut ids = [
        vec![vec![0i64; len]; batch],
        vec![vec![0i64; len]; batch],
        vec![vec![0i64; len]; batch],
    ];
    let mut next_position = Vec::with_capacity(batch);
    for (b, (types, mask)) in token_types.iter().zip(attention_mask).enumerate() {
        if types.len() != len || mask.len() != len {
            return Err(ModelError::Input(format!(
                "row {b}: token types / mask lengths {} / {} differ from {len}",
                types.len(),
                mask.len()
            )));
        }
        if shared_across_rows {
            next_group = 0;
        }
        let kept: Vec<usize> = (0..len).filter(|&i| mask[i]).collect();
        let mut pos: Vec<[i64; 3]> = Vec::with_capacity(kept.len());
        let mut current = 0i64;
        let mut i = 0;
        while i < kept.len() {
            let kind = types[kept[i]];
            let mut end = i;
            while end < kept.len() && types[kept[end]] == kind {
                end += 1;
            }
            let run = end - i;
            if kind == TOKEN_TEXT {
                pos.extend((0..run as i64).map(|k| [current + k; 3]));
                current += run as i64;
            } else if kind == TOKEN_VIDEO {
                let (grid, seconds) = groups.get(next_group).ok_or_else(|| {
                    ModelError::Input(format!("row {b}: more video runs than video grids"))
                })?;
                next_group += 1;
                let (gt, gh, gw) = (grid.t, grid.h / merge, grid.w / merge);
                if gt * gh * gw != run {
                    return Err(ModelError::Input(format!(
                        "row {b}: a video run has {run} tokens but its grid {grid:?} gives {}",
                        gt * gh * gw
                    )));
                }
                // f32 as in HF (tokens_per_second * second_per_grid_ts tensor).
                let interval = match layout.arch {
                    Arch::Qwen25Vl => (layout.tokens_per_second as f32) * seconds,
                    Arch::Qwen3Vl => 1.0,
                };
                for ti in 0..gt {
                    let temporal = (ti as f32 * interval) as i64 + current;
                    for hi in 0..gh {
                        for wi in 0..gw {
                            pos.push([temporal, current + hi as i64, current + wi as i64]);
                        }
                    }
                }
                current += gh.max(gw) as i64;
            } else {
                return Err(ModelError::Input(format!(
                    "row {b}: token type {kind} is not supported (text 0 and video 2 are)"
                )));
            }
            i = end;
        }
        let max = pos
            .iter()
            .flat_map(|p| p.iter().copied())
            .max()
            .unwrap_or(-1);
        next_position.push(max + 1 - kept.len() as i64);
        for (k, &col) in kept.iter().enumerate() {
            for (axis, axis_ids) in ids.iter_mut().enumerate() {
                axis_ids[b][col] = pos[k][axis];
            }
        }
    }
    if !shared_across_rows && next_group != groups.len() {
        return Err(ModelError::Input(format!(
            "{next_group} video token runs for {} video grid groups",
            groups.len()
        )));
    }
    Ok(RopePositions { ids, next_position })
}

/// Each patch's (row, column) inside its frame, in the processor's patch
/// order: frames, then `merge x merge` blocks in raster order, then the
/// patches inside a block. Shape: `[sum of t*h*w]`.
pub fn vision_patch_coords(grids: &[Grid], merge: usize) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    for g in grids {
        for _ in 0..g.t {
            for bh in 0..g.h / merge {
                for bw in 0..g.w / merge {
                    for ih in 0..merge {
                        for iw in 0..merge {
                            out.push((bh * merge + ih, bw * merge + iw));
                        }
                    }
                }
            }
        }
    }
    out
}

/// Attention segments `[start, end)` of the vision tower's full-attention
/// blocks: every frame group attends within itself (HF's `cu_seqlens`).
pub fn frame_segments(grids: &[Grid]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut start = 0;
    for g in grids {
        for _ in 0..g.t {
            out.push((start, start + g.h * g.w));
            start += g.h * g.w;
        }
    }
    out
}

/// Qwen2.5-VL window attention: the order in which merged units (groups of
/// `merge^2` patches) are laid out so each window is contiguous, and the
/// windows' patch segments in that order (empty windows dropped, as HF's
/// `unique_consecutive` does).
pub fn window_index(
    grids: &[Grid],
    merge: usize,
    window_size: usize,
    patch_size: usize,
) -> (Vec<usize>, Vec<(usize, usize)>) {
    let win = window_size / merge / patch_size;
    let unit = merge * merge;
    let mut order = Vec::new();
    let mut segments = Vec::new();
    let mut base = 0;
    let mut seg_start = 0;
    for g in grids {
        let (lh, lw) = (g.h / merge, g.w / merge);
        // HF pads by a full window even when the size divides evenly.
        let nh = (lh + win - lh % win) / win;
        let nw = (lw + win - lw % win) / win;
        for t in 0..g.t {
            for wh in 0..nh {
                for ww in 0..nw {
                    let mut count = 0;
                    for ih in 0..win {
                        for iw in 0..win {
                            let (r, c) = (wh * win + ih, ww * win + iw);
                            if r < lh && c < lw {
                                order.push(base + t * lh * lw + r * lw + c);
                                count += 1;
                            }
                        }
                    }
                    if count > 0 {
                        segments.push((seg_start, seg_start + count * unit));
                        seg_start += count * unit;
                    }
                }
            }
        }
        base += g.t * lh * lw;
    }
    (order, segments)
}

/// Qwen3-VL: bilinear (align_corners = true) taps into the `side x side`
/// learned position table for every patch, in patch order. Returns 4 indices
/// and 4 weights per patch.
pub fn position_table_taps(grids: &[Grid], merge: usize, side: usize) -> (Vec<i64>, Vec<f32>) {
    let axis = |index: usize, size: usize| -> ([usize; 2], [f32; 2]) {
        // f32 arithmetic as in HF: src = index * (side - 1) / max(size - 1, 1).
        let src = index as f32 * (side as f32 - 1.0) / ((size.max(2) - 1) as f32);
        let floor = src.floor();
        let taps = [floor as usize, floor as usize + 1].map(|t| t.min(side - 1));
        let d0 = (src - floor).abs();
        let d1 = (src - floor - 1.0).abs();
        (taps, [(1.0 - d0).max(0.0), (1.0 - d1).max(0.0)])
    };
    let mut indices = Vec::new();
    let mut weights = Vec::new();
    for g in grids {
        let coords = vision_patch_coords(&[*g], merge);
        for (row, col) in coords {
            let (ht, hw) = axis(row, g.h);
            let (wt, ww) = axis(col, g.w);
            for a in 0..2 {
                for b in 0..2 {
                    indices.push((ht[a] * side + wt[b]) as i64);
                    weights.push(hw[a] * ww[b]);
                }
            }
        }
    }
    (indices, weights)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(arch: Arch) -> RopeLayout {
        RopeLayout {
            arch,
            spatial_merge_size: 2,
            tokens_per_second: 2.0,
        }
    }

    #[test]
    fn qwen25_positions_follow_hf_rules() {
        // text(2) video(grid t=2,h=4,w=6 -> 2*2*3 = 12 tokens) text(2)
        let types = vec![[vec![0, 0], vec![2; 12], vec![0, 0]].concat()];
        let mask = vec![vec![true; 16]];
        let grid = Grid { t: 2, h: 4, w: 6 };
        let p = rope_index(
            layout(Arch::Qwen25Vl),
            &types,
            &mask,
            &[grid],
            &[1.5],
            false,
        )
        .unwrap();
        // temporal: trunc(i * 2 * 1.5) + 2 = 2, 5
        assert_eq!(&p.ids[0][0][..4], &[0, 1, 2, 2]);
        assert_eq!(p.ids[0][0][2 + 6], 5);
        // h/w start at 2; rows 0..2, cols 0..3
        assert_eq!(&p.ids[1][0][2..8], &[2, 2, 2, 3, 3, 3]);
        assert_eq!(&p.ids[2][0][2..8], &[2, 3, 4, 2, 3, 4]);
        // text after the video continues at 2 + max(2, 3) = 5
        assert_eq!(&p.ids[0][0][14..], &[5, 6]);
        // delta: max position 6 + 1 - 16 tokens
        assert_eq!(p.next_position, vec![-9]);
    }

    #[test]
    fn qwen3_splits_videos_into_frame_groups_and_skips_padding() {
        // pad, text, [frame 0: 2 tokens], text, [frame 1: 2 tokens]
        let types = vec![vec![0, 0, 2, 2, 0, 2, 2]];
        let mask = vec![vec![false, true, true, true, true, true, true]];
        let grid = Grid { t: 2, h: 2, w: 4 };
        let p = rope_index(layout(Arch::Qwen3Vl), &types, &mask, &[grid], &[], false).unwrap();
        assert_eq!(p.ids[0][0], vec![0, 0, 1, 1, 3, 4, 4]);
        assert_eq!(p.ids[2][0], vec![0, 0, 1, 2, 3, 4, 5]);
        assert_eq!(p.ids[1][0], vec![0, 0, 1, 1, 3, 4, 4]);
    }

    #[test]
    fn window_index_pads_like_hf() {
        // llm grid 3x4, window 2 merged units: windows (2x2),(2x2),(1x2),(1x2)
        let g = Grid { t: 1, h: 6, w: 8 };
        let (order, segs) = window_index(&[g], 2, 56, 14);
        assert_eq!(order, vec![0, 1, 4, 5, 2, 3, 6, 7, 8, 9, 10, 11]);
        assert_eq!(segs, vec![(0, 16), (16, 32), (32, 40), (40, 48)]);
    }

    #[test]
    fn position_taps_hit_the_table_corners() {
        let g = Grid { t: 1, h: 2, w: 2 };
        let (idx, w) = position_table_taps(&[g], 2, 4);
        // patch (0,0) -> table (0,0) with weight 1; patch (1,1) -> (3,3).
        assert_eq!(idx[0], 0);
        assert!((w[0] - 1.0).abs() < 1e-6);
        let last = &idx[12..16];
        let lw = &w[12..16];
        let total: f32 = last
            .iter()
            .zip(lw)
            .filter(|(i, _)| **i == 15)
            .map(|(_, w)| w)
            .sum();
        assert!((total - 1.0).abs() < 1e-6);
    }
}

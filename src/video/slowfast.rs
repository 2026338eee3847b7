//! SlowFast frame selection and the token budget (paper §4.2.1, after
//! Keye-VL). Pure: no I/O, no FFmpeg.
//!
//! ## Selection
//! The first sampled frame is slow. Every later frame is compared with the
//! most recent slow frame; if their similarity *exceeds* the threshold
//! (default 0.90) it is fast, otherwise it becomes the new slow frame. A
//! similarity exactly at the threshold is therefore slow.
//!
//! ## Similarity (the measure we chose)
//! Both frames are area-resized to a 112x112 thumbnail (ignoring aspect; both
//! get the same treatment) and cut into an 8x8 grid of 14x14-pixel patches,
//! 14 being the model's vision patch size. Pixel values are mapped to
//! `[-1, 1]` (`x / 127.5 - 1`, so black and white point in opposite
//! directions and a change of brightness counts as a change). For the two
//! vectors `a`, `b` of a patch (14·14·3 = 588 values each):
//!
//! ```text
//! s(a, b) = (2 a·b + c) / (|a|² + |b|² + c),   c = 0.04 · 588
//! ```
//!
//! This is cosine similarity made magnitude-aware and stable: it equals
//! `cos(a, b)` when `|a| = |b|`, is exactly 1 for identical patches, lies in
//! `[-1, 1]`, and the SSIM-style constant `c` keeps nearly flat mid-grey
//! patches (vectors near zero, where a plain cosine is noise) from swinging
//! between -1 and 1. Small changes barely count: a flat mid-grey patch
//! brightened by 8 grey levels scores about 0.90, by 3 levels 0.99, while two
//! unrelated textures of ±25 levels around grey score about 0.33. The frame
//! similarity is the mean of `s` over the 64 patches.
//!
//! ## Sizes and tokens
//! Token count of one frame of `w`x`h` pixels, both multiples of the token
//! side `c` = patch size × spatial merge (Qwen2-VL/2.5-VL: 14·2 = 28,
//! Qwen3-VL: 16·2 = 32): `(w/c)·(h/c)` merged patches; the temporal patch
//! spans 2 frames, so a frame costs half of that. Total visual tokens of a
//! clip:
//!
//! ```text
//! tokens = ceil( Σ_frames (w_i/c)·(h_i/c) / 2 )
//! ```
//!
//! Slow frames share one size, fast frames another. The fast grid is the
//! slow grid scaled by `sqrt(fast_ratio)` per side (rounded, at least one
//! cell, at most the slow grid), so a fast frame costs about `fast_ratio`
//! (Keye-VL: ≈30%) of a slow one. The slow grid is the largest one with the
//! source's aspect ratio (on the token grid, and no larger than the
//! source rounded to that grid) whose total fits the budget.

use super::frame::{Frame, FrameKind};
use super::resize::{ResizeError, resize};

/// Side of the square thumbnail frames are compared on.
pub const THUMB_SIDE: u32 = 112;
/// Side of a comparison patch (the vision encoder's patch size).
pub const PATCH_SIDE: u32 = 14;
/// Pixels per side of one visual token of Qwen3-VL (16-pixel patches
/// merged 2x2), the embedded default model's family. Other families set
/// their own side through [`TokenBudget::token_side`].
pub const QWEN3_VL_TOKEN_SIDE: u32 = 32;
/// Per-value stabiliser of the patch similarity (see module docs).
const STABILISER_PER_VALUE: f64 = 0.04;

/// Values in one comparison patch: 14·14 pixels × RGB.
const PATCH_VALUES: usize = (PATCH_SIDE * PATCH_SIDE * 3) as usize;
/// Independent partial sums per patch; lets the compiler use SIMD lanes
/// while the summation order (and so the result) stays fixed.
const LANES: usize = 8;

/// A frame reduced for comparison: 112x112 RGB values in `[-1, 1]`, stored
/// patch by patch (8x8 patches, each 14 rows of 14 RGB pixels, contiguous).
#[derive(Debug, Clone, PartialEq)]
pub struct Thumbnail {
    values: Vec<f32>,
}

impl Thumbnail {
    pub fn of(frame: &Frame) -> Result<Thumbnail, ResizeError> {
        let small = resize(frame, THUMB_SIDE, THUMB_SIDE)?;
        let (side, patches) = (PATCH_SIDE as usize, (THUMB_SIDE / PATCH_SIDE) as usize);
        let row = THUMB_SIDE as usize * 3;
        let mut values = Vec::with_capacity(small.rgb.len());
        for py in 0..patches {
            for px in 0..patches {
                for y in py * side..(py + 1) * side {
                    let start = y * row + px * side * 3;
                    values.extend(
                        small.rgb[start..start + side * 3]
                            .iter()
                            .map(|&v| f32::from(v) / 127.5 - 1.0),
                    );
                }
            }
        }
        Ok(Thumbnail { values })
    }
}

/// Mean patch similarity of two thumbnails (see module docs), in `[-1, 1]`.
pub fn similarity(a: &Thumbnail, b: &Thumbnail) -> f64 {
    let c = STABILISER_PER_VALUE * PATCH_VALUES as f64;
    let mut total = 0.0;
    let mut count = 0u32;
    for (pa, pb) in a
        .values
        .chunks_exact(PATCH_VALUES)
        .zip(b.values.chunks_exact(PATCH_VALUES))
    {
        let (mut dot, mut na, mut nb) = ([0f32; LANES], [0f32; LANES], [0f32; LANES]);
        let (ca, cb) = (pa.chunks_exact(LANES), pb.chunks_exact(LANES));
        let (ra, rb) = (ca.remainder(), cb.remainder());
        for (xa, xb) in ca.zip(cb) {
            for l in 0..LANES {
                dot[l] += xa[l] * xb[l];
                na[l] += xa[l] * xa[l];
                nb[l] += xb[l] * xb[l];
            }
        }
        for (l, (&x, &z)) in ra.iter().zip(rb).enumerate() {
            dot[l] += x * z;
            na[l] += x * x;
            nb[l] += z * z;
        }
        let sum = |v: [f32; LANES]| v.iter().map(|&x| f64::from(x)).sum::<f64>();
        total += (2.0 * sum(dot) + c) / (sum(na) + sum(nb) + c);
        count += 1;
    }
    total / f64::from(count)
}

/// One frame's label and its similarity to the slow frame it was compared
/// with (`None` for the first frame).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Decision {
    pub kind: FrameKind,
    pub similarity: Option<f64>,
}

/// The SlowFast rule over `n` frames. `similarity(i, s)` scores frame `i`
/// against slow frame `s < i`; fast iff the score is strictly above
/// `threshold`.
pub fn select(
    n: usize,
    threshold: f64,
    mut similarity: impl FnMut(usize, usize) -> f64,
) -> Vec<Decision> {
    let mut out = Vec::with_capacity(n);
    let mut last_slow = 0;
    for i in 0..n {
        if i == 0 {
            out.push(Decision {
                kind: FrameKind::Slow,
                similarity: None,
            });
            continue;
        }
        let s = similarity(i, last_slow);
        let kind = if s > threshold {
            FrameKind::Fast
        } else {
            last_slow = i;
            FrameKind::Slow
        };
        out.push(Decision {
            kind,
            similarity: Some(s),
        });
    }
    out
}

/// SlowFast selection on frames (thumbnails computed once per frame).
pub fn select_frames(frames: &[Frame], threshold: f64) -> Result<Vec<Decision>, ResizeError> {
    let thumbs = frames
        .iter()
        .map(Thumbnail::of)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(select(frames.len(), threshold, |i, s| {
        similarity(&thumbs[i], &thumbs[s])
    }))
}

/// Visual-token budget settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TokenBudget {
    /// Most visual tokens a clip may use.
    pub max_tokens: usize,
    /// A fast frame's share of a slow frame's tokens, in `(0, 1]`.
    pub fast_ratio: f64,
    /// Pixels per side of one visual token: the model's patch size × spatial
    /// merge.
    pub token_side: u32,
}

/// A frame size in token cells of `side` pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grid {
    pub cols: u32,
    pub rows: u32,
    /// Pixels per side of one cell ([`TokenBudget::token_side`]).
    pub side: u32,
}

impl Grid {
    pub fn width(self) -> u32 {
        self.cols * self.side
    }
    pub fn height(self) -> u32 {
        self.rows * self.side
    }
    /// Merged patches of one frame of this size, `(w/c)·(h/c)`.
    pub fn cells(self) -> usize {
        self.cols as usize * self.rows as usize
    }
}

/// Visual tokens of a clip (module docs): `ceil(Σ cells / 2)`.
pub fn clip_tokens(slow_frames: usize, slow: Grid, fast_frames: usize, fast: Grid) -> usize {
    (slow_frames * slow.cells() + fast_frames * fast.cells()).div_ceil(2)
}

/// The chosen sizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SizePlan {
    pub slow: Grid,
    pub fast: Grid,
    /// Visual tokens of the whole clip.
    pub tokens: usize,
}

impl SizePlan {
    /// The size of a frame of `kind`.
    pub fn grid(&self, kind: FrameKind) -> Grid {
        match kind {
            FrameKind::Slow => self.slow,
            FrameKind::Fast => self.fast,
        }
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BudgetError {
    #[error(
        "a token budget of {budget} cannot hold {frames} frames: even {side}x{side} frames \
         need {needed}"
    )]
    TooSmall {
        budget: usize,
        frames: usize,
        side: u32,
        needed: usize,
    },
    #[error("fast_ratio must be in (0, 1], got {0}")]
    BadRatio(f64),
    #[error("the token side (patch size × spatial merge) must be non-zero")]
    ZeroTokenSide,
    #[error("source size {width}x{height} must be non-zero")]
    EmptySource { width: u32, height: u32 },
}

/// The fast grid that goes with a slow grid: each side scaled by
/// `sqrt(ratio)`, rounded, at least 1, at most the slow side.
pub fn fast_grid(slow: Grid, ratio: f64) -> Grid {
    let f = ratio.sqrt();
    let side = |n: u32| ((f64::from(n) * f).round() as u32).clamp(1, n);
    Grid {
        cols: side(slow.cols),
        rows: side(slow.rows),
        side: slow.side,
    }
}

/// Largest slow grid (aspect of `width`x`height` kept) such that
/// `slow_frames` slow and `fast_frames` fast frames fit the budget.
pub fn plan_sizes(
    width: u32,
    height: u32,
    slow_frames: usize,
    fast_frames: usize,
    budget: &TokenBudget,
) -> Result<SizePlan, BudgetError> {
    if width == 0 || height == 0 {
        return Err(BudgetError::EmptySource { width, height });
    }
    if !(budget.fast_ratio > 0.0 && budget.fast_ratio <= 1.0) {
        return Err(BudgetError::BadRatio(budget.fast_ratio));
    }
    let side = budget.token_side;
    if side == 0 {
        return Err(BudgetError::ZeroTokenSide);
    }
    let aspect = f64::from(height) / f64::from(width);
    let max_cols = (f64::from(width) / f64::from(side)).round().max(1.0) as u32;
    let max_rows = (f64::from(height) / f64::from(side)).round().max(1.0) as u32;
    // Walk down the width; the height follows the aspect ratio. Tall frames
    // are bounded by max_rows, so the walk also covers them.
    for cols in (1..=max_cols).rev() {
        let rows = ((f64::from(cols) * aspect).round() as u32).clamp(1, max_rows);
        let slow = Grid { cols, rows, side };
        let fast = fast_grid(slow, budget.fast_ratio);
        let tokens = clip_tokens(slow_frames, slow, fast_frames, fast);
        if tokens <= budget.max_tokens {
            return Ok(SizePlan { slow, fast, tokens });
        }
    }
    let one = Grid {
        cols: 1,
        rows: 1,
        side,
    };
    Err(BudgetError::TooSmall {
        budget: budget.max_tokens,
        frames: slow_frames + fast_frames,
        side,
        needed: clip_tokens(slow_frames, one, fast_frames, one),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flat(r: u8, g: u8, b: u8) -> Frame {
        Frame {
            timestamp: 0.0,
            width: 56,
            height: 56,
            rgb: [r, g, b].repeat(56 * 56),
        }
    }

    /// A grid of Qwen2.5-VL's 28-pixel cells (the hand checks below).
    fn g(cols: u32, rows: u32) -> Grid {
        Grid {
            cols,
            rows,
            side: 28,
        }
    }

    fn kinds(d: &[Decision]) -> String {
        d.iter()
            .map(|d| match d.kind {
                FrameKind::Slow => 'S',
                FrameKind::Fast => 'F',
            })
            .collect()
    }

    #[test]
    fn rule_at_and_around_the_threshold() {
        // Frame i's similarity to any slow frame is given directly.
        let sims = [f64::NAN, 0.95, 0.90, 0.9000001, 0.8999999, 1.0];
        let d = select(6, 0.90, |i, _| sims[i]);
        // Exactly 0.90 does not exceed 0.90: slow.
        assert_eq!(kinds(&d), "SFSFSF");
        assert_eq!(d[0].similarity, None);
        assert_eq!(d[2].similarity, Some(0.90));
    }

    #[test]
    fn each_frame_is_compared_with_the_latest_slow_frame() {
        let mut asked = Vec::new();
        let d = select(5, 0.5, |i, s| {
            asked.push((i, s));
            if i == 2 { 0.0 } else { 1.0 }
        });
        assert_eq!(kinds(&d), "SFSFF");
        assert_eq!(asked, vec![(1, 0), (2, 0), (3, 2), (4, 2)]);
    }

    #[test]
    fn identical_frames_score_exactly_one() {
        let f = flat(10, 200, 77);
        let t = Thumbnail::of(&f).unwrap();
        assert_eq!(similarity(&t, &t), 1.0);
    }

    #[test]
    fn black_and_white_score_minus_one_ish() {
        let a = Thumbnail::of(&flat(0, 0, 0)).unwrap();
        let b = Thumbnail::of(&flat(255, 255, 255)).unwrap();
        // a = -1, b = +1 everywhere, c = 0.04·588 = 23.52:
        // (2·(-588) + 23.52)/(588 + 588 + 23.52).
        let want = (-2.0 * 588.0 + 23.52) / (2.0 * 588.0 + 23.52);
        assert!((similarity(&a, &b) - want).abs() < 1e-9);
    }

    #[test]
    fn near_grey_patches_are_stable() {
        // Two flat frames 3 levels apart across mid-grey: a plain cosine
        // gives -1; the stabilised score is (-0.163 + 23.52)/(0.163 + 23.52).
        let a = Thumbnail::of(&flat(126, 126, 126)).unwrap();
        let b = Thumbnail::of(&flat(129, 129, 129)).unwrap();
        let d = 1.5f64 / 127.5;
        let want = (-2.0 * 588.0 * d * d + 23.52) / (2.0 * 588.0 * d * d + 23.52);
        assert!((similarity(&a, &b) - want).abs() < 1e-6);
        assert!(want > 0.98);
        // 16 levels apart is a real change.
        let c = Thumbnail::of(&flat(120, 120, 120)).unwrap();
        let e = Thumbnail::of(&flat(136, 136, 136)).unwrap();
        assert!(similarity(&c, &e) < 0.7);
    }

    #[test]
    fn static_clip_is_one_slow_then_fast_and_a_cut_is_slow() {
        let mut frames = vec![flat(200, 30, 30); 5];
        frames.extend(vec![flat(20, 40, 220); 4]);
        let d = select_frames(&frames, 0.9).unwrap();
        assert_eq!(kinds(&d), "SFFFFSFFF");
    }

    #[test]
    fn token_formula_by_hand() {
        let slow = g(8, 6); // 224x168, 48 cells
        let fast = g(4, 3); // 12 cells
        // (2·48 + 5·12) / 2 = 78; odd sums round up.
        assert_eq!(clip_tokens(2, slow, 5, fast), 78);
        assert_eq!(clip_tokens(1, slow, 1, g(1, 1)), 25);
        assert_eq!(slow.width(), 224);
        assert_eq!(slow.height(), 168);
    }

    #[test]
    fn fast_grid_is_about_thirty_percent() {
        let fast = fast_grid(g(16, 12), 0.3);
        // sqrt(0.3) = 0.5477: 16 -> 8.76 -> 9, 12 -> 6.57 -> 7.
        assert_eq!(fast, g(9, 7));
        assert_eq!(fast_grid(g(1, 1), 0.3), g(1, 1));
    }

    #[test]
    fn plan_is_the_largest_that_fits() {
        let budget = TokenBudget {
            max_tokens: 200,
            fast_ratio: 0.3,
            token_side: 28,
        };
        // 640x480 source: up to 23x17 cells; 2 slow + 6 fast frames.
        let plan = plan_sizes(640, 480, 2, 6, &budget).unwrap();
        assert!(plan.tokens <= 200);
        // Hand check: cols 8 -> rows 6 (48 cells), fast 4x3 (12 cells):
        // (96 + 72)/2 = 84 fits; cols 12 -> rows 9 (108), fast 7x5 (35):
        // (216 + 210)/2 = 213 does not; cols 11 -> rows 8 (88), fast 6x4
        // (24): (176 + 144)/2 = 160 fits.
        assert_eq!(plan.slow, g(11, 8));
        assert_eq!(plan.fast, g(6, 4));
        assert_eq!(plan.tokens, 160);
        // One more column would not fit.
        let bigger = g(12, 9);
        assert!(clip_tokens(2, bigger, 6, fast_grid(bigger, 0.3)) > 200);
    }

    #[test]
    fn token_side_follows_the_model() {
        // Qwen3-VL's 32-pixel cells: a 96x64 source is exactly 3x2 cells, so
        // with the whole ratio every frame keeps its size: 16 frames cost
        // 16·6/2 = 48 tokens. On Qwen2.5-VL's 28-pixel grid the same source
        // rounds to 3x2 cells of 84x56.
        let budget = |token_side| TokenBudget {
            max_tokens: 2048,
            fast_ratio: 1.0,
            token_side,
        };
        let plan = plan_sizes(96, 64, 2, 14, &budget(32)).unwrap();
        assert_eq!((plan.slow.width(), plan.slow.height()), (96, 64));
        assert_eq!(plan.fast, plan.slow);
        assert_eq!(plan.tokens, 48);
        let plan = plan_sizes(96, 64, 2, 14, &budget(28)).unwrap();
        assert_eq!((plan.slow.width(), plan.slow.height()), (84, 56));
        assert_eq!(
            plan_sizes(96, 64, 1, 0, &budget(0)),
            Err(BudgetError::ZeroTokenSide)
        );
    }

    #[test]
    fn plan_never_exceeds_the_source_and_budget_holds_everywhere() {
        for (w, h) in [(64, 48), (1920, 1080), (480, 854), (28, 28), (3000, 100)] {
            for frames in [1usize, 2, 7, 16, 64] {
                for slow in [1, frames / 2, frames] {
                    let slow = slow.max(1).min(frames);
                    for max_tokens in [frames, 100, 1000, 16384] {
                        let budget = TokenBudget {
                            max_tokens,
                            fast_ratio: 0.3,
                            token_side: 28,
                        };
                        match plan_sizes(w, h, slow, frames - slow, &budget) {
                            Ok(p) => {
                                assert!(p.tokens <= max_tokens);
                                assert!(p.slow.width() <= (w + 14).max(28));
                                assert!(p.slow.height() <= (h + 14).max(28));
                                assert!(p.fast.cells() <= p.slow.cells());
                            }
                            Err(BudgetError::TooSmall { needed, .. }) => {
                                assert!(needed > max_tokens)
                            }
                            Err(e) => panic!("{e}"),
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn tiny_budget_is_an_error_with_numbers() {
        let budget = TokenBudget {
            max_tokens: 3,
            fast_ratio: 0.3,
            token_side: 28,
        };
        let err = plan_sizes(640, 480, 2, 8, &budget).unwrap_err();
        assert_eq!(
            err,
            BudgetError::TooSmall {
                budget: 3,
                frames: 10,
                side: 28,
                needed: 5
            }
        );
        assert!(matches!(
            plan_sizes(
                640,
                480,
                1,
                0,
                &TokenBudget {
                    max_tokens: 9,
                    fast_ratio: 0.0,
                    token_side: 28,
                }
            ),
            Err(BudgetError::BadRatio(_))
        ));
    }
}

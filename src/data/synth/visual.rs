//! Visual-quality defects applied to rendered frames: blur, noise and
//! blockiness, each with a severity in `[0, 1]`.
//!
//! Strengths are monotone in severity and scaled to the clip size, so the
//! same severity looks equally bad at any resolution: at 64 px tall and
//! severity 1, blur has σ = 2.4 px, noise σ = 55 grey levels, and blocking
//! replaces every 8×8 block by its mean.

use crate::rng::Rng;
use crate::video::Frame;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum VisualKind {
    Blur,
    Blocking,
    Noise,
}

impl VisualKind {
    pub const ALL: [VisualKind; 3] = [VisualKind::Blur, VisualKind::Blocking, VisualKind::Noise];
}

/// One defect and how strong it is.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VisualDefect {
    pub kind: VisualKind,
    /// 0 = absent, 1 = as bad as the generator gets.
    pub severity: f32,
}

/// Pixels per "64 px of short side": defect sizes scale with it.
fn scale(frame: &Frame) -> f32 {
    frame.width.min(frame.height) as f32 / 64.0
}

pub fn blur_sigma(severity: f32, scale: f32) -> f32 {
    2.4 * severity * scale
}

pub fn noise_sigma(severity: f32) -> f32 {
    55.0 * severity
}

pub fn block_size(scale: f32) -> u32 {
    ((8.0 * scale).round() as u32).max(2)
}

/// Applies the defects in a fixed order (blur, then blocking, then noise,
/// as a codec would soften, quantise, then a sensor add grain), whatever
/// order the list has. `rng` draws the noise.
pub fn apply(frame: &mut Frame, defects: &[VisualDefect], rng: &mut Rng) {
    let mut sorted = defects.to_vec();
    sorted.sort_by_key(|d| d.kind);
    let s = scale(frame);
    for d in sorted {
        match d.kind {
            VisualKind::Blur => gaussian_blur(frame, blur_sigma(d.severity, s)),
            VisualKind::Blocking => blocking(frame, block_size(s), d.severity),
            VisualKind::Noise => add_noise(frame, noise_sigma(d.severity), rng),
        }
    }
}

/// Separable Gaussian blur with clamped borders; σ below 0.05 px is a no-op.
pub fn gaussian_blur(frame: &mut Frame, sigma: f32) {
    if sigma < 0.05 {
        return;
    }
    let radius = (3.0 * sigma).ceil() as i64;
    let weights: Vec<f32> = (-radius..=radius)
        .map(|k| (-(k * k) as f32 / (2.0 * sigma * sigma)).exp())
        .collect();
    let total: f32 = weights.iter().sum();
    let weights: Vec<f32> = weights.iter().map(|w| w / total).collect();
    let (w, h) = (i64::from(frame.width), i64::from(frame.height));
    let src: Vec<f32> = frame.rgb.iter().map(|&v| f32::from(v)).collect();
    let mut tmp = vec![0f32; src.len()];
    let idx = |x: i64, y: i64| ((y * w + x) * 3) as usize;
    for y in 0..h {
        for x in 0..w {
            let mut acc = [0f32; 3];
            for (k, wt) in (-radius..=radius).zip(&weights) {
                let i = idx((x + k).clamp(0, w - 1), y);
                for c in 0..3 {
                    acc[c] += wt * src[i + c];
                }
            }
            tmp[idx(x, y)..idx(x, y) + 3].copy_from_slice(&acc);
        }
    }
    for y in 0..h {
        for x in 0..w {
            let mut acc = [0f32; 3];
            for (k, wt) in (-radius..=radius).zip(&weights) {
                let i = idx(x, (y + k).clamp(0, h - 1));
                for c in 0..3 {
                    acc[c] += wt * tmp[i + c];
                }
            }
            let o = idx(x, y);
            for (dst, v) in frame.rgb[o..o + 3].iter_mut().zip(acc) {
                *dst = v.round().clamp(0.0, 255.0) as u8;
            }
        }
    }
}

/// Blends every `block`×`block` tile towards its mean colour by `amount`
/// (1 = flat tiles, like a starved block codec).
pub fn blocking(frame: &mut Frame, block: u32, amount: f32) {
    if amount <= 0.0 {
        return;
    }
    let (w, h) = (frame.width, frame.height);
    for by in (0..h).step_by(block as usize) {
        for bx in (0..w).step_by(block as usize) {
            let (x1, y1) = ((bx + block).min(w), (by + block).min(h));
            let mut sum = [0f32; 3];
            for y in by..y1 {
                for x in bx..x1 {
                    let i = ((y * w + x) * 3) as usize;
                    for (acc, &v) in sum.iter_mut().zip(&frame.rgb[i..i + 3]) {
                        *acc += f32::from(v);
                    }
                }
            }
            let n = ((x1 - bx) * (y1 - by)) as f32;
            let mean = sum.map(|s| s / n);
            for y in by..y1 {
                for x in bx..x1 {
                    let i = ((y * w + x) * 3) as usize;
                    for (v, m) in frame.rgb[i..i + 3].iter_mut().zip(mean) {
                        let old = f32::from(*v);
                        *v = (old + (m - old) * amount).round() as u8;
                    }
                }
            }
        }
    }
}

/// Adds Gaussian grain of standard deviation `sigma` (grey levels) to every
/// pixel, the same draw on all three channels: luma noise, like sensor
/// grain, which survives H.264's 4:2:0 chroma subsampling (independent
/// per-channel noise would be half averaged away by it).
pub fn add_noise(frame: &mut Frame, sigma: f32, rng: &mut Rng) {
    if sigma <= 0.0 {
        return;
    }
    for px in frame.rgb.chunks_exact_mut(3) {
        let grain = f64::from(sigma) * rng.normal();
        for v in px {
            *v = (f64::from(*v) + grain).round().clamp(0.0, 255.0) as u8;
        }
    }
}

/// Mean squared Laplacian of the luma: a standard sharpness measure (high
/// for crisp edges or grain, low for blur).
pub fn laplacian_energy(frame: &Frame) -> f64 {
    let (w, h) = (frame.width as usize, frame.height as usize);
    let luma: Vec<f64> = frame
        .rgb
        .chunks_exact(3)
        .map(|p| 0.299 * f64::from(p[0]) + 0.587 * f64::from(p[1]) + 0.114 * f64::from(p[2]))
        .collect();
    let mut sum = 0.0;
    for y in 1..h - 1 {
        for x in 1..w - 1 {
            let c = luma[y * w + x];
            let lap = luma[y * w + x - 1]
                + luma[y * w + x + 1]
                + luma[(y - 1) * w + x]
                + luma[(y + 1) * w + x]
                - 4.0 * c;
            sum += lap * lap;
        }
    }
    sum / ((w - 2) * (h - 2)) as f64
}

/// Mean absolute difference per channel value between two equal-sized frames.
pub fn mean_abs_diff(a: &Frame, b: &Frame) -> f64 {
    let total: u64 = a
        .rgb
        .iter()
        .zip(&b.rgb)
        .map(|(&x, &y)| u64::from(x.abs_diff(y)))
        .sum();
    total as f64 / a.rgb.len() as f64
}

#[cfg(test)]
mod tests {
    use super::super::render::{Drawn, background, render_frame};
    use super::super::scene::{Background, Colour, Shape};
    use super::*;

    fn clean() -> Frame {
        let backdrop = background(96, 64, Background::GreyFloor, [0, 0]);
        let obj = Drawn {
            shape: Shape::Square,
            colour: Colour::Blue,
            centre: [40.0, 30.0],
            radius: 10.0,
        };
        render_frame(96, 64, &backdrop, &[obj], 0.0)
    }

    fn with(kind: VisualKind, severity: f32) -> Frame {
        let mut f = clean();
        apply(&mut f, &[VisualDefect { kind, severity }], &mut Rng::new(3));
        f
    }

    #[test]
    fn severity_zero_changes_nothing() {
        for kind in VisualKind::ALL {
            assert_eq!(with(kind, 0.0), clean(), "{kind:?}");
        }
    }

    #[test]
    fn blur_lowers_sharpness_monotonically() {
        let sharp: Vec<f64> = [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
            .iter()
            .map(|&s| laplacian_energy(&with(VisualKind::Blur, s)))
            .collect();
        for w in sharp.windows(2) {
            assert!(w[1] < w[0], "sharpness not decreasing: {sharp:?}");
        }
        assert!(sharp[5] < 0.1 * sharp[0], "{sharp:?}");
    }

    #[test]
    fn noise_and_blocking_grow_with_severity() {
        for kind in [VisualKind::Noise, VisualKind::Blocking] {
            let d: Vec<f64> = [0.0, 0.25, 0.5, 0.75, 1.0]
                .iter()
                .map(|&s| mean_abs_diff(&clean(), &with(kind, s)))
                .collect();
            for w in d.windows(2) {
                assert!(w[1] > w[0], "{kind:?}: {d:?}");
            }
        }
        // Full noise moves a channel value by ≈ 0.8·55 = 44 levels on average
        // (less where clamped at 0/255).
        let n = mean_abs_diff(&clean(), &with(VisualKind::Noise, 1.0));
        assert!((30.0..50.0).contains(&n), "{n}");
    }

    #[test]
    fn full_blocking_gives_flat_tiles() {
        let f = with(VisualKind::Blocking, 1.0);
        for y in 8..16 {
            for x in 32..40 {
                assert_eq!(f.pixel(x, y), f.pixel(32, 8));
            }
        }
    }

    #[test]
    fn laplacian_of_hand_made_frame() {
        // 3×3 luma with a single bright centre: one interior pixel, Laplacian
        // = 4·0 − 4·255·0.299... use pure grey so luma = value: centre 100,
        // neighbours 0 → lap = −400, energy 160000.
        let mut rgb = vec![0u8; 27];
        rgb[12..15].copy_from_slice(&[100, 100, 100]);
        let f = Frame {
            timestamp: 0.0,
            width: 3,
            height: 3,
            rgb,
        };
        assert!((laplacian_energy(&f) - 160_000.0).abs() < 1e-6);
    }
}

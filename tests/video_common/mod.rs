//! Helpers shared by the video integration tests: tiny synthetic clips.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use vgrpo::rng::Rng;
use vgrpo::video::{Container, EncodeSettings, Frame, VideoCodec, encode_video};

/// Frame `i` of a test clip: a flat colour that changes with `i` (so every
/// frame is identifiable after lossy coding) plus a gradient.
pub fn test_frame(i: usize, w: u32, h: u32) -> Frame {
    let level = (i * 37 % 200 + 20) as u32;
    let mut rgb = Vec::with_capacity((w * h * 3) as usize);
    for y in 0..h {
        for x in 0..w {
            let g = x * 64 / w + y * 32 / h;
            rgb.extend_from_slice(&[level as u8, (level / 2 + g) as u8, (255 - level) as u8]);
        }
    }
    Frame {
        timestamp: 0.0,
        width: w,
        height: h,
        rgb,
    }
}

/// `n` test frames at `fps` (timestamps `i / fps`).
pub fn test_clip(n: usize, w: u32, h: u32, fps: f64) -> Vec<Frame> {
    (0..n)
        .map(|i| {
            let mut f = test_frame(i, w, h);
            f.timestamp = i as f64 / fps;
            f
        })
        .collect()
}

/// `n` frames of seeded noise: incompressible, so file bytes are spread
/// evenly over time (what the truncation tests need).
pub fn noise_clip(n: usize, w: u32, h: u32, fps: f64, seed: u64) -> Vec<Frame> {
    let mut rng = Rng::new(seed);
    (0..n)
        .map(|i| Frame {
            timestamp: i as f64 / fps,
            width: w,
            height: h,
            rgb: (0..w * h * 3).map(|_| rng.below(256) as u8).collect(),
        })
        .collect()
}

/// Encodes `frames` to `dir/name.<ext>` with the container's default codec.
pub fn write_clip(dir: &Path, name: &str, container: Container, frames: &[Frame]) -> PathBuf {
    write_clip_with(dir, name, EncodeSettings::new(container, 8.0), frames)
}

pub fn write_clip_codec(
    dir: &Path,
    name: &str,
    container: Container,
    codec: VideoCodec,
    frames: &[Frame],
) -> PathBuf {
    write_clip_with(
        dir,
        name,
        EncodeSettings::new(container, 8.0).with_codec(codec),
        frames,
    )
}

pub fn write_clip_with(
    dir: &Path,
    name: &str,
    settings: EncodeSettings,
    frames: &[Frame],
) -> PathBuf {
    let path = dir.join(format!("{name}.{}", settings.container.extension()));
    encode_video(&path, frames, &settings).expect("encode test clip");
    path
}

/// Mean absolute difference between two same-size RGB frames.
pub fn mean_abs_diff(a: &Frame, b: &Frame) -> f64 {
    assert_eq!((a.width, a.height), (b.width, b.height));
    let sum: u64 = a
        .rgb
        .iter()
        .zip(&b.rgb)
        .map(|(&x, &y)| u64::from(x.abs_diff(y)))
        .sum();
    sum as f64 / a.rgb.len() as f64
}

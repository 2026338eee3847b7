//! Video frames -> model inputs, as the HF video processors do it
//! (`Qwen2VLVideoProcessor` for Qwen2.5-VL, `Qwen3VLVideoProcessor`):
//! smart-resize target size, rescale to [0, 1], normalise with the model's
//! mean/std, pad the frame count to a multiple of the temporal patch by
//! repeating the last frame, cut `C x T x P x P` patches in merge-block
//! order, and the prompt placeholder (Qwen3-VL: `<t seconds>` text before
//! every temporal group).
//!
//! Resampling itself is the video module's job (ffmpeg's scaler): frames
//! must arrive at the size [`VideoProcessorConfig::target_size`] returns.
//! Slow and fast frames of SlowFast sampling are two clips at their own
//! resolutions, each processed separately into its own grid.

use crate::video::Frame;

use super::config::{Arch, QwenVlConfig};
use super::error::{ModelError, Result};
use super::position::Grid;

/// HF `OPENAI_CLIP_MEAN` / `_STD` (Qwen2.5-VL), HF's digits.
pub const CLIP_MEAN: [f32; 3] = [0.481_454_66, 0.457_827_5, 0.408_210_73];
#[allow(clippy::excessive_precision)]
pub const CLIP_STD: [f32; 3] = [0.268_629_54, 0.261_302_58, 0.275_777_11];
/// HF `IMAGENET_STANDARD_MEAN` / `_STD` (Qwen3-VL).
pub const HALF: [f32; 3] = [0.5, 0.5, 0.5];

/// The processor settings (HF `preprocessor_config.json` / video processor
/// fields).
#[derive(Debug, Clone, PartialEq)]
pub struct VideoProcessorConfig {
    pub arch: Arch,
    pub patch_size: usize,
    pub temporal_patch_size: usize,
    pub merge_size: usize,
    /// `size.shortest_edge`: the least pixel budget (per frame for
    /// Qwen2.5-VL, per clip for Qwen3-VL).
    pub min_pixels: usize,
    /// `size.longest_edge`: the largest pixel budget, same convention.
    pub max_pixels: usize,
    pub image_mean: [f32; 3],
    pub image_std: [f32; 3],
}

impl VideoProcessorConfig {
    /// HF's defaults for the model's video processor, with the model's patch
    /// geometry.
    pub fn for_model(config: &QwenVlConfig) -> Self {
        let v = &config.vision;
        let (min_pixels, max_pixels, mean, std) = match config.arch {
            Arch::Qwen25Vl => (128 * 28 * 28, 28 * 28 * 768, CLIP_MEAN, CLIP_STD),
            Arch::Qwen3Vl => (128 * 32 * 32, 32 * 32 * 768, HALF, HALF),
        };
        VideoProcessorConfig {
            arch: config.arch,
            patch_size: v.patch_size,
            temporal_patch_size: v.temporal_patch_size,
            merge_size: v.spatial_merge_size,
            min_pixels,
            max_pixels,
            image_mean: mean,
            image_std: std,
        }
    }

    /// Reads `video_preprocessor_config.json` from a HF model directory
    /// (transformers 5 and the Qwen3-VL repos ship one); fields it lacks,
    /// or a missing file, fall back to [`Self::for_model`]'s HF defaults.
    pub fn from_dir(dir: &std::path::Path, config: &QwenVlConfig) -> Result<Self> {
        #[derive(serde::Deserialize)]
        struct Size {
            shortest_edge: Option<usize>,
            longest_edge: Option<usize>,
        }
        #[derive(serde::Deserialize)]
        struct Raw {
            size: Option<Size>,
            min_pixels: Option<usize>,
            max_pixels: Option<usize>,
            patch_size: Option<usize>,
            temporal_patch_size: Option<usize>,
            merge_size: Option<usize>,
            image_mean: Option<[f32; 3]>,
            image_std: Option<[f32; 3]>,
        }
        let mut out = Self::for_model(config);
        let path = dir.join("video_preprocessor_config.json");
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(source) => return Err(ModelError::Io { path, source }),
        };
        let raw: Raw = serde_json::from_str(&text).map_err(|source| ModelError::ConfigJson {
            path: path.clone(),
            source,
        })?;
        let size = raw.size.unwrap_or(Size {
            shortest_edge: None,
            longest_edge: None,
        });
        out.min_pixels = size
            .shortest_edge
            .or(raw.min_pixels)
            .unwrap_or(out.min_pixels);
        out.max_pixels = size
            .longest_edge
            .or(raw.max_pixels)
            .unwrap_or(out.max_pixels);
        out.patch_size = raw.patch_size.unwrap_or(out.patch_size);
        out.temporal_patch_size = raw.temporal_patch_size.unwrap_or(out.temporal_patch_size);
        out.merge_size = raw.merge_size.unwrap_or(out.merge_size);
        out.image_mean = raw.image_mean.unwrap_or(out.image_mean);
        out.image_std = raw.image_std.unwrap_or(out.image_std);
        let v = &config.vision;
        if (out.patch_size, out.temporal_patch_size, out.merge_size)
            != (v.patch_size, v.temporal_patch_size, v.spatial_merge_size)
        {
            return Err(ModelError::UnsupportedConfig(format!(
                "{}: patch {}x{} merge {} disagrees with the model's {}x{} merge {}",
                path.display(),
                out.patch_size,
                out.temporal_patch_size,
                out.merge_size,
                v.patch_size,
                v.temporal_patch_size,
                v.spatial_merge_size
            )));
        }
        Ok(out)
    }

    /// Side lengths are multiples of this.
    pub fn factor(&self) -> usize {
        self.patch_size * self.merge_size
    }

    /// HF `smart_resize`: the (height, width) frames of a clip of
    /// `num_frames` frames at `height x width` are resized to.
    pub fn target_size(
        &self,
        num_frames: usize,
        height: usize,
        width: usize,
    ) -> Result<(usize, usize)> {
        let factor = self.factor() as f64;
        let (mut h, mut w) = (height as f64, width as f64);
        if h == 0.0 || w == 0.0 {
            return Err(ModelError::Input("empty frame".into()));
        }
        // Qwen3-VL scales tiny frames up to one factor first and budgets the
        // whole clip (t * h * w); Qwen2.5-VL budgets a single frame.
        let frames = match self.arch {
            Arch::Qwen25Vl => 1.0,
            Arch::Qwen3Vl => {
                if num_frames < self.temporal_patch_size {
                    return Err(ModelError::Input(format!(
                        "{num_frames} frames, fewer than the temporal patch {}",
                        self.temporal_patch_size
                    )));
                }
                if h < factor || w < factor {
                    let scale = (factor / h).max(factor / w);
                    h = (h * scale).trunc();
                    w = (w * scale).trunc();
                }
                num_frames as f64
            }
        };
        if h.max(w) / h.min(w) > 200.0 {
            return Err(ModelError::Input(format!(
                "aspect ratio of {height}x{width} exceeds 200"
            )));
        }
        let t_bar = match self.arch {
            Arch::Qwen25Vl => 1.0,
            Arch::Qwen3Vl => {
                let tp = self.temporal_patch_size as f64;
                round_half_even(num_frames as f64 / tp) * tp
            }
        };
        let mut h_bar = round_half_even(h / factor) * factor;
        let mut w_bar = round_half_even(w / factor) * factor;
        let (min, max) = (self.min_pixels as f64, self.max_pixels as f64);
        if t_bar * h_bar * w_bar > max {
            let beta = (frames * h * w / max).sqrt();
            h_bar = factor.max((h / beta / factor).floor() * factor);
            w_bar = factor.max((w / beta / factor).floor() * factor);
        } else if t_bar * h_bar * w_bar < min {
            let beta = (min / (frames * h * w)).sqrt();
            h_bar = (h * beta / factor).ceil() * factor;
            w_bar = (w * beta / factor).ceil() * factor;
        }
        Ok((h_bar as usize, w_bar as usize))
    }
}

/// Python's `round` (ties to even).
fn round_half_even(x: f64) -> f64 {
    let r = x.round();
    if (x - x.trunc()).abs() == 0.5 && r % 2.0 != 0.0 {
        r - x.signum()
    } else {
        r
    }
}

/// One clip ready for the vision tower.
#[derive(Debug, Clone, PartialEq)]
pub struct ProcessedVideo {
    /// `[grid.patches(), C*T*P*P]` row-major.
    pub pixel_values: Vec<f32>,
    pub grid: Grid,
    /// Mean timestamp (seconds) of each temporal group's first and last frame.
    pub group_timestamps: Vec<f64>,
}

impl ProcessedVideo {
    pub fn patch_dim(&self) -> usize {
        self.pixel_values.len() / self.grid.patches()
    }
}

/// Turns frames (all of the size `target_size` gives) into normalised patches.
pub fn process_video(frames: &[Frame], config: &VideoProcessorConfig) -> Result<ProcessedVideo> {
    let first = frames
        .first()
        .ok_or_else(|| ModelError::Input("a video needs at least one frame".into()))?;
    let (height, width) = (first.height as usize, first.width as usize);
    let (target_h, target_w) = config.target_size(frames.len(), height, width)?;
    for (i, f) in frames.iter().enumerate() {
        if (f.height as usize, f.width as usize) != (target_h, target_w) {
            return Err(ModelError::Input(format!(
                "frame {i} is {}x{} (HxW); resize the clip to {target_h}x{target_w} first",
                f.height, f.width
            )));
        }
        if f.rgb.len() != target_h * target_w * 3 {
            return Err(ModelError::Input(format!(
                "frame {i}: {} RGB bytes for {target_h}x{target_w}",
                f.rgb.len()
            )));
        }
    }
    let tp = config.temporal_patch_size;
    // Repeat the last frame until the count fills whole temporal patches.
    let padded: Vec<&Frame> = frames
        .iter()
        .chain(std::iter::repeat_n(
            &frames[frames.len() - 1],
            (tp - frames.len() % tp) % tp,
        ))
        .collect();
    let (p, m) = (config.patch_size, config.merge_size);
    let grid = Grid {
        t: padded.len() / tp,
        h: target_h / p,
        w: target_w / p,
    };
    // Normalise: (x / 255 - mean) / std, per channel.
    let scale: [f32; 3] = std::array::from_fn(|c| 1.0 / (255.0 * config.image_std[c]));
    let shift: [f32; 3] = std::array::from_fn(|c| config.image_mean[c] / config.image_std[c]);
    let patch_dim = 3 * tp * p * p;
    let mut pixels = Vec::with_capacity(grid.patches() * patch_dim);
    for gt in 0..grid.t {
        for bh in 0..grid.h / m {
            for bw in 0..grid.w / m {
                for mh in 0..m {
                    for mw in 0..m {
                        let (y0, x0) = ((bh * m + mh) * p, (bw * m + mw) * p);
                        for c in 0..3 {
                            for frame in &padded[gt * tp..(gt + 1) * tp] {
                                for y in y0..y0 + p {
                                    let row = &frame.rgb[(y * target_w + x0) * 3..];
                                    pixels.extend(
                                        (0..p).map(|x| {
                                            f32::from(row[x * 3 + c]) * scale[c] - shift[c]
                                        }),
                                    );
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    let group_timestamps = padded
        .chunks(tp)
        .map(|group| (group[0].timestamp + group[group.len() - 1].timestamp) / 2.0)
        .collect();
    Ok(ProcessedVideo {
        pixel_values: pixels,
        grid,
        group_timestamps,
    })
}

/// The special tokens a video expands to in the prompt.
#[derive(Debug, Clone, Copy)]
pub struct VideoTokens<'a> {
    pub vision_start: &'a str,
    pub vision_end: &'a str,
    pub video_pad: &'a str,
}

impl Default for VideoTokens<'_> {
    fn default() -> Self {
        VideoTokens {
            vision_start: "<|vision_start|>",
            vision_end: "<|vision_end|>",
            video_pad: "<|video_pad|>",
        }
    }
}

/// The prompt text a processed video stands for (HF `replace_video_token`):
/// Qwen2.5-VL: `<|vision_start|>` + one pad per token + `<|vision_end|>`;
/// Qwen3-VL: per temporal group `<{t:.1} seconds>` then the same wrapper
/// around that group's tokens.
pub fn video_placeholder(
    arch: Arch,
    video: &ProcessedVideo,
    merge: usize,
    tokens: VideoTokens,
) -> String {
    let per_group = video.grid.h * video.grid.w / (merge * merge);
    let wrap = |n: usize| {
        format!(
            "{}{}{}",
            tokens.vision_start,
            tokens.video_pad.repeat(n),
            tokens.vision_end
        )
    };
    match arch {
        Arch::Qwen25Vl => wrap(per_group * video.grid.t),
        Arch::Qwen3Vl => video
            .group_timestamps
            .iter()
            .map(|t| format!("<{t:.1} seconds>{}", wrap(per_group)))
            .collect(),
    }
}

/// Qwen2.5-VL's `second_per_grid_ts` for a clip sampled at `fps`.
pub fn second_per_grid(config: &VideoProcessorConfig, fps: f64) -> f32 {
    (config.temporal_patch_size as f64 / fps) as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(arch: Arch) -> VideoProcessorConfig {
        VideoProcessorConfig {
            arch,
            patch_size: 14,
            temporal_patch_size: 2,
            merge_size: 2,
            min_pixels: 56 * 56,
            max_pixels: 28 * 28 * 1280,
            image_mean: CLIP_MEAN,
            image_std: CLIP_STD,
        }
    }

    #[test]
    fn smart_resize_rounds_and_budgets_like_hf() {
        let c = cfg(Arch::Qwen25Vl);
        // round(480/28)=17 -> 476, round(640/28)=23 -> 644 (within budget)
        assert_eq!(c.target_size(8, 480, 640).unwrap(), (476, 644));
        // over 28*28*1280 pixels: scaled down, floor to multiples of 28
        assert_eq!(c.target_size(8, 1080, 1920).unwrap(), (728, 1316));
        // below the minimum: ceil scale-up
        assert_eq!(c.target_size(8, 20, 20).unwrap(), (56, 56));
        // Qwen3-VL budgets the clip: numbers from transformers 5.23.
        let q3 = VideoProcessorConfig {
            arch: Arch::Qwen3Vl,
            patch_size: 16,
            min_pixels: 128 * 32 * 32,
            max_pixels: 32 * 32 * 768,
            ..c
        };
        assert_eq!(q3.target_size(8, 1080, 1920).unwrap(), (224, 416));
        assert_eq!(q3.target_size(3, 20, 40).unwrap(), (160, 320));
    }

    #[test]
    fn python_rounding_ties_to_even() {
        assert_eq!(round_half_even(2.5), 2.0);
        assert_eq!(round_half_even(3.5), 4.0);
        assert_eq!(round_half_even(2.4), 2.0);
    }

    #[test]
    fn odd_frame_counts_repeat_the_last_frame() {
        let mut c = cfg(Arch::Qwen25Vl);
        c.image_mean = [0.0; 3];
        c.image_std = [1.0; 3];
        let frame = |v: u8, t: f64| Frame {
            timestamp: t,
            width: 56,
            height: 56,
            rgb: vec![v; 56 * 56 * 3],
        };
        let out = process_video(&[frame(0, 0.0), frame(51, 0.5), frame(255, 1.0)], &c).unwrap();
        assert_eq!(out.grid, Grid { t: 2, h: 4, w: 4 });
        assert_eq!(out.group_timestamps, vec![0.25, 1.0]);
        // Second temporal group = frame 2 twice: every value 1.0.
        let dim = out.patch_dim();
        assert!(
            out.pixel_values[16 * dim..]
                .iter()
                .all(|&v| (v - 1.0).abs() < 1e-6)
        );
        // First group, channel 0: 196 values of frame 0 then 196 of frame 1.
        assert_eq!(out.pixel_values[0], 0.0);
        assert!((out.pixel_values[196] - 0.2).abs() < 1e-6);
    }
}

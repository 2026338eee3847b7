//! The `[video]` settings of a run config: sampling, SlowFast, token budget,
//! input limits and the decode pool.

use serde::{Deserialize, Serialize};

use super::probe::DecodeLimits;
use super::sample::SamplingPlan;
use super::slowfast::{QWEN3_VL_TOKEN_SIDE, TokenBudget};

/// Video input settings. Every field has a default, unknown keys are
/// errors, and [`validate`](VideoConfig::validate) checks the rules.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VideoConfig {
    /// Frames sampled per second of video (paper: 8).
    pub fps: f32,
    /// Fewest frames per clip (short clips are sampled more densely).
    pub min_frames: usize,
    /// Most frames per clip (long clips are sampled more sparsely).
    pub max_frames: usize,
    /// A frame is fast when its patch similarity to the latest slow frame
    /// exceeds this (paper: 0.90).
    pub slowfast_threshold: f32,
    /// Most visual tokens per clip, `ceil(Σ (w/c)(h/c) / 2)` over frames,
    /// `c` the model's token side (see `token_side`).
    pub token_budget: usize,
    /// A fast frame's share of a slow frame's tokens (Keye-VL: about 0.3).
    pub fast_token_ratio: f32,
    /// Largest accepted source width or height.
    pub max_side: u32,
    /// Largest accepted source width × height.
    pub max_pixels: u64,
    /// Worker threads decoding clips in parallel.
    pub workers: usize,
    /// Decoded clips that may wait in the pool's output queue.
    pub queue_depth: usize,
    /// FFmpeg threads per decoder.
    pub decode_threads: usize,
    /// Pixels per side of one visual token: the model's patch size × spatial
    /// merge. Not a config key — it belongs to the model, and
    /// [`VideoConfig::for_model_token_side`] sets it where the model is known
    /// (`InputSpec`); the default is the embedded Qwen3-VL's 32.
    #[serde(skip)]
    pub token_side: u32,
}

impl Default for VideoConfig {
    fn default() -> Self {
        VideoConfig {
            fps: 8.0,
            min_frames: 4,
            max_frames: 64,
            slowfast_threshold: 0.90,
            token_budget: 2048,
            fast_token_ratio: 0.3,
            max_side: 8192,
            max_pixels: 8192 * 4320,
            workers: 2,
            queue_depth: 4,
            decode_threads: 1,
            token_side: QWEN3_VL_TOKEN_SIDE,
        }
    }
}

/// A `[video]` setting that breaks its rule.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("video.{key} must be {rule}, got {got}")]
pub struct VideoConfigError {
    pub key: &'static str,
    pub rule: String,
    pub got: String,
}

fn rule(key: &'static str, rule: impl Into<String>, got: impl ToString) -> VideoConfigError {
    VideoConfigError {
        key,
        rule: rule.into(),
        got: got.to_string(),
    }
}

impl VideoConfig {
    /// Checks every rule; the first broken one is the error.
    pub fn validate(&self) -> Result<(), VideoConfigError> {
        if !(self.fps.is_finite() && self.fps > 0.0 && self.fps <= 120.0) {
            return Err(rule("fps", "in (0, 120]", self.fps));
        }
        if self.min_frames < 1 {
            return Err(rule("min_frames", ">= 1", self.min_frames));
        }
        if self.max_frames < self.min_frames {
            return Err(rule(
                "max_frames",
                format!(">= min_frames ({})", self.min_frames),
                self.max_frames,
            ));
        }
        if !(0.0..=1.0).contains(&self.slowfast_threshold) {
            return Err(rule(
                "slowfast_threshold",
                "in [0, 1]",
                self.slowfast_threshold,
            ));
        }
        if !(self.fast_token_ratio > 0.0 && self.fast_token_ratio <= 1.0) {
            return Err(rule("fast_token_ratio", "in (0, 1]", self.fast_token_ratio));
        }
        // Every frame needs at least one token cell; two frames share a token.
        let least = self.max_frames.div_ceil(2);
        if self.token_budget < least {
            return Err(rule(
                "token_budget",
                format!(
                    ">= {least} so each of max_frames = {} frames gets one token cell",
                    self.max_frames
                ),
                self.token_budget,
            ));
        }
        if self.max_side < 28 {
            return Err(rule("max_side", ">= 28", self.max_side));
        }
        if self.max_pixels < 28 * 28 {
            return Err(rule("max_pixels", ">= 784 (28x28)", self.max_pixels));
        }
        for (key, value) in [
            ("workers", self.workers),
            ("queue_depth", self.queue_depth),
            ("decode_threads", self.decode_threads),
        ] {
            if value < 1 {
                return Err(rule(key, ">= 1", value));
            }
        }
        Ok(())
    }

    pub fn sampling(&self) -> SamplingPlan {
        SamplingPlan {
            fps: f64::from(self.fps),
            min_frames: self.min_frames,
            max_frames: self.max_frames,
        }
    }

    pub fn budget(&self) -> TokenBudget {
        TokenBudget {
            max_tokens: self.token_budget,
            fast_ratio: f64::from(self.fast_token_ratio),
            token_side: self.token_side,
        }
    }

    /// These settings for a model whose visual tokens are `token_side`
    /// pixels wide (patch size × spatial merge).
    pub fn for_model_token_side(&self, token_side: u32) -> VideoConfig {
        VideoConfig {
            token_side,
            ..self.clone()
        }
    }

    pub fn limits(&self) -> DecodeLimits {
        DecodeLimits {
            max_side: self.max_side,
            max_pixels: self.max_pixels,
            threads: self.decode_threads,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_the_paper_and_validate() {
        let c = VideoConfig::default();
        assert_eq!(c.fps, 8.0);
        assert_eq!(c.slowfast_threshold, 0.90);
        assert_eq!(c.fast_token_ratio, 0.3);
        c.validate().unwrap();
    }

    #[test]
    fn toml_fills_defaults_and_rejects_unknown_keys() {
        let c: VideoConfig = toml::from_str("fps = 4.0\nmax_frames = 32").unwrap();
        assert_eq!(c.fps, 4.0);
        assert_eq!(c.max_frames, 32);
        assert_eq!(c.min_frames, VideoConfig::default().min_frames);
        let err = toml::from_str::<VideoConfig>("fsp = 4.0").unwrap_err();
        assert!(err.to_string().contains("unknown field `fsp`"), "{err}");
    }

    #[test]
    fn broken_rules_name_the_key_and_numbers() {
        let bad = |f: fn(&mut VideoConfig)| {
            let mut c = VideoConfig::default();
            f(&mut c);
            c.validate().unwrap_err().to_string()
        };
        assert_eq!(bad(|c| c.fps = 0.0), "video.fps must be in (0, 120], got 0");
        assert_eq!(
            bad(|c| c.max_frames = 2),
            "video.max_frames must be >= min_frames (4), got 2"
        );
        assert_eq!(
            bad(|c| c.token_budget = 31),
            "video.token_budget must be >= 32 so each of max_frames = 64 frames gets one \
             token cell, got 31"
        );
        assert_eq!(
            bad(|c| c.slowfast_threshold = 1.5),
            "video.slowfast_threshold must be in [0, 1], got 1.5"
        );
        assert_eq!(
            bad(|c| c.fast_token_ratio = 0.0),
            "video.fast_token_ratio must be in (0, 1], got 0"
        );
        assert_eq!(bad(|c| c.workers = 0), "video.workers must be >= 1, got 0");
    }
}

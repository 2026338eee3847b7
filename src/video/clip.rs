//! One video file to what the model sees: decode, fps sampling, SlowFast
//! selection, sizes from the token budget, resize. Also the per-frame
//! report behind `vgrpo frames`.
//!
//! Order of work (each step's input is the previous step's output):
//! 1. [`VideoSource::open`]: checks, and every frame's timestamp;
//! 2. [`sample_indices`]: which frames to keep (fps, min/max frames);
//! 3. decode the stream once, keeping the picked pictures unconverted
//!    (FFmpeg's reference-counted YUV buffers, no copy);
//! 4. convert each to a 112x112 RGB thumbnail and run [`select_frames`]
//!    (slow/fast labels);
//! 5. [`plan_sizes`]: slow and fast sizes for the actual counts;
//! 6. convert each picture once more, straight from YUV to its kind's size
//!    (swscale: colour conversion and area scaling in one pass).
//!
//! Only the picked frames are ever converted, which is what keeps this
//! within a small factor of a bare decode (see `benches/video.rs`).

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::config::VideoConfig;
use super::decode::VideoSource;
use super::error::{VideoError, VideoFailure};
use super::frame::{FrameKind, SelectedFrame};
use super::sample::sample_indices;
use super::slowfast::{Decision, SizePlan, THUMB_SIDE, plan_sizes, select_frames};

/// Facts about the source file.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SourceInfo {
    /// FFmpeg's demuxer name.
    pub format: String,
    /// FFmpeg's codec name.
    pub codec: String,
    pub width: u32,
    pub height: u32,
    /// Frames in the file.
    pub frames: usize,
    /// Seconds from the first frame until the last one stops showing.
    pub duration: f64,
}

/// A decoded, sampled, SlowFast-split and resized clip.
#[derive(Debug, Clone, PartialEq)]
pub struct Clip {
    pub path: PathBuf,
    pub source: SourceInfo,
    /// In time order; slow frames at `plan.slow` size, fast at `plan.fast`.
    pub frames: Vec<SelectedFrame>,
    /// The SlowFast decision (and similarity) of each frame.
    pub decisions: Vec<Decision>,
    pub plan: SizePlan,
}

/// Loads `path` as the model will see it. `config` should be validated;
/// broken values surface as errors from the step that uses them.
pub fn load_clip(path: &Path, config: &VideoConfig) -> Result<Clip, VideoError> {
    let fail = |reason| VideoError::new(path, reason);
    let source = VideoSource::open(path, config.limits())?;
    let picks = sample_indices(source.timestamps(), source.end, &config.sampling())
        .map_err(|e| fail(VideoFailure::Sampling(e)))?;
    let n = picks.len();
    let pictures = source.decode_pictures(&picks)?;
    // Thumbnails straight from the decoded pictures (one swscale pass each).
    let thumbs = pictures.convert(&vec![(THUMB_SIDE, THUMB_SIDE); n])?;
    let decisions = select_frames(&thumbs, f64::from(config.slowfast_threshold))
        .map_err(|e| fail(VideoFailure::Resize(e)))?;
    let slow_count = decisions
        .iter()
        .filter(|d| d.kind == FrameKind::Slow)
        .count();
    let plan = plan_sizes(
        source.width,
        source.height,
        slow_count,
        n - slow_count,
        &config.budget(),
    )
    .map_err(|e| fail(VideoFailure::Budget(e)))?;
    let sizes: Vec<(u32, u32)> = decisions
        .iter()
        .map(|d| (plan.grid(d.kind).width(), plan.grid(d.kind).height()))
        .collect();
    // Each picture converted once, straight to its kind's size.
    let frames = pictures
        .convert(&sizes)?
        .into_iter()
        .zip(&decisions)
        .map(|(frame, decision)| SelectedFrame {
            kind: decision.kind,
            frame,
        })
        .collect();
    Ok(Clip {
        path: path.to_path_buf(),
        source: SourceInfo {
            format: source.format.clone(),
            codec: source.codec.clone(),
            width: source.width,
            height: source.height,
            frames: source.timestamps().len(),
            duration: source.end,
        },
        frames,
        decisions,
        plan,
    })
}

/// One row of the `vgrpo frames` table.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FrameRow {
    pub index: usize,
    /// Seconds from the first frame of the file.
    pub timestamp: f64,
    pub kind: FrameKind,
    /// Similarity to the slow frame it was compared with (none for the
    /// first frame).
    pub similarity: Option<f64>,
    pub width: u32,
    pub height: u32,
    /// This frame's share of the visual tokens: `(w/c)(h/c)/2`.
    pub tokens: f64,
}

/// What the model will see of one video.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FramesReport {
    pub path: PathBuf,
    pub source: SourceInfo,
    pub frames: Vec<FrameRow>,
    pub slow_frames: usize,
    pub fast_frames: usize,
    /// Visual tokens of the clip, `ceil(Σ (w/c)(h/c) / 2)`.
    pub tokens: usize,
    pub token_budget: usize,
}

impl FramesReport {
    pub fn new(clip: &Clip, config: &VideoConfig) -> FramesReport {
        let frames: Vec<FrameRow> = clip
            .frames
            .iter()
            .zip(&clip.decisions)
            .enumerate()
            .map(|(index, (selected, decision))| FrameRow {
                index,
                timestamp: selected.frame.timestamp,
                kind: selected.kind,
                similarity: decision.similarity,
                width: selected.frame.width,
                height: selected.frame.height,
                tokens: clip.plan.grid(selected.kind).cells() as f64 / 2.0,
            })
            .collect();
        let slow_frames = frames.iter().filter(|f| f.kind == FrameKind::Slow).count();
        FramesReport {
            path: clip.path.clone(),
            source: clip.source.clone(),
            fast_frames: frames.len() - slow_frames,
            slow_frames,
            frames,
            tokens: clip.plan.tokens,
            token_budget: config.token_budget,
        }
    }
}

impl fmt::Display for FramesReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.source;
        writeln!(
            f,
            "{}: {} ({}), {}x{}, {} frames, {:.3} s",
            self.path.display(),
            s.codec,
            s.format,
            s.width,
            s.height,
            s.frames,
            s.duration
        )?;
        writeln!(
            f,
            "{:>5}  {:>9}  {:>4}  {:>10}  {:>9}  {:>6}",
            "frame", "time (s)", "kind", "similarity", "size", "tokens"
        )?;
        for row in &self.frames {
            let kind = match row.kind {
                FrameKind::Slow => "slow",
                FrameKind::Fast => "fast",
            };
            let sim = row
                .similarity
                .map_or_else(|| "-".to_string(), |s| format!("{s:.4}"));
            writeln!(
                f,
                "{:>5}  {:>9.3}  {:>4}  {:>10}  {:>9}  {:>6}",
                row.index,
                row.timestamp,
                kind,
                sim,
                format!("{}x{}", row.width, row.height),
                row.tokens
            )?;
        }
        write!(
            f,
            "{} frames: {} slow, {} fast; {} visual tokens of a budget of {}",
            self.frames.len(),
            self.slow_frames,
            self.fast_frames,
            self.tokens,
            self.token_budget
        )
    }
}

//! From a manifest row to model inputs: the decoded SlowFast clip becomes
//! pixel patches and vision grids, and the judging question becomes prompt
//! token ids with one `<|video_pad|>` per visual token.
//!
//! SlowFast and temporal patches: the vision tower patches frames in
//! consecutive pairs (`temporal_patch_size` = 2), and the two frames of a
//! pair must share a resolution. So frames are paired first; a pair is slow
//! if either of its frames is slow. Maximal runs of same-kind pairs form
//! *segments*; each segment is resized to its kind's resolution and
//! processed into its own grid, in time order. A static clip is one slow
//! pair then one long fast segment; every scene cut opens a new slow
//! segment. The SlowFast planner already enforced the visual-token budget,
//! so the HF smart-resize here only snaps each segment to the patch grid
//! (its min/max pixel bounds are opened up accordingly).
//!
//! Qwen2.5-VL's chat template holds one vision block per video, and its
//! M-RoPE gives one temporal axis per block, so for that family the clip is
//! one segment: fast frames are brought to the slow resolution (SlowFast
//! still decides the token budget, but not the per-frame size).
//!
//! Host data only: everything here runs in decoding worker threads, and
//! the tensors are made on the training thread ([`HostVideo::to_input`]).

use crate::data::{Dimension, ManifestRow};
use crate::model::processor::{
    ProcessedVideo, VideoProcessorConfig, process_video, second_per_grid,
};
use crate::model::{Arch, Grid, ModelError, QwenVlConfig, VideoInput};
use crate::text::chat::{ChatTemplate, VideoGroup, encode_judge_prompt};
use crate::text::{AnswerOrder, ChatError, Tokenizer};
use crate::video::{Clip, Frame, FrameKind, VideoConfig, VideoError, load_clip, resize};
use burn::tensor::{Device, Tensor, TensorData};
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error(transparent)]
    Video(#[from] VideoError),
    #[error("{path}: preparing the frames for the model")]
    Process { path: String, source: ModelError },
    #[error("{path}: resizing a segment: {message}")]
    Resize { path: String, message: String },
    #[error("building the prompt of {id}")]
    Prompt { id: String, source: ChatError },
    #[error("manifest row {index}: the preparing worker panicked: {message}")]
    Panicked { index: usize, message: String },
}

/// How clips become model inputs for one model.
#[derive(Debug, Clone)]
pub struct InputSpec {
    pub arch: Arch,
    pub processor: VideoProcessorConfig,
    pub template: ChatTemplate,
    pub video: VideoConfig,
}

impl InputSpec {
    /// The spec for `model` with the run's `[video]` settings.
    pub fn new(model: &QwenVlConfig, video: &VideoConfig) -> InputSpec {
        let mut processor = VideoProcessorConfig::for_model(model);
        // The SlowFast planner owns the token budget (see module docs): let
        // smart-resize only snap sizes to the patch grid.
        let factor = processor.factor();
        processor.min_pixels = factor * factor * processor.temporal_patch_size;
        processor.max_pixels = usize::MAX / 4;
        InputSpec {
            arch: model.arch,
            template: match model.arch {
                Arch::Qwen25Vl => ChatTemplate::Qwen25Vl,
                Arch::Qwen3Vl => ChatTemplate::Qwen3Vl,
            },
            // SlowFast plans sizes in this model's token cells.
            video: video.for_model_token_side(factor as u32),
            processor,
        }
    }
}

/// A video ready for the vision tower, on the host.
#[derive(Debug, Clone, PartialEq)]
pub struct HostVideo {
    /// `[patches, patch_dim]` row-major, all segments in time order.
    pub pixel_values: Vec<f32>,
    pub patch_dim: usize,
    /// One grid per segment.
    pub grids: Vec<Grid>,
    /// Qwen2.5-VL's seconds per temporal patch, per segment.
    pub second_per_grid_ts: Vec<f32>,
    /// One entry per temporal group: its timestamp and visual tokens, for
    /// the chat template.
    pub groups: Vec<VideoGroup>,
    /// Which kind each segment is (for inspection).
    pub kinds: Vec<FrameKind>,
}

impl HostVideo {
    /// Visual tokens the prompt must hold.
    pub fn tokens(&self) -> usize {
        self.groups.iter().map(|g| g.tokens).sum()
    }

    /// The tensors the model takes.
    pub fn to_input(&self, device: &Device) -> VideoInput {
        let patches = self.pixel_values.len() / self.patch_dim.max(1);
        VideoInput {
            pixel_values: Tensor::from_data(
                TensorData::new(self.pixel_values.clone(), [patches, self.patch_dim]),
                device,
            ),
            grids: self.grids.clone(),
            second_per_grid_ts: self.second_per_grid_ts.clone(),
            shared_across_rows: false,
        }
    }
}

/// Splits a clip's frames into same-kind segments of whole temporal pairs.
pub fn segments(frames: &[(FrameKind, &Frame)], temporal: usize) -> Vec<(FrameKind, Vec<Frame>)> {
    let mut out: Vec<(FrameKind, Vec<Frame>)> = Vec::new();
    for pair in frames.chunks(temporal.max(1)) {
        let kind = if pair.iter().any(|(k, _)| *k == FrameKind::Slow) {
            FrameKind::Slow
        } else {
            FrameKind::Fast
        };
        let frames = pair.iter().map(|(_, f)| (*f).clone());
        match out.last_mut() {
            Some((k, seg)) if *k == kind => seg.extend(frames),
            _ => out.push((kind, frames.collect())),
        }
    }
    out
}

/// Processes a decoded clip into patches, grids and prompt groups.
pub fn prepare_video(clip: &Clip, spec: &InputSpec) -> Result<HostVideo, InputError> {
    let path = clip.path.display().to_string();
    let tp = spec.processor.temporal_patch_size;
    let merge = spec.processor.merge_size;
    let tagged: Vec<(FrameKind, &Frame)> = clip.frames.iter().map(|f| (f.kind, &f.frame)).collect();
    let mut out = HostVideo {
        pixel_values: Vec::new(),
        patch_dim: 0,
        grids: Vec::new(),
        second_per_grid_ts: Vec::new(),
        groups: Vec::new(),
        kinds: Vec::new(),
    };
    let segs = match spec.arch {
        Arch::Qwen3Vl => segments(&tagged, tp),
        Arch::Qwen25Vl => vec![(
            FrameKind::Slow,
            tagged.iter().map(|(_, f)| (*f).clone()).collect(),
        )],
    };
    for (kind, frames) in segs {
        // The segment's size: the largest frame in it (a slow pair may hold
        // one fast frame), snapped to the patch grid by smart-resize.
        let (w, h) = frames
            .iter()
            .map(|f| (f.width, f.height))
            .max_by_key(|&(w, h)| w * h)
            .unwrap_or((1, 1));
        let process_err = |source| InputError::Process {
            path: path.clone(),
            source,
        };
        let (th, tw) = spec
            .processor
            .target_size(frames.len().max(tp), h as usize, w as usize)
            .map_err(process_err)?;
        let resized = frames
            .iter()
            .map(|f| resize(f, tw as u32, th as u32))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| InputError::Resize {
                path: path.clone(),
                message: e.to_string(),
            })?;
        let processed: ProcessedVideo =
            process_video(&resized, &spec.processor).map_err(process_err)?;
        let per_group = processed.grid.h * processed.grid.w / (merge * merge);
        out.patch_dim = processed.patch_dim();
        out.groups
            .extend(processed.group_timestamps.iter().map(|&t| VideoGroup {
                timestamp_s: t,
                tokens: per_group,
            }));
        out.pixel_values.extend_from_slice(&processed.pixel_values);
        out.grids.push(processed.grid);
        out.second_per_grid_ts
            .push(second_per_grid(&spec.processor, f64::from(spec.video.fps)));
        out.kinds.push(kind);
    }
    Ok(out)
}

/// A manifest row prepared for judging: its video and prompt ids.
#[derive(Debug, Clone)]
pub struct Example {
    /// Index of the row in the manifest.
    pub index: usize,
    pub row: ManifestRow,
    pub video: HostVideo,
    /// Chat-templated prompt ending with the assistant turn's opening.
    pub prompt_ids: Vec<u32>,
}

/// Decodes and prepares one row: clip → patches → prompt.
pub fn prepare_example(
    index: usize,
    row: &ManifestRow,
    video_path: &Path,
    spec: &InputSpec,
    tokenizer: &Tokenizer,
    order: AnswerOrder,
) -> Result<Example, InputError> {
    let clip = load_clip(video_path, &spec.video)?;
    let video = prepare_video(&clip, spec)?;
    let prompt_ids = judge_prompt(tokenizer, spec, &video, row.dimension, &row.prompt, order)
        .map_err(|source| InputError::Prompt {
            id: row.id.clone(),
            source,
        })?;
    Ok(Example {
        index,
        row: row.clone(),
        video,
        prompt_ids,
    })
}

/// The judging prompt's ids for a prepared video.
pub fn judge_prompt(
    tokenizer: &Tokenizer,
    spec: &InputSpec,
    video: &HostVideo,
    dimension: Dimension,
    generation_prompt: &str,
    order: AnswerOrder,
) -> Result<Vec<u32>, ChatError> {
    Ok(encode_judge_prompt(
        tokenizer,
        spec.template,
        &video.groups,
        dimension,
        generation_prompt,
        order,
    )?
    .ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(t: f64, w: u32) -> Frame {
        Frame {
            timestamp: t,
            width: w,
            height: w,
            rgb: vec![0; (w * w * 3) as usize],
        }
    }

    #[test]
    fn pairs_with_a_slow_frame_are_slow_and_runs_merge() {
        use FrameKind::{Fast, Slow};
        let f: Vec<Frame> = (0..7).map(|i| frame(i as f64, 8)).collect();
        let kinds = [Slow, Fast, Fast, Fast, Fast, Slow, Fast];
        let tagged: Vec<(FrameKind, &Frame)> = kinds.iter().copied().zip(f.iter()).collect();
        let segs = segments(&tagged, 2);
        let shape: Vec<(FrameKind, usize)> = segs.iter().map(|(k, s)| (*k, s.len())).collect();
        // pairs: (S,F)=S, (F,F)=F, (F,S)=S, (F)=F
        assert_eq!(shape, vec![(Slow, 2), (Fast, 2), (Slow, 2), (Fast, 1)]);
        assert_eq!(segs[2].1[0].timestamp, 4.0);
    }
}

//! The typed error of reading a video: which file, and why.

use std::io;
use std::path::{Path, PathBuf};

use ffmpeg_next as ffmpeg;

use super::resize::ResizeError;
use super::sample::SampleError;
use super::slowfast::BudgetError;

/// Why a file was not accepted or could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum VideoFailure {
    #[error("no such file")]
    Missing,
    #[error("cannot open the file")]
    Unreadable(#[source] io::Error),
    #[error("it is a {0}, not a regular file")]
    NotAFile(&'static str),
    #[error("the file is empty (0 bytes)")]
    Empty,
    #[error("FFmpeg cannot open it as a media file (unknown format, or an index is missing)")]
    Unrecognised(#[source] ffmpeg::Error),
    #[error("text, not a video (FFmpeg's `{demuxer}` demuxer renders text as pictures)")]
    Text { demuxer: String },
    #[error("still image, not a video (format `{format}`)")]
    StillImage { format: String },
    #[error("no video stream (the file holds: {streams})")]
    NoVideoStream { streams: String },
    #[error("the video stream does not say its frame size")]
    UnknownSize,
    #[error(
        "absurd frame size {width}x{height} (accepted: at most {max_side} per side and \
         {max_pixels} pixels)"
    )]
    AbsurdSize {
        width: u32,
        height: u32,
        max_side: u32,
        max_pixels: u64,
    },
    #[error("no decoder for its `{0}` video")]
    NoDecoder(String),
    #[error("{packets} of its video packets carry no timestamp")]
    NoTimestamps { packets: usize },
    #[error("the video stream has no frames")]
    NoFrames,
    #[error(
        "truncated: the container declares {declared:.3} s but the frames stop at {found:.3} s"
    )]
    Truncated { declared: f64, found: f64 },
    #[error("corrupt or truncated data while {stage}")]
    Corrupt {
        stage: &'static str,
        #[source]
        source: ffmpeg::Error,
    },
    #[error(
        "decoding stopped at {decoded:.3} s, before the sampled frame at {wanted:.3} s \
         (corrupt or truncated)"
    )]
    FramesMissing { decoded: f64, wanted: f64 },
    #[error("cannot sample its frames")]
    Sampling(#[source] SampleError),
    #[error("cannot fit its frames into the token budget")]
    Budget(#[source] BudgetError),
    #[error("cannot resize its frames")]
    Resize(#[source] ResizeError),
    #[error("the decoding worker panicked: {0}")]
    WorkerPanicked(String),
    #[error("cannot scale to {width}x{height}: sizes must be non-zero")]
    BadOutputSize { width: u32, height: u32 },
    #[error("{sizes} output sizes given for {pictures} pictures")]
    SizeCount { sizes: usize, pictures: usize },
    #[error("frame pick {index} is out of range or out of order: the video has {frames} frames")]
    BadPick { index: usize, frames: usize },
    #[error("FFmpeg failed to {stage}")]
    Ffmpeg {
        stage: &'static str,
        #[source]
        source: ffmpeg::Error,
    },
}

/// A rejected or undecodable video: the path and why.
#[derive(Debug, thiserror::Error)]
#[error("cannot read video {}", path.display())]
pub struct VideoError {
    pub path: PathBuf,
    #[source]
    pub reason: VideoFailure,
}

impl VideoError {
    pub fn new(path: &Path, reason: VideoFailure) -> Self {
        VideoError {
            path: path.to_path_buf(),
            reason,
        }
    }
}

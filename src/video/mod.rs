//! Video input: ffmpeg decoding, fps sampling, SlowFast selection, resizing.
//!
//! In data-flow order: `probe` (is it a sane video?) → `decode` (two passes:
//! timestamps, then the picked pictures) → `sample` (which frames, pure) →
//! `convert` (swscale to RGB at the needed size) → `slowfast` (labels and
//! token-budget sizes, pure) → `clip` (the whole path for one file, and the
//! `vgrpo frames` report) → `pool` (many files on worker threads) → `sheet`
//! (contact-sheet PNG). `encode` writes videos (tests, benchmark, synthetic
//! data); `resize` is a pure-Rust resize for thumbnails and the sheet;
//! `config` is the `[video]` section of a run config.

pub mod clip;
pub mod config;
pub mod convert;
pub mod decode;
pub mod encode;
pub mod error;
pub mod frame;
mod init;
pub mod inspect;
pub mod pool;
pub mod probe;
pub mod resize;
pub mod sample;
pub mod sheet;
pub mod slowfast;

pub use clip::{Clip, FrameRow, FramesReport, SourceInfo, load_clip};
pub use config::{VideoConfig, VideoConfigError};
pub use convert::Pictures;
pub use decode::VideoSource;
pub use encode::{
    Container, EncodeError, EncodeFailure, EncodeSettings, EncodeSummary, Timing, VideoCodec,
    VideoWriter, encode_video,
};
pub use error::{VideoError, VideoFailure};
pub use frame::{Frame, FrameKind, SelectedFrame};
pub use init::ensure_ffmpeg;
pub use inspect::{FramesError, inspect_video};
pub use pool::{JobPanicked, OrderedPool, load_clips};
pub use probe::DecodeLimits;
pub use resize::{ResizeError, resize};
pub use sample::{SampleError, SamplingPlan, median_gap, sample_indices};
pub use sheet::{SheetError, render_sheet, write_sheet};

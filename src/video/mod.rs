//! Video input: ffmpeg decoding, fps sampling, SlowFast selection, resizing.

pub mod clip;
pub mod config;
pub mod convert;
pub mod decode;
pub mod encode;
pub mod error;
pub mod frame;
mod init;
pub mod pool;
pub mod probe;
pub mod resize;
pub mod sample;
pub mod sheet;
pub mod slowfast;

pub use clip::{Clip, FrameRow, FramesError, FramesReport, SourceInfo, inspect_video, load_clip};
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
pub use pool::{JobPanicked, OrderedPool, load_clips};
pub use probe::DecodeLimits;
pub use resize::{ResizeError, resize};
pub use sample::{SampleError, SamplingPlan, median_gap, sample_indices};
pub use sheet::{SheetError, render_sheet, write_sheet};

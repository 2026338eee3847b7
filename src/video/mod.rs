//! Video input: ffmpeg decoding, fps sampling, SlowFast selection, resizing.

pub mod decode;
pub mod encode;
pub mod frame;
mod init;
pub mod resize;
pub mod sample;
pub mod slowfast;

pub use decode::{DecodeLimits, VideoError, VideoFailure, VideoSource};
pub use encode::{
    Container, EncodeError, EncodeFailure, EncodeSettings, EncodeSummary, Timing, VideoCodec,
    VideoWriter, encode_video,
};
pub use frame::{Frame, FrameKind, SelectedFrame};
pub use init::ensure_ffmpeg;
pub use resize::{ResizeError, resize};
pub use sample::{SampleError, SamplingPlan, estimated_end, sample_indices};

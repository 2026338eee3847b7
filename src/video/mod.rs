//! Video input: ffmpeg decoding, fps sampling, SlowFast selection, resizing.

pub mod encode;
pub mod frame;
mod init;
pub mod sample;

pub use encode::{
    Container, EncodeError, EncodeFailure, EncodeSettings, EncodeSummary, Timing, VideoCodec,
    VideoWriter, encode_video,
};
pub use frame::{Frame, FrameKind, SelectedFrame};
pub use init::ensure_ffmpeg;

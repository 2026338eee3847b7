//! Video input: ffmpeg decoding, fps sampling, SlowFast selection, resizing.

pub mod frame;

pub use frame::{Frame, FrameKind, SelectedFrame};

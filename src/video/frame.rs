//! Decoded frames and the slow/fast labels the SlowFast selection gives them.

/// One decoded RGB frame.
#[derive(Debug, Clone, PartialEq)]
pub struct Frame {
    /// Presentation time in seconds from the start of the stream.
    pub timestamp: f64,
    pub width: u32,
    pub height: u32,
    /// Packed RGB24, row-major, `height * width * 3` bytes (HWC layout).
    pub rgb: Vec<u8>,
}

impl Frame {
    /// The `(r, g, b)` of pixel `(x, y)`.
    pub fn pixel(&self, x: u32, y: u32) -> [u8; 3] {
        let i = ((y * self.width + x) * 3) as usize;
        [self.rgb[i], self.rgb[i + 1], self.rgb[i + 2]]
    }
}

/// Whether a frame is kept at high (slow) or low (fast) resolution
/// (paper §4.2.1, after Keye-VL's SlowFast video encoding).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FrameKind {
    Slow,
    Fast,
}

/// A sampled frame after SlowFast selection and resizing, ready for the
/// model's video processor.
#[derive(Debug, Clone, PartialEq)]
pub struct SelectedFrame {
    pub kind: FrameKind,
    /// The frame resized to its kind's resolution.
    pub frame: Frame,
}

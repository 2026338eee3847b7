//! `vgrpo frames`: what the model sees of a video — the clip as the
//! trainer loads it, its report, and optionally its contact sheet. It sits
//! above `clip` and `sheet`, which know nothing of each other's callers.

use super::clip::{FramesReport, load_clip};
use super::config::{VideoConfig, VideoConfigError};
use super::error::VideoError;
use super::sheet::{SheetError, write_sheet};
use std::path::Path;

/// Why `vgrpo frames` failed.
#[derive(Debug, thiserror::Error)]
pub enum FramesError {
    #[error(transparent)]
    Config(#[from] VideoConfigError),
    #[error(transparent)]
    Video(#[from] VideoError),
    #[error(transparent)]
    Sheet(#[from] SheetError),
}

/// `vgrpo frames VIDEO [--sheet out.png]`: loads the clip as the model will
/// see it, optionally writes the contact sheet, and returns the report.
pub fn inspect_video(
    path: &Path,
    config: &VideoConfig,
    sheet: Option<&Path>,
) -> Result<FramesReport, FramesError> {
    config.validate()?;
    let clip = load_clip(path, config)?;
    if let Some(sheet) = sheet {
        write_sheet(&clip, sheet)?;
    }
    Ok(FramesReport::new(&clip, config))
}

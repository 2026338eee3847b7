//! Contact sheet: the selected frames of a clip in a grid, one PNG a person
//! can look at (`vgrpo frames VIDEO --sheet out.png`).
//!
//! Every tile has the slow frames' size scaled to fit 224x224; fast frames
//! are enlarged to it, so their lower resolution shows. A coloured border
//! marks the kind (orange = slow, blue = fast) and a label under the tile
//! gives the frame number, its time and S/F, drawn with a built-in 3x5
//! bitmap font.

use std::io;
use std::path::{Path, PathBuf};

use crate::raster::{Canvas, GLYPH_H, GLYPH_W, PngWriteError};

use super::clip::Clip;
use super::frame::{Frame, FrameKind};
use super::resize::{ResizeError, resize};

/// Largest tile side.
const TILE_MAX: u32 = 224;
/// Tiles per row at most.
const COLUMNS: usize = 8;
const GAP: u32 = 6;
const BORDER: u32 = 2;
/// Font pixels are drawn as `SCALE`x`SCALE` blocks.
const SCALE: u32 = 2;
const LABEL_H: u32 = GLYPH_H * SCALE + 6;
const BACKGROUND: [u8; 3] = [24, 24, 24];
const SLOW_COLOUR: [u8; 3] = [255, 160, 0];
const FAST_COLOUR: [u8; 3] = [80, 140, 255];
const TEXT_COLOUR: [u8; 3] = [235, 235, 235];

#[derive(Debug, thiserror::Error)]
pub enum SheetFailure {
    #[error("the clip has no frames")]
    NoFrames,
    #[error("cannot scale a frame to its tile")]
    Resize(#[source] ResizeError),
    #[error("cannot write the file")]
    Io(#[source] io::Error),
    #[error("cannot encode the PNG")]
    Png(#[source] png::EncodingError),
}

#[derive(Debug, thiserror::Error)]
#[error("cannot write contact sheet {}", path.display())]
pub struct SheetError {
    pub path: PathBuf,
    #[source]
    pub reason: SheetFailure,
}

/// Draws the clip's frames into an RGB image (returned as a [`Frame`] with
/// timestamp 0).
pub fn render_sheet(clip: &Clip) -> Result<Frame, SheetFailure> {
    if clip.frames.is_empty() {
        return Err(SheetFailure::NoFrames);
    }
    let (sw, sh) = (clip.plan.slow.width(), clip.plan.slow.height());
    let fit = f64::from(TILE_MAX) / f64::from(sw.max(sh));
    let (tw, th) = if fit < 1.0 {
        (
            ((f64::from(sw) * fit).round() as u32).max(1),
            ((f64::from(sh) * fit).round() as u32).max(1),
        )
    } else {
        (sw, sh)
    };
    // The label needs room for "#99 99.999s S" (13 glyphs).
    let cell_w = (tw + 2 * BORDER).max(13 * (GLYPH_W + 1) * SCALE);
    let cell_h = th + 2 * BORDER + LABEL_H;
    let cols = clip.frames.len().min(COLUMNS) as u32;
    let rows = clip.frames.len().div_ceil(COLUMNS) as u32;
    let width = GAP + cols * (cell_w + GAP);
    let height = GAP + rows * (cell_h + GAP);
    let mut canvas = Canvas::new(width, height, BACKGROUND);

    for (i, selected) in clip.frames.iter().enumerate() {
        let x0 = GAP + (i % COLUMNS) as u32 * (cell_w + GAP);
        let y0 = GAP + (i / COLUMNS) as u32 * (cell_h + GAP);
        let (colour, letter) = match selected.kind {
            FrameKind::Slow => (SLOW_COLOUR, 'S'),
            FrameKind::Fast => (FAST_COLOUR, 'F'),
        };
        canvas.fill(x0, y0, tw + 2 * BORDER, th + 2 * BORDER, colour);
        let tile = resize(&selected.frame, tw, th).map_err(SheetFailure::Resize)?;
        blit(&mut canvas, &tile, x0 + BORDER, y0 + BORDER);
        let label = format!("#{i} {:.3}s {letter}", selected.frame.timestamp);
        canvas.text(&label, x0, y0 + th + 2 * BORDER + 3, SCALE, TEXT_COLOUR);
    }
    Ok(into_frame(canvas))
}

/// Renders and writes the contact sheet PNG.
pub fn write_sheet(clip: &Clip, path: &Path) -> Result<(), SheetError> {
    let fail = |reason| SheetError {
        path: path.to_path_buf(),
        reason,
    };
    let image = render_sheet(clip).map_err(fail)?;
    let canvas = Canvas {
        width: image.width,
        height: image.height,
        rgb: image.rgb,
    };
    canvas.write_png(path).map_err(|e| {
        fail(match e {
            PngWriteError::Io(e) => SheetFailure::Io(e),
            PngWriteError::Png(e) => SheetFailure::Png(e),
        })
    })
}

/// Copies a frame into the canvas at (x0, y0).
fn blit(canvas: &mut Canvas, f: &Frame, x0: u32, y0: u32) {
    for y in 0..f.height {
        for x in 0..f.width {
            canvas.put(x0 + x, y0 + y, f.pixel(x, y));
        }
    }
}

fn into_frame(canvas: Canvas) -> Frame {
    Frame {
        timestamp: 0.0,
        width: canvas.width,
        height: canvas.height,
        rgb: canvas.rgb,
    }
}

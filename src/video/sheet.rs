//! Contact sheet: the selected frames of a clip in a grid, one PNG a person
//! can look at (`vgrpo frames VIDEO --sheet out.png`).
//!
//! Every tile has the slow frames' size scaled to fit 224x224; fast frames
//! are enlarged to it, so their lower resolution shows. A coloured border
//! marks the kind (orange = slow, blue = fast) and a label under the tile
//! gives the frame number, its time and S/F, drawn with a built-in 3x5
//! bitmap font.

use std::fs;
use std::io::{self, BufWriter};
use std::path::{Path, PathBuf};

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
const GLYPH_W: u32 = 3;
const GLYPH_H: u32 = 5;
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
    let mut canvas = Canvas::new(width, height);

    for (i, selected) in clip.frames.iter().enumerate() {
        let x0 = GAP + (i % COLUMNS) as u32 * (cell_w + GAP);
        let y0 = GAP + (i / COLUMNS) as u32 * (cell_h + GAP);
        let (colour, letter) = match selected.kind {
            FrameKind::Slow => (SLOW_COLOUR, 'S'),
            FrameKind::Fast => (FAST_COLOUR, 'F'),
        };
        canvas.fill(x0, y0, tw + 2 * BORDER, th + 2 * BORDER, colour);
        let tile = resize(&selected.frame, tw, th).map_err(SheetFailure::Resize)?;
        canvas.blit(&tile, x0 + BORDER, y0 + BORDER);
        let label = format!("#{i} {:.3}s {letter}", selected.frame.timestamp);
        canvas.text(&label, x0, y0 + th + 2 * BORDER + 3, TEXT_COLOUR);
    }
    Ok(canvas.into_frame())
}

/// Renders and writes the contact sheet PNG.
pub fn write_sheet(clip: &Clip, path: &Path) -> Result<(), SheetError> {
    let fail = |reason| SheetError {
        path: path.to_path_buf(),
        reason,
    };
    let image = render_sheet(clip).map_err(fail)?;
    let file = fs::File::create(path).map_err(|e| fail(SheetFailure::Io(e)))?;
    let mut encoder = png::Encoder::new(BufWriter::new(file), image.width, image.height);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder
        .write_header()
        .map_err(|e| fail(SheetFailure::Png(e)))?;
    writer
        .write_image_data(&image.rgb)
        .map_err(|e| fail(SheetFailure::Png(e)))?;
    writer.finish().map_err(|e| fail(SheetFailure::Png(e)))
}

struct Canvas {
    width: u32,
    height: u32,
    rgb: Vec<u8>,
}

impl Canvas {
    fn new(width: u32, height: u32) -> Self {
        Canvas {
            width,
            height,
            rgb: BACKGROUND.repeat((width * height) as usize),
        }
    }

    fn put(&mut self, x: u32, y: u32, c: [u8; 3]) {
        if x < self.width && y < self.height {
            let i = ((y * self.width + x) * 3) as usize;
            self.rgb[i..i + 3].copy_from_slice(&c);
        }
    }

    fn fill(&mut self, x0: u32, y0: u32, w: u32, h: u32, c: [u8; 3]) {
        for y in y0..y0 + h {
            for x in x0..x0 + w {
                self.put(x, y, c);
            }
        }
    }

    fn blit(&mut self, f: &Frame, x0: u32, y0: u32) {
        for y in 0..f.height {
            for x in 0..f.width {
                self.put(x0 + x, y0 + y, f.pixel(x, y));
            }
        }
    }

    fn text(&mut self, s: &str, x0: u32, y0: u32, c: [u8; 3]) {
        for (k, ch) in s.chars().enumerate() {
            let gx = x0 + k as u32 * (GLYPH_W + 1) * SCALE;
            for (row, bits) in glyph(ch).iter().enumerate() {
                for col in 0..GLYPH_W {
                    if bits >> (GLYPH_W - 1 - col) & 1 == 1 {
                        self.fill(gx + col * SCALE, y0 + row as u32 * SCALE, SCALE, SCALE, c);
                    }
                }
            }
        }
    }

    fn into_frame(self) -> Frame {
        Frame {
            timestamp: 0.0,
            width: self.width,
            height: self.height,
            rgb: self.rgb,
        }
    }
}

/// 3x5 glyphs, one row per entry, most significant of the 3 bits on the
/// left. Characters outside the label alphabet draw as a filled box.
fn glyph(c: char) -> [u8; 5] {
    match c {
        '0' => [0b111, 0b101, 0b101, 0b101, 0b111],
        '1' => [0b010, 0b110, 0b010, 0b010, 0b111],
        '2' => [0b111, 0b001, 0b111, 0b100, 0b111],
        '3' => [0b111, 0b001, 0b111, 0b001, 0b111],
        '4' => [0b101, 0b101, 0b111, 0b001, 0b001],
        '5' => [0b111, 0b100, 0b111, 0b001, 0b111],
        '6' => [0b111, 0b100, 0b111, 0b101, 0b111],
        '7' => [0b111, 0b001, 0b010, 0b010, 0b010],
        '8' => [0b111, 0b101, 0b111, 0b101, 0b111],
        '9' => [0b111, 0b101, 0b111, 0b001, 0b111],
        '.' => [0b000, 0b000, 0b000, 0b000, 0b010],
        's' => [0b000, 0b011, 0b100, 0b001, 0b110],
        'S' => [0b011, 0b100, 0b010, 0b001, 0b110],
        'F' => [0b111, 0b100, 0b110, 0b100, 0b100],
        '#' => [0b101, 0b111, 0b101, 0b111, 0b101],
        '-' => [0b000, 0b000, 0b111, 0b000, 0b000],
        ' ' => [0; 5],
        _ => [0b111; 5],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glyphs_cover_the_label_alphabet() {
        for c in "#0123456789.s SF-".chars() {
            assert_ne!(glyph(c), [0b111; 5], "{c:?} has no glyph");
        }
        // Distinct shapes: S must not look like 5.
        assert_ne!(glyph('S'), glyph('5'));
    }

    #[test]
    fn text_draws_the_glyph_bits() {
        let mut c = Canvas::new(8, 10);
        c.text("1", 0, 0, [255, 0, 0]);
        let lit = |x: u32, y: u32| c.rgb[((y * 8 + x) * 3) as usize] == 255;
        // '1' row 0 is 0b010: the middle column (pixels 2..4) is lit.
        assert!(!lit(0, 0) && lit(2, 0) && lit(3, 1) && !lit(4, 0));
        // Row 4 is 0b111: all three columns.
        assert!(lit(0, 8) && lit(2, 9) && lit(5, 9));
    }
}

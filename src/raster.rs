//! A small RGB canvas with a built-in 3×5 bitmap font, for the video
//! contact sheet (`video::sheet`): frames blitted into a grid with short
//! labels. No font files, no image crates beyond `png`, which also encodes
//! the charts (`chart`).

use std::fs;
use std::io::BufWriter;
use std::path::Path;

/// Glyph size in font pixels.
pub const GLYPH_W: u32 = 3;
pub const GLYPH_H: u32 = 5;

/// An RGB24 image, row-major.
pub struct Canvas {
    pub width: u32,
    pub height: u32,
    pub rgb: Vec<u8>,
}

impl Canvas {
    pub fn new(width: u32, height: u32, background: [u8; 3]) -> Self {
        Canvas {
            width,
            height,
            rgb: background.repeat((width * height) as usize),
        }
    }

    /// Sets one pixel; outside the canvas does nothing.
    pub fn put(&mut self, x: u32, y: u32, c: [u8; 3]) {
        if x < self.width && y < self.height {
            let i = ((y * self.width + x) * 3) as usize;
            self.rgb[i..i + 3].copy_from_slice(&c);
        }
    }

    pub fn fill(&mut self, x0: u32, y0: u32, w: u32, h: u32, c: [u8; 3]) {
        for y in y0..y0 + h {
            for x in x0..x0 + w {
                self.put(x, y, c);
            }
        }
    }

    /// Writes `s` with its top-left corner at (x0, y0), each font pixel a
    /// `scale`×`scale` block. Glyphs advance by `(GLYPH_W + 1)·scale`.
    pub fn text(&mut self, s: &str, x0: u32, y0: u32, scale: u32, c: [u8; 3]) {
        for (k, ch) in s.chars().enumerate() {
            let gx = x0 + k as u32 * (GLYPH_W + 1) * scale;
            for (row, bits) in glyph(ch).iter().enumerate() {
                for col in 0..GLYPH_W {
                    if bits >> (GLYPH_W - 1 - col) & 1 == 1 {
                        self.fill(gx + col * scale, y0 + row as u32 * scale, scale, scale, c);
                    }
                }
            }
        }
    }

    /// Writes the canvas as an 8-bit RGB PNG.
    pub fn write_png(&self, path: &Path) -> Result<(), PngWriteError> {
        write_rgb_png(path, self.width, self.height, &self.rgb)
    }
}

/// Writes row-major RGB24 pixels as an 8-bit RGB PNG.
pub fn write_rgb_png(
    path: &Path,
    width: u32,
    height: u32,
    rgb: &[u8],
) -> Result<(), PngWriteError> {
    let file = fs::File::create(path).map_err(PngWriteError::Io)?;
    let mut encoder = png::Encoder::new(BufWriter::new(file), width, height);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().map_err(PngWriteError::Png)?;
    writer.write_image_data(rgb).map_err(PngWriteError::Png)?;
    writer.finish().map_err(PngWriteError::Png)
}

#[derive(Debug, thiserror::Error)]
pub enum PngWriteError {
    #[error("cannot write the file")]
    Io(#[source] std::io::Error),
    #[error("cannot encode the PNG")]
    Png(#[source] png::EncodingError),
}

/// 3×5 glyphs, one row per entry, most significant of the 3 bits on the
/// left: what the sheet's labels use (`#12 1.500s S`: digits, `#`, `.`,
/// the seconds suffix, S/F). Any other character draws as a filled box.
pub fn glyph(c: char) -> [u8; 5] {
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
        '#' => [0b101, 0b111, 0b101, 0b111, 0b101],
        ' ' => [0; 5],
        's' => [0b000, 0b011, 0b100, 0b001, 0b110],
        'F' => [0b111, 0b100, 0b110, 0b100, 0b100],
        'S' => [0b011, 0b100, 0b010, 0b001, 0b110],
        _ => [0b111; 5],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glyphs_cover_the_sheet_labels() {
        for c in "#0123456789.s SF".chars() {
            assert_ne!(glyph(c), [0b111; 5], "{c:?} has no glyph");
        }
        // Look-alikes stay distinct.
        assert_ne!(glyph('S'), glyph('5'));
        assert_ne!(glyph('s'), glyph('S'));
    }

    #[test]
    fn text_draws_the_glyph_bits() {
        let mut c = Canvas::new(8, 10, [0, 0, 0]);
        c.text("1", 0, 0, 2, [255, 0, 0]);
        let lit = |x: u32, y: u32| c.rgb[((y * 8 + x) * 3) as usize] == 255;
        // '1' row 0 is 0b010: the middle column (pixels 2..4) is lit.
        assert!(!lit(0, 0) && lit(2, 0) && lit(3, 1) && !lit(4, 0));
        // Row 4 is 0b111: all three columns.
        assert!(lit(0, 8) && lit(2, 9) && lit(5, 9));
    }
}

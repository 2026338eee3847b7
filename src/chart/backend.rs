//! plotters' bitmap backend with the text drawn here: every string a chart
//! shows (captions, tick labels, axis titles, `Text` elements) is laid out
//! with the embedded font's advances and kerning and rasterised with
//! ab_glyph, each glyph at its own outline bounds. plotters' `ab_glyph`
//! feature places every glyph at the pen position without its left side
//! bearing, which runs letters together ("clip" reads "dip"); with no font
//! feature plotters only passes the text and its style to the backend.

use ab_glyph::{Font, FontRef, Glyph, PxScale, ScaleFont, point};
use plotters::prelude::BitMapBackend;
use plotters_backend::text_anchor::{HPos, VPos};
use plotters_backend::{
    BackendColor, BackendCoord, BackendStyle, BackendTextStyle, DrawingBackend, DrawingErrorKind,
};
use std::sync::OnceLock;

/// DejaVu Sans 2.37, unmodified (Debian's `fonts-dejavu-core`).
const FONT_BYTES: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");

/// The embedded font, parsed once; `None` if it does not parse (a broken
/// build, which the tests catch).
pub fn font() -> Option<&'static FontRef<'static>> {
    static FONT: OnceLock<Option<FontRef<'static>>> = OnceLock::new();
    FONT.get_or_init(|| FontRef::try_from_slice(FONT_BYTES).ok())
        .as_ref()
}

type Error = DrawingErrorKind<<BitMapBackend<'static> as DrawingBackend>::ErrorType>;

/// A [`BitMapBackend`] whose text is drawn with the embedded font.
pub struct Backend<'a>(pub BitMapBackend<'a>);

/// A line of text laid out from the origin at its top-left corner.
struct Line {
    glyphs: Vec<Glyph>,
    width: f32,
    height: f32,
}

fn layout(font: &FontRef<'static>, size: f64, text: &str) -> Line {
    let scaled = font.as_scaled(PxScale::from(size as f32));
    let mut glyphs = Vec::with_capacity(text.len());
    let mut pen = 0.0f32;
    let mut previous = None;
    for c in text.chars() {
        let id = scaled.glyph_id(c);
        if let Some(p) = previous {
            pen += scaled.kern(p, id);
        }
        glyphs.push(id.with_scale_and_position(scaled.scale(), point(pen, scaled.ascent())));
        pen += scaled.h_advance(id);
        previous = Some(id);
    }
    Line {
        glyphs,
        width: pen,
        height: scaled.height(),
    }
}

/// The width in pixels of `text` drawn `size` pixels high (0 when the
/// font does not parse: [`crate::chart::render`] refuses to draw then).
pub fn text_width(text: &str, size: f64) -> f32 {
    font().map_or(0.0, |f| layout(f, size, text).width)
}

fn font_error() -> Error {
    DrawingErrorKind::FontError(Box::new(std::io::Error::other(
        "the embedded font does not parse",
    )))
}

impl DrawingBackend for Backend<'_> {
    type ErrorType = <BitMapBackend<'static> as DrawingBackend>::ErrorType;

    fn get_size(&self) -> (u32, u32) {
        self.0.get_size()
    }

    fn ensure_prepared(&mut self) -> Result<(), Error> {
        self.0.ensure_prepared()
    }

    fn present(&mut self) -> Result<(), Error> {
        self.0.present()
    }

    fn draw_pixel(&mut self, point: BackendCoord, color: BackendColor) -> Result<(), Error> {
        self.0.draw_pixel(point, color)
    }

    // The bitmap backend's own fast paths; paths, circles and polygons
    // come down to these through the trait's default methods.
    fn draw_line<S: BackendStyle>(
        &mut self,
        from: BackendCoord,
        to: BackendCoord,
        style: &S,
    ) -> Result<(), Error> {
        self.0.draw_line(from, to, style)
    }

    fn draw_rect<S: BackendStyle>(
        &mut self,
        upper_left: BackendCoord,
        bottom_right: BackendCoord,
        style: &S,
        fill: bool,
    ) -> Result<(), Error> {
        self.0.draw_rect(upper_left, bottom_right, style, fill)
    }

    fn blit_bitmap(
        &mut self,
        pos: BackendCoord,
        size: (u32, u32),
        src: &[u8],
    ) -> Result<(), Error> {
        self.0.blit_bitmap(pos, size, src)
    }

    fn estimate_text_size<S: BackendTextStyle>(
        &self,
        text: &str,
        style: &S,
    ) -> Result<(u32, u32), Error> {
        let line = layout(font().ok_or_else(font_error)?, style.size(), text);
        Ok((line.width.ceil() as u32, line.height.ceil() as u32))
    }

    /// The text's box anchored at `pos` as the style says, then turned by
    /// its transform (a y axis title is rotated) about `pos`.
    fn draw_text<S: BackendTextStyle>(
        &mut self,
        text: &str,
        style: &S,
        pos: BackendCoord,
    ) -> Result<(), Error> {
        let color = style.color();
        if color.alpha == 0.0 {
            return Ok(());
        }
        let font = font().ok_or_else(font_error)?;
        let line = layout(font, style.size(), text);
        let (w, h) = (line.width.round() as i32, line.height.round() as i32);
        let anchor = style.anchor();
        let dx = match anchor.h_pos {
            HPos::Left => 0,
            HPos::Center => -w / 2,
            HPos::Right => -w,
        };
        let dy = match anchor.v_pos {
            VPos::Top => 0,
            VPos::Center => -h / 2,
            VPos::Bottom => -h,
        };
        let transform = style.transform();
        let mut pixels = Vec::new();
        for glyph in line.glyphs {
            let Some(outline) = font.outline_glyph(glyph) else {
                continue; // a space
            };
            let bounds = outline.px_bounds();
            let (x0, y0) = (bounds.min.x as i32 + dx, bounds.min.y as i32 + dy);
            outline.draw(|x, y, coverage| {
                if coverage > 0.0 {
                    let (tx, ty) = transform.transform(x0 + x as i32, y0 + y as i32);
                    pixels.push(((pos.0 + tx, pos.1 + ty), coverage));
                }
            });
        }
        for (p, coverage) in pixels {
            let alpha = color.alpha * f64::from(coverage.min(1.0));
            self.0.draw_pixel(
                p,
                BackendColor {
                    alpha,
                    rgb: color.rgb,
                },
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chart::{render, text_style};
    use plotters::prelude::{BLACK, Text};

    /// Letters keep their side bearings. Drawn at 96 px from x = 2, "cl"
    /// has its first ink one left bearing of the c right of 2, and between
    /// the letters the c's right bearing plus the l's left one. (plotters'
    /// own ab_glyph path drops each glyph's left bearing: ink from x = 2,
    /// and a gap short by the l's bearing, which ran "clip" into "dip".)
    #[test]
    fn letters_keep_their_side_bearings() {
        let font = font().expect("the embedded font parses");
        let scaled = font.as_scaled(PxScale::from(96.0));
        let ink = |c: char| {
            let glyph = scaled.scaled_glyph(c);
            let b = font.outline_glyph(glyph).unwrap().px_bounds();
            (b.min.x, b.max.x, scaled.h_advance(scaled.glyph_id(c)))
        };
        let (c_left, c_right, c_advance) = ink('c');
        let (l_left, _, _) = ink('l');
        let expected_gap = (c_advance - c_right) + l_left;
        assert!(
            c_left >= 3.0 && l_left >= 5.0,
            "DejaVu's bearings: {c_left}, {l_left}"
        );

        let image = render(160, 120, |root| {
            root.draw(&Text::new("cl", (2, 2), text_style(96, BLACK)))
        })
        .unwrap();
        let inked: Vec<bool> = (0..160)
            .map(|x| (0..120).any(|y| image.pixel(x, y)[0] < 128))
            .collect();
        let first = inked.iter().position(|&i| i).unwrap();
        assert!(first as f32 >= 2.0 + c_left.floor(), "first ink at {first}");
        let c_end = first + inked[first..].iter().position(|&i| !i).unwrap();
        let l_start = c_end + inked[c_end..].iter().position(|&i| i).unwrap();
        let gap = (l_start - c_end) as f32;
        assert!(
            gap >= expected_gap.floor() - 1.0,
            "gap {gap}, expected {expected_gap}"
        );
    }
}

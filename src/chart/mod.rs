//! What the PNG charts share (`vgrpo plot`'s metric panels, the eval
//! report's scatter plot): plotters drawing into an RGB buffer that the
//! `png` crate encodes, with every text in DejaVu Sans embedded in the
//! binary (`assets/fonts/`, licence beside it; [`backend`]) — a chart looks
//! the same on every machine and nothing is looked up at run time.

pub mod backend;

use crate::raster::{PngWriteError, write_rgb_png};
use backend::Backend;
use plotters::backend::DrawingBackend;
use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::{Path, PathBuf};

/// The family name the charts' text styles carry; the backend draws every
/// family with the embedded font.
pub const FONT: &str = "sans-serif";

/// The drawing area a chart is drawn on.
pub type Area<'a> = DrawingArea<Backend<'a>, Shift>;
/// What drawing on an [`Area`] can fail with.
pub type DrawResult<T = ()> = Result<T, DrawingAreaErrorKind<BackendError>>;
/// plotters-bitmap's error type (that crate is not a direct dependency).
type BackendError = <Backend<'static> as DrawingBackend>::ErrorType;

#[derive(Debug, thiserror::Error)]
pub enum ChartError {
    #[error("the embedded font does not parse")]
    Font,
    /// plotters' error as text, so that the callers' error types do not
    /// name the backend's.
    #[error("drawing the chart: {0}")]
    Draw(String),
    #[error("writing {path}")]
    Write {
        path: PathBuf,
        source: PngWriteError,
    },
}

/// An RGB24 image, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct RgbImage {
    pub width: u32,
    pub height: u32,
    pub rgb: Vec<u8>,
}

impl RgbImage {
    /// The pixel at (x, y).
    pub fn pixel(&self, x: u32, y: u32) -> [u8; 3] {
        let i = ((y * self.width + x) * 3) as usize;
        [self.rgb[i], self.rgb[i + 1], self.rgb[i + 2]]
    }

    pub fn write_png(&self, path: &Path) -> Result<(), ChartError> {
        write_rgb_png(path, self.width, self.height, &self.rgb).map_err(|source| {
            ChartError::Write {
                path: path.to_path_buf(),
                source,
            }
        })
    }
}

/// A `width`×`height` image on a white background, drawn by `draw`.
pub fn render(
    width: u32,
    height: u32,
    draw: impl FnOnce(&Area<'_>) -> DrawResult,
) -> Result<RgbImage, ChartError> {
    if backend::font().is_none() {
        return Err(ChartError::Font);
    }
    let mut rgb = vec![255u8; (width as usize) * (height as usize) * 3];
    {
        let bitmap = BitMapBackend::with_buffer(&mut rgb, (width, height));
        let root = Backend(bitmap).into_drawing_area();
        let drawn = draw(&root).and_then(|()| root.present());
        drawn.map_err(|e| ChartError::Draw(e.to_string()))?;
    }
    Ok(RgbImage { width, height, rgb })
}

/// Text in the chart font, `size` pixels, in `colour`.
pub fn text_style(size: u32, colour: RGBColor) -> TextStyle<'static> {
    (FONT, size).into_font().color(&colour)
}

/// `style` anchored at its left end, centred vertically: legend text
/// beside its marker.
pub fn left_centred(style: TextStyle<'static>) -> TextStyle<'static> {
    use plotters::style::text_anchor::{HPos, Pos, VPos};
    style.pos(Pos::new(HPos::Left, VPos::Center))
}

/// Labels for an axis over `range` with at most `labels` ticks: as many
/// decimals as the tick step needs (plotters steps by 1, 2 or 5 × 10^k, at
/// least `span / labels`), so that neighbouring ticks never read the same,
/// in exponent form throughout when the axis is tiny or huge.
pub fn axis_labels(range: &std::ops::Range<f64>, labels: usize) -> impl Fn(&f64) -> String + use<> {
    let step = (range.end - range.start).abs() / labels.max(1) as f64;
    let top = range.start.abs().max(range.end.abs());
    let step_exp = if step > 0.0 {
        step.log10().floor()
    } else {
        0.0
    };
    let scientific = top > 0.0 && !(1e-3..1e5).contains(&top);
    let top_exp = if top > 0.0 { top.log10().floor() } else { 0.0 };
    move |&v: &f64| {
        if v == 0.0 || v.abs() < step * 1e-6 {
            "0".to_string()
        } else if scientific {
            let d = (top_exp - step_exp).clamp(0.0, 6.0) as usize;
            format!("{v:.d$e}")
        } else {
            let d = (-step_exp).clamp(0.0, 8.0) as usize;
            format!("{v:.d$}")
        }
    }
}

/// A compact number: integers as such, otherwise 3 significant digits
/// (scientific below 1e-3 and from 1e5) — axis ticks and short values.
pub fn tick(v: f64) -> String {
    if v == 0.0 {
        return "0".into();
    }
    let a = v.abs();
    if !(1e-3..1e5).contains(&a) {
        return format!("{v:.2e}");
    }
    if v.fract() == 0.0 {
        return format!("{v:.0}");
    }
    let decimals = (2 - a.log10().floor() as i32).clamp(0, 5) as usize;
    format!("{v:.decimals$}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axis_labels_tell_neighbouring_ticks_apart() {
        // A narrow range far from 0 (an entropy near log 1024).
        let f = axis_labels(&(6.9309..6.9317), 6);
        assert_eq!((f(&6.9310), f(&6.9312)), ("6.9310".into(), "6.9312".into()));
        let f = axis_labels(&(0.0..0.06), 6);
        assert_eq!(
            (f(&0.0), f(&0.02), f(&0.05)),
            ("0".into(), "0.02".into(), "0.05".into())
        );
        let f = axis_labels(&(1.0..900.0), 6);
        assert_eq!(f(&200.0), "200");
        // Tiny: exponent form with the digits the step needs.
        let f = axis_labels(&(2.2e-6..3.7e-6), 6);
        assert_eq!((f(&2.5e-6), f(&3.0e-6)), ("2.5e-6".into(), "3.0e-6".into()));
        let f = axis_labels(&(0.0..4.0e-8), 6);
        assert_eq!(f(&1.0e-8), "1.0e-8");
    }

    #[test]
    fn ticks_are_compact() {
        assert_eq!(tick(0.0), "0");
        assert_eq!(tick(12.0), "12");
        assert_eq!(tick(0.51234), "0.512");
        assert_eq!(tick(6.931), "6.93");
        assert_eq!(tick(0.0001), "1.00e-4");
        assert_eq!(tick(-2.5), "-2.50");
    }

    /// The embedded font parses and draws: text leaves dark pixels where
    /// it is written and none elsewhere.
    #[test]
    fn text_is_drawn_with_the_embedded_font() {
        let image = render(120, 40, |root| {
            root.draw(&Text::new("Kl 0.5", (4, 4), text_style(20, BLACK)))
        })
        .unwrap();
        let dark = |x0: u32, x1: u32| {
            (x0..x1)
                .flat_map(|x| (0..40).map(move |y| (x, y)))
                .filter(|&(x, y)| image.pixel(x, y)[0] < 128)
                .count()
        };
        assert!(dark(0, 60) > 50, "the text's pixels");
        assert_eq!(dark(90, 120), 0, "right of the text");
    }
}

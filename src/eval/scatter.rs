//! The eval report's scatter plot (`eval/scatter.png`): each judged video's
//! predicted score on the MOS scale against its MOS, one panel per
//! dimension, with the instance-level SRCC and PLCC in the panel's title
//! and the line y = x — where a perfect judge's points would lie.

use super::report::{EvalReport, Prediction};
use crate::chart::{
    self, Area, ChartError, DrawResult, RgbImage, axis_labels, left_centred, text_style,
};
use crate::data::MosScale;
use plotters::prelude::*;

/// The file [`super::EvalOutput::write`] writes beside the report.
pub const SCATTER_FILE: &str = "scatter.png";
pub const PANEL_W: u32 = 440;
pub const PANEL_H: u32 = 440;
pub const HEADER_H: u32 = 64;

const INK: RGBColor = RGBColor(30, 30, 30);
const MUTED: RGBColor = RGBColor(110, 110, 110);
/// The points: translucent, so that overlapping videos show as darker.
const POINT: RGBColor = RGBColor(31, 119, 180);
const POINT_ALPHA: f64 = 0.45;
/// The y = x reference.
const REFERENCE: RGBColor = RGBColor(214, 39, 40);
const GRID: RGBColor = RGBColor(236, 236, 236);
const GRID_BOLD: RGBColor = RGBColor(215, 215, 215);

/// The image size for `panels` dimensions.
pub fn scatter_size(panels: usize) -> (u32, u32) {
    (panels.max(1) as u32 * PANEL_W, HEADER_H + PANEL_H)
}

/// Draws one panel per dimension of `report`, from `predictions`.
pub fn render_scatter(
    report: &EvalReport,
    predictions: &[Prediction],
) -> Result<RgbImage, ChartError> {
    let (width, height) = scatter_size(report.dimensions.len());
    chart::render(width, height, |root| {
        let (header, panels) = root.split_vertically(HEADER_H);
        draw_header(&header, report)?;
        for (i, d) in report.dimensions.iter().enumerate() {
            let area = panels
                .clone()
                .shrink((i as u32 * PANEL_W, 0), (PANEL_W, PANEL_H));
            let points: Vec<(f64, f64)> = predictions
                .iter()
                .filter(|p| p.dimension == d.dimension)
                .map(|p| (f64::from(p.mos), f64::from(p.mos_scale_score)))
                .collect();
            let title = match d.instance.value() {
                Some(c) => format!(
                    "{}   SRCC {:.3}   PLCC {:.3}   n = {}",
                    d.dimension, c.srcc, c.plcc, d.n
                ),
                None => format!("{}   SRCC –   PLCC –   n = {}", d.dimension, d.n),
            };
            draw_panel(&area, &title, &points, report.scale)?;
        }
        Ok(())
    })
}

/// The model judged and the legend.
fn draw_header(area: &Area<'_>, report: &EvalReport) -> DrawResult {
    let title = format!("Predicted score against MOS · {}", report.model);
    area.draw(&Text::new(title, (16, 10), text_style(18, INK)))?;
    let y = 46;
    area.draw(&Circle::new((22, y), 4, POINT.mix(POINT_ALPHA).filled()))?;
    let legend = left_centred(text_style(14, INK));
    let text = "one video: its MOS and the judge's score on the MOS scale";
    area.draw(&Text::new(text, (34, y), legend.clone()))?;
    let x = 470;
    area.draw(&PathElement::new(
        vec![(x, y), (x + 28, y)],
        REFERENCE.stroke_width(1),
    ))?;
    area.draw(&Text::new("y = x (a perfect judge)", (x + 36, y), legend))?;
    Ok(())
}

fn draw_panel(area: &Area<'_>, title: &str, points: &[(f64, f64)], scale: MosScale) -> DrawResult {
    let (lo, hi) = (f64::from(scale.min), f64::from(scale.max));
    let pad = 0.03 * (hi - lo);
    let range = lo - pad..hi + pad;
    let ticks = axis_labels(&(lo..hi), 8);
    let mut chart = ChartBuilder::on(area)
        .margin(12)
        .margin_right(20)
        .caption(title, text_style(15, INK))
        .x_label_area_size(42)
        .y_label_area_size(56)
        .build_cartesian_2d(range.clone(), range)?;
    chart
        .configure_mesh()
        .x_desc("MOS (human score)")
        .y_desc("predicted score (MOS scale)")
        .label_style(text_style(12, INK))
        .axis_desc_style(text_style(13, MUTED))
        .x_labels(9)
        .y_labels(9)
        .x_label_formatter(&ticks)
        .y_label_formatter(&ticks)
        .bold_line_style(GRID_BOLD)
        .light_line_style(GRID)
        .max_light_lines(1)
        .axis_style(INK)
        .draw()?;
    chart.draw_series(std::iter::once(PathElement::new(
        vec![(lo, lo), (hi, hi)],
        REFERENCE.stroke_width(1),
    )))?;
    let style = POINT.mix(POINT_ALPHA).filled();
    chart.draw_series(
        points
            .iter()
            .filter(|p| p.0.is_finite() && p.1.is_finite())
            .map(|&p| Circle::new(p, 3, style)),
    )?;
    Ok(())
}

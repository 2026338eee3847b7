//! The drawn half of `vgrpo plot`: a header with the legend, one panel per
//! varying series (raw points faint, the smoothed curve over them), and a
//! block listing the constant series as text.

use super::series::{Series, Smoothing};
use crate::chart::backend::text_width;
use crate::chart::{
    self, Area, ChartError, DrawResult, RgbImage, axis_labels, left_centred, text_style, tick,
};
use plotters::prelude::*;

pub const COLUMNS: usize = 3;
pub const PANEL_W: u32 = 500;
pub const PANEL_H: u32 = 320;
/// Title and legend above the panels.
pub const HEADER_H: u32 = 70;
/// The constant block: its title, then one line per `COLUMNS` entries.
const LIST_TITLE_H: u32 = 40;
const LIST_LINE_H: u32 = 22;
const LIST_BOTTOM: u32 = 12;
const LEFT: i32 = 16;
const CAPTION_PX: u32 = 15;
const AXIS_PX: u32 = 13;
/// The longest y-axis title, rotated along the plot area's height.
const Y_LABEL_MAX: f32 = 220.0;

const INK: RGBColor = RGBColor(30, 30, 30);
const MUTED: RGBColor = RGBColor(110, 110, 110);
/// Matplotlib's first colour; the raw points are it, faded.
pub const LINE: RGBColor = RGBColor(31, 119, 180);
const RAW_ALPHA: f64 = 0.45;
const RAW_RADIUS: i32 = 3;
const GRID: RGBColor = RGBColor(236, 236, 236);
const GRID_BOLD: RGBColor = RGBColor(215, 215, 215);

/// What one image shows.
pub struct Figure<'a> {
    /// The first header line (the file and its rows).
    pub title: &'a str,
    pub varying: &'a [Series],
    /// Constant series, as `name = value` lines.
    pub constant: &'a [String],
    pub smoothing: Smoothing,
}

/// The image size for `panels` panels and `listed` constant lines.
pub fn size(panels: usize, listed: usize) -> (u32, u32) {
    let panel_rows = panels.div_ceil(COLUMNS) as u32;
    let list_h = if listed == 0 {
        0
    } else {
        LIST_TITLE_H + listed.div_ceil(COLUMNS) as u32 * LIST_LINE_H + LIST_BOTTOM
    };
    (
        COLUMNS as u32 * PANEL_W,
        HEADER_H + panel_rows * PANEL_H + list_h,
    )
}

/// Draws the figure.
pub fn render(fig: &Figure<'_>) -> Result<RgbImage, ChartError> {
    let (width, height) = size(fig.varying.len(), fig.constant.len());
    chart::render(width, height, |root| {
        let panels_h = fig.varying.len().div_ceil(COLUMNS) as u32 * PANEL_H;
        let (header, rest) = root.split_vertically(HEADER_H);
        let (panels, list) = rest.split_vertically(panels_h);
        draw_header(&header, fig)?;
        for (i, s) in fig.varying.iter().enumerate() {
            let (col, row) = ((i % COLUMNS) as u32, (i / COLUMNS) as u32);
            let (x0, y0) = (col * PANEL_W, row * PANEL_H);
            let area = panels.clone().shrink((x0, y0), (PANEL_W, PANEL_H));
            draw_panel(&area, s, fig.smoothing)?;
        }
        if !fig.constant.is_empty() {
            draw_constants(&list, fig.constant)?;
        }
        Ok(())
    })
}

/// The title line and the legend, which states the smoothing weight.
fn draw_header(area: &Area<'_>, fig: &Figure<'_>) -> DrawResult {
    area.draw(&Text::new(fig.title, (LEFT, 12), text_style(20, INK)))?;
    let y = 48;
    let raw = LINE.mix(RAW_ALPHA).filled();
    area.draw(&Circle::new((LEFT + 6, y), 3, raw))?;
    area.draw(&Circle::new((LEFT + 16, y - 2), 3, raw))?;
    let legend = left_centred(text_style(15, INK));
    area.draw(&Text::new("raw values", (LEFT + 28, y), legend.clone()))?;
    let x = LEFT + 140;
    area.draw(&PathElement::new(
        vec![(x, y), (x + 28, y)],
        LINE.stroke_width(2),
    ))?;
    let w = fig.smoothing.weight();
    let text = format!(
        "smoothed: exponential moving average, weight {w}, debiased as in TensorBoard \
         (vgrpo plot --smoothing)"
    );
    area.draw(&Text::new(text, (x + 38, y), legend))?;
    Ok(())
}

/// One metric: faint raw points, the smoothed curve, labelled axes; the
/// caption gives the last raw and smoothed values.
fn draw_panel(area: &Area<'_>, s: &Series, smoothing: Smoothing) -> DrawResult {
    let values: Vec<f64> = s.points.iter().map(|p| p.1).collect();
    let smoothed = smoothing.apply(&values);
    let (xr, yr) = ranges(s);
    let (x_ticks, y_ticks) = (axis_labels(&xr, 6), axis_labels(&yr, 6));
    let mut chart = ChartBuilder::on(area)
        .margin(10)
        .margin_right(18)
        .caption(caption(s, &smoothed), text_style(CAPTION_PX, INK))
        .x_label_area_size(40)
        .y_label_area_size(72)
        .build_cartesian_2d(xr, yr)?;
    let y_desc = fit_y_label(&s.key);
    chart
        .configure_mesh()
        .x_desc("step")
        .y_desc(y_desc)
        .label_style(text_style(12, INK))
        .axis_desc_style(text_style(AXIS_PX, MUTED))
        .x_labels(6)
        .y_labels(6)
        .x_label_formatter(&x_ticks)
        .y_label_formatter(&y_ticks)
        .bold_line_style(GRID_BOLD)
        .light_line_style(GRID)
        .max_light_lines(1)
        .axis_style(INK)
        .draw()?;
    let raw = LINE.mix(RAW_ALPHA).filled();
    chart.draw_series(
        s.points
            .iter()
            .filter(|p| p.1.is_finite())
            .map(|&p| Circle::new(p, RAW_RADIUS, raw)),
    )?;
    for run in finite_runs(s.points.iter().map(|p| p.0).zip(smoothed)) {
        if let [only] = run[..] {
            chart.draw_series(std::iter::once(Circle::new(only, 2, LINE.filled())))?;
        } else {
            chart.draw_series(std::iter::once(PathElement::new(run, LINE.stroke_width(2))))?;
        }
    }
    Ok(())
}

/// The panel's caption: the key, the last raw value and the last smoothed
/// one — as much of that as fits the panel's width (a long key keeps only
/// itself rather than run into the next panel's caption).
fn caption(s: &Series, smoothed: &[f64]) -> String {
    let last = |v: &mut dyn Iterator<Item = f64>| v.filter(|v| v.is_finite()).last();
    let raw = last(&mut s.points.iter().map(|p| p.1));
    let smooth = last(&mut smoothed.iter().copied());
    let mut options = Vec::new();
    if let (Some(r), Some(m)) = (raw, smooth) {
        options.push(format!(
            "{}   last {} (smoothed {})",
            s.key,
            tick(r),
            tick(m)
        ));
        options.push(format!("{}   last {}", s.key, tick(r)));
    }
    let fits = |text: &String| text_width(text, f64::from(CAPTION_PX)) <= (PANEL_W - 24) as f32;
    options
        .into_iter()
        .find(fits)
        .unwrap_or_else(|| s.key.clone())
}

/// Consecutive finite points: a gap (NaN) ends a run.
fn finite_runs(points: impl Iterator<Item = (f64, f64)>) -> Vec<Vec<(f64, f64)>> {
    let mut runs = Vec::new();
    let mut current = Vec::new();
    for (x, y) in points {
        if y.is_finite() {
            current.push((x, y));
        } else if !current.is_empty() {
            runs.push(std::mem::take(&mut current));
        }
    }
    if !current.is_empty() {
        runs.push(current);
    }
    runs
}

/// The axes' ranges: every step padded by 2 %, and the finite values by
/// 5 % (a non-negative metric keeps a floor of 0 rather than a negative
/// axis).
fn ranges(s: &Series) -> (std::ops::Range<f64>, std::ops::Range<f64>) {
    let span = |it: &mut dyn Iterator<Item = f64>| {
        it.filter(|v| v.is_finite())
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
                (lo.min(v), hi.max(v))
            })
    };
    let (xlo, xhi) = span(&mut s.points.iter().map(|p| p.0));
    let (lo, hi) = span(&mut s.points.iter().map(|p| p.1));
    // A drawn series has two different finite values, so hi > lo; the
    // fallback keeps a degenerate one (all at one step) drawable. The 2 %
    // keeps the first and last points off the axes.
    let xpad = if xhi > xlo { 0.02 * (xhi - xlo) } else { 0.5 };
    let (xlo, xhi) = (xlo - xpad, xhi + xpad);
    let pad = if hi > lo { 0.05 * (hi - lo) } else { 1.0 };
    let floor = if lo >= 0.0 {
        (lo - pad).max(0.0)
    } else {
        lo - pad
    };
    (xlo..xhi, floor..hi + pad)
}

/// The y axis's label: the key, with its unit where the trainer's doc
/// states one.
pub fn y_label(key: &str) -> String {
    let unit = match key {
        k if k.starts_with("timing_s/") || k == "seconds" => "s",
        "tokens_per_s" => "tokens/s",
        "response_length/mean" | "answer_tokens" => "tokens",
        "kl" | "entropy" => "nats/token",
        "grad_norm" => "L2, before clipping",
        "epoch" => "epochs",
        k if k.starts_with("reward/acc")
            || k.starts_with("reward/exact")
            || k.starts_with("clip_ratio")
            || k.ends_with("clip_ratio")
            || k == "reward/fmt"
            || k == "frac_reward_zero_std" =>
        {
            "fraction"
        }
        _ => return key.to_string(),
    };
    format!("{key} ({unit})")
}

/// [`y_label`], with the key's leading components dropped until it fits
/// the axis (the caption above keeps the whole key).
fn fit_y_label(key: &str) -> String {
    let mut rest = key;
    loop {
        let label = y_label(key).replacen(key, rest, 1);
        let Some((_, tail)) = rest.split_once('/') else {
            return label;
        };
        if text_width(&label, f64::from(AXIS_PX)) <= Y_LABEL_MAX {
            return label;
        }
        rest = tail;
    }
}

/// The constant series, in `COLUMNS` columns.
fn draw_constants(area: &Area<'_>, lines: &[String]) -> DrawResult {
    let title = format!("Constant over the run (not drawn): {} series", lines.len());
    area.draw(&Text::new(title, (LEFT, 12), text_style(17, INK)))?;
    // Down the columns, so the list reads in its order like a page.
    let per_column = lines.len().div_ceil(COLUMNS);
    for (i, line) in lines.iter().enumerate() {
        let x = LEFT + ((i / per_column) as u32 * PANEL_W) as i32;
        let y = (LIST_TITLE_H + (i % per_column) as u32 * LIST_LINE_H) as i32;
        area.draw(&Text::new(line.as_str(), (x, y), text_style(14, INK)))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(key: &str, values: &[f64]) -> Series {
        Series {
            key: key.into(),
            points: values
                .iter()
                .enumerate()
                .map(|(i, &v)| (i as f64 + 1.0, v))
                .collect(),
        }
    }

    fn figure<'a>(varying: &'a [Series], constant: &'a [String]) -> Figure<'a> {
        Figure {
            title: "t",
            varying,
            constant,
            smoothing: Smoothing::default(),
        }
    }

    fn count(image: &RgbImage, colour: RGBColor) -> usize {
        let c = [colour.0, colour.1, colour.2];
        image.rgb.chunks(3).filter(|p| *p == c).count()
    }

    /// The smoothed curve is drawn in the full line colour inside the
    /// panel; with nothing varying there is no panel and no curve, only the
    /// listed constants' text.
    #[test]
    fn varying_series_get_a_curve_and_constants_only_text() {
        let varying = [series("kl", &[0.0, 0.2, f64::NAN, 0.1, 0.4])];
        let constant = ["lr = 1.00e-4".to_string()];
        let image = render(&figure(&varying, &constant)).unwrap();
        assert_eq!((image.width, image.height), size(1, 1));
        assert_eq!(size(1, 1), (3 * PANEL_W, HEADER_H + PANEL_H + 40 + 22 + 12));
        let panel = RgbImage {
            width: image.width,
            height: PANEL_H,
            rgb: image.rgb[(HEADER_H * image.width * 3) as usize..]
                [..(PANEL_H * image.width * 3) as usize]
                .to_vec(),
        };
        assert!(count(&panel, LINE) > 100, "the curve, 2 px wide");

        let image = render(&figure(&[], &constant)).unwrap();
        assert_eq!((image.width, image.height), size(0, 1));
        // The legend's sample line is the only line-coloured ink.
        let legend = count(&image, LINE);
        assert!(legend > 0 && legend < 100, "{legend}");
        let dark = image.rgb.chunks(3).filter(|p| p[0] < 100).count();
        assert!(dark > 200, "header and list text: {dark}");
    }

    #[test]
    fn long_y_labels_keep_their_tail_and_unit() {
        assert_eq!(fit_y_label("kl"), "kl (nats/token)");
        assert_eq!(fit_y_label("reward/acc"), "reward/acc (fraction)");
        let got = fit_y_label("reward/exact_by_dimension/alignment");
        assert_eq!(got, "alignment (fraction)");
        assert!(text_width(&got, f64::from(AXIS_PX)) <= Y_LABEL_MAX);
    }

    /// The caption drops what does not fit the panel's width.
    #[test]
    fn captions_fit_their_panel() {
        let s = series("kl", &[0.5, 0.25]);
        let smoothed = Smoothing::default().apply(&[0.5, 0.25]);
        assert_eq!(caption(&s, &smoothed), "kl   last 0.250 (smoothed 0.344)");
        let long = format!("reward/exact_by_dimension/{}", "x".repeat(20));
        let s = series(&long, &[0.5, 0.25]);
        let got = caption(&s, &smoothed);
        assert_eq!(got, format!("{long}   last 0.250"));
        let width = text_width(&got, f64::from(CAPTION_PX));
        assert!(width <= (PANEL_W - 24) as f32, "{width}");
        let s = series(&"k".repeat(80), &[0.5, 0.25]);
        assert_eq!(caption(&s, &smoothed), "k".repeat(80));
    }

    #[test]
    fn gaps_split_the_curve() {
        let pts = [
            (1.0, 1.0),
            (2.0, f64::NAN),
            (3.0, 2.0),
            (4.0, 3.0),
            (5.0, f64::NAN),
        ];
        let runs = finite_runs(pts.into_iter());
        assert_eq!(runs, [vec![(1.0, 1.0)], vec![(3.0, 2.0), (4.0, 3.0)]]);
    }

    #[test]
    fn axes_have_units_where_known_and_non_negative_floors() {
        assert_eq!(y_label("timing_s/gen"), "timing_s/gen (s)");
        assert_eq!(
            y_label("reward/acc_by_dimension/visual"),
            "reward/acc_by_dimension/visual (fraction)"
        );
        assert_eq!(
            y_label("response_length/clip_ratio"),
            "response_length/clip_ratio (fraction)"
        );
        assert_eq!(y_label("loss"), "loss");
        let (x, y) = ranges(&series("loss", &[1.0, 3.0]));
        assert!((x.start - 0.98).abs() < 1e-12 && (x.end - 2.02).abs() < 1e-12);
        assert!((y.start - 0.9).abs() < 1e-12 && (y.end - 3.1).abs() < 1e-12);
        let (_, y) = ranges(&series("pg_loss", &[0.01, -0.01]));
        assert!(y.start < -0.01);
        let (_, y) = ranges(&series("kl", &[0.0, 1.0]));
        assert_eq!(y.start, 0.0);
    }
}

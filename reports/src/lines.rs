//! Line charts on numeric axes, with optional confidence bands: the adoption curve and traffic
//! over time.

use plotters::coord::Shift;
use plotters::prelude::*;

use crate::charts::{Chart, DrawResult, GRID_COLOR, HEADER, MARGIN, Swatch, Y_LABEL_AREA, draw_empty, draw_header};
use crate::fonts::FAMILY;

/// How a series is drawn.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Stroke {
    Solid,
    Dashed,
    /// Markers only: points with no order between them (a scatter).
    None,
}

pub struct Curve {
    pub label: String,
    pub color: RGBColor,
    pub stroke: Stroke,
    /// Draw a dot at each point.
    pub markers: bool,
    pub points: Vec<(f64, f64)>,
    /// `(x, low, high)`: a shaded band (e.g. a 95% interval), where known.
    pub band: Vec<(f64, f64, f64)>,
}

pub struct LineChart {
    pub title: String,
    pub x_desc: String,
    pub y_desc: String,
    pub series: Vec<Curve>,
    /// Fixed y range; `None` fits the data from 0.
    pub y_range: Option<(f64, f64)>,
    pub y_text: fn(f64) -> String,
    pub x_text: fn(f64) -> String,
    pub empty: String,
    /// Extra legend entry for the bands, when there are any.
    pub band_label: Option<String>,
}

const WIDTH: u32 = 960;
const HEIGHT: u32 = 560;
/// Tick labels asked of plotters on each axis.
const X_LABELS: usize = 8;
const Y_LABELS: usize = 6;

impl LineChart {
    /// The tick labels the drawn chart carries, x axis then y axis: the key points plotters
    /// picks for the same ranges, through the same formatters. A test reads them to catch an
    /// axis whose labels all read the same (a time base off by an epoch made every y tick "0/s").
    #[cfg(test)]
    pub fn tick_labels(&self) -> (Vec<String>, Vec<String>) {
        use plotters::coord::ranged1d::Ranged;
        use plotters::coord::types::RangedCoordf64;
        let Some((x0, x1)) = self.x_range() else { return (Vec::new(), Vec::new()) };
        let (y0, y1) = self.y_range_fit();
        let xs = RangedCoordf64::from(x0..x1).key_points(X_LABELS);
        let ys = RangedCoordf64::from(y0..y1).key_points(Y_LABELS);
        (xs.into_iter().map(self.x_text).collect(), ys.into_iter().map(self.y_text).collect())
    }

    fn x_range(&self) -> Option<(f64, f64)> {
        let xs = self.series.iter().flat_map(|s| s.points.iter().map(|p| p.0));
        let (lo, hi) = xs.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), x| (lo.min(x), hi.max(x)));
        if !lo.is_finite() {
            return None;
        }
        let pad = if hi > lo { (hi - lo) * 0.04 } else { 0.5 };
        Some((lo - pad, hi + pad))
    }

    fn y_range_fit(&self) -> (f64, f64) {
        if let Some(r) = self.y_range {
            return r;
        }
        let ys = self.series.iter().flat_map(|s| s.points.iter().map(|p| p.1).chain(s.band.iter().map(|b| b.2)));
        let hi = ys.fold(0.0, f64::max);
        (0.0, if hi > 0.0 { hi * 1.1 } else { 1.0 })
    }
}

impl Chart for LineChart {
    fn size(&self) -> (u32, u32) {
        (WIDTH, HEIGHT)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
        root.fill(&WHITE)?;
        let (header, body) = root.split_vertically(HEADER + 12);
        let mut legend: Vec<(String, Swatch)> = self
            .series
            .iter()
            .map(|s| {
                let c = s.color.to_rgba();
                let swatch = match s.stroke {
                    Stroke::Solid => Swatch::Line(c),
                    Stroke::Dashed => Swatch::Dashed(c),
                    Stroke::None => Swatch::Box(c),
                };
                (s.label.clone(), swatch)
            })
            .collect();
        if let Some(label) = &self.band_label
            && self.series.iter().any(|s| !s.band.is_empty())
        {
            let c =
                self.series.iter().find(|s| !s.band.is_empty()).map(|s| s.color.mix(0.25)).unwrap_or(BLACK.mix(0.2));
            legend.push((label.clone(), Swatch::Box(c)));
        }
        draw_header(&header, &self.title, &legend)?;
        let Some((x0, x1)) = self.x_range() else {
            return draw_empty(&body, &self.empty);
        };
        let (y0, y1) = self.y_range_fit();
        let mut chart = ChartBuilder::on(&body)
            .margin_left(MARGIN)
            .margin_right(MARGIN + 8)
            .margin_top(8)
            .margin_bottom(12)
            .x_label_area_size(64)
            .y_label_area_size(Y_LABEL_AREA)
            .build_cartesian_2d(x0..x1, y0..y1)?;
        let (x_text, y_text) = (self.x_text, self.y_text);
        chart
            .configure_mesh()
            .x_labels(X_LABELS)
            .y_labels(Y_LABELS)
            .x_label_formatter(&|x: &f64| x_text(*x))
            .y_label_formatter(&|y: &f64| y_text(*y))
            .x_desc(self.x_desc.as_str())
            .y_desc(self.y_desc.as_str())
            .label_style((FAMILY, 15))
            .axis_desc_style((FAMILY, 16))
            .light_line_style(TRANSPARENT)
            .bold_line_style(GRID_COLOR)
            .draw()?;
        for s in &self.series {
            if s.band.len() >= 2 {
                let mut poly: Vec<(f64, f64)> = s.band.iter().map(|b| (b.0, b.1.max(y0))).collect();
                poly.extend(s.band.iter().rev().map(|b| (b.0, b.2.min(y1))));
                chart.draw_series(std::iter::once(Polygon::new(poly, s.color.mix(0.2).filled())))?;
            }
            // A single point's interval is an error bar.
            for b in s.band.iter().filter(|_| s.band.len() == 1) {
                chart.draw_series(std::iter::once(PathElement::new(
                    vec![(b.0, b.1), (b.0, b.2)],
                    s.color.stroke_width(2),
                )))?;
            }
        }
        // The first series is the one the chart is about: drawn last, on top.
        for s in self.series.iter().rev() {
            let style = s.color.stroke_width(3);
            match s.stroke {
                Stroke::Solid => {
                    chart.draw_series(LineSeries::new(s.points.iter().copied(), style))?;
                }
                Stroke::Dashed => {
                    chart.draw_series(DashedLineSeries::new(s.points.iter().copied(), 10, 6, style))?;
                }
                Stroke::None => {}
            }
            if s.markers {
                chart.draw_series(s.points.iter().map(|p| Circle::new(*p, 5, s.color.filled())))?;
            }
        }
        Ok(())
    }
}

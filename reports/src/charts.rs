//! Charts drawn the same way to SVG and PNG: the [`Chart`] trait, grouped bars (one group per
//! category) and the pieces the other chart kinds share (header with title and legend,
//! category axis).

use std::ops::Range;
use std::path::Path;

use plotters::coord::Shift;
use plotters::coord::ranged1d::{KeyPointHint, NoDefaultFormatting, Ranged, ValueFormatter};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::fonts::FAMILY;

/// Colour-blind-safe pair (Okabe–Ito blue and vermillion): "what was sent" vs "what leaked".
pub const TRUTH_COLOR: RGBColor = RGBColor(0, 114, 178);
pub const SEEN_COLOR: RGBColor = RGBColor(213, 94, 0);
/// Okabe–Ito bluish green and reddish purple, for a third and fourth series.
pub const THIRD_COLOR: RGBColor = RGBColor(0, 158, 115);
pub const FOURTH_COLOR: RGBColor = RGBColor(204, 121, 167);
/// Grid lines.
pub const GRID_COLOR: RGBColor = RGBColor(215, 215, 215);

/// Height of the bar charts, in pixels.
const HEIGHT: u32 = 520;
/// Space for the title and legend above the plot.
pub const HEADER: u32 = 84;
/// Room left of the plot for the y tick labels and axis name.
pub const Y_LABEL_AREA: u32 = 96;
/// Room below the plot for the category names and axis name.
pub const X_LABEL_AREA: u32 = 72;
pub const MARGIN: u32 = 24;
/// The narrowest slot a category gets, and a rough width per character of a 15 px label
/// (DejaVu Sans averages about 0.6 em), used to widen slots so names never overlap.
pub const MIN_SLOT: u32 = 150;
pub const PX_PER_LABEL_CHAR: u32 = 10;
/// Share of a slot the bars of a group fill; the rest separates groups.
const GROUP_WIDTH: f64 = 0.72;

/// The result of drawing on any backend.
pub type DrawResult<DB> = Result<(), DrawingAreaErrorKind<<DB as DrawingBackend>::ErrorType>>;

/// A figure that can be drawn on any plotters backend.
pub trait Chart {
    /// Width and height in pixels.
    fn size(&self) -> (u32, u32);
    /// Draws the whole figure, background included.
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<DB>;
}

/// The chart as an SVG document.
pub fn to_svg<C: Chart>(chart: &C) -> Result<String, String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, chart.size()).into_drawing_area();
        chart.draw(&root).map_err(|e| e.to_string())?;
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(svg)
}

/// Draws the chart into a PNG file.
pub fn write_png<C: Chart>(chart: &C, path: &Path) -> Result<(), String> {
    let root = BitMapBackend::new(path, chart.size()).into_drawing_area();
    chart.draw(&root).map_err(|e| e.to_string())?;
    root.present().map_err(|e| e.to_string())
}

/// What a legend entry looks like.
#[derive(Clone, Copy)]
pub enum Swatch {
    Box(RGBAColor),
    Line(RGBAColor),
    Dashed(RGBAColor),
    Diamond(RGBAColor),
}

/// Title on the first line, legend (a swatch and a name per entry) on the second; entries that
/// do not fit on the line wrap to a third.
pub fn draw_header<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    title: &str,
    legend: &[(String, Swatch)],
) -> DrawResult<DB> {
    let x0 = MARGIN as i32;
    area.draw(&Text::new(title, (x0, 14), (FAMILY, 22).into_font().color(&BLACK)))?;
    let legend_font = (FAMILY, 16).into_font().color(&BLACK);
    let (width, _) = area.dim_in_pixel();
    let mut x = x0;
    let mut y = 52;
    for (label, swatch) in legend {
        let (label_width, _) = area.estimate_text_size(label, &legend_font)?;
        if x > x0 && x + 24 + label_width as i32 > width as i32 - MARGIN as i32 {
            x = x0;
            y += 24;
        }
        match *swatch {
            Swatch::Box(c) => area.draw(&Rectangle::new([(x, y), (x + 16, y + 16)], c.filled()))?,
            Swatch::Line(c) => area.draw(&PathElement::new(vec![(x, y + 8), (x + 18, y + 8)], c.stroke_width(3)))?,
            Swatch::Dashed(c) => {
                area.draw(&PathElement::new(vec![(x, y + 8), (x + 6, y + 8)], c.stroke_width(3)))?;
                area.draw(&PathElement::new(vec![(x + 11, y + 8), (x + 18, y + 8)], c.stroke_width(3)))?;
            }
            Swatch::Diamond(c) => area.draw(&diamond((x + 8, y + 8), 7, c))?,
        }
        area.draw(&Text::new(label.as_str(), (x + 24, y - 1), legend_font.clone()))?;
        x += 24 + label_width as i32 + 36;
    }
    Ok(())
}

/// A filled diamond centred on `c` with half-diagonal `r`, in pixel coordinates.
pub fn diamond(c: (i32, i32), r: i32, color: RGBAColor) -> Polygon<(i32, i32)> {
    Polygon::new(vec![(c.0, c.1 - r), (c.0 + r, c.1), (c.0, c.1 + r), (c.0 - r, c.1)], color.filled())
}

/// A centred message in place of a plot that has nothing to show.
pub fn draw_empty<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, message: &str) -> DrawResult<DB> {
    let (w, h) = area.dim_in_pixel();
    let style = TextStyle::from((FAMILY, 18).into_font()).pos(Pos::new(HPos::Center, VPos::Center));
    area.draw(&Text::new(message, (w as i32 / 2, h as i32 / 2), style))
}

/// Width of a chart whose x axis has `categories` slots, each wide enough for its label.
pub fn categories_width(categories: &[String], min_width: u32) -> u32 {
    categories_width_with(categories, MIN_SLOT, min_width)
}

/// [`categories_width`] with slots at least `min_slot` pixels wide.
pub fn categories_width_with(categories: &[String], min_slot: u32, min_width: u32) -> u32 {
    let longest = categories.iter().map(|c| c.chars().count() as u32).max().unwrap_or(0);
    let slot = min_slot.max(longest * PX_PER_LABEL_CHAR + 30);
    let slots = categories.len().max(1) as u32;
    (Y_LABEL_AREA + 2 * MARGIN + slots * slot).max(min_width)
}

/// One colour of bars: a value per category.
pub struct BarSeries {
    pub label: String,
    pub color: RGBColor,
    pub values: Vec<f64>,
}

/// Bars for each category side by side, one per series, with the value written above each bar.
pub struct GroupedBarChart {
    pub title: String,
    pub x_desc: String,
    pub y_desc: String,
    pub categories: Vec<String>,
    pub series: Vec<BarSeries>,
    /// How values are written on the y axis and above the bars.
    pub value_text: fn(f64) -> String,
    /// What to say when there are no categories.
    pub empty: String,
}

impl Chart for GroupedBarChart {
    /// Wide enough that every category name fits under its own group.
    fn size(&self) -> (u32, u32) {
        (categories_width(&self.categories, 760), HEIGHT)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
        root.fill(&WHITE)?;
        let (header, body) = root.split_vertically(HEADER);
        let legend: Vec<(String, Swatch)> =
            self.series.iter().map(|s| (s.label.clone(), Swatch::Box(s.color.to_rgba()))).collect();
        draw_header(&header, &self.title, &legend)?;
        if self.categories.is_empty() {
            return draw_empty(&body, &self.empty);
        }
        self.draw_bars(&body)
    }
}

impl GroupedBarChart {
    fn draw_bars<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
        let max = self.series.iter().flat_map(|s| s.values.iter().copied()).fold(0.0, f64::max);
        // Headroom above the tallest bar for its value label.
        let y_max = if max > 0.0 { max * 1.15 } else { 1.0 };

        let mut chart = ChartBuilder::on(area)
            .margin_left(MARGIN)
            .margin_right(MARGIN)
            .margin_bottom(12)
            .x_label_area_size(X_LABEL_AREA)
            .y_label_area_size(Y_LABEL_AREA)
            .build_cartesian_2d(CategorySlots { labels: &self.categories }, 0f64..y_max)?;

        let value_text = self.value_text;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .y_labels(8)
            .y_label_formatter(&|y: &f64| value_text(*y))
            .x_desc(self.x_desc.as_str())
            .y_desc(self.y_desc.as_str())
            .label_style((FAMILY, 15))
            .axis_desc_style((FAMILY, 16))
            .light_line_style(TRANSPARENT)
            .bold_line_style(GRID_COLOR)
            .draw()?;

        let bar_width = GROUP_WIDTH / self.series.len().max(1) as f64;
        let value_style = TextStyle::from((FAMILY, 13).into_font()).pos(Pos::new(HPos::Center, VPos::Bottom));
        for (j, series) in self.series.iter().enumerate() {
            let span = |i: usize| {
                let left = i as f64 + (1.0 - GROUP_WIDTH) / 2.0 + j as f64 * bar_width;
                (left + 0.01, left + bar_width - 0.01)
            };
            chart.draw_series(series.values.iter().enumerate().map(|(i, &v)| {
                let (l, r) = span(i);
                Rectangle::new([(l, 0.0), (r, v)], series.color.filled())
            }))?;
            chart.draw_series(series.values.iter().enumerate().map(|(i, &v)| {
                let (l, r) = span(i);
                EmptyElement::at(((l + r) / 2.0, v)) + Text::new(value_text(v), (0, -4), value_style.clone())
            }))?;
        }
        Ok(())
    }
}

/// The x axis: category `i` owns the slot `[i, i + 1)` and is labelled at its centre, with every
/// label shown (plotters' own axes would thin them out or put ticks between groups).
pub struct CategorySlots<'a> {
    pub labels: &'a [String],
}

impl CategorySlots<'_> {
    fn width(&self) -> f64 {
        self.labels.len().max(1) as f64
    }
}

impl Ranged for CategorySlots<'_> {
    type FormatOption = NoDefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        limit.0 + ((limit.1 - limit.0) as f64 * value / self.width()).round() as i32
    }

    fn key_points<Hint: KeyPointHint>(&self, _hint: Hint) -> Vec<f64> {
        (0..self.labels.len()).map(|i| i as f64 + 0.5).collect()
    }

    fn range(&self) -> Range<f64> {
        0.0..self.width()
    }
}

impl ValueFormatter<f64> for CategorySlots<'_> {
    fn format_ext(&self, value: &f64) -> String {
        self.labels.get(value.floor().max(0.0) as usize).cloned().unwrap_or_default()
    }
}

/// Two charts in one figure, the first above the second.
pub struct Stack<A: Chart, B: Chart> {
    pub top: A,
    pub bottom: B,
}

impl<A: Chart, B: Chart> Chart for Stack<A, B> {
    fn size(&self) -> (u32, u32) {
        let (tw, th) = self.top.size();
        let (bw, bh) = self.bottom.size();
        (tw.max(bw), th + bh)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
        root.fill(&WHITE)?;
        let (top, bottom) = root.split_vertically(self.top.size().1);
        self.top.draw(&top)?;
        self.bottom.draw(&bottom)
    }
}

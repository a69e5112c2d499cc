//! Grouped bar charts, one group of bars per system pair, drawn the same way to SVG and PNG.

use std::path::Path;

use std::ops::Range;

use plotters::coord::Shift;
use plotters::coord::ranged1d::{KeyPointHint, NoDefaultFormatting, Ranged, ValueFormatter};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::fonts::FAMILY;

/// Colour-blind-safe pair (Okabe–Ito blue and vermillion): "what was sent" vs "what leaked".
pub const TRUTH_COLOR: RGBColor = RGBColor(0, 114, 178);
pub const SEEN_COLOR: RGBColor = RGBColor(213, 94, 0);

/// Height of every chart, in pixels.
const HEIGHT: u32 = 520;
/// Space for the title and legend above the plot.
const HEADER: u32 = 84;
/// Room left of the plot for the y tick labels and axis name.
const Y_LABEL_AREA: u32 = 96;
/// Room below the plot for the pair names and axis name.
const X_LABEL_AREA: u32 = 72;
const MARGIN: u32 = 24;
/// The narrowest slot a pair gets, and a rough width per character of a 15 px label
/// (DejaVu Sans averages about 0.6 em), used to widen slots so pair names never overlap.
const MIN_SLOT: u32 = 150;
const PX_PER_LABEL_CHAR: u32 = 10;
/// Share of a slot the bars of a group fill; the rest separates groups.
const GROUP_WIDTH: f64 = 0.72;

/// One colour of bars: a value per category.
pub struct BarSeries {
    pub label: String,
    pub color: RGBColor,
    pub values: Vec<u64>,
}

/// Bars for each category side by side, one per series, with the value written above each bar.
pub struct GroupedBarChart {
    pub title: String,
    pub x_desc: String,
    pub y_desc: String,
    pub categories: Vec<String>,
    pub series: Vec<BarSeries>,
    /// How values are written on the y axis and above the bars.
    pub value_text: fn(u64) -> String,
}

impl GroupedBarChart {
    /// Wide enough that every pair name fits under its own group.
    pub fn size(&self) -> (u32, u32) {
        let longest = self.categories.iter().map(|c| c.chars().count() as u32).max().unwrap_or(0);
        let slot = MIN_SLOT.max(longest * PX_PER_LABEL_CHAR + 30);
        let slots = self.categories.len().max(1) as u32;
        let width = (Y_LABEL_AREA + 2 * MARGIN + slots * slot).max(760);
        (width, HEIGHT)
    }

    /// The chart as an SVG document.
    pub fn to_svg(&self) -> Result<String, String> {
        let mut svg = String::new();
        {
            let root = SVGBackend::with_string(&mut svg, self.size()).into_drawing_area();
            self.draw(&root).map_err(|e| e.to_string())?;
            root.present().map_err(|e| e.to_string())?;
        }
        Ok(svg)
    }

    /// Draws the chart into a PNG file.
    pub fn write_png(&self, path: &Path) -> Result<(), String> {
        let root = BitMapBackend::new(path, self.size()).into_drawing_area();
        self.draw(&root).map_err(|e| e.to_string())?;
        root.present().map_err(|e| e.to_string())
    }

    fn draw<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, Shift>,
    ) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
        root.fill(&WHITE)?;
        let (header, body) = root.split_vertically(HEADER);
        self.draw_header(&header)?;
        if self.categories.is_empty() {
            let (w, h) = body.dim_in_pixel();
            let style = TextStyle::from((FAMILY, 18).into_font()).pos(Pos::new(HPos::Center, VPos::Center));
            body.draw(&Text::new("No mail crossed between systems in this run.", (w as i32 / 2, h as i32 / 2), style))?;
            return Ok(());
        }
        self.draw_bars(&body)
    }

    /// Title on the first line, legend (a swatch and a name per series) on the second.
    fn draw_header<DB: DrawingBackend>(
        &self,
        area: &DrawingArea<DB, Shift>,
    ) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
        let x0 = MARGIN as i32;
        area.draw(&Text::new(self.title.as_str(), (x0, 14), (FAMILY, 22).into_font().color(&BLACK)))?;
        let legend_font = (FAMILY, 16).into_font().color(&BLACK);
        let mut x = x0;
        for series in &self.series {
            area.draw(&Rectangle::new([(x, 52), (x + 16, 68)], series.color.filled()))?;
            area.draw(&Text::new(series.label.as_str(), (x + 24, 51), legend_font.clone()))?;
            let (label_width, _) = area.estimate_text_size(&series.label, &legend_font)?;
            x += 24 + label_width as i32 + 36;
        }
        Ok(())
    }

    fn draw_bars<DB: DrawingBackend>(
        &self,
        area: &DrawingArea<DB, Shift>,
    ) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
        let max = self.series.iter().flat_map(|s| s.values.iter().copied()).max().unwrap_or(0);
        // Headroom above the tallest bar for its value label.
        let y_max = ((max as f64) * 1.15).ceil().max(1.0) as u64;

        let mut chart = ChartBuilder::on(area)
            .margin_left(MARGIN)
            .margin_right(MARGIN)
            .margin_bottom(12)
            .x_label_area_size(X_LABEL_AREA)
            .y_label_area_size(Y_LABEL_AREA)
            .build_cartesian_2d(CategorySlots { labels: &self.categories }, 0u64..y_max)?;

        let value_text = self.value_text;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .y_label_formatter(&|y: &u64| value_text(*y))
            .x_desc(self.x_desc.as_str())
            .y_desc(self.y_desc.as_str())
            .label_style((FAMILY, 15))
            .axis_desc_style((FAMILY, 16))
            .light_line_style(TRANSPARENT)
            .bold_line_style(RGBColor(215, 215, 215))
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
                Rectangle::new([(l, 0), (r, v)], series.color.filled())
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
struct CategorySlots<'a> {
    labels: &'a [String],
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

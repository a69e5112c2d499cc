//! Stacked 100% bars: for each category, how its hop messages split over the exposure classes,
//! with a marker for the analytic expectation of the top class.

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::charts::{
    CategorySlots, Chart, DrawResult, GRID_COLOR, HEADER, MARGIN, Swatch, X_LABEL_AREA, Y_LABEL_AREA,
    categories_width_with, diamond, draw_empty, draw_header,
};
use crate::fonts::FAMILY;

const HEIGHT: u32 = 560;
/// Share of a slot the bar fills.
const BAR_WIDTH: f64 = 0.56;
/// Segments thinner than this (as a fraction) get no label inside.
const MIN_LABELLED: f64 = 0.06;

/// One layer of every bar: a class and its share (0 to 1) per category.
pub struct Layer {
    pub label: String,
    pub color: RGBColor,
    pub shares: Vec<Option<f64>>,
}

pub struct StackedShareChart {
    pub title: String,
    pub x_desc: String,
    pub categories: Vec<String>,
    /// Bottom layer first.
    pub layers: Vec<Layer>,
    /// A diamond per category at this share (e.g. the analytic content share), if any.
    pub markers: Vec<Option<f64>>,
    pub marker_label: String,
    pub empty: String,
}

impl Chart for StackedShareChart {
    fn size(&self) -> (u32, u32) {
        (categories_width_with(&self.categories, 96, 760), HEIGHT)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
        root.fill(&WHITE)?;
        let (header, body) = root.split_vertically(HEADER + 12);
        let mut legend: Vec<(String, Swatch)> =
            self.layers.iter().rev().map(|l| (l.label.clone(), Swatch::Box(l.color.to_rgba()))).collect();
        if self.markers.iter().any(Option::is_some) {
            legend.push((self.marker_label.clone(), Swatch::Diamond(BLACK.to_rgba())));
        }
        draw_header(&header, &self.title, &legend)?;
        if self.categories.is_empty() {
            return draw_empty(&body, &self.empty);
        }
        let mut chart = ChartBuilder::on(&body)
            .margin_left(MARGIN)
            .margin_right(MARGIN)
            .margin_top(8)
            .margin_bottom(12)
            .x_label_area_size(X_LABEL_AREA)
            .y_label_area_size(Y_LABEL_AREA)
            .build_cartesian_2d(CategorySlots { labels: &self.categories }, 0f64..1.0)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .y_labels(6)
            .y_label_formatter(&|y: &f64| format!("{:.0}%", y * 100.0))
            .x_desc(self.x_desc.as_str())
            .y_desc("share of hop messages")
            .label_style((FAMILY, 15))
            .axis_desc_style((FAMILY, 16))
            .light_line_style(TRANSPARENT)
            .bold_line_style(GRID_COLOR)
            .draw()?;

        let (l0, r0) = ((1.0 - BAR_WIDTH) / 2.0, (1.0 + BAR_WIDTH) / 2.0);
        let inside = TextStyle::from((FAMILY, 13).into_font()).pos(Pos::new(HPos::Center, VPos::Center));
        for i in 0..self.categories.len() {
            let x = i as f64;
            let mut bottom = 0.0;
            for layer in &self.layers {
                let share = layer.shares.get(i).copied().flatten().unwrap_or(0.0);
                if share <= 0.0 {
                    continue;
                }
                let top = (bottom + share).min(1.0);
                chart.draw_series(std::iter::once(Rectangle::new(
                    [(x + l0, bottom), (x + r0, top)],
                    layer.color.filled(),
                )))?;
                if share >= MIN_LABELLED {
                    let text = format!("{:.0}%", share * 100.0);
                    chart.draw_series(std::iter::once(
                        EmptyElement::at((x + 0.5, (bottom + top) / 2.0)) + Text::new(text, (0, 0), inside.clone()),
                    ))?;
                }
                bottom = top;
            }
            if let Some(Some(m)) = self.markers.get(i) {
                chart.draw_series(std::iter::once(
                    EmptyElement::at((x + r0 + 0.06, *m)) + diamond((0, 0), 8, BLACK.to_rgba()),
                ))?;
            }
        }
        Ok(())
    }
}

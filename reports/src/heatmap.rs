//! System × system matrices drawn as heatmaps, several side by side (truth beside what the
//! eavesdropper estimated), each cell labelled with its value.

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::charts::{Chart, DrawResult, MARGIN, TRUTH_COLOR, draw_header};
use crate::fonts::FAMILY;

/// One matrix: `values[row][col]`, rows are senders and columns receivers; `None` = no link.
pub struct Matrix {
    pub title: String,
    pub values: Vec<Vec<Option<f64>>>,
    pub value_text: fn(f64) -> String,
    /// Matrices sharing a scale group share the colour scale (truth and estimate of one measure).
    pub scale_group: usize,
}

pub struct HeatmapFigure {
    pub title: String,
    pub systems: Vec<String>,
    /// Drawn left to right, `per_row` per row.
    pub matrices: Vec<Matrix>,
    pub per_row: usize,
}

/// Space above each panel for its title and the receiver names.
const PANEL_HEADER: u32 = 64;
const HEADER: u32 = 56;

impl HeatmapFigure {
    fn cell(&self) -> u32 {
        let n = self.systems.len().max(1) as u32;
        (480 / n).clamp(44, 110)
    }

    fn label_width(&self) -> u32 {
        let longest = self.systems.iter().map(|s| s.chars().count() as u32).max().unwrap_or(4);
        (longest * 9 + 24).max(70)
    }

    fn panel_size(&self) -> (u32, u32) {
        let n = self.systems.len().max(1) as u32;
        let side = n * self.cell();
        (self.label_width() + side + 2 * MARGIN, PANEL_HEADER + side + 40)
    }

    fn max_of(&self, group: usize) -> f64 {
        self.matrices
            .iter()
            .filter(|m| m.scale_group == group)
            .flat_map(|m| m.values.iter().flatten().flatten().copied())
            .fold(0.0, f64::max)
    }

    fn draw_panel<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>, m: &Matrix) -> DrawResult<DB> {
        let cell = self.cell() as i32;
        let x0 = (MARGIN + self.label_width()) as i32;
        let y0 = PANEL_HEADER as i32;
        area.draw(&Text::new(m.title.as_str(), (MARGIN as i32, 6), (FAMILY, 17).into_font().color(&BLACK)))?;
        let name_font = (FAMILY, 14).into_font().color(&BLACK);
        let top = name_font.clone().pos(Pos::new(HPos::Center, VPos::Bottom));
        let left = name_font.pos(Pos::new(HPos::Right, VPos::Center));
        let small = (FAMILY, 12).into_font().color(&RGBColor(90, 90, 90));
        area.draw(&Text::new("to →", (x0, y0 - 26), small.clone()))?;
        area.draw(&Text::new("from ↓", (MARGIN as i32, y0 - 26), small))?;
        let max = self.max_of(m.scale_group);
        let value_font = if cell >= 60 { 14 } else { 11 };
        for (j, name) in self.systems.iter().enumerate() {
            area.draw(&Text::new(name.as_str(), (x0 + j as i32 * cell + cell / 2, y0 - 4), top.clone()))?;
            area.draw(&Text::new(name.as_str(), (x0 - 8, y0 + j as i32 * cell + cell / 2), left.clone()))?;
        }
        for (i, row) in m.values.iter().enumerate() {
            for (j, value) in row.iter().enumerate() {
                let (x, y) = (x0 + j as i32 * cell, y0 + i as i32 * cell);
                let rect = [(x + 1, y + 1), (x + cell - 1, y + cell - 1)];
                match value {
                    Some(v) => {
                        let t = if max > 0.0 { (v / max).clamp(0.0, 1.0) } else { 0.0 };
                        area.draw(&Rectangle::new(rect, shade(t).filled()))?;
                        let ink = if t > 0.55 { WHITE } else { BLACK };
                        let style =
                            (FAMILY, value_font).into_font().color(&ink).pos(Pos::new(HPos::Center, VPos::Center));
                        area.draw(&Text::new((m.value_text)(*v), (x + cell / 2, y + cell / 2), style))?;
                    }
                    None => {
                        area.draw(&Rectangle::new(rect, RGBColor(245, 245, 245).filled()))?;
                        let style = (FAMILY, value_font)
                            .into_font()
                            .color(&RGBColor(150, 150, 150))
                            .pos(Pos::new(HPos::Center, VPos::Center));
                        area.draw(&Text::new("–", (x + cell / 2, y + cell / 2), style))?;
                    }
                }
            }
        }
        Ok(())
    }
}

/// White (0) to Okabe–Ito blue (1).
fn shade(t: f64) -> RGBColor {
    let mix = |c: u8| (255.0 - (255.0 - f64::from(c)) * t).round() as u8;
    RGBColor(mix(TRUTH_COLOR.0), mix(TRUTH_COLOR.1), mix(TRUTH_COLOR.2))
}

impl Chart for HeatmapFigure {
    fn size(&self) -> (u32, u32) {
        let (w, h) = self.panel_size();
        let per_row = self.per_row.max(1);
        let rows = self.matrices.len().div_ceil(per_row).max(1) as u32;
        ((w * per_row as u32).max(600), HEADER + h * rows)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
        root.fill(&WHITE)?;
        let (header, body) = root.split_vertically(HEADER);
        draw_header(&header, &self.title, &[])?;
        let (w, h) = self.panel_size();
        for (k, m) in self.matrices.iter().enumerate() {
            let (col, row) = ((k % self.per_row.max(1)) as i32, (k / self.per_row.max(1)) as i32);
            let panel = body.clone().shrink((col * w as i32, row * h as i32), (w, h));
            self.draw_panel(&panel, m)?;
        }
        Ok(())
    }
}

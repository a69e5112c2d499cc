//! Matrices drawn as heatmaps, several side by side, each cell labelled with its value: system ×
//! system volume (truth beside what the eavesdropper estimated) and defense × attack shares.

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::charts::{Chart, DrawResult, MARGIN, TRUTH_COLOR, draw_header};
use crate::fonts::FAMILY;

/// One matrix: `values[row][col]` (for volume, rows are senders and columns receivers); `None` =
/// no such cell (no link, or no copy of mail in it), drawn as a grey dash.
pub struct Matrix {
    pub title: String,
    pub values: Vec<Vec<Option<f64>>>,
    pub value_text: fn(f64) -> String,
    /// Matrices sharing a scale group share the colour scale (truth and estimate of one measure).
    pub scale_group: usize,
}

pub struct HeatmapFigure {
    pub title: String,
    /// Row labels, top to bottom, and column labels, left to right (the same list for a system ×
    /// system matrix).
    pub rows: Vec<String>,
    pub columns: Vec<String>,
    /// What the rows and the columns are, printed at the corner: `("from", "to")`.
    pub axes: (&'static str, &'static str),
    /// The value drawn darkest; `None`: the largest value of the matrix's scale group. Shares use
    /// `Some(1.0)` so that a pale cell means a small share, not merely the smallest one.
    pub scale_max: Option<f64>,
    /// Widen the columns to their labels and break long labels in two (see
    /// [`HeatmapFigure::cell_width`]).
    pub fit_columns: bool,
    /// Drawn left to right, `per_row` per row.
    pub matrices: Vec<Matrix>,
    pub per_row: usize,
}

/// Space above each panel for its title and the receiver names.
const PANEL_HEADER: u32 = 64;
const HEADER: u32 = 56;

impl HeatmapFigure {
    /// A cell's height; also its width unless a column label needs more (see [`Self::cell_width`]).
    fn cell(&self) -> u32 {
        let n = self.rows.len().max(self.columns.len()).max(1) as u32;
        (480 / n).clamp(44, 110)
    }

    /// Wide enough for the longest line of any column label (about 8 px a character at 14 px),
    /// when the figure asks for it: `fake-mx/self-signed` over a 53 px cell would run into its
    /// neighbours. System × system maps keep square cells (their names are short, or pooled).
    fn cell_width(&self) -> u32 {
        if !self.fit_columns {
            return self.cell();
        }
        let longest = self
            .columns
            .iter()
            .flat_map(|c| {
                let (head, tail) = split_label(c);
                [head.chars().count(), tail.chars().count()]
            })
            .max()
            .unwrap_or(0) as u32;
        self.cell().max(longest * 8 + 12)
    }

    fn label_width(&self) -> u32 {
        let longest = self.rows.iter().map(|s| s.chars().count() as u32).max().unwrap_or(4);
        (longest * 9 + 24).max(70)
    }

    /// Column labels are drawn in two lines when one has a break (`strip-xxxxxxxa` as `strip`
    /// over `-xxxxxxxa`) and the figure fits its columns.
    fn column_label_lines(&self) -> u32 {
        if self.fit_columns && self.columns.iter().any(|c| !split_label(c).1.is_empty()) { 2 } else { 1 }
    }

    fn panel_size(&self) -> (u32, u32) {
        let (w, h) =
            (self.columns.len().max(1) as u32 * self.cell_width(), self.rows.len().max(1) as u32 * self.cell());
        (self.label_width() + w + 2 * MARGIN, self.panel_header() + h + 40)
    }

    fn panel_header(&self) -> u32 {
        PANEL_HEADER + 16 * (self.column_label_lines() - 1)
    }

    fn max_of(&self, group: usize) -> f64 {
        if let Some(max) = self.scale_max {
            return max;
        }
        self.matrices
            .iter()
            .filter(|m| m.scale_group == group)
            .flat_map(|m| m.values.iter().flatten().flatten().copied())
            .fold(0.0, f64::max)
    }

    fn draw_panel<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>, m: &Matrix) -> DrawResult<DB> {
        let (cw, cell) = (self.cell_width() as i32, self.cell() as i32);
        let x0 = (MARGIN + self.label_width()) as i32;
        let y0 = self.panel_header() as i32;
        area.draw(&Text::new(m.title.as_str(), (MARGIN as i32, 6), (FAMILY, 17).into_font().color(&BLACK)))?;
        let name_font = (FAMILY, 14).into_font().color(&BLACK);
        let top = name_font.clone().pos(Pos::new(HPos::Center, VPos::Bottom));
        let left = name_font.pos(Pos::new(HPos::Right, VPos::Center));
        let small = (FAMILY, 12).into_font().color(&RGBColor(90, 90, 90));
        let label_top = y0 - 26 - 16 * (self.column_label_lines() as i32 - 1);
        area.draw(&Text::new(format!("{} →", self.axes.1), (x0, label_top), small.clone()))?;
        area.draw(&Text::new(format!("{} ↓", self.axes.0), (MARGIN as i32, label_top), small))?;
        let max = self.max_of(m.scale_group);
        let value_font = if cell >= 60 { 14 } else { 11 };
        for (j, name) in self.columns.iter().enumerate() {
            let x = x0 + j as i32 * cw + cw / 2;
            match split_label(name) {
                (head, tail) if self.column_label_lines() > 1 && !tail.is_empty() => {
                    area.draw(&Text::new(head, (x, y0 - 20), top.clone()))?;
                    area.draw(&Text::new(tail, (x, y0 - 4), top.clone()))?;
                }
                _ => area.draw(&Text::new(name.as_str(), (x, y0 - 4), top.clone()))?,
            }
        }
        for (i, name) in self.rows.iter().enumerate() {
            area.draw(&Text::new(name.as_str(), (x0 - 8, y0 + i as i32 * cell + cell / 2), left.clone()))?;
        }
        for (i, row) in m.values.iter().enumerate() {
            for (j, value) in row.iter().enumerate() {
                let (x, y) = (x0 + j as i32 * cw, y0 + i as i32 * cell);
                let rect = [(x + 1, y + 1), (x + cw - 1, y + cell - 1)];
                match value {
                    Some(v) => {
                        let t = if max > 0.0 { (v / max).clamp(0.0, 1.0) } else { 0.0 };
                        area.draw(&Rectangle::new(rect, shade(t).filled()))?;
                        let ink = if t > 0.55 { WHITE } else { BLACK };
                        let style =
                            (FAMILY, value_font).into_font().color(&ink).pos(Pos::new(HPos::Center, VPos::Center));
                        area.draw(&Text::new((m.value_text)(*v), (x + cw / 2, y + cell / 2), style))?;
                    }
                    None => {
                        area.draw(&Rectangle::new(rect, RGBColor(245, 245, 245).filled()))?;
                        let style = (FAMILY, value_font)
                            .into_font()
                            .color(&RGBColor(150, 150, 150))
                            .pos(Pos::new(HPos::Center, VPos::Center));
                        area.draw(&Text::new("–", (x + cw / 2, y + cell / 2), style))?;
                    }
                }
            }
        }
        Ok(())
    }
}

/// A column label in two lines: before and from its first `/`, else `+`, else `-` (`fake-mx`
/// over `/self-signed`, `strip` over `+fetch-drop`); the tail is empty for a label without one.
fn split_label(label: &str) -> (&str, &str) {
    ['/', '+', '-'].iter().find_map(|&c| label.find(c)).map_or((label, ""), |i| label.split_at(i))
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

#[cfg(test)]
mod tests {
    use super::split_label;

    #[test]
    fn column_labels_break_at_the_attack_variant() {
        assert_eq!(split_label("fake-mx/self-signed"), ("fake-mx", "/self-signed"));
        assert_eq!(split_label("strip+fetch-drop"), ("strip", "+fetch-drop"));
        assert_eq!(split_label("strip-xxxxxxxa"), ("strip", "-xxxxxxxa"));
        assert_eq!(split_label("454"), ("454", ""));
    }
}

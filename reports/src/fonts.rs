//! The font the PNG charts are drawn with, compiled into the binary.
//!
//! plotters' bitmap backend draws text with `ab_glyph` from fonts registered at run time; it
//! does not look at system fonts, so without this a PNG on a bare machine has no text at all.
//! The SVG charts name the `sans-serif` family and leave drawing to the browser, but plotters
//! still measures their text with this font to place it.

use std::sync::OnceLock;

use plotters::style::{FontStyle, register_font};

use crate::error::ReportError;

/// DejaVu Sans (Bitstream Vera licence, see `assets/LICENSE-DejaVu.txt`).
const DEJAVU_SANS: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");

/// The family name charts ask for; plotters' `FontFamily::SansSerif` is this name.
pub const FAMILY: &str = "sans-serif";

/// Registers the bundled font once per process.
pub fn ensure_registered() -> Result<(), ReportError> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED.get_or_init(|| register_font(FAMILY, FontStyle::Normal, DEJAVU_SANS).is_ok());
    if ok { Ok(()) } else { Err(ReportError::Font { name: "DejaVuSans.ttf" }) }
}

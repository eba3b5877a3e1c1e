//! Terminal presentation: colours, widths, tables. Colour is a rendering parameter, so
//! every renderer can be tested without it.

pub mod progress;
pub mod style;

pub use style::{terminal_width, Palette};

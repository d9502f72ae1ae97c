//! What the pictures and tables compute, as data: no drawing, no command-line types
//! (`../shared/analyzer-layout.md`: `analysis` never imports `render`, `export` or a command).

pub mod blocked;
pub mod bytes;
pub mod cpu;
pub mod frequency;
pub mod idle;
pub mod time;

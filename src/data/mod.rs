//! Data sets: manifest rows, the MOS→rating map, the synthetic generator.

pub mod dataset;
pub mod manifest;
pub mod rating;
pub mod synth;

pub use dataset::{BatchCursor, Cursor, CursorError};
pub use manifest::{Manifest, ManifestError, ManifestRow, Split, same_file};
pub use rating::{Dimension, MosScale, Rating};

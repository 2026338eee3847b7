//! Data sets: manifest rows, the MOS→rating map, the synthetic generator.

pub mod rating;

pub use rating::{Dimension, MosScale, Rating};

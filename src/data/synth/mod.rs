//! The synthetic video-evaluation data set: the project's embedded default.
//!
//! Each video is a small procedural scene — a background and one or two
//! objects with a shape, a colour and a motion — generated from a prompt
//! ("a red ball moves left over a grey floor") by one of four synthetic
//! "generators" of different quality. Controlled defects along the paper's
//! three dimensions give each video a known severity per dimension:
//!
//! - visual: blur, noise, blockiness ([`visual`]);
//! - dynamic: stutter, freezes, jitter, jumps ([`dynamic`]);
//! - alignment: wrong colour, shape or motion, missing objects
//!   ([`alignment`]).
//!
//! A dimension's noise-free score is `clean_mos = 5 − 4·severity`; the
//! manifest's `mos` adds simulated rater noise, so the set's noise ceiling
//! (SRCC of `mos` against `clean_mos`) is known. Each video gives three
//! manifest rows (`v0007-visual`, `v0007-dynamic`, `v0007-alignment`) with a
//! rationale naming what is wrong, the generator and the train/test split.
//!
//! Planning (every random decision, scores and rationales) is pure and cheap
//! ([`plan_set`]); rendering a plan to frames is pure too
//! ([`render_video`]); only [`generate`] writes files. Everything derives from
//! `Rng::stream(seed, "synth/…")`, so a seed gives identical bytes.

pub mod alignment;
pub mod config;
pub mod dynamic;
pub mod plan;
pub mod quality;
pub mod rationale;
pub mod render;
pub mod scene;
pub mod stats;
pub mod visual;
pub mod write;

pub use config::{InvalidSynthConfig, SynthConfig};
pub use plan::{DimensionScore, VideoPlan, plan_set, render_video};
pub use stats::{DimensionSummary, SynthSummary, summarise};
pub use write::{GENERATOR_VERSION, SynthError, ensure_synthetic_set, generate};

//! vgrpo: a GRPO trainer that turns a video-language model into a judge of
//! AI-generated video, following the Q-Save recipe (arXiv 2511.18825):
//! SFT cold start → GRPO → SFT cool-off, on the Burn framework.
//!
//! Modules are listed in data-flow order (see `DESIGN.md`).

pub mod data;
pub mod rng;
pub mod video;

//! A small judging data set written by hand for the eval and SFT tests:
//! 64×64 clips of a square moving over a plain background (its colour and
//! speed differ per video), a manifest over three dimensions, two
//! generators, MOS spread over the scale, rationales, and a noise-free
//! `clean_mos` that keeps the MOS order.

use std::path::{Path, PathBuf};
use vgrpo::data::{Dimension, Manifest, ManifestRow, Split};
use vgrpo::video::{Container, EncodeSettings, Frame, encode_video};

/// Eight 1-second clips at 8 fps.
fn clip(v: usize) -> Vec<Frame> {
    let (w, h) = (64u32, 64u32);
    let colour = [(40 * v % 256) as u8, (255 - 30 * v % 256) as u8, 90];
    (0..8)
        .map(|i| {
            let mut rgb = vec![0u8; (w * h * 3) as usize];
            let x0 = (i * (v + 1) * 3) % 48;
            for y in 0..h {
                for x in 0..w {
                    let k = ((y * w + x) * 3) as usize;
                    let inside = (x0 as u32..x0 as u32 + 16).contains(&x) && (24..40).contains(&y);
                    let c = if inside {
                        colour
                    } else {
                        [20, 20, 20 + v as u8]
                    };
                    rgb[k..k + 3].copy_from_slice(&c);
                }
            }
            Frame {
                timestamp: i as f64 / 8.0,
                width: w,
                height: h,
                rgb,
            }
        })
        .collect()
}

/// The test videos of visual, dynamic, alignment (generator = video % 2).
const TEST_VIDEOS: [[usize; 2]; 3] = [[0, 1], [2, 3], [4, 1]];

/// Writes 6 videos and a 9-row manifest (6 test rows, 3 train rows with
/// rationales); returns the manifest path.
pub fn write_dataset(dir: &Path) -> PathBuf {
    std::fs::create_dir_all(dir.join("videos")).unwrap();
    for v in 0..6 {
        let path = dir.join(format!("videos/v{v}.mp4"));
        encode_video(&path, &clip(v), &EncodeSettings::new(Container::Mp4, 8.0)).unwrap();
    }
    let dims = [Dimension::Visual, Dimension::Dynamic, Dimension::Alignment];
    let ratings = ["Bad", "Poor", "Fair", "Good", "Excellent"];
    let mut rows = Vec::new();
    for (i, v) in (0..6).enumerate() {
        for (d, &dimension) in dims.iter().enumerate() {
            // Test: each dimension gets two videos, one per generator;
            // train: video 5 on every dimension.
            let test = TEST_VIDEOS[d].contains(&v);
            let train = v == 5;
            if !test && !train {
                continue;
            }
            let mos = 1.0 + ((i * 7 + d * 3) % 9) as f32 * 0.5;
            let word = ratings[((mos - 1.0) / 0.8).ceil().clamp(1.0, 5.0) as usize - 1];
            rows.push(ManifestRow {
                id: format!("v{v}-{}", dimension.id()),
                video: format!("videos/v{v}.mp4").into(),
                prompt: if dimension == Dimension::Alignment {
                    "a red square slides slowly from the left edge to the right edge over a dark floor \
                     while the camera stays still"
                        .into()
                } else {
                    "a square".into()
                },
                dimension,
                mos,
                generator: format!("gen-{}", v % 2),
                rationale: Some(format!("the square looks {} overall", word.to_lowercase())),
                split: Some(if train { Split::Train } else { Split::Test }),
                clean_mos: Some(mos + 0.05),
            });
        }
    }
    let path = dir.join("manifest.jsonl");
    Manifest::write(&path, &rows).unwrap();
    path
}

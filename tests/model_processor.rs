//! The video processor against the HF video processors on the fixture clips.

use std::path::Path;

use safetensors::SafeTensors;
use vgrpo::model::Arch;
use vgrpo::model::check::{Reference, max_abs, max_abs_diff};
use vgrpo::model::processor::{
    CLIP_MEAN, CLIP_STD, HALF, VideoProcessorConfig, VideoTokens, process_video, video_placeholder,
};
use vgrpo::video::Frame;

fn check(arch: Arch, name: &str) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/fixtures/{name}_tiny"));
    let bytes = std::fs::read(dir.join("processor.safetensors")).unwrap();
    let (_, header) = SafeTensors::read_metadata(&bytes).unwrap();
    let meta = header.metadata().clone().unwrap();
    let file = SafeTensors::deserialize(&bytes).unwrap();
    let frames_view = file.tensor("frames").unwrap();
    let [t, h, w, _] = <[usize; 4]>::try_from(frames_view.shape()).unwrap();
    let fps: f64 = meta["fps"].parse().unwrap();
    let frames: Vec<Frame> = frames_view
        .data()
        .chunks(h * w * 3)
        .enumerate()
        .map(|(i, rgb)| Frame {
            timestamp: i as f64 / fps,
            width: w as u32,
            height: h as u32,
            rgb: rgb.to_vec(),
        })
        .collect();
    assert_eq!(frames.len(), t);
    let number = |key: &str| meta[key].parse::<usize>().unwrap();
    let config = VideoProcessorConfig {
        arch,
        patch_size: number("patch_size"),
        temporal_patch_size: number("temporal_patch_size"),
        merge_size: number("merge_size"),
        min_pixels: number("min_pixels"),
        max_pixels: number("max_pixels"),
        image_mean: if arch == Arch::Qwen3Vl {
            HALF
        } else {
            CLIP_MEAN
        },
        image_std: if arch == Arch::Qwen3Vl {
            HALF
        } else {
            CLIP_STD
        },
    };
    // The committed mean/std are the ones the HF processor used.
    let hf_mean: Vec<f32> = serde_json::from_str(&meta["image_mean"]).unwrap();
    assert_eq!(hf_mean, config.image_mean.to_vec());

    let out = process_video(&frames, &config).unwrap();
    let reference = Reference::read(&dir.join("reference.safetensors")).unwrap();
    assert_eq!(vec![out.grid], reference.grids);
    let (expected, [n, d]) = reference.pixel_values.unwrap();
    assert_eq!((out.grid.patches(), out.patch_dim()), (n, d));
    // NaN-propagating maxima: a NaN pixel on either side makes `rel` NaN.
    let rel = max_abs_diff(&out.pixel_values, &expected) / max_abs(&expected);
    eprintln!("{name}: pixel patches rel error {rel:.3e}");
    assert!(rel.is_finite() && rel <= 1e-4, "{name}: {rel:.3e}");

    if let Some(placeholder) = meta.get("placeholder") {
        assert_eq!(
            &video_placeholder(arch, &out, config.merge_size, VideoTokens::default()),
            placeholder
        );
    }
}

#[test]
fn qwen3_vl_processor_matches_hf() {
    check(Arch::Qwen3Vl, "qwen3_vl");
}

#[test]
fn qwen2_5_vl_processor_matches_hf() {
    check(Arch::Qwen25Vl, "qwen2_5_vl");
}

#[test]
fn wrongly_sized_frames_are_rejected_with_the_target_size() {
    let config = VideoProcessorConfig {
        arch: Arch::Qwen25Vl,
        patch_size: 14,
        temporal_patch_size: 2,
        merge_size: 2,
        min_pixels: 56 * 56,
        max_pixels: 28 * 28 * 64,
        image_mean: CLIP_MEAN,
        image_std: CLIP_STD,
    };
    let frame = Frame {
        timestamp: 0.0,
        width: 50,
        height: 30,
        rgb: vec![0; 50 * 30 * 3],
    };
    let err = process_video(&[frame], &config).unwrap_err().to_string();
    // 30x50 is under the minimum budget: scaled up to 56x84 (HF smart_resize).
    assert!(err.contains("56x84"), "{err}");
}

#[test]
fn processor_config_comes_from_the_model_directory() {
    use vgrpo::model::QwenVlConfig;
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/qwen3_vl_tiny");
    let model_config = QwenVlConfig::from_file(&src).unwrap();
    let dir = tempfile::tempdir().unwrap();
    // Without the file: HF's Qwen3-VL defaults.
    let defaults = VideoProcessorConfig::from_dir(dir.path(), &model_config).unwrap();
    assert_eq!(
        (defaults.min_pixels, defaults.max_pixels),
        (128 * 32 * 32, 32 * 32 * 768)
    );
    assert_eq!(defaults.image_mean, HALF);
    // The shape the Qwen3-VL repos ship.
    std::fs::write(
        dir.path().join("video_preprocessor_config.json"),
        r#"{"size": {"longest_edge": 25165824, "shortest_edge": 4096}, "patch_size": 16,
            "temporal_patch_size": 2, "merge_size": 2, "image_mean": [0.5, 0.5, 0.5],
            "image_std": [0.5, 0.5, 0.5], "fps": 2, "do_sample_frames": true}"#,
    )
    .unwrap();
    let read = VideoProcessorConfig::from_dir(dir.path(), &model_config).unwrap();
    assert_eq!((read.min_pixels, read.max_pixels), (4096, 25_165_824));
    // A patch size the model cannot take is refused.
    std::fs::write(
        dir.path().join("video_preprocessor_config.json"),
        r#"{"patch_size": 14}"#,
    )
    .unwrap();
    assert!(VideoProcessorConfig::from_dir(dir.path(), &model_config).is_err());
}

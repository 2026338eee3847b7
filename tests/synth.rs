//! `synth::generate` writes real H.264 files and a manifest, byte-identical
//! per seed, near-lossless (so the labelled defects are what a decoder
//! sees), and handles existing output directories safely.

use std::path::Path;

use ffmpeg_next as ffmpeg;
use vgrpo::data::synth::{self, SynthConfig, SynthError, plan_set, render_video};
use vgrpo::data::{Dimension, Manifest, Split};
use vgrpo::video::{Frame, ensure_ffmpeg};

fn small(seed: u64) -> SynthConfig {
    SynthConfig {
        videos: 8,
        seed,
        ..SynthConfig::default()
    }
}

/// Decodes every frame to RGB24 with plain ffmpeg-next (independent of the
/// crate's decoder).
fn decode(path: &Path) -> Vec<Frame> {
    ensure_ffmpeg().unwrap();
    let mut input = ffmpeg::format::input(path).expect("open the written file");
    let stream = input
        .streams()
        .best(ffmpeg::media::Type::Video)
        .expect("a video stream");
    let index = stream.index();
    let ctx = ffmpeg::codec::context::Context::from_parameters(stream.parameters()).unwrap();
    let mut decoder = ctx.decoder().video().unwrap();
    let (w, h) = (decoder.width(), decoder.height());
    let mut scaler = ffmpeg::software::scaling::Context::get(
        decoder.format(),
        w,
        h,
        ffmpeg::format::Pixel::RGB24,
        w,
        h,
        ffmpeg::software::scaling::Flags::BILINEAR,
    )
    .unwrap();
    let mut frames = Vec::new();
    let mut receive = |decoder: &mut ffmpeg::decoder::Video, frames: &mut Vec<Frame>| {
        let mut yuv = ffmpeg::frame::Video::empty();
        while decoder.receive_frame(&mut yuv).is_ok() {
            let mut rgb = ffmpeg::frame::Video::empty();
            scaler.run(&yuv, &mut rgb).unwrap();
            let stride = rgb.stride(0);
            let data = rgb.data(0);
            let mut packed = Vec::with_capacity((w * h * 3) as usize);
            for y in 0..h as usize {
                packed.extend_from_slice(&data[y * stride..y * stride + w as usize * 3]);
            }
            frames.push(Frame {
                timestamp: 0.0,
                width: w,
                height: h,
                rgb: packed,
            });
        }
    };
    for (s, packet) in input.packets() {
        if s.index() == index {
            decoder.send_packet(&packet).unwrap();
            receive(&mut decoder, &mut frames);
        }
    }
    decoder.send_eof().unwrap();
    receive(&mut decoder, &mut frames);
    frames
}

fn mean_abs_diff(a: &Frame, b: &Frame) -> f64 {
    let total: u64 = a
        .rgb
        .iter()
        .zip(&b.rgb)
        .map(|(&x, &y)| u64::from(x.abs_diff(y)))
        .sum();
    total as f64 / a.rgb.len() as f64
}

#[test]
fn writes_decodable_videos_and_a_complete_manifest() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("set");
    let cfg = small(3);
    let summary = synth::generate(&out, &cfg).unwrap();
    assert!(!summary.reused);
    assert_eq!((summary.videos, summary.rows), (8, 24));
    assert_eq!((summary.train_videos, summary.test_videos), (6, 2));

    let manifest = Manifest::load(&out.join("manifest.jsonl")).unwrap();
    assert_eq!(manifest.rows.len(), 24);
    assert_eq!(manifest.rows[0].id, "v0000-visual");
    for (row, dim) in manifest.rows.iter().zip(Dimension::ALL.iter().cycle()) {
        assert_eq!(row.dimension, *dim);
        assert!(row.rationale.is_some() && row.clean_mos.is_some());
        assert!(manifest.video_path(row).is_file(), "{:?}", row.video);
    }
    assert_eq!(manifest.split(Split::Test).count(), 6);

    // Every clip decodes to 16 frames of 96×64 that match the rendered
    // frames closely: the codec keeps the labelled defects and adds none
    // of its own that would matter (CRF 12): no frame is off by more than
    // 6 levels on average (measured: at most 3.7, on the noisiest clip).
    let plans = plan_set(&cfg).unwrap();
    for plan in &plans {
        let decoded = decode(&out.join(plan.video_path()));
        let rendered = render_video(plan, &cfg);
        assert_eq!(decoded.len(), 16, "{}", plan.id);
        assert_eq!((decoded[0].width, decoded[0].height), (96, 64));
        // Each frame on its own: a maximum through `f64::max` would drop
        // a NaN.
        for (d, r) in decoded.iter().zip(&rendered) {
            let err = mean_abs_diff(d, r);
            assert!(
                err.is_finite() && err < 6.0,
                "{}: a decoded frame differs by {err:.2} levels",
                plan.id
            );
        }
    }
}

/// Byte identity across processes, the way users rerun `vgrpo synth`, each
/// process starting with a different heap (frames themselves are compared
/// bit for bit in the library tests).
#[test]
fn cli_reruns_with_the_same_seed_give_identical_bytes() {
    let dir = tempfile::tempdir().unwrap();
    // glibc fills fresh and freed heap memory with this byte: different
    // values expose any encoder read of memory it never wrote (x264's
    // AVX-512 routines did, which made the same seed give different videos
    // in a process that had freed memory before).
    let run = |name: &str, seed: &str, heap_fill: &str| {
        let out = dir.path().join(name);
        let run = std::process::Command::new(env!("CARGO_BIN_EXE_vgrpo"))
            .args(["synth", "--videos", "8", "--seed", seed, "--out"])
            .arg(&out)
            .env("MALLOC_PERTURB_", heap_fill)
            .output()
            .unwrap();
        assert!(
            run.status.success(),
            "{}",
            String::from_utf8_lossy(&run.stderr)
        );
        out
    };
    let (a, b, c) = (
        run("a", "5", "170"),
        run("b", "5", "85"),
        run("c", "6", "170"),
    );
    let read = |p: &Path| std::fs::read(p).unwrap();
    for file in ["manifest.jsonl", "synth.json"] {
        assert!(read(&a.join(file)) == read(&b.join(file)), "{file} differs");
    }
    for i in 0..8 {
        let v = format!("videos/v{i:04}.mp4");
        assert!(read(&a.join(&v)) == read(&b.join(&v)), "{v} differs");
        assert!(
            read(&a.join(&v)) != read(&c.join(&v)),
            "{v} same for seeds 5 and 6"
        );
    }
    assert!(read(&a.join("manifest.jsonl")) != read(&c.join("manifest.jsonl")));
}

#[test]
fn reruns_reuse_a_complete_set_and_finish_an_interrupted_one() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a");
    let first = synth::generate(&a, &small(5)).unwrap();
    assert!(!first.reused);
    let manifest = std::fs::read(a.join("manifest.jsonl")).unwrap();
    let modified = |p: &Path| std::fs::metadata(p).unwrap().modified().unwrap();
    let before = modified(&a.join("videos/v0003.mp4"));
    let again = synth::generate(&a, &small(5)).unwrap();
    assert!(again.reused);
    let ratings =
        |s: &synth::SynthSummary| s.dimensions.iter().map(|d| d.ratings).collect::<Vec<_>>();
    assert_eq!(ratings(&again), ratings(&first));
    assert_eq!(
        before,
        modified(&a.join("videos/v0003.mp4")),
        "a complete set is not rewritten"
    );

    // A missing video means an interrupted run: the next run completes it.
    std::fs::remove_file(a.join("videos/v0006.mp4")).unwrap();
    assert!(!synth::generate(&a, &small(5)).unwrap().reused);
    assert_eq!(decode(&a.join("videos/v0006.mp4")).len(), 16);
    assert!(std::fs::read(a.join("manifest.jsonl")).unwrap() == manifest);
    // No temporary files are left behind.
    let leftovers: Vec<_> = std::fs::read_dir(a.join("videos"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.ends_with(".mp4"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn refuses_other_directories() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("set");
    synth::generate(&out, &small(1)).unwrap();
    let e = synth::generate(
        &out,
        &SynthConfig {
            videos: 9,
            ..small(1)
        },
    )
    .unwrap_err();
    assert!(matches!(e, SynthError::DifferentConfig { .. }), "{e}");
    assert!(e.to_string().contains("videos 8 → 9"), "{e}");

    let foreign = dir.path().join("foreign");
    std::fs::create_dir(&foreign).unwrap();
    std::fs::write(foreign.join("notes.txt"), "mine").unwrap();
    let e = synth::generate(&foreign, &small(1)).unwrap_err();
    assert!(matches!(e, SynthError::ForeignDirectory { .. }), "{e}");

    let e =
        synth::generate(&dir.path().join("x"), &SynthConfig { fps: 0, ..small(1) }).unwrap_err();
    assert_eq!(
        e.to_string(),
        "synth config: fps must be between 1 and 60, got 0"
    );
}

#[test]
fn a_run_gets_the_set_its_config_names_or_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("set/manifest.jsonl");
    synth::ensure_synthetic_set(&manifest, &small(1), "test set").unwrap();
    let written = std::fs::read(&manifest).unwrap();
    // Same config: reused as is.
    synth::ensure_synthetic_set(&manifest, &small(1), "test set").unwrap();
    assert_eq!(std::fs::read(&manifest).unwrap(), written);
    // Another config: refused, not silently used.
    let other = SynthConfig {
        videos: 9,
        ..small(1)
    };
    let e = synth::ensure_synthetic_set(&manifest, &other, "test set").unwrap_err();
    assert!(e.to_string().contains("videos 8 → 9"), "{e}");
    // A user's own manifest (no synth.json beside it) is left alone.
    let own = dir.path().join("own/manifest.jsonl");
    std::fs::create_dir_all(own.parent().unwrap()).unwrap();
    std::fs::write(&own, "").unwrap();
    synth::ensure_synthetic_set(&own, &small(1), "test set").unwrap();
    assert_eq!(std::fs::read_dir(own.parent().unwrap()).unwrap().count(), 1);
}

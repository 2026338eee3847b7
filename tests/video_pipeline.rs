//! End to end on real files: decode → sample → SlowFast → sizes → resize,
//! the worker pool, the `frames` report and the contact sheet.

mod video_common;

use std::path::PathBuf;

use vgrpo::video::{
    Container, EncodeSettings, FrameKind, FramesError, VideoConfig, VideoFailure, inspect_video,
    load_clip, load_clips, slowfast::clip_tokens,
};
use video_common::*;

fn kinds(clip: &vgrpo::video::Clip) -> String {
    clip.frames
        .iter()
        .map(|f| match f.kind {
            FrameKind::Slow => 'S',
            FrameKind::Fast => 'F',
        })
        .collect()
}

/// `n` frames of one still picture (a gradient with a colour), at 8 fps.
fn static_clip(n: usize, i: usize) -> Vec<vgrpo::video::Frame> {
    (0..n)
        .map(|k| {
            let mut f = test_frame(i, 128, 96);
            f.timestamp = k as f64 / 8.0;
            f
        })
        .collect()
}

#[test]
fn static_clip_is_one_slow_frame_then_fast() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_clip(dir.path(), "still", Container::Mp4, &static_clip(16, 3));
    let clip = load_clip(&path, &VideoConfig::default()).unwrap();
    assert_eq!(clip.frames.len(), 16);
    assert_eq!(kinds(&clip), format!("S{}", "F".repeat(15)));
    for d in &clip.decisions[1..] {
        assert!(d.similarity.unwrap() > 0.95, "{:?}", d.similarity);
    }
}

#[test]
fn hard_cut_starts_a_new_slow_frame() {
    let dir = tempfile::tempdir().unwrap();
    // 8 frames of picture 1, then 8 of picture 4 (very different colours).
    let mut frames = static_clip(8, 1);
    frames.extend(static_clip(8, 4).into_iter().map(|mut f| {
        f.timestamp += 1.0;
        f
    }));
    for container in [Container::Webm, Container::Avi, Container::Mkv] {
        let path = write_clip(dir.path(), "cut", container, &frames);
        let clip = load_clip(&path, &VideoConfig::default()).unwrap();
        assert_eq!(kinds(&clip), "SFFFFFFFSFFFFFFF", "{container:?}");
        assert!((clip.frames[8].frame.timestamp - 1.0).abs() < 1e-3);
        assert!(clip.decisions[8].similarity.unwrap() < 0.5);
    }
}

#[test]
fn sizes_follow_the_plan_and_the_budget_holds() {
    let dir = tempfile::tempdir().unwrap();
    let mut frames = static_clip(8, 1);
    frames.extend(static_clip(8, 4).into_iter().map(|mut f| {
        f.timestamp += 1.0;
        f
    }));
    let path = write_clip(dir.path(), "cut", Container::Mp4, &frames);
    for budget in [8, 20, 40, 2048] {
        let config = VideoConfig {
            token_budget: budget,
            ..VideoConfig::default()
        };
        let clip = load_clip(&path, &config).unwrap();
        let slow = clip
            .frames
            .iter()
            .filter(|f| f.kind == FrameKind::Slow)
            .count();
        let fast = clip.frames.len() - slow;
        assert_eq!(
            clip.plan.tokens,
            clip_tokens(slow, clip.plan.slow, fast, clip.plan.fast)
        );
        assert!(clip.plan.tokens <= budget, "{budget}: {:?}", clip.plan);
        for f in &clip.frames {
            let grid = clip.plan.grid(f.kind);
            assert_eq!(
                (f.frame.width, f.frame.height),
                (grid.width(), grid.height())
            );
            assert_eq!(f.frame.width % config.token_side, 0);
            assert_eq!(f.frame.height % config.token_side, 0);
        }
    }
    // 128x96 source: the slow size never exceeds the source on the token
    // grid: Qwen3-VL's 32-pixel cells give exactly 4x3; Qwen2.5-VL's 28-pixel
    // cells round(128/28) = 5 by round(96/28) = 3.
    let big = load_clip(&path, &VideoConfig::default()).unwrap();
    assert_eq!((big.plan.slow.cols, big.plan.slow.rows), (4, 3));
    assert_eq!((big.plan.slow.width(), big.plan.slow.height()), (128, 96));
    let qwen25 = VideoConfig::default().for_model_token_side(28);
    let big = load_clip(&path, &qwen25).unwrap();
    assert_eq!((big.plan.slow.cols, big.plan.slow.rows), (5, 3));
    // Too small a budget is an error naming the numbers.
    let tiny = VideoConfig {
        // 14 frames need at least ceil(14 / 2) = 7 tokens.
        token_budget: 6,
        max_frames: 14,
        ..VideoConfig::default()
    };
    let err = load_clip(&path, &tiny).unwrap_err();
    assert!(matches!(err.reason, VideoFailure::Budget(_)), "{err:?}");
}

#[test]
fn sampling_at_eight_fps_from_a_thirty_fps_clip_with_frame_bounds() {
    let dir = tempfile::tempdir().unwrap();
    let frames = test_clip(60, 64, 48, 30.0); // 2 s at 30 fps
    let settings = EncodeSettings::new(Container::Mkv, 30.0);
    let path = write_clip_with(dir.path(), "thirty", settings, &frames);
    let clip = load_clip(&path, &VideoConfig::default()).unwrap();
    assert_eq!(clip.frames.len(), 16);
    assert_eq!(clip.source.frames, 60);
    let capped = VideoConfig {
        max_frames: 5,
        ..VideoConfig::default()
    };
    let clip = load_clip(&path, &capped).unwrap();
    let times: Vec<f64> = clip.frames.iter().map(|f| f.frame.timestamp).collect();
    // 5 targets 0.4 s apart; mkv keeps milliseconds.
    for (t, want) in times.iter().zip([0.0, 0.4, 0.8, 1.2, 1.6]) {
        assert!((t - want).abs() < 0.02, "{times:?}");
    }
}

#[test]
fn pool_keeps_input_order_and_isolates_bad_files() {
    let dir = tempfile::tempdir().unwrap();
    let mut paths: Vec<PathBuf> = Vec::new();
    for i in 0..6 {
        let n = 4 + 4 * (5 - i); // earlier clips are longer (slower)
        let path = write_clip(
            dir.path(),
            &format!("c{i}"),
            Container::Mp4,
            &test_clip(n, 64, 48, 8.0),
        );
        paths.push(path);
    }
    let broken = dir.path().join("broken.mp4");
    std::fs::write(&broken, b"not a video at all").unwrap();
    paths.insert(2, broken.clone());
    paths.insert(5, dir.path().join("missing.webm"));

    let config = VideoConfig {
        workers: 3,
        queue_depth: 1,
        ..VideoConfig::default()
    };
    let results: Vec<_> = load_clips(paths.clone(), &config).collect();
    assert_eq!(results.len(), paths.len());
    for (result, path) in results.iter().zip(&paths) {
        match result {
            Ok(clip) => assert_eq!(&clip.path, path),
            Err(e) => assert_eq!(&e.path, path),
        }
    }
    assert!(matches!(
        &results[2],
        Err(e) if matches!(e.reason, VideoFailure::Unrecognised(_))
    ));
    assert!(matches!(
        &results[5],
        Err(e) if matches!(e.reason, VideoFailure::Missing)
    ));
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 6);
    // Same clips as one-by-one loading.
    let single = load_clip(&paths[0], &config).unwrap();
    assert_eq!(results[0].as_ref().unwrap(), &single);
}

#[test]
fn frames_report_and_contact_sheet() {
    let dir = tempfile::tempdir().unwrap();
    let mut frames = static_clip(8, 1);
    frames.extend(static_clip(8, 4).into_iter().map(|mut f| {
        f.timestamp += 1.0;
        f
    }));
    let path = write_clip(dir.path(), "cut", Container::Mp4, &frames);
    let sheet = dir.path().join("sheet.png");
    let config = VideoConfig::default();
    let report = inspect_video(&path, &config, Some(&sheet)).unwrap();
    assert_eq!(report.frames.len(), 16);
    assert_eq!((report.slow_frames, report.fast_frames), (2, 14));
    let sum: f64 = report.frames.iter().map(|r| r.tokens).sum();
    assert_eq!(report.tokens, sum.ceil() as usize);
    let text = report.to_string();
    assert!(text.contains("2 slow, 14 fast"), "{text}");
    assert!(text.lines().nth(2).unwrap().contains("slow"), "{text}");

    // The sheet is a real PNG: 8 tiles per row, 2 rows.
    let decoder = png::Decoder::new(std::io::BufReader::new(
        std::fs::File::open(&sheet).unwrap(),
    ));
    let reader = decoder.read_info().unwrap();
    let info = reader.info();
    assert!(
        info.width > 8 * 100 && info.height > 2 * 80,
        "{}x{}",
        info.width,
        info.height
    );

    // Bad config and bad video are typed errors.
    let bad = VideoConfig {
        fps: -1.0,
        ..VideoConfig::default()
    };
    assert!(matches!(
        inspect_video(&path, &bad, None),
        Err(FramesError::Config(_))
    ));
    assert!(matches!(
        inspect_video(&dir.path().join("nope.mp4"), &config, None),
        Err(FramesError::Video(_))
    ));
}

//! The encoder writes real files in every supported container/codec pair,
//! rejects bad settings with typed errors, and is reproducible.

use std::path::Path;

use ffmpeg_next as ffmpeg;
use vgrpo::video::{
    Container, EncodeFailure, EncodeSettings, Frame, Timing, VideoCodec, encode_video,
};

/// A moving diagonal gradient, `n` frames of `w`x`h`.
fn clip(n: usize, w: u32, h: u32) -> Vec<Frame> {
    (0..n)
        .map(|i| {
            let mut rgb = Vec::with_capacity((w * h * 3) as usize);
            for y in 0..h {
                for x in 0..w {
                    let v = ((x + y) * 4 + i as u32 * 8) % 256;
                    rgb.extend_from_slice(&[v as u8, (255 - v) as u8, (y * 5 % 256) as u8]);
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

/// Reads back (codec name, packet count, packet pts in seconds) with plain
/// ffmpeg-next, independent of the crate's decoder.
fn probe(path: &Path) -> (String, usize, Vec<f64>) {
    let mut input = ffmpeg::format::input(path).expect("open the written file");
    let stream = input
        .streams()
        .best(ffmpeg::media::Type::Video)
        .expect("a video stream");
    let index = stream.index();
    let tb = f64::from(stream.time_base());
    let codec = stream.parameters().id();
    let mut pts = Vec::new();
    for (s, packet) in input.packets() {
        if s.index() == index {
            pts.push(packet.pts().or(packet.dts()).expect("pts or dts") as f64 * tb);
        }
    }
    pts.sort_by(f64::total_cmp);
    (format!("{codec:?}"), pts.len(), pts)
}

#[test]
fn every_container_and_codec_pair_round_trips_its_frame_count() {
    let dir = tempfile::tempdir().unwrap();
    let frames = clip(10, 64, 48);
    let pairs = [
        (Container::Mp4, VideoCodec::H264, "H264"),
        (Container::Mp4, VideoCodec::Vp9, "VP9"),
        (Container::Mov, VideoCodec::H264, "H264"),
        (Container::Mov, VideoCodec::Mjpeg, "MJPEG"),
        (Container::Mkv, VideoCodec::H264, "H264"),
        (Container::Mkv, VideoCodec::Vp9, "VP9"),
        (Container::Mkv, VideoCodec::Mjpeg, "MJPEG"),
        (Container::Webm, VideoCodec::Vp9, "VP9"),
        (Container::Avi, VideoCodec::Mjpeg, "MJPEG"),
        (Container::Avi, VideoCodec::H264, "H264"),
    ];
    for (container, codec, codec_name) in pairs {
        let path = dir
            .path()
            .join(format!("clip_{codec:?}.{}", container.extension()));
        let settings = EncodeSettings::new(container, 8.0).with_codec(codec);
        let summary = encode_video(&path, &frames, &settings).unwrap();
        assert_eq!(summary.frames, 10);
        assert!((summary.last_timestamp - 9.0 / 8.0).abs() < 1e-9);
        let (name, count, pts) = probe(&path);
        assert_eq!(name, codec_name, "{container:?}/{codec:?}");
        assert_eq!(count, 10, "{container:?}/{codec:?}");
        assert!((pts[9] - pts[0] - 9.0 / 8.0).abs() < 0.01, "{pts:?}");
    }
}

#[test]
fn per_frame_timestamps_survive_in_mp4_and_mkv() {
    let dir = tempfile::tempdir().unwrap();
    let times = [0.0, 0.05, 0.3, 0.31, 0.9, 1.5];
    let mut frames = clip(times.len(), 32, 32);
    for (f, t) in frames.iter_mut().zip(times) {
        f.timestamp = t;
    }
    for container in [Container::Mp4, Container::Mkv, Container::Webm] {
        let path = dir.path().join(format!("vfr.{}", container.extension()));
        let settings = EncodeSettings::new(container, 8.0).with_timing(Timing::FrameTimestamps);
        encode_video(&path, &frames, &settings).unwrap();
        let (_, _, pts) = probe(&path);
        // Matroska keeps milliseconds; mp4 keeps the 1/90000 clock.
        for (got, want) in pts.iter().zip(times) {
            assert!(
                (got - want).abs() < 1e-3,
                "{container:?}: {pts:?} vs {times:?}"
            );
        }
    }
}

#[test]
fn same_frames_give_the_same_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let frames = clip(6, 32, 32);
    for container in Container::ALL {
        let settings = EncodeSettings::new(container, 8.0);
        let a = dir.path().join(format!("a.{}", container.extension()));
        let b = dir.path().join(format!("b.{}", container.extension()));
        encode_video(&a, &frames, &settings).unwrap();
        encode_video(&b, &frames, &settings).unwrap();
        assert_eq!(
            std::fs::read(&a).unwrap(),
            std::fs::read(&b).unwrap(),
            "{container:?}"
        );
    }
}

#[test]
fn bad_settings_and_frames_are_typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.webm");
    let frames = clip(2, 32, 32);
    let reason = |settings: &EncodeSettings, frames: &[Frame]| {
        encode_video(&path, frames, settings).unwrap_err().reason
    };
    let webm = EncodeSettings::new(Container::Webm, 8.0);
    assert!(matches!(
        reason(&webm.clone().with_codec(VideoCodec::H264), &frames),
        EncodeFailure::Unsupported { .. }
    ));
    let mut zero_fps = webm.clone();
    zero_fps.fps = 0.0;
    assert!(matches!(
        reason(&zero_fps, &frames),
        EncodeFailure::BadFps(_)
    ));
    assert!(matches!(
        reason(&webm.clone().with_faststart(true), &frames),
        EncodeFailure::FaststartNotMp4(Container::Webm)
    ));
    assert!(matches!(
        reason(
            &EncodeSettings::new(Container::Mp4, 8.0).with_live(true),
            &frames
        ),
        EncodeFailure::LiveNotMatroska(Container::Mp4)
    ));
    let avi_vfr = EncodeSettings::new(Container::Avi, 8.0).with_timing(Timing::FrameTimestamps);
    assert!(matches!(
        reason(&avi_vfr, &frames),
        EncodeFailure::NoVariableFrameRate(Container::Avi)
    ));
    assert!(matches!(
        reason(&webm, &clip(1, 33, 32)),
        EncodeFailure::BadSize {
            width: 33,
            height: 32
        }
    ));
    assert!(matches!(reason(&webm, &[]), EncodeFailure::NoFrames));
    let mut mixed = clip(2, 32, 32);
    mixed.push(clip(1, 16, 16).remove(0));
    assert!(matches!(
        reason(&webm, &mixed),
        EncodeFailure::SizeChanged { index: 2, .. }
    ));
    let mut backwards = clip(3, 32, 32);
    backwards[2].timestamp = 0.1;
    assert!(matches!(
        reason(
            &webm.clone().with_timing(Timing::FrameTimestamps),
            &backwards
        ),
        EncodeFailure::BadTimestamp { index: 2, .. }
    ));
    let err = encode_video(&path, &[], &webm).unwrap_err();
    assert!(err.to_string().contains("x.webm"), "{err}");
}

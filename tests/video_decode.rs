//! Decoding: every container/codec the encoder writes decodes back to the
//! right frames and timestamps; every kind of bad input is a typed error
//! naming the path, never a panic.

mod video_common;

use std::io::Write;
use std::path::Path;

use vgrpo::rng::Rng;
use vgrpo::video::{
    Container, DecodeLimits, EncodeSettings, Timing, VideoCodec, VideoFailure, VideoSource,
};
use video_common::*;

fn open(path: &Path) -> Result<VideoSource, vgrpo::video::VideoError> {
    VideoSource::open(path, DecodeLimits::default())
}

/// The failure reason of opening `path` (and the path is in the message).
fn rejection(path: &Path) -> VideoFailure {
    let err = open(path).expect_err("bad input must be rejected");
    assert_eq!(err.path, path);
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "{err}"
    );
    err.reason
}

#[test]
fn every_codec_decodes_back_to_its_frames_and_timestamps() {
    let dir = tempfile::tempdir().unwrap();
    let frames = test_clip(16, 64, 48, 8.0);
    let pairs = [
        (Container::Mp4, VideoCodec::H264),
        (Container::Mp4, VideoCodec::Vp9),
        (Container::Mov, VideoCodec::H264),
        (Container::Mov, VideoCodec::Mjpeg),
        (Container::Mkv, VideoCodec::H264),
        (Container::Mkv, VideoCodec::Vp9),
        (Container::Mkv, VideoCodec::Mjpeg),
        (Container::Webm, VideoCodec::Vp9),
        (Container::Avi, VideoCodec::Mjpeg),
        (Container::Avi, VideoCodec::H264),
    ];
    for (container, codec) in pairs {
        let label = format!("{container:?}/{codec:?}");
        let path = write_clip_codec(dir.path(), &format!("{codec:?}"), container, codec, &frames);
        let source = open(&path).unwrap_or_else(|e| panic!("{label}: {e:?}"));
        assert_eq!((source.width, source.height), (64, 48), "{label}");
        let want_ts: Vec<f64> = (0..16).map(|i| i as f64 / 8.0).collect();
        assert_eq!(source.timestamps().len(), 16, "{label}");
        for (got, want) in source.timestamps().iter().zip(&want_ts) {
            assert!(
                (got - want).abs() < 2e-3,
                "{label}: {:?}",
                source.timestamps()
            );
        }
        assert!(
            (source.end - 2.0).abs() < 2e-3,
            "{label}: end {}",
            source.end
        );

        let picks: Vec<usize> = (0..16).collect();
        let decoded = source.decode(&picks, 64, 48).unwrap();
        assert_eq!(decoded.len(), 16, "{label}");
        for (i, (got, want)) in decoded.iter().zip(&frames).enumerate() {
            assert!((got.timestamp - want_ts[i]).abs() < 2e-3, "{label}");
            let diff = mean_abs_diff(got, want);
            assert!(
                diff < 6.0,
                "{label}: frame {i} differs by {diff:.2} on average"
            );
        }
    }
}

#[test]
fn decode_returns_only_the_picked_frames_scaled() {
    let dir = tempfile::tempdir().unwrap();
    let frames = test_clip(16, 64, 48, 8.0);
    let path = write_clip(dir.path(), "c", Container::Mp4, &frames);
    let source = open(&path).unwrap();
    let decoded = source.decode(&[1, 5, 15], 32, 24).unwrap();
    assert_eq!(decoded.len(), 3);
    for (got, i) in decoded.iter().zip([1usize, 5, 15]) {
        assert_eq!(
            (got.width, got.height, got.rgb.len()),
            (32, 24, 32 * 24 * 3)
        );
        assert!((got.timestamp - i as f64 / 8.0).abs() < 1e-3);
        // The flat colour channel identifies the frame: red = level(i).
        let want_red = (i * 37 % 200 + 20) as i32;
        let red = i32::from(got.pixel(16, 12)[0]);
        assert!(
            (red - want_red).abs() <= 6,
            "frame {i}: red {red} vs {want_red}"
        );
    }
    // Picks must be ascending and in range.
    assert!(matches!(
        source.decode(&[3, 2], 32, 24).unwrap_err().reason,
        VideoFailure::BadPick { index: 2, .. }
    ));
    assert!(matches!(
        source.decode(&[16], 32, 24).unwrap_err().reason,
        VideoFailure::BadPick { index: 16, .. }
    ));
    assert!(matches!(
        source.decode(&[0], 0, 24).unwrap_err().reason,
        VideoFailure::BadOutputSize { .. }
    ));
}

#[test]
fn variable_frame_rate_timestamps_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    let times = [0.0, 0.04, 0.1, 0.5, 0.52, 1.3, 1.31, 2.0];
    let mut frames = test_clip(times.len(), 64, 48, 8.0);
    for (f, t) in frames.iter_mut().zip(times) {
        f.timestamp = t;
    }
    for container in [
        Container::Mp4,
        Container::Mkv,
        Container::Webm,
        Container::Mov,
    ] {
        let settings = EncodeSettings::new(container, 8.0).with_timing(Timing::FrameTimestamps);
        let path = write_clip_with(dir.path(), "vfr", settings, &frames);
        let source = open(&path).unwrap();
        for (got, want) in source.timestamps().iter().zip(times) {
            assert!(
                (got - want).abs() < 1.5e-3,
                "{container:?}: {:?}",
                source.timestamps()
            );
        }
        let decoded = source.decode(&[2, 5], 64, 48).unwrap();
        assert!((decoded[1].timestamp - 1.3).abs() < 1.5e-3);
        assert!(mean_abs_diff(&decoded[1], &frames[5]) < 6.0);
    }
}

#[test]
fn missing_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nope.mp4");
    assert!(matches!(rejection(&path), VideoFailure::Missing));
}

#[test]
fn zero_byte_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("empty.mp4");
    std::fs::write(&path, b"").unwrap();
    assert!(matches!(rejection(&path), VideoFailure::Empty));
}

#[test]
fn text_file_is_not_a_tty_video() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["notes.txt", "notes.mp4", "notes"] {
        let path = dir.path().join(name);
        std::fs::write(&path, "a line of plain text, not a video\n".repeat(200)).unwrap();
        let reason = rejection(&path);
        assert!(
            matches!(
                reason,
                VideoFailure::Text { .. } | VideoFailure::Unrecognised(_)
            ),
            "{name}: {reason:?}"
        );
    }
    // The trap itself: with a .txt name FFmpeg really opens it (as `tty`).
    let path = dir.path().join("notes.txt");
    assert!(matches!(rejection(&path), VideoFailure::Text { demuxer } if demuxer == "tty"));
}

#[test]
fn random_bytes_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng::new(7);
    // 160 kB: with a .bin name, FFmpeg opens this as a 1280x8000 `bintext` video.
    let bytes: Vec<u8> = (0..160_000).map(|_| rng.below(256) as u8).collect();
    for name in ["blob.bin", "blob.mp4", "blob.webm", "blob"] {
        let path = dir.path().join(name);
        std::fs::write(&path, &bytes).unwrap();
        let reason = rejection(&path);
        assert!(
            matches!(
                reason,
                VideoFailure::Text { .. }
                    | VideoFailure::Unrecognised(_)
                    | VideoFailure::NoVideoStream { .. }
                    | VideoFailure::Corrupt { .. }
            ),
            "{name}: {reason:?}"
        );
    }
    let path = dir.path().join("blob.bin");
    assert!(matches!(rejection(&path), VideoFailure::Text { demuxer } if demuxer == "bin"));
}

/// Copies the first `fraction` of `path`'s bytes to a new file `name`.
fn truncate_copy(path: &Path, fraction: f64, name: &str) -> std::path::PathBuf {
    let bytes = std::fs::read(path).unwrap();
    let keep = (bytes.len() as f64 * fraction) as usize;
    let out = path.with_file_name(name);
    std::fs::write(&out, &bytes[..keep]).unwrap();
    out
}

#[test]
fn truncated_mp4_with_index_at_end_is_unreadable() {
    let dir = tempfile::tempdir().unwrap();
    let frames = noise_clip(16, 64, 48, 8.0, 1);
    let path = write_clip(dir.path(), "full", Container::Mp4, &frames);
    let cut = truncate_copy(&path, 0.5, "half.mp4");
    assert!(matches!(rejection(&cut), VideoFailure::Unrecognised(_)));
}

/// Decoding the whole truncated file: either pass fails.
fn full_decode_reason(path: &Path) -> VideoFailure {
    match open(path) {
        Err(e) => e.reason,
        Ok(source) => {
            let all: Vec<usize> = (0..source.timestamps().len()).collect();
            match source.decode(&all, 64, 48) {
                Err(e) => e.reason,
                Ok(frames) => panic!(
                    "{}: truncated file decoded to {} frames, timestamps {:?}",
                    path.display(),
                    frames.len(),
                    source.timestamps()
                ),
            }
        }
    }
}

#[test]
fn truncated_files_with_index_at_front_are_detected() {
    let dir = tempfile::tempdir().unwrap();
    let frames = noise_clip(16, 64, 48, 8.0, 2);
    let faststart = EncodeSettings::new(Container::Mp4, 8.0).with_faststart(true);
    let cases = [
        write_clip_with(dir.path(), "fast", faststart, &frames),
        write_clip(dir.path(), "web", Container::Webm, &frames),
        write_clip(dir.path(), "mat", Container::Mkv, &frames),
        write_clip(dir.path(), "avi", Container::Avi, &frames),
    ];
    for path in cases {
        let ext = path.extension().unwrap().to_str().unwrap().to_string();
        let cut = truncate_copy(&path, 0.5, &format!("half_{ext}.{ext}"));
        let reason = full_decode_reason(&cut);
        assert!(
            matches!(
                reason,
                VideoFailure::Truncated { .. }
                    | VideoFailure::Corrupt { .. }
                    | VideoFailure::FramesMissing { .. }
            ),
            "{}: {reason:?}",
            cut.display()
        );
        // The intact file still passes.
        assert!(open(&path).is_ok());
    }
}

/// A mono 16-bit PCM WAV of `seconds` of silence.
fn write_wav(path: &Path, seconds: u32) {
    let rate = 8000u32;
    let data_len = rate * seconds * 2;
    let mut f = std::fs::File::create(path).unwrap();
    f.write_all(b"RIFF").unwrap();
    f.write_all(&(36 + data_len).to_le_bytes()).unwrap();
    f.write_all(b"WAVEfmt ").unwrap();
    f.write_all(&16u32.to_le_bytes()).unwrap();
    f.write_all(&1u16.to_le_bytes()).unwrap(); // PCM
    f.write_all(&1u16.to_le_bytes()).unwrap(); // mono
    f.write_all(&rate.to_le_bytes()).unwrap();
    f.write_all(&(rate * 2).to_le_bytes()).unwrap();
    f.write_all(&2u16.to_le_bytes()).unwrap();
    f.write_all(&16u16.to_le_bytes()).unwrap();
    f.write_all(b"data").unwrap();
    f.write_all(&data_len.to_le_bytes()).unwrap();
    f.write_all(&vec![0u8; data_len as usize]).unwrap();
}

/// A PNG of `w`x`h` test pixels, in memory.
fn png_bytes(w: u32, h: u32) -> Vec<u8> {
    let mut out = Vec::new();
    let mut enc = png::Encoder::new(&mut out, w, h);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    let mut writer = enc.write_header().unwrap();
    writer.write_image_data(&test_frame(0, w, h).rgb).unwrap();
    writer.finish().unwrap();
    out
}

/// An MP3 of 40 silent frames with a PNG cover (ID3v2.3 APIC frame):
/// FFmpeg shows the cover as a one-picture video stream.
fn write_mp3_with_cover(path: &Path) {
    let mut apic = vec![0u8]; // text encoding
    apic.extend_from_slice(b"image/png\0");
    apic.extend_from_slice(&[3, 0]); // front cover, empty description
    apic.extend(png_bytes(16, 16));
    let mut frame = b"APIC".to_vec();
    frame.extend_from_slice(&(apic.len() as u32).to_be_bytes());
    frame.extend_from_slice(&[0, 0]);
    frame.extend(apic);
    let n = frame.len() as u32;
    let syncsafe = [
        (n >> 21) & 0x7f,
        (n >> 14) & 0x7f,
        (n >> 7) & 0x7f,
        n & 0x7f,
    ]
    .map(|b| b as u8);
    let mut bytes = b"ID3\x03\x00\x00".to_vec();
    bytes.extend_from_slice(&syncsafe);
    bytes.extend(frame);
    for _ in 0..40 {
        // MPEG-1 layer III, 128 kb/s, 44.1 kHz: 417-byte frames.
        bytes.extend_from_slice(&[0xff, 0xfb, 0x90, 0x64]);
        bytes.extend(std::iter::repeat_n(0u8, 413));
    }
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn audio_with_cover_art_has_no_video_stream() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("song.mp3");
    write_mp3_with_cover(&path);
    let reason = rejection(&path);
    assert!(
        matches!(&reason, VideoFailure::NoVideoStream { streams } if streams.contains("attached picture")),
        "{reason:?}"
    );
}

#[test]
fn audio_only_file_has_no_video_stream() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("speech.wav");
    write_wav(&path, 1);
    assert!(matches!(
        rejection(&path),
        VideoFailure::NoVideoStream { streams } if streams.contains("Audio")
    ));
}

#[test]
fn still_images_are_not_videos() {
    let dir = tempfile::tempdir().unwrap();
    // A PNG, written with the png crate.
    let path = dir.path().join("picture.png");
    {
        let file = std::fs::File::create(&path).unwrap();
        let mut enc = png::Encoder::new(std::io::BufWriter::new(file), 32, 32);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        let mut w = enc.write_header().unwrap();
        w.write_image_data(&test_frame(0, 32, 32).rgb).unwrap();
    }
    let reason = rejection(&path);
    assert!(
        matches!(&reason, VideoFailure::StillImage { .. }),
        "{reason:?}"
    );
    assert!(reason.to_string().starts_with("still image, not a video"));
    // A one-frame mp4 is a still image too.
    let one = write_clip(
        dir.path(),
        "one",
        Container::Mp4,
        &test_clip(1, 64, 48, 8.0),
    );
    assert!(matches!(rejection(&one), VideoFailure::StillImage { .. }));
}

#[test]
fn absurd_dimensions_are_rejected_before_decoding() {
    let dir = tempfile::tempdir().unwrap();
    // A YUV4MPEG2 header claiming 16000x16000 (FFmpeg accepts the header).
    let path = dir.path().join("huge.y4m");
    let mut bytes = b"YUV4MPEG2 W16000 H16000 F8:1 Ip A1:1 C420jpeg\nFRAME\n".to_vec();
    bytes.extend(std::iter::repeat_n(128u8, 4096));
    std::fs::write(&path, bytes).unwrap();
    assert!(matches!(
        rejection(&path),
        VideoFailure::AbsurdSize {
            width: 16000,
            height: 16000,
            ..
        }
    ));
    // The limit is the caller's: a normal clip over a tight limit fails too.
    let clip = write_clip(dir.path(), "c", Container::Mkv, &test_clip(4, 64, 48, 8.0));
    let tight = DecodeLimits {
        max_side: 32,
        ..DecodeLimits::default()
    };
    assert!(matches!(
        VideoSource::open(&clip, tight).unwrap_err().reason,
        VideoFailure::AbsurdSize { width: 64, .. }
    ));
}

#[test]
fn unreadable_paths_are_typed_errors() {
    // Tests run as root, for which chmod 000 blocks nothing; these paths are
    // unreadable for everyone.
    let dir = tempfile::tempdir().unwrap();
    assert!(matches!(
        rejection(dir.path()),
        VideoFailure::NotAFile("directory")
    ));
    let file = write_clip(dir.path(), "c", Container::Mkv, &test_clip(4, 64, 48, 8.0));
    let inside_a_file = file.join("inner.mp4");
    assert!(matches!(
        rejection(&inside_a_file),
        VideoFailure::Unreadable(e) if e.kind() == std::io::ErrorKind::NotADirectory
    ));
    let fifo = dir.path().join("pipe.mp4");
    let status = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo (coreutils) runs");
    assert!(status.success());
    // Opening a FIFO would block forever; it is refused up front.
    assert!(matches!(
        rejection(&fifo),
        VideoFailure::NotAFile(kind) if kind.contains("FIFO")
    ));
}

#[test]
fn planar_444_video_takes_the_direct_conversion_path() {
    // A raw YUV4MPEG2 4:4:4 clip: 6 grey frames, Y = 60 + 20 i, U = V = 128.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("grey.y4m");
    let (w, h) = (32usize, 16usize);
    let mut bytes = format!("YUV4MPEG2 W{w} H{h} F8:1 Ip A1:1 C444\n").into_bytes();
    for i in 0..6u32 {
        bytes.extend_from_slice(b"FRAME\n");
        bytes.extend(std::iter::repeat_n((60 + 20 * i) as u8, w * h));
        bytes.extend(std::iter::repeat_n(128u8, 2 * w * h));
    }
    std::fs::write(&path, bytes).unwrap();
    let source = open(&path).unwrap();
    assert_eq!(source.timestamps().len(), 6);
    let frames = source.decode(&[0, 3, 5], 16, 8).unwrap();
    for (frame, i) in frames.iter().zip([0u32, 3, 5]) {
        assert!((frame.timestamp - f64::from(i) / 8.0).abs() < 1e-9);
        // Limited-range BT.601 luma: grey = 255 (Y - 16) / 219.
        let want = 255.0 * (f64::from(60 + 20 * i) - 16.0) / 219.0;
        for px in frame.rgb.chunks(3) {
            for &c in px {
                assert!(
                    (f64::from(c) - want).abs() <= 2.0,
                    "frame {i}: {c} vs {want:.1}"
                );
            }
        }
    }
}

#[test]
fn a_live_stream_without_any_duration_still_decodes() {
    // FFmpeg reports the unknown durations of a live mkv/webm as i64::MIN;
    // the clip's end then comes from its last packet.
    let dir = tempfile::tempdir().unwrap();
    let frames = test_clip(16, 64, 48, 8.0);
    for container in [Container::Mkv, Container::Webm] {
        let settings = EncodeSettings::new(container, 8.0).with_live(true);
        let path = write_clip_with(dir.path(), "live", settings, &frames);
        {
            let input = ffmpeg_next::format::input(&path).unwrap();
            assert_eq!(input.duration(), i64::MIN, "{container:?}");
        }
        let source = open(&path).unwrap();
        assert_eq!(source.timestamps().len(), 16);
        assert!(
            (source.end - 2.0).abs() < 2e-3,
            "{container:?}: {}",
            source.end
        );
        let decoded = source.decode(&[0, 15], 64, 48).unwrap();
        assert!(mean_abs_diff(&decoded[1], &frames[15]) < 6.0);
    }
}

//! Benchmark (not a test): the whole video input path
//! (`load_clip` = checks + demux pass + decode + fps sampling + RGB at the
//! planned size + SlowFast + resize) against a bare ffmpeg-next decode of the
//! same files, in the same run. Goal: ratio <= 1.3.
//!
//! Run: `CARGO_TARGET_DIR=/work/target cargo bench --bench video`
//! Optional: `VGRPO_BENCH_REPS=N` (default 5) repetitions. Prints the
//! ratio of medians and of fastest runs (the latter is steadier on a busy
//! machine).

use std::path::{Path, PathBuf};
use std::time::Instant;

use ffmpeg_next as ffmpeg;
use vgrpo::rng::Rng;
use vgrpo::video::slowfast::{THUMB_SIDE, plan_sizes, select_frames};
use vgrpo::video::{
    Container, EncodeSettings, Frame, FrameKind, VideoCodec, VideoConfig, VideoSource, VideoWriter,
    ensure_ffmpeg, load_clip, sample_indices,
};

/// One benchmark clip.
struct Spec {
    container: Container,
    codec: VideoCodec,
    width: u32,
    height: u32,
    fps: f64,
    seconds: f64,
}

const SPECS: [Spec; 5] = [
    Spec {
        container: Container::Mp4,
        codec: VideoCodec::H264,
        width: 640,
        height: 360,
        fps: 30.0,
        seconds: 4.0,
    },
    Spec {
        container: Container::Webm,
        codec: VideoCodec::Vp9,
        width: 640,
        height: 360,
        fps: 30.0,
        seconds: 4.0,
    },
    Spec {
        container: Container::Avi,
        codec: VideoCodec::Mjpeg,
        width: 640,
        height: 360,
        fps: 30.0,
        seconds: 4.0,
    },
    Spec {
        container: Container::Mkv,
        codec: VideoCodec::H264,
        width: 640,
        height: 360,
        fps: 30.0,
        seconds: 4.0,
    },
    Spec {
        container: Container::Mp4,
        codec: VideoCodec::H264,
        width: 1280,
        height: 720,
        fps: 24.0,
        seconds: 3.0,
    },
];

/// A moving scene: a drifting gradient, a bouncing box, a cut halfway and a
/// little noise, so the codecs work as on real footage.
fn scene_frame(spec: &Spec, i: usize, rng: &mut Rng) -> Frame {
    let (w, h) = (spec.width, spec.height);
    let t = i as f64 / spec.fps;
    let cut = t >= spec.seconds / 2.0;
    let side = h / 4;
    let bx = ((t * 150.0) as u32) % (w - side);
    let by = ((t * 90.0) as u32) % (h - side);
    let mut rgb = Vec::with_capacity((w * h * 3) as usize);
    for y in 0..h {
        for x in 0..w {
            let n = rng.below(12) as u32;
            let in_box = (bx..bx + side).contains(&x) && (by..by + side).contains(&y);
            let px = if in_box {
                [230, 40, 40]
            } else if cut {
                let v = ((x / 2 + y + i as u32 * 3) % 256) as u8;
                [40, v, 255 - v]
            } else {
                let v = ((x + y / 2 + i as u32 * 2) % 256) as u8;
                [v, 255 - v, 90]
            };
            rgb.extend(px.iter().map(|&c| (c as u32 + n).min(255) as u8));
        }
    }
    Frame {
        timestamp: t,
        width: w,
        height: h,
        rgb,
    }
}

fn write_clips(dir: &Path) -> Vec<PathBuf> {
    SPECS
        .iter()
        .map(|spec| {
            let path = dir.join(format!(
                "{:?}_{}p.{}",
                spec.codec,
                spec.height,
                spec.container.extension()
            ));
            let settings = EncodeSettings::new(spec.container, spec.fps).with_codec(spec.codec);
            let mut writer = VideoWriter::create(&path, spec.width, spec.height, &settings)
                .unwrap_or_else(|e| panic!("{e:?}"));
            let mut rng = Rng::new(11);
            for i in 0..(spec.fps * spec.seconds) as usize {
                writer
                    .write(&scene_frame(spec, i, &mut rng))
                    .unwrap_or_else(|e| panic!("{e:?}"));
            }
            writer.finish().unwrap_or_else(|e| panic!("{e:?}"));
            path
        })
        .collect()
}

/// Bare ffmpeg-next decode: every packet of the best video stream through
/// the decoder (same thread count as the pipeline), no conversion.
fn bare_decode(path: &Path, threads: usize) -> usize {
    let mut input = ffmpeg::format::input(path).expect("open");
    let stream = input
        .streams()
        .best(ffmpeg::media::Type::Video)
        .expect("video stream");
    let index = stream.index();
    let mut context =
        ffmpeg::codec::context::Context::from_parameters(stream.parameters()).expect("params");
    context.set_threading(ffmpeg::codec::threading::Config {
        kind: ffmpeg::codec::threading::Type::Frame,
        ..ffmpeg::codec::threading::Config::count(threads)
    });
    let mut decoder = context.decoder().video().expect("decoder");
    let mut frame = ffmpeg::frame::Video::empty();
    let mut frames = 0;
    for (s, packet) in input.packets() {
        if s.index() == index {
            decoder.send_packet(&packet).expect("send");
            while decoder.receive_frame(&mut frame).is_ok() {
                frames += 1;
            }
        }
    }
    decoder.send_eof().expect("eof");
    while decoder.receive_frame(&mut frame).is_ok() {
        frames += 1;
    }
    frames
}

/// Median time of each stage of `load_clip`, run by hand: pass 1, pass 2,
/// thumbnails + SlowFast, final conversion.
fn stage_times(path: &Path, config: &VideoConfig, reps: usize) -> [f64; 4] {
    let mut times = [vec![], vec![], vec![], vec![]];
    for _ in 0..reps {
        let t = Instant::now();
        let source = VideoSource::open(path, config.limits()).expect("open");
        let picks =
            sample_indices(source.timestamps(), source.end, &config.sampling()).expect("sample");
        times[0].push(t.elapsed().as_secs_f64());
        let t = Instant::now();
        let pictures = source.decode_pictures(&picks).expect("decode");
        times[1].push(t.elapsed().as_secs_f64());
        let t = Instant::now();
        let thumbs = pictures
            .convert(&vec![(THUMB_SIDE, THUMB_SIDE); picks.len()])
            .expect("thumbs");
        let decisions =
            select_frames(&thumbs, f64::from(config.slowfast_threshold)).expect("select");
        times[2].push(t.elapsed().as_secs_f64());
        let t = Instant::now();
        let slow = decisions
            .iter()
            .filter(|d| d.kind == FrameKind::Slow)
            .count();
        let plan = plan_sizes(
            source.width,
            source.height,
            slow,
            decisions.len() - slow,
            &config.budget(),
        )
        .expect("plan");
        let sizes: Vec<(u32, u32)> = decisions
            .iter()
            .map(|d| (plan.grid(d.kind).width(), plan.grid(d.kind).height()))
            .collect();
        std::hint::black_box(pictures.convert(&sizes).expect("convert"));
        times[3].push(t.elapsed().as_secs_f64());
    }
    times.map(median)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    ensure_ffmpeg().expect("ffmpeg init");
    let reps: usize = std::env::var("VGRPO_BENCH_REPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let dir = tempfile::tempdir().expect("temp dir");
    let t = Instant::now();
    let paths = write_clips(dir.path());
    println!(
        "encoded {} clips (640x360 30 fps 4 s; 1280x720 24 fps 3 s) in {:.2} s",
        paths.len(),
        t.elapsed().as_secs_f64()
    );
    let config = VideoConfig::default();
    println!(
        "pipeline: fps {}, frames {}..={}, threshold {}, budget {} tokens, decode threads {}",
        config.fps,
        config.min_frames,
        config.max_frames,
        config.slowfast_threshold,
        config.token_budget,
        config.decode_threads
    );
    println!(
        "{:<18} {:>10} {:>12} {:>7}  kept (slow/fast), sizes",
        "file", "bare (ms)", "pipeline (ms)", "ratio"
    );
    let (mut bare_total, mut pipe_total) = (0.0, 0.0);
    let (mut bare_best, mut pipe_best) = (0.0, 0.0);
    for path in &paths {
        // Warm the page cache and both code paths once.
        let frames = bare_decode(path, config.decode_threads);
        let clip = load_clip(path, &config).unwrap_or_else(|e| panic!("{e:?}"));
        let (mut bare, mut pipe) = (Vec::new(), Vec::new());
        for _ in 0..reps {
            let t = Instant::now();
            std::hint::black_box(bare_decode(path, config.decode_threads));
            bare.push(t.elapsed().as_secs_f64());
            let t = Instant::now();
            std::hint::black_box(load_clip(path, &config).expect("load"));
            pipe.push(t.elapsed().as_secs_f64());
        }
        bare_best += bare.iter().copied().fold(f64::INFINITY, f64::min);
        pipe_best += pipe.iter().copied().fold(f64::INFINITY, f64::min);
        let (b, p) = (median(bare), median(pipe));
        let stages = stage_times(path, &config, reps);
        bare_total += b;
        pipe_total += p;
        let slow = clip
            .frames
            .iter()
            .filter(|f| f.kind == FrameKind::Slow)
            .count();
        println!(
            "{:<18} {:>10.1} {:>12.1} {:>7.3}  {} of {} ({}/{}), slow {}x{}, fast {}x{}",
            path.file_name().unwrap_or_default().to_string_lossy(),
            b * 1e3,
            p * 1e3,
            p / b,
            clip.frames.len(),
            frames,
            slow,
            clip.frames.len() - slow,
            clip.plan.slow.width(),
            clip.plan.slow.height(),
            clip.plan.fast.width(),
            clip.plan.fast.height()
        );
        println!(
            "{:<18} stages: open+demux {:.1} ms, decode {:.1} ms, thumbnails+SlowFast {:.1} ms, convert {:.1} ms",
            "",
            stages[0] * 1e3,
            stages[1] * 1e3,
            stages[2] * 1e3,
            stages[3] * 1e3
        );
    }
    println!(
        "total (median of {reps} runs each): bare {:.1} ms, pipeline {:.1} ms, ratio {:.3} (goal <= 1.3)",
        bare_total * 1e3,
        pipe_total * 1e3,
        pipe_total / bare_total
    );
    println!(
        "total (fastest of {reps} runs each): bare {:.1} ms, pipeline {:.1} ms, ratio {:.3}",
        bare_best * 1e3,
        pipe_best * 1e3,
        pipe_best / bare_best
    );
}

//! Decoding a video file into RGB frames with ffmpeg-next.
//!
//! Two passes over the file:
//! 1. [`VideoSource::open`] demuxes every packet of the best video stream
//!    without decoding (cheap) to learn each frame's presentation time, and
//!    checks the file is a real, complete video: not missing, empty, a
//!    directory or FIFO, text or a still image, not audio-only, of sane size,
//!    and not truncated.
//! 2. [`VideoSource::decode`] decodes the stream once and converts to RGB
//!    only the frames the sampler picked, scaled straight to the size the
//!    caller asks for (so the expensive colour conversion runs on the kept
//!    frames only).
//!
//! Truncation is caught three ways: a packet read error other than the end
//! of file; the frames ending well before the duration the container
//! declares (a half-truncated webm/mkv/avi demuxes "normally" but stops
//! early); and, in pass 2, the decoder running dry before a sampled frame.
//! An mp4 truncated with its index (`moov`) at the end cannot be opened at
//! all.
//!
//! The checks on the file itself (text, still images, sizes...) are in
//! `probe.rs`; the conversion of the kept pictures in `convert.rs`.
//!
//! Thread safety: [`VideoSource`] is `Send` (it holds no FFmpeg state
//! between calls; each pass opens the file itself). The swscale contexts
//! used to convert pictures are not `Send` and never leave
//! [`Pictures::convert`].

use std::path::{Path, PathBuf};

use ffmpeg_next as ffmpeg;
use ffmpeg_next::{Rational, codec, frame};

use super::convert::Pictures;
use super::error::{VideoError, VideoFailure};
use super::frame::Frame;
use super::init::ensure_ffmpeg;
use super::probe::{DecodeLimits, Stream, check_file, check_size};
use super::sample::median_gap;

/// A video that passed pass 1: its stream facts and frame timestamps.
#[derive(Debug, Clone, PartialEq)]
pub struct VideoSource {
    pub path: PathBuf,
    /// FFmpeg's demuxer name, e.g. `mov,mp4,m4a,3gp,3g2,mj2` or `matroska,webm`.
    pub format: String,
    /// FFmpeg's codec name, e.g. `h264`.
    pub codec: String,
    pub width: u32,
    pub height: u32,
    stream_index: usize,
    time_base: Rational,
    /// Presentation time of every frame in stream ticks, ascending, distinct.
    ticks: Vec<i64>,
    /// Presentation times in seconds from the first frame (`ticks` rebased).
    timestamps: Vec<f64>,
    /// When the last frame stops being shown, seconds from the first frame.
    pub end: f64,
    frame_times: FrameTimes,
    limits: DecodeLimits,
}

/// How pass 2 tells which decoded frame is which.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FrameTimes {
    /// Every packet carried a presentation timestamp: decoded frames carry
    /// it too, and are matched to picks by time.
    Stamped,
    /// Some packets had only a decode timestamp (AVI stores no presentation
    /// times; with B-frames FFmpeg's guessed frame times are unreliable).
    /// Frames come out of the decoder in presentation order, so the n-th
    /// decoded frame is shown at the n-th smallest packet time.
    OutputOrder,
}

impl VideoSource {
    /// Pass 1: checks the file and reads every video packet's timestamp.
    pub fn open(path: &Path, limits: DecodeLimits) -> Result<VideoSource, VideoError> {
        let fail = |reason| VideoError::new(path, reason);
        check_file(path).map_err(fail)?;
        ensure_ffmpeg().map_err(|source| {
            fail(VideoFailure::Ffmpeg {
                stage: "initialise",
                source,
            })
        })?;
        let mut input =
            ffmpeg::format::input(path).map_err(|e| fail(VideoFailure::Unrecognised(e)))?;
        let stream = Stream::find(&input, limits).map_err(fail)?;

        let mut ticks = Vec::new();
        let mut untimed = 0usize;
        let mut dts_only = 0usize;
        // Duration of the packet shown last (largest timestamp), if stated.
        let mut last_packet = (i64::MIN, 0i64);
        let mut packet = ffmpeg::Packet::empty();
        loop {
            match packet.read(&mut input) {
                Ok(()) => {}
                Err(ffmpeg::Error::Eof) => break,
                Err(source) => {
                    return Err(fail(VideoFailure::Corrupt {
                        stage: "reading packets",
                        source,
                    }));
                }
            }
            if packet.stream() != stream.index {
                continue;
            }
            if packet.pts().is_none() && packet.dts().is_some() {
                dts_only += 1;
            }
            match packet.pts().or(packet.dts()) {
                Some(t) => {
                    ticks.push(t);
                    if t >= last_packet.0 {
                        last_packet = (t, packet.duration());
                    }
                }
                None => untimed += 1,
            }
        }
        if untimed > 0 {
            return Err(fail(VideoFailure::NoTimestamps { packets: untimed }));
        }
        ticks.sort_unstable();
        // Two packets presented at the same instant show one picture.
        ticks.dedup();
        match ticks.len() {
            0 => return Err(fail(VideoFailure::NoFrames)),
            1 => {
                return Err(fail(VideoFailure::StillImage {
                    format: format!("{}, a single frame", stream.format),
                }));
            }
            _ => {}
        }

        let tb = f64::from(stream.time_base);
        let first = ticks[0];
        let timestamps: Vec<f64> = ticks.iter().map(|&t| (t - first) as f64 * tb).collect();
        let last = timestamps[timestamps.len() - 1];
        let median_gap = median_gap(&timestamps).unwrap_or(0.0);
        // The last frame lasts its packet's duration when the container says
        // so, else the typical gap between frames.
        let last_shown = if last_packet.1 > 0 {
            last_packet.1 as f64 * tb
        } else {
            median_gap
        };
        let end = last + last_shown;

        if let Some(declared) = stream.declared_end(first) {
            // Muxers round durations; allow two frames and 50 ms of slack.
            let slack = (2.0 * median_gap).max(0.05);
            if end + slack < declared {
                return Err(fail(VideoFailure::Truncated {
                    declared,
                    found: end,
                }));
            }
        }

        Ok(VideoSource {
            path: path.to_path_buf(),
            format: stream.format,
            codec: stream.codec,
            width: stream.width,
            height: stream.height,
            stream_index: stream.index,
            time_base: stream.time_base,
            ticks,
            timestamps,
            end,
            frame_times: if dts_only > 0 {
                FrameTimes::OutputOrder
            } else {
                FrameTimes::Stamped
            },
            limits,
        })
    }

    /// Presentation times of all frames, seconds from the first frame.
    pub fn timestamps(&self) -> &[f64] {
        &self.timestamps
    }

    fn error(&self, reason: VideoFailure) -> VideoError {
        VideoError::new(&self.path, reason)
    }

    /// Pass 2 and conversion in one: the frames at `picks` (ascending
    /// indices into [`timestamps`](Self::timestamps)) as RGB scaled to
    /// `width`x`height` (aspect ratio is the caller's business).
    pub fn decode(
        &self,
        picks: &[usize],
        width: u32,
        height: u32,
    ) -> Result<Vec<Frame>, VideoError> {
        if width == 0 || height == 0 {
            return Err(self.error(VideoFailure::BadOutputSize { width, height }));
        }
        let pictures = self.decode_pictures(picks)?;
        pictures.convert(&vec![(width, height); pictures.len()])
    }

    /// Pass 2: decodes the stream once and keeps the pictures at `picks`
    /// (ascending indices into [`timestamps`](Self::timestamps)) in FFmpeg's
    /// own buffers, unconverted, so each can later be converted straight to
    /// the size it needs.
    ///
    /// A pick is matched to the first decoded frame presented at or after
    /// its timestamp, so a decoder that drops a frame yields its successor
    /// instead; running out of frames before a pick is an error.
    ///
    /// Memory: the picked pictures at source resolution (4:2:0 is 1.5 bytes
    /// per pixel: 64 frames of 1280x720 hold about 88 MB).
    pub fn decode_pictures(&self, picks: &[usize]) -> Result<Pictures, VideoError> {
        let mut wanted = Vec::with_capacity(picks.len());
        for (i, &index) in picks.iter().enumerate() {
            let ok = index < self.ticks.len() && (i == 0 || index > picks[i - 1]);
            if !ok {
                return Err(self.error(VideoFailure::BadPick {
                    index,
                    frames: self.ticks.len(),
                }));
            }
            wanted.push(self.ticks[index]);
        }
        let ff =
            |stage: &'static str| move |source| self.error(VideoFailure::Ffmpeg { stage, source });
        let mut input = ffmpeg::format::input(&self.path)
            .map_err(|e| self.error(VideoFailure::Unrecognised(e)))?;
        let parameters = input
            .stream(self.stream_index)
            .map(|s| s.parameters())
            .ok_or_else(|| {
                self.error(VideoFailure::Ffmpeg {
                    stage: "find the video stream again",
                    source: ffmpeg::Error::StreamNotFound,
                })
            })?;
        let mut decoder = open_decoder(parameters, self.limits.threads).map_err(|e| match e {
            ffmpeg::Error::DecoderNotFound => {
                self.error(VideoFailure::NoDecoder(self.codec.clone()))
            }
            other => ff("open the decoder")(other),
        })?;

        let mut out: Vec<frame::Video> = Vec::with_capacity(wanted.len());
        let mut times = Vec::with_capacity(wanted.len());
        let first = self.ticks[0];
        let tb = f64::from(self.time_base);
        let seconds = |tick: i64| (tick - first) as f64 * tb;
        let mut decoded = frame::Video::empty();
        let mut last_tick: Option<i64> = None;
        let mut packet = ffmpeg::Packet::empty();
        let mut draining = false;
        let mut output_index = 0usize;
        'frames: while out.len() < wanted.len() {
            if !draining {
                match packet.read(&mut input) {
                    Ok(()) if packet.stream() != self.stream_index => continue,
                    Ok(()) => decoder.send_packet(&packet).map_err(|source| {
                        self.error(VideoFailure::Corrupt {
                            stage: "decoding",
                            source,
                        })
                    })?,
                    Err(ffmpeg::Error::Eof) => {
                        draining = true;
                        decoder.send_eof().map_err(ff("flush the decoder"))?;
                    }
                    Err(source) => {
                        return Err(self.error(VideoFailure::Corrupt {
                            stage: "reading packets",
                            source,
                        }));
                    }
                }
            }
            loop {
                match decoder.receive_frame(&mut decoded) {
                    Ok(()) => {}
                    Err(ffmpeg::Error::Other { errno })
                        if errno == ffmpeg::util::error::EAGAIN && !draining =>
                    {
                        continue 'frames;
                    }
                    // End of stream (or, after EOF was sent, nothing more to
                    // come) with picks still unmatched.
                    Err(ffmpeg::Error::Eof) | Err(ffmpeg::Error::Other { .. }) if draining => {
                        return Err(self.error(VideoFailure::FramesMissing {
                            decoded: last_tick.map_or(0.0, seconds),
                            wanted: seconds(wanted[out.len()]),
                        }));
                    }
                    Err(source) => {
                        return Err(self.error(VideoFailure::Corrupt {
                            stage: "decoding",
                            source,
                        }));
                    }
                }
                let tick = match self.frame_times {
                    FrameTimes::Stamped => match decoded.timestamp() {
                        Some(t) => t,
                        None => continue,
                    },
                    FrameTimes::OutputOrder => match self.ticks.get(output_index) {
                        Some(&t) => t,
                        // More frames than packets: the order no longer says
                        // which frame is which.
                        None => {
                            return Err(self.error(VideoFailure::FramesMissing {
                                decoded: last_tick.map_or(0.0, seconds),
                                wanted: seconds(wanted[out.len()]),
                            }));
                        }
                    },
                };
                output_index += 1;
                last_tick = Some(tick);
                let target = wanted[out.len()];
                if tick < target {
                    continue;
                }
                check_size(decoded.width(), decoded.height(), &self.limits)
                    .map_err(|r| self.error(r))?;
                // Keep the decoder's reference-counted picture (no copy); the
                // decoder allocates a fresh buffer for its next frame.
                out.push(std::mem::replace(&mut decoded, frame::Video::empty()));
                times.push(seconds(target));
                if out.len() == wanted.len() {
                    break 'frames;
                }
            }
        }
        Ok(Pictures {
            path: self.path.clone(),
            pictures: out,
            timestamps: times,
        })
    }
}

/// Opens a video decoder with `threads` frame threads.
pub(crate) fn open_decoder(
    parameters: codec::Parameters,
    threads: usize,
) -> Result<ffmpeg::decoder::Video, ffmpeg::Error> {
    let mut context = codec::context::Context::from_parameters(parameters)?;
    context.set_threading(codec::threading::Config {
        kind: codec::threading::Type::Frame,
        ..codec::threading::Config::count(threads.max(1))
    });
    context.decoder().video()
}

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
//! FFmpeg's demuxers are generous: a text file opens as a one-stream `tty`
//! video, a random `.bin` as `bintext`, a PNG as a one-frame `png_pipe`
//! video. Those are rejected by demuxer/codec name and by frame count.
//!
//! Thread safety: [`VideoSource`] is `Send` (it holds no FFmpeg state
//! between calls; each pass opens the file itself). The swscale context
//! used inside [`VideoSource::decode`] is not `Send` and never leaves it.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use ffmpeg_next as ffmpeg;
use ffmpeg_next::format::Pixel;
use ffmpeg_next::software::scaling;
use ffmpeg_next::{Rational, codec, frame, media};

use super::frame::Frame;
use super::init::ensure_ffmpeg;
use super::resize::ResizeError;
use super::sample::{SampleError, median_gap};
use super::slowfast::BudgetError;

/// FFmpeg demuxers that turn arbitrary bytes into a "video" of rendered text
/// or ANSI art. They will open a `.txt` or a random `.bin`.
const TEXT_DEMUXERS: [&str; 5] = ["tty", "bin", "xbin", "adf", "idf"];

/// Codecs that render text rather than decode pictures.
const TEXT_CODECS: [codec::Id; 4] = [
    codec::Id::ANSI,
    codec::Id::BINTEXT,
    codec::Id::XBIN,
    codec::Id::IDF,
];

/// Limits on what is accepted as a video.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeLimits {
    /// Largest accepted width or height, in pixels.
    pub max_side: u32,
    /// Largest accepted width × height.
    pub max_pixels: u64,
    /// FFmpeg decoder threads per video (1 when a pool decodes many videos
    /// at once).
    pub threads: usize,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        DecodeLimits {
            max_side: 8192,
            max_pixels: 8192 * 4320,
            threads: 1,
        }
    }
}

/// Why a file was not accepted or could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum VideoFailure {
    #[error("no such file")]
    Missing,
    #[error("cannot open the file")]
    Unreadable(#[source] io::Error),
    #[error("it is a {0}, not a regular file")]
    NotAFile(&'static str),
    #[error("the file is empty (0 bytes)")]
    Empty,
    #[error("FFmpeg cannot open it as a media file (unknown format, or an index is missing)")]
    Unrecognised(#[source] ffmpeg::Error),
    #[error("text, not a video (FFmpeg's `{demuxer}` demuxer renders text as pictures)")]
    Text { demuxer: String },
    #[error("still image, not a video (format `{format}`)")]
    StillImage { format: String },
    #[error("no video stream (the file holds: {streams})")]
    NoVideoStream { streams: String },
    #[error("the video stream does not say its frame size")]
    UnknownSize,
    #[error(
        "absurd frame size {width}x{height} (accepted: at most {max_side} per side and \
         {max_pixels} pixels)"
    )]
    AbsurdSize {
        width: u32,
        height: u32,
        max_side: u32,
        max_pixels: u64,
    },
    #[error("no decoder for its `{0}` video")]
    NoDecoder(String),
    #[error("{packets} of its video packets carry no timestamp")]
    NoTimestamps { packets: usize },
    #[error("the video stream has no frames")]
    NoFrames,
    #[error(
        "truncated: the container declares {declared:.3} s but the frames stop at {found:.3} s"
    )]
    Truncated { declared: f64, found: f64 },
    #[error("corrupt or truncated data while {stage}")]
    Corrupt {
        stage: &'static str,
        #[source]
        source: ffmpeg::Error,
    },
    #[error(
        "decoding stopped at {decoded:.3} s, before the sampled frame at {wanted:.3} s \
         (corrupt or truncated)"
    )]
    FramesMissing { decoded: f64, wanted: f64 },
    #[error("cannot sample its frames")]
    Sampling(#[source] SampleError),
    #[error("cannot fit its frames into the token budget")]
    Budget(#[source] BudgetError),
    #[error("cannot resize its frames")]
    Resize(#[source] ResizeError),
    #[error("the decoding worker panicked: {0}")]
    WorkerPanicked(String),
    #[error("cannot scale to {width}x{height}: sizes must be non-zero")]
    BadOutputSize { width: u32, height: u32 },
    #[error("{sizes} output sizes given for {pictures} pictures")]
    SizeCount { sizes: usize, pictures: usize },
    #[error("frame pick {index} is out of range or out of order: the video has {frames} frames")]
    BadPick { index: usize, frames: usize },
    #[error("FFmpeg failed to {stage}")]
    Ffmpeg {
        stage: &'static str,
        #[source]
        source: ffmpeg::Error,
    },
}

/// A rejected or undecodable video: the path and why.
#[derive(Debug, thiserror::Error)]
#[error("cannot read video {}", path.display())]
pub struct VideoError {
    pub path: PathBuf,
    #[source]
    pub reason: VideoFailure,
}

impl VideoError {
    pub fn new(path: &Path, reason: VideoFailure) -> Self {
        VideoError {
            path: path.to_path_buf(),
            reason,
        }
    }
}

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

/// Decoded pictures still in the decoder's pixel format (usually YUV 4:2:0),
/// with their timestamps. `Send`: holds only reference-counted FFmpeg frames.
pub struct Pictures {
    path: PathBuf,
    pictures: Vec<frame::Video>,
    timestamps: Vec<f64>,
}

impl Pictures {
    pub fn len(&self) -> usize {
        self.pictures.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pictures.is_empty()
    }

    /// Seconds from the first frame of the file, one per picture.
    pub fn timestamps(&self) -> &[f64] {
        &self.timestamps
    }

    /// Converts picture `i` to packed RGB at `sizes[i]` with swscale (area
    /// filter), in one pass per picture. The swscale contexts live only
    /// inside this call.
    pub fn convert(&self, sizes: &[(u32, u32)]) -> Result<Vec<Frame>, VideoError> {
        let fail = |reason| VideoError::new(&self.path, reason);
        if sizes.len() != self.pictures.len() {
            return Err(fail(VideoFailure::SizeCount {
                sizes: sizes.len(),
                pictures: self.pictures.len(),
            }));
        }
        let mut converters: Vec<Converter> = Vec::new();
        self.pictures
            .iter()
            .zip(sizes)
            .zip(&self.timestamps)
            .map(|((picture, &(width, height)), &timestamp)| {
                if width == 0 || height == 0 {
                    return Err(fail(VideoFailure::BadOutputSize { width, height }));
                }
                let at = match converters
                    .iter()
                    .position(|c| (c.width, c.height) == (width, height))
                {
                    Some(at) => at,
                    None => {
                        converters.push(Converter::new(width, height));
                        converters.len() - 1
                    }
                };
                let rgb = converters[at].convert(picture).map_err(|source| {
                    fail(VideoFailure::Ffmpeg {
                        stage: "convert a frame to RGB",
                        source,
                    })
                })?;
                Ok(Frame {
                    timestamp,
                    width,
                    height,
                    rgb,
                })
            })
            .collect()
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

/// Facts about the chosen video stream, gathered before reading packets.
struct Stream {
    index: usize,
    format: String,
    codec: String,
    width: u32,
    height: u32,
    time_base: Rational,
    /// Stream start and duration in ticks, when the container states usable
    /// ones (FFmpeg reports "unknown" as `i64::MIN`).
    start: Option<i64>,
    duration: Option<i64>,
    /// Whole-file duration in seconds, used only when the file has no other
    /// stream that could be the longer one.
    file_duration: Option<f64>,
}

impl Stream {
    fn find(
        input: &ffmpeg::format::context::Input,
        limits: DecodeLimits,
    ) -> Result<Stream, VideoFailure> {
        let format = input.format().name().to_string();
        if TEXT_DEMUXERS.contains(&format.as_str()) {
            return Err(VideoFailure::Text { demuxer: format });
        }
        if format.starts_with("image2") || format.ends_with("_pipe") {
            return Err(VideoFailure::StillImage { format });
        }
        // Cover art in an audio file is a one-picture "video" stream marked
        // as an attached picture; it does not count.
        let is_moving_video = |s: &ffmpeg::format::stream::Stream| {
            s.parameters().medium() == media::Type::Video
                && !s
                    .disposition()
                    .contains(ffmpeg::format::stream::Disposition::ATTACHED_PIC)
        };
        let best = input
            .streams()
            .best(media::Type::Video)
            .filter(|s| is_moving_video(s));
        let Some(stream) = best.or_else(|| input.streams().find(|s| is_moving_video(s))) else {
            let streams: Vec<String> = input
                .streams()
                .map(|s| {
                    let medium = s.parameters().medium();
                    let cover = if medium == media::Type::Video && !is_moving_video(&s) {
                        ", attached picture"
                    } else {
                        ""
                    };
                    format!("{medium:?} ({}{cover})", s.parameters().id().name())
                })
                .collect();
            let streams = if streams.is_empty() {
                "no streams".to_string()
            } else {
                streams.join(", ")
            };
            return Err(VideoFailure::NoVideoStream { streams });
        };
        let parameters = stream.parameters();
        let id = parameters.id();
        if TEXT_CODECS.contains(&id) {
            return Err(VideoFailure::Text { demuxer: format });
        }
        // Frame size as the container states it; checked again per decoded
        // frame, since a stream may change size midway.
        let (width, height) = unsafe {
            // SAFETY: `parameters` owns a valid AVCodecParameters for the
            // lifetime of this block; reading two ints does not mutate it.
            let p = parameters.as_ptr();
            ((*p).width, (*p).height)
        };
        if width <= 0 || height <= 0 {
            return Err(VideoFailure::UnknownSize);
        }
        let (width, height) = (width as u32, height as u32);
        check_size(width, height, &limits)?;

        let start = Some(stream.start_time()).filter(|&t| t != i64::MIN);
        let duration = Some(stream.duration()).filter(|&d| d > 0);
        let file_duration = Some(input.duration())
            .filter(|&d| d > 0 && input.nb_streams() == 1)
            .map(|d| d as f64 / f64::from(ffmpeg::ffi::AV_TIME_BASE));
        Ok(Stream {
            index: stream.index(),
            format,
            codec: id.name().to_string(),
            width,
            height,
            time_base: stream.time_base(),
            start,
            duration,
            file_duration,
        })
    }

    /// When the container says the stream ends, in seconds from the tick
    /// `first` (the first frame's presentation time).
    fn declared_end(&self, first: i64) -> Option<f64> {
        let tb = f64::from(self.time_base);
        match self.duration {
            // A stream duration counts from the stream's start time.
            Some(d) => Some((self.start.unwrap_or(first) + d - first) as f64 * tb),
            // A one-stream file's duration counts from its first frame.
            None => self.file_duration,
        }
    }
}

fn check_size(width: u32, height: u32, limits: &DecodeLimits) -> Result<(), VideoFailure> {
    let pixels = u64::from(width) * u64::from(height);
    if width == 0
        || height == 0
        || width > limits.max_side
        || height > limits.max_side
        || pixels > limits.max_pixels
    {
        return Err(VideoFailure::AbsurdSize {
            width,
            height,
            max_side: limits.max_side,
            max_pixels: limits.max_pixels,
        });
    }
    Ok(())
}

/// Checks the path names a readable, non-empty regular file before FFmpeg
/// sees it (FFmpeg's own errors for these cases are vague, and opening a FIFO
/// would block).
fn check_file(path: &Path) -> Result<(), VideoFailure> {
    let meta = match fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(VideoFailure::Missing),
        Err(e) => return Err(VideoFailure::Unreadable(e)),
    };
    let kind = meta.file_type();
    if kind.is_dir() {
        return Err(VideoFailure::NotAFile("directory"));
    }
    if !kind.is_file() {
        return Err(VideoFailure::NotAFile(special_kind(&kind)));
    }
    if meta.len() == 0 {
        return Err(VideoFailure::Empty);
    }
    fs::File::open(path).map_err(VideoFailure::Unreadable)?;
    Ok(())
}

#[cfg(unix)]
fn special_kind(kind: &fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if kind.is_fifo() {
        "FIFO (named pipe)"
    } else if kind.is_socket() {
        "socket"
    } else if kind.is_block_device() || kind.is_char_device() {
        "device"
    } else {
        "special file"
    }
}

#[cfg(not(unix))]
fn special_kind(_: &fs::FileType) -> &'static str {
    "special file"
}

/// Decoded-picture to packed-RGB converter for one output size; rebuilds its
/// swscale contexts when the input size or pixel format changes. Not `Send`.
///
/// For 4:2:0 input (nearly every video) it works in two swscale passes:
/// scale in YUV (SIMD paths), then convert YUV to RGB at the output size
/// (SIMD path for unscaled conversion). swscale's single-pass scale-and-
/// convert writes packed RGB24 with plain C code and measured about twice
/// as slow here.
struct Converter {
    width: u32,
    height: u32,
    stages: Option<(Stages, (Pixel, u32, u32))>,
    scaled: frame::Video,
    rgb: frame::Video,
}

enum Stages {
    /// Scale in the input's 4:2:0 format, then convert to RGB.
    Planar {
        scale: scaling::Context,
        to_rgb: scaling::Context,
    },
    /// Anything else: one scale-and-convert pass.
    Direct(scaling::Context),
}

impl Converter {
    fn new(width: u32, height: u32) -> Self {
        Converter {
            width,
            height,
            stages: None,
            scaled: frame::Video::empty(),
            rgb: frame::Video::empty(),
        }
    }

    fn build(&self, format: Pixel, width: u32, height: u32) -> Result<Stages, ffmpeg::Error> {
        let (w, h) = (self.width, self.height);
        Ok(match format {
            Pixel::YUV420P | Pixel::YUVJ420P => Stages::Planar {
                scale: scaling::Context::get(
                    format,
                    width,
                    height,
                    format,
                    w,
                    h,
                    scaling::Flags::AREA,
                )?,
                to_rgb: scaling::Context::get(
                    format,
                    w,
                    h,
                    Pixel::RGB24,
                    w,
                    h,
                    scaling::Flags::BILINEAR,
                )?,
            },
            _ => Stages::Direct(scaling::Context::get(
                format,
                width,
                height,
                Pixel::RGB24,
                w,
                h,
                scaling::Flags::AREA,
            )?),
        })
    }

    fn convert(&mut self, input: &frame::Video) -> Result<Vec<u8>, ffmpeg::Error> {
        let key = (input.format(), input.width(), input.height());
        if self.stages.as_ref().is_none_or(|(_, k)| *k != key) {
            let stages = self.build(key.0, key.1, key.2)?;
            self.stages = Some((stages, key));
            self.scaled = frame::Video::empty();
            self.rgb = frame::Video::empty();
        }
        match &mut self.stages {
            Some((Stages::Planar { scale, to_rgb }, _)) => {
                scale.run(input, &mut self.scaled)?;
                to_rgb.run(&self.scaled, &mut self.rgb)?;
            }
            Some((Stages::Direct(scaler), _)) => scaler.run(input, &mut self.rgb)?,
            None => return Err(ffmpeg::Error::Bug),
        }
        let row = self.width as usize * 3;
        let stride = self.rgb.stride(0);
        let data = self.rgb.data(0);
        let mut out = Vec::with_capacity(row * self.height as usize);
        for y in 0..self.height as usize {
            out.extend_from_slice(&data[y * stride..y * stride + row]);
        }
        Ok(out)
    }
}

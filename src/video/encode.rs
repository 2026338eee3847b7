//! Writing RGB frames to a real video file with ffmpeg-next.
//!
//! Used by the synthetic data generator (`vgrpo synth`), by the tests (which
//! make their own tiny clips) and by the benchmark. The supported pairs are
//! the ones the decoder promises to read:
//!
//! | container | codecs            | variable frame rate |
//! |-----------|-------------------|---------------------|
//! | mp4       | h264, vp9         | yes                 |
//! | mov       | h264, mjpeg       | yes                 |
//! | mkv       | h264, vp9, mjpeg  | yes                 |
//! | webm      | vp9               | yes                 |
//! | avi       | mjpeg, h264       | no (AVI stores one frame rate) |
//!
//! Encoders used: `libx264` (h264), `libvpx-vp9` (vp9) and FFmpeg's built-in
//! `mjpeg`; all three ship with Debian's libavcodec.
//!
//! Output is reproducible: the muxer and encoders run with FFmpeg's
//! `bitexact` flags (no random Matroska UIDs, no version strings), the
//! default of one encoder thread, a bit-exact RGB→YUV conversion and x264's
//! CPU-independent routines, so the same frames give the same bytes on any
//! machine.
//!
//! Thread safety: a [`VideoWriter`] holds an swscale context
//! (`ffmpeg_next::software::scaling::Context`), which is not `Send`, so a
//! writer must be created and finished on one thread. To encode in parallel,
//! create one writer per worker thread.

use std::path::{Path, PathBuf};

use ffmpeg_next as ffmpeg;
use ffmpeg_next::format::Pixel;
use ffmpeg_next::software::scaling;
use ffmpeg_next::{Dictionary, Rational, codec, encoder, frame, picture};

use super::frame::Frame;
use super::init::ensure_ffmpeg;

/// The file format that wraps the encoded stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Container {
    Mp4,
    Mov,
    Mkv,
    Webm,
    Avi,
}

impl Container {
    /// All containers, for tests and benchmarks that cover each one.
    pub const ALL: [Container; 5] = [
        Container::Mp4,
        Container::Mov,
        Container::Mkv,
        Container::Webm,
        Container::Avi,
    ];

    /// The usual file extension (without the dot).
    pub fn extension(self) -> &'static str {
        match self {
            Container::Mp4 => "mp4",
            Container::Mov => "mov",
            Container::Mkv => "mkv",
            Container::Webm => "webm",
            Container::Avi => "avi",
        }
    }

    /// FFmpeg's muxer name.
    fn muxer(self) -> &'static str {
        match self {
            Container::Mp4 => "mp4",
            Container::Mov => "mov",
            Container::Mkv => "matroska",
            Container::Webm => "webm",
            Container::Avi => "avi",
        }
    }

    /// The codec used when the caller does not pick one.
    pub fn default_codec(self) -> VideoCodec {
        match self {
            Container::Mp4 | Container::Mov | Container::Mkv => VideoCodec::H264,
            Container::Webm => VideoCodec::Vp9,
            Container::Avi => VideoCodec::Mjpeg,
        }
    }

    /// Whether this container can hold `codec` (the table in the module docs).
    pub fn holds(self, codec: VideoCodec) -> bool {
        use VideoCodec::*;
        match self {
            Container::Mp4 => matches!(codec, H264 | Vp9),
            Container::Mov => matches!(codec, H264 | Mjpeg),
            Container::Mkv => true,
            Container::Webm => codec == Vp9,
            Container::Avi => matches!(codec, Mjpeg | H264),
        }
    }

    /// Whether per-frame timestamps survive muxing (AVI has one fixed rate).
    pub fn variable_frame_rate(self) -> bool {
        self != Container::Avi
    }
}

/// The compression format of the video stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VideoCodec {
    H264,
    Vp9,
    Mjpeg,
}

impl VideoCodec {
    /// FFmpeg's encoder name.
    pub fn encoder_name(self) -> &'static str {
        match self {
            VideoCodec::H264 => "libx264",
            VideoCodec::Vp9 => "libvpx-vp9",
            VideoCodec::Mjpeg => "mjpeg",
        }
    }

    /// The YUV layout handed to the encoder. All three use 4:2:0 chroma,
    /// which is why frame sizes must be even. MJPEG wants the full-range
    /// ("J") variant.
    fn pixel_format(self) -> Pixel {
        match self {
            VideoCodec::H264 | VideoCodec::Vp9 => Pixel::YUV420P,
            VideoCodec::Mjpeg => Pixel::YUVJ420P,
        }
    }

    /// Encoder options for a quality level on the 0 (best) ..= 51 (worst)
    /// scale of [`EncodeSettings::quality`].
    fn options(self, quality: u8) -> Dictionary<'static> {
        let mut opts = Dictionary::new();
        match self {
            VideoCodec::H264 => {
                opts.set("preset", "veryfast");
                opts.set("crf", &quality.to_string());
                // x264 picks its SIMD routines per CPU, and on AVX-512
                // machines (like this project's) the output depended on
                // memory it never wrote: the first frame's top-right
                // macroblocks changed with whatever the process had freed
                // before, so the same frames gave different videos. The portable routines make
                // the output a function of the frames alone, on any CPU, at
                // no measurable cost for clips this size.
                opts.set("x264-params", "cpu-independent=1");
            }
            VideoCodec::Vp9 => {
                // Constant-quality mode needs a zero target bit rate; vp9's
                // crf scale is 0..=63, ours is stretched onto it.
                let crf = (u32::from(quality) * 63).div_ceil(51);
                opts.set("crf", &crf.to_string());
                opts.set("b", "0");
                opts.set("deadline", "realtime");
                opts.set("cpu-used", "8");
            }
            VideoCodec::Mjpeg => {
                // Fixed quantiser: qscale 1..=31, given to FFmpeg in "lambda"
                // units (qscale * FF_QP2LAMBDA = qscale * 118).
                let qscale = 1 + u32::from(quality) * 30 / 51;
                opts.set("flags", "+qscale");
                opts.set("global_quality", &(qscale * 118).to_string());
            }
        }
        opts
    }
}

/// When each frame is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timing {
    /// Frame `i` is shown at `i / fps` seconds; `Frame::timestamp` is ignored.
    ConstantFps,
    /// Frame `i` is shown at its own `Frame::timestamp` (variable frame
    /// rate), rounded to 1/90000 s. Timestamps must strictly increase.
    FrameTimestamps,
}

/// Time base (1/90000 s, the MPEG clock) used for variable-frame-rate output.
const VFR_CLOCK: i32 = 90_000;

/// How to encode.
#[derive(Debug, Clone, PartialEq)]
pub struct EncodeSettings {
    pub container: Container,
    pub codec: VideoCodec,
    /// Nominal frames per second (written into the stream header; with
    /// [`Timing::ConstantFps`] also the actual rate).
    pub fps: f64,
    pub timing: Timing,
    /// 0 (best) ..= 51 (worst), the x264 CRF scale; mapped onto vp9's CRF
    /// and MJPEG's qscale. Default 23.
    pub quality: u8,
    /// mp4/mov only: put the index (`moov`) before the media data.
    pub faststart: bool,
    /// mkv/webm only: write as a live stream (no duration, no cue index), as
    /// stream recorders do. Readers then get no duration at all (FFmpeg
    /// reports `i64::MIN`).
    pub live: bool,
    /// Encoder threads. 1 (the default) keeps the output bit-reproducible.
    pub threads: usize,
}

impl EncodeSettings {
    /// Constant-frame-rate settings with the container's default codec.
    pub fn new(container: Container, fps: f64) -> Self {
        EncodeSettings {
            container,
            codec: container.default_codec(),
            fps,
            timing: Timing::ConstantFps,
            quality: 23,
            faststart: false,
            live: false,
            threads: 1,
        }
    }

    pub fn with_codec(mut self, codec: VideoCodec) -> Self {
        self.codec = codec;
        self
    }

    pub fn with_timing(mut self, timing: Timing) -> Self {
        self.timing = timing;
        self
    }

    pub fn with_quality(mut self, quality: u8) -> Self {
        self.quality = quality;
        self
    }

    pub fn with_faststart(mut self, faststart: bool) -> Self {
        self.faststart = faststart;
        self
    }

    pub fn with_live(mut self, live: bool) -> Self {
        self.live = live;
        self
    }
}

/// Why encoding failed (the [`EncodeError`] carries the path).
#[derive(Debug, thiserror::Error)]
pub enum EncodeFailure {
    #[error("a {container:?} file cannot hold {codec:?} video")]
    Unsupported {
        container: Container,
        codec: VideoCodec,
    },
    #[error("FFmpeg has no `{0}` encoder in this build")]
    EncoderMissing(&'static str),
    #[error("fps must be finite and > 0, got {0}")]
    BadFps(f64),
    #[error("quality must be in 0..=51, got {0}")]
    BadQuality(u8),
    #[error("threads must be >= 1, got 0")]
    NoThreads,
    #[error("faststart only applies to mp4 and mov, not {0:?}")]
    FaststartNotMp4(Container),
    #[error("live (unindexed) output only applies to mkv and webm, not {0:?}")]
    LiveNotMatroska(Container),
    #[error("{0:?} stores one constant frame rate, so per-frame timestamps cannot be kept")]
    NoVariableFrameRate(Container),
    #[error("4:2:0 video needs a non-zero even width and height, got {width}x{height}")]
    BadSize { width: u32, height: u32 },
    #[error("frame {index} is {got_width}x{got_height}, the video is {width}x{height}")]
    SizeChanged {
        index: usize,
        got_width: u32,
        got_height: u32,
        width: u32,
        height: u32,
    },
    #[error("frame {index} has {got} bytes of RGB, {width}x{height}x3 needs {expected}")]
    BadBuffer {
        index: usize,
        got: usize,
        expected: usize,
        width: u32,
        height: u32,
    },
    #[error(
        "frame {index} timestamp {timestamp} s is not finite, negative, or not after the \
         previous frame's (tick {previous_tick} of 1/{VFR_CLOCK} s)"
    )]
    BadTimestamp {
        index: usize,
        timestamp: f64,
        previous_tick: i64,
    },
    #[error("no frames were written")]
    NoFrames,
    #[error("FFmpeg failed to {stage}")]
    Ffmpeg {
        stage: &'static str,
        #[source]
        source: ffmpeg::Error,
    },
}

/// A failed encode: the output path and why.
#[derive(Debug, thiserror::Error)]
#[error("cannot write video {}", path.display())]
pub struct EncodeError {
    pub path: PathBuf,
    #[source]
    pub reason: EncodeFailure,
}

/// What was written.
#[derive(Debug, Clone, PartialEq)]
pub struct EncodeSummary {
    pub frames: usize,
    pub width: u32,
    pub height: u32,
    /// Presentation time of the last frame, in seconds.
    pub last_timestamp: f64,
}

/// Streaming encoder: create, [`write`](VideoWriter::write) frames one at a
/// time, then [`finish`](VideoWriter::finish). Not `Send` (it owns an
/// swscale context). Dropping a writer without `finish` leaves an
/// incomplete file behind.
pub struct VideoWriter {
    path: PathBuf,
    output: ffmpeg::format::context::Output,
    encoder: encoder::Video,
    scaler: scaling::Context,
    /// RGB24 staging frame the scaler reads from.
    rgb: frame::Video,
    /// YUV frame handed to the encoder.
    yuv: frame::Video,
    encoder_time_base: Rational,
    stream_time_base: Rational,
    timing: Timing,
    width: u32,
    height: u32,
    written: usize,
    /// Last presentation tick, in `encoder_time_base` units.
    last_tick: i64,
    last_timestamp: f64,
}

impl VideoWriter {
    /// Opens `path` for writing `width`x`height` RGB frames.
    pub fn create(
        path: &Path,
        width: u32,
        height: u32,
        settings: &EncodeSettings,
    ) -> Result<Self, EncodeError> {
        let fail = |reason| EncodeError {
            path: path.to_path_buf(),
            reason,
        };
        let ff = |stage| move |source| fail(EncodeFailure::Ffmpeg { stage, source });
        validate_settings(settings, width, height).map_err(fail)?;
        ensure_ffmpeg().map_err(ff("initialise"))?;

        let codec = encoder::find_by_name(settings.codec.encoder_name())
            .ok_or_else(|| fail(EncodeFailure::EncoderMissing(settings.codec.encoder_name())))?;
        let mut output = ffmpeg::format::output_as(path, settings.container.muxer())
            .map_err(ff("create the output file"))?;
        let global_header = output
            .format()
            .flags()
            .contains(ffmpeg::format::Flags::GLOBAL_HEADER);

        let frame_rate = Rational::from(settings.fps);
        let encoder_time_base = match settings.timing {
            Timing::ConstantFps => frame_rate.invert(),
            Timing::FrameTimestamps => Rational::new(1, VFR_CLOCK),
        };

        let mut video = codec::context::Context::new_with_codec(codec)
            .encoder()
            .video()
            .map_err(ff("make a video encoder"))?;
        video.set_width(width);
        video.set_height(height);
        video.set_format(settings.codec.pixel_format());
        video.set_time_base(encoder_time_base);
        video.set_frame_rate(Some(frame_rate));
        video.set_threading(codec::threading::Config {
            kind: codec::threading::Type::Frame,
            ..codec::threading::Config::count(settings.threads)
        });
        if settings.codec == VideoCodec::Mjpeg {
            video.set_color_range(ffmpeg::color::Range::JPEG);
        }
        let mut flags = codec::Flags::BITEXACT;
        if global_header {
            flags |= codec::Flags::GLOBAL_HEADER;
        }
        video.set_flags(flags);
        let encoder = video
            .open_as_with(codec, settings.codec.options(settings.quality))
            .map_err(ff("open the encoder"))?;

        {
            let mut stream = output.add_stream(codec).map_err(ff("add a stream"))?;
            stream.set_parameters(&encoder);
            stream.set_time_base(encoder_time_base);
            stream.set_avg_frame_rate(frame_rate);
            stream.set_rate(frame_rate);
        }

        let mut header_opts = Dictionary::new();
        header_opts.set("fflags", "+bitexact");
        if settings.faststart {
            header_opts.set("movflags", "+faststart");
        }
        if settings.live {
            header_opts.set("live", "1");
        }
        output
            .write_header_with(header_opts)
            .map_err(ff("write the header"))?;
        // The muxer may pick its own stream time base while writing the header.
        let stream_time_base = output.stream(0).map(|s| s.time_base()).ok_or_else(|| {
            fail(EncodeFailure::Ffmpeg {
                stage: "find the stream it just added",
                source: ffmpeg::Error::StreamNotFound,
            })
        })?;

        let scaler = scaling::Context::get(
            Pixel::RGB24,
            width,
            height,
            settings.codec.pixel_format(),
            width,
            height,
            // Bit-exact: the converter's SIMD paths round differently per
            // CPU, and a synthetic data set must be the same bytes anywhere.
            scaling::Flags::BILINEAR | scaling::Flags::BITEXACT | scaling::Flags::ACCURATE_RND,
        )
        .map_err(ff("make the RGB to YUV converter"))?;

        Ok(VideoWriter {
            path: path.to_path_buf(),
            output,
            encoder,
            scaler,
            rgb: frame::Video::new(Pixel::RGB24, width, height),
            yuv: frame::Video::empty(),
            encoder_time_base,
            stream_time_base,
            timing: settings.timing,
            width,
            height,
            written: 0,
            last_tick: i64::MIN,
            last_timestamp: 0.0,
        })
    }

    fn error(&self, reason: EncodeFailure) -> EncodeError {
        EncodeError {
            path: self.path.clone(),
            reason,
        }
    }

    fn ffmpeg_error(&self, stage: &'static str, source: ffmpeg::Error) -> EncodeError {
        self.error(EncodeFailure::Ffmpeg { stage, source })
    }

    /// Encodes one frame.
    pub fn write(&mut self, input: &Frame) -> Result<(), EncodeError> {
        let index = self.written;
        if (input.width, input.height) != (self.width, self.height) {
            return Err(self.error(EncodeFailure::SizeChanged {
                index,
                got_width: input.width,
                got_height: input.height,
                width: self.width,
                height: self.height,
            }));
        }
        let row = self.width as usize * 3;
        let expected = row * self.height as usize;
        if input.rgb.len() != expected {
            return Err(self.error(EncodeFailure::BadBuffer {
                index,
                got: input.rgb.len(),
                expected,
                width: self.width,
                height: self.height,
            }));
        }
        let (tick, timestamp) = match self.timing {
            Timing::ConstantFps => (
                index as i64,
                index as f64 * f64::from(self.encoder_time_base),
            ),
            Timing::FrameTimestamps => {
                let t = input.timestamp;
                let tick = (t * f64::from(VFR_CLOCK)).round();
                if !t.is_finite() || t < 0.0 || tick as i64 <= self.last_tick {
                    return Err(self.error(EncodeFailure::BadTimestamp {
                        index,
                        timestamp: t,
                        previous_tick: self.last_tick,
                    }));
                }
                (tick as i64, t)
            }
        };

        // Copy the packed RGB rows into FFmpeg's (padded) plane.
        let stride = self.rgb.stride(0);
        let plane = self.rgb.data_mut(0);
        for (y, src) in input.rgb.chunks_exact(row).enumerate() {
            plane[y * stride..y * stride + row].copy_from_slice(src);
        }
        self.scaler
            .run(&self.rgb, &mut self.yuv)
            .map_err(|e| self.ffmpeg_error("convert RGB to YUV", e))?;
        self.yuv.set_pts(Some(tick));
        self.yuv.set_kind(picture::Type::None);
        self.encoder
            .send_frame(&self.yuv)
            .map_err(|e| self.ffmpeg_error("encode a frame", e))?;
        self.drain_packets()?;

        self.written += 1;
        self.last_tick = tick;
        self.last_timestamp = timestamp;
        Ok(())
    }

    /// Moves every packet the encoder has ready into the file.
    fn drain_packets(&mut self) -> Result<(), EncodeError> {
        let mut packet = ffmpeg::Packet::empty();
        loop {
            match self.encoder.receive_packet(&mut packet) {
                Ok(()) => {}
                Err(ffmpeg::Error::Eof) => return Ok(()),
                Err(ffmpeg::Error::Other { errno }) if errno == ffmpeg::util::error::EAGAIN => {
                    return Ok(());
                }
                Err(e) => return Err(self.ffmpeg_error("receive an encoded packet", e)),
            }
            packet.set_stream(0);
            packet.rescale_ts(self.encoder_time_base, self.stream_time_base);
            packet
                .write_interleaved(&mut self.output)
                .map_err(|e| self.ffmpeg_error("write a packet", e))?;
        }
    }

    /// Flushes the encoder and writes the index/trailer.
    pub fn finish(mut self) -> Result<EncodeSummary, EncodeError> {
        if self.written == 0 {
            return Err(self.error(EncodeFailure::NoFrames));
        }
        self.encoder
            .send_eof()
            .map_err(|e| self.ffmpeg_error("flush the encoder", e))?;
        self.drain_packets()?;
        self.output
            .write_trailer()
            .map_err(|e| self.ffmpeg_error("write the trailer", e))?;
        Ok(EncodeSummary {
            frames: self.written,
            width: self.width,
            height: self.height,
            last_timestamp: self.last_timestamp,
        })
    }
}

fn validate_settings(s: &EncodeSettings, width: u32, height: u32) -> Result<(), EncodeFailure> {
    if !s.container.holds(s.codec) {
        return Err(EncodeFailure::Unsupported {
            container: s.container,
            codec: s.codec,
        });
    }
    if !(s.fps.is_finite() && s.fps > 0.0) {
        return Err(EncodeFailure::BadFps(s.fps));
    }
    if s.quality > 51 {
        return Err(EncodeFailure::BadQuality(s.quality));
    }
    if s.threads == 0 {
        return Err(EncodeFailure::NoThreads);
    }
    if s.faststart && !matches!(s.container, Container::Mp4 | Container::Mov) {
        return Err(EncodeFailure::FaststartNotMp4(s.container));
    }
    if s.live && !matches!(s.container, Container::Mkv | Container::Webm) {
        return Err(EncodeFailure::LiveNotMatroska(s.container));
    }
    if s.timing == Timing::FrameTimestamps && !s.container.variable_frame_rate() {
        return Err(EncodeFailure::NoVariableFrameRate(s.container));
    }
    if width == 0 || height == 0 || width % 2 == 1 || height % 2 == 1 {
        return Err(EncodeFailure::BadSize { width, height });
    }
    Ok(())
}

/// Encodes `frames` (all the same size) into `path`.
pub fn encode_video(
    path: &Path,
    frames: &[Frame],
    settings: &EncodeSettings,
) -> Result<EncodeSummary, EncodeError> {
    let first = frames.first().ok_or_else(|| EncodeError {
        path: path.to_path_buf(),
        reason: EncodeFailure::NoFrames,
    })?;
    let mut writer = VideoWriter::create(path, first.width, first.height, settings)?;
    for frame in frames {
        writer.write(frame)?;
    }
    writer.finish()
}

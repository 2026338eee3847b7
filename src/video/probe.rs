//! Pass-1 checks: is this path a real, sane video before anything is
//! decoded? File-system checks, FFmpeg's demuxer and codec, the frame size.
//!
//! FFmpeg's demuxers are generous: a text file opens as a one-stream `tty`
//! video, a random `.bin` as a `bin` (bintext) video, a PNG as a one-frame
//! `png_pipe` video, an MP3's cover art as a video stream. Those are
//! rejected here by demuxer/codec name and disposition (a single-frame
//! stream is caught later, by frame count).

use std::fs;
use std::io;
use std::path::Path;

use ffmpeg_next as ffmpeg;
use ffmpeg_next::{Rational, codec, media};

use super::error::VideoFailure;

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

/// Facts about the chosen video stream, gathered before reading packets.
pub(crate) struct Stream {
    pub(crate) index: usize,
    pub(crate) format: String,
    pub(crate) codec: String,
    pub(crate) width: u32,
    pub(crate) height: u32,
    pub(crate) time_base: Rational,
    /// Stream start and duration in ticks, when the container states usable
    /// ones (FFmpeg reports "unknown" as `i64::MIN`).
    pub(crate) start: Option<i64>,
    pub(crate) duration: Option<i64>,
    /// Whole-file duration in seconds, used only when the file has no other
    /// stream that could be the longer one.
    pub(crate) file_duration: Option<f64>,
}

impl Stream {
    pub(crate) fn find(
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
    pub(crate) fn declared_end(&self, first: i64) -> Option<f64> {
        let tb = f64::from(self.time_base);
        match self.duration {
            // A stream duration counts from the stream's start time.
            Some(d) => Some((self.start.unwrap_or(first) + d - first) as f64 * tb),
            // A one-stream file's duration counts from its first frame.
            None => self.file_duration,
        }
    }
}

pub(crate) fn check_size(
    width: u32,
    height: u32,
    limits: &DecodeLimits,
) -> Result<(), VideoFailure> {
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
pub(crate) fn check_file(path: &Path) -> Result<(), VideoFailure> {
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

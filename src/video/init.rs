//! One-time FFmpeg set-up shared by the encoder and the decoder.
//!
//! FFmpeg logs to stderr on its own (warnings about truncated files, codec
//! probing chatter, x264's statistics). Every problem we care about is turned
//! into a typed error instead, so the library sets FFmpeg's log level to
//! `quiet` once, the first time any video function runs.

use std::sync::OnceLock;

use ffmpeg_next as ffmpeg;

/// Initialises FFmpeg and silences its logging, once per process.
///
/// Later calls return the outcome of the first one.
pub fn ensure_ffmpeg() -> Result<(), ffmpeg::Error> {
    static INIT: OnceLock<Result<(), ffmpeg::Error>> = OnceLock::new();
    *INIT.get_or_init(|| {
        ffmpeg::init()?;
        ffmpeg::util::log::set_level(ffmpeg::util::log::Level::Quiet);
        Ok(())
    })
}

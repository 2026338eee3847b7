//! Decoded pictures to packed RGB frames, each converted once, straight to
//! the size it needs (swscale). The swscale contexts are not `Send`; they
//! live only inside [`Pictures::convert`].

use std::path::PathBuf;

use ffmpeg_next as ffmpeg;
use ffmpeg_next::format::Pixel;
use ffmpeg_next::frame;
use ffmpeg_next::software::scaling;

use super::error::{VideoError, VideoFailure};
use super::frame::Frame;

/// Decoded pictures still in the decoder's pixel format (usually YUV 4:2:0),
/// with their timestamps. `Send`: holds only reference-counted FFmpeg frames.
pub struct Pictures {
    pub(crate) path: PathBuf,
    pub(crate) pictures: Vec<frame::Video>,
    pub(crate) timestamps: Vec<f64>,
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

//! Resizing packed RGB frames: area averaging when shrinking, bilinear when
//! enlarging, separable (rows then columns).
//!
//! Pure Rust and deterministic: the weights depend only on the two sizes, and
//! the arithmetic is plain `f32` in a fixed order, so the same input gives
//! the same bytes on every run. Each output pixel reads about
//! `(in/out + 1)` input pixels per axis, so the cost is linear in the input
//! size.

use super::frame::Frame;

/// Why a resize was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResizeError {
    #[error("cannot resize {from_width}x{from_height} to {width}x{height}: sizes must be non-zero")]
    ZeroSize {
        from_width: u32,
        from_height: u32,
        width: u32,
        height: u32,
    },
    #[error("frame claims {width}x{height} but holds {got} bytes of RGB (needs {expected})")]
    BadBuffer {
        width: u32,
        height: u32,
        got: usize,
        expected: usize,
    },
}

/// Filter taps of one output sample: the first input index and its weights
/// (summing to 1).
#[derive(Debug, Clone, PartialEq)]
struct Taps {
    start: usize,
    weights: Vec<f32>,
}

/// Taps for resampling an axis of `from` samples to `to` samples.
///
/// Shrinking (`to < from`): output `o` covers input interval
/// `[o·s, (o+1)·s)`, `s = from/to`; each input pixel `[i, i+1)` weighs its
/// overlap with that interval divided by `s` (area averaging).
/// Enlarging or equal: output centre `(o+0.5)/scale − 0.5` in input pixel
/// coordinates, linear interpolation between the two nearest pixels, edges
/// clamped.
fn axis_taps(from: usize, to: usize) -> Vec<Taps> {
    let s = from as f64 / to as f64;
    (0..to)
        .map(|o| {
            if to < from {
                let lo = o as f64 * s;
                let hi = (o + 1) as f64 * s;
                let first = lo.floor() as usize;
                let last = (hi.ceil() as usize).min(from);
                let weights = (first..last)
                    .map(|i| {
                        let overlap = hi.min((i + 1) as f64) - lo.max(i as f64);
                        (overlap.max(0.0) / s) as f32
                    })
                    .collect();
                Taps {
                    start: first,
                    weights,
                }
            } else {
                let centre = ((o as f64 + 0.5) * s - 0.5).clamp(0.0, (from - 1) as f64);
                let left = (centre.floor() as usize).min(from - 1);
                let frac = centre - left as f64;
                if left + 1 < from && frac > 0.0 {
                    Taps {
                        start: left,
                        weights: vec![(1.0 - frac) as f32, frac as f32],
                    }
                } else {
                    Taps {
                        start: left,
                        weights: vec![1.0],
                    }
                }
            }
        })
        .collect()
}

/// Resizes `frame` to `width`x`height`, keeping its timestamp.
pub fn resize(frame: &Frame, width: u32, height: u32) -> Result<Frame, ResizeError> {
    let (w, h) = (frame.width as usize, frame.height as usize);
    if width == 0 || height == 0 || w == 0 || h == 0 {
        return Err(ResizeError::ZeroSize {
            from_width: frame.width,
            from_height: frame.height,
            width,
            height,
        });
    }
    let expected = w * h * 3;
    if frame.rgb.len() != expected {
        return Err(ResizeError::BadBuffer {
            width: frame.width,
            height: frame.height,
            got: frame.rgb.len(),
            expected,
        });
    }
    if (width, height) == (frame.width, frame.height) {
        return Ok(frame.clone());
    }
    let (ow, oh) = (width as usize, height as usize);

    // Rows first: (h, w, 3) u8 -> (h, ow, 3) f32.
    let x_taps = axis_taps(w, ow);
    let mut rows = vec![0f32; h * ow * 3];
    for y in 0..h {
        let src = &frame.rgb[y * w * 3..(y + 1) * w * 3];
        let dst = &mut rows[y * ow * 3..(y + 1) * ow * 3];
        for (ox, taps) in x_taps.iter().enumerate() {
            let mut acc = [0f32; 3];
            for (k, &wt) in taps.weights.iter().enumerate() {
                let p = &src[(taps.start + k) * 3..(taps.start + k) * 3 + 3];
                acc[0] += wt * f32::from(p[0]);
                acc[1] += wt * f32::from(p[1]);
                acc[2] += wt * f32::from(p[2]);
            }
            dst[ox * 3..ox * 3 + 3].copy_from_slice(&acc);
        }
    }

    // Then columns: (h, ow, 3) f32 -> (oh, ow, 3) u8.
    let y_taps = axis_taps(h, oh);
    let row_len = ow * 3;
    let mut rgb = vec![0u8; oh * row_len];
    let mut acc = vec![0f32; row_len];
    for (oy, taps) in y_taps.iter().enumerate() {
        acc.fill(0.0);
        for (k, &wt) in taps.weights.iter().enumerate() {
            let src = &rows[(taps.start + k) * row_len..(taps.start + k + 1) * row_len];
            for (a, &v) in acc.iter_mut().zip(src) {
                *a += wt * v;
            }
        }
        for (d, &a) in rgb[oy * row_len..(oy + 1) * row_len].iter_mut().zip(&acc) {
            *d = (a + 0.5).clamp(0.0, 255.0) as u8;
        }
    }
    Ok(Frame {
        timestamp: frame.timestamp,
        width,
        height,
        rgb,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grey(w: u32, h: u32, values: &[u8]) -> Frame {
        Frame {
            timestamp: 1.5,
            width: w,
            height: h,
            rgb: values.iter().flat_map(|&v| [v, v, v]).collect(),
        }
    }

    fn values(f: &Frame) -> Vec<u8> {
        f.rgb.chunks(3).map(|p| p[0]).collect()
    }

    #[test]
    fn halving_averages_two_by_two_blocks() {
        #[rustfmt::skip]
        let f = grey(4, 4, &[
            0, 10, 100, 100,
            20, 30, 100, 200,
            1, 1, 7, 7,
            1, 2, 7, 8,
        ]);
        let out = resize(&f, 2, 2).unwrap();
        // (0+10+20+30)/4 = 15, (100+100+100+200)/4 = 125,
        // (1+1+1+2)/4 = 1.25 -> 1, (7+7+7+8)/4 = 7.25 -> 7.
        assert_eq!(values(&out), vec![15, 125, 1, 7]);
        assert_eq!(out.timestamp, 1.5);
    }

    #[test]
    fn shrinking_by_a_non_integer_factor_weighs_partial_pixels() {
        // 3 -> 2: output 0 covers [0, 1.5): pixel 0 fully, pixel 1 half.
        let f = grey(3, 1, &[0, 90, 180]);
        let out = resize(&f, 2, 1).unwrap();
        // (0*1 + 90*0.5)/1.5 = 30; (90*0.5 + 180*1)/1.5 = 150.
        assert_eq!(values(&out), vec![30, 150]);
    }

    #[test]
    fn enlarging_interpolates_linearly() {
        // 2 -> 4: centres at -0.25 (clamped to 0), 0.25, 0.75, 1.25 (clamped to 1).
        let f = grey(2, 1, &[0, 200]);
        let out = resize(&f, 4, 1).unwrap();
        assert_eq!(values(&out), vec![0, 50, 150, 200]);
    }

    #[test]
    fn flat_frames_stay_flat_and_identity_is_exact() {
        let f = grey(7, 5, &[77; 35]);
        for (w, h) in [(3, 2), (14, 10), (1, 1), (7, 5)] {
            let out = resize(&f, w, h).unwrap();
            assert!(values(&out).iter().all(|&v| v == 77), "{w}x{h}");
        }
        let g = grey(2, 2, &[1, 2, 3, 4]);
        assert_eq!(resize(&g, 2, 2).unwrap(), g);
    }

    #[test]
    fn bad_sizes_are_errors() {
        let f = grey(2, 2, &[1, 2, 3, 4]);
        assert!(matches!(
            resize(&f, 0, 2),
            Err(ResizeError::ZeroSize { .. })
        ));
        let mut broken = f.clone();
        broken.rgb.pop();
        assert!(matches!(
            resize(&broken, 1, 1),
            Err(ResizeError::BadBuffer {
                expected: 12,
                got: 11,
                ..
            })
        ));
    }
}

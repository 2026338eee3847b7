//! Rotary tables. Angles are built on the host in f32 exactly as HF does
//! (`position * inv_freq` in f32), then `cos`/`sin` become tensors.
//!
//! * Text, multimodal RoPE (M-RoPE): each of the `head_dim / 2` frequencies
//!   reads the position of one axis (t, h or w). Qwen2.5-VL assigns contiguous
//!   sections `[t | h | w]`; Qwen3-VL interleaves them (`t h w t h w ... t t`).
//! * Vision, 2-D RoPE: the first quarter of the head rotates with the patch
//!   row, the second with the column; the half is repeated for `rotate_half`.

use burn::tensor::{Device, Tensor, TensorData};

use super::config::Arch;
use super::layers::inverse_frequencies;

/// The axis (0 = t, 1 = h, 2 = w) each text frequency takes its position from.
pub fn mrope_axes(arch: Arch, section: [usize; 3]) -> Vec<usize> {
    let half: usize = section.iter().sum();
    match arch {
        Arch::Qwen25Vl => (0..3)
            .flat_map(|axis| std::iter::repeat_n(axis, section[axis]))
            .collect(),
        Arch::Qwen3Vl => (0..half)
            .map(|j| {
                if j % 3 == 1 && j < 3 * section[1] {
                    1
                } else if j % 3 == 2 && j < 3 * section[2] {
                    2
                } else {
                    0
                }
            })
            .collect(),
    }
}

/// `cos`, `sin` of shape `[batch, 1, len, head_dim]` for positions
/// `positions[axis][b][i]` (ready to broadcast over heads).
pub fn text_rotary(
    arch: Arch,
    section: [usize; 3],
    head_dim: usize,
    theta: f64,
    positions: &[Vec<Vec<i64>>; 3],
    device: &Device,
) -> (Tensor<4>, Tensor<4>) {
    let inv = inverse_frequencies(head_dim, theta);
    let axes = mrope_axes(arch, section);
    let batch = positions[0].len();
    let len = positions[0].first().map_or(0, Vec::len);
    let half = head_dim / 2;
    let mut cos = Vec::with_capacity(batch * len * head_dim);
    let mut sin = Vec::with_capacity(batch * len * head_dim);
    for b in 0..batch {
        for i in 0..len {
            let angles: Vec<f32> = (0..half)
                .map(|j| positions[axes[j]][b][i] as f32 * inv[j])
                .collect();
            for _ in 0..2 {
                cos.extend(angles.iter().map(|a| a.cos()));
                sin.extend(angles.iter().map(|a| a.sin()));
            }
        }
    }
    let shape = [batch, 1, len, head_dim];
    (
        Tensor::from_data(TensorData::new(cos, shape), device),
        Tensor::from_data(TensorData::new(sin, shape), device),
    )
}

/// `cos`, `sin` of shape `[patches, 1, head_dim]` for patch coordinates
/// `(row, col)`.
pub fn vision_rotary(
    head_dim: usize,
    theta: f64,
    coords: &[(usize, usize)],
    device: &Device,
) -> (Tensor<3>, Tensor<3>) {
    // Frequencies over head_dim / 2, shared by rows and columns.
    let inv = inverse_frequencies(head_dim / 2, theta);
    let mut cos = Vec::with_capacity(coords.len() * head_dim);
    let mut sin = Vec::with_capacity(coords.len() * head_dim);
    for &(row, col) in coords {
        let angles: Vec<f32> = inv
            .iter()
            .map(|f| row as f32 * f)
            .chain(inv.iter().map(|f| col as f32 * f))
            .collect();
        for _ in 0..2 {
            cos.extend(angles.iter().map(|a| a.cos()));
            sin.extend(angles.iter().map(|a| a.sin()));
        }
    }
    let shape = [coords.len(), 1, head_dim];
    (
        Tensor::from_data(TensorData::new(cos, shape), device),
        Tensor::from_data(TensorData::new(sin, shape), device),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qwen25_sections_are_contiguous() {
        assert_eq!(
            mrope_axes(Arch::Qwen25Vl, [2, 3, 3]),
            vec![0, 0, 1, 1, 1, 2, 2, 2]
        );
    }

    #[test]
    fn qwen3_sections_interleave() {
        // HF: h at 1, 4 (slice(1, 6, 3)); w at 2, 5 (slice(2, 6, 3)); t elsewhere.
        assert_eq!(
            mrope_axes(Arch::Qwen3Vl, [4, 2, 2]),
            vec![0, 1, 2, 0, 1, 2, 0, 0]
        );
        // The real Qwen3-VL layout [24, 20, 20]: 24 t, 20 h, 20 w.
        let axes = mrope_axes(Arch::Qwen3Vl, [24, 20, 20]);
        assert_eq!(axes.iter().filter(|&&a| a == 0).count(), 24);
        assert_eq!(axes.iter().filter(|&&a| a == 1).count(), 20);
    }
}

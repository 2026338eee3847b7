//! Small building blocks shared by the vision tower and the decoder: norms
//! with HF parameter names (`weight`, `bias`), activations and rotary
//! application.

use burn::module::{Module, Param};
use burn::tensor::activation::{gelu, gelu_approximate, silu};
use burn::tensor::{DType, Device, FloatDType, Tensor};

use super::config::Activation;

/// RMSNorm in f32: `x / sqrt(mean(x^2) + eps) * weight` (HF `Qwen2RMSNorm`).
#[derive(Module, Debug)]
pub struct RmsNorm {
    /// `[dim]`
    pub weight: Param<Tensor<1>>,
    pub eps: f64,
}

impl RmsNorm {
    pub fn new(dim: usize, eps: f64, device: &Device) -> Self {
        RmsNorm {
            weight: Param::from_tensor(Tensor::ones([dim], device)),
            eps,
        }
    }

    /// `[..., dim] -> [..., dim]`; statistics in f32 whatever the dtype.
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        let dtype = x.dtype();
        let x = to_f32(x);
        let rms = (x.clone().square().mean_dim(D - 1) + self.eps).sqrt();
        to_dtype(x / rms, dtype) * self.weight.val().unsqueeze()
    }
}

/// LayerNorm with affine weight and bias (torch `nn.LayerNorm`).
#[derive(Module, Debug)]
pub struct LayerNorm {
    /// `[dim]`
    pub weight: Param<Tensor<1>>,
    /// `[dim]`
    pub bias: Param<Tensor<1>>,
    pub eps: f64,
}

impl LayerNorm {
    pub fn new(dim: usize, eps: f64, device: &Device) -> Self {
        LayerNorm {
            weight: Param::from_tensor(Tensor::ones([dim], device)),
            bias: Param::from_tensor(Tensor::zeros([dim], device)),
            eps,
        }
    }

    /// `[..., dim] -> [..., dim]` (biased variance, as torch; statistics
    /// in f32 whatever the dtype).
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        let dtype = x.dtype();
        let x = to_f32(x);
        let mean = x.clone().mean_dim(D - 1);
        let centred = x - mean;
        let var = centred.clone().square().mean_dim(D - 1);
        to_dtype(centred / (var + self.eps).sqrt(), dtype) * self.weight.val().unsqueeze()
            + self.bias.val().unsqueeze()
    }
}

/// The vision tower's norm: RMSNorm in Qwen2.5-VL, LayerNorm in Qwen3-VL.
/// Enum variant names do not appear in weight names (see `weights.rs`).
#[derive(Module, Debug)]
pub enum Norm {
    Rms(RmsNorm),
    Layer(LayerNorm),
}

impl Norm {
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        match self {
            Norm::Rms(n) => n.forward(x),
            Norm::Layer(n) => n.forward(x),
        }
    }
}

pub fn activate<const D: usize>(act: Activation, x: Tensor<D>) -> Tensor<D> {
    match act {
        Activation::Silu => silu(x),
        Activation::Gelu => gelu(x),
        Activation::GeluTanh => gelu_approximate(x),
    }
}

/// `rotate_half`: `[x1, x2] -> [-x2, x1]` on the last dim.
pub fn rotate_half<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    let half = x.dims()[D - 1] / 2;
    let x1 = x.clone().narrow(D - 1, 0, half);
    let x2 = x.narrow(D - 1, half, half);
    Tensor::cat(vec![x2.neg(), x1], D - 1)
}

/// `x * cos + rotate_half(x) * sin`, `cos`/`sin` (f32 tables) broadcast to
/// `x` and cast to its dtype.
pub fn apply_rotary<const D: usize>(x: Tensor<D>, cos: Tensor<D>, sin: Tensor<D>) -> Tensor<D> {
    let dtype = x.dtype();
    x.clone() * to_dtype(cos, dtype) + rotate_half(x) * to_dtype(sin, dtype)
}

/// `x` in f32 (a no-op for f32 tensors).
pub fn to_f32<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    to_dtype(x, DType::F32)
}

/// `x` cast to the float dtype `dtype` (a no-op when it already has it).
pub fn to_dtype<const D: usize>(x: Tensor<D>, dtype: DType) -> Tensor<D> {
    if x.dtype() == dtype {
        x
    } else {
        x.cast(FloatDType::from(dtype))
    }
}

/// Softmax over `dim` computed in f32 (as HF does for attention), returned
/// in `dtype`.
pub fn softmax_f32<const D: usize>(scores: Tensor<D>, dim: usize, dtype: DType) -> Tensor<D> {
    to_dtype(
        burn::tensor::activation::softmax(to_f32(scores), dim),
        dtype,
    )
}

/// `1 / theta^(2i / dim)` for `i < dim / 2`, in f32 like HF.
pub fn inverse_frequencies(dim: usize, theta: f64) -> Vec<f32> {
    (0..dim / 2)
        .map(|i| (1.0 / theta.powf((2 * i) as f64 / dim as f64)) as f32)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::TensorData;

    #[test]
    fn norms_match_hand_values() {
        let device = crate::device::test_device();
        let x = Tensor::<2>::from_data(TensorData::new(vec![3.0f32, 4.0], [1, 2]), &device);
        let rms = RmsNorm::new(2, 0.0, &device).forward(x.clone());
        // rms = sqrt((9 + 16) / 2)
        let r = (12.5f32).sqrt();
        let got = rms.try_into_vec_as::<f32>().unwrap();
        assert!((got[0] - 3.0 / r).abs() < 1e-6 && (got[1] - 4.0 / r).abs() < 1e-6);
        let ln = LayerNorm::new(2, 0.0, &device).forward(x);
        let got = ln.try_into_vec_as::<f32>().unwrap();
        assert!((got[0] + 1.0).abs() < 1e-6 && (got[1] - 1.0).abs() < 1e-6);
    }

    #[test]
    fn rotate_half_swaps_and_negates() {
        let device = crate::device::test_device();
        let x = Tensor::<1>::from_data(TensorData::new(vec![1.0f32, 2.0, 3.0, 4.0], [4]), &device);
        let got = rotate_half(x).try_into_vec_as::<f32>().unwrap();
        assert_eq!(got, vec![-3.0, -4.0, 1.0, 2.0]);
    }
}

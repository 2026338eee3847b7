//! Key/value cache for incremental decoding, kept outside the module so the
//! same parameters serve training (no cache) and rollouts (cache).
//!
//! The cache has a fixed capacity; appending past it is an error, never a
//! silent slide of the window. Each layer's keys and values live in buffers
//! of that capacity, allocated at the first write and written in place
//! (`slice_assign` on a uniquely owned buffer copies only the new tokens):
//! a decode step costs O(new tokens), not a copy of the whole cache as
//! growing it by concatenation would. Attention reads the filled prefix as
//! a strided view, without copying it. The cache also remembers which
//! cached keys are real tokens (left padding of a batch is not), which the
//! attention mask needs.

use burn::tensor::{Device, Tensor, TensorData};

use super::error::{ModelError, Result};

/// Keys and values of one decoder layer, in buffers of the cache's capacity
/// whose first `len` token positions hold the cached tokens (the rest is
/// unused, zeros):
/// - `keys` `[batch, kv_heads, head_dim, capacity]`: stored transposed, so
///   the attention scores `q · Kᵀ` read the filled prefix with unit stride
///   along the tokens (about twice as fast on the CPU backend as a
///   transposed view of `[.., capacity, head_dim]`, and bit-identical);
/// - `values` `[batch, kv_heads, capacity, head_dim]`.
#[derive(Debug, Clone)]
pub struct LayerKv {
    pub keys: Tensor<4>,
    pub values: Tensor<4>,
    /// Filled token positions.
    pub len: usize,
}

impl LayerKv {
    /// The filled prefix: keys `[batch, kv_heads, head_dim, len]`
    /// (transposed) and values `[batch, kv_heads, len, head_dim]`, as views
    /// that share the buffers.
    pub fn filled(&self) -> (Tensor<4>, Tensor<4>) {
        let [b, h, d, _] = self.keys.dims();
        let n = self.len;
        (
            self.keys.clone().slice([0..b, 0..h, 0..d, 0..n]),
            self.values.clone().slice([0..b, 0..h, 0..n, 0..d]),
        )
    }
}

/// One layer's slot in a [`KvCache`], handed to its attention.
pub(crate) struct LayerSlot<'a> {
    kv: &'a mut Option<LayerKv>,
    capacity: usize,
}

impl LayerSlot<'_> {
    /// Writes the step's `keys`/`values` `[batch, kv_heads, new, head_dim]`
    /// after the cached ones and returns all of them: keys transposed,
    /// `[batch, kv_heads, head_dim, cached + new]`, and values `[batch,
    /// kv_heads, cached + new, head_dim]` (views of the cache's buffers).
    ///
    /// The buffers are allocated at the first write. They are written in
    /// place as long as nothing else holds them: the returned views must be
    /// dropped before the next step (attention does), or that step's write
    /// copies the buffer first (still correct, only slower).
    pub(crate) fn append(&mut self, keys: Tensor<4>, values: Tensor<4>) -> (Tensor<4>, Tensor<4>) {
        let [b, h, t, d] = keys.dims();
        let (buf_k, buf_v, start) = match self.kv.take() {
            Some(prev) => (prev.keys, prev.values, prev.len),
            None => {
                let opts = (&keys.device(), keys.dtype());
                (
                    Tensor::zeros([b, h, d, self.capacity], opts),
                    Tensor::zeros([b, h, self.capacity, d], opts),
                    0,
                )
            }
        };
        // `KvCache::begin_step` has checked the capacity.
        let end = start + t;
        let kv = LayerKv {
            keys: buf_k.slice_assign([0..b, 0..h, 0..d, start..end], keys.swap_dims(2, 3)),
            values: buf_v.slice_assign([0..b, 0..h, start..end, 0..d], values),
            len: end,
        };
        let filled = kv.filled();
        *self.kv = Some(kv);
        filled
    }
}

/// The cache of all decoder layers plus the per-row key validity.
#[derive(Debug, Clone)]
pub struct KvCache {
    pub(crate) layers: Vec<Option<LayerKv>>,
    capacity: usize,
    /// `[batch][cached]`: false for padding keys.
    key_valid: Vec<Vec<bool>>,
    /// Per row, the M-RoPE position (same on t, h, w) the next text token takes.
    pub(crate) next_position: Vec<i64>,
}

impl KvCache {
    /// An empty cache for `num_layers` layers holding at most `capacity` tokens per row.
    pub fn new(num_layers: usize, capacity: usize) -> Self {
        KvCache {
            layers: vec![None; num_layers],
            capacity,
            key_valid: Vec::new(),
            next_position: Vec::new(),
        }
    }

    /// Tokens cached per row.
    pub fn len(&self) -> usize {
        self.key_valid.first().map_or(0, Vec::len)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Rows in the cache (0 while empty).
    pub fn batch(&self) -> usize {
        self.key_valid.len()
    }

    /// Reserves room for `incoming` tokens of a `[batch][incoming]` validity
    /// mask; fails (leaving the cache untouched) if they would not fit.
    pub(crate) fn begin_step(&mut self, valid: &[Vec<bool>]) -> Result<()> {
        let incoming = valid.first().map_or(0, Vec::len);
        if self.len() + incoming > self.capacity {
            return Err(ModelError::CacheOverflow {
                cached: self.len(),
                incoming,
                capacity: self.capacity,
            });
        }
        if !self.key_valid.is_empty() && self.key_valid.len() != valid.len() {
            return Err(ModelError::Input(format!(
                "cache holds {} rows, step has {}",
                self.key_valid.len(),
                valid.len()
            )));
        }
        if self.key_valid.is_empty() {
            self.key_valid = vec![Vec::new(); valid.len()];
        }
        for (row, new) in self.key_valid.iter_mut().zip(valid) {
            row.extend_from_slice(new);
        }
        Ok(())
    }

    /// Layer `i`'s slot, for its attention.
    pub(crate) fn layer(&mut self, i: usize) -> LayerSlot<'_> {
        LayerSlot {
            kv: &mut self.layers[i],
            capacity: self.capacity,
        }
    }

    /// Key validity `[batch][cached]` including the current step.
    pub(crate) fn key_valid(&self) -> &[Vec<bool>] {
        &self.key_valid
    }

    /// Repeats every row `times` times (row-major: r0, r0, .., r1, r1, ..):
    /// a prompt prefilled once serves `times` sampled completions.
    pub fn repeat_rows(&self, times: usize, device: &Device) -> KvCache {
        let batch = self.batch();
        let index: Vec<i64> = (0..batch)
            .flat_map(|b| std::iter::repeat_n(b as i64, times))
            .collect();
        let index = Tensor::<1, burn::tensor::Int>::from_data(
            TensorData::new(index, [batch * times]),
            device,
        );
        KvCache {
            layers: self
                .layers
                .iter()
                .map(|layer| {
                    // [batch, ..] → [batch·times, ..] (keys and values alike):
                    // fresh buffers, so every row keeps its own room to grow.
                    layer.as_ref().map(|kv| LayerKv {
                        keys: kv.keys.clone().select(0, index.clone()),
                        values: kv.values.clone().select(0, index.clone()),
                        len: kv.len,
                    })
                })
                .collect(),
            capacity: self.capacity,
            key_valid: self
                .key_valid
                .iter()
                .flat_map(|row| std::iter::repeat_n(row.clone(), times))
                .collect(),
            next_position: self
                .next_position
                .iter()
                .flat_map(|&p| std::iter::repeat_n(p, times))
                .collect(),
        }
    }
}

/// Additive attention mask `[batch, 1, queries, keys]`: query `i` (the
/// `offset + i`-th token of its row) may see key `j` iff `j <= offset + i`
/// and key `j` is a real token. Masked entries get `f32::MIN` rather than
/// `-inf` so a fully masked (padding) query row stays finite.
pub fn causal_mask(key_valid: &[Vec<bool>], queries: usize, device: &Device) -> Tensor<4> {
    let batch = key_valid.len();
    let keys = key_valid.first().map_or(0, Vec::len);
    let offset = keys - queries;
    let mut data = Vec::with_capacity(batch * queries * keys);
    for row in key_valid {
        for i in 0..queries {
            data.extend((0..keys).map(|j| {
                if j <= offset + i && row[j] {
                    0.0f32
                } else {
                    f32::MIN
                }
            }));
        }
    }
    Tensor::from_data(TensorData::new(data, [batch, 1, queries, keys]), device)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overflow_is_an_error_and_leaves_the_cache_alone() {
        let mut cache = KvCache::new(1, 4);
        cache.begin_step(&[vec![true; 3]]).unwrap();
        let err = cache.begin_step(&[vec![true; 2]]).unwrap_err();
        assert!(matches!(
            err,
            ModelError::CacheOverflow {
                cached: 3,
                incoming: 2,
                capacity: 4
            }
        ));
        assert_eq!(cache.len(), 3);
        cache.begin_step(&[vec![true]]).unwrap();
        assert_eq!(cache.len(), 4);
    }

    #[test]
    fn mask_is_causal_and_hides_padding() {
        let device = Device::default();
        let m = causal_mask(&[vec![false, true, true]], 2, &device);
        let v = m.try_into_vec_as::<f32>().unwrap();
        // query 0 is token 1: sees key 1 only; query 1 sees keys 1, 2.
        assert_eq!(v, vec![f32::MIN, 0.0, f32::MIN, f32::MIN, 0.0, 0.0]);
    }
}

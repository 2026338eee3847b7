//! Key/value cache for incremental decoding, kept outside the module so the
//! same parameters serve training (no cache) and rollouts (cache).
//!
//! The cache has a fixed capacity; appending past it is an error, never a
//! silent slide of the window. Each layer's keys and values live in buffers
//! sized for that capacity, allocated at the first write and written in
//! place (`slice_assign` on a uniquely owned buffer copies only the new
//! tokens): a decode step costs O(new tokens), not a copy of the whole cache
//! as growing it by concatenation would. Attention reads the filled part as
//! strided views, without copying it.
//!
//! [`KvCache::repeat_rows`] shares instead of copying: the G rows made from
//! one prefilled row keep a single copy of its keys/values (the prompt, for
//! a GRPO group) and get buffers of their own only for the tokens they add.
//! Attention then scores the G rows' queries against the shared keys in one
//! matmul (`[G·rep, head_dim] × [head_dim, prompt]` per K/V head instead of G
//! matmuls of `rep` rows), so the prompt's keys and values are read once per
//! group per step rather than G times.
//!
//! The cache also remembers which cached keys are real tokens (left padding
//! of a batch is not), which the attention mask needs.

use burn::tensor::{Device, Tensor, TensorData};

use super::error::{ModelError, Result};

/// Keys and values of one decoder layer. Token order, for the attention
/// mask and positions, is the shared tokens (if any) then the row's own.
///
/// The row's own tokens live in buffers with room for the rest of the
/// cache's capacity, whose first `len` token positions are filled (the rest
/// is unused, zeros):
/// - `keys` `[batch, kv_heads, head_dim, room]`: stored transposed, so the
///   attention scores `q · Kᵀ` read them with unit stride along the tokens
///   (about twice as fast on the CPU backend as a transposed view of
///   `[.., room, head_dim]`, and bit-identical);
/// - `values` `[batch, kv_heads, room, head_dim]`.
#[derive(Debug, Clone)]
pub struct LayerKv {
    pub keys: Tensor<4>,
    pub values: Tensor<4>,
    /// Filled token positions of `keys`/`values`.
    pub len: usize,
    /// Tokens every `group` consecutive rows share, cached before their own
    /// (set by [`KvCache::repeat_rows`]).
    pub shared: Option<SharedKv>,
}

/// Keys/values shared by groups of consecutive rows: row `r` of the cache
/// sees row `r / group` of these before its own tokens.
#[derive(Debug, Clone)]
pub struct SharedKv {
    /// `[batch / group, kv_heads, head_dim, shared]` (transposed).
    pub keys: Tensor<4>,
    /// `[batch / group, kv_heads, shared, head_dim]`.
    pub values: Tensor<4>,
    pub group: usize,
}

impl SharedKv {
    /// Shared tokens per row.
    pub fn len(&self) -> usize {
        self.keys.dims()[3]
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What one attention call attends to: the shared keys/values, if any,
/// then the rows' own (views of the cache's buffers, or the step's own
/// keys/values without a cache).
#[derive(Debug, Clone)]
pub struct StepKv {
    pub shared: Option<SharedKv>,
    /// `[batch, kv_heads, head_dim, own]` (transposed).
    pub keys: Tensor<4>,
    /// `[batch, kv_heads, own, head_dim]`.
    pub values: Tensor<4>,
}

impl LayerKv {
    /// Everything cached, as views that share the buffers: the shared part
    /// and the filled part of the row's own buffers.
    pub fn filled(&self) -> StepKv {
        let [b, h, d, _] = self.keys.dims();
        let n = self.len;
        StepKv {
            shared: self.shared.clone(),
            keys: self.keys.clone().slice([0..b, 0..h, 0..d, 0..n]),
            values: self.values.clone().slice([0..b, 0..h, 0..n, 0..d]),
        }
    }

    /// Tokens cached per row, shared ones included.
    pub fn tokens(&self) -> usize {
        self.len + self.shared.as_ref().map_or(0, SharedKv::len)
    }
}

/// One layer's slot in a [`KvCache`], handed to its attention.
pub(crate) struct LayerSlot<'a> {
    kv: &'a mut Option<LayerKv>,
    capacity: usize,
}

impl LayerSlot<'_> {
    /// Writes the step's `keys`/`values` `[batch, kv_heads, new, head_dim]`
    /// after the cached ones and returns everything to attend to.
    ///
    /// The buffers are allocated at the first write. They are written in
    /// place as long as nothing else holds them: the returned views must be
    /// dropped before the next step (attention does), or that step's write
    /// copies the buffer first (still correct, only slower).
    pub(crate) fn append(&mut self, keys: Tensor<4>, values: Tensor<4>) -> StepKv {
        let [b, h, t, d] = keys.dims();
        let prev = match self.kv.take() {
            Some(prev) => prev,
            None => {
                let opts = (&keys.device(), keys.dtype());
                LayerKv {
                    keys: Tensor::zeros([b, h, d, self.capacity], opts),
                    values: Tensor::zeros([b, h, self.capacity, d], opts),
                    len: 0,
                    shared: None,
                }
            }
        };
        // `KvCache::begin_step` has checked the capacity.
        let (start, end) = (prev.len, prev.len + t);
        let kv = LayerKv {
            keys: prev
                .keys
                .slice_assign([0..b, 0..h, 0..d, start..end], keys.swap_dims(2, 3)),
            values: prev
                .values
                .slice_assign([0..b, 0..h, start..end, 0..d], values),
            len: end,
            shared: prev.shared,
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
    ///
    /// Nothing cached is copied `times` times: what the rows hold so far
    /// becomes keys/values the `times` copies share (a row already sharing
    /// with a group stays with it, its own tokens are copied), and each new
    /// row gets buffers for the tokens it will add (`capacity - len()`).
    pub fn repeat_rows(&self, times: usize, device: &Device) -> KvCache {
        let batch = self.batch();
        let index: Vec<i64> = (0..batch)
            .flat_map(|b| std::iter::repeat_n(b as i64, times))
            .collect();
        let index = Tensor::<1, burn::tensor::Int>::from_data(
            TensorData::new(index, [batch * times]),
            device,
        );
        let room = self.capacity - self.len();
        KvCache {
            layers: self
                .layers
                .iter()
                .map(|layer| {
                    layer.as_ref().map(|kv| match &kv.shared {
                        // [batch, ..] → shared by groups of `times` rows; own
                        // buffers [batch·times, kv_heads, .., room] start empty.
                        None => {
                            let cached = kv.filled();
                            let [_, h, d, _] = kv.keys.dims();
                            let opts = (&kv.keys.device(), kv.keys.dtype());
                            LayerKv {
                                keys: Tensor::zeros([batch * times, h, d, room], opts),
                                values: Tensor::zeros([batch * times, h, room, d], opts),
                                len: 0,
                                shared: Some(SharedKv {
                                    keys: cached.keys,
                                    values: cached.values,
                                    group: times,
                                }),
                            }
                        }
                        // Groups of `group` rows → groups of `group·times`;
                        // own buffers [batch, ..] → [batch·times, ..] (copies).
                        Some(shared) => LayerKv {
                            keys: kv.keys.clone().select(0, index.clone()),
                            values: kv.values.clone().select(0, index.clone()),
                            len: kv.len,
                            shared: Some(SharedKv {
                                group: shared.group * times,
                                ..shared.clone()
                            }),
                        },
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
        let device = crate::device::test_device();
        let m = causal_mask(&[vec![false, true, true]], 2, &device);
        let v = m.try_into_vec_as::<f32>().unwrap();
        // query 0 is token 1: sees key 1 only; query 1 sees keys 1, 2.
        assert_eq!(v, vec![f32::MIN, 0.0, f32::MIN, f32::MIN, 0.0, 0.0]);
    }
}

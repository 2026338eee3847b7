//! The rollout engine's KV cache (`src/rollout.rs`, `model/cache.rs`).
//!
//! Generation prefills the P prompts into a cache of capacity `L + M`
//! (prompt length plus `max_new_tokens`), then `KvCache::repeat_rows(G)`
//! turns each prompt row into keys/values its G rows share, and gives the
//! P·G rows buffers of their own for the `M` tokens they add. The prompt
//! buffers keep their full capacity (the shared keys are views of them),
//! so what is stored is `P·(L + M) + P·G·M` positions per layer, not the
//! `P·G·(L + M)` of a cache copied per rollout.

use super::activations::kv_token_bytes;
use crate::model::config::TextConfig;

/// The rollout cache's size, as stored and as it would be unshared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RolloutCache {
    /// `layers·(P·(L + M) + P·G·M)·2·kv_heads·head_dim·a`.
    pub stored: u64,
    /// `layers·P·G·(L + M)·2·kv_heads·head_dim·a`: the prompt copied per
    /// rollout (what sharing saves).
    pub unshared: u64,
}

/// The cache of `prompts` prompts of `prompt_len` tokens, `group` rollouts
/// each, `max_new` new tokens, in a dtype of `a` bytes.
///
/// # Shapes
///
/// Keys `[rows, kv_heads, head_dim, capacity]` and values `[rows,
/// kv_heads, capacity, head_dim]` per layer: the P prompt rows at capacity
/// `L + M`, the P·G own buffers at `M`.
pub fn rollout_cache(
    t: &TextConfig,
    a: u64,
    prompts: u64,
    group: u64,
    prompt_len: u64,
    max_new: u64,
) -> RolloutCache {
    let per_position = t.num_hidden_layers as u64 * kv_token_bytes(t, a);
    RolloutCache {
        stored: per_position * (prompts * (prompt_len + max_new) + prompts * group * max_new),
        unshared: per_position * prompts * group * (prompt_len + max_new),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_prompt_is_stored_once_per_group() {
        // Tiny model: 4 layers × 2 KV heads × 32, f32: 2048 bytes per
        // position. 2 prompts of 100 tokens, G = 8, M = 20.
        let t = crate::default_model::tiny_config().unwrap().text;
        let c = rollout_cache(&t, 4, 2, 8, 100, 20);
        assert_eq!(c.stored, 2048 * (2 * 120 + 16 * 20));
        assert_eq!(c.unshared, 2048 * 16 * 120);
    }
}

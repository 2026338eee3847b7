//! Process-wide settings made once, first thing in `main` (the CLI's and
//! the benchmarks'), while the process has a single thread.
//!
//! - Burn's own default device is pinned to the host
//!   ([`crate::device::pin_burn_default`]).
//! - glibc's allocator keeps freed memory for reuse, when asked
//!   ([`keep_freed_memory`], `VGRPO_MALLOC=keep`).

/// Both settings; see the module docs.
pub fn init() {
    crate::device::pin_burn_default();
    keep_freed_memory();
}

/// With `VGRPO_MALLOC=keep`, makes glibc's `malloc` serve every block from
/// its heap and never hand freed memory back to the kernel. Off by default.
///
/// Why one would: by default every block over 32 MiB is its own `mmap`,
/// unmapped when freed. A training step allocates and frees the same large
/// tensors over and over (logits, activations, gradients and AdamW
/// temporaries — the 1.2 GB embedding-sized ones at real width), so each
/// one is a fresh mapping the kernel must fault in and zero, page by page:
/// in a profile of one real-width GRPO step on libtorch, page clearing and
/// faults were about a third of the samples.
///
/// Why it is off: the heap then fragments. Measured on that step (`cargo
/// bench --bench grpo_step -- --model real --only vgrpo`, 2-core Xeon): on
/// tch-cpu the update took 22.8 s → 7.8 s but the peak RSS rose 18.8 →
/// 21.5 GiB; on flex the process grew past the machine's 24 GB and was
/// killed. Worth it only with memory to spare, on libtorch.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        if std::env::var(MALLOC_ENV).as_deref() != Ok("keep") {
            return;
        }
        // SAFETY: mallopt only changes allocator parameters (under glibc's
        // own arena locks).
        unsafe {
            // No block gets its own mapping…
            libc::mallopt(libc::M_MMAP_MAX, 0);
            // …and the heap's top is never trimmed back to the kernel
            // (-1: "disables trimming completely", mallopt(3)).
            libc::mallopt(libc::M_TRIM_THRESHOLD, -1);
        }
    }
}

/// `VGRPO_MALLOC=keep` turns [`keep_freed_memory`] on.
pub const MALLOC_ENV: &str = "VGRPO_MALLOC";

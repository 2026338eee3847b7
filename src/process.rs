//! Process-wide settings made once, first thing in `main` (the CLI's and
//! the benchmarks'), while the process has a single thread.
//!
//! - Burn's own default device is pinned to the host
//!   ([`crate::device::pin_burn_default`]).
//! - glibc's allocator is tuned for a training step's large tensors
//!   ([`tune_malloc`], `VGRPO_MALLOC`): by default its large blocks are
//!   backed by huge pages.

use std::ffi::{OsStr, OsString};

/// Both settings; see the module docs.
pub fn init() {
    crate::device::pin_burn_default();
    tune_malloc();
}

/// `VGRPO_MALLOC` names the allocator setting ([`MallocMode`]).
pub const MALLOC_ENV: &str = "VGRPO_MALLOC";

/// How glibc's `malloc` treats the large blocks a training step allocates
/// and frees over and over (logits, activations, gradients and AdamW
/// temporaries — at real width the 1.2 GB embedding-sized ones).
///
/// glibc gives every block over 32 MiB its own `mmap` and unmaps it when
/// freed, so each new one is faulted in by the kernel page by page: in a
/// profile of a real-width GRPO step on libtorch, page clearing and faults
/// were about a third of the samples. Measured on that step (`cargo bench
/// --bench grpo_step -- --model real --only vgrpo`, `tch-cpu`, 2-core AMD
/// EPYC, 23 GiB): update 38.8 s with `system`, 24.6 s with `huge`, at the
/// same peak RSS (19.4 GiB); `keep` was killed for memory there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MallocMode {
    /// The default: glibc's `glibc.malloc.hugetlb=1` tunable, so it asks
    /// for transparent huge pages (`madvise(MADV_HUGEPAGE)`) on what it
    /// maps: a 2 MiB page is one fault where 4 KiB pages were 512. Memory
    /// still goes back to the kernel when freed.
    Huge,
    /// `mallopt(M_MMAP_MAX, 0)` and `mallopt(M_TRIM_THRESHOLD, -1)`: every
    /// block from the heap, and freed memory is never handed back. Fastest
    /// where it fits (the update above 22.8 → 7.8 s on a 2-core Xeon) but the
    /// heap fragments: peak RSS 18.8 → 21.5 GiB there, and on `flex` the
    /// process grew past 24 GB and was killed.
    Keep,
    /// glibc's defaults, untouched (e.g. under a debugger or valgrind).
    System,
}

impl MallocMode {
    /// Reads [`MALLOC_ENV`]: unset is [`MallocMode::Huge`].
    pub fn from_env() -> Result<MallocMode, String> {
        match std::env::var(MALLOC_ENV).as_deref() {
            Err(_) | Ok("huge") => Ok(MallocMode::Huge),
            Ok("keep") => Ok(MallocMode::Keep),
            Ok("system") => Ok(MallocMode::System),
            Ok(other) => Err(format!(
                "{MALLOC_ENV}={other}: expected huge (the default), keep or system"
            )),
        }
    }
}

/// Applies [`MallocMode::from_env`]; an unknown value stops the process
/// with exit code 2 and the rule.
pub fn tune_malloc() {
    match MallocMode::from_env() {
        Ok(MallocMode::Huge) => advise_huge_pages(),
        Ok(MallocMode::Keep) => keep_freed_memory(),
        Ok(MallocMode::System) => {}
        Err(rule) => {
            eprintln!("error: {rule}");
            std::process::exit(2);
        }
    }
}

/// The glibc tunable behind [`MallocMode::Huge`].
const HUGETLB_TUNABLE: &str = "glibc.malloc.hugetlb";

/// [`MallocMode::Huge`]. glibc reads its tunables (`GLIBC_TUNABLES`) once,
/// when the process starts, and offers no `mallopt` for this one, so the
/// process restarts itself once — `exec` of its own executable with the same
/// arguments, keeping its pid — with the tunable added. Nothing happens when
/// the tunable is already set (by the user, or by that restart), when the
/// kernel's transparent huge pages are not in `madvise` mode (`always`
/// already gives them, `never` cannot), or off glibc; if the `exec` fails the
/// process goes on with glibc's defaults.
fn advise_huge_pages() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        use std::os::unix::process::CommandExt;

        let tunables = std::env::var_os("GLIBC_TUNABLES").unwrap_or_default();
        if has_tunable(&tunables, HUGETLB_TUNABLE) || !thp_in_madvise_mode() {
            return;
        }
        let mut args = std::env::args_os();
        let arg0 = args.next().unwrap_or_default();
        let err = std::process::Command::new("/proc/self/exe")
            .arg0(arg0)
            .args(args)
            .env("GLIBC_TUNABLES", with_tunable(tunables, HUGETLB_TUNABLE))
            .exec();
        // Logging is not set up yet this early, so straight to stderr.
        eprintln!(
            "warning: {MALLOC_ENV}=huge: restarting with {HUGETLB_TUNABLE}=1 failed ({err}); \
             going on with glibc's defaults"
        );
    }
}

/// Whether the colon-separated `GLIBC_TUNABLES` value sets `name`.
fn has_tunable(tunables: &OsStr, name: &str) -> bool {
    tunables
        .to_string_lossy()
        .split(':')
        .any(|t| t.split('=').next() == Some(name))
}

/// `tunables` with `name=1` appended.
fn with_tunable(mut tunables: OsString, name: &str) -> OsString {
    if !tunables.is_empty() {
        tunables.push(":");
    }
    tunables.push(format!("{name}=1"));
    tunables
}

/// Whether `/sys/kernel/mm/transparent_hugepage/enabled` reads
/// `always [madvise] never`.
fn thp_in_madvise_mode() -> bool {
    std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled")
        .is_ok_and(|mode| mode.contains("[madvise]"))
}

/// [`MallocMode::Keep`].
fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters (under glibc's own
    // arena locks).
    unsafe {
        // No block gets its own mapping…
        libc::mallopt(libc::M_MMAP_MAX, 0);
        // …and the heap's top is never trimmed back to the kernel (-1:
        // "disables trimming completely", mallopt(3)).
        libc::mallopt(libc::M_TRIM_THRESHOLD, -1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tunable_is_found_among_others_and_appended_once() {
        let none = OsString::new();
        assert!(!has_tunable(&none, HUGETLB_TUNABLE));
        let added = with_tunable(none, HUGETLB_TUNABLE);
        assert_eq!(added, "glibc.malloc.hugetlb=1");
        assert!(has_tunable(&added, HUGETLB_TUNABLE));

        let other = OsString::from("glibc.malloc.arena_max=2");
        assert!(!has_tunable(&other, HUGETLB_TUNABLE));
        let both = with_tunable(other, HUGETLB_TUNABLE);
        assert_eq!(both, "glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1");
        assert!(has_tunable(&both, HUGETLB_TUNABLE));
        // The user's own value counts as set, whatever it is; a longer name
        // that merely starts the same does not.
        assert!(has_tunable(
            OsStr::new("glibc.malloc.hugetlb=0"),
            HUGETLB_TUNABLE
        ));
        assert!(!has_tunable(
            OsStr::new("glibc.malloc.hugetlbx=1"),
            HUGETLB_TUNABLE
        ));
    }
}

//! Allocator tuning done once at process start (glibc only; nothing elsewhere).

/// Makes glibc serve every block of 1 MiB or more with its own mapping, returned to the system
/// when freed. By default glibc raises that threshold to the size of each large block freed, so
/// after one 16 MiB packet later big buffers come from the heap and stay resident (measured with
/// `scripts/bench.sh memory`: 122 MB resident after 20 MiB queries stopped, 10 MB with this).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
pub fn give_big_blocks_back_to_the_os() {
    // SAFETY: `mallopt` only changes an allocator parameter; it is called first thing in `main`,
    // before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1024 * 1024);
    }
}

/// Nothing to tune outside glibc.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn give_big_blocks_back_to_the_os() {}

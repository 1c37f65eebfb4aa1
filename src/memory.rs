//! Giving freed heap back to the system. glibc keeps what a burst freed (a start-up replay,
//! a large rendering), so an idle daemon would otherwise hold the peak of its last burst.
//! Touches no data of its own.

/// Return free heap memory to the system (a no-op where the allocator cannot).
pub fn release() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free memory to the system; it touches no live block.
    unsafe {
        libc::malloc_trim(0);
    }
}

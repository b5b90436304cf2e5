use std::process::ExitCode;

fn main() -> ExitCode {
    keep_freed_memory();
    materializer::cli::main()
}

/// Decoding and the query engine allocate and free many buffers of a few
/// megabytes. glibc serves those with mmap and gives them back on free, so
/// every chunk faults its pages in again (seconds of system time per million
/// events); keeping them in the heap lets the next chunk reuse them. Two
/// arenas, rather than one per thread, keep what the heap holds bounded.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn keep_freed_memory() {
    // SAFETY: mallopt only sets allocator parameters; no thread runs yet.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 128 << 20);
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn keep_freed_memory() {}

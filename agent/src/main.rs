//! The `tailrace` binary: parse the command line and hand over to the library.

fn main() -> std::process::ExitCode {
    tune_allocator();
    tailrace_agent::cli::main()
}

/// glibc's allocator, left to its defaults, gives the pages of every large
/// freed buffer back to the kernel: a PutRecords call's request body (base64
/// in JSON, up to ~1.4 MB) and its records (up to 1 MiB each) are freed after
/// each call, and the next call faults fresh pages in again. In raw mode that
/// was most of the agent's system time (BENCHMARKS.md, "Raw mode's system
/// time"). Buffers under 4 MiB now come from the heap, and up to 8 MiB of
/// freed memory per arena is kept for the next call.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn tune_allocator() {
    const MMAP_THRESHOLD: libc::c_int = 4 << 20;
    const TRIM_THRESHOLD: libc::c_int = 8 << 20;
    // SAFETY: mallopt only sets allocator parameters; it is called before any
    // other thread exists. A refusal (return 0) leaves glibc's defaults.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
        libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD);
    }
}

/// Other allocators: their defaults are kept.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn tune_allocator() {}

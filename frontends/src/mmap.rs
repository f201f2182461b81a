//! Memory-mapped model files.

/// Let go of the pages of a hashed weight, so importing a large model does not keep all of it
/// resident (the kernel still caches the file; a later read faults the pages back in).
pub(crate) fn release_pages(map: &memmap2::Mmap, bytes: &[u8]) {
    let base = map.as_ptr() as usize;
    let start = bytes.as_ptr() as usize;
    if bytes.len() < 1 << 16 || start < base || start + bytes.len() > base + map.len() {
        return;
    }
    #[cfg(unix)]
    // SAFETY: `map` is a read-only shared file mapping: MADV_DONTNEED only drops this process's
    // page-table entries, and the next access reads the same bytes from the file again, so no
    // reference ever sees different data.
    unsafe {
        let _ = map.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, start - base, bytes.len());
    }
}

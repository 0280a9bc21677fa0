//! A worker that dies must leave the JACK graph at once: release the page tables
//! of libjack's shared segments so that the kernel tears the process down in about
//! a millisecond instead of ten.
//!
//! Why: every jackd2 client maps the server's 105 MB graph segment
//! (`/dev/shm/jack-<uid>-<n>`) and, on a real-time server, `mlock`s all of it, so
//! its page tables map all ~27 000 pages. A SIGKILLed process unmaps them before it
//! closes its sockets (`exit_mm` comes before `exit_files` in the kernel's
//! `do_exit`), and jackd2 only learns that a client is gone when its socket closes.
//! Measured here (2 cores, kernel 6.18): a process with such a mapping takes
//! 7-13 ms to exit (locked: 13 ms), one that has released it 1.0-1.5 ms. Meanwhile
//! jackd2 keeps triggering the dead client and every client downstream of it waits
//! for it: at 256 frames the recorder, a mixer, everything after the dead module
//! skips 2-3 periods, which is a click in modules that were never touched.
//!
//! After `munlock` and `MADV_DONTNEED` the segment's contents stay where they are
//! (it is shared memory, kept resident and locked by jackd itself on a real-time
//! server); only this process's page-table entries go. The few pages a worker
//! really touches (its ports' buffers, the graph's activation counters) come back
//! as minor faults on their first touch, a microsecond each, and then stay.
//!
//! ```no_run
//! // Right after jack_activate: libjack has mapped and locked its segments.
//! let released = modsynth_worker::quick_exit::release_jack_pages();
//! println!("released {released} bytes of libjack's page tables");
//! ```

/// Where jackd2's shared segments are mapped from (`/dev/shm/jack-0-0`,
/// `/dev/shm/jack_db-...` for the metadata database is left alone: small).
const JACK_SEGMENT_PREFIX: &str = "/dev/shm/jack-";

/// Unlocks and drops this process's page-table entries for every mapping of a
/// jackd2 shared segment; returns how many bytes were released. Errors are
/// logged and skipped: a worker that keeps its pages only exits slower.
pub fn release_jack_pages() -> usize {
    let maps = match std::fs::read_to_string("/proc/self/maps") {
        Ok(m) => m,
        Err(e) => {
            tracing::debug!("cannot read /proc/self/maps: {e}");
            return 0;
        }
    };
    let mut released = 0;
    for (start, end) in jack_mappings(&maps) {
        let len = end - start;
        // SAFETY: `start..end` is a whole mapping of this process (read from
        // /proc/self/maps just now; libjack does not unmap its segments while the
        // client is open). munlock only changes whether pages are locked, and
        // MADV_DONTNEED on a MAP_SHARED file mapping drops this process's
        // page-table entries without touching the shared contents: the next access
        // faults the same page back in. No Rust reference into it is invalidated.
        let ok = unsafe {
            let addr = start as *mut libc::c_void;
            libc::munlock(addr, len);
            libc::madvise(addr, len, libc::MADV_DONTNEED) == 0
        };
        if ok {
            released += len;
        } else {
            tracing::debug!(
                "madvise on libjack's segment at {start:#x}: {}",
                std::io::Error::last_os_error()
            );
        }
    }
    released
}

/// The `(start, end)` address ranges of jackd2 shared segments in `maps` (the
/// text of `/proc/self/maps`).
fn jack_mappings(maps: &str) -> Vec<(usize, usize)> {
    maps.lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let range = fields.next()?;
            let path = fields.nth(4)?;
            if !path.starts_with(JACK_SEGMENT_PREFIX) {
                return None;
            }
            let (start, end) = range.split_once('-')?;
            let start = usize::from_str_radix(start, 16).ok()?;
            let end = usize::from_str_radix(end, 16).ok()?;
            (end > start).then_some((start, end))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_servers_segments_are_picked_from_the_maps() {
        let maps = "\
7f0000000000-7f0006900000 rw-s 00000000 00:19 12 /dev/shm/jack-0-0
7f0006900000-7f0006a00000 rw-s 00000000 00:19 13 /dev/shm/jack_db-0/__db.001
7f0007000000-7f0007001000 rw-s 00000000 00:19 14 /dev/shm/modsynth-vco1-state
55d000000000-55d000100000 r-xp 00000000 08:01 99 /usr/bin/modsynth-worker
7f0008000000-7f0008021000 rw-p 00000000 00:00 0 
";
        assert_eq!(jack_mappings(maps), vec![(0x7f0000000000, 0x7f0006900000)]);
    }

    #[test]
    fn garbage_lines_are_skipped() {
        assert!(jack_mappings("nonsense\nzz-yy rw-s 0 0 0 /dev/shm/jack-0-0\n").is_empty());
    }
}

//! A standby's watch over its primary: the thread that takes the module over the
//! moment the primary dies, and otherwise sleeps.
//!
//! The thread blocks in `poll` on two descriptors: the primary's pidfd (readable when
//! it dies: the fast path of failover, ~0.5 ms, well inside a period) and an eventfd
//! that [`Watch::stop`] (or dropping the [`Watch`]) writes. Besides those it wakes
//! only every [`HANG_CHECK`] to tell a hung primary (SIGSTOPped, looping) from a live
//! one. It used to poll with a 5 ms timeout to look at its stop flag and the hang
//! check: ~200 wake-ups a second per standby at SCHED_FIFO, 4.4 % of a core for 16
//! standbys (measured 2026-12-01); now it wakes 4 times a second.
//!
//! The owner word of the state segment is the fence: the takeover is a
//! compare-and-swap that succeeds only if the primary still owns the module.
//!
//! ```no_run
//! # fn demo(stats: std::sync::Arc<modsynth_worker::engine::Stats>) {
//! use modsynth_worker::standby::Watch;
//! // Standby of the module in segment "/modsynth-vco1-state" (type index 0),
//! // whose primary is process 4711.
//! if let Some(watch) = Watch::start(4711, "/modsynth-vco1-state".into(), 0, stats, || {
//!     println!("promoted");
//! }) {
//!     // The module was freed: the thread wakes at once and leaves.
//!     watch.stop();
//! }
//! # }
//! ```

use crate::engine::Stats;
use crate::shared_state::SharedState;
use rustix::event::{eventfd, EventfdFlags};
use rustix::fd::OwnedFd;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// How often the watcher looks for a hung primary while nothing else wakes it.
/// A hang is taken over 1-2 checks after the primary's last publication (250-500 ms);
/// with a supervisor, it kills a primary that published nothing for its own
/// `HANG_PERIODS` (32 periods, 170 ms at 256 frames) first, and the pidfd wakes the
/// standby at once. 4 wake-ups a second cost nothing measurable.
pub const HANG_CHECK: Duration = Duration::from_millis(250);

/// Periods this standby's own callback must run, between two hang checks that saw
/// the same publication, before it takes a primary for hung (16 x 256 frames =
/// 85 ms at 48 kHz; a check spans ~47). A server that stalls stalls the standby's
/// periods too, so a stalled graph never looks like a hung primary. Not fewer: when
/// a client dies, jackd2 stalls parts of its graph for 2-3 cycles (measured), and a
/// standby counting 4 took a healthy new primary for hung.
pub const HANG_PERIODS: u64 = 16;

/// A running watch over one primary; stops its thread when stopped or dropped.
pub struct Watch {
    /// The eventfd the thread polls besides the pidfd; writing it stops the thread.
    stop: Arc<OwnedFd>,
}

impl Watch {
    /// Starts watching primary `primary_pid` of the module whose state is in
    /// `segment` (module type `type_index`). `stats` are this worker's engine
    /// counters (its periods, for the hang check). `promoted` runs on the watcher
    /// thread once this worker has taken the module over.
    ///
    /// Failures to watch (no eventfd, no thread, no pidfd, no mapping) are logged:
    /// the supervisor's sentinel still sees the primary die and hands the module to
    /// this standby with `TakeNames`, a few milliseconds later.
    pub fn start(
        primary_pid: u32,
        segment: String,
        type_index: u32,
        stats: Arc<Stats>,
        promoted: impl FnOnce() + Send + 'static,
    ) -> Option<Watch> {
        let stop = match eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK) {
            Ok(fd) => Arc::new(fd),
            Err(e) => {
                tracing::error!("cannot watch primary {primary_pid}: no eventfd: {e}");
                return None;
            }
        };
        let thread_stop = stop.clone();
        let spawned = std::thread::Builder::new()
            .name("standby-watch".into())
            .spawn(move || {
                watch(
                    primary_pid,
                    &segment,
                    type_index,
                    &stats,
                    &thread_stop,
                    promoted,
                )
            });
        if let Err(e) = spawned {
            tracing::error!("cannot watch primary {primary_pid}: no thread: {e}");
            return None;
        }
        Some(Watch { stop })
    }

    /// Stops the thread (it wakes at once and leaves).
    pub fn stop(self) {
        drop(self);
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        // Non-blocking: the counter only overflows after 2^64 - 2 writes.
        let _ = rustix::io::write(&*self.stop, &1u64.to_ne_bytes());
    }
}

/// What woke the watcher.
enum Wake {
    PrimaryDied,
    Stopped,
    Timeout,
}

/// Blocks until the primary dies (or `stop` is written, or `within` passes).
fn wait(pidfd: &OwnedFd, stop: &OwnedFd, within: Duration) -> rustix::io::Result<Wake> {
    use rustix::event::{poll, PollFd, PollFlags};
    let timeout = rustix::time::Timespec {
        tv_sec: within.as_secs() as i64,
        tv_nsec: within.subsec_nanos() as _,
    };
    loop {
        let mut fds = [
            PollFd::new(pidfd, PollFlags::IN),
            PollFd::new(stop, PollFlags::IN),
        ];
        match poll(&mut fds, Some(&timeout)) {
            Ok(0) => return Ok(Wake::Timeout),
            // Death first: a standby stopped in the same instant its primary died
            // still takes the module (the supervisor would hand it over anyway).
            Ok(_) if !fds[0].revents().is_empty() => return Ok(Wake::PrimaryDied),
            Ok(_) => return Ok(Wake::Stopped),
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e),
        }
    }
}

fn watch<F: FnOnce()>(
    primary_pid: u32,
    segment: &str,
    type_index: u32,
    stats: &Stats,
    stop: &OwnedFd,
    promoted: F,
) {
    let Some(pid) = rustix::process::Pid::from_raw(primary_pid as i32) else {
        return;
    };
    let pidfd = match rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()) {
        Ok(fd) => fd,
        Err(e) => {
            tracing::error!("cannot watch primary {primary_pid}: {e}");
            return;
        }
    };
    // Our own mapping of the state: the engine's is on the real-time thread.
    let shared = match SharedState::open(segment, type_index) {
        Ok(s) => s,
        Err(e) => {
            // A module freed right after its creation unlinks the segment before
            // this thread gets to it; the free reaches us after the rest of the
            // assignment (a loaded machine took over 200 ms).
            if matches!(
                wait(&pidfd, stop, Duration::from_secs(1)),
                Ok(Wake::Stopped)
            ) {
                tracing::debug!("standby freed before it mapped {segment}");
            } else {
                tracing::error!("standby cannot map {segment}: {e}");
            }
            return;
        }
    };
    raise_priority();
    let me = std::process::id() as u64;
    let take_over = |promoted: F| {
        if shared.take_over(primary_pid as u64, me) {
            promoted();
        }
    };
    // Hang detection: this standby's own periods keep counting while a hung
    // (SIGSTOPped, looping) primary stops publishing.
    let mut last_published = shared.published();
    let mut cycles_at_publish = stats.cycles.load(Ordering::Relaxed);
    loop {
        match wait(&pidfd, stop, HANG_CHECK) {
            Ok(Wake::PrimaryDied) => return take_over(promoted),
            Ok(Wake::Stopped) => return,
            Ok(Wake::Timeout) => {
                let published = shared.published();
                let cycles = stats.cycles.load(Ordering::Relaxed);
                if published != last_published {
                    last_published = published;
                    cycles_at_publish = cycles;
                } else if cycles.saturating_sub(cycles_at_publish) >= HANG_PERIODS
                    && shared.owner() == primary_pid as u64
                {
                    tracing::warn!(
                        "primary {primary_pid} published nothing for {} periods: taking over",
                        cycles - cycles_at_publish
                    );
                    return take_over(promoted);
                }
            }
            Err(e) => {
                tracing::error!("watching primary {primary_pid}: {e}");
                return;
            }
        }
    }
}

/// Makes the calling thread preempt ordinary threads (SCHED_FIFO, priority 1) where
/// allowed: the standby's watcher must run the moment its primary dies, also on a
/// loaded machine (seen: a watcher woken 4 periods late on a busy 2-core box). It
/// sleeps until something happens and then does one compare-and-swap, so it costs
/// nothing. Without the privilege (no rtprio limit) it stays an ordinary thread.
fn raise_priority() {
    let param = libc::sched_param { sched_priority: 1 };
    // SAFETY: pthread_self() is the calling thread, and `param` is a valid
    // sched_param that outlives the call; the call only changes its scheduling.
    let result =
        unsafe { libc::pthread_setschedparam(libc::pthread_self(), libc::SCHED_FIFO, &param) };
    if result != 0 {
        tracing::debug!("standby watcher stays SCHED_OTHER (error {result})");
    }
}

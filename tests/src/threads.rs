//! What each thread of a process costs: wake-ups and CPU time, from `/proc`.
//!
//! A wake-up is a voluntary context switch (`voluntary_ctxt_switches` in
//! `/proc/<pid>/task/<tid>/status`): the thread blocked and something woke it. CPU
//! time is the first field of `/proc/<pid>/task/<tid>/schedstat` (nanoseconds on a
//! CPU). Two snapshots some time apart give rates per thread.
//!
//! ```no_run
//! use modsynth_tests::threads::{rates, snapshot};
//! use std::time::Duration;
//! let before = snapshot(std::process::id());
//! std::thread::sleep(Duration::from_secs(2));
//! for t in rates(&before, &snapshot(std::process::id()), Duration::from_secs(2)) {
//!     println!("{} ({}): {:.0} wake-ups/s, {:.2} % of a core", t.name, t.tid, t.wakeups_per_s, t.cpu_pct);
//! }
//! ```

use std::collections::BTreeMap;
use std::time::Duration;

/// One thread's counters at one instant.
#[derive(Debug, Clone)]
pub struct ThreadCounters {
    /// Its name (`comm`: what the thread named itself, else the process name).
    pub name: String,
    /// Voluntary context switches so far: times it blocked and was woken.
    pub voluntary: u64,
    /// Nanoseconds it has run on a CPU so far.
    pub cpu_ns: u64,
}

/// One thread's rates between two snapshots.
#[derive(Debug, Clone)]
pub struct ThreadRate {
    /// Its thread id.
    pub tid: u32,
    /// Its name at the second snapshot.
    pub name: String,
    /// Voluntary context switches per second.
    pub wakeups_per_s: f64,
    /// CPU time, % of one core.
    pub cpu_pct: f64,
}

/// The counters of every thread of process `pid`, by thread id (empty if the process
/// is gone; threads that end while being read are left out).
pub fn snapshot(pid: u32) -> BTreeMap<u32, ThreadCounters> {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return BTreeMap::new();
    };
    dir.flatten()
        .filter_map(|e| {
            let tid = e.file_name().to_str()?.parse::<u32>().ok()?;
            let path = e.path();
            let status = std::fs::read_to_string(path.join("status")).ok()?;
            let voluntary = status
                .lines()
                .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))?
                .trim()
                .parse()
                .ok()?;
            let cpu_ns = std::fs::read_to_string(path.join("schedstat"))
                .ok()?
                .split_whitespace()
                .next()?
                .parse()
                .ok()?;
            let name = std::fs::read_to_string(path.join("comm"))
                .ok()?
                .trim()
                .to_string();
            Some((
                tid,
                ThreadCounters {
                    name,
                    voluntary,
                    cpu_ns,
                },
            ))
        })
        .collect()
}

/// Rates of the threads present in both snapshots, taken `over` apart, busiest
/// waker first.
pub fn rates(
    before: &BTreeMap<u32, ThreadCounters>,
    after: &BTreeMap<u32, ThreadCounters>,
    over: Duration,
) -> Vec<ThreadRate> {
    let secs = over.as_secs_f64().max(1e-9);
    let mut rates: Vec<ThreadRate> = after
        .iter()
        .filter_map(|(&tid, a)| {
            let b = before.get(&tid)?;
            Some(ThreadRate {
                tid,
                name: a.name.clone(),
                wakeups_per_s: a.voluntary.saturating_sub(b.voluntary) as f64 / secs,
                cpu_pct: 100.0 * a.cpu_ns.saturating_sub(b.cpu_ns) as f64 / 1e9 / secs,
            })
        })
        .collect();
    rates.sort_by(|a, b| b.wakeups_per_s.total_cmp(&a.wakeups_per_s));
    rates
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_that_sleeps_in_steps_is_counted_at_its_rate() {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let ticker = std::thread::Builder::new()
            .name("ticker".into())
            .spawn(move || {
                while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(10));
                }
            })
            .unwrap();
        let pid = std::process::id();
        let before = snapshot(pid);
        let over = Duration::from_millis(500);
        std::thread::sleep(over);
        let after = snapshot(pid);
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        ticker.join().unwrap();
        let all = rates(&before, &after, over);
        let ticker = all.iter().find(|t| t.name == "ticker").expect("the ticker");
        // 100 sleeps a second at most; a loaded machine makes them longer, not more.
        assert!((20.0..=110.0).contains(&ticker.wakeups_per_s), "{ticker:?}");
    }
}

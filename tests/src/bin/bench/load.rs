//! What a group of processes costs, read from `/proc`: CPU time, memory, and the
//! xruns the JACK server reported while they ran.
//!
//! CPU is the time the processes' threads spent on a CPU over [`WINDOW`] (the
//! scheduler's nanosecond count, `/proc/<pid>/task/*/schedstat`; clock ticks of
//! `/proc/<pid>/stat`, 10 ms each, where that is missing), in % of one core (so a
//! 2-core machine tops out at 200 %); xruns are counted by a capture client of the
//! same server over the same window, and so are the wake-ups and CPU time of each
//! thread ([`modsynth_tests::threads`]).

use modsynth_tests::capture::Capture;
use modsynth_tests::jack_server::JackServer;
use modsynth_tests::threads::{rates, snapshot, ThreadRate};
use std::time::{Duration, Instant};

/// How long CPU and xruns are measured for.
pub const WINDOW: Duration = Duration::from_secs(3);

/// How long the xrun-counting capture client plays before a window starts.
pub const CAPTURE_SETTLE: Duration = Duration::from_millis(500);

/// The fields of `/proc/<pid>/stat` after the command name (which may hold spaces
/// and parentheses): `fields[0]` is the state, `fields[1]` the parent pid, ...
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    Some(
        stat.rsplit(')')
            .next()?
            .split_whitespace()
            .map(str::to_string)
            .collect(),
    )
}

/// Seconds a process has spent on a CPU so far, all its live threads together (0
/// if it is gone).
pub fn cpu_seconds(pid: u32) -> f64 {
    schedstat_seconds(pid).unwrap_or_else(|| stat_seconds(pid).unwrap_or(0.0))
}

/// From the scheduler's statistics: nanoseconds on a CPU, per thread.
fn schedstat_seconds(pid: u32) -> Option<f64> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    let mut ns = 0u64;
    for task in tasks.flatten() {
        let path = task.path().join("schedstat");
        // A thread that just exited has no file any more: it no longer counts.
        let Ok(stat) = std::fs::read_to_string(path) else {
            continue;
        };
        ns += stat.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(ns as f64 * 1e-9)
}

/// From `/proc/<pid>/stat`: user + system clock ticks.
fn stat_seconds(pid: u32) -> Option<f64> {
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .unwrap_or(100) as f64;
    let f = stat_fields(pid)?;
    let ticks = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / hz)
}

/// Pids whose parent is `parent`.
pub fn children(parent: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return vec![];
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| stat_fields(pid).and_then(|f| f.get(1)?.parse::<u32>().ok()) == Some(parent))
        .collect()
}

/// `pid` and all its descendants (for `modsynthd`: the supervisor and its workers).
pub fn family(pid: u32) -> Vec<u32> {
    let mut all = vec![pid];
    let mut i = 0;
    while i < all.len() {
        let more = children(all[i]);
        all.extend(more);
        i += 1;
    }
    all
}

/// Resident memory of one process, in KiB.
#[derive(Clone, Copy, Debug)]
pub struct Memory {
    /// All of it (RSS).
    pub rss: u64,
    /// The part in the JACK server's shared segments (`/dev/shm/jack-*`): libjack
    /// maps the server's graph segment into every client and mlocks it.
    pub rss_jack_shm: u64,
    /// Private_Clean + Private_Dirty: what only this process uses.
    pub private: u64,
}

/// The resident memory of process `pid` (None once it is gone).
pub fn memory_kib(pid: u32) -> Option<Memory> {
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).ok()?;
    let kib = |line: &str| {
        line.split_whitespace()
            .nth(1)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let mut memory = Memory {
        rss: 0,
        rss_jack_shm: 0,
        private: 0,
    };
    let mut in_jack_shm = false;
    for line in smaps.lines() {
        // Mapping headers start with the address range; field lines with a name.
        if line
            .split_whitespace()
            .next()
            .is_some_and(|a| a.contains('-') && !a.ends_with(':'))
        {
            in_jack_shm = line
                .split_whitespace()
                .nth(5)
                .is_some_and(|path| path.starts_with("/dev/shm/jack-"));
        } else if line.starts_with("Rss:") {
            memory.rss += kib(line);
            if in_jack_shm {
                memory.rss_jack_shm += kib(line);
            }
        } else if line.starts_with("Private_Clean:") || line.starts_with("Private_Dirty:") {
            memory.private += kib(line);
        }
    }
    Some(memory)
}

/// CPU and xruns of a group of processes over one [`WINDOW`].
pub struct Load {
    /// User + system time of the processes, in % of one core.
    pub cpu_pct: f64,
    /// xruns the server reported during the window.
    pub xruns: u64,
    /// Each process's threads over the window (pid, busiest waker first).
    pub threads: Vec<(u32, Vec<ThreadRate>)>,
}

impl Load {
    /// Measures `pids` (a process that exits meanwhile counts until it is gone).
    pub fn measure(server: &JackServer, pids: &[u32]) -> Result<Load, String> {
        Load::measure_for(server, pids, WINDOW)
    }

    /// [`Load::measure`] over `window`. The capture client that counts the xruns
    /// opens [`CAPTURE_SETTLE`] before the window: its own open and activation are a
    /// graph change, which is not what is measured.
    pub fn measure_for(
        server: &JackServer,
        pids: &[u32],
        window: Duration,
    ) -> Result<Load, String> {
        let capture = Capture::start(server, 1)?;
        std::thread::sleep(CAPTURE_SETTLE);
        let xruns0 = capture.xruns();
        let threads0: Vec<_> = pids.iter().map(|&p| snapshot(p)).collect();
        let t0: f64 = pids.iter().map(|&p| cpu_seconds(p)).sum();
        let start = Instant::now();
        std::thread::sleep(window);
        let t1: f64 = pids.iter().map(|&p| cpu_seconds(p)).sum();
        let elapsed = start.elapsed();
        let threads = pids
            .iter()
            .zip(threads0)
            .map(|(&p, before)| (p, rates(&before, &snapshot(p), elapsed)))
            .collect();
        Ok(Load {
            cpu_pct: 100.0 * (t1 - t0).max(0.0) / elapsed.as_secs_f64(),
            xruns: capture.xruns() - xruns0,
            threads,
        })
    }
}

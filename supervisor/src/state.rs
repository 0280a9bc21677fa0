//! The instance's state dir: the lock that makes it this supervisor's, the
//! shared-memory registry kept in step with the core, the leak scan, `metrics.json`,
//! and the clean-up of what an earlier run left (at start) and of everything (at a
//! clean exit).
//!
//! ```text
//! <state dir>/supervisor.pid   the instance lock (flock), holding our pid
//! <state dir>/registry.json    every module's state segment and every worker
//! <state dir>/metrics.json     the /status report plus shm_leaks, at most once a second
//! <state dir>/saved.json       what a supervisor adopting the workers needs and no
//!                              worker knows: wanted connections, modules without standby
//! <state dir>/workers/         one card per worker: how a new supervisor reaches it
//! ```
//!
//! The registry and metrics files are written by a [`Writer`] thread: the core loop
//! hands it what should be on disk and goes on, so an fsync never delays a reply or a
//! failover. The writer coalesces: of several views queued it writes the latest.

use crate::core::{RegisteredRole, RegistryView};
use modsynth_shm::{
    self as shm, Allocation, InstanceLock, Registry, ScanReport, Segment, ShmError, Warning,
};
use std::collections::HashSet;
use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, TryRecvError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Name of the metrics file in the state dir.
pub const METRICS_FILE: &str = "metrics.json";

/// Name of the file with [`Saved`](crate::core::Saved) in the state dir.
pub const SAVED_FILE: &str = "saved.json";

/// How often the writer compares `/dev/shm` with the registry (the scan lists
/// `/dev/shm` and reads `/proc`, so not more often).
pub const SCAN_INTERVAL: Duration = Duration::from_secs(3);

/// A segment counts as leaked only if two scans this far apart both find it leaked:
/// a module being created or failed over can look leaked for a moment, while the
/// registry on disk is one view behind the core.
const LEAK_RECHECK: Duration = Duration::from_millis(500);

/// How long start-up waits for an instance lock held by a process that is not a
/// live supervisor (`modsynth shm gc` holds it for a moment while it works).
const LOCK_WAIT: Duration = Duration::from_secs(2);

/// The locked state dir of the running instance.
pub struct StateDir {
    dir: PathBuf,
    instance: String,
    lock: InstanceLock,
}

/// What [`StateDir::open_registry`] found and did.
pub struct Opened {
    /// The registry, emptied: nothing of an earlier run is left in it.
    pub registry: Registry,
    /// Why the registry started empty, if it did (missing or corrupt file).
    pub warning: Option<Warning>,
    /// Segments of an earlier run that were unlinked.
    pub removed: Vec<String>,
}

impl StateDir {
    /// Takes the instance lock in `dir` (creating it, 0700). `explicit`: the user gave
    /// `--state-dir`, which the refusal then names instead of the instance.
    pub fn lock(instance: &str, dir: &Path, explicit: bool) -> Result<StateDir, String> {
        let deadline = Instant::now() + LOCK_WAIT;
        loop {
            match InstanceLock::acquire(dir) {
                Ok(lock) => {
                    return Ok(StateDir {
                        dir: dir.to_path_buf(),
                        instance: instance.to_string(),
                        lock,
                    })
                }
                Err(ShmError::InstanceRunning { pid, .. }) => {
                    // A live pid in the file: a supervisor runs. Otherwise it may be
                    // `modsynth shm gc` cleaning up after a dead one: wait a little.
                    if pid.is_some_and(shm::pid_alive) || Instant::now() >= deadline {
                        let by = pid.map_or(String::new(), |p| format!(" (pid {p})"));
                        return Err(if explicit {
                            format!(
                                "state dir {} is in use by a running modsynthd{by}; pick another --state-dir",
                                dir.display()
                            )
                        } else {
                            format!(
                                "instance '{instance}' is already running{by}; pick another --name"
                            )
                        });
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(e) => return Err(e.to_string()),
            }
        }
    }

    /// The state dir.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Removes temporary files (`.<file>.tmp-<pid>`) that supervisors killed in the
    /// middle of an atomic write left; ours has written none yet.
    pub fn remove_stale_temp_files(&self) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') && name.contains(".tmp-") {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }

    /// Modules the last supervisor had on record (`registry.json`), by id, with
    /// their state segments; empty if there is no readable registry.
    pub fn registered_modules(&self) -> Vec<(String, String)> {
        let Ok(registry) = Registry::load(&self.dir) else {
            return Vec::new();
        };
        registry
            .allocations()
            .iter()
            .map(|a| {
                let id = a.id.strip_suffix(".state").unwrap_or(&a.id);
                (id.to_string(), a.segment.clone())
            })
            .collect()
    }

    /// How many workers with a card in `workers/` are alive.
    fn live_workers(&self) -> usize {
        let cards = self.dir.join(modsynth_model::protocol::WORKER_CARDS_DIR);
        let Ok(entries) = std::fs::read_dir(cards) else {
            return 0;
        };
        entries
            .flatten()
            .filter_map(|e| std::fs::read_to_string(e.path()).ok())
            .filter_map(|json| {
                serde_json::from_str::<modsynth_model::protocol::WorkerCard>(&json).ok()
            })
            .filter(|card| shm::pid_alive(card.pid))
            .count()
    }

    /// The dir of the workers' cards (`workers/`, made 0700 if missing).
    pub fn cards_dir(&self) -> Result<PathBuf, String> {
        let dir = self.dir.join(modsynth_model::protocol::WORKER_CARDS_DIR);
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .or_else(|e| match e.kind() {
                std::io::ErrorKind::AlreadyExists => Ok(()),
                _ => Err(e),
            })
            .map_err(|e| format!("cannot make {}: {e}", dir.display()))?;
        Ok(dir)
    }

    /// What the last supervisor saved for this one (empty if nothing or unreadable).
    pub fn read_saved(&self) -> crate::core::Saved {
        std::fs::read_to_string(self.dir.join(SAVED_FILE))
            .ok()
            .and_then(|json| serde_json::from_str(&json).ok())
            .unwrap_or_default()
    }

    /// The counters the last supervisor wrote into `metrics.json`, if any.
    pub fn read_counters(&self) -> Option<modsynth_protocol::status::Counters> {
        let json = std::fs::read_to_string(self.dir.join(METRICS_FILE)).ok()?;
        let report: modsynth_protocol::status::StatusReport = serde_json::from_str(&json).ok()?;
        Some(report.counters)
    }

    /// Opens the registry and rebuilds it from a scan of `/dev/shm`. We hold the lock
    /// and play no module yet but the adopted ones, whose segments are `keep`: every
    /// other segment of this instance is a leftover of an earlier run that died:
    /// each is adopted (so it is on record while this runs), then unlinked, and the
    /// registry is emptied (stale workers included).
    pub fn open_registry(&self, keep: &HashSet<String>) -> Result<Opened, String> {
        let (mut registry, warning) = Registry::open(&self.dir).map_err(|e| e.to_string())?;
        let report = self.scan(&registry).map_err(|e| e.to_string())?;
        if let Err(e) = modsynth_shm::adopt(&mut registry, &report) {
            tracing::warn!("{e}");
        }
        let mut removed = Vec::new();
        let mut kept = Vec::new();
        for entry in report.entries.iter().filter(|e| e.size.is_some()) {
            if keep.contains(&entry.name) {
                kept.push(entry.name.clone());
                continue;
            }
            match Segment::unlink_if_ours(&entry.name) {
                Ok(()) | Err(ShmError::NotFound { .. }) => removed.push(entry.name.clone()),
                Err(e) => {
                    tracing::warn!("{e}");
                    kept.push(entry.name.clone());
                }
            }
        }
        // What could not be unlinked stays on record; everything else goes.
        let still: Vec<Allocation> = registry
            .allocations()
            .iter()
            .filter(|a| kept.contains(&a.segment))
            .cloned()
            .collect();
        registry
            .replace(still, Vec::new())
            .map_err(|e| e.to_string())?;
        Ok(Opened {
            registry,
            warning,
            removed,
        })
    }

    fn scan(&self, registry: &Registry) -> Result<ScanReport, ShmError> {
        shm::scan(&self.instance, registry)
    }

    /// After a clean stop: empties the registry, unlinks every segment of the
    /// instance still in `/dev/shm`, removes `registry.json`, `metrics.json` and the
    /// lock file, then the dir. `registry`: the writer's (`None` if it was lost: the
    /// file is opened again). Returns a note if the dir had to be kept (it holds
    /// something else, such as a `registry.json.corrupt-*` file).
    ///
    /// If workers still run (a live pid on a card in `workers/`: this supervisor
    /// failed to start after taking them back, or some did not stop), nothing is
    /// removed but the lock: they play on, and the next start takes them back.
    pub fn close(self, registry: Option<Registry>) -> Option<String> {
        let alive = self.live_workers();
        if alive > 0 {
            return Some(format!(
                "{alive} worker(s) still play: state dir {} kept; start modsynthd again to take them back",
                self.dir.display()
            ));
        }
        let registry = match registry {
            Some(r) => Some(r),
            None => Registry::open(&self.dir).ok().map(|(r, _)| r),
        };
        if let Some(mut registry) = registry {
            if let Err(e) = registry.replace(Vec::new(), Vec::new()) {
                tracing::warn!("{e}");
            }
            match self.scan(&registry) {
                Ok(report) => {
                    let mut unlinked = 0;
                    for entry in report.entries.iter().filter(|e| e.size.is_some()) {
                        match Segment::unlink_if_ours(&entry.name) {
                            Ok(()) => unlinked += 1,
                            Err(ShmError::NotFound { .. }) => {}
                            Err(e) => tracing::warn!("{e}"),
                        }
                    }
                    if unlinked > 0 {
                        tracing::info!("unlinked {unlinked} segment(s) left at exit");
                    }
                }
                Err(e) => tracing::warn!("{e}"),
            }
        }
        let pid = std::process::id();
        for file in [
            shm::REGISTRY_FILE.to_string(),
            METRICS_FILE.to_string(),
            SAVED_FILE.to_string(),
            format!(".{}.tmp-{pid}", shm::REGISTRY_FILE),
            format!(".{METRICS_FILE}.tmp-{pid}"),
            format!(".{SAVED_FILE}.tmp-{pid}"),
        ] {
            let _ = std::fs::remove_file(self.dir.join(file));
        }
        // Every worker has stopped: cards still there are of workers killed earlier.
        let cards = self.dir.join(modsynth_model::protocol::WORKER_CARDS_DIR);
        if let Ok(entries) = std::fs::read_dir(&cards) {
            for e in entries.flatten() {
                let _ = std::fs::remove_file(e.path());
            }
        }
        let _ = std::fs::remove_dir(&cards);
        // The lock file last, while still holding the lock: a supervisor starting now
        // either fails on our lock or makes a fresh dir of its own.
        let _ = std::fs::remove_file(self.lock.path());
        drop(self.lock);
        match std::fs::remove_dir(&self.dir) {
            Ok(()) => None,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(_) => {
                let left: Vec<String> = std::fs::read_dir(&self.dir)
                    .map(|d| {
                        d.flatten()
                            .map(|e| e.file_name().to_string_lossy().into_owned())
                            .collect()
                    })
                    .unwrap_or_default();
                Some(format!(
                    "state dir {} kept: it holds {}",
                    self.dir.display(),
                    left.join(", ")
                ))
            }
        }
    }
}

/// What the core loop hands the writer.
enum ToWriter {
    View(RegistryView),
    Metrics(String),
    Saved(String),
}

/// The thread that writes `registry.json` and `metrics.json` and runs the leak scan.
pub struct Writer {
    tx: Option<Sender<ToWriter>>,
    thread: Option<JoinHandle<Registry>>,
    leaks: Arc<AtomicU64>,
}

impl Writer {
    /// Starts the writer; it owns `registry` until [`Writer::stop`].
    pub fn spawn(registry: Registry, state: &StateDir) -> Result<Writer, String> {
        let (tx, rx) = mpsc::channel();
        let leaks = Arc::new(AtomicU64::new(0));
        let job = Job {
            registry,
            instance: state.instance.clone(),
            dir: state.dir.clone(),
            leaks: leaks.clone(),
            failing: false,
        };
        let thread = std::thread::Builder::new()
            .name("registry-writer".into())
            .spawn(move || job.run(rx))
            .map_err(|e| format!("cannot start the registry writer: {e}"))?;
        Ok(Writer {
            tx: Some(tx),
            thread: Some(thread),
            leaks,
        })
    }

    /// Queues a new view of what the registry should hold.
    pub fn view(&self, view: RegistryView) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(ToWriter::View(view));
        }
    }

    /// Queues the contents of `metrics.json`.
    pub fn metrics(&self, json: String) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(ToWriter::Metrics(json));
        }
    }

    /// Queues the contents of `saved.json`.
    pub fn saved(&self, json: String) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(ToWriter::Saved(json));
        }
    }

    /// Leaked segments the last scans found (a segment counts once two scans in a
    /// row found it leaked).
    pub fn shm_leaks(&self) -> u64 {
        self.leaks.load(Ordering::Relaxed)
    }

    /// Writes what is queued, stops the thread and returns the registry (`None` if
    /// the thread died).
    pub fn stop(mut self) -> Option<Registry> {
        self.tx = None;
        self.thread.take()?.join().ok()
    }
}

struct Job {
    registry: Registry,
    instance: String,
    dir: PathBuf,
    leaks: Arc<AtomicU64>,
    /// A write failed and was reported: further failures are logged quietly.
    failing: bool,
}

impl Job {
    fn run(mut self, rx: Receiver<ToWriter>) -> Registry {
        let mut next_scan = Instant::now() + SCAN_INTERVAL;
        // Leaked in the last scan, waiting for a second one to confirm them.
        let mut suspects: HashSet<String> = HashSet::new();
        let mut open = true;
        while open {
            let (mut view, mut metrics, mut saved) = (None, None, None);
            let mut take = |msg| match msg {
                ToWriter::View(v) => view = Some(v),
                ToWriter::Metrics(m) => metrics = Some(m),
                ToWriter::Saved(m) => saved = Some(m),
            };
            match rx.recv_timeout(next_scan.saturating_duration_since(Instant::now())) {
                Ok(msg) => take(msg),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => open = false,
            }
            // Whatever else is queued: only the latest of each counts.
            loop {
                match rx.try_recv() {
                    Ok(msg) => take(msg),
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => {
                        open = false;
                        break;
                    }
                }
            }
            if let Some(view) = view {
                let result = self.write_view(&view);
                self.report(result.map_err(|e| e.to_string()));
            }
            if let Some(json) = saved {
                let result = write_file(&self.dir, SAVED_FILE, json.as_bytes());
                self.report(result.map_err(|e| format!("cannot write {SAVED_FILE}: {e}")));
            }
            if let Some(json) = metrics {
                let result = write_file(&self.dir, METRICS_FILE, json.as_bytes());
                self.report(result.map_err(|e| format!("cannot write {METRICS_FILE}: {e}")));
            }
            if open && Instant::now() >= next_scan {
                let unconfirmed = self.scan_for_leaks(&mut suspects);
                next_scan = Instant::now()
                    + if unconfirmed {
                        LEAK_RECHECK
                    } else {
                        SCAN_INTERVAL
                    };
            }
        }
        self.registry
    }

    fn report(&mut self, result: Result<(), String>) {
        match result {
            Ok(()) => self.failing = false,
            Err(e) if !self.failing => {
                self.failing = true;
                tracing::warn!("{e}");
            }
            Err(e) => tracing::debug!("{e}"),
        }
    }

    /// Maps the core's view onto the registry and writes it once.
    fn write_view(&mut self, view: &RegistryView) -> Result<(), ShmError> {
        let allocations = view
            .segments
            .iter()
            .map(|s| {
                let id = format!("{}.state", s.module);
                let size = std::fs::metadata(shm_path(&s.segment)).map_or(0, |m| m.len());
                // A module without a worker (being replaced) is the supervisor's.
                let owner = match s.owner_pid {
                    0 => "supervisor".to_string(),
                    pid => format!("worker:{pid}"),
                };
                let mut a = Allocation::new(&id, &s.segment, size, "state_snapshot", &owner);
                if let Some(old) = self
                    .registry
                    .allocations()
                    .iter()
                    .find(|old| old.id == id && old.segment == s.segment)
                {
                    a.created = old.created.clone();
                }
                a
            })
            .collect();
        let workers = view
            .workers
            .iter()
            .map(|w| shm::Worker {
                pid: w.pid,
                jack_client: w.jack_client.clone(),
                role: match w.role {
                    RegisteredRole::Spare => shm::Role::Spare,
                    RegisteredRole::Primary => shm::Role::Primary,
                    RegisteredRole::Standby => shm::Role::Standby,
                },
                module: w.module.clone(),
            })
            .collect();
        self.registry.replace(allocations, workers)
    }

    /// Scans `/dev/shm`, brings registered sizes up to date (a segment is made by its
    /// worker after the module is on record) and stores the leak count. Returns
    /// whether some leaks still wait for a second scan to confirm them.
    fn scan_for_leaks(&mut self, suspects: &mut HashSet<String>) -> bool {
        let report = match shm::scan(&self.instance, &self.registry) {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!("leak scan: {e}");
                return false;
            }
        };
        let mut allocations = self.registry.allocations().to_vec();
        let mut resized = false;
        for a in &mut allocations {
            let found = report
                .entries
                .iter()
                .find(|e| e.allocation.as_deref() == Some(a.id.as_str()))
                .and_then(|e| e.size);
            if let Some(size) = found.filter(|&s| s != a.size) {
                a.size = size;
                resized = true;
            }
        }
        if resized {
            let workers = self.registry.workers().to_vec();
            let result = self.registry.replace(allocations, workers);
            self.report(result.map_err(|e| e.to_string()));
        }
        let leaked: HashSet<String> = report
            .entries
            .iter()
            .filter(|e| e.status.is_leak())
            .map(|e| e.name.clone())
            .collect();
        let confirmed: Vec<&String> = leaked.intersection(suspects).collect();
        let count = confirmed.len() as u64;
        if count > 0 && count != self.leaks.load(Ordering::Relaxed) {
            tracing::warn!(
                "{count} leaked shared-memory segment(s) of '{}' (see `modsynth shm ls --name {}`)",
                self.instance,
                self.instance
            );
        }
        let unconfirmed = leaked.len() as u64 > count;
        *suspects = leaked;
        self.leaks.store(count, Ordering::Relaxed);
        if self.registry.stats().leaked_count != count {
            let result = self.registry.set_leaked_count(count);
            self.report(result.map_err(|e| e.to_string()));
        }
        unconfirmed
    }
}

/// `/dev/shm/<name without its leading slash>`.
fn shm_path(segment: &str) -> PathBuf {
    Path::new("/dev/shm").join(segment.trim_start_matches('/'))
}

/// Writes `<dir>/<name>` atomically (temp file, then rename), mode 0600. No fsync:
/// metrics are rewritten every second and lose nothing by a crash.
fn write_file(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let written = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .and_then(|mut f| f.write_all(bytes))
        .and_then(|()| std::fs::rename(&tmp, dir.join(name)));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::{RegisteredSegment, RegisteredWorker};

    struct TempDir(PathBuf);

    impl TempDir {
        fn new(tag: &str) -> TempDir {
            let dir = std::env::temp_dir().join(format!("msd-state-{tag}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            TempDir(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn view(module: &str, segment: &str, pid: u32) -> RegistryView {
        RegistryView {
            segments: vec![RegisteredSegment {
                module: module.into(),
                segment: segment.into(),
                owner_pid: pid,
            }],
            workers: vec![RegisteredWorker {
                pid,
                jack_client: "x-w00".into(),
                role: RegisteredRole::Primary,
                module: Some(module.into()),
            }],
        }
    }

    #[test]
    fn start_removes_an_earlier_runs_segments_and_close_removes_everything() {
        let instance = format!("msdstate{}", std::process::id());
        let tmp = TempDir::new("start");
        let dir = tmp.0.join(&instance);
        let old = format!("/{instance}-old-state");
        drop(Segment::create(&old, 64).unwrap());
        let state = StateDir::lock(&instance, &dir, false).unwrap();
        // A second supervisor of the same instance is refused, naming the first.
        let err = StateDir::lock(&instance, &dir, false).err().unwrap();
        assert_eq!(
            err,
            format!(
                "instance '{instance}' is already running (pid {}); pick another --name",
                std::process::id()
            )
        );
        let opened = state.open_registry(&HashSet::new()).unwrap();
        assert_eq!(opened.removed, vec![old.clone()]);
        assert!(matches!(opened.warning, Some(Warning::Missing { .. })));
        assert!(Segment::open(&old).is_err());

        let writer = Writer::spawn(opened.registry, &state).unwrap();
        let seg = format!("/{instance}-vco1-state");
        drop(Segment::create(&seg, 128).unwrap());
        // Views queued faster than they are written: the last one wins.
        writer.view(view("gone", &format!("/{instance}-gone-state"), 1));
        writer.view(view("vco1", &seg, std::process::id()));
        writer.metrics("{\"a\":1}".into());
        let registry = writer.stop().unwrap();
        let on_disk = Registry::load(&dir).unwrap();
        assert_eq!(on_disk.allocations(), registry.allocations());
        let a = &on_disk.allocations()[0];
        assert_eq!(
            (a.id.as_str(), a.size, a.kind.as_str()),
            ("vco1.state", 128, "state_snapshot")
        );
        assert_eq!(a.owner, format!("worker:{}", std::process::id()));
        assert_eq!(on_disk.workers()[0].role, shm::Role::Primary);
        assert_eq!(
            std::fs::read_to_string(dir.join(METRICS_FILE)).unwrap(),
            "{\"a\":1}"
        );

        assert_eq!(state.close(Some(registry)), None);
        assert!(Segment::open(&seg).is_err(), "close unlinks what is left");
        assert!(!dir.exists());
    }

    #[test]
    fn a_corrupt_registry_is_kept_and_so_is_the_dir() {
        let instance = format!("msdcorrupt{}", std::process::id());
        let tmp = TempDir::new("corrupt");
        let dir = tmp.0.join(&instance);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(shm::REGISTRY_FILE), b"{ garbage").unwrap();
        let state = StateDir::lock(&instance, &dir, true).unwrap();
        let opened = state.open_registry(&HashSet::new()).unwrap();
        let Some(Warning::Corrupt {
            kept_at: Some(kept),
            ..
        }) = opened.warning
        else {
            panic!("{:?}", opened.warning)
        };
        let note = state.close(Some(opened.registry)).unwrap();
        assert!(note.contains("registry.json.corrupt-"), "{note}");
        assert!(kept.exists());
        let left: Vec<_> = std::fs::read_dir(&dir).unwrap().flatten().collect();
        assert_eq!(left.len(), 1, "only the corrupt file stays");
    }
}

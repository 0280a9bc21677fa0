//! The leak scan (`/dev/shm` against the registry and live pids) and the garbage
//! collection of instances whose supervisor is gone.
//!
//! **How gc knows an instance is gone.** Every running supervisor holds an
//! [`InstanceLock`](crate::InstanceLock): an exclusive `flock` on
//! `<base>/<instance>/supervisor.pid`. The kernel releases it when the process dies,
//! however it dies, and a recycled pid cannot hold it. So [`gc`] walks the state dirs
//! under `<base>`, and an instance whose lock file exists and can be locked is gone;
//! [`gc`] keeps the lock while it unlinks that instance's segments, so a supervisor
//! starting meanwhile waits for a clean slate (it gets
//! [`ShmError::InstanceRunning`](crate::ShmError::InstanceRunning) and retries).
//! A state dir without a lock file is left alone (nothing proves it dead), and so are
//! `/dev/shm` entries of instances without a state dir: their names alone do not
//! prove they are modsynth's.
//!
//! Instance names may contain `-`, so `/a-b-x-state` may belong to instance `a` or
//! `a-b`. [`gc`] gives each segment to the longest instance name it knows that
//! matches; [`scan`] knows only one instance and lists everything under its prefix.

use crate::instance::{try_lock, LOCK_FILE};
use crate::registry::rfc3339_utc;
use crate::registry::REGISTRY_FILE;
use crate::{Allocation, Registry, Segment, ShmError};
use std::path::Path;
use std::time::SystemTime;

const SHM_DIR: &str = "/dev/shm";

/// What the scan found for one segment.
///
/// ```
/// use modsynth_shm::SegmentStatus;
/// assert!(SegmentStatus::Unregistered.is_leak());
/// assert!(SegmentStatus::DeadOwner { pid: 1 }.is_leak());
/// assert!(!SegmentStatus::Missing.is_leak());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SegmentStatus {
    /// In `/dev/shm` and in the registry, owner alive (or not a worker).
    Registered,
    /// In `/dev/shm` but not in the registry: a leak.
    Unregistered,
    /// In the registry but not in `/dev/shm`: a stale registry entry.
    Missing,
    /// In both, but its owner `worker:<pid>` is dead (no `/proc/<pid>`, or a zombie):
    /// a leak its supervisor should have unlinked.
    DeadOwner {
        /// The dead worker's pid.
        pid: u32,
    },
}

impl SegmentStatus {
    /// Whether this counts as a leaked segment (unregistered, or owned by a dead
    /// worker).
    ///
    /// ```
    /// assert!(!modsynth_shm::SegmentStatus::Registered.is_leak());
    /// ```
    pub fn is_leak(self) -> bool {
        matches!(
            self,
            SegmentStatus::Unregistered | SegmentStatus::DeadOwner { .. }
        )
    }
}

/// One segment of a [`ScanReport`].
///
/// ```
/// # use modsynth_shm::{Registry, Segment, SegmentStatus, scan};
/// let instance = format!("docentry{}", std::process::id());
/// let name = format!("/{instance}-w1-status");
/// Segment::create(&name, 320)?;
/// # let dir = std::env::temp_dir().join(&instance);
/// let (reg, _) = Registry::open(&dir)?;
/// let entry = &scan(&instance, &reg)?.entries[0];
/// assert_eq!((entry.name.as_str(), entry.size, entry.status), (name.as_str(), Some(320), SegmentStatus::Unregistered));
/// # Segment::unlink(&name)?;
/// # std::fs::remove_dir_all(&dir).unwrap();
/// # Ok::<(), modsynth_shm::ShmError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanEntry {
    /// The segment name, `/<instance>-<owner>-<kind>`.
    pub name: String,
    /// Its size in `/dev/shm` (`None` if missing).
    pub size: Option<u64>,
    /// The registry id it is registered under, if any.
    pub allocation: Option<String>,
    /// The verdict.
    pub status: SegmentStatus,
}

/// The result of [`scan`]: every segment of the instance, sorted by name.
///
/// ```
/// # use modsynth_shm::{Registry, scan};
/// # let instance = format!("docreport{}", std::process::id());
/// # let dir = std::env::temp_dir().join(&instance);
/// let (reg, _) = Registry::open(&dir)?;
/// let report = scan(&instance, &reg)?;
/// assert!(report.entries.is_empty());
/// assert_eq!(report.leaked_count(), 0);
/// # std::fs::remove_dir_all(&dir).unwrap();
/// # Ok::<(), modsynth_shm::ShmError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanReport {
    /// The instance scanned.
    pub instance: String,
    /// One entry per segment found or registered.
    pub entries: Vec<ScanEntry>,
}

impl ScanReport {
    /// Number of leaked segments ([`SegmentStatus::is_leak`]), for
    /// [`Registry::set_leaked_count`].
    ///
    /// ```
    /// let report = modsynth_shm::ScanReport { instance: "i".into(), entries: vec![] };
    /// assert_eq!(report.leaked_count(), 0);
    /// ```
    pub fn leaked_count(&self) -> u64 {
        self.entries.iter().filter(|e| e.status.is_leak()).count() as u64
    }
}

/// Lists the `/dev/shm` entries of `instance` (names starting with `<instance>-`) and
/// classifies each against `registry` and the live pids; registered segments that
/// are not in `/dev/shm` are listed as [`SegmentStatus::Missing`]. Changes nothing.
///
/// ```
/// use modsynth_shm::{Allocation, Registry, Segment, SegmentStatus, scan};
///
/// let instance = format!("docscan{}", std::process::id());
/// let dir = std::env::temp_dir().join(&instance);
/// let (mut reg, _) = Registry::open(&dir)?;
/// let name = format!("/{instance}-vco1-state");
/// Segment::create(&name, 64)?;
/// let me = format!("worker:{}", std::process::id());
/// reg.replace(vec![Allocation::new("vco1.state", &name, 64, "state_snapshot", &me)], vec![])?;
/// let report = scan(&instance, &reg)?;
/// assert_eq!(report.entries[0].status, SegmentStatus::Registered);
/// # Segment::unlink(&name)?;
/// # std::fs::remove_dir_all(&dir).unwrap();
/// # Ok::<(), modsynth_shm::ShmError>(())
/// ```
pub fn scan(instance: &str, registry: &Registry) -> Result<ScanReport, ShmError> {
    let found = list_shm(instance, &[])?;
    let mut entries = Vec::new();
    let registered: Vec<(String, &Allocation)> = registry
        .allocations()
        .iter()
        .map(|a| (segment_of(instance, a), a))
        .collect();
    for (name, size) in &found {
        let alloc = registered.iter().find(|(n, _)| n == name).map(|(_, a)| a);
        let status = match alloc {
            None => SegmentStatus::Unregistered,
            Some(a) => match worker_pid(&a.owner) {
                Some(pid) if !pid_alive(pid) => SegmentStatus::DeadOwner { pid },
                _ => SegmentStatus::Registered,
            },
        };
        entries.push(ScanEntry {
            name: name.clone(),
            size: Some(*size),
            allocation: alloc.map(|a| a.id.clone()),
            status,
        });
    }
    for (name, a) in &registered {
        if !found.iter().any(|(n, _)| n == name) {
            entries.push(ScanEntry {
                name: name.clone(),
                size: None,
                allocation: Some(a.id.clone()),
                status: SegmentStatus::Missing,
            });
        }
    }
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(ScanReport {
        instance: instance.to_string(),
        entries,
    })
}

/// Registers in `registry` every segment `report` found unregistered, with owner
/// `unknown`, id `<owner>.<kind>` from its name and type `adopted:<kind>`; returns
/// how many. This is the rebuild after a missing or corrupt registry: the segments
/// become known again (and removable) instead of being lost or silently deleted.
/// Nothing is written when there is nothing to adopt.
///
/// ```
/// # use modsynth_shm::{adopt, Registry, Segment, scan};
/// let instance = format!("docadopt{}", std::process::id());
/// let name = format!("/{instance}-vco1-state");
/// Segment::create(&name, 64)?;
/// let dir = std::env::temp_dir().join(&instance);
/// let (mut reg, _) = Registry::open(&dir)?;
/// let report = scan(&instance, &reg)?;
/// assert_eq!(adopt(&mut reg, &report)?, 1);
/// assert_eq!(reg.allocations()[0].id, "vco1.state");
/// assert_eq!(scan(&instance, &reg)?.leaked_count(), 0);
/// # Segment::unlink(&name)?;
/// # std::fs::remove_dir_all(&dir).unwrap();
/// # Ok::<(), modsynth_shm::ShmError>(())
/// ```
pub fn adopt(registry: &mut Registry, report: &ScanReport) -> Result<usize, ShmError> {
    let prefix = format!("/{}-", report.instance);
    let found: Vec<Allocation> = report
        .entries
        .iter()
        .filter(|e| e.status == SegmentStatus::Unregistered)
        .map(|e| {
            let rest = e.name.strip_prefix(&prefix).unwrap_or(&e.name);
            let (owner, kind) = rest.rsplit_once('-').unwrap_or((rest, "unknown"));
            Allocation {
                id: format!("{owner}.{kind}"),
                segment: e.name.clone(),
                size: e.size.unwrap_or(0),
                kind: format!("adopted:{kind}"),
                owner: "unknown".to_string(),
                created: rfc3339_utc(SystemTime::now()),
            }
        })
        .collect();
    let n = found.len();
    if n > 0 {
        let mut allocations = registry.allocations().to_vec();
        for a in found {
            match allocations.iter_mut().find(|old| old.id == a.id) {
                Some(old) => *old = a,
                None => allocations.push(a),
            }
        }
        registry.replace(allocations, registry.workers().to_vec())?;
    }
    Ok(n)
}

/// What [`gc`] did.
///
/// ```
/// let report = modsynth_shm::GcReport::default();
/// assert!(report.removed.is_empty() && report.errors.is_empty());
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GcReport {
    /// Instances whose supervisor runs, with its pid if the lock file says.
    pub alive: Vec<(String, Option<u32>)>,
    /// Instances whose supervisor is gone (their segments were removed).
    pub gone: Vec<String>,
    /// State dirs left alone, with the reason.
    pub skipped: Vec<(String, String)>,
    /// Segments unlinked.
    pub removed: Vec<String>,
    /// What failed (each message names the object); gc goes on after errors.
    pub errors: Vec<String>,
}

/// Removes the segments of every instance under `base_dir` (normally
/// [`default_base_dir`](crate::default_base_dir)) whose supervisor is gone (see the
/// module docs), and empties their registries. Live instances are not touched.
///
///
///
/// **How gc knows an instance is gone.** Every running supervisor holds an
/// [`InstanceLock`](crate::InstanceLock): an exclusive `flock` on
/// `<base>/<instance>/supervisor.pid`. The kernel releases it when the process dies,
/// however it dies, and a recycled pid cannot hold it. So [`gc`] walks the state dirs
/// under `<base>`, and an instance whose lock file exists and can be locked is gone;
/// [`gc`] keeps the lock while it unlinks that instance's segments, so a supervisor
/// starting meanwhile waits for a clean slate (it gets
/// [`ShmError::InstanceRunning`](crate::ShmError::InstanceRunning) and retries).
/// A state dir without a lock file is left alone (nothing proves it dead), and so are
/// `/dev/shm` entries of instances without a state dir: their names alone do not
/// prove they are modsynth's.
///
/// Instance names may contain `-`, so `/a-b-x-state` may belong to instance `a` or
/// `a-b`. [`gc`] gives each segment to the longest instance name it knows that
/// matches; [`scan`] knows only one instance and lists everything under its prefix.
///
/// # Example
///
/// ```
/// use modsynth_shm::{gc, InstanceLock, Segment};
///
/// let base = std::env::temp_dir().join(format!("docgc{}", std::process::id()));
/// let instance = format!("docgc{}", std::process::id());
/// let lock = InstanceLock::acquire(&base.join(&instance))?;
/// let name = format!("/{instance}-vco1-state");
/// Segment::create(&name, 64)?;
/// assert!(gc(&base)?.removed.is_empty()); // its supervisor (us) is alive
/// drop(lock); // the supervisor "dies"
/// assert_eq!(gc(&base)?.removed, vec![name.clone()]);
/// assert!(Segment::open(&name).is_err());
/// # std::fs::remove_dir_all(&base).unwrap();
/// # Ok::<(), modsynth_shm::ShmError>(())
/// ```
pub fn gc(base_dir: &Path) -> Result<GcReport, ShmError> {
    let mut report = GcReport::default();
    let dirs = match std::fs::read_dir(base_dir) {
        Ok(dirs) => dirs,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(report),
        Err(e) => return Err(ShmError::io(format!("list {}", base_dir.display()), e)),
    };
    let mut instances: Vec<String> = dirs
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    instances.sort();
    for instance in &instances {
        let dir = base_dir.join(instance);
        let lock_path = dir.join(LOCK_FILE);
        if !lock_path.exists() {
            report.skipped.push((
                instance.clone(),
                format!("no {LOCK_FILE}: nothing proves its supervisor is gone"),
            ));
            continue;
        }
        let _lock = match try_lock(&lock_path) {
            Ok(Ok(lock)) => lock,
            Ok(Err(pid)) => {
                report.alive.push((instance.clone(), pid));
                continue;
            }
            Err(e) => {
                report.errors.push(e.to_string());
                continue;
            }
        };
        if let Some(pid) = live_worker(&dir) {
            // Workers outlive their supervisor and keep playing from these segments
            // until a new one takes them back: not garbage.
            report.skipped.push((
                instance.clone(),
                format!("its modsynthd is gone but worker pid {pid} still plays; start modsynthd again to take it back"),
            ));
            continue;
        }
        report.gone.push(instance.clone());
        let longer: Vec<&str> = instances
            .iter()
            .filter(|o| o.len() > instance.len() && o.starts_with(&format!("{instance}-")))
            .map(String::as_str)
            .collect();
        match list_shm(instance, &longer) {
            Ok(found) => {
                for (name, _) in found {
                    match Segment::unlink_if_ours(&name) {
                        Ok(()) | Err(ShmError::NotFound { .. }) => report.removed.push(name),
                        Err(e) => report.errors.push(e.to_string()),
                    }
                }
            }
            Err(e) => report.errors.push(e.to_string()),
        }
        if dir.join(REGISTRY_FILE).exists() {
            if let Err(e) = Registry::open(&dir).and_then(|(mut r, _)| r.clear()) {
                report.errors.push(e.to_string());
            }
        }
    }
    Ok(report)
}

/// The pid of a live worker with a card in `<dir>/workers/` (written by pooled
/// workers so a new supervisor can find them), if there is one.
fn live_worker(dir: &Path) -> Option<u32> {
    std::fs::read_dir(dir.join("workers"))
        .ok()?
        .flatten()
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .filter_map(|json| serde_json::from_str::<serde_json::Value>(&json).ok())
        .filter_map(|card| u32::try_from(card.get("pid")?.as_u64()?).ok())
        .find(|&pid| pid_alive(pid))
}

/// `(name, size)` of the `/dev/shm` entries starting with `<instance>-`, except those
/// that start with `<other>-` for one of `longer` (instances with longer names).
fn list_shm(instance: &str, longer: &[&str]) -> Result<Vec<(String, u64)>, ShmError> {
    let prefix = format!("{instance}-");
    let dir = std::fs::read_dir(SHM_DIR).map_err(|e| ShmError::io(format!("list {SHM_DIR}"), e))?;
    let mut found = Vec::new();
    for entry in dir.flatten() {
        let Ok(file) = entry.file_name().into_string() else {
            continue;
        };
        if !file.starts_with(&prefix) || longer.iter().any(|o| file.starts_with(&format!("{o}-"))) {
            continue;
        }
        // Vanished since the listing: not there any more, so not found.
        let Ok(meta) = entry.metadata() else { continue };
        if meta.is_file() {
            found.push((format!("/{file}"), meta.len()));
        }
    }
    found.sort();
    Ok(found)
}

/// The segment name of `a`: its `segment` field, or derived from its id
/// `<owner>.<kind>` for files written without one.
fn segment_of(instance: &str, a: &Allocation) -> String {
    if !a.segment.is_empty() {
        return a.segment.clone();
    }
    match a.id.rsplit_once('.') {
        Some((owner, kind)) => format!("/{instance}-{owner}-{kind}"),
        None => format!("/{instance}-{}", a.id),
    }
}

fn worker_pid(owner: &str) -> Option<u32> {
    owner.strip_prefix("worker:")?.parse().ok()
}

/// Whether process `pid` is alive: `/proc/<pid>` exists and is not a zombie. An
/// unreadable `/proc/<pid>/stat` other than "not found" counts as alive (nothing
/// proves it dead), and so does a recycled pid: the safe side for a scan.
///
/// ```
/// assert!(modsynth_shm::pid_alive(std::process::id()));
/// assert!(!modsynth_shm::pid_alive(u32::MAX / 2));
/// ```
pub fn pid_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => match stat.rsplit_once(')') {
            Some((_, rest)) => !matches!(rest.trim_start().chars().next(), Some('Z' | 'X')),
            None => true,
        },
        Err(e) => e.kind() != std::io::ErrorKind::NotFound,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{Names, TempDir};
    use crate::{InstanceLock, StateSegment};

    fn dead_pid() -> u32 {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        pid
    }

    #[test]
    fn scan_classifies_every_segment() {
        let names = Names::new();
        let inst = names.instance.clone();
        let dir = TempDir::new();
        let (mut reg, _) = Registry::open(&dir.0).unwrap();
        let me = format!("worker:{}", std::process::id());
        let dead = format!("worker:{}", dead_pid());

        let mut allocations = Vec::new();
        let ok = names.with("vco1", "state");
        let _ok = StateSegment::create(&ok, 0, 64, 0).unwrap();
        allocations.push(Allocation::new(
            "vco1.state",
            &ok,
            448,
            "state_snapshot",
            &me,
        ));
        let leak = names.with("vco2", "state");
        let _leak = StateSegment::create(&leak, 0, 64, 0).unwrap();
        let orphan = names.with("vco3", "state");
        let _orphan = StateSegment::create(&orphan, 0, 64, 0).unwrap();
        allocations.push(Allocation::new(
            "vco3.state",
            &orphan,
            448,
            "state_snapshot",
            &dead,
        ));
        let missing = names.with("vco4", "state");
        allocations.push(Allocation::new(
            "vco4.state",
            &missing,
            1,
            "state_snapshot",
            &me,
        ));
        // Registered without a segment field, as in DESIGN's example: derived name.
        let derived = names.with("lfo-1", "state");
        let _derived = Segment::create(&derived, 8).unwrap();
        let mut a = Allocation::new("lfo-1.state", "", 8, "state_snapshot", "supervisor");
        a.segment.clear();
        allocations.push(a);
        reg.replace(allocations, Vec::new()).unwrap();

        let report = scan(&inst, &reg).unwrap();
        let status = |n: &str| {
            report
                .entries
                .iter()
                .find(|e| e.name == n)
                .unwrap_or_else(|| panic!("{n} not in {report:?}"))
                .status
        };
        assert_eq!(report.entries.len(), 5, "{report:?}");
        assert_eq!(status(&ok), SegmentStatus::Registered);
        assert_eq!(status(&leak), SegmentStatus::Unregistered);
        assert!(matches!(status(&orphan), SegmentStatus::DeadOwner { .. }));
        assert_eq!(status(&missing), SegmentStatus::Missing);
        assert_eq!(status(&derived), SegmentStatus::Registered);
        assert_eq!(report.leaked_count(), 2);

        // Rebuild: adopting the unregistered one leaves only the dead-owner leak.
        assert_eq!(adopt(&mut reg, &report).unwrap(), 1);
        let report = scan(&inst, &reg).unwrap();
        assert_eq!(report.leaked_count(), 1);
        reg.set_leaked_count(report.leaked_count()).unwrap();
        assert_eq!(reg.stats().leaked_count, 1);
    }

    #[test]
    fn zombies_and_missing_pids_are_dead() {
        assert!(pid_alive(std::process::id()));
        assert!(!pid_alive(dead_pid()));
        let mut zombie = std::process::Command::new("true").spawn().unwrap();
        // Wait until it has exited but is not reaped.
        let start = std::time::Instant::now();
        while pid_alive(zombie.id()) && start.elapsed().as_secs() < 5 {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert!(!pid_alive(zombie.id()));
        zombie.wait().unwrap();
        assert_eq!(worker_pid("worker:42"), Some(42));
        assert_eq!(worker_pid("supervisor"), None);
    }

    #[test]
    fn gc_removes_only_instances_whose_supervisor_is_gone() {
        let base = TempDir::new();
        let live = Names::new();
        let gone = Names::new();
        // An instance whose name extends the gone one's: "<gone>-x".
        let nested = Names::with_instance(format!("{}-x", gone.instance));
        let unmanaged = Names::new();

        let _live_lock = InstanceLock::acquire(&base.0.join(&live.instance)).unwrap();
        let _nested_lock = InstanceLock::acquire(&base.0.join(&nested.instance)).unwrap();
        drop(InstanceLock::acquire(&base.0.join(&gone.instance)).unwrap());
        std::fs::create_dir(base.0.join(&unmanaged.instance)).unwrap();

        let live_seg = live.with("vco1", "state");
        let gone_segs = [gone.with("vco1", "state"), gone.with("w1", "status")];
        let nested_seg = nested.with("vco1", "state");
        let unmanaged_seg = unmanaged.with("vco1", "state");
        for name in [
            &live_seg,
            &gone_segs[0],
            &gone_segs[1],
            &nested_seg,
            &unmanaged_seg,
        ] {
            Segment::create(name, 16).unwrap();
        }
        let gone_dir = base.0.join(&gone.instance);
        let (mut reg, _) = Registry::open(&gone_dir).unwrap();
        let vco = Allocation::new(
            "vco1.state",
            &gone_segs[0],
            16,
            "state_snapshot",
            "worker:1",
        );
        reg.replace(vec![vco], Vec::new()).unwrap();

        let report = gc(&base.0).unwrap();
        assert_eq!(report.errors, Vec::<String>::new());
        assert_eq!(report.gone, vec![gone.instance.clone()]);
        assert_eq!(report.removed, gone_segs.to_vec());
        let alive: Vec<_> = report.alive.iter().map(|(i, _)| i.clone()).collect();
        assert!(alive.contains(&live.instance) && alive.contains(&nested.instance));
        assert!(report
            .alive
            .iter()
            .all(|(_, pid)| *pid == Some(std::process::id())));
        assert_eq!(report.skipped.len(), 1);
        for kept in [&live_seg, &nested_seg, &unmanaged_seg] {
            assert!(Segment::open(kept).is_ok(), "{kept} must survive gc");
        }
        for removed in &gone_segs {
            assert!(Segment::open(removed).is_err());
        }
        assert!(Registry::load(&gone_dir).unwrap().allocations().is_empty());
        // A second run finds nothing more to do.
        assert!(gc(&base.0).unwrap().removed.is_empty());
    }

    #[test]
    fn gc_leaves_an_instance_alone_whose_workers_play_on_without_their_supervisor() {
        let base = TempDir::new();
        let orphaned = Names::new();
        let dir = base.0.join(&orphaned.instance);
        drop(InstanceLock::acquire(&dir).unwrap());
        let segment = orphaned.with("vco1", "state");
        Segment::create(&segment, 16).unwrap();
        // A worker's card naming a live process (this one).
        std::fs::create_dir(dir.join("workers")).unwrap();
        let card = format!(
            r#"{{"pid":{},"start_time":1,"client":"x-w00","server":"/x"}}"#,
            std::process::id()
        );
        std::fs::write(dir.join("workers/x-w00.json"), card).unwrap();

        let report = gc(&base.0).unwrap();
        assert!(report.gone.is_empty(), "{report:?}");
        assert_eq!(report.skipped.len(), 1, "{report:?}");
        assert!(Segment::open(&segment).is_ok(), "its segment survives gc");
        Segment::unlink(&segment).unwrap();
    }

    #[test]
    fn gc_of_a_missing_base_dir_is_empty() {
        let report = gc(Path::new("/nonexistent/modsynth-base")).unwrap();
        assert_eq!(report, GcReport::default());
    }
}

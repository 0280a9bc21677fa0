//! The JSON registry of an instance's shared-memory allocations and workers, in
//! `<state dir>/registry.json`, rewritten atomically on every change.
//!
//! ```json
//! { "allocations": [ { "id": "vco1.state", "segment": "/live-vco1-state",
//!     "size": 4096, "type": "state_snapshot", "owner": "worker:4711",
//!     "created": "2026-11-22T10:00:00Z" } ],
//!   "workers": [ { "pid": 4711, "jack_client": "modsynth-w07", "role": "primary",
//!     "module": "vco1" } ],
//!   "stats": { "total_allocated": 4096, "active_count": 1, "leaked_count": 0 } }
//! ```
//!
//! `segment` (the shared-memory name) is an addition to DESIGN's format; a file
//! without it still reads, and the scan then derives the name from the id
//! (`<owner>.<kind>` → `/<instance>-<owner>-<kind>`). `stats.total_allocated` and
//! `stats.active_count` are recomputed on every change; `leaked_count` is whatever the
//! last [`Registry::set_leaked_count`] said (from a [`scan`](crate::scan)).
//!
//! One process writes the registry: the instance's supervisor (holding its
//! [`InstanceLock`](crate::InstanceLock)). Others read it with [`Registry::load`];
//! thanks to the rename they always see a whole file.

use crate::instance::ensure_state_dir;
use crate::ShmError;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// Name of the registry file in a state dir.
///
/// ```
/// assert_eq!(modsynth_shm::REGISTRY_FILE, "registry.json");
/// ```
pub const REGISTRY_FILE: &str = "registry.json";

/// One shared-memory allocation.
///
/// ```
/// use modsynth_shm::Allocation;
///
/// let a = Allocation::new("vco1.state", "/live-vco1-state", 4096, "state_snapshot", "worker:4711");
/// assert_eq!(a.created.len(), "2026-11-22T10:00:00Z".len());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Allocation {
    /// `<owner>.<kind>`, e.g. `vco1.state`.
    pub id: String,
    /// The segment's name, `/<instance>-<owner>-<kind>` (empty in files written
    /// without it: derived from `id` then).
    #[serde(default)]
    pub segment: String,
    /// Bytes.
    pub size: u64,
    /// What it holds, e.g. `state_snapshot`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Who is responsible for it, e.g. `worker:4711` or `supervisor`.
    pub owner: String,
    /// When it was created, RFC 3339 UTC (`2026-11-22T10:00:00Z`).
    pub created: String,
}

impl Allocation {
    /// An allocation created now.
    ///
    /// ```
    /// let a = modsynth_shm::Allocation::new("vco1.state", "/live-vco1-state", 448, "state_snapshot", "worker:4242");
    /// assert_eq!((a.id.as_str(), a.size), ("vco1.state", 448));
    /// ```
    pub fn new(id: &str, segment: &str, size: u64, kind: &str, owner: &str) -> Allocation {
        Allocation {
            id: id.to_string(),
            segment: segment.to_string(),
            size,
            kind: kind.to_string(),
            owner: owner.to_string(),
            created: rfc3339_utc(SystemTime::now()),
        }
    }
}

/// What a worker is doing.
///
/// ```
/// assert_eq!(serde_json::to_string(&modsynth_shm::Role::Standby).unwrap(), "\"standby\"");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// In the pool, no module.
    Spare,
    /// Plays its module.
    Primary,
    /// Mirrors a primary, silent until promoted.
    Standby,
}

/// One worker process.
///
/// ```
/// use modsynth_shm::{Role, Worker};
///
/// let w = Worker { pid: 4711, jack_client: "modsynth-w07".into(), role: Role::Primary, module: Some("vco1".into()) };
/// assert!(serde_json::to_string(&w).unwrap().contains("\"module\":\"vco1\""));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Worker {
    /// Process id.
    pub pid: u32,
    /// Its JACK client name.
    pub jack_client: String,
    /// What it does.
    pub role: Role,
    /// The module it plays or stands by for (none for a spare).
    #[serde(default)]
    pub module: Option<String>,
}

/// Totals over the registry.
///
/// ```
/// let s = modsynth_shm::Stats::default();
/// assert_eq!((s.total_allocated, s.active_count, s.leaked_count), (0, 0, 0));
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// Sum of the allocations' sizes in bytes.
    pub total_allocated: u64,
    /// Number of allocations.
    pub active_count: u64,
    /// Leaked segments found by the last scan.
    pub leaked_count: u64,
}

/// Why [`Registry::open`] started from an empty registry. The text says what was
/// wrong and what happened; the caller should log it and rebuild from a
/// [`scan`](crate::scan) (see [`adopt`](crate::adopt)).
///
/// ```
/// let dir = std::env::temp_dir().join(format!("doc-warn-{}", std::process::id()));
/// let (_, warning) = modsynth_shm::Registry::open(&dir)?;
/// let text = warning.unwrap().to_string();
/// assert!(text.contains("no registry") && text.contains("rebuilt"));
/// # std::fs::remove_dir_all(&dir).unwrap();
/// # Ok::<(), modsynth_shm::ShmError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Warning {
    /// There was no registry file (first start, or someone removed it).
    Missing {
        /// The registry file.
        path: PathBuf,
    },
    /// The file could not be read as a registry; it was kept under another name.
    Corrupt {
        /// The registry file.
        path: PathBuf,
        /// The parse error.
        reason: String,
        /// Where the bad file was moved (`None` if moving it failed too).
        kept_at: Option<PathBuf>,
    },
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Warning::Missing { path } => write!(
                f,
                "no registry at {}: started an empty one, to be rebuilt from a scan of \
                 /dev/shm (segments of an earlier run show up as unregistered)",
                path.display()
            ),
            Warning::Corrupt {
                path,
                reason,
                kept_at,
            } => {
                write!(f, "registry {} is corrupt ({reason}); ", path.display())?;
                match kept_at {
                    Some(kept) => write!(f, "the bad file was kept as {}; ", kept.display())?,
                    None => write!(f, "the bad file could not be kept; ")?,
                }
                write!(
                    f,
                    "started an empty registry, to be rebuilt from a scan of /dev/shm"
                )
            }
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct Contents {
    allocations: Vec<Allocation>,
    workers: Vec<Worker>,
    #[serde(default)]
    stats: Stats,
}

impl Contents {
    fn recount(&mut self) {
        self.stats.total_allocated = self.allocations.iter().map(|a| a.size).sum();
        self.stats.active_count = self.allocations.len() as u64;
    }
}

/// An instance's registry: the file and its contents in memory. Every change is
/// written to disk (temp file, fsync, rename, fsync of the dir) before the method
/// returns; if writing fails, nothing changes in memory either.
///
/// The file:
///
///
/// ```json
/// { "allocations": [ { "id": "vco1.state", "segment": "/live-vco1-state",
///     "size": 4096, "type": "state_snapshot", "owner": "worker:4711",
///     "created": "2026-11-22T10:00:00Z" } ],
///   "workers": [ { "pid": 4711, "jack_client": "modsynth-w07", "role": "primary",
///     "module": "vco1" } ],
///   "stats": { "total_allocated": 4096, "active_count": 1, "leaked_count": 0 } }
/// ```
///
/// `segment` (the shared-memory name) is an addition to DESIGN's format; a file
/// without it still reads, and the scan then derives the name from the id
/// (`<owner>.<kind>` → `/<instance>-<owner>-<kind>`). `stats.total_allocated` and
/// `stats.active_count` are recomputed on every change; `leaked_count` is whatever the
/// last [`Registry::set_leaked_count`] said (from a [`scan`](crate::scan)).
///
/// One process writes the registry: the instance's supervisor (holding its
/// [`InstanceLock`](crate::InstanceLock)). Others read it with [`Registry::load`];
/// thanks to the rename they always see a whole file.
///
/// # Example
///
/// ```
/// use modsynth_shm::{Allocation, Registry, Role, Worker};
///
/// let dir = std::env::temp_dir().join(format!("doc-reg-{}", std::process::id()));
/// let (mut reg, _first_start) = Registry::open(&dir)?;
/// let vco = Allocation::new("vco1.state", "/live-vco1-state", 4096, "state_snapshot", "worker:4711");
/// let w = Worker { pid: 4711, jack_client: "modsynth-w07".into(), role: Role::Primary, module: Some("vco1".into()) };
/// reg.replace(vec![vco], vec![w])?;
/// assert_eq!(reg.stats().total_allocated, 4096);
///
/// let (again, warning) = Registry::open(&dir)?;
/// assert!(warning.is_none());
/// assert_eq!(again.allocations(), reg.allocations());
/// # std::fs::remove_dir_all(&dir).unwrap();
/// # Ok::<(), modsynth_shm::ShmError>(())
/// ```
#[derive(Debug)]
pub struct Registry {
    dir: PathBuf,
    path: PathBuf,
    contents: Contents,
    read_only: bool,
}

impl Registry {
    /// Opens the registry in `state_dir` for writing, creating the dir (0700) if
    /// needed. A missing or corrupt file is not an error: it returns an empty registry
    /// (already written to disk) and a [`Warning`]; a corrupt file is first moved to
    /// `registry.json.corrupt-<unix time>` so nothing is silently lost. Only the
    /// instance's supervisor should call this (see the module docs).
    ///
    /// ```
    /// let dir = std::env::temp_dir().join(format!("doc-open-{}", std::process::id()));
    /// std::fs::create_dir_all(&dir).unwrap();
    /// std::fs::write(dir.join("registry.json"), b"{ not json").unwrap();
    /// let (reg, warning) = modsynth_shm::Registry::open(&dir)?;
    /// assert!(reg.allocations().is_empty());
    /// assert!(matches!(warning, Some(modsynth_shm::Warning::Corrupt { .. })));
    /// # std::fs::remove_dir_all(&dir).unwrap();
    /// # Ok::<(), modsynth_shm::ShmError>(())
    /// ```
    pub fn open(state_dir: &Path) -> Result<(Registry, Option<Warning>), ShmError> {
        ensure_state_dir(state_dir)?;
        let path = state_dir.join(REGISTRY_FILE);
        let (contents, warning) = match read(&path)? {
            Some(Ok(contents)) => (contents, None),
            None => (
                Contents::default(),
                Some(Warning::Missing { path: path.clone() }),
            ),
            Some(Err(reason)) => {
                let secs = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs());
                let kept = state_dir.join(format!("{REGISTRY_FILE}.corrupt-{secs}"));
                let kept_at = std::fs::rename(&path, &kept).ok().map(|()| kept);
                let warning = Warning::Corrupt {
                    path: path.clone(),
                    reason,
                    kept_at,
                };
                (Contents::default(), Some(warning))
            }
        };
        let mut registry = Registry {
            dir: state_dir.to_path_buf(),
            path,
            contents: Contents::default(),
            read_only: false,
        };
        registry.update(|c| *c = contents)?;
        Ok((registry, warning))
    }

    /// Reads the registry in `state_dir` without changing anything on disk: for
    /// tools like `modsynth shm ls` while the supervisor runs. A missing or corrupt
    /// file is an error here; the changing methods of the result fail.
    ///
    /// ```
    /// let dir = std::env::temp_dir().join(format!("doc-load-{}", std::process::id()));
    /// assert!(modsynth_shm::Registry::load(&dir).is_err()); // nothing there yet
    /// let (mut writer, _) = modsynth_shm::Registry::open(&dir)?;
    /// let mut reader = modsynth_shm::Registry::load(&dir)?;
    /// assert!(reader.set_leaked_count(1).is_err()); // read-only
    /// # std::fs::remove_dir_all(&dir).unwrap();
    /// # Ok::<(), modsynth_shm::ShmError>(())
    /// ```
    pub fn load(state_dir: &Path) -> Result<Registry, ShmError> {
        let path = state_dir.join(REGISTRY_FILE);
        let what = format!("read registry {}", path.display());
        let contents = match read(&path)? {
            Some(Ok(contents)) => contents,
            None => {
                return Err(ShmError::io(
                    what,
                    std::io::Error::new(
                        std::io::ErrorKind::NotFound,
                        "it does not exist (is the instance running?)",
                    ),
                ))
            }
            Some(Err(reason)) => {
                return Err(ShmError::io(
                    what,
                    std::io::Error::other(format!(
                        "it is corrupt ({reason}); the supervisor rebuilds it at its next start"
                    )),
                ))
            }
        };
        Ok(Registry {
            dir: state_dir.to_path_buf(),
            path,
            contents,
            read_only: true,
        })
    }

    /// Replaces every allocation and every worker at once, with one write: for a
    /// supervisor that keeps the registry in step with its own picture of what exists
    /// (one fsync per change of that picture, not one per entry). The allocations
    /// are stored as given (`created` included: keep the old time of an allocation
    /// that stays); the totals are recounted and the leaked count is kept.
    ///
    /// ```
    /// use modsynth_shm::{Allocation, Registry, Role, Worker};
    ///
    /// let dir = std::env::temp_dir().join(format!("doc-replace-{}", std::process::id()));
    /// let (mut reg, _) = Registry::open(&dir)?;
    /// let old = Allocation::new("old.state", "/i-old-state", 10, "state_snapshot", "worker:1");
    /// reg.replace(vec![old], vec![])?;
    /// reg.set_leaked_count(2)?;
    ///
    /// let vco = Allocation::new("vco1.state", "/i-vco1-state", 4096, "state_snapshot", "worker:7");
    /// let w = Worker { pid: 7, jack_client: "i-w00".into(), role: Role::Primary, module: Some("vco1".into()) };
    /// reg.replace(vec![vco.clone()], vec![w.clone()])?;
    ///
    /// let on_disk = Registry::load(&dir)?;
    /// assert_eq!(on_disk.allocations(), [vco]);
    /// assert_eq!(on_disk.workers(), [w]);
    /// assert_eq!(on_disk.stats().total_allocated, 4096);
    /// assert_eq!(on_disk.stats().leaked_count, 2); // kept
    ///
    /// reg.replace(vec![], vec![])?; // a clean shutdown
    /// assert_eq!(Registry::load(&dir)?.stats().active_count, 0);
    /// # std::fs::remove_dir_all(&dir).unwrap();
    /// # Ok::<(), modsynth_shm::ShmError>(())
    /// ```
    pub fn replace(
        &mut self,
        allocations: Vec<Allocation>,
        workers: Vec<Worker>,
    ) -> Result<(), ShmError> {
        self.update(|c| {
            c.allocations = allocations;
            c.workers = workers;
        })
    }

    /// Stores the number of leaked segments found by the last scan in the stats.
    ///
    /// ```
    /// # let dir = std::env::temp_dir().join(format!("doc-leak-{}", std::process::id()));
    /// # let (mut reg, _) = modsynth_shm::Registry::open(&dir)?;
    /// reg.set_leaked_count(2)?;
    /// assert_eq!(reg.stats().leaked_count, 2);
    /// # std::fs::remove_dir_all(&dir).unwrap();
    /// # Ok::<(), modsynth_shm::ShmError>(())
    /// ```
    pub fn set_leaked_count(&mut self, leaked: u64) -> Result<(), ShmError> {
        self.update(|c| c.stats.leaked_count = leaked)
    }

    /// The allocations, in the order they were added.
    ///
    /// ```
    /// # let dir = std::env::temp_dir().join(format!("doc-allocs-{}", std::process::id()));
    /// let (reg, _) = modsynth_shm::Registry::open(&dir)?;
    /// assert!(reg.allocations().is_empty());
    /// # std::fs::remove_dir_all(&dir).unwrap();
    /// # Ok::<(), modsynth_shm::ShmError>(())
    /// ```
    pub fn allocations(&self) -> &[Allocation] {
        &self.contents.allocations
    }

    /// The workers, in the order they were added.
    ///
    /// ```
    /// # let dir = std::env::temp_dir().join(format!("doc-workers-{}", std::process::id()));
    /// let (reg, _) = modsynth_shm::Registry::open(&dir)?;
    /// assert!(reg.workers().is_empty());
    /// # std::fs::remove_dir_all(&dir).unwrap();
    /// # Ok::<(), modsynth_shm::ShmError>(())
    /// ```
    pub fn workers(&self) -> &[Worker] {
        &self.contents.workers
    }

    /// The totals.
    ///
    /// ```
    /// # let dir = std::env::temp_dir().join(format!("doc-stats-{}", std::process::id()));
    /// let (reg, _) = modsynth_shm::Registry::open(&dir)?;
    /// assert_eq!(reg.stats(), modsynth_shm::Stats::default());
    /// # std::fs::remove_dir_all(&dir).unwrap();
    /// # Ok::<(), modsynth_shm::ShmError>(())
    /// ```
    pub fn stats(&self) -> Stats {
        self.contents.stats
    }

    /// The registry file, `<state dir>/registry.json`.
    ///
    /// ```
    /// # let dir = std::env::temp_dir().join(format!("doc-regpath-{}", std::process::id()));
    /// let (reg, _) = modsynth_shm::Registry::open(&dir)?;
    /// assert_eq!(reg.path(), dir.join("registry.json"));
    /// # std::fs::remove_dir_all(&dir).unwrap();
    /// # Ok::<(), modsynth_shm::ShmError>(())
    /// ```
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Forgets every allocation and worker (gc of a gone instance).
    pub(crate) fn clear(&mut self) -> Result<(), ShmError> {
        self.update(|c| *c = Contents::default())
    }

    fn check_writable(&self) -> Result<(), ShmError> {
        if self.read_only {
            return Err(ShmError::io(
                format!("change registry {}", self.path.display()),
                std::io::Error::other("it was loaded read-only; only the supervisor writes it"),
            ));
        }
        Ok(())
    }

    /// Applies `change` to a copy, recounts, writes the copy, then keeps it.
    fn update(&mut self, change: impl FnOnce(&mut Contents)) -> Result<(), ShmError> {
        self.check_writable()?;
        let mut next = self.contents.clone();
        change(&mut next);
        next.recount();
        write_atomically(&self.dir, &self.path, &next)?;
        self.contents = next;
        Ok(())
    }
}

/// `None`: no file; `Some(Err(reason))`: not a registry.
fn read(path: &Path) -> Result<Option<Result<Contents, String>>, ShmError> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(ShmError::io(format!("read registry {}", path.display()), e)),
    };
    Ok(Some(
        serde_json::from_slice::<Contents>(&bytes)
            .map(|mut c| {
                c.recount();
                c
            })
            .map_err(|e| e.to_string()),
    ))
}

fn write_atomically(dir: &Path, path: &Path, contents: &Contents) -> Result<(), ShmError> {
    let tmp = dir.join(format!(".{REGISTRY_FILE}.tmp-{}", std::process::id()));
    let io = |what: &str, e| ShmError::io(format!("{what} {}", tmp.display()), e);
    let mut json =
        serde_json::to_vec_pretty(contents).map_err(|e| io("serialize registry for", e.into()))?;
    json.push(b'\n');
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| io("create", e))?;
    let written = file
        .write_all(&json)
        .and_then(|()| file.sync_all())
        .map_err(|e| io("write", e))
        .and_then(|()| {
            std::fs::rename(&tmp, path)
                .map_err(|e| ShmError::io(format!("replace {}", path.display()), e))
        });
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written?;
    // The rename is durable only once the directory is synced.
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| ShmError::io(format!("sync state dir {}", dir.display()), e))
}

/// Formats `t` as RFC 3339 in UTC with second precision: `2026-11-22T10:00:00Z`
/// (by `humantime`). Times before 1970 are written as the epoch.
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
///
/// let t = UNIX_EPOCH + Duration::from_secs(1_795_341_600);
/// assert_eq!(modsynth_shm::rfc3339_utc(t), "2026-11-22T10:00:00Z");
/// ```
pub fn rfc3339_utc(t: SystemTime) -> String {
    // humantime panics on times before the epoch; a registry date is never one
    // unless the clock is wrong, and then the epoch says so plainly.
    humantime::format_rfc3339_seconds(t.max(UNIX_EPOCH)).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::TempDir;
    use std::os::unix::fs::PermissionsExt;
    use std::time::Duration;

    fn sample() -> (Allocation, Worker) {
        (
            Allocation::new(
                "vco1.state",
                "/live-vco1-state",
                4096,
                "state_snapshot",
                "worker:4711",
            ),
            Worker {
                pid: 4711,
                jack_client: "modsynth-w07".into(),
                role: Role::Primary,
                module: Some("vco1".into()),
            },
        )
    }

    #[test]
    fn serde_round_trip_through_the_file() {
        let dir = TempDir::new();
        let state = dir.0.join("inst");
        let (mut reg, warning) = Registry::open(&state).unwrap();
        assert!(matches!(warning, Some(Warning::Missing { .. })));
        assert_eq!(
            std::fs::metadata(&state).unwrap().permissions().mode() & 0o777,
            0o700
        );
        let (a, w) = sample();
        let lfo = Allocation::new(
            "lfo1.state",
            "/live-lfo1-state",
            320,
            "state_snapshot",
            "worker:12",
        );
        let spare = Worker {
            pid: 12,
            jack_client: "modsynth-w01".into(),
            role: Role::Spare,
            module: None,
        };
        reg.replace(vec![a, lfo.clone()], vec![w, spare.clone()])
            .unwrap();
        reg.set_leaked_count(3).unwrap();
        let (again, warning) = Registry::open(&state).unwrap();
        assert_eq!(warning, None);
        assert_eq!(again.allocations(), reg.allocations());
        assert_eq!(again.workers(), reg.workers());
        assert_eq!(
            again.stats(),
            Stats {
                total_allocated: 4416,
                active_count: 2,
                leaked_count: 3
            }
        );
        assert_eq!(Registry::load(&state).unwrap().workers().len(), 2);
        reg.replace(vec![lfo], vec![spare]).unwrap();
        let again = Registry::open(&state).unwrap().0;
        assert_eq!((again.allocations().len(), again.workers().len()), (1, 1));
        assert_eq!(again.stats().total_allocated, 320);
        // File private, no temp files left behind.
        let meta = std::fs::metadata(reg.path()).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        let files: Vec<_> = std::fs::read_dir(&state)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(files, vec![REGISTRY_FILE.to_string()]);
    }

    #[test]
    fn the_design_example_reads() {
        let dir = TempDir::new();
        let json = r#"{ "allocations": [ { "id": "vco1.state", "size": 4096, "type": "state_snapshot",
            "owner": "worker:4711", "created": "2026-11-22T10:00:00Z" } ],
          "workers": [ { "pid": 4711, "jack_client": "modsynth-w07", "role": "primary", "module": "vco1" } ],
          "stats": { "total_allocated": 16384, "active_count": 4, "leaked_count": 0 } }"#;
        std::fs::write(dir.0.join(REGISTRY_FILE), json).unwrap();
        let (reg, warning) = Registry::open(&dir.0).unwrap();
        assert_eq!(warning, None);
        assert_eq!(reg.allocations()[0].segment, "");
        assert_eq!(reg.allocations()[0].kind, "state_snapshot");
        assert_eq!(reg.workers()[0].role, Role::Primary);
        // Stats are recounted from the allocations, not trusted.
        assert_eq!(
            (reg.stats().total_allocated, reg.stats().active_count),
            (4096, 1)
        );
    }

    #[test]
    fn corrupt_files_give_a_warning_and_an_empty_registry() {
        let cases: [&[u8]; 7] = [
            b"\x00\xff\xfe garbage \x13\x37",
            b"",
            br#"{ "allocations": [ { "id": "vco1.state", "size": 40"#,
            br#"{ "allocations": "none", "workers": [] }"#,
            br#"{ "allocations": [ { "id": 1, "size": "big", "type": "x", "owner": "o", "created": "c" } ], "workers": [] }"#,
            br#"{ "allocations": [], "workers": [ { "pid": -1, "jack_client": "c", "role": "boss" } ] }"#,
            b"[1, 2, 3]",
        ];
        for (i, bytes) in cases.iter().enumerate() {
            let dir = TempDir::new();
            std::fs::write(dir.0.join(REGISTRY_FILE), bytes).unwrap();
            let (reg, warning) = Registry::open(&dir.0).unwrap();
            assert!(
                reg.allocations().is_empty() && reg.workers().is_empty(),
                "case {i}"
            );
            let Some(Warning::Corrupt {
                kept_at: Some(kept),
                ..
            }) = &warning
            else {
                panic!("case {i}: {warning:?}");
            };
            assert_eq!(
                std::fs::read(kept).unwrap(),
                *bytes,
                "case {i}: bad file kept"
            );
            let text = warning.as_ref().unwrap().to_string();
            assert!(
                text.contains("corrupt") && text.contains("rebuilt"),
                "{text}"
            );
            // The rebuilt registry is on disk and valid.
            assert_eq!(Registry::open(&dir.0).unwrap().1, None, "case {i}");
            assert!(Registry::load(&dir.0).is_ok());
        }
    }

    #[test]
    fn load_is_read_only_and_reports_bad_files() {
        let dir = TempDir::new();
        let err = Registry::load(&dir.0).unwrap_err().to_string();
        assert!(err.contains("does not exist"), "{err}");
        std::fs::write(dir.0.join(REGISTRY_FILE), b"{").unwrap();
        let err = Registry::load(&dir.0).unwrap_err().to_string();
        assert!(err.contains("corrupt"), "{err}");
        assert_eq!(std::fs::read(dir.0.join(REGISTRY_FILE)).unwrap(), b"{");
        Registry::open(&dir.0).unwrap();
        let mut reader = Registry::load(&dir.0).unwrap();
        let (a, w) = sample();
        assert!(reader.replace(vec![a], vec![w]).is_err());
        assert!(reader.set_leaked_count(1).is_err());
    }

    #[test]
    fn rfc3339_matches_known_dates() {
        let at = |s| rfc3339_utc(UNIX_EPOCH + Duration::from_secs(s));
        assert_eq!(at(0), "1970-01-01T00:00:00Z");
        assert_eq!(at(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(at(1_709_251_199), "2024-02-29T23:59:59Z");
        assert_eq!(at(4_102_444_800), "2100-01-01T00:00:00Z");
        assert_eq!(
            rfc3339_utc(UNIX_EPOCH - Duration::from_secs(5)),
            "1970-01-01T00:00:00Z"
        );
    }
}

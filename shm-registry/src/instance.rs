//! Where an instance keeps its state, and how to tell whether it is still running.
//!
//! An instance's state dir is `<base>/<instance>/` with `<base>` from
//! [`default_base_dir`]. Its supervisor holds an exclusive `flock` on
//! `<state dir>/supervisor.pid` ([`InstanceLock`]) for as long as it runs and writes
//! its pid into that file. The kernel drops the lock when the process dies, however
//! it dies (SIGKILL included), and a reused pid cannot fake it — so "the lock can be
//! taken" means "this instance's supervisor is gone", which is what [`gc`](crate::gc)
//! relies on.

use crate::ShmError;
use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::MetadataExt;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Name of the lock file in a state dir.
///
/// ```
/// assert_eq!(modsynth_shm::LOCK_FILE, "supervisor.pid");
/// ```
pub const LOCK_FILE: &str = "supervisor.pid";

/// The directory that holds one state dir per instance: `$XDG_RUNTIME_DIR/modsynth`,
/// or `<temp dir>/modsynth-<uid>` when `XDG_RUNTIME_DIR` is unset or empty.
///
/// ```
/// let base = modsynth_shm::default_base_dir();
/// assert!(base.ends_with("modsynth") || base.to_string_lossy().contains("modsynth-"));
/// ```
pub fn default_base_dir() -> PathBuf {
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(run) if !run.is_empty() => PathBuf::from(run).join("modsynth"),
        _ => std::env::temp_dir().join(format!("modsynth-{}", nix::unistd::getuid())),
    }
}

/// Creates `dir` (and its missing parents) with mode 0700 if it does not exist, and
/// makes it 0700 if it is open to group or others.
///
/// ```
/// use std::os::unix::fs::PermissionsExt;
///
/// let dir = std::env::temp_dir().join(format!("doc-ensure-{}/inst", std::process::id()));
/// modsynth_shm::ensure_state_dir(&dir)?;
/// assert_eq!(std::fs::metadata(&dir)?.permissions().mode() & 0o777, 0o700);
/// # std::fs::remove_dir_all(dir.parent().unwrap())?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn ensure_state_dir(dir: &Path) -> Result<(), ShmError> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| ShmError::io(format!("create state dir {}", dir.display()), e))?;
    // The dir itself, not what a symlink points to: a link planted in a shared
    // place (/tmp) must not steer the lock, registry and metrics elsewhere.
    let meta = std::fs::symlink_metadata(dir)
        .map_err(|e| ShmError::io(format!("read state dir {}", dir.display()), e))?;
    if meta.file_type().is_symlink() {
        return Err(ShmError::io(
            format!("use {} as state dir", dir.display()),
            std::io::Error::other("it is a symlink; remove it or pick another"),
        ));
    }
    // Ours, and so is the default base above it (`/tmp/modsynth-<uid>` could have
    // been made by another user first): files inside a private dir of ours cannot
    // be planted or swapped by anyone else, so the files in it need no checks of
    // their own.
    let euid = nix::unistd::geteuid().as_raw();
    let parent = dir.parent().filter(|p| *p == default_base_dir());
    for (path, uid) in std::iter::once((dir, meta.uid())).chain(
        parent
            .and_then(|p| std::fs::symlink_metadata(p).ok().map(|m| (p, m)))
            .map(|(p, m)| {
                (
                    p,
                    if m.file_type().is_symlink() {
                        u32::MAX
                    } else {
                        m.uid()
                    },
                )
            }),
    ) {
        if uid != euid {
            return Err(ShmError::io(
                format!("use {} as state dir", dir.display()),
                std::io::Error::other(format!(
                    "{} belongs to another user (or is a symlink); remove it or pick \
                     another --state-dir",
                    path.display()
                )),
            ));
        }
    }
    if !meta.is_dir() {
        return Err(ShmError::io(
            format!("use {} as state dir", dir.display()),
            std::io::Error::other("it is not a directory; remove it or pick another"),
        ));
    }
    if meta.permissions().mode() & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(|e| {
            ShmError::io(
                format!(
                    "make state dir {} private (it is open to others)",
                    dir.display()
                ),
                e,
            )
        })?;
    }
    Ok(())
}

/// Proof that this process is the one running supervisor of an instance: an exclusive
/// `flock` on `<state dir>/supervisor.pid`, held until dropped (or the process dies).
///
///
/// An instance's state dir is `<base>/<instance>/` with `<base>` from
/// [`default_base_dir`]. Its supervisor holds an exclusive `flock` on
/// `<state dir>/supervisor.pid` ([`InstanceLock`]) for as long as it runs and writes
/// its pid into that file. The kernel drops the lock when the process dies, however
/// it dies (SIGKILL included), and a reused pid cannot fake it — so "the lock can be
/// taken" means "this instance's supervisor is gone", which is what [`gc`](crate::gc)
/// relies on.
///
/// # Example
///
/// ```
/// use modsynth_shm::{InstanceLock, ShmError};
///
/// let dir = std::env::temp_dir().join(format!("doc-lock-{}", std::process::id()));
/// let lock = InstanceLock::acquire(&dir)?;
/// let again = InstanceLock::acquire(&dir);
/// assert!(matches!(again, Err(ShmError::InstanceRunning { pid: Some(_), .. })));
/// drop(lock);
/// let _lock = InstanceLock::acquire(&dir)?;
/// # std::fs::remove_dir_all(&dir).unwrap();
/// # Ok::<(), ShmError>(())
/// ```
#[derive(Debug)]
pub struct InstanceLock {
    _file: Flock<File>,
    path: PathBuf,
}

impl InstanceLock {
    /// Creates `state_dir` (0700) if needed, takes the lock without waiting and
    /// writes this process's pid into the lock file. Fails with
    /// [`ShmError::InstanceRunning`] if another live process holds it.
    ///
    /// ```
    /// let dir = std::env::temp_dir().join(format!("doc-acq-{}", std::process::id()));
    /// let lock = modsynth_shm::InstanceLock::acquire(&dir)?;
    /// let pid = std::fs::read_to_string(lock.path()).unwrap();
    /// assert_eq!(pid.trim(), std::process::id().to_string());
    /// # std::fs::remove_dir_all(&dir).unwrap();
    /// # Ok::<(), modsynth_shm::ShmError>(())
    /// ```
    pub fn acquire(state_dir: &Path) -> Result<InstanceLock, ShmError> {
        ensure_state_dir(state_dir)?;
        let path = state_dir.join(LOCK_FILE);
        let mut file = try_lock(&path)?.map_err(|pid| ShmError::InstanceRunning {
            path: path.display().to_string(),
            pid,
        })?;
        let pid = format!("{}\n", std::process::id());
        file.set_len(0)
            .and_then(|()| file.write_all(pid.as_bytes()))
            .and_then(|()| file.sync_all())
            .map_err(|e| ShmError::io(format!("write {}", path.display()), e))?;
        Ok(InstanceLock { _file: file, path })
    }

    /// The lock file, `<state dir>/supervisor.pid`.
    ///
    /// ```
    /// let dir = std::env::temp_dir().join(format!("doc-path-{}", std::process::id()));
    /// let lock = modsynth_shm::InstanceLock::acquire(&dir)?;
    /// assert_eq!(lock.path(), dir.join("supervisor.pid"));
    /// # std::fs::remove_dir_all(&dir).unwrap();
    /// # Ok::<(), modsynth_shm::ShmError>(())
    /// ```
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Opens (creating, 0600) and tries to lock `path`. `Ok(Err(pid))`: someone else
/// holds it (their pid, if the file says).
pub(crate) fn try_lock(path: &Path) -> Result<Result<Flock<File>, Option<u32>>, ShmError> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .map_err(|e| ShmError::io(format!("open {}", path.display()), e))?;
    match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(locked) => Ok(Ok(locked)),
        Err((mut file, Errno::EWOULDBLOCK)) => {
            let mut text = String::new();
            let _ = file.rewind().and_then(|()| file.read_to_string(&mut text));
            Ok(Err(text.trim().parse().ok()))
        }
        Err((_, e)) => Err(ShmError::io(format!("lock {}", path.display()), e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_state_dir_that_is_a_symlink_is_refused() {
        let base = std::env::temp_dir().join(format!("modsynth-linked-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        std::fs::create_dir_all(base.join("elsewhere")).unwrap();
        std::os::unix::fs::symlink(base.join("elsewhere"), base.join("inst")).unwrap();
        let e = ensure_state_dir(&base.join("inst"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("symlink"), "{e}");
        assert!(InstanceLock::acquire(&base.join("inst")).is_err());
        assert!(!base.join("elsewhere/supervisor.pid").exists());
        std::fs::remove_dir_all(&base).unwrap();
    }
}

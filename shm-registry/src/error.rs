//! The one error type of this crate; every message says what to do about it.

use std::fmt;
use std::io;

/// What went wrong with a segment, the registry or the state dir.
///
/// The `Display` text is meant for the user: it names the object and says what to do.
///
/// ```
/// use modsynth_shm::{Segment, ShmError};
///
/// let err = Segment::open("/doc-nobody-state").unwrap_err();
/// assert!(matches!(err, ShmError::NotFound { .. }));
/// assert!(err.to_string().contains("/doc-nobody-state"));
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum ShmError {
    /// A segment name does not follow `/<instance>-<owner>-<kind>`.
    InvalidName {
        /// The name as given.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// [`Segment::create`](crate::Segment::create) found the name taken.
    AlreadyExists {
        /// The segment name.
        name: String,
    },
    /// The segment does not exist.
    NotFound {
        /// The segment name.
        name: String,
    },
    /// The segment exists but is not what it should be (wrong magic, version, kind or
    /// layout, too small, not yet initialized).
    Corrupt {
        /// The segment name.
        name: String,
        /// What was found.
        reason: String,
    },
    /// Another live supervisor holds the instance lock.
    InstanceRunning {
        /// The lock file.
        path: String,
        /// The pid written in it, if readable.
        pid: Option<u32>,
    },
    /// A system call failed.
    Io {
        /// What was being done, naming the object.
        what: String,
        /// The error from the system.
        source: io::Error,
    },
}

impl ShmError {
    pub(crate) fn io(what: impl Into<String>, source: impl Into<io::Error>) -> ShmError {
        ShmError::Io {
            what: what.into(),
            source: source.into(),
        }
    }

    pub(crate) fn corrupt(name: &str, reason: impl Into<String>) -> ShmError {
        ShmError::Corrupt {
            name: name.to_string(),
            reason: reason.into(),
        }
    }
}

impl From<nix::errno::Errno> for ShmError {
    fn from(e: nix::errno::Errno) -> ShmError {
        ShmError::io("system call", e)
    }
}

impl fmt::Display for ShmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ShmError::InvalidName { name, reason } => write!(
                f,
                "invalid shared-memory name '{name}': {reason}; use /<instance>-<owner>-<kind> \
                 with only letters, digits, '.', '_' and '-'"
            ),
            ShmError::AlreadyExists { name } => write!(
                f,
                "shared-memory segment {name} already exists: another process of this \
                 instance made it, or a previous run leaked it; run `modsynth shm gc`, or \
                 remove /dev/shm{name} if no modsynth instance with this name is running"
            ),
            ShmError::NotFound { name } => write!(
                f,
                "shared-memory segment {name} does not exist: its owner never created it \
                 or has already freed it (see `modsynth shm ls`)"
            ),
            ShmError::Corrupt { name, reason } => write!(
                f,
                "shared-memory segment {name} is not usable: {reason}; it was not touched \
                 — remove it with `modsynth shm gc` (or /dev/shm{name}) once its instance \
                 is stopped"
            ),
            ShmError::InstanceRunning { path, pid } => {
                write!(f, "this instance is already running")?;
                if let Some(pid) = pid {
                    write!(f, " (pid {pid})")?;
                }
                write!(
                    f,
                    ": {path} is locked; stop it first or pick another instance name"
                )
            }
            ShmError::Io { what, source } => write!(f, "cannot {what}: {source}"),
        }
    }
}

impl std::error::Error for ShmError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ShmError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

//! Shared memory for modsynth: the segments that let a standby continue a module
//! exactly where its primary stopped, and the bookkeeping that keeps them from leaking.
//!
//! - [`Segment`]: a named POSIX shared-memory segment (`/<instance>-<owner>-<kind>`,
//!   mode 0600), mapped read/write. Dropping unmaps; unlinking is explicit.
//! - [`StateSegment`]: a module's double-buffered DSP state, the `published` word,
//!   the `owner` word used for fencing and the [`Handover`] word that moves a module
//!   between two live workers on a planned frame.
//! - [`Registry`]: the JSON registry in the instance's state dir, rewritten atomically.
//! - [`scan`] / [`gc`]: compare `/dev/shm` with the registry and live pids; remove
//!   the segments of instances whose supervisor is gone ([`InstanceLock`]).
//!
//! Nothing here talks to JACK, and nothing allocates or locks on the paths meant for
//! the real-time thread (the atomic accessors of the blocks).
//!
//! ```
//! use modsynth_shm::{Segment, StateSegment};
//!
//! let name = format!("/doc{}-vco1-state", std::process::id());
//! let primary = StateSegment::create(&name, 7, 128, 1024)?;
//! let standby = StateSegment::open(&name)?; // another process in real life
//! assert!(primary.try_take_ownership(0, 11));
//! primary.publish(256, 1);
//! assert_eq!(standby.published(), (256, 1));
//! // The primary dies: the standby fences it out and continues from slot 1.
//! assert!(standby.try_take_ownership(11, 12));
//! assert!(!primary.try_take_ownership(11, 11));
//! Segment::unlink(&name)?;
//! # Ok::<(), modsynth_shm::ShmError>(())
//! ```

#![deny(missing_docs)]

mod blocks;
mod error;
mod instance;
mod registry;
mod scan;
mod segment;
#[cfg(test)]
mod test_util;

pub use blocks::{Handover, StateSegment};
pub use error::ShmError;
pub use instance::{default_base_dir, ensure_state_dir, InstanceLock, LOCK_FILE};
pub use registry::{
    rfc3339_utc, Allocation, Registry, Role, Stats, Warning, Worker, REGISTRY_FILE,
};
pub use scan::{adopt, gc, pid_alive, scan, GcReport, ScanEntry, ScanReport, SegmentStatus};
pub use segment::{check_name, segment_name, Segment};

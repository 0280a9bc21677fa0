//! A modsynth worker: one process, one JACK client, at most one module at a time
//! (or, as a standby host, up to N standbys in one client: see [`seats`]).
//!
//! - [`coalesce`]: parameter changes that meet a full ring (the last value wins).
//! - [`dsp`]: the modules themselves, as plain-data state and kernels.
//! - [`denormals`]: flush-to-zero on the threads that run DSP.
//! - [`engine`]: the real-time engine that plays a module and applies parameter
//!   changes at their sample, fed through `rtrb` rings.
//! - [`jack_host`]: runs the engine inside a JACK client.
//! - [`midi`]: a period's MIDI messages, as the real-time thread hands them over.
//! - [`shared_state`]: a module's state in shared memory, for hot-standby failover.
//! - [`quick_exit`]: a killed worker leaves the JACK graph in a millisecond, not ten.
//! - [`pooled`]: the warm pool worker serving `modsynthd` over `ipc-channel`.
//! - [`seats`]: one module's part of a pooled worker; a standby host has several.
//! - [`standby`]: a standby's watch over its primary, asleep until it dies.

#![deny(missing_docs)]

pub mod coalesce;
pub mod denormals;
pub mod dsp;
pub mod engine;
pub mod gate;
pub mod jack_host;
pub mod midi;
pub mod pooled;
pub mod quick_exit;
pub mod seats;
pub mod shared_state;
pub mod standby;

// In the unit tests, allocations inside `assert_no_alloc` abort: that is how the
// engine's tests prove the real-time path does not allocate.
#[cfg(test)]
#[global_allocator]
static ALLOCATOR: assert_no_alloc::AllocDisabler = assert_no_alloc::AllocDisabler;

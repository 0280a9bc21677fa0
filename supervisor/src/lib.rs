//! `modsynthd`, the modsynth supervisor.
//!
//! - [`adoption`]: finds the workers a dead supervisor left and takes them back.
//! - [`channels`]: every worker's ipc channel in the core's loop, read by the core's
//!   own thread.
//! - [`core`]: one struct owns all state and decides; everything else sends it events.
//! - [`event_loop`]: the core's one poll loop: the OSC socket, every worker's pidfd
//!   and channel, the inbox the other threads post to, and the timers.
//! - [`jack_client`]: the supervisor's own JACK client and graph watcher.
//! - [`metadata_deadlocks`]: keeps Berkeley DB's deadlock detector on jackd2's
//!   metadata database, which would otherwise stop the server for good.
//! - [`metadata_room`]: room in that database for the clients that die unclosed.
//! - [`patchbay`]: the thread that makes JACK connections, so a stuck server
//!   never holds the core.
//! - [`placement`]: where a module's hot standby sits (a seat of a standby host,
//!   or a worker of its own), as data.
//! - [`restart`]: what happens to a module whose worker died (restart policy as data).
//! - [`sentinel`]: every worker's pidfd in the core's loop: deaths, how they ended,
//!   reaping.
//! - [`sets_dir`]: the sets directory, the only files OSC can read or write.
//! - [`spawn`]: starts pool workers and hands their channels to the loop.
//! - [`osc_server`]: the OSC socket the loop reads: decoding, JACK time stamps,
//!   allowlist, traffic counts.
//! - [`osc_tcp`]: OSC over TCP (SLIP frames) beside UDP, replies on the connection.
//! - [`runtime`]: the real effects (replies, ipc, processes, JACK connections).
//! - [`state`]: the state dir: instance lock, shared-memory registry (written on its
//!   own thread), leak scan, `metrics.json`.

#![deny(missing_docs)]

pub mod adoption;
pub mod channels;
pub mod core;
pub mod event_loop;
pub mod jack_client;
pub mod metadata_deadlocks;
pub mod metadata_room;
pub mod osc_server;
pub mod osc_tcp;
pub mod patchbay;
pub mod placement;
pub mod restart;
pub mod runtime;
pub mod sentinel;
pub mod sets_dir;
pub mod spawn;
pub mod state;

//! `modsynthd`, the modsynth supervisor.
//!
//! - [`adoption`]: finds the workers a dead supervisor left and takes them back.
//! - [`core`]: one struct owns all state and decides; everything else sends it events.
//! - [`jack_client`]: the supervisor's own JACK client and graph watcher.
//! - [`restart`]: what happens to a module whose worker died (restart policy as data).
//! - [`sentinel`]: every worker's pidfd in one epoll loop: deaths and how they ended.
//! - [`sets_dir`]: the sets directory, the only files OSC can read or write.
//! - [`spawn`]: starts pool workers and forwards what they say.
//! - [`osc_server`]: receives OSC, decodes it and stamps it with JACK time.
//! - [`osc_tcp`]: OSC over TCP (SLIP frames) beside UDP, replies on the connection.
//! - [`runtime`]: the real effects (replies, ipc, processes, JACK connections).
//! - [`state`]: the state dir: instance lock, shared-memory registry (written on its
//!   own thread), leak scan, `metrics.json`.

pub mod adoption;
pub mod core;
pub mod jack_client;
pub mod osc_server;
pub mod osc_tcp;
pub mod restart;
pub mod runtime;
pub mod sentinel;
pub mod sets_dir;
pub mod spawn;
pub mod state;

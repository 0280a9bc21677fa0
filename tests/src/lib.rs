//! Test harness for modsynth.
//!
//! One concept per module:
//!
//! - [`jack_server`]: a private JACK server (dummy backend, unique name) per test, and
//!   the one safe way to open harness clients on it.
//! - [`capture`]: a JACK client that records what arrives on its inputs, with the JACK
//!   frame time of the first sample.
//! - [`player`]: a JACK client that plays given buffers (gates, impulses) and reports
//!   the frame time of their first sample.
//! - [`midi_player`]: a JACK client that plays timed MIDI messages and reports the
//!   frame time they started at.
//! - [`analysis`]: pure signal analysis (pitch by FFT, levels, spectra, gaps,
//!   discontinuities); no JACK.
//! - [`continuity`]: phase continuity of a steady tone (skipped or repeated
//!   periods, the clicks no silent sample shows); no JACK.
//! - [`supervisor`]: runs `modsynthd` on a private server and talks OSC to it.
//! - [`workers`]: finding the project's binaries and waiting for JACK ports.
//! - [`test_plugins`]: LV2 plugins the tests build (`crashy`).
//! - [`threads`]: wake-ups and CPU time of each thread of a process, from `/proc`.
//!
//! The bench binary (`modsynth-bench`, `scripts/bench`) lives in `src/bin/bench/`.

#![deny(missing_docs)]

pub mod analysis;
pub mod capture;
pub mod continuity;
pub mod jack_server;
pub mod midi_player;
pub mod player;
pub mod supervisor;
pub mod test_plugins;
pub mod threads;
pub mod workers;

pub use capture::{Capture, Recording};
pub use jack_server::JackServer;
pub use player::Player;

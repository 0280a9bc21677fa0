//! The control plane of modsynth: everything that talks to a user, a file or the
//! network about modules. The modules themselves (catalog, parameters, names, the
//! worker protocol) are plain data in [`modsynth_model`]; what the processes say to
//! each other over OSC, and set files, are in [`modsynth_protocol`], re-exported
//! here under their old paths.
//!
//! - [`capacity`]: how many workers and JACK clients a set needs, and whether it fits.
//! - [`client`]: an OSC client that waits for `modsynthd`'s answers.
//! - [`osc`]: the OSC address space: requests decoded and checked, replies encoded.
//! - [`packet`]: raw OSC packets into checked requests with due times (hostile input).
//! - [`record`]: records JACK ports into a WAV file (`modsynth record`).
//! - [`setfile`]: set files (a whole patch in TOML): checked loading, atomic saving.
//! - [`slip`]: SLIP framing of OSC packets over TCP (OSC 1.1).
//! - [`status`]: what `/status` reports.
//! - [`reference`](mod@reference): the module reference (plain text and Markdown) made from the catalog.

#![deny(missing_docs)]

pub mod client;
pub mod plugins;
pub mod record;
pub mod reference;

pub use modsynth_protocol::{capacity, osc, packet, setfile, slip, status};

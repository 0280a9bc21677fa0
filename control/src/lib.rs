//! The control plane of modsynth: everything that talks to a user, a file or the
//! network about modules. The modules themselves (catalog, parameters, names, the
//! worker protocol) are plain data in [`modsynth_model`].
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
//!
//! The model's modules are re-exported here under their old paths
//! (`modsynth_control::catalog`, ...) for code written before the split; new code
//! names [`modsynth_model`] directly.

pub mod capacity;
pub mod client;
pub mod osc;
pub mod packet;
pub mod record;
pub mod reference;
pub mod setfile;
pub mod slip;
pub mod status;

#[doc(no_inline)]
pub use modsynth_model::{catalog, names, param, protocol};
#[doc(no_inline)]
pub use modsynth_process::logging;

//! What modsynth's processes say to each other and the files they share: the OSC
//! address space, the packets it arrives in, `/status` and set files. Shared by
//! `modsynthd` (which serves it) and the `modsynth` CLI (which speaks it); it links
//! no JACK and no CLI. The modules themselves (catalog, parameters, names, the
//! worker protocol) are plain data in [`modsynth_model`].
//!
//! - [`capacity`]: how many workers and JACK clients a set needs, and whether it fits.
//! - [`osc`]: the OSC address space: requests decoded and checked, replies encoded.
//! - [`packet`]: raw OSC packets into checked requests with due times (hostile input).
//! - [`setfile`]: set files (a whole patch in TOML): checked loading, atomic saving.
//! - [`slip`]: SLIP framing of OSC packets over TCP (OSC 1.1).
//! - [`status`]: what `/status` reports.

#![deny(missing_docs)]

pub mod capacity;
pub mod osc;
pub mod packet;
pub mod setfile;
pub mod slip;
pub mod status;

//! The control plane of modsynth.
//!
//! - [`catalog`]: which module types exist, with their ports and parameters.
//! - [`client`]: an OSC client that waits for `modsynthd`'s answers.
//! - [`histogram`]: medians and p99s of measurements, one way for every part.
//! - [`logging`]: the `tracing` set-up every binary shares.
//! - [`names`]: what a module id may look like.
//! - [`osc`]: the OSC address space: requests decoded and checked, replies encoded.
//! - [`packet`]: raw OSC packets into checked requests with due times (hostile input).
//! - [`param`]: checks parameter values against the catalog.
//! - [`protocol`]: the messages between the supervisor and its workers.
//! - [`record`]: records JACK ports into a WAV file (`modsynth record`).
//! - [`setfile`]: set files (a whole patch in TOML): checked loading, atomic saving.
//! - [`slip`]: SLIP framing of OSC packets over TCP (OSC 1.1).
//! - [`status`]: what `/status` reports.
//! - [`reference`](mod@reference): the module reference (plain text and Markdown) made from the catalog.

pub mod catalog;
pub mod client;
pub mod histogram;
pub mod logging;
pub mod names;
pub mod osc;
pub mod packet;
pub mod param;
pub mod protocol;
pub mod record;
pub mod reference;
pub mod setfile;
pub mod slip;
pub mod status;

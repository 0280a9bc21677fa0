//! LV2 plugins as modsynth module types.
//!
//! - [`discover`]: which plugins are installed (through lilv, via the `livi`
//!   crate), what each one's ports and controls are, and why modsynth refuses the
//!   ones it cannot host (a required feature it does not offer, atom outputs and
//!   atom inputs without MIDI, more ports or controls than a module holds).
//! - [`spec`]: a plugin as a catalog entry (`lv2:<URI>`): audio and CV ports
//!   become JACK ports, an atom input that takes MIDI the module's JACK MIDI
//!   input, control inputs become parameters with the plugin's range,
//!   default, enumeration, toggle and integer hints.
//! - [`host`]: one running plugin instance, made off the audio thread, whose
//!   `run` never allocates.
//! - [`state`]: a plugin's own state (the LV2 state extension) as Turtle text:
//!   saved from a playing instance, restored into a new one.
//!
//! A process that wants `lv2:` types in its catalog calls [`install`] once at
//! start; from then on `modsynth_model::catalog::lookup("lv2:lowpass_iir")`
//! resolves the plugin. The first lookup in a process loads lilv's world and
//! describes every plugin once (39 ms here with 143 plugins installed, in
//! `modsynthd`'s core thread on the first `lv2:` create); later ones are a scan of
//! that list.

#![deny(missing_docs)]

pub mod discover;
pub mod host;
pub mod spec;
pub mod state;

/// Makes the catalog resolve `lv2:<short name or URI>` through this crate.
/// Call [`spec::set_sample_rate`] first where the JACK server's rate is known.
pub fn install() {
    modsynth_model::catalog::runtime::set_resolver(spec::resolve);
}

//! `lfo`: the low-frequency oscillator.
//!
//! ```
//! use modsynth_model::catalog::lfo;
//!
//! assert_eq!(lfo::SPEC.params[lfo::RATE].name, "rate");
//! ```

use super::{choice, float, octaves, output, params, ports, Kind, ModuleSpec, Signal};
use super::{ParamSpec, PortSpec, WAVEFORMS};

/// Parameter: frequency, Hz.
pub const RATE: usize = 0;
/// Parameter: waveform, an index into [`WAVEFORMS`].
pub const WAVE: usize = 1;
/// Parameter: amplitude of the wave.
pub const DEPTH: usize = 2;
/// Parameter: added to the output.
pub const OFFSET: usize = 3;
/// Output: the modulation signal.
pub const OUT: usize = 0;

const PORTS: [PortSpec; 1] = ports([(OUT, output("out", Signal::Cv, "the modulation signal"))]);

const PARAMS: [ParamSpec; 4] = params([
    (
        RATE,
        octaves(float("rate", "Hz", 0.01, 100.0, 1.0, "frequency")),
    ),
    (WAVE, choice("wave", WAVEFORMS, 0, "waveform")),
    (
        DEPTH,
        float("depth", "", 0.0, 8.0, 1.0, "amplitude of the wave"),
    ),
    (
        OFFSET,
        float("offset", "", -8.0, 8.0, 0.0, "added to the output"),
    ),
]);

/// The `lfo` module type.
pub const SPEC: ModuleSpec = ModuleSpec {
    name: "lfo",
    kind: Kind::Lfo,
    doc: "Low-frequency oscillator: `offset + depth * wave`.",
    ports: &PORTS,
    params: &PARAMS,
};

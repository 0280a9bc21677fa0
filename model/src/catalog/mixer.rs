//! `mixer`: the four-input mixer.
//!
//! ```
//! use modsynth_model::catalog::mixer;
//!
//! assert_eq!(mixer::SPEC.params[mixer::MASTER].name, "master");
//! ```

use super::{float, input, output, params, ports, Kind, ModuleSpec, ParamSpec, PortSpec, Signal};

/// Parameters: the level of each input, input `n` at `GAINS[n]`.
pub const GAINS: [usize; 4] = [0, 1, 2, 3];
/// Parameter: the level of the sum.
pub const MASTER: usize = 4;
/// Inputs: the four inputs, `in1` at `INPUTS[0]`.
pub const INPUTS: [usize; 4] = [0, 1, 2, 3];
/// Output: the mix.
pub const OUT: usize = 0;

const PORTS: [PortSpec; 5] = ports([
    (INPUTS[0], input("in1", Signal::Audio, "input 1")),
    (INPUTS[1], input("in2", Signal::Audio, "input 2")),
    (INPUTS[2], input("in3", Signal::Audio, "input 3")),
    (INPUTS[3], input("in4", Signal::Audio, "input 4")),
    (OUT, output("out", Signal::Audio, "the mix")),
]);

const PARAMS: [ParamSpec; 5] = params([
    (
        GAINS[0],
        float("gain1", "", 0.0, 2.0, 1.0, "level of input 1"),
    ),
    (
        GAINS[1],
        float("gain2", "", 0.0, 2.0, 1.0, "level of input 2"),
    ),
    (
        GAINS[2],
        float("gain3", "", 0.0, 2.0, 1.0, "level of input 3"),
    ),
    (
        GAINS[3],
        float("gain4", "", 0.0, 2.0, 1.0, "level of input 4"),
    ),
    (
        MASTER,
        float("master", "", 0.0, 2.0, 1.0, "level of the sum"),
    ),
]);

/// The `mixer` module type.
pub const SPEC: ModuleSpec = ModuleSpec {
    name: "mixer",
    kind: Kind::Mixer,
    doc: "Four-input mixer: `master * sum(gainN * inN)`.",
    ports: &PORTS,
    params: &PARAMS,
};

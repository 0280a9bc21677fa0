//! `noise`: seeded white noise.
//!
//! ```
//! use modsynth_model::catalog::noise;
//!
//! assert_eq!(noise::SPEC.params[noise::SEED].name, "seed");
//! ```

use super::{float, jumps, output, params, ports, Kind, ModuleSpec, ParamSpec, PortSpec, Signal};

/// Parameter: output amplitude.
pub const GAIN: usize = 0;
/// Parameter: generator seed (a whole number).
pub const SEED: usize = 1;
/// Output: the noise.
pub const OUT: usize = 0;

const PORTS: [PortSpec; 1] = ports([(
    OUT,
    output(
        "out",
        Signal::Audio,
        "uniform white noise, amplitude `gain`",
    ),
)]);

const PARAMS: [ParamSpec; 2] = params([
    (GAIN, float("gain", "", 0.0, 1.0, 0.5, "output amplitude")),
    (
        SEED,
        jumps(float(
            "seed",
            "",
            1.0,
            16777216.0,
            1.0,
            "generator seed (whole number); setting it restarts the sequence",
        )),
    ),
]);

/// The `noise` module type.
pub const SPEC: ModuleSpec = ModuleSpec {
    name: "noise",
    kind: Kind::Noise,
    doc: "White noise from a seeded generator: the same seed gives the same samples.",
    ports: &PORTS,
    params: &PARAMS,
};

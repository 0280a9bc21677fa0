//! `vcf`: the state-variable filter.
//!
//! ```
//! use modsynth_model::catalog::vcf;
//!
//! assert_eq!(vcf::SPEC.params[vcf::CUTOFF].name, "cutoff");
//! ```

use super::{choice, float, input, octaves, output, params, ports, Kind, ModuleSpec, Signal};
use super::{ParamSpec, PortSpec};

/// Filter responses, in the order their index is stored.
pub const FILTER_MODES: &[&str] = &["lowpass", "bandpass", "highpass"];

/// Parameter: filter response, an index into [`FILTER_MODES`].
pub const MODE: usize = 0;
/// Parameter: cutoff frequency, Hz.
pub const CUTOFF: usize = 1;
/// Parameter: resonance, 0..1.
pub const RESONANCE: usize = 2;
/// Input: the signal to filter.
pub const IN: usize = 0;
/// Input: cutoff CV.
pub const IN_CUTOFF_CV: usize = 1;
/// Output: the filtered signal.
pub const OUT: usize = 0;

const PORTS: [PortSpec; 3] = ports([
    (IN, input("in", Signal::Audio, "signal to filter")),
    (
        IN_CUTOFF_CV,
        input(
            "cutoff_cv",
            Signal::Cv,
            "cutoff CV, 1.0 per octave above `cutoff`",
        ),
    ),
    (OUT, output("out", Signal::Audio, "filtered signal")),
]);

const PARAMS: [ParamSpec; 3] = params([
    (MODE, choice("mode", FILTER_MODES, 0, "filter response")),
    (
        CUTOFF,
        octaves(float(
            "cutoff",
            "Hz",
            20.0,
            20000.0,
            1000.0,
            "cutoff frequency",
        )),
    ),
    (
        RESONANCE,
        float(
            "resonance",
            "",
            0.0,
            1.0,
            0.1,
            "0 = none, 1 = maximum (Q 50)",
        ),
    ),
]);

/// The `vcf` module type.
pub const SPEC: ModuleSpec = ModuleSpec {
    name: "vcf",
    kind: Kind::Vcf,
    doc: "State-variable filter (TPT/zero-delay feedback), stable at every setting.",
    ports: &PORTS,
    params: &PARAMS,
};

//! `vca`: the amplifier.
//!
//! ```
//! use modsynth_model::catalog::vca;
//!
//! assert_eq!(vca::SPEC.params[vca::GAIN].name, "gain");
//! ```

use super::{float, input, output, params, ports, Kind, ModuleSpec, ParamSpec, PortSpec, Signal};

/// Parameter: level with nothing at the `cv` input.
pub const GAIN: usize = 0;
/// Input: the signal to amplify.
pub const IN: usize = 0;
/// Input: added to `gain`.
pub const IN_CV: usize = 1;
/// Output: the amplified signal.
pub const OUT: usize = 0;

const PORTS: [PortSpec; 3] = ports([
    (IN, input("in", Signal::Audio, "signal to amplify")),
    (
        IN_CV,
        input(
            "cv",
            Signal::Cv,
            "added to `gain` (patch an envelope here with gain 0)",
        ),
    ),
    (OUT, output("out", Signal::Audio, "amplified signal")),
]);

const PARAMS: [ParamSpec; 1] = params([(
    GAIN,
    float("gain", "", 0.0, 2.0, 1.0, "level with nothing at `cv`"),
)]);

/// The `vca` module type.
pub const SPEC: ModuleSpec = ModuleSpec {
    name: "vca",
    kind: Kind::Vca,
    doc: "Amplifier: `out = in * max(0, gain + cv)`.",
    ports: &PORTS,
    params: &PARAMS,
};

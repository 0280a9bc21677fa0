//! `const`: a manual CV source.
//!
//! ```
//! use modsynth_model::catalog::constant;
//!
//! assert_eq!(constant::SPEC.params[constant::VALUE].name, "value");
//! ```

use super::{float, output, params, ports, Kind, ModuleSpec, ParamSpec, PortSpec, Signal};

/// Parameter: the output value.
pub const VALUE: usize = 0;
/// Output: the value, every sample.
pub const OUT: usize = 0;

const PORTS: [PortSpec; 1] = ports([(OUT, output("out", Signal::Cv, "the value, every sample"))]);

const PARAMS: [ParamSpec; 1] = params([(
    VALUE,
    float("value", "", -10.0, 10.0, 0.0, "the output value"),
)]);

/// The `const` module type.
pub const SPEC: ModuleSpec = ModuleSpec {
    name: "const",
    kind: Kind::Const,
    doc: "Outputs its `value`: a manual CV source.",
    ports: &PORTS,
    params: &PARAMS,
};

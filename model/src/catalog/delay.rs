//! `delay`: the delay line with feedback.
//!
//! ```
//! use modsynth_model::catalog::delay;
//!
//! assert_eq!(delay::SPEC.params[delay::TIME].name, "time");
//! ```

use super::{float, glided, input, output, params, ports, Kind, ModuleSpec, Signal};
use super::{ParamSpec, PortSpec, Smoothing};

/// Parameter: delay time, s.
pub const TIME: usize = 0;
/// Parameter: share of the delayed signal fed back.
pub const FEEDBACK: usize = 1;
/// Parameter: 0 = dry only, 1 = delayed only.
pub const MIX: usize = 2;
/// Input: the signal to delay.
pub const IN: usize = 0;
/// Output: the dry/wet mix.
pub const OUT: usize = 0;

const PORTS: [PortSpec; 2] = ports([
    (IN, input("in", Signal::Audio, "signal to delay")),
    (OUT, output("out", Signal::Audio, "dry/wet mix")),
]);

const PARAMS: [ParamSpec; 3] = params([
    // The glide speed is the pitch shift heard while the time moves: 0.5 s per second
    // plays the delayed signal at 0.5x..1.5x speed, a glide, not a click.
    (
        TIME,
        glided(
            float(
                "time",
                "s",
                0.0,
                2.0,
                0.25,
                "delay time (fractional, cubic interpolation); changes glide at 0.5 s per second",
            ),
            Smoothing::Slew(0.5),
        ),
    ),
    (
        FEEDBACK,
        float(
            "feedback",
            "",
            0.0,
            0.99,
            0.3,
            "share of the delayed signal fed back",
        ),
    ),
    (
        MIX,
        float("mix", "", 0.0, 1.0, 0.5, "0 = dry only, 1 = delayed only"),
    ),
]);

/// The `delay` module type.
pub const SPEC: ModuleSpec = ModuleSpec {
    name: "delay",
    kind: Kind::Delay,
    doc: "Delay line up to 2 s with feedback: `out = (1-mix)*in + mix*delayed`.",
    ports: &PORTS,
    params: &PARAMS,
};

//! `adsr`: the envelope.
//!
//! ```
//! use modsynth_model::catalog::adsr;
//!
//! assert_eq!(adsr::SPEC.params[adsr::SUSTAIN].name, "sustain");
//! ```

use super::{float, glided, input, jumps, output, params, ports, Kind, ModuleSpec, Signal};
use super::{ParamSpec, PortSpec, Smoothing};

/// Parameter: time from 0 to 1, s.
pub const ATTACK: usize = 0;
/// Parameter: time from 1 to `sustain`, s.
pub const DECAY: usize = 1;
/// Parameter: level held while the gate is high.
pub const SUSTAIN: usize = 2;
/// Parameter: time from the level at gate off to 0, s.
pub const RELEASE: usize = 3;
/// Parameter: manual gate, or-ed with the input.
pub const GATE: usize = 4;
/// Parameter: 0 = straight segments, up to 1 = most curved.
pub const CURVE: usize = 5;
/// Input: the gate.
pub const IN_GATE: usize = 0;
/// Output: the envelope.
pub const OUT: usize = 0;

const PORTS: [PortSpec; 2] = ports([
    (
        IN_GATE,
        input(
            "gate",
            Signal::Gate,
            "high (>= 0.5) holds the envelope open",
        ),
    ),
    (OUT, output("out", Signal::Cv, "envelope, 0..1")),
]);

const PARAMS: [ParamSpec; 6] = params([
    // Stage times only set a slope: the level never jumps when they change.
    (ATTACK, jumps(float("attack", "s", 0.0005, 10.0, 0.01, "time from 0 to 1"))),
    (DECAY, jumps(float("decay", "s", 0.001, 10.0, 0.1, "time from 1 to `sustain`"))),
    // Longer than the default ramp: a held note's level glides like a fader.
    (
        SUSTAIN,
        glided(
            float("sustain", "", 0.0, 1.0, 0.7, "level held while the gate is high; changes glide"),
            Smoothing::Ramp(0.02),
        ),
    ),
    (RELEASE, jumps(float("release", "s", 0.001, 10.0, 0.3, "time from the level at gate off to 0"))),
    (GATE, jumps(float("gate", "", 0.0, 1.0, 0.0, "manual gate, or-ed with the input"))),
    // A shape, not a level: changing it bends the rest of a stage, the level itself
    // never jumps.
    (
        CURVE,
        jumps(float(
            "curve",
            "",
            0.0,
            1.0,
            0.0,
            "0 = straight segments; above, exponential ones as analog envelopes have (1 = most curved); stage times stay as set",
        )),
    ),
]);

/// The `adsr` module type.
pub const SPEC: ModuleSpec = ModuleSpec {
    name: "adsr",
    kind: Kind::Adsr,
    doc: "Envelope: attack, decay, sustain, release, linear or exponential (`curve`); gate from the input or the `gate` param.",
    ports: &PORTS,
    params: &PARAMS,
};

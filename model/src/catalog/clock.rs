//! `clock`: MIDI clock to clock, run and reset gates.
//!
//! ```
//! use modsynth_model::catalog::clock;
//!
//! assert_eq!(clock::SPEC.params[clock::DIV].name, "div");
//! ```

use super::{
    float, input, jumps, output, params, ports, Kind, ModuleSpec, ParamSpec, PortSpec, Signal,
};

/// Parameter: MIDI clocks per output pulse.
pub const DIV: usize = 0;
/// Input: the MIDI port (counted apart from the audio inputs).
pub const IN_MIDI: usize = 0;
/// Output: the divided clock.
pub const OUT_CLOCK: usize = 0;
/// Output: high while the transport runs.
pub const OUT_RUN: usize = 1;
/// Output: reset pulse.
pub const OUT_RESET: usize = 2;

const PORTS: [PortSpec; 4] = ports([
    (IN_MIDI, input("midi", Signal::Midi, "JACK MIDI input carrying clock (24 per quarter note), Start, Stop, Continue, Song Position")),
    (OUT_CLOCK, output("clock", Signal::Gate, "50 % square wave, one period every `div` MIDI clocks, rising on the clock that starts it")),
    (OUT_RUN, output("run", Signal::Gate, "1.0 from Start or Continue until Stop")),
    (OUT_RESET, output("reset", Signal::Gate, "a 1 ms pulse at Start and at a Song Position of 0")),
]);

const PARAMS: [ParamSpec; 1] = params([(
    DIV,
    jumps(float(
        "div",
        "",
        1.0,
        96.0,
        6.0,
        "MIDI clocks per output pulse (whole number): 6 = sixteenths, 24 = quarter notes",
    )),
)]);

/// The `clock` module type.
pub const SPEC: ModuleSpec = ModuleSpec {
    name: "clock",
    kind: Kind::Clock,
    doc: "MIDI clock to gates: a pulse every `div` MIDI clocks while the transport runs, a run gate (Start/Continue to Stop) and a reset pulse (Start), each on the frame JACK timestamps its message.",
    ports: &PORTS,
    params: &PARAMS,
};

//! `seq`: the step sequencer.
//!
//! ```
//! use modsynth_model::catalog::seq;
//!
//! assert_eq!(seq::SPEC.params[seq::BPM].name, "bpm");
//! ```

use super::{
    choice, float, input, jumps, output, params, ports, Kind, ModuleSpec, ParamSpec, PortSpec,
    Signal,
};

/// Number of steps the sequencer holds.
pub const STEPS_HELD: usize = 16;

/// Parameter: tempo, beats per minute.
pub const BPM: usize = 0;
/// Parameter: steps per beat (a whole number).
pub const DIV: usize = 1;
/// Parameter: number of steps played (a whole number).
pub const STEPS: usize = 2;
/// Parameter: gate length as a share of the step.
pub const GATE_LEN: usize = 3;
/// Parameter: the pitch of step `n` (from 0) is at `FIRST_STEP + n`.
pub const FIRST_STEP: usize = 4;
/// Parameter: where the timing comes from, an index into [`CLOCK_SOURCES`].
pub const CLOCK: usize = FIRST_STEP + STEPS_HELD;
/// Where the timing comes from, in the order their index is stored.
pub const CLOCK_SOURCES: &[&str] = &["internal", "external"];
/// Input: with `clock` external, each rising edge plays the next step.
pub const IN_CLOCK: usize = 0;
/// Input: with `clock` external, the gate is silent while this is low.
pub const IN_RUN: usize = 1;
/// Input: with `clock` external, a rising edge makes the next clock play step 1.
pub const IN_RESET: usize = 2;
/// Output: pitch of the current step.
pub const OUT_PITCH: usize = 0;
/// Output: the gate.
pub const OUT_GATE: usize = 1;

const PORTS: [PortSpec; 5] = ports([
    (
        IN_CLOCK,
        input(
            "clock",
            Signal::Gate,
            "with `clock` external: each rising edge plays the next step",
        ),
    ),
    (
        IN_RUN,
        input(
            "run",
            Signal::Gate,
            "with `clock` external: the gate output is silent while this is low",
        ),
    ),
    (
        IN_RESET,
        input(
            "reset",
            Signal::Gate,
            "with `clock` external: a rising edge makes the next clock play step 1",
        ),
    ),
    (
        OUT_PITCH,
        output(
            "pitch",
            Signal::Cv,
            "pitch of the current step, 1.0 per octave",
        ),
    ),
    (
        OUT_GATE,
        output(
            "gate",
            Signal::Gate,
            "1.0 for the first `gate_len` of each step, else 0.0",
        ),
    ),
]);

const fn step(name: &'static str) -> ParamSpec {
    jumps(float(
        name,
        "oct",
        -4.0,
        4.0,
        0.0,
        "pitch of this step, added to the `pitch` output",
    ))
}

const PARAMS: [ParamSpec; FIRST_STEP + STEPS_HELD + 1] = params([
    // Timing: a new tempo or gate length applies from the next sample, which clicks
    // nothing; a gliding tempo would break the exact step grid.
    (
        BPM,
        jumps(float(
            "bpm",
            "bpm",
            20.0,
            300.0,
            120.0,
            "tempo in beats per minute",
        )),
    ),
    (
        DIV,
        jumps(float(
            "div",
            "",
            1.0,
            8.0,
            4.0,
            "steps per beat (whole number)",
        )),
    ),
    (
        STEPS,
        jumps(float(
            "steps",
            "",
            1.0,
            16.0,
            8.0,
            "number of steps played (whole number)",
        )),
    ),
    (
        GATE_LEN,
        jumps(float(
            "gate_len",
            "",
            0.01,
            1.0,
            0.5,
            "gate length as a share of the step",
        )),
    ),
    (FIRST_STEP, step("step1")),
    (FIRST_STEP + 1, step("step2")),
    (FIRST_STEP + 2, step("step3")),
    (FIRST_STEP + 3, step("step4")),
    (FIRST_STEP + 4, step("step5")),
    (FIRST_STEP + 5, step("step6")),
    (FIRST_STEP + 6, step("step7")),
    (FIRST_STEP + 7, step("step8")),
    (FIRST_STEP + 8, step("step9")),
    (FIRST_STEP + 9, step("step10")),
    (FIRST_STEP + 10, step("step11")),
    (FIRST_STEP + 11, step("step12")),
    (FIRST_STEP + 12, step("step13")),
    (FIRST_STEP + 13, step("step14")),
    (FIRST_STEP + 14, step("step15")),
    (FIRST_STEP + 15, step("step16")),
    (CLOCK, choice("clock", CLOCK_SOURCES, 0, "internal: runs at `bpm`; external: follows the `clock`, `run` and `reset` inputs (patch them from a `clock` module)")),
]);

/// The `seq` module type.
pub const SPEC: ModuleSpec = ModuleSpec {
    name: "seq",
    kind: Kind::Seq,
    doc: "Step sequencer: `steps` steps at `bpm`, `div` steps per beat, each with a pitch; or one step per pulse at `clock` (`clock` = external).",
    ports: &PORTS,
    params: &PARAMS,
};

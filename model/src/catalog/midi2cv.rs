//! `midi2cv`: monophonic MIDI notes to CV. Every parameter is read when an event
//! arrives, so none glides.
//!
//! ```
//! use modsynth_model::catalog::midi2cv;
//!
//! assert_eq!(midi2cv::SPEC.params[midi2cv::BASE_NOTE].name, "base_note");
//! ```

use super::{
    choice, float, input, jumps, output, params, ports, Kind, ModuleSpec, ParamSpec, PortSpec,
    Signal,
};

/// Which held note sounds, in the order their index is stored.
pub const NOTE_PRIORITIES: &[&str] = &["last", "low", "high"];
/// Whether a note played while another is held retriggers (`off`) or only moves the
/// pitch (`on`), in the order their index is stored.
pub const LEGATO_MODES: &[&str] = &["off", "on"];

/// Parameter: MIDI channel listened to (0 = all).
pub const CHANNEL: usize = 0;
/// Parameter: index into [`NOTE_PRIORITIES`].
pub const PRIORITY: usize = 1;
/// Parameter: index into [`LEGATO_MODES`].
pub const LEGATO: usize = 2;
/// Parameter: portamento time, seconds.
pub const GLIDE: usize = 3;
/// Parameter: the MIDI note whose pitch is 0.0.
pub const BASE_NOTE: usize = 4;
/// Parameter: pitch bend at full deflection, semitones.
pub const BEND_RANGE: usize = 5;
/// Input: the MIDI port (counted apart from the audio inputs).
pub const IN_MIDI: usize = 0;
/// Output: pitch CV.
pub const OUT_PITCH: usize = 0;
/// Output: gate.
pub const OUT_GATE: usize = 1;
/// Output: trigger pulse.
pub const OUT_TRIGGER: usize = 2;
/// Output: note-on velocity.
pub const OUT_VELOCITY: usize = 3;
/// Output: aftertouch.
pub const OUT_AFTERTOUCH: usize = 4;
/// Output: mod wheel.
pub const OUT_MODWHEEL: usize = 5;

const PORTS: [PortSpec; 7] = ports([
    (
        IN_MIDI,
        input(
            "midi",
            Signal::Midi,
            "JACK MIDI input (a keyboard, `a2jmidid`, a sequencer)",
        ),
    ),
    (
        OUT_PITCH,
        output(
            "pitch",
            Signal::Cv,
            "the played note, 1.0 per octave above `base_note`, plus pitch bend",
        ),
    ),
    (
        OUT_GATE,
        output(
            "gate",
            Signal::Gate,
            "1.0 while a note is held; with `legato` off a new note drops it for 1 ms",
        ),
    ),
    (
        OUT_TRIGGER,
        output(
            "trigger",
            Signal::Gate,
            "a 1 ms pulse at each note that (re)starts the gate",
        ),
    ),
    (
        OUT_VELOCITY,
        output(
            "velocity",
            Signal::Cv,
            "note-on velocity of the played note, 0..1",
        ),
    ),
    (
        OUT_AFTERTOUCH,
        output(
            "aftertouch",
            Signal::Cv,
            "channel pressure (or the played note's key pressure), 0..1",
        ),
    ),
    (
        OUT_MODWHEEL,
        output("modwheel", Signal::Cv, "mod wheel (CC 1), 0..1"),
    ),
]);

const PARAMS: [ParamSpec; 6] = params([
    (CHANNEL, jumps(float("channel", "", 0.0, 16.0, 0.0, "MIDI channel listened to, 1-16; 0 = all (omni)"))),
    (PRIORITY, choice("priority", NOTE_PRIORITIES, 0, "which held note sounds: the last pressed, the lowest or the highest")),
    (LEGATO, choice("legato", LEGATO_MODES, 0, "off: every new note retriggers gate and trigger; on: a note played while one is held only moves the pitch")),
    (GLIDE, jumps(float("glide", "s", 0.0, 10.0, 0.0, "portamento: time the pitch takes to reach a new note (0 = jump)"))),
    (BASE_NOTE, jumps(float("base_note", "", 0.0, 127.0, 60.0, "MIDI note whose pitch is 0.0 (60 = middle C)"))),
    (BEND_RANGE, jumps(float("bend_range", "st", 0.0, 24.0, 2.0, "pitch bend at full deflection, in semitones"))),
]);

/// The `midi2cv` module type.
pub const SPEC: ModuleSpec = ModuleSpec {
    name: "midi2cv",
    kind: Kind::Midi2cv,
    doc: "MIDI notes to CV (monophonic): pitch, gate, trigger, velocity, aftertouch, mod wheel, each change on the frame JACK timestamps its event.",
    ports: &PORTS,
    params: &PARAMS,
};

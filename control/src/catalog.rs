//! The module catalog: which module types exist, their ports and their parameters.
//!
//! This table is the single source of truth. The worker builds ports from it, the
//! parameter validator checks values against it, the CLI lists it and the README's
//! module reference is generated from it (a test keeps the two in step).
//!
//! ```
//! use modsynth_control::catalog;
//!
//! let vco = catalog::module("vco").unwrap();
//! assert_eq!(vco.output_ports().next().unwrap().name, "out");
//! assert_eq!(vco.param("freq").unwrap().default, 440.0);
//! ```

/// How many parameters a module may have at most (the state keeps a fixed array).
pub const MAX_PARAMS: usize = 24;
/// How many input ports a module may have at most.
pub const MAX_INPUTS: usize = 4;
/// How many output ports a module may have at most (`midi2cv` has six).
pub const MAX_OUTPUTS: usize = 6;

/// Whether a port receives or sends signal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// The module reads this port.
    In,
    /// The module writes this port.
    Out,
}

/// What a port carries. All but [`Signal::Midi`] are JACK audio ports (32-bit float
/// at audio rate), where the kind only says how the values are meant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    /// Audio, nominally within ±1.0.
    Audio,
    /// Control voltage: pitch CV is 1.0 per octave, unipolar CV is 0..1.
    Cv,
    /// Gates and triggers: high at >= 0.5.
    Gate,
    /// A JACK MIDI port: timestamped MIDI messages, not samples. Only inputs so far;
    /// the DSP never sees it as a buffer ([`ModuleSpec::input_ports`] leaves it out).
    Midi,
}

impl Signal {
    /// The lower-case name used in listings.
    pub fn name(self) -> &'static str {
        match self {
            Signal::Audio => "audio",
            Signal::Cv => "cv",
            Signal::Gate => "gate",
            Signal::Midi => "midi",
        }
    }
}

/// One JACK port of a module.
#[derive(Debug, PartialEq)]
pub struct PortSpec {
    /// Port name, e.g. `out`; the JACK alias is `<module id>:<name>`.
    pub name: &'static str,
    pub direction: Direction,
    pub signal: Signal,
    /// One line for the reference.
    pub doc: &'static str,
}

/// One parameter of a module.
///
/// Every parameter is stored as an `f32`. An enum parameter stores the index of its
/// value in [`ParamSpec::values`] and accepts either the name or the index.
#[derive(Debug, PartialEq)]
pub struct ParamSpec {
    pub name: &'static str,
    /// Unit shown in listings (`Hz`, `s`, `oct`, ...); empty when unitless.
    pub unit: &'static str,
    pub min: f32,
    pub max: f32,
    pub default: f32,
    /// Names of the values of an enum parameter; empty for a continuous one.
    pub values: &'static [&'static str],
    /// One line for the reference.
    pub doc: &'static str,
    /// How the module moves to a new value (see [`Smoothing`]).
    pub smoothing: Smoothing,
}

impl ParamSpec {
    /// True when the parameter takes one of a fixed set of names.
    pub fn is_enum(&self) -> bool {
        !self.values.is_empty()
    }

    /// True when a change glides instead of jumping.
    pub fn is_smoothed(&self) -> bool {
        self.smoothing != Smoothing::None
    }
}

/// How a module moves from a parameter's old value to a new one.
///
/// A jump of a level (a gain, a cutoff) in the middle of a waveform is a click, so
/// continuous parameters glide; a change still starts on exactly the sample it was
/// scheduled for, the glide starts there. Enums, whole-number steps, triggers and
/// pitches of sequencer steps jump, because a jump is what they mean.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Smoothing {
    /// The new value applies at once.
    None,
    /// A linear ramp of this many seconds, whatever the distance.
    Ramp(f32),
    /// A ramp of this many seconds in equal ratios (linear in octaves), for
    /// frequencies: a cutoff opening from 20 Hz to 20 kHz linearly in Hz would pass
    /// the lowest nine octaves in its first 2 % and click.
    Octaves(f32),
    /// A linear glide at this many units per second: the time grows with the distance.
    /// For a delay's time, where the glide speed is the pitch shift heard.
    Slew(f32),
}

/// The ramp most continuous parameters glide over: 5 ms, short enough to feel
/// immediate on a knob, long enough that a full-range gain step on a 220 Hz sine
/// moves less per sample than the sine itself (0.5 / 240 against 0.0144).
pub const RAMP_SECONDS: f32 = 0.005;

impl Smoothing {
    /// How many samples a change from `from` to `to` glides over at `sample_rate`
    /// (at least 1: the new value is reached on the last of them). 1 for `None`.
    ///
    /// ```
    /// use modsynth_control::catalog::Smoothing;
    /// assert_eq!(Smoothing::Ramp(0.005).samples(0.0, 1.0, 48_000.0), 240);
    /// assert_eq!(Smoothing::Slew(0.5).samples(0.0, 1.0, 48_000.0), 96_000);
    /// assert_eq!(Smoothing::None.samples(0.0, 1.0, 48_000.0), 1);
    /// ```
    pub fn samples(self, from: f32, to: f32, sample_rate: f32) -> u32 {
        let n = match self {
            Smoothing::None => 1.0,
            Smoothing::Ramp(seconds) | Smoothing::Octaves(seconds) => {
                (seconds * sample_rate).round()
            }
            Smoothing::Slew(per_second) => ((to - from).abs() * sample_rate / per_second).ceil(),
        };
        // Bounded so a hostile sample rate cannot make a ramp of billions of samples.
        if n.is_finite() {
            n.clamp(1.0, 1.0e8) as u32
        } else {
            1
        }
    }

    /// How listings show it: `5 ms`, `0.5 s/s` (with the parameter's unit), or `-`
    /// for none.
    pub fn describe(self, unit: &str) -> String {
        match self {
            Smoothing::None => "-".to_string(),
            Smoothing::Ramp(seconds) => format!("{} ms", seconds * 1000.0),
            Smoothing::Octaves(seconds) => format!("{} ms, in octaves", seconds * 1000.0),
            Smoothing::Slew(per_second) if unit.is_empty() => format!("{per_second}/s"),
            Smoothing::Slew(per_second) => format!("{per_second} {unit}/s"),
        }
    }
}

/// One module type.
#[derive(Debug, PartialEq)]
pub struct ModuleSpec {
    /// Type name as used in `/module/new`, e.g. `vco`.
    pub name: &'static str,
    /// One line for the reference.
    pub doc: &'static str,
    pub ports: &'static [PortSpec],
    pub params: &'static [ParamSpec],
}

impl ModuleSpec {
    /// The parameter called `name`, if the module has one.
    pub fn param(&self, name: &str) -> Option<&'static ParamSpec> {
        self.params.iter().find(|p| p.name == name)
    }

    /// Index of the parameter called `name` in [`ModuleSpec::params`].
    pub fn param_index(&self, name: &str) -> Option<usize> {
        self.params.iter().position(|p| p.name == name)
    }

    /// The port called `name`, if the module has one.
    pub fn port(&self, name: &str) -> Option<&'static PortSpec> {
        self.ports.iter().find(|p| p.name == name)
    }

    /// The port called `port` of module `id` (of this type), with its index in
    /// [`ModuleSpec::ports`]; the error names the ports it does have.
    pub fn port_of(&self, id: &str, port: &str) -> Result<(usize, &'static PortSpec), String> {
        self.ports
            .iter()
            .enumerate()
            .find(|(_, p)| p.name == port)
            .ok_or_else(|| {
                let names: Vec<&str> = self.ports.iter().map(|p| p.name).collect();
                format!(
                    "{id} ({}) has no port '{port}' (it has: {})",
                    self.name,
                    names.join(", ")
                )
            })
    }

    /// Audio-rate input ports in catalog order (the order the DSP sees them in);
    /// the MIDI input is [`ModuleSpec::midi_input`].
    pub fn input_ports(&self) -> impl Iterator<Item = &'static PortSpec> {
        self.ports
            .iter()
            .filter(|p| p.direction == Direction::In && p.signal != Signal::Midi)
    }

    /// The module's MIDI input port, if it has one (at most one).
    pub fn midi_input(&self) -> Option<&'static PortSpec> {
        self.ports
            .iter()
            .find(|p| p.direction == Direction::In && p.signal == Signal::Midi)
    }

    /// Output ports in catalog order (the order the DSP writes them in).
    pub fn output_ports(&self) -> impl Iterator<Item = &'static PortSpec> {
        self.ports.iter().filter(|p| p.direction == Direction::Out)
    }

    /// The default value of every parameter, in catalog order.
    pub fn defaults(&self) -> [f32; MAX_PARAMS] {
        let mut out = [0.0; MAX_PARAMS];
        for (slot, p) in out.iter_mut().zip(self.params) {
            *slot = p.default;
        }
        out
    }
}

/// All module types, in the order they are listed.
pub fn modules() -> &'static [ModuleSpec] {
    MODULES
}

/// The module type called `name`.
pub fn module(name: &str) -> Option<&'static ModuleSpec> {
    MODULES.iter().find(|m| m.name == name)
}

/// Index of the module type called `name` in [`modules`].
pub fn module_index(name: &str) -> Option<usize> {
    MODULES.iter().position(|m| m.name == name)
}

const fn input(name: &'static str, signal: Signal, doc: &'static str) -> PortSpec {
    PortSpec {
        name,
        direction: Direction::In,
        signal,
        doc,
    }
}

const fn output(name: &'static str, signal: Signal, doc: &'static str) -> PortSpec {
    PortSpec {
        name,
        direction: Direction::Out,
        signal,
        doc,
    }
}

const fn float(
    name: &'static str,
    unit: &'static str,
    min: f32,
    max: f32,
    default: f32,
    doc: &'static str,
) -> ParamSpec {
    ParamSpec {
        name,
        unit,
        min,
        max,
        default,
        values: &[],
        doc,
        smoothing: Smoothing::Ramp(RAMP_SECONDS),
    }
}

/// A continuous parameter whose changes glide as `smoothing` says.
const fn glided(spec: ParamSpec, smoothing: Smoothing) -> ParamSpec {
    ParamSpec { smoothing, ..spec }
}

/// A frequency: glides over the default ramp in octaves (its range must be > 0).
const fn octaves(spec: ParamSpec) -> ParamSpec {
    glided(spec, Smoothing::Octaves(RAMP_SECONDS))
}

/// A number that jumps: a whole-number count, a seed, a trigger, a time that a
/// module only reads at an event.
const fn jumps(spec: ParamSpec) -> ParamSpec {
    glided(spec, Smoothing::None)
}

const fn choice(
    name: &'static str,
    values: &'static [&'static str],
    default: usize,
    doc: &'static str,
) -> ParamSpec {
    ParamSpec {
        name,
        unit: "",
        min: 0.0,
        max: (values.len() - 1) as f32,
        default: default as f32,
        values,
        doc,
        smoothing: Smoothing::None,
    }
}

/// Oscillator and LFO waveforms, in the order their index is stored.
pub const WAVEFORMS: &[&str] = &["sine", "saw", "square", "triangle"];
/// Filter responses of the `vcf`, in the order their index is stored.
pub const FILTER_MODES: &[&str] = &["lowpass", "bandpass", "highpass"];

/// Which held note `midi2cv` plays, in the order their index is stored.
pub const NOTE_PRIORITIES: &[&str] = &["last", "low", "high"];
/// Whether a note played while another is held retriggers (`off`) or only changes
/// the pitch (`on`), in the order their index is stored.
pub const LEGATO_MODES: &[&str] = &["off", "on"];

/// Where `seq` takes its timing from, in the order their index is stored.
pub const CLOCK_SOURCES: &[&str] = &["internal", "external"];

/// Number of steps the `seq` module holds.
pub const SEQ_STEPS: usize = 16;

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

static MODULES: &[ModuleSpec] = &[
    ModuleSpec {
        name: "vco",
        doc: "Band-limited oscillator (PolyBLEP): sine, saw, square, triangle.",
        ports: &[
            input("pitch", Signal::Cv, "pitch CV, 1.0 per octave above `freq`"),
            input("fm", Signal::Cv, "linear FM, `fm_depth` Hz per 1.0"),
            output("out", Signal::Audio, "the waveform, amplitude `gain`"),
        ],
        params: &[
            octaves(float("freq", "Hz", 0.1, 20000.0, 440.0, "base frequency")),
            choice("wave", WAVEFORMS, 0, "waveform"),
            float("pw", "", 0.01, 0.99, 0.5, "pulse width of the square wave"),
            float("gain", "", 0.0, 1.0, 0.5, "output amplitude"),
            float("fm_depth", "Hz", 0.0, 20000.0, 100.0, "frequency deviation per 1.0 at `fm`"),
        ],
    },
    ModuleSpec {
        name: "lfo",
        doc: "Low-frequency oscillator: `offset + depth * wave`.",
        ports: &[output("out", Signal::Cv, "the modulation signal")],
        params: &[
            octaves(float("rate", "Hz", 0.01, 100.0, 1.0, "frequency")),
            choice("wave", WAVEFORMS, 0, "waveform"),
            float("depth", "", 0.0, 8.0, 1.0, "amplitude of the wave"),
            float("offset", "", -8.0, 8.0, 0.0, "added to the output"),
        ],
    },
    ModuleSpec {
        name: "vcf",
        doc: "State-variable filter (TPT/zero-delay feedback), stable at every setting.",
        ports: &[
            input("in", Signal::Audio, "signal to filter"),
            input("cutoff_cv", Signal::Cv, "cutoff CV, 1.0 per octave above `cutoff`"),
            output("out", Signal::Audio, "filtered signal"),
        ],
        params: &[
            choice("mode", FILTER_MODES, 0, "filter response"),
            octaves(float("cutoff", "Hz", 20.0, 20000.0, 1000.0, "cutoff frequency")),
            float("resonance", "", 0.0, 1.0, 0.1, "0 = none, 1 = maximum (Q 50)"),
        ],
    },
    ModuleSpec {
        name: "vca",
        doc: "Amplifier: `out = in * max(0, gain + cv)`.",
        ports: &[
            input("in", Signal::Audio, "signal to amplify"),
            input("cv", Signal::Cv, "added to `gain` (patch an envelope here with gain 0)"),
            output("out", Signal::Audio, "amplified signal"),
        ],
        params: &[float("gain", "", 0.0, 2.0, 1.0, "level with nothing at `cv`")],
    },
    ModuleSpec {
        name: "adsr",
        doc: "Envelope: attack, decay, sustain, release, linear or exponential (`curve`); gate from the input or the `gate` param.",
        ports: &[
            input("gate", Signal::Gate, "high (>= 0.5) holds the envelope open"),
            output("out", Signal::Cv, "envelope, 0..1"),
        ],
        params: &[
            // Stage times only set a slope: the level never jumps when they change.
            jumps(float("attack", "s", 0.0005, 10.0, 0.01, "time from 0 to 1")),
            jumps(float("decay", "s", 0.001, 10.0, 0.1, "time from 1 to `sustain`")),
            // Longer than the default ramp: a held note's level glides like a fader.
            glided(
                float("sustain", "", 0.0, 1.0, 0.7, "level held while the gate is high; changes glide"),
                Smoothing::Ramp(0.02),
            ),
            jumps(float("release", "s", 0.001, 10.0, 0.3, "time from the level at gate off to 0")),
            jumps(float("gate", "", 0.0, 1.0, 0.0, "manual gate, or-ed with the input")),
            // A shape, not a level: changing it bends the rest of a stage, the level
            // itself never jumps.
            jumps(float(
                "curve",
                "",
                0.0,
                1.0,
                0.0,
                "0 = straight segments; above, exponential ones as analog envelopes have (1 = most curved); stage times stay as set",
            )),
        ],
    },
    ModuleSpec {
        name: "mixer",
        doc: "Four-input mixer: `master * sum(gainN * inN)`.",
        ports: &[
            input("in1", Signal::Audio, "input 1"),
            input("in2", Signal::Audio, "input 2"),
            input("in3", Signal::Audio, "input 3"),
            input("in4", Signal::Audio, "input 4"),
            output("out", Signal::Audio, "the mix"),
        ],
        params: &[
            float("gain1", "", 0.0, 2.0, 1.0, "level of input 1"),
            float("gain2", "", 0.0, 2.0, 1.0, "level of input 2"),
            float("gain3", "", 0.0, 2.0, 1.0, "level of input 3"),
            float("gain4", "", 0.0, 2.0, 1.0, "level of input 4"),
            float("master", "", 0.0, 2.0, 1.0, "level of the sum"),
        ],
    },
    ModuleSpec {
        name: "noise",
        doc: "White noise from a seeded generator: the same seed gives the same samples.",
        ports: &[output("out", Signal::Audio, "uniform white noise, amplitude `gain`")],
        params: &[
            float("gain", "", 0.0, 1.0, 0.5, "output amplitude"),
            jumps(float("seed", "", 1.0, 16777216.0, 1.0, "generator seed (whole number); setting it restarts the sequence")),
        ],
    },
    ModuleSpec {
        name: "delay",
        doc: "Delay line up to 2 s with feedback: `out = (1-mix)*in + mix*delayed`.",
        ports: &[
            input("in", Signal::Audio, "signal to delay"),
            output("out", Signal::Audio, "dry/wet mix"),
        ],
        params: &[
            // The glide speed is the pitch shift heard while the time moves: 0.5 s per
            // second plays the delayed signal at 0.5x..1.5x speed, a glide, not a click.
            glided(
                float("time", "s", 0.0, 2.0, 0.25, "delay time (fractional, cubic interpolation); changes glide at 0.5 s per second"),
                Smoothing::Slew(0.5),
            ),
            float("feedback", "", 0.0, 0.99, 0.3, "share of the delayed signal fed back"),
            float("mix", "", 0.0, 1.0, 0.5, "0 = dry only, 1 = delayed only"),
        ],
    },
    ModuleSpec {
        name: "seq",
        doc: "Step sequencer: `steps` steps at `bpm`, `div` steps per beat, each with a pitch; or one step per pulse at `clock` (`clock` = external).",
        ports: &[
            input("clock", Signal::Gate, "with `clock` external: each rising edge plays the next step"),
            input("run", Signal::Gate, "with `clock` external: the gate output is silent while this is low"),
            input("reset", Signal::Gate, "with `clock` external: a rising edge makes the next clock play step 1"),
            output("pitch", Signal::Cv, "pitch of the current step, 1.0 per octave"),
            output("gate", Signal::Gate, "1.0 for the first `gate_len` of each step, else 0.0"),
        ],
        params: &[
            // Timing: a new tempo or gate length applies from the next sample, which
            // clicks nothing; a gliding tempo would break the exact step grid.
            jumps(float("bpm", "bpm", 20.0, 300.0, 120.0, "tempo in beats per minute")),
            jumps(float("div", "", 1.0, 8.0, 4.0, "steps per beat (whole number)")),
            jumps(float("steps", "", 1.0, 16.0, 8.0, "number of steps played (whole number)")),
            jumps(float("gate_len", "", 0.01, 1.0, 0.5, "gate length as a share of the step")),
            step("step1"),
            step("step2"),
            step("step3"),
            step("step4"),
            step("step5"),
            step("step6"),
            step("step7"),
            step("step8"),
            step("step9"),
            step("step10"),
            step("step11"),
            step("step12"),
            step("step13"),
            step("step14"),
            step("step15"),
            step("step16"),
            choice("clock", CLOCK_SOURCES, 0, "internal: runs at `bpm`; external: follows the `clock`, `run` and `reset` inputs (patch them from a `clock` module)"),
        ],
    },
    ModuleSpec {
        name: "const",
        doc: "Outputs its `value`: a manual CV source.",
        ports: &[output("out", Signal::Cv, "the value, every sample")],
        params: &[float("value", "", -10.0, 10.0, 0.0, "the output value")],
    },
    // MIDI in: every parameter is read when an event arrives, so none glides.
    ModuleSpec {
        name: "midi2cv",
        doc: "MIDI notes to CV (monophonic): pitch, gate, trigger, velocity, aftertouch, mod wheel, each change on the frame JACK timestamps its event.",
        ports: &[
            input("midi", Signal::Midi, "JACK MIDI input (a keyboard, `a2jmidid`, a sequencer)"),
            output("pitch", Signal::Cv, "the played note, 1.0 per octave above `base_note`, plus pitch bend"),
            output("gate", Signal::Gate, "1.0 while a note is held; with `legato` off a new note drops it for 1 ms"),
            output("trigger", Signal::Gate, "a 1 ms pulse at each note that (re)starts the gate"),
            output("velocity", Signal::Cv, "note-on velocity of the played note, 0..1"),
            output("aftertouch", Signal::Cv, "channel pressure (or the played note's key pressure), 0..1"),
            output("modwheel", Signal::Cv, "mod wheel (CC 1), 0..1"),
        ],
        params: &[
            jumps(float("channel", "", 0.0, 16.0, 0.0, "MIDI channel listened to, 1-16; 0 = all (omni)")),
            choice("priority", NOTE_PRIORITIES, 0, "which held note sounds: the last pressed, the lowest or the highest"),
            choice("legato", LEGATO_MODES, 0, "off: every new note retriggers gate and trigger; on: a note played while one is held only moves the pitch"),
            jumps(float("glide", "s", 0.0, 10.0, 0.0, "portamento: time the pitch takes to reach a new note (0 = jump)")),
            jumps(float("base_note", "", 0.0, 127.0, 60.0, "MIDI note whose pitch is 0.0 (60 = middle C)")),
            jumps(float("bend_range", "st", 0.0, 24.0, 2.0, "pitch bend at full deflection, in semitones")),
        ],
    },
    ModuleSpec {
        name: "clock",
        doc: "MIDI clock to gates: a pulse every `div` MIDI clocks while the transport runs, a run gate (Start/Continue to Stop) and a reset pulse (Start), each on the frame JACK timestamps its message.",
        ports: &[
            input("midi", Signal::Midi, "JACK MIDI input carrying clock (24 per quarter note), Start, Stop, Continue, Song Position"),
            output("clock", Signal::Gate, "50 % square wave, one period every `div` MIDI clocks, rising on the clock that starts it"),
            output("run", Signal::Gate, "1.0 from Start or Continue until Stop"),
            output("reset", Signal::Gate, "a 1 ms pulse at Start and at a Song Position of 0"),
        ],
        params: &[jumps(float("div", "", 1.0, 96.0, 6.0, "MIDI clocks per output pulse (whole number): 6 = sixteenths, 24 = quarter notes"))],
    },
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_module_fits_the_fixed_state_arrays() {
        for m in modules() {
            assert!(
                m.params.len() <= MAX_PARAMS,
                "{} has too many params",
                m.name
            );
            assert!(
                m.input_ports().count() <= MAX_INPUTS,
                "{} has too many inputs",
                m.name
            );
            assert!(
                m.output_ports().count() <= MAX_OUTPUTS,
                "{} has too many outputs",
                m.name
            );
            assert!(m.output_ports().count() >= 1, "{} has no output", m.name);
            let midi = m.ports.iter().filter(|p| p.signal == Signal::Midi);
            assert!(
                midi.clone().count() <= 1 && midi.clone().all(|p| p.direction == Direction::In),
                "{}: at most one MIDI port, an input",
                m.name
            );
        }
    }

    #[test]
    fn names_are_unique_and_defaults_in_range() {
        for (i, m) in modules().iter().enumerate() {
            assert_eq!(module_index(m.name), Some(i), "duplicate module {}", m.name);
            for (j, p) in m.params.iter().enumerate() {
                assert_eq!(
                    m.param_index(p.name),
                    Some(j),
                    "duplicate param {}.{}",
                    m.name,
                    p.name
                );
                assert!(
                    p.min <= p.default && p.default <= p.max,
                    "{}.{} default",
                    m.name,
                    p.name
                );
            }
            for p in m.ports {
                assert_eq!(m.port(p.name).map(|q| q as *const _), Some(p as *const _));
            }
        }
    }

    #[test]
    fn params_gliding_in_octaves_are_positive_and_enums_never_glide() {
        for m in modules() {
            for p in m.params {
                if matches!(p.smoothing, Smoothing::Octaves(_)) {
                    assert!(
                        p.min > 0.0,
                        "{}.{} glides in octaves from {}",
                        m.name,
                        p.name,
                        p.min
                    );
                }
                if p.is_enum() {
                    assert_eq!(p.smoothing, Smoothing::None, "{}.{}", m.name, p.name);
                }
            }
        }
    }

    #[test]
    fn seq_has_one_param_per_step() {
        let seq = module("seq").unwrap();
        for i in 1..=SEQ_STEPS {
            assert!(seq.param(&format!("step{i}")).is_some());
        }
    }
}

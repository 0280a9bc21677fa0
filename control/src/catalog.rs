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
/// How many output ports a module may have at most.
pub const MAX_OUTPUTS: usize = 2;

/// Whether a port receives or sends signal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// The module reads this port.
    In,
    /// The module writes this port.
    Out,
}

/// What a port carries. All are JACK audio ports (32-bit float at audio rate); the
/// kind only says how the values are meant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    /// Audio, nominally within ±1.0.
    Audio,
    /// Control voltage: pitch CV is 1.0 per octave, unipolar CV is 0..1.
    Cv,
    /// Gates and triggers: high at >= 0.5.
    Gate,
}

impl Signal {
    /// The lower-case name used in listings.
    pub fn name(self) -> &'static str {
        match self {
            Signal::Audio => "audio",
            Signal::Cv => "cv",
            Signal::Gate => "gate",
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
}

impl ParamSpec {
    /// True when the parameter takes one of a fixed set of names.
    pub fn is_enum(&self) -> bool {
        !self.values.is_empty()
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

    /// Input ports in catalog order (the order the DSP sees them in).
    pub fn input_ports(&self) -> impl Iterator<Item = &'static PortSpec> {
        self.ports.iter().filter(|p| p.direction == Direction::In)
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
    }
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
    }
}

/// Oscillator and LFO waveforms, in the order their index is stored.
pub const WAVEFORMS: &[&str] = &["sine", "saw", "square", "triangle"];
/// Filter responses of the `vcf`, in the order their index is stored.
pub const FILTER_MODES: &[&str] = &["lowpass", "bandpass", "highpass"];

/// Number of steps the `seq` module holds.
pub const SEQ_STEPS: usize = 16;

const fn step(name: &'static str) -> ParamSpec {
    float(
        name,
        "oct",
        -4.0,
        4.0,
        0.0,
        "pitch of this step, added to the `pitch` output",
    )
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
            float("freq", "Hz", 0.1, 20000.0, 440.0, "base frequency"),
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
            float("rate", "Hz", 0.01, 100.0, 1.0, "frequency"),
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
            float("cutoff", "Hz", 20.0, 20000.0, 1000.0, "cutoff frequency"),
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
        doc: "Linear envelope: attack, decay, sustain, release; gate from the input or the `gate` param.",
        ports: &[
            input("gate", Signal::Gate, "high (>= 0.5) holds the envelope open"),
            output("out", Signal::Cv, "envelope, 0..1"),
        ],
        params: &[
            float("attack", "s", 0.0005, 10.0, 0.01, "time from 0 to 1"),
            float("decay", "s", 0.001, 10.0, 0.1, "time from 1 to `sustain`"),
            float("sustain", "", 0.0, 1.0, 0.7, "level held while the gate is high"),
            float("release", "s", 0.001, 10.0, 0.3, "time from the level at gate off to 0"),
            float("gate", "", 0.0, 1.0, 0.0, "manual gate, or-ed with the input"),
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
            float("seed", "", 1.0, 16777216.0, 1.0, "generator seed (whole number); setting it restarts the sequence"),
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
            float("time", "s", 0.0, 2.0, 0.25, "delay time, rounded to the nearest sample"),
            float("feedback", "", 0.0, 0.99, 0.3, "share of the delayed signal fed back"),
            float("mix", "", 0.0, 1.0, 0.5, "0 = dry only, 1 = delayed only"),
        ],
    },
    ModuleSpec {
        name: "seq",
        doc: "Step sequencer: `steps` steps at `bpm`, `div` steps per beat, each with a pitch.",
        ports: &[
            output("pitch", Signal::Cv, "pitch of the current step, 1.0 per octave"),
            output("gate", Signal::Gate, "1.0 for the first `gate_len` of each step, else 0.0"),
        ],
        params: &[
            float("bpm", "bpm", 20.0, 300.0, 120.0, "tempo in beats per minute"),
            float("div", "", 1.0, 8.0, 4.0, "steps per beat (whole number)"),
            float("steps", "", 1.0, 16.0, 8.0, "number of steps played (whole number)"),
            float("gate_len", "", 0.01, 1.0, 0.5, "gate length as a share of the step"),
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
        ],
    },
    ModuleSpec {
        name: "const",
        doc: "Outputs its `value`: a manual CV source.",
        ports: &[output("out", Signal::Cv, "the value, every sample")],
        params: &[float("value", "", -10.0, 10.0, 0.0, "the output value")],
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
    fn seq_has_one_param_per_step() {
        let seq = module("seq").unwrap();
        for i in 1..=SEQ_STEPS {
            assert!(seq.param(&format!("step{i}")).is_some());
        }
    }
}

//! The module catalog: which module types exist, their ports and their parameters.
//!
//! This table is the single source of truth. The worker builds ports from it, the
//! parameter validator checks values against it, the CLI lists it and the module
//! reference in docs/modules.md is generated from it (a test keeps the two in step).
//!
//! Each module type has its own module here ([`vco`], [`vcf`], ...) holding its
//! ports, its parameters and the index constants its DSP kernel reads them by. The
//! tables are built from those constants (`params` places every parameter at the
//! index named beside it, `ports` checks every port's), so a kernel cannot read a
//! parameter at an index the catalog gives another: a mismatch fails the build.
//!
//! ```
//! use modsynth_model::catalog::{self, vco};
//!
//! let spec = catalog::module("vco").unwrap();
//! assert_eq!(spec.output_ports().next().unwrap().name, "out");
//! // Pitch 0 is middle C: midi2cv's base_note 60 plays in tune by default.
//! assert_eq!(spec.param("freq").unwrap().default, vco::MIDDLE_C_HZ);
//! // The kernel reads the frequency at vco::FREQ: the catalog's entry there is freq.
//! assert_eq!(spec.params[vco::FREQ].name, "freq");
//! ```

pub mod adsr;
pub mod clock;
pub mod constant;
pub mod delay;
pub mod lfo;
pub mod midi2cv;
pub mod mixer;
pub mod noise;
pub mod runtime;
pub mod seq;
pub mod vca;
pub mod vcf;
pub mod vco;

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
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PortSpec {
    /// Port name, e.g. `out`; the JACK alias is `<module id>:<name>`.
    pub name: &'static str,
    /// Whether the module reads or writes it.
    pub direction: Direction,
    /// What it carries.
    pub signal: Signal,
    /// One line for the reference.
    pub doc: &'static str,
}

/// One parameter of a module.
///
/// Every parameter is stored as an `f32`. An enum parameter stores the index of its
/// value in [`ParamSpec::values`] and accepts either the name or the index.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ParamSpec {
    /// Parameter name, e.g. `freq`, as in `/module/set osc1 freq 220`.
    pub name: &'static str,
    /// Unit shown in listings (`Hz`, `s`, `oct`, ...); empty when unitless.
    pub unit: &'static str,
    /// The lowest value accepted.
    pub min: f32,
    /// The highest value accepted.
    pub max: f32,
    /// The value a new module starts with.
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
    /// use modsynth_model::catalog::Smoothing;
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

/// Which DSP kernel plays a module type: one per type, so the worker picks the
/// kernel with a `match` the compiler checks for completeness.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// [`vco`]
    Vco,
    /// [`lfo`]
    Lfo,
    /// [`vcf`]
    Vcf,
    /// [`vca`]
    Vca,
    /// [`adsr`]
    Adsr,
    /// [`mixer`]
    Mixer,
    /// [`noise`]
    Noise,
    /// [`delay`]
    Delay,
    /// [`seq`]
    Seq,
    /// [`constant`]
    Const,
    /// [`midi2cv`]
    Midi2cv,
    /// [`clock`]
    Clock,
    /// An LV2 plugin ([`runtime`]): its DSP is the plugin's, its state opaque.
    Lv2,
}

/// One module type.
#[derive(Debug, PartialEq)]
pub struct ModuleSpec {
    /// Type name as used in `/module/new`, e.g. `vco`.
    pub name: &'static str,
    /// Which DSP kernel plays it.
    pub kind: Kind,
    /// One line for the reference.
    pub doc: &'static str,
    /// Its JACK ports; inputs and outputs each in the order the kernel sees them.
    pub ports: &'static [PortSpec],
    /// Its parameters, in the order they are stored (the kernel's index constants).
    pub params: &'static [ParamSpec],
}

impl ModuleSpec {
    /// The LV2 plugin's URI, for a plugin type (`lv2:<URI>`).
    pub fn lv2_uri(&self) -> Option<&'static str> {
        match self.kind {
            Kind::Lv2 => self.name.strip_prefix(runtime::LV2_PREFIX),
            _ => None,
        }
    }

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

/// The module type called `name`: a built-in one, or an LV2 plugin
/// (`lv2:<short name or URI>`, see [`runtime`]).
pub fn module(name: &str) -> Option<&'static ModuleSpec> {
    lookup(name).ok()
}

/// [`module`], or why there is no such type, in words for the user.
pub fn lookup(name: &str) -> Result<&'static ModuleSpec, String> {
    if let Some(spec) = MODULES.iter().find(|m| m.name == name) {
        return Ok(spec);
    }
    if name.starts_with(runtime::LV2_PREFIX) {
        return runtime::lookup(name);
    }
    let types: Vec<&str> = MODULES.iter().map(|m| m.name).collect();
    Err(format!(
        "no module type '{name}' (types: {}, or lv2:<plugin>: `modsynth plugins` lists them)",
        types.join(", ")
    ))
}

/// The type index every LV2 plugin's state carries ([`module_index`]): a plugin's
/// state lives in the plugin, not in the index-tagged state slots, so all plugins
/// share one, the one after the built-in types (the worker's kernel variants are
/// in catalog order, `Lv2` last, and a state slot's tag is its variant's index).
pub const LV2_TYPE_INDEX: usize = 12;

/// Index of the module type called `name` in [`modules`]; [`LV2_TYPE_INDEX`] for
/// an LV2 plugin.
pub fn module_index(name: &str) -> Option<usize> {
    MODULES.iter().position(|m| m.name == name).or_else(|| {
        module(name)
            .filter(|m| m.kind == Kind::Lv2)
            .map(|_| LV2_TYPE_INDEX)
    })
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

static MODULES: &[ModuleSpec] = &[
    vco::SPEC,
    lfo::SPEC,
    vcf::SPEC,
    vca::SPEC,
    adsr::SPEC,
    mixer::SPEC,
    noise::SPEC,
    delay::SPEC,
    seq::SPEC,
    constant::SPEC,
    midi2cv::SPEC,
    clock::SPEC,
];

/// Places each parameter at the index named beside it, so the constant a kernel
/// reads a parameter by and the catalog entry of that parameter cannot drift apart.
/// Fails the build if an index repeats or is out of range.
const fn params<const N: usize>(entries: [(usize, ParamSpec); N]) -> [ParamSpec; N] {
    let mut table = [PLACEHOLDER; N];
    let mut placed = [false; N];
    let mut i = 0;
    while i < N {
        let (index, spec) = entries[i];
        assert!(index < N, "parameter index out of range");
        assert!(!placed[index], "two parameters at one index");
        placed[index] = true;
        table[index] = spec;
        i += 1;
    }
    table
}

/// What [`params`] fills its table with before it places the real entries.
const PLACEHOLDER: ParamSpec = float("", "", 0.0, 0.0, 0.0, "");

/// Checks that the index named beside each port is its position among the ports of
/// its direction (inputs and outputs are counted apart, in table order: the order
/// the kernel sees them in; a MIDI input apart from both), and returns the ports. Fails the build otherwise.
const fn ports<const N: usize>(entries: [(usize, PortSpec); N]) -> [PortSpec; N] {
    let mut table = [PLACEHOLDER_PORT; N];
    let (mut inputs, mut outputs, mut midi) = (0, 0, 0);
    let mut i = 0;
    while i < N {
        let (index, spec) = entries[i];
        let next = match (spec.direction, spec.signal) {
            // The MIDI input is no buffer of the kernel's: counted apart.
            (Direction::In, Signal::Midi) => &mut midi,
            (Direction::In, _) => &mut inputs,
            (Direction::Out, _) => &mut outputs,
        };
        assert!(
            index == *next,
            "port index is not its position among its direction"
        );
        *next += 1;
        table[i] = spec;
        i += 1;
    }
    table
}

/// What [`ports`] fills its table with before it copies the real entries.
const PLACEHOLDER_PORT: PortSpec = output("", Signal::Audio, "");

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
    fn the_lv2_type_index_follows_the_built_in_types() {
        assert_eq!(LV2_TYPE_INDEX, modules().len());
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
    fn every_parameter_sits_at_the_index_named_beside_it() {
        let a = float("a", "", 0.0, 1.0, 0.0, "");
        let b = float("b", "", 0.0, 1.0, 0.0, "");
        let table = params([(1, a), (0, b)]);
        assert_eq!([table[0].name, table[1].name], ["b", "a"]);
        assert_eq!(vco::SPEC.params[vco::FM_DEPTH].name, "fm_depth");
        assert_eq!(seq::SPEC.params[seq::FIRST_STEP + 15].name, "step16");
    }

    #[test]
    #[should_panic(expected = "two parameters at one index")]
    fn a_parameter_table_with_an_index_twice_is_refused() {
        let a = float("a", "", 0.0, 1.0, 0.0, "");
        params([(0, a), (0, a)]);
    }

    #[test]
    #[should_panic(expected = "port index is not its position")]
    fn a_port_table_whose_index_is_not_the_position_is_refused() {
        ports([
            (0, input("a", Signal::Cv, "")),
            (0, output("out", Signal::Cv, "")),
            (2, input("b", Signal::Cv, "")),
        ]);
    }

    #[test]
    fn seq_has_one_param_per_step() {
        let seq = module("seq").unwrap();
        for i in 1..=seq::STEPS_HELD {
            assert!(seq.param(&format!("step{i}")).is_some());
        }
    }
}

//! `vco`: the band-limited oscillator.
//!
//! ```
//! use modsynth_model::catalog::vco;
//!
//! assert_eq!(vco::SPEC.params[vco::FREQ].name, "freq");
//! ```

use super::{choice, float, input, octaves, output, params, ports, Kind, ModuleSpec, Signal};
use super::{ParamSpec, PortSpec, WAVEFORMS};

/// Parameter: base frequency, Hz.
pub const FREQ: usize = 0;
/// Parameter: waveform, an index into [`WAVEFORMS`].
pub const WAVE: usize = 1;
/// Parameter: pulse width of the square wave.
pub const PW: usize = 2;
/// Parameter: output amplitude.
pub const GAIN: usize = 3;
/// Parameter: frequency deviation per 1.0 at the `fm` input, Hz.
pub const FM_DEPTH: usize = 4;
/// Input: pitch CV.
pub const IN_PITCH: usize = 0;
/// Input: linear FM.
pub const IN_FM: usize = 1;
/// Output: the waveform.
pub const OUT: usize = 0;

const PORTS: [PortSpec; 3] = ports([
    (
        IN_PITCH,
        input("pitch", Signal::Cv, "pitch CV, 1.0 per octave above `freq`"),
    ),
    (
        IN_FM,
        input("fm", Signal::Cv, "linear FM, `fm_depth` Hz per 1.0"),
    ),
    (
        OUT,
        output("out", Signal::Audio, "the waveform, amplitude `gain`"),
    ),
]);

/// Middle C (MIDI note 60 with A4 = 440 Hz), the default base frequency: pitch CV
/// 0 is C4, as in VCV Rack and as `midi2cv`'s default `base_note` says, so a
/// keyboard patched through `midi2cv` into a VCO plays the key pressed.
pub const MIDDLE_C_HZ: f32 = 261.625_58;

const PARAMS: [ParamSpec; 5] = params([
    (
        FREQ,
        octaves(float(
            "freq",
            "Hz",
            0.1,
            20000.0,
            MIDDLE_C_HZ,
            "base frequency: what pitch 0 plays (middle C, as `midi2cv`'s `base_note` 60)",
        )),
    ),
    (WAVE, choice("wave", WAVEFORMS, 0, "waveform")),
    (
        PW,
        float("pw", "", 0.01, 0.99, 0.5, "pulse width of the square wave"),
    ),
    (GAIN, float("gain", "", 0.0, 1.0, 0.5, "output amplitude")),
    (
        FM_DEPTH,
        float(
            "fm_depth",
            "Hz",
            0.0,
            20000.0,
            100.0,
            "frequency deviation per 1.0 at `fm`",
        ),
    ),
]);

/// The `vco` module type.
pub const SPEC: ModuleSpec = ModuleSpec {
    name: "vco",
    kind: Kind::Vco,
    doc: "Band-limited oscillator (PolyBLEP): sine, saw, square, triangle.",
    ports: &PORTS,
    params: &PARAMS,
};

//! `vcf`: state-variable filter in the topology-preserving (zero-delay feedback) form
//! of Andrew Simper ("SvfLinearTrapOptimised2"): stable for every cutoff and
//! resonance, and modulation does not blow it up.

use super::{Context, Io};
use modsynth_model::catalog::vcf::{CUTOFF, IN, IN_CUTOFF_CV, MODE, OUT, RESONANCE};
use std::ops::Range;

/// Damping at full resonance: Q = 1/K_MIN = 50, loud but finite.
const K_MIN: f32 = 0.02;

/// The two integrator states.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Vcf {
    /// The first integrator's state (the band-pass output's memory).
    pub ic1eq: f32,
    /// The second integrator's state (the low-pass output's memory).
    pub ic2eq: f32,
}

struct Coefficients {
    k: f32,
    a1: f32,
    a2: f32,
    a3: f32,
}

fn coefficients(fc: f32, k: f32, sample_rate: f32) -> Coefficients {
    let fc = fc.clamp(10.0, 0.49 * sample_rate);
    let g = (std::f32::consts::PI * fc / sample_rate).tan();
    let a1 = 1.0 / (1.0 + g * (g + k));
    let a2 = g * a1;
    Coefficients {
        k,
        a1,
        a2,
        a3: g * a2,
    }
}

impl Vcf {
    /// Writes the module's outputs for the samples in `range` of this period.
    pub fn process(&mut self, ctx: &Context, io: &mut Io, range: Range<usize>) {
        let p = ctx.params;
        let k = (2.0 - 2.0 * p[RESONANCE]).max(K_MIN);
        let mode = p[MODE] as u32;
        let (input, cutoff_cv) = (io.inputs[IN], io.inputs[IN_CUTOFF_CV]);
        let out = &mut *io.outputs[OUT];
        let mut last_cv = 0.0f32;
        let mut c = coefficients(p[CUTOFF], k, ctx.sample_rate);
        for i in range {
            let cv = cutoff_cv.get(i).copied().unwrap_or(0.0);
            // tan() only when the CV moves: an unpatched cutoff_cv costs nothing.
            if cv != last_cv && cv.is_finite() {
                c = coefficients(p[CUTOFF] * cv.clamp(-16.0, 16.0).exp2(), k, ctx.sample_rate);
                last_cv = cv;
            }
            let v0 = input.get(i).copied().unwrap_or(0.0);
            let v0 = if v0.is_finite() { v0 } else { 0.0 };
            let v3 = v0 - self.ic2eq;
            let v1 = c.a1 * self.ic1eq + c.a2 * v3;
            let v2 = self.ic2eq + c.a2 * self.ic1eq + c.a3 * v3;
            self.ic1eq = 2.0 * v1 - self.ic1eq;
            self.ic2eq = 2.0 * v2 - self.ic2eq;
            if !(self.ic1eq.is_finite() && self.ic2eq.is_finite()) {
                // Cannot happen with finite input; if it ever did, recover to silence.
                *self = Vcf::default();
            }
            out[i] = match mode {
                1 => v1,
                2 => v0 - c.k * v1 - v2,
                _ => v2,
            };
        }
    }
}

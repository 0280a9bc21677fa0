//! `lfo`: low-frequency oscillator, `out = offset + depth * wave`.

use super::wave;
use super::{Context, Io};
use modsynth_model::catalog::lfo::{DEPTH, OFFSET, OUT, RATE, WAVE};
use std::ops::Range;

/// The phase, in f64 so a slow LFO running for hours keeps its rate.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Lfo {
    /// Phase in 0..1, kept in f64 so a slow wave does not drift.
    pub phase: f64,
}

impl Lfo {
    /// Writes the module's outputs for the samples in `range` of this period.
    pub fn process(&mut self, ctx: &Context, io: &mut Io, range: Range<usize>) {
        let p = ctx.params;
        let dt = (p[RATE] / ctx.sample_rate).clamp(0.0, 0.5) as f64;
        let shape = p[WAVE] as u32;
        let out = &mut *io.outputs[OUT];
        for i in range {
            out[i] = p[OFFSET] + p[DEPTH] * wave::naive(shape, self.phase as f32);
            self.phase += dt;
            if self.phase >= 1.0 {
                self.phase -= 1.0;
            }
        }
    }
}

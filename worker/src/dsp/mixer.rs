//! `mixer`: `out = master * sum(gainN * inN)`.

use super::{Context, Io};
use modsynth_model::catalog::mixer::{GAINS, INPUTS, MASTER, OUT};
use std::ops::Range;

/// Stateless.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Mixer {
    /// Unused; keeps the struct non-empty so every kernel has a stable C layout.
    pub reserved: u32,
}

impl Mixer {
    /// Writes the module's outputs for the samples in `range` of this period.
    pub fn process(&mut self, ctx: &Context, io: &mut Io, range: Range<usize>) {
        let p = ctx.params;
        let gains = GAINS.map(|g| p[g] * p[MASTER]);
        let inputs = INPUTS.map(|i| io.inputs[i]);
        let out = &mut *io.outputs[OUT];
        for i in range {
            let mut sum = 0.0;
            for (input, g) in inputs.iter().zip(gains) {
                sum += g * input.get(i).copied().unwrap_or(0.0);
            }
            out[i] = sum;
        }
    }
}

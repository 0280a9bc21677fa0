//! `vca`: `out = in * max(0, gain + cv)`.

use super::{Context, Io};
use modsynth_model::catalog::vca::{GAIN, IN, IN_CV, OUT};
use std::ops::Range;

/// The level is clamped here: a runaway CV must not turn a VCA into a +40 dB amp.
const MAX_LEVEL: f32 = 4.0;

/// Stateless: the level follows `gain + cv` sample by sample.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Vca {
    /// Unused; keeps the struct non-empty so every kernel has a stable C layout.
    pub reserved: u32,
}

impl Vca {
    /// Writes the module's outputs for the samples in `range` of this period.
    pub fn process(&mut self, ctx: &Context, io: &mut Io, range: Range<usize>) {
        let gain = ctx.params[GAIN];
        let (input, cv) = (io.inputs[IN], io.inputs[IN_CV]);
        let out = &mut *io.outputs[OUT];
        for i in range {
            let x = input.get(i).copied().unwrap_or(0.0);
            let level = (gain + cv.get(i).copied().unwrap_or(0.0)).clamp(0.0, MAX_LEVEL);
            // NaN from an upstream bug becomes silence here rather than spreading.
            let y = x * level;
            out[i] = if y.is_finite() { y } else { 0.0 };
        }
    }
}

//! `mixer`: `out = master * sum(gainN * inN)`.

use super::{Context, Io};
use std::ops::Range;

const MASTER: usize = 4;

/// Stateless.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Mixer {
    /// Unused; keeps the struct non-empty so every kernel has a stable C layout.
    pub reserved: u32,
}

impl Mixer {
    pub fn process(&mut self, ctx: &Context, io: &mut Io, range: Range<usize>) {
        let p = ctx.params;
        let gains = [
            p[0] * p[MASTER],
            p[1] * p[MASTER],
            p[2] * p[MASTER],
            p[3] * p[MASTER],
        ];
        let inputs = io.inputs;
        let out = &mut *io.outputs[0];
        for i in range {
            let mut sum = 0.0;
            for (input, g) in inputs.iter().zip(gains) {
                sum += g * input.get(i).copied().unwrap_or(0.0);
            }
            out[i] = sum;
        }
    }
}

//! `const`: outputs its `value` every sample.

use super::{Context, Io};
use modsynth_model::catalog::constant::{OUT, VALUE};
use std::ops::Range;

/// No state beyond the parameter: the output is the value.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Const {
    /// Unused; keeps the struct non-empty so every kernel has a stable C layout.
    pub reserved: u32,
}

impl Const {
    /// Writes the module's outputs for the samples in `range` of this period.
    pub fn process(&mut self, ctx: &Context, io: &mut Io, range: Range<usize>) {
        let value = ctx.params[VALUE];
        io.outputs[OUT][range].fill(value);
    }
}

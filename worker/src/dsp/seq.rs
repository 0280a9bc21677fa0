//! `seq`: step sequencer with a pitch and a gate output.
//!
//! Position is kept as a whole number of samples since the last tempo change, so with
//! a steady tempo step `k` starts exactly on sample `ceil(k * L)`, `L = sr*60/(bpm*div)`,
//! with no drift however long it runs. A tempo change continues from the current
//! position in the sequence (no jump back to step 1).

use super::{Context, Io};
use modsynth_model::catalog::seq::{
    BPM, DIV, FIRST_STEP, GATE_LEN, OUT_GATE, OUT_PITCH, STEPS, STEPS_HELD,
};
use std::ops::Range;

/// Position: `origin` steps at the last tempo change plus `samples` since then.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Seq {
    /// Samples played since the last tempo change.
    pub samples: u64,
    /// The position, in steps, at the last tempo change.
    pub origin: f64,
    /// bpm * div the position was counted with (0: not started).
    pub rate: f64,
}

impl Seq {
    /// Writes the module's outputs for the samples in `range` of this period.
    pub fn process(&mut self, ctx: &Context, io: &mut Io, range: Range<usize>) {
        let p = ctx.params;
        let rate = p[BPM] as f64 * (p[DIV].round().clamp(1.0, 8.0)) as f64;
        let per_sample = 60.0 * ctx.sample_rate as f64;
        if rate != self.rate {
            // Rebase at the current position so the sequence continues.
            if self.rate > 0.0 {
                self.origin += self.samples as f64 * self.rate / per_sample;
            }
            self.samples = 0;
            self.rate = rate;
        }
        let steps = p[STEPS].round().clamp(1.0, STEPS_HELD as f32) as u64;
        let gate_len = p[GATE_LEN] as f64;
        // Outputs in catalog order: pitch, gate (the build fails if that changes).
        const _: () = assert!(OUT_PITCH == 0 && OUT_GATE == 1);
        let [pitch_out, gate_out] = &mut io.outputs;
        for i in range {
            // samples * rate is an exact integer in f64 for whole bpm, so the division
            // gives floor() the right step even on a boundary.
            let position = self.origin + (self.samples as f64 * rate) / per_sample;
            let step = position.floor();
            let index = (step as u64 % steps) as usize;
            if let Some(o) = pitch_out.get_mut(i) {
                *o = p[FIRST_STEP + index];
            }
            if let Some(o) = gate_out.get_mut(i) {
                *o = if position - step < gate_len { 1.0 } else { 0.0 };
            }
            self.samples += 1;
        }
    }
}

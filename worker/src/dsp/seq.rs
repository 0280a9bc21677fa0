//! `seq`: step sequencer with a pitch and a gate output.
//!
//! Position is kept as a whole number of samples since the last tempo change, so with
//! a steady tempo step `k` starts exactly on sample `ceil(k * L)`, `L = sr*60/(bpm*div)`,
//! with no drift however long it runs. A tempo change continues from the current
//! position in the sequence (no jump back to step 1).
//!
//! With `clock` external the inputs set the time instead: each rising edge at
//! `clock` plays the next step, a rising edge at `reset` makes the next clock play
//! step 1, and the gate is silent while `run` is low. The gate is high for
//! `gate_len` of the time between the last two clock edges (before two edges have
//! come: while the clock input is high).

use super::{Context, Io};
use modsynth_model::catalog::seq::{
    BPM, CLOCK, DIV, FIRST_STEP, GATE_LEN, IN_CLOCK, IN_RESET, IN_RUN, OUT_GATE, OUT_PITCH, STEPS,
    STEPS_HELD,
};
use std::ops::Range;

/// The longest time between clock edges still taken as a step length (10 s at
/// 192 kHz); the counters stop there.
const MAX_INTERVAL: u32 = 10 * 192_000;

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
    /// External clock: the step the next clock edge plays (counted from a reset).
    pub next_step: u64,
    /// External clock: the step playing (meaningful once `clocked` is 1).
    pub step: u64,
    /// External clock: 1 once a clock edge came since the start, the last reset or
    /// the last time `run` was low.
    pub clocked: u32,
    /// External clock: the clock and reset inputs at the last sample (bit 0: clock
    /// high, bit 1: reset high), to find rising edges across periods.
    pub inputs_high: u32,
    /// External clock: samples between the last two clock edges (0: fewer than two).
    pub interval: u32,
    /// External clock: samples since the last clock edge.
    pub since_edge: u32,
}

impl Seq {
    /// Writes the module's outputs for the samples in `range` of this period.
    pub fn process(&mut self, ctx: &Context, io: &mut Io, range: Range<usize>) {
        if ctx.params[CLOCK] >= 0.5 {
            return self.follow_clock(ctx, io, range);
        }
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
        let [pitch_out, gate_out, ..] = &mut io.outputs;
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

    /// `clock` external: steps on the rising edges of the `clock` input.
    fn follow_clock(&mut self, ctx: &Context, io: &mut Io, range: Range<usize>) {
        let p = ctx.params;
        let steps = p[STEPS].round().clamp(1.0, STEPS_HELD as f32) as u64;
        let gate_len = p[GATE_LEN] as f64;
        let (clock, run, reset) = (io.inputs[IN_CLOCK], io.inputs[IN_RUN], io.inputs[IN_RESET]);
        let [pitch_out, gate_out, ..] = &mut io.outputs;
        let high = |input: &[f32], i: usize| input.get(i).is_some_and(|&v| v >= 0.5);
        for i in range {
            let (clock_high, reset_high) = (high(clock, i), high(reset, i));
            if reset_high && self.inputs_high & 2 == 0 {
                self.next_step = 0;
                self.clocked = 0;
                self.interval = 0;
            }
            if clock_high && self.inputs_high & 1 == 0 {
                self.interval = if self.clocked == 1 {
                    self.since_edge
                } else {
                    0
                };
                self.step = self.next_step;
                self.next_step = (self.next_step + 1) % steps.max(1);
                self.clocked = 1;
                self.since_edge = 0;
            }
            self.inputs_high = clock_high as u32 | (reset_high as u32) << 1;
            let running = high(run, i);
            if !running {
                // Stopped: the time between the last edge and the next one is no
                // step length (the steps themselves go on where they were).
                self.clocked = 0;
            }
            let gate = self.clocked == 1
                && running
                && if self.interval == 0 {
                    clock_high
                } else {
                    (self.since_edge as f64) < gate_len * self.interval as f64
                };
            if let Some(o) = pitch_out.get_mut(i) {
                *o = p[FIRST_STEP + (self.step % steps) as usize];
            }
            if let Some(o) = gate_out.get_mut(i) {
                *o = gate as u8 as f32;
            }
            self.since_edge = (self.since_edge + 1).min(MAX_INTERVAL);
        }
    }
}

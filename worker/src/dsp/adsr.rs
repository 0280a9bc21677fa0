//! `adsr`: a linear envelope whose stages take exactly their set times.

use super::{Context, Io};
use std::ops::Range;

const ATTACK: usize = 0;
const DECAY: usize = 1;
const SUSTAIN: usize = 2;
const RELEASE: usize = 3;
const GATE: usize = 4;
const IN_GATE: usize = 0;

const IDLE: u32 = 0;
const ATTACKING: u32 = 1;
const DECAYING: u32 = 2;
const SUSTAINING: u32 = 3;
const RELEASING: u32 = 4;

/// Stage, level and what the release started from.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Adsr {
    pub stage: u32,
    /// 1 while the gate is high.
    pub gate: u32,
    /// Kept in f64 so long stages land on their time to the sample.
    pub level: f64,
    /// Level per sample during release, fixed at gate-off so the release takes
    /// `release` seconds from wherever the level was.
    pub release_step: f64,
}

impl Adsr {
    pub fn process(&mut self, ctx: &Context, io: &mut Io, range: Range<usize>) {
        let p = ctx.params;
        let sr = ctx.sample_rate as f64;
        let sustain = p[SUSTAIN].clamp(0.0, 1.0) as f64;
        let attack_step = 1.0 / (p[ATTACK] as f64 * sr).max(1.0);
        let decay_step = (1.0 - sustain) / (p[DECAY] as f64 * sr).max(1.0);
        let manual = p[GATE] >= 0.5;
        let gate_in = io.inputs[IN_GATE];
        let out = &mut *io.outputs[0];
        for i in range {
            let gate = manual || gate_in.get(i).copied().unwrap_or(0.0) >= 0.5;
            if gate && self.gate == 0 {
                self.stage = ATTACKING;
            } else if !gate && self.gate == 1 {
                self.stage = RELEASING;
                self.release_step = self.level / (p[RELEASE] as f64 * sr).max(1.0);
            }
            self.gate = gate as u32;
            match self.stage {
                ATTACKING => {
                    self.level += attack_step;
                    // Within rounding of 1 counts as arrived: the stage must not run
                    // one sample long because 480 * (1/480) came out as 0.99999...
                    if self.level >= 1.0 - 1e-9 {
                        self.level = 1.0;
                        self.stage = DECAYING;
                    }
                }
                DECAYING => {
                    self.level -= decay_step;
                    if self.level <= sustain + 1e-9 {
                        self.level = sustain;
                        self.stage = SUSTAINING;
                    }
                }
                SUSTAINING => self.level = sustain,
                RELEASING => {
                    self.level -= self.release_step;
                    if self.level <= 1e-9 {
                        self.level = 0.0;
                        self.stage = IDLE;
                    }
                }
                _ => self.level = 0.0,
            }
            out[i] = self.level as f32;
        }
    }
}

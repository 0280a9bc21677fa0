//! `adsr`: an envelope whose stages take exactly their set times, with straight or
//! exponential segments.
//!
//! With `curve` above 0 each segment is the charging curve of an analog envelope:
//! the level runs exponentially towards a point beyond the segment's end and the
//! stage ends where it crosses the end. How far beyond sets the bend (`overshoot`);
//! the per-sample coefficient is chosen so that a full segment still takes exactly
//! its set time, whatever the bend.

use super::{Context, Io};
use modsynth_model::catalog::adsr::{ATTACK, CURVE, DECAY, GATE, IN_GATE, OUT, RELEASE, SUSTAIN};
use std::ops::Range;

const IDLE: u32 = 0;
const ATTACKING: u32 = 1;
const DECAYING: u32 = 2;
const SUSTAINING: u32 = 3;
const RELEASING: u32 = 4;

/// Stage, level and what the release started from.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Adsr {
    /// Where the envelope is: idle, attack, decay, sustain or release.
    pub stage: u32,
    /// 1 while the gate is high.
    pub gate: u32,
    /// Kept in f64 so long stages land on their time to the sample.
    pub level: f64,
    /// Level per sample during a straight release, fixed at gate-off so the release
    /// takes `release` seconds from wherever the level was.
    pub release_step: f64,
    /// The level at gate-off: a curved release aims beyond 0 in proportion to it.
    pub release_from: f64,
}

/// How far beyond its end a curved segment aims, as a share of the segment: from
/// very far (nearly straight) at `curve` near 0 to 1/1000 (strongly bent) at 1.
fn overshoot(curve: f64) -> f64 {
    0.5 * (1.0 - curve) / curve + 0.001
}

/// The per-sample coefficient that takes a curved segment aiming `overshoot` beyond
/// its end across the whole segment in `seconds`: `(1 - c)^n = o / (1 + o)`.
fn coefficient(overshoot: f64, seconds: f32, sample_rate: f64) -> f64 {
    let n = (seconds as f64 * sample_rate).max(1.0);
    1.0 - (overshoot / (1.0 + overshoot)).powf(1.0 / n)
}

impl Adsr {
    /// Writes the module's outputs for the samples in `range` of this period.
    pub fn process(&mut self, ctx: &Context, io: &mut Io, range: Range<usize>) {
        let p = ctx.params;
        let sr = ctx.sample_rate as f64;
        let sustain = p[SUSTAIN].clamp(0.0, 1.0) as f64;
        let attack_step = 1.0 / (p[ATTACK] as f64 * sr).max(1.0);
        let decay_step = (1.0 - sustain) / (p[DECAY] as f64 * sr).max(1.0);
        let curve = p[CURVE].clamp(0.0, 1.0) as f64;
        // Straight segments when `curve` is 0: the overshoot would be infinite.
        let curved = (curve > 0.0).then(|| {
            let o = overshoot(curve);
            let c = |seconds| coefficient(o, seconds, sr);
            (o, c(p[ATTACK]), c(p[DECAY]), c(p[RELEASE]))
        });
        let manual = p[GATE] >= 0.5;
        let gate_in = io.inputs[IN_GATE];
        let out = &mut *io.outputs[OUT];
        for i in range {
            let gate = manual || gate_in.get(i).copied().unwrap_or(0.0) >= 0.5;
            if gate && self.gate == 0 {
                self.stage = ATTACKING;
            } else if !gate && self.gate == 1 {
                self.stage = RELEASING;
                self.release_step = self.level / (p[RELEASE] as f64 * sr).max(1.0);
                self.release_from = self.level;
            }
            self.gate = gate as u32;
            match self.stage {
                ATTACKING => {
                    match curved {
                        None => self.level += attack_step,
                        Some((o, c, _, _)) => self.level += (1.0 + o - self.level) * c,
                    }
                    // Within rounding of 1 counts as arrived: the stage must not run
                    // one sample long because 480 * (1/480) came out as 0.99999...
                    if self.level >= 1.0 - 1e-9 {
                        self.level = 1.0;
                        self.stage = DECAYING;
                    }
                }
                DECAYING => {
                    match curved {
                        None => self.level -= decay_step,
                        Some((o, _, c, _)) => {
                            let aim = sustain - o * (1.0 - sustain);
                            self.level += (aim - self.level) * c;
                        }
                    }
                    if self.level <= sustain + 1e-9 {
                        self.level = sustain;
                        self.stage = SUSTAINING;
                    }
                }
                SUSTAINING => self.level = sustain,
                RELEASING => {
                    match curved {
                        None => self.level -= self.release_step,
                        Some((o, _, _, c)) => {
                            self.level += (-o * self.release_from - self.level) * c
                        }
                    }
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

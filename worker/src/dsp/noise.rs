//! `noise`: white noise from a seeded generator.

use super::{Context, Io};
use modsynth_model::catalog::noise::{GAIN, OUT, SEED};
use std::ops::Range;

/// xorshift32 state and the seed it was started from: setting `seed` to a new value
/// restarts the sequence, so the same seed always gives the same samples.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Noise {
    /// The generator's state: the next sample comes from it.
    pub state: u32,
    /// The seed `state` was started from (0: not started yet).
    pub seeded_with: u32,
}

impl Noise {
    /// Writes the module's outputs for the samples in `range` of this period.
    pub fn process(&mut self, ctx: &Context, io: &mut Io, range: Range<usize>) {
        let seed = (ctx.params[SEED] as u32).max(1);
        if seed != self.seeded_with {
            // Spread small seeds over the state space so seeds 1 and 2 differ at once.
            self.state = seed.wrapping_mul(0x9E37_79B9) | 1;
            self.seeded_with = seed;
        }
        let gain = ctx.params[GAIN];
        let out = &mut *io.outputs[OUT];
        for i in range {
            let mut x = self.state;
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            self.state = x;
            // Top 24 bits as a uniform value in -1..1.
            out[i] = gain * ((x >> 8) as f32 / 8_388_608.0 - 1.0);
        }
    }
}

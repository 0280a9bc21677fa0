//! `delay`: a delay line up to 2 s with feedback. The line itself lives in the
//! module's large buffer, allocated off the real-time thread.

use super::{Context, Io};
use std::ops::Range;

const TIME: usize = 0;
const FEEDBACK: usize = 1;
const MIX: usize = 2;
const IN: usize = 0;
/// The longest delay, in seconds (the catalog's `time` maximum).
pub const MAX_SECONDS: f32 = 2.0;

/// Length of the delay line at `sample_rate`: the longest delay plus the sample
/// being written.
pub fn buffer_len(sample_rate: f32) -> usize {
    (MAX_SECONDS * sample_rate).ceil() as usize + 1
}

/// Where the next sample is written.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Delay {
    pub write: u32,
}

impl Delay {
    pub fn process(&mut self, ctx: &Context, io: &mut Io, range: Range<usize>, buffer: &mut [f32]) {
        let p = ctx.params;
        let input = io.inputs[IN];
        let out = &mut *io.outputs[0];
        let len = buffer.len();
        let (feedback, mix) = (p[FEEDBACK], p[MIX]);
        if len == 0 {
            for i in range {
                out[i] = input.get(i).copied().unwrap_or(0.0);
            }
            return;
        }
        let d = ((p[TIME] * ctx.sample_rate).round() as usize).min(len - 1);
        let mut w = self.write as usize % len;
        for i in range {
            let x = input.get(i).copied().unwrap_or(0.0);
            let x = if x.is_finite() { x } else { 0.0 };
            // d = 0 is a wire: the "delayed" signal is the input itself.
            let delayed = if d == 0 {
                x
            } else {
                buffer[(w + len - d) % len]
            };
            let fed = if d == 0 { x } else { x + feedback * delayed };
            buffer[w] = if fed.is_finite() { fed } else { 0.0 };
            w = (w + 1) % len;
            out[i] = (1.0 - mix) * x + mix * delayed;
        }
        self.write = w as u32;
    }
}

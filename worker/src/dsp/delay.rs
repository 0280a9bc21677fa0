//! `delay`: a delay line up to 2 s with feedback. The line itself lives in the
//! module's large buffer, allocated off the real-time thread.
//!
//! The delay is fractional: the signal is read between samples with 4-point cubic
//! Hermite interpolation, so a `time` that glides (the catalog smooths it at a fixed
//! speed) reads the line at a steadily changing speed, a pitch glide, instead of
//! skipping or repeating whole samples, which clicks. At a whole number of samples
//! the interpolation returns the stored sample exactly.

use super::{Context, Io};
use modsynth_model::catalog::delay::{FEEDBACK, IN, MIX, OUT, TIME};
use std::ops::Range;

/// The longest delay, in seconds (the catalog's `time` maximum).
pub const MAX_SECONDS: f32 = 2.0;
/// Samples the interpolation reads beyond the delay: the longest delay still has
/// the two older neighbours its cubic needs, and the sample being written.
const GUARD: usize = 3;

/// Delays shorter than this many samples (a third of a millisecond) feed back
/// less, down to nothing at 0 (see `process`).
const FEEDBACK_FADE: f32 = 16.0;

/// Length of the delay line at `sample_rate`: the longest delay, the interpolation's
/// neighbours and the sample being written.
pub fn buffer_len(sample_rate: f32) -> usize {
    (MAX_SECONDS * sample_rate).ceil() as usize + GUARD
}

/// Where the next sample is written.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Delay {
    /// Index in the delay buffer the next input sample goes to.
    pub write: u32,
}

/// 4-point, 3rd-order Hermite interpolation between `y0` and `y1` at `t` in 0..1
/// (`ym1` before `y0`, `y2` after `y1`): exactly `y0` at `t` = 0.
#[inline]
fn hermite(ym1: f32, y0: f32, y1: f32, y2: f32, t: f32) -> f32 {
    let c1 = 0.5 * (y1 - ym1);
    let c2 = ym1 - 2.5 * y0 + 2.0 * y1 - 0.5 * y2;
    let c3 = 0.5 * (y2 - ym1) + 1.5 * (y0 - y1);
    ((c3 * t + c2) * t + c1) * t + y0
}

impl Delay {
    /// Writes the module's outputs for the samples in `range` of this period.
    pub fn process(&mut self, ctx: &Context, io: &mut Io, range: Range<usize>, buffer: &mut [f32]) {
        let p = ctx.params;
        let input = io.inputs[IN];
        let out = &mut *io.outputs[OUT];
        let len = buffer.len();
        let (feedback, mix) = (p[FEEDBACK], p[MIX]);
        if len <= GUARD {
            for i in range {
                out[i] = input.get(i).copied().unwrap_or(0.0);
            }
            return;
        }
        // Delay in samples; the kernel runs per sample while `time` glides, so this
        // follows the glide.
        let d = (p[TIME] * ctx.sample_rate).clamp(0.0, (len - GUARD) as f32);
        // A time typed in seconds (0.01) is a hair off a whole number of samples in
        // f32 (479.99998): snap within 1/10000 of a sample, so a whole-sample delay
        // returns the signal bit for bit instead of an interpolation a hair off it.
        let d = if (d - d.round()).abs() < 1e-4 {
            d.round()
        } else {
            d
        };
        let fade = (d / FEEDBACK_FADE).min(1.0);
        let whole = d.floor();
        let t = d - whole;
        let whole = whole as usize;
        let mut w = self.write as usize % len;
        // Where `whole` samples ago sits, moved along with `w`: wrapping by a compare
        // instead of a division per read keeps the interpolating delay about as
        // cheap as the plain one was.
        let mut r = (w + len - whole) % len;
        let back = |i: usize, by: usize| if i >= by { i - by } else { i + len - by };
        for i in range {
            let x = input.get(i).copied().unwrap_or(0.0);
            let x = if x.is_finite() { x } else { 0.0 };
            let delayed = if whole == 0 {
                // Under one sample: between the input itself (time 0 is a wire) and
                // the previous sample, linearly (there is no newer neighbour).
                x + t * (buffer[back(w, 1)] - x)
            } else {
                // The newer neighbour of `whole - 1` samples ago is the input when
                // whole = 1: the cubic then leans on the dry input, as it must.
                let newer = if whole == 1 {
                    x
                } else {
                    buffer[if r + 1 == len { 0 } else { r + 1 }]
                };
                hermite(newer, buffer[r], buffer[back(r, 1)], buffer[back(r, 2)], t)
            };
            // At no delay there is no loop to run through (time 0 is a wire), and a
            // loop of a sample or two is a resonator louder than the input: the
            // feedback fades in over the first FEEDBACK_FADE samples of delay, so a
            // glide down to 0 does not drop that extra level in one sample (a click:
            // measured 4.5x the signal's own step with the fade over 1 sample).
            let fed = x + feedback * fade * delayed;
            buffer[w] = if fed.is_finite() { fed } else { 0.0 };
            w = if w + 1 == len { 0 } else { w + 1 };
            r = if r + 1 == len { 0 } else { r + 1 };
            let y = (1.0 - mix) * x + mix * delayed;
            out[i] = if y.is_finite() { y } else { 0.0 };
        }
        self.write = w as u32;
    }
}

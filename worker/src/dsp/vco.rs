//! `vco`: band-limited oscillator.
//!
//! PolyBLEP alone leaves aliases only ~28 dB below a 3 kHz saw (measured), so the
//! oscillator runs at twice the sample rate with PolyBLEP edges and is decimated
//! through a 63-tap low-pass (Kaiser, beta 8, cutoff 21 kHz): the strongest alias of
//! a 2.9-3.3 kHz saw is then 54 dB or more below the fundamental.

use super::wave::{self, poly_blep};
use super::{Context, Io};
use modsynth_model::catalog::vco::{FM_DEPTH, FREQ, GAIN, IN_FM, IN_PITCH, OUT, PW, WAVE};
use std::ops::Range;

/// Oversampling factor of the oscillator core.
const OVERSAMPLE: usize = 2;
/// History kept for the decimation filter (a power of two >= its taps).
const HISTORY: usize = 64;

/// Decimation low-pass at 96 kHz: `scipy.signal.firwin(63, 21000, fs=96000,
/// window=('kaiser', 8))`, unity gain at DC. Symmetric, so the delay is a constant
/// 31 samples at 96 kHz.
// The coefficients as the design tool printed them; f32 rounds the last digits.
#[allow(clippy::excessive_precision)]
static DECIMATOR: [f32; 63] = [
    -2.355377534e-05,
    -2.188481470e-05,
    9.066019398e-05,
    1.311660917e-04,
    -1.630930297e-04,
    -4.077385362e-04,
    1.244882157e-04,
    8.944070374e-04,
    2.384148897e-04,
    -1.509926659e-03,
    -1.192201368e-03,
    1.960929880e-03,
    2.938754252e-03,
    -1.702992322e-03,
    -5.437120295e-03,
    5.865144156e-18,
    8.215253168e-03,
    3.897632793e-03,
    -1.024001968e-02,
    -1.048540363e-02,
    9.891748530e-03,
    1.972919787e-02,
    -5.001657747e-03,
    -3.089118276e-02,
    -7.313805973e-03,
    4.255135730e-02,
    3.206971892e-02,
    -5.285907720e-02,
    -8.517772185e-02,
    5.996395069e-02,
    3.109799997e-01,
    4.374994001e-01,
    3.109799997e-01,
    5.996395069e-02,
    -8.517772185e-02,
    -5.285907720e-02,
    3.206971892e-02,
    4.255135730e-02,
    -7.313805973e-03,
    -3.089118276e-02,
    -5.001657747e-03,
    1.972919787e-02,
    9.891748530e-03,
    -1.048540363e-02,
    -1.024001968e-02,
    3.897632793e-03,
    8.215253168e-03,
    5.865144156e-18,
    -5.437120295e-03,
    -1.702992322e-03,
    2.938754252e-03,
    1.960929880e-03,
    -1.192201368e-03,
    -1.509926659e-03,
    2.384148897e-04,
    8.944070374e-04,
    1.244882157e-04,
    -4.077385362e-04,
    -1.630930297e-04,
    1.311660917e-04,
    9.066019398e-05,
    -2.188481470e-05,
    -2.355377534e-05,
];

/// Oscillator state: the phase, the triangle's integrator and the decimation
/// filter's history (all plain data).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Vco {
    /// Phase in 0..1, kept in f64 so long notes do not drift in pitch.
    pub phase: f64,
    /// The triangle is the leaky integral of a band-limited square.
    pub triangle: f32,
    /// Next write position in `history`.
    pub position: u32,
    /// The last oversampled samples, a ring.
    pub history: [f32; HISTORY],
}

impl Default for Vco {
    fn default() -> Vco {
        Vco {
            phase: 0.0,
            triangle: 0.0,
            position: 0,
            history: [0.0; HISTORY],
        }
    }
}

impl Vco {
    /// Writes the module's outputs for the samples in `range` of this period.
    pub fn process(&mut self, ctx: &Context, io: &mut Io, range: Range<usize>) {
        let p = ctx.params;
        let sr = ctx.sample_rate;
        let nyquist = 0.5 * sr;
        let wave = p[WAVE] as u32;
        let pw = p[PW];
        let gain = p[GAIN];
        let pitch = io.inputs[IN_PITCH];
        let fm = io.inputs[IN_FM];
        let out = &mut *io.outputs[OUT];
        for i in range {
            let cv = pitch.get(i).copied().unwrap_or(0.0);
            let dev = fm.get(i).copied().unwrap_or(0.0) * p[FM_DEPTH];
            let freq = p[FREQ] * cv.clamp(-16.0, 16.0).exp2() + dev;
            // Negative or super-Nyquist frequencies would alias or run backwards; the
            // clamp keeps a wild FM input from producing garbage.
            let freq = if freq.is_finite() {
                freq.clamp(0.0, nyquist * 0.999)
            } else {
                0.0
            };
            let dt = freq / (sr * OVERSAMPLE as f32);
            for _ in 0..OVERSAMPLE {
                let y = self.next_oversampled(wave, dt, pw);
                self.history[self.position as usize % HISTORY] = y;
                self.position = (self.position + 1) % HISTORY as u32;
            }
            out[i] = gain * self.decimated();
        }
    }

    /// One sample of the oscillator core at the oversampled rate.
    fn next_oversampled(&mut self, wave: u32, dt: f32, pw: f32) -> f32 {
        let t = self.phase as f32;
        let y = match wave {
            wave::SAW => 2.0 * t - 1.0 - poly_blep(t, dt),
            wave::SQUARE => square(t, dt, pw),
            wave::TRIANGLE => {
                // Leaky integration of a band-limited square; the scale 4*dt makes
                // the peak ±1 and the leak removes any DC the integral collects.
                let sq = square(t, dt, 0.5);
                self.triangle = 4.0 * dt * sq + (1.0 - dt) * self.triangle;
                self.triangle
            }
            _ => (t * std::f32::consts::TAU).sin(),
        };
        self.phase += dt as f64;
        if self.phase >= 1.0 {
            self.phase -= 1.0;
        }
        y
    }

    /// The filtered sample at the current position (the newest sample is at
    /// `position - 1`).
    fn decimated(&self) -> f32 {
        let newest = self.position as usize + HISTORY - 1;
        DECIMATOR
            .iter()
            .enumerate()
            .map(|(j, c)| c * self.history[(newest - j) % HISTORY])
            .sum()
    }
}

#[inline]
fn square(t: f32, dt: f32, pw: f32) -> f32 {
    let naive = if t < pw { 1.0 } else { -1.0 };
    let mut falling = t - pw;
    if falling < 0.0 {
        falling += 1.0;
    }
    naive + poly_blep(t, dt) - poly_blep(falling, dt)
}

//! Waveform shapes shared by the oscillators.

/// Index of each waveform in [`modsynth_model::catalog::WAVEFORMS`]; 0 is sine,
/// which every `match` on a waveform takes as its default arm.
pub const SAW: u32 = 1;
pub const SQUARE: u32 = 2;
pub const TRIANGLE: u32 = 3;

/// The 2-point polynomial band-limited step residual at `t` (phase 0..1) for a phase
/// increment `dt`: subtracted around a discontinuity, it removes most of the aliasing
/// a naive step would cause.
#[inline]
pub fn poly_blep(t: f32, dt: f32) -> f32 {
    if t < dt {
        let x = t / dt;
        x + x - x * x - 1.0
    } else if t > 1.0 - dt {
        let x = (t - 1.0) / dt;
        x * x + x + x + 1.0
    } else {
        0.0
    }
}

/// A naive (not band-limited) waveform at phase `t` in 0..1, amplitude ±1: what an LFO
/// wants, where sharp edges are the point.
#[inline]
pub fn naive(wave: u32, t: f32) -> f32 {
    match wave {
        SAW => 2.0 * t - 1.0,
        SQUARE => {
            if t < 0.5 {
                1.0
            } else {
                -1.0
            }
        }
        TRIANGLE => 1.0 - 4.0 * (t - 0.5).abs(),
        _ => (t * std::f32::consts::TAU).sin(),
    }
}

//! Phase continuity: whether a steady tone went on as a listener expects, or skipped
//! or repeated a stretch of itself.
//!
//! A skipped or repeated period leaves no silent sample, but it is a click: the tone
//! jumps to where it would have been `N` frames later (or earlier). This fits the
//! tone's phase in short windows (least squares, the frequency known) and reports
//! every place where it moved by more than a tolerance. A jump of `N` frames shows
//! as `2 pi f N / rate` radians (mod `2 pi`): pick test tones for which no period
//! length of interest is a whole number of cycles (600 Hz: 64 frames are 0.8
//! cycles, 256 are 3.2, 1024 are 12.8).
//!
//! ```
//! use modsynth_tests::continuity::phase_jumps;
//!
//! let tone = |n: usize| (std::f64::consts::TAU * 600.0 * n as f64 / 48_000.0).sin() as f32;
//! let clean: Vec<f32> = (0..48_000).map(tone).collect();
//! assert!(phase_jumps(&clean, 600.0, 48_000.0).is_empty());
//! // One 256-frame period skipped after sample 20 000.
//! let skipped: Vec<f32> = (0..48_000).map(|n| tone(if n < 20_000 { n } else { n + 256 })).collect();
//! let jumps = phase_jumps(&skipped, 600.0, 48_000.0);
//! assert_eq!(jumps.len(), 1);
//! assert!((jumps[0].frames_ahead(600.0, 48_000.0) - 256.0 % 80.0).abs() < 1.0);
//! ```

/// Samples per fitted window: short enough to place a jump within 3 ms, long
/// enough (1.6 cycles of 600 Hz) for a clean fit.
pub const WINDOW: usize = 128;
/// Radians of phase change between two windows that count as a jump. One frame at
/// 600 Hz is 0.079 rad; a clean tone from a module fits within 0.001.
pub const TOLERANCE_RAD: f64 = 0.03;
/// A window whose fit leaves more than this share of the tone's energy unexplained
/// holds something that is not the tone (a splice, a gap, a click): a jump too.
pub const RESIDUAL_SHARE: f64 = 0.01;

/// One place where the tone did not go on as it should.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PhaseJump {
    /// Index of the first sample of the window where it shows.
    pub at: usize,
    /// How far the phase moved beyond its own advance, in radians (-pi..pi); a
    /// window that fit badly (a gap, a splice inside it) reports its step to the
    /// next clean window.
    pub radians: f64,
}

impl PhaseJump {
    /// The jump as frames of a tone of `hz` at `sample_rate`: how far ahead (or,
    /// negative, behind) the tone went, modulo one cycle.
    pub fn frames_ahead(&self, hz: f64, sample_rate: f64) -> f64 {
        self.radians / std::f64::consts::TAU * sample_rate / hz
    }
}

/// The tone's fit in one window: phase at sample 0 of the whole signal, and how much
/// of the window's energy the fit leaves over.
#[derive(Clone, Copy, Debug)]
struct Fit {
    phase: f64,
    residual_share: f64,
}

/// Least-squares fit of `a cos(w n) + b sin(w n)` over `window`, with `n` counted
/// from sample 0 of the whole signal (`offset` is the window's start), so a
/// continuous tone has the same phase in every window.
fn fit(window: &[f32], offset: usize, hz: f64, sample_rate: f64) -> Fit {
    let w = std::f64::consts::TAU * hz / sample_rate;
    let (mut cc, mut cs, mut ss, mut xc, mut xs, mut xx) = (0.0f64, 0.0, 0.0, 0.0, 0.0, 0.0);
    for (i, &x) in window.iter().enumerate() {
        let x = x as f64;
        // Reduce the angle first: offsets of millions of samples lose precision.
        let angle = (w * (offset + i) as f64).rem_euclid(std::f64::consts::TAU);
        let (s, c) = angle.sin_cos();
        cc += c * c;
        cs += c * s;
        ss += s * s;
        xc += x * c;
        xs += x * s;
        xx += x * x;
    }
    let det = cc * ss - cs * cs;
    if det.abs() < 1e-12 || xx <= 0.0 {
        return Fit {
            phase: 0.0,
            residual_share: 1.0,
        };
    }
    let a = (xc * ss - xs * cs) / det;
    let b = (xs * cc - xc * cs) / det;
    // Energy the fit explains: a^2 cc + 2ab cs + b^2 ss.
    let explained = a * a * cc + 2.0 * a * b * cs + b * b * ss;
    Fit {
        // x = a cos + b sin = r cos(w n + phase) with phase = atan2(-b, a): a tone
        // that skipped ahead has a larger phase.
        phase: (-b).atan2(a),
        residual_share: ((xx - explained) / xx).max(0.0),
    }
}

/// Wraps `x` into -pi..pi.
fn wrap(x: f64) -> f64 {
    let pi = std::f64::consts::PI;
    (x + pi).rem_euclid(std::f64::consts::TAU) - pi
}

/// Every place where a steady tone of `hz` in `signal` skipped, repeated or broke,
/// in order: windows of [`WINDOW`] samples whose phase moved by more than
/// [`TOLERANCE_RAD`] from the last clean window, or which the tone does not fit
/// ([`RESIDUAL_SHARE`]). A disturbance that spans several windows counts once.
/// The tone must be steady over the whole signal (a fixed frequency; its level
/// may change).
pub fn phase_jumps(signal: &[f32], hz: f64, sample_rate: f64) -> Vec<PhaseJump> {
    let mut jumps: Vec<PhaseJump> = Vec::new();
    // The last clean window: its index and phase.
    let mut last_clean: Option<(usize, f64)> = None;
    // Whether the step into the last clean window was a jump: a jump inside a
    // window splits into a step into it and a step out of it, which are one.
    let mut jumped_into_last = false;
    let mut broken_since: Option<usize> = None;
    for (k, window) in signal.chunks_exact(WINDOW).enumerate() {
        let at = k * WINDOW;
        let f = fit(window, at, hz, sample_rate);
        if f.residual_share > RESIDUAL_SHARE {
            broken_since.get_or_insert(at);
            continue;
        }
        let broken = broken_since.take();
        let jumped = match last_clean {
            Some((before_k, before)) => {
                let step = wrap(f.phase - before);
                let jumped = broken.is_some() || step.abs() > TOLERANCE_RAD;
                if jumped {
                    match jumps.last_mut() {
                        // The second half of the jump into the window before.
                        Some(last) if jumped_into_last && before_k + 1 == k => {
                            last.radians = wrap(last.radians + step);
                        }
                        _ => jumps.push(PhaseJump {
                            at: broken.unwrap_or(at),
                            radians: step,
                        }),
                    }
                }
                jumped
            }
            None => {
                if let Some(broken) = broken {
                    jumps.push(PhaseJump {
                        at: broken,
                        radians: 0.0,
                    });
                }
                false
            }
        };
        jumped_into_last = jumped;
        last_clean = Some((k, f.phase));
    }
    if let Some(broken) = broken_since {
        jumps.push(PhaseJump {
            at: broken,
            radians: 0.0,
        });
    }
    jumps
}

#[cfg(test)]
mod tests {
    use super::*;

    const SR: f64 = 48_000.0;

    fn tone(hz: f64, n: usize) -> f32 {
        (0.4 * (std::f64::consts::TAU * hz * n as f64 / SR + 0.3).sin()) as f32
    }

    #[test]
    fn a_clean_tone_has_no_jump_whatever_its_level() {
        let x: Vec<f32> = (0..96_000)
            .map(|n| tone(600.0, n) * (0.2 + 0.8 * n as f32 / 96_000.0))
            .collect();
        assert!(phase_jumps(&x, 600.0, SR).is_empty());
    }

    #[test]
    fn a_skipped_64_frame_period_is_one_jump_of_64_frames() {
        let x: Vec<f32> = (0..48_000)
            .map(|n| tone(600.0, if n < 10_000 { n } else { n + 64 }))
            .collect();
        let jumps = phase_jumps(&x, 600.0, SR);
        assert_eq!(jumps.len(), 1, "{jumps:?}");
        // 64 frames are 0.8 cycles (80 frames a cycle): -16 frames mod a cycle.
        assert!((jumps[0].frames_ahead(600.0, SR) + 16.0).abs() < 0.5);
        assert!(jumps[0].at.abs_diff(10_000) <= WINDOW);
    }

    #[test]
    fn a_repeated_period_is_a_jump_back() {
        let x: Vec<f32> = (0..48_000)
            .map(|n| tone(600.0, if n < 30_000 { n } else { n - 256 }))
            .collect();
        let jumps = phase_jumps(&x, 600.0, SR);
        assert_eq!(jumps.len(), 1, "{jumps:?}");
        // -256 frames are -3.2 cycles: -16 frames mod a cycle.
        assert!((jumps[0].frames_ahead(600.0, SR) + 16.0).abs() < 0.5);
    }

    #[test]
    fn a_silent_period_is_a_jump_even_when_the_tone_goes_on_in_phase() {
        let x: Vec<f32> = (0..48_000)
            .map(|n| {
                if (20_000..20_256).contains(&n) {
                    0.0
                } else {
                    tone(600.0, n)
                }
            })
            .collect();
        assert_eq!(phase_jumps(&x, 600.0, SR).len(), 1);
    }

    #[test]
    fn a_one_frame_slip_is_seen() {
        let x: Vec<f32> = (0..48_000)
            .map(|n| tone(700.0, if n < 24_000 { n } else { n + 1 }))
            .collect();
        assert_eq!(phase_jumps(&x, 700.0, SR).len(), 1);
    }

    #[test]
    fn two_jumps_far_apart_count_twice() {
        let x: Vec<f32> = (0..96_000)
            .map(|n| {
                let shift = if n < 20_000 {
                    0
                } else if n < 70_000 {
                    256
                } else {
                    512
                };
                tone(600.0, n + shift)
            })
            .collect();
        assert_eq!(phase_jumps(&x, 600.0, SR).len(), 2);
    }
}

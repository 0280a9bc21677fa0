//! Parameter smoothing: linear ramps from a parameter's old value to its new one.
//!
//! The catalog declares per parameter how a change glides
//! ([`Smoothing`](modsynth_model::catalog::Smoothing)). The ramps are plain data
//! inside [`ModuleState`](super::ModuleState), so they are published with the rest of
//! the state every period and a standby that takes over mid-ramp continues it on the
//! same sample. A ramp is a fixed number of equal steps whose last one lands exactly
//! on the target, so the result does not depend on how a period is split.
//!
//! ```
//! use modsynth_worker::dsp::smooth::Ramps;
//!
//! let mut r = Ramps::at(&[0.0; 24]);
//! r.start(0, 1.0, 4); // 4 samples from 0 to 1
//! let seen: Vec<f32> = (0..5).map(|_| { r.advance(1); r.current[0] }).collect();
//! assert_eq!(seen, [0.25, 0.5, 0.75, 1.0, 1.0]);
//! ```

use modsynth_model::catalog::MAX_PARAMS;

/// Where every parameter's value is now and where it is heading.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Ramps {
    /// The value the kernel reads for each parameter at the current sample.
    pub current: [f32; MAX_PARAMS],
    /// The value each ramp ends on (equal to `current` when it is not moving).
    pub target: [f32; MAX_PARAMS],
    /// Added to `current` each sample while the ramp has samples left (multiplied
    /// with it, where `in_octaves` is set).
    pub step: [f32; MAX_PARAMS],
    /// 1 where the ramp moves in equal ratios (a frequency), 0 where in equal steps.
    pub in_octaves: [u32; MAX_PARAMS],
    /// Samples left in each ramp; 0: at the target.
    pub remaining: [u32; MAX_PARAMS],
    /// How many entries of `remaining` are not 0, so a period without ramps costs
    /// one comparison.
    pub active: u32,
}

impl Ramps {
    /// Every parameter resting at `values`.
    pub fn at(values: &[f32; MAX_PARAMS]) -> Ramps {
        Ramps {
            current: *values,
            target: *values,
            step: [0.0; MAX_PARAMS],
            in_octaves: [0; MAX_PARAMS],
            remaining: [0; MAX_PARAMS],
            active: 0,
        }
    }

    /// Whether any parameter is still moving.
    pub fn moving(&self) -> bool {
        self.active > 0
    }

    /// Moves parameter `index` to `value` over `samples` samples: the first of them
    /// already differs from the old value, the last is exactly `value`. `samples` of
    /// 0 or 1 is a jump. A ramp already heading to `value` goes on unchanged, so a
    /// value sent again (a supervisor replaying values after a failover) does not
    /// stretch it.
    pub fn start(&mut self, index: usize, value: f32, samples: u32) {
        self.start_ramp(index, value, samples, false);
    }

    /// As [`Ramps::start`], in equal ratios per sample: linear in octaves, for
    /// frequencies. Falls back to equal steps unless both ends are above 0.
    pub fn start_in_octaves(&mut self, index: usize, value: f32, samples: u32) {
        self.start_ramp(index, value, samples, true);
    }

    fn start_ramp(&mut self, index: usize, value: f32, samples: u32, octaves: bool) {
        if index >= MAX_PARAMS {
            return;
        }
        if self.remaining[index] > 0 && self.target[index] == value {
            return;
        }
        if samples <= 1 || self.current[index] == value {
            self.jump(index, value);
            return;
        }
        if self.remaining[index] == 0 {
            self.active += 1;
        }
        let from = self.current[index];
        let octaves = octaves && from > 0.0 && value > 0.0;
        self.target[index] = value;
        self.step[index] = if octaves {
            // In f64: the 240th root of a ratio near 1 loses the glide's shape in f32.
            (value as f64 / from as f64).powf(1.0 / samples as f64) as f32
        } else {
            (value - from) / samples as f32
        };
        self.in_octaves[index] = octaves as u32;
        self.remaining[index] = samples;
    }

    /// Sets parameter `index` to `value` at once, ending any ramp it was on.
    pub fn jump(&mut self, index: usize, value: f32) {
        if index >= MAX_PARAMS {
            return;
        }
        if self.remaining[index] > 0 {
            self.active -= 1;
            self.remaining[index] = 0;
        }
        self.current[index] = value;
        self.target[index] = value;
        self.step[index] = 0.0;
    }

    /// Advances the first `n_params` ramps by one sample.
    #[inline]
    pub fn advance(&mut self, n_params: usize) {
        for i in 0..n_params.min(MAX_PARAMS) {
            match self.remaining[i] {
                0 => {}
                1 => {
                    // The last step lands on the target exactly, whatever the
                    // rounding of the steps before it.
                    self.current[i] = self.target[i];
                    self.remaining[i] = 0;
                    self.active -= 1;
                }
                _ => {
                    if self.in_octaves[i] == 0 {
                        self.current[i] += self.step[i];
                    } else {
                        self.current[i] *= self.step[i];
                    }
                    self.remaining[i] -= 1;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ramp_ends_exactly_on_its_target_and_a_repeat_does_not_restart_it() {
        let mut r = Ramps::at(&[0.0; MAX_PARAMS]);
        r.start(3, 0.1, 240);
        for _ in 0..100 {
            r.advance(4);
        }
        let halfway = r.current[3];
        r.start(3, 0.1, 240); // the same value again
        assert_eq!(r.remaining[3], 140);
        for _ in 0..140 {
            r.advance(4);
        }
        assert!(halfway > 0.0 && halfway < 0.1);
        assert_eq!((r.current[3], r.active), (0.1, 0));
    }

    #[test]
    fn a_glide_in_octaves_passes_each_octave_in_equal_time() {
        let mut r = Ramps::at(&[20.0; MAX_PARAMS]);
        r.start_in_octaves(1, 20_480.0, 100); // 10 octaves, 10 samples each
        let mut seen = Vec::new();
        for _ in 0..100 {
            r.advance(2);
            seen.push(r.current[1]);
        }
        assert!((seen[9] / 40.0 - 1.0).abs() < 1e-4, "{}", seen[9]);
        assert!((seen[49] / 640.0 - 1.0).abs() < 1e-4, "{}", seen[49]);
        assert_eq!(seen[99], 20_480.0);
    }

    #[test]
    fn a_new_target_mid_ramp_turns_from_where_the_value_is() {
        let mut r = Ramps::at(&[1.0; MAX_PARAMS]);
        r.start(0, 0.0, 10);
        for _ in 0..5 {
            r.advance(1);
        }
        let here = r.current[0];
        r.start(0, 1.0, 10);
        r.advance(1);
        assert!(
            (r.current[0] - here - 0.05).abs() < 1e-6,
            "no jump at the turn"
        );
        assert_eq!(r.active, 1);
        r.jump(0, 0.25);
        assert_eq!((r.current[0], r.active), (0.25, 0));
    }
}

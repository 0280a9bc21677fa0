//! The output gate: a gain on everything a module writes to its outputs, moved to a
//! new target at a scheduled frame. A set switch closes the outgoing set's gates and
//! opens the incoming set's on one sample, which no JACK connect could do (a connect
//! lands on a period boundary, some time after it is asked for).
//!
//! Plain data, no allocation: it runs on the real-time thread. An open gate that has
//! nothing scheduled costs one comparison per period.
//!
//! ```
//! use modsynth_worker::gate::{GateChange, OutputGate};
//!
//! let mut gate = OutputGate::default();
//! gate.schedule(GateChange { gain: 0.0, at: Some(100), ramp: 4 }, 0);
//! let mut out = [1.0f32; 128];
//! gate.apply(&mut [&mut out[..]], 0, 128);
//! assert_eq!(out[99], 1.0); // before the frame: untouched
//! assert_eq!(out[100], 0.75); // the ramp starts on it...
//! assert_eq!(out[103], 0.0); // ...and is closed 4 samples later
//! assert_eq!(out[127], 0.0);
//! ```

/// A change of the gate's gain.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct GateChange {
    /// The gain to reach, 0 (closed) to 1 (open); anything else is clamped.
    pub gain: f32,
    /// JACK frame the ramp starts on; `None` or a past frame: this period's first.
    pub at: Option<u32>,
    /// Samples the ramp takes (0: a step).
    pub ramp: u32,
}

/// A module's output gate (see the module doc).
#[derive(Clone, Copy, Debug)]
pub struct OutputGate {
    gain: f32,
    target: f32,
    /// Added to `gain` per sample until it reaches `target`.
    step: f32,
    /// A change waiting for its frame: (frame, target, ramp).
    pending: Option<(u32, f32, u32)>,
}

impl Default for OutputGate {
    /// Open: a module sounds unless it is told otherwise.
    fn default() -> OutputGate {
        OutputGate {
            gain: 1.0,
            target: 1.0,
            step: 0.0,
            pending: None,
        }
    }
}

impl OutputGate {
    /// Schedules `change`, received in the period starting at `frame_time`. It
    /// replaces a change still waiting for its frame (a switch that was re-timed).
    ///
    /// A step due now (no ramp, no future frame) takes effect at once, so that a
    /// change scheduled after it in the same period does not replace it: "closed
    /// now, open on the switch's frame" is two changes that can arrive together
    /// (a worker that replaces a module of a set being switched to).
    ///
    /// ```
    /// use modsynth_worker::gate::{GateChange, OutputGate};
    ///
    /// let mut gate = OutputGate::default();
    /// gate.schedule(GateChange { gain: 0.0, at: None, ramp: 0 }, 0);
    /// gate.schedule(GateChange { gain: 1.0, at: Some(64), ramp: 0 }, 0);
    /// let mut out = [1.0f32; 128];
    /// gate.apply(&mut [&mut out[..]], 0, 128);
    /// assert_eq!(out[63], 0.0); // closed until the frame...
    /// assert_eq!(out[64], 1.0); // ...open from it on
    /// ```
    pub fn schedule(&mut self, change: GateChange, frame_time: u32) {
        let at = match change.at {
            Some(at) if offset(at, frame_time) > 0 => at,
            _ => frame_time,
        };
        let gain = if change.gain.is_finite() {
            change.gain.clamp(0.0, 1.0)
        } else {
            0.0
        };
        if at == frame_time && change.ramp == 0 {
            self.gain = gain;
            self.target = gain;
            self.step = 0.0;
            self.pending = None;
            return;
        }
        self.pending = Some((at, gain, change.ramp));
    }

    /// The gain now (after the last sample scaled).
    pub fn gain(&self) -> f32 {
        self.gain
    }

    /// Whether the gate leaves samples alone this period: open, not moving, nothing
    /// scheduled.
    pub fn is_transparent(&self) -> bool {
        self.pending.is_none() && self.gain == 1.0 && self.target == 1.0
    }

    /// Scales the first `n_frames` samples of every output of the period starting at
    /// `frame_time`, starting a scheduled ramp on its frame.
    pub fn apply(&mut self, outputs: &mut [&mut [f32]], frame_time: u32, n_frames: usize) {
        if self.is_transparent() {
            return;
        }
        for i in 0..n_frames {
            if let Some((at, target, ramp)) = self.pending {
                if offset(at, frame_time) <= i as i64 {
                    self.pending = None;
                    self.target = target;
                    self.step = (target - self.gain) / ramp.max(1) as f32;
                }
            }
            if self.gain != self.target {
                let next = self.gain + self.step;
                let passed = (self.step > 0.0 && next >= self.target)
                    || (self.step < 0.0 && next <= self.target)
                    || self.step == 0.0;
                self.gain = if passed { self.target } else { next };
            }
            let gain = self.gain;
            if gain == 1.0 {
                continue;
            }
            for out in outputs.iter_mut() {
                if let Some(s) = out.get_mut(i) {
                    *s *= gain;
                }
            }
        }
    }
}

/// Signed distance from `now` to `at` in frames, across the u32 wrap.
fn offset(at: u32, now: u32) -> i64 {
    at.wrapping_sub(now) as i32 as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_closed_gate_opens_on_its_frame_in_a_later_period() {
        let mut gate = OutputGate::default();
        gate.schedule(GateChange::default(), 0);
        let mut out = [1.0f32; 64];
        gate.apply(&mut [&mut out[..]], 0, 64);
        assert!(out.iter().all(|&s| s == 0.0), "closed at once");
        gate.schedule(
            GateChange {
                gain: 1.0,
                at: Some(64 + 10),
                ramp: 0,
            },
            64,
        );
        let mut out = [0.5f32; 64];
        gate.apply(&mut [&mut out[..]], 64, 64);
        assert!(out[..10].iter().all(|&s| s == 0.0));
        assert!(out[10..].iter().all(|&s| s == 0.5));
        assert!(gate.is_transparent());
    }

    #[test]
    fn a_change_for_a_past_frame_lands_on_the_first_sample() {
        let mut gate = OutputGate::default();
        gate.schedule(
            GateChange {
                gain: 0.0,
                at: Some(5),
                ramp: 0,
            },
            100,
        );
        let mut out = [1.0f32; 8];
        gate.apply(&mut [&mut out[..]], 100, 8);
        assert_eq!(out, [0.0; 8]);
    }

    #[test]
    fn non_finite_gains_close_the_gate() {
        let mut gate = OutputGate::default();
        gate.schedule(
            GateChange {
                gain: f32::NAN,
                at: None,
                ramp: 3,
            },
            0,
        );
        let mut out = [1.0f32; 8];
        gate.apply(&mut [&mut out[..]], 0, 8);
        assert!(out.iter().all(|s| s.is_finite()));
        assert_eq!(out[7], 0.0);
    }
}

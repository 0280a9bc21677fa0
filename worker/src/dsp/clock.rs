//! `clock`: MIDI clock in, clock/run/reset gates out, so modules run in time with a
//! drum machine or a DAW.
//!
//! MIDI clock is 24 pulses per quarter note. The `clock` output pulses on every
//! `div`th of them while the transport runs, starting with the first clock after a
//! Start (the downbeat, as the MIDI spec has it); each pulse is high for half the
//! time between two output pulses, measured from the incoming clock, so it is a 50 %
//! square wave at the divided rate. `run` is high from Start or Continue to Stop.
//! `reset` is a 1 ms pulse at Start, and at a Song Position Pointer to the top of the
//! song; a Song Position Pointer elsewhere moves the divider so the next pulses fall
//! on the song's grid. Every message acts on the frame JACK timestamped it with.

use super::{Context, Io};
use crate::midi::MidiEvent;
use std::ops::Range;

use modsynth_model::catalog::clock::{DIV, OUT_CLOCK, OUT_RESET, OUT_RUN};

/// Length of the `reset` pulse.
pub const RESET_SECONDS: f32 = 0.001;
/// Samples between two MIDI clocks assumed before two have arrived (120 BPM at
/// 48 kHz); the first output pulse is that long at most.
const FIRST_INTERVAL: u32 = 1000;
/// The longest gap between MIDI clocks still taken as a tempo (10 s: 0.25 BPM).
const MAX_INTERVAL: u32 = 10 * 192_000;

/// The clock's whole state.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Clock {
    /// MIDI clocks since Start (or since the song position), while running.
    pub count: u64,
    /// 1 while the transport runs.
    pub running: u32,
    /// Samples between the last two MIDI clocks.
    pub interval: u32,
    /// Samples since the last MIDI clock (capped at `MAX_INTERVAL`).
    pub since_clock: u32,
    /// Samples the `clock` output stays high.
    pub high_left: u32,
    /// Samples the `reset` output stays high.
    pub reset_left: u32,
}

impl Default for Clock {
    fn default() -> Self {
        Clock {
            count: 0,
            running: 0,
            interval: FIRST_INTERVAL,
            since_clock: MAX_INTERVAL,
            high_left: 0,
            reset_left: 0,
        }
    }
}

impl Clock {
    /// Whether every number is one the kernel can have produced.
    pub fn is_sane(&self) -> bool {
        self.count < 1 << 53
            && self.running <= 1
            && self.interval <= MAX_INTERVAL
            && self.since_clock <= MAX_INTERVAL
            && self.high_left <= 96 * MAX_INTERVAL
            && self.reset_left <= 192
    }

    /// Writes the module's outputs for the samples in `range` of this period,
    /// applying the MIDI messages inside it on their frames.
    pub fn process(&mut self, ctx: &Context, io: &mut Io, range: Range<usize>) {
        let div = (ctx.params[DIV].round() as u64).clamp(1, 96);
        let pulse = ((RESET_SECONDS * ctx.sample_rate) as u32).clamp(1, 192);
        let events = io.midi;
        let mut next = events.partition_point(|e| (e.frame as usize) < range.start);
        // Outputs in catalog order (the build fails if that changes).
        const _: () = assert!(OUT_CLOCK == 0 && OUT_RUN == 1 && OUT_RESET == 2);
        let [clock, run, reset, ..] = &mut io.outputs;
        for i in range {
            while let Some(e) = events.get(next).filter(|e| e.frame as usize <= i) {
                self.handle(e, div, pulse);
                next += 1;
            }
            let values = [
                (self.high_left > 0) as u8 as f32,
                self.running as f32,
                (self.reset_left > 0) as u8 as f32,
            ];
            for (out, value) in [&mut *clock, &mut *run, &mut *reset]
                .into_iter()
                .zip(values)
            {
                if let Some(o) = out.get_mut(i) {
                    *o = value;
                }
            }
            self.high_left = self.high_left.saturating_sub(1);
            self.reset_left = self.reset_left.saturating_sub(1);
            self.since_clock = (self.since_clock + 1).min(MAX_INTERVAL);
        }
    }

    fn handle(&mut self, e: &MidiEvent, div: u64, pulse: u32) {
        match e.bytes[0] {
            0xF8 => {
                if self.since_clock < MAX_INTERVAL {
                    self.interval = self.since_clock.max(1);
                }
                self.since_clock = 0;
                if self.running == 1 {
                    // The pulse ends half way through its clocks at the latest: its
                    // time is estimated from the last tempo, which may be stale.
                    if div >= 2 && self.count % div == div / 2 {
                        self.high_left = 0;
                    }
                    if self.count.is_multiple_of(div) {
                        let half = (self.interval as u64 * div / 2).max(1);
                        self.high_left = half.min((96 * MAX_INTERVAL) as u64) as u32;
                    }
                    self.count += 1;
                }
            }
            // A gap across a Stop is no tempo: the first clock after Start or
            // Continue does not measure one (a pause of 2 s once made the first
            // pulse 2 s * div long, so the next pulses had no edge).
            0xFA => {
                self.count = 0;
                self.running = 1;
                self.reset_left = pulse;
                self.high_left = 0;
                self.since_clock = MAX_INTERVAL;
            }
            0xFB => {
                self.running = 1;
                self.since_clock = MAX_INTERVAL;
            }
            0xFC => {
                self.running = 0;
                self.high_left = 0;
                self.since_clock = MAX_INTERVAL;
            }
            0xF2 if e.len == 3 && e.bytes[1] < 128 && e.bytes[2] < 128 => {
                // Song position in MIDI beats (sixteenths): 6 clocks each.
                let beats = e.bytes[1] as u64 | (e.bytes[2] as u64) << 7;
                self.count = beats * 6;
                if beats == 0 {
                    self.reset_left = pulse;
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::dsp::Module;
    use crate::midi::MidiEvents;
    use modsynth_model::catalog;

    const SR: f32 = 48_000.0;
    /// 24 MIDI clocks per quarter note at 120 BPM: one every 1000 frames at 48 kHz.
    const TICK: u32 = 1000;

    fn render(m: &mut Module, events: &[(u32, u8)], n: usize) -> Vec<Vec<f32>> {
        let mut midi = MidiEvents::new();
        for &(frame, status) in events {
            midi.push(frame, &[status], n);
        }
        m.render_with_midi(&[], midi.as_slice(), n)
    }

    fn rising_edges(x: &[f32]) -> Vec<usize> {
        (0..x.len())
            .filter(|&i| x[i] >= 0.5 && (i == 0 || x[i - 1] < 0.5))
            .collect()
    }

    /// Start at frame 10, then a clock every `TICK` frames from frame 20.
    fn transport(ticks: u32) -> Vec<(u32, u8)> {
        let mut events = vec![(10, 0xFA)];
        events.extend((0..ticks).map(|k| (20 + k * TICK, 0xF8)));
        events
    }

    #[test]
    fn the_clock_output_pulses_every_div_midi_clocks_from_the_first_after_start() {
        let mut clock = Module::new(catalog::module("clock").unwrap(), SR);
        let out = render(&mut clock, &transport(48), 48 * TICK as usize);
        // div 6: sixteenths, on MIDI clocks 0, 6, 12, ... after Start.
        let want: Vec<usize> = (0..8).map(|k| 20 + k * 6 * TICK as usize).collect();
        assert_eq!(rising_edges(&out[0]), want);
        // Half of 6 clocks high (the first pulse too: 120 BPM is the assumed tempo).
        assert!(out[0][want[2]..want[2] + 3000].iter().all(|&v| v == 1.0));
        assert_eq!(out[0][want[2] + 3000], 0.0);
        assert_eq!(rising_edges(&out[1]), vec![10], "run from Start");
        assert_eq!(rising_edges(&out[2]), vec![10], "reset at Start");
        assert!(out[2][10 + 48..].iter().all(|&v| v == 0.0), "reset is 1 ms");
    }

    #[test]
    fn stop_silences_the_clock_and_continue_resumes_the_count() {
        let mut clock = Module::new(catalog::module("clock").unwrap(), SR);
        let mut events = transport(8);
        events.push((8 * TICK + 30, 0xFC)); // stop after 8 clocks
        events.extend((8..12).map(|k| (20 + k * TICK, 0xF8))); // ignored while stopped
        events.push((12 * TICK + 30, 0xFB)); // continue
        events.extend((12..20).map(|k| (20 + k * TICK, 0xF8)));
        let out = render(&mut clock, &events, 20 * TICK as usize);
        // Clocks 0 and 6 before the stop; the count goes on from 8 after Continue,
        // so the next pulse is the 12th clock after Start that the module counted:
        // the MIDI clock at 16 * TICK.
        assert_eq!(rising_edges(&out[0]), vec![20, 20 + 6000, 20 + 16 * 1000]);
        assert_eq!(out[1][8 * 1000 + 29], 1.0);
        assert_eq!(out[1][8 * 1000 + 30], 0.0);
        assert_eq!(out[1][12 * 1000 + 30], 1.0);
    }

    #[test]
    fn a_start_after_a_pause_pulses_on_the_clocks_as_before_the_pause() {
        let mut clock = Module::new(catalog::module("clock").unwrap(), SR);
        // 12 clocks, Stop, 2 s of nothing (no clocks either), Start, 24 clocks.
        let mut events = transport(12);
        events.push((12 * TICK + 30, 0xFC));
        let restart = 12 * TICK + 96_000;
        events.push((restart, 0xFA));
        events.extend((0..24).map(|k| (restart + 10 + k * TICK, 0xF8)));
        let out = render(&mut clock, &events, (restart + 25 * TICK) as usize);
        let after: Vec<usize> = rising_edges(&out[0])
            .into_iter()
            .filter(|&i| i >= restart as usize)
            .collect();
        let want: Vec<usize> = (0..4)
            .map(|k| (restart + 10 + k * 6 * TICK) as usize)
            .collect();
        assert_eq!(after, want, "a pulse on every 6th clock after the Start");
        let first = want[0];
        assert_eq!(out[0][first + 2999], 1.0);
        assert_eq!(out[0][first + 3000], 0.0, "half of 6 clocks high");
    }

    #[test]
    fn seq_follows_the_clock_and_goes_back_to_step_1_on_reset() {
        let spec = catalog::module("seq").unwrap();
        let mut seq = Module::new(spec, SR);
        seq.init_param(spec.param_index("clock").unwrap(), 1.0);
        seq.init_param(spec.param_index("steps").unwrap(), 4.0);
        for k in 0..4 {
            seq.init_param(
                spec.param_index(&format!("step{}", k + 1)).unwrap(),
                k as f32,
            );
        }
        let mut clock = Module::new(catalog::module("clock").unwrap(), SR);
        let n = 60 * TICK as usize;
        let mut events = transport(36);
        // A new Start (a reset) at clock 36's time, then clocks again.
        events.push((36 * TICK + 15, 0xFA));
        events.extend((36..60).map(|k| (20 + k * TICK, 0xF8)));
        let c = render(&mut clock, &events, n);
        let inputs: Vec<&[f32]> = c.iter().map(|v| &v[..]).collect();
        let out = seq.render(&inputs, n);
        let step_at = |i: usize| out[0][i];
        // Steps 1, 2, 3, 4, 1, 2 on the pulses every 6 clocks, then the reset: step 1.
        for (k, want) in [0.0, 1.0, 2.0, 3.0, 0.0, 1.0].into_iter().enumerate() {
            let edge = 20 + k * 6000;
            assert_eq!(step_at(edge), want, "pulse {k}");
            assert_eq!(out[1][edge], 1.0, "gate at pulse {k}");
        }
        assert_eq!(
            step_at(20 + 36 * 1000),
            0.0,
            "first pulse after the reset: step 1"
        );
        assert_eq!(step_at(20 + 42 * 1000), 1.0);
        // gate_len 0.5 of the 6000 frames between pulses.
        assert_eq!(out[1][20 + 6000 + 2999], 1.0);
        assert_eq!(out[1][20 + 6000 + 3000], 0.0);
    }
}

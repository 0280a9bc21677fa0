//! `midi2cv`: a monophonic MIDI-to-CV converter.
//!
//! Every message changes the outputs from the frame JACK timestamped it with, so a
//! gate rises on the very sample of its note-on. The held keys are a small stack in
//! the state (pressed order), so note priority, returning to a still-held note on
//! release, and a failover in the middle of a held note all work from plain data.
//!
//! Outputs: `pitch = (note - base_note) / 12 + bend`, where `note` glides over
//! `glide` seconds to each new note (the first note after power-on jumps) and
//! `bend` is the pitch wheel scaled to `bend_range` semitones (full up is exactly
//! `+bend_range`, full down exactly `-bend_range`). `gate` is high while a key is
//! held; with `legato` off, a new note pressed over a held one drops the gate for
//! [`RETRIGGER_SECONDS`] so an envelope starts again, and fires `trigger`.

use super::{Context, Io};
use crate::midi::MidiEvent;
use std::ops::Range;

use modsynth_model::catalog::midi2cv::{
    BASE_NOTE, BEND_RANGE, CHANNEL, GLIDE, LEGATO, OUT_AFTERTOUCH, OUT_GATE, OUT_MODWHEEL,
    OUT_PITCH, OUT_TRIGGER, OUT_VELOCITY, PRIORITY,
};

/// How many keys the note stack remembers; pressing one more forgets the oldest.
pub const HELD_MAX: usize = 16;
/// Length of a trigger pulse, and of the gate's drop when a note retriggers: long
/// enough for analog-style envelopes and for JACK clients that look at every sample.
pub const RETRIGGER_SECONDS: f32 = 0.001;

/// The converter's whole state.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Midi2cv {
    /// Held keys, oldest first: `notes[..held]`.
    pub notes: [u8; HELD_MAX],
    /// Note-on velocity of each held key.
    pub velocities: [u8; HELD_MAX],
    /// How many keys are held (0..=HELD_MAX).
    pub held: u32,
    /// The sounding key (0..=127); 255 before the first note.
    pub sounding: u32,
    /// Where the pitch is now, as a MIDI note number (fractional while gliding).
    pub note: f32,
    /// Semitones per sample of the glide in progress.
    pub glide_step: f32,
    /// Samples the glide still runs; 0 when `note` is on its key.
    pub glide_left: u32,
    /// Pitch wheel, 0..=16383 (8192 = centre).
    pub bend: u32,
    /// Samples the gate stays low for a retrigger.
    pub gate_low_left: u32,
    /// Samples the trigger pulse stays high.
    pub trigger_left: u32,
    /// Output levels held between events, 0..1.
    pub velocity: f32,
    /// Channel pressure or the sounding key's pressure, 0..1.
    pub aftertouch: f32,
    /// CC 1, 0..1.
    pub modwheel: f32,
}

impl Default for Midi2cv {
    fn default() -> Self {
        Midi2cv {
            notes: [0; HELD_MAX],
            velocities: [0; HELD_MAX],
            held: 0,
            sounding: NONE,
            note: 0.0,
            glide_step: 0.0,
            glide_left: 0,
            bend: BEND_CENTRE,
            gate_low_left: 0,
            trigger_left: 0,
            velocity: 0.0,
            aftertouch: 0.0,
            modwheel: 0.0,
        }
    }
}

const NONE: u32 = 255;
const BEND_CENTRE: u32 = 8192;

impl Midi2cv {
    /// Whether every number is one the kernel can have produced (the state may come
    /// from another process's shared memory).
    pub fn is_sane(&self) -> bool {
        let held = self.held as usize;
        held <= HELD_MAX
            && self.notes[..held.min(HELD_MAX)].iter().all(|&n| n < 128)
            && (self.sounding < 128 || self.sounding == NONE)
            && self.note.is_finite()
            && (-1.0..=128.0).contains(&self.note)
            && self.glide_step.is_finite()
            && self.glide_left <= 10 * 192_000 + 1
            && self.bend < 16384
            && self.gate_low_left <= 192
            && self.trigger_left <= 192
            && [self.velocity, self.aftertouch, self.modwheel]
                .iter()
                .all(|v| (0.0..=1.0).contains(v))
    }

    /// Writes the module's outputs for the samples in `range` of this period,
    /// applying the MIDI messages inside it on their frames.
    pub fn process(&mut self, ctx: &Context, io: &mut Io, range: Range<usize>) {
        let p = ctx.params;
        let pulse = ((RETRIGGER_SECONDS * ctx.sample_rate) as u32).clamp(1, 192);
        // The events of this range, in frame order (a kernel may be called for a
        // part of the period, or for one sample while a parameter glides).
        let events = io.midi;
        let first = events.partition_point(|e| (e.frame as usize) < range.start);
        let mut next = first;
        let bend_range = p[BEND_RANGE];
        // Outputs in catalog order (the build fails if that changes).
        const _: () = assert!(
            OUT_PITCH == 0
                && OUT_GATE == 1
                && OUT_TRIGGER == 2
                && OUT_VELOCITY == 3
                && OUT_AFTERTOUCH == 4
                && OUT_MODWHEEL == 5
        );
        let [pitch, gate, trigger, velocity, aftertouch, modwheel] = &mut io.outputs;
        for i in range {
            while let Some(e) = events.get(next).filter(|e| e.frame as usize <= i) {
                self.handle(e, p, ctx.sample_rate, pulse);
                next += 1;
            }
            if self.glide_left > 0 {
                self.glide_left -= 1;
                self.note += self.glide_step;
                if self.glide_left == 0 {
                    self.note = self.sounding as f32; // exactly on the key
                }
            }
            let bend = if self.bend >= BEND_CENTRE {
                (self.bend - BEND_CENTRE) as f32 / 8191.0
            } else {
                -((BEND_CENTRE - self.bend) as f32) / 8192.0
            };
            let base = p[BASE_NOTE];
            let here = if self.sounding == NONE {
                base
            } else {
                self.note
            };
            let gate_high = self.held > 0 && self.gate_low_left == 0;
            self.gate_low_left = self.gate_low_left.saturating_sub(1);
            let trigger_high = self.trigger_left > 0;
            self.trigger_left = self.trigger_left.saturating_sub(1);
            let values = [
                (here - base + bend * bend_range) / 12.0,
                gate_high as u8 as f32,
                trigger_high as u8 as f32,
                self.velocity,
                self.aftertouch,
                self.modwheel,
            ];
            for (out, value) in [
                &mut *pitch,
                &mut *gate,
                &mut *trigger,
                &mut *velocity,
                &mut *aftertouch,
                &mut *modwheel,
            ]
            .into_iter()
            .zip(values)
            {
                if let Some(o) = out.get_mut(i) {
                    *o = value;
                }
            }
        }
    }

    /// Applies one message. Anything malformed or not for this module's channel
    /// changes nothing.
    fn handle(&mut self, e: &MidiEvent, p: &[f32], sample_rate: f32, pulse: u32) {
        let status = e.bytes[0];
        if !(0x80..0xF0).contains(&status) {
            return; // a data byte without status (no running status in JACK), or system
        }
        let channel = p[CHANNEL].round() as u8;
        if channel != 0 && (status & 0x0F) + 1 != channel {
            return;
        }
        let needs = if matches!(status & 0xF0, 0xC0 | 0xD0) {
            2
        } else {
            3
        };
        let (a, b) = (e.bytes[1], e.bytes[2]);
        if (e.len as usize) < needs || a > 127 || b > 127 {
            return;
        }
        match status & 0xF0 {
            0x90 if b > 0 => self.press(a, b, p, sample_rate, pulse),
            0x80 | 0x90 => self.release(a, p, sample_rate),
            0xA0 if a as u32 == self.sounding => self.aftertouch = b as f32 / 127.0,
            0xD0 => self.aftertouch = a as f32 / 127.0,
            0xE0 => self.bend = a as u32 | (b as u32) << 7,
            0xB0 => match a {
                1 => self.modwheel = b as f32 / 127.0,
                // All sound off, reset all controllers' notes, all notes off (and
                // the mode messages that imply it): nothing stays held.
                120 | 123..=127 => {
                    self.held = 0;
                    self.gate_low_left = 0;
                }
                121 => {
                    self.bend = BEND_CENTRE;
                    self.modwheel = 0.0;
                    self.aftertouch = 0.0;
                }
                _ => {}
            },
            _ => {}
        }
    }

    fn press(&mut self, key: u8, velocity: u8, p: &[f32], sample_rate: f32, pulse: u32) {
        let was_held = self.held > 0;
        self.forget(key); // a key pressed twice (a lost note-off) is held once
        if self.held as usize == HELD_MAX {
            self.notes.copy_within(1.., 0);
            self.velocities.copy_within(1.., 0);
            self.held -= 1;
        }
        self.notes[self.held as usize] = key;
        self.velocities[self.held as usize] = velocity;
        self.held += 1;
        let before = self.sounding;
        self.choose(p, sample_rate);
        let legato = p[LEGATO] >= 0.5;
        // Retrigger when the sounding key changes or is pressed again, never for a
        // key that priority leaves silent.
        let restarts = self.sounding != before || self.sounding == key as u32;
        if !was_held || (!legato && restarts) {
            self.trigger_left = pulse;
            if was_held {
                self.gate_low_left = pulse;
            }
        }
    }

    fn release(&mut self, key: u8, p: &[f32], sample_rate: f32) {
        self.forget(key);
        if self.held > 0 {
            self.choose(p, sample_rate); // back to a key still held, no retrigger
        } else {
            self.gate_low_left = 0;
        }
    }

    /// Removes `key` from the held keys, keeping the others in order.
    fn forget(&mut self, key: u8) {
        let held = self.held as usize;
        if let Some(i) = self.notes[..held].iter().position(|&n| n == key) {
            self.notes.copy_within(i + 1..held, i);
            self.velocities.copy_within(i + 1..held, i);
            self.held -= 1;
        }
    }

    /// Makes the held key that `priority` picks the sounding one, gliding to it.
    fn choose(&mut self, p: &[f32], sample_rate: f32) {
        let held = self.held as usize;
        let keys = &self.notes[..held];
        let i = match p[PRIORITY].round() as u32 {
            1 => (0..held).min_by_key(|&i| keys[i]),
            2 => (0..held).max_by_key(|&i| keys[i]),
            _ => held.checked_sub(1),
        };
        let Some(i) = i else { return };
        let key = keys[i] as u32;
        self.velocity = self.velocities[i] as f32 / 127.0;
        if key == self.sounding {
            return;
        }
        let samples = (p[GLIDE].max(0.0) * sample_rate).round() as u32;
        if self.sounding == NONE || samples == 0 {
            self.note = key as f32;
            self.glide_left = 0;
        } else {
            self.glide_left = samples;
            self.glide_step = (key as f32 - self.note) / samples as f32;
        }
        self.sounding = key;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dsp::Module;
    use crate::midi::MidiEvents;
    use modsynth_model::catalog;

    const N: usize = 4800;
    const SR: f32 = 48_000.0;
    const PULSE: usize = (RETRIGGER_SECONDS * SR) as usize;

    fn module(params: &[(&str, f32)]) -> Module {
        let spec = catalog::module("midi2cv").unwrap();
        let mut m = Module::new(spec, SR);
        for (name, value) in params {
            m.init_param(spec.param_index(name).unwrap(), *value);
        }
        m
    }

    /// Renders one block of `N` frames with `events` (frame, message).
    fn play(m: &mut Module, events: &[(u32, &[u8])]) -> Vec<Vec<f32>> {
        let mut midi = MidiEvents::new();
        for (frame, bytes) in events {
            midi.push(*frame, bytes, N);
        }
        m.render_with_midi(&[], midi.as_slice(), N)
    }

    const PITCH: usize = 0;
    const GATE: usize = 1;
    const TRIGGER: usize = 2;
    const VELOCITY: usize = 3;

    #[test]
    fn a_note_sets_pitch_gate_trigger_and_velocity_on_its_own_frame() {
        let mut m = module(&[]);
        let out = play(&mut m, &[(100, &[0x90, 64, 127]), (3000, &[0x80, 64, 0])]);
        assert_eq!(out[GATE][99], 0.0);
        assert!(out[GATE][100..3000].iter().all(|&g| g == 1.0));
        assert!(out[GATE][3000..].iter().all(|&g| g == 0.0));
        assert_eq!(out[TRIGGER][99], 0.0);
        assert!(out[TRIGGER][100..100 + PULSE].iter().all(|&t| t == 1.0));
        assert_eq!(out[TRIGGER][100 + PULSE], 0.0);
        assert_eq!(out[PITCH][99], 0.0, "no note yet: base_note");
        assert_eq!(out[PITCH][100], 4.0 / 12.0);
        assert_eq!(out[PITCH][4000], 4.0 / 12.0, "pitch holds after release");
        assert_eq!(out[VELOCITY][100], 1.0);
    }

    #[test]
    fn priority_picks_the_last_lowest_or_highest_key_and_release_returns_to_a_held_one() {
        for (priority, want) in [(0.0, 67.0), (1.0, 60.0), (2.0, 67.0)] {
            let mut m = module(&[("priority", priority)]);
            let out = play(
                &mut m,
                &[
                    (0, &[0x90, 64, 100]),
                    (10, &[0x90, 60, 100]),
                    (20, &[0x90, 67, 100]),
                    (1000, &[0x80, 67, 0]),
                ],
            );
            assert_eq!(out[PITCH][500], (want - 60.0) / 12.0, "priority {priority}");
            let after = match priority as u32 {
                0 => 60.0, // the last pressed of those still held
                1 => 60.0,
                _ => 64.0,
            };
            assert_eq!(
                out[PITCH][2000],
                (after - 60.0) / 12.0,
                "priority {priority}"
            );
            assert!(
                out[GATE][1000..].iter().all(|&g| g == 1.0),
                "keys still held"
            );
        }
    }

    #[test]
    fn a_new_note_retriggers_the_gate_unless_legato() {
        let events: &[(u32, &[u8])] = &[(0, &[0x90, 60, 100]), (1000, &[0x90, 62, 100])];
        let mut m = module(&[("legato", 0.0)]);
        let out = play(&mut m, events);
        assert!(out[GATE][1000..1000 + PULSE].iter().all(|&g| g == 0.0));
        assert_eq!(out[GATE][1000 + PULSE], 1.0);
        assert_eq!(out[TRIGGER][1000], 1.0);
        let mut m = module(&[("legato", 1.0)]);
        let out = play(&mut m, events);
        assert!(out[GATE][1..].iter().all(|&g| g == 1.0));
        assert!(out[TRIGGER][1000..].iter().all(|&t| t == 0.0));
        assert_eq!(out[PITCH][1000], 2.0 / 12.0);
    }

    #[test]
    fn full_pitch_bend_is_exactly_bend_range_each_way() {
        let mut m = module(&[("bend_range", 2.0)]);
        let out = play(
            &mut m,
            &[
                (0, &[0x90, 60, 100]),
                (100, &[0xE0, 0x7F, 0x7F]),
                (200, &[0xE0, 0, 0]),
                (300, &[0xE0, 0, 0x40]),
            ],
        );
        assert_eq!(out[PITCH][150], 2.0 / 12.0);
        assert_eq!(out[PITCH][250], -2.0 / 12.0);
        assert_eq!(out[PITCH][350], 0.0);
    }

    #[test]
    fn glide_reaches_the_new_key_in_its_time_linearly() {
        let mut m = module(&[("glide", 0.05)]);
        let out = play(&mut m, &[(0, &[0x90, 60, 100]), (100, &[0x90, 72, 100])]);
        assert_eq!(out[PITCH][99], 0.0, "the first note jumps");
        let half = out[PITCH][100 + 1200];
        assert!((half - 0.5).abs() < 1e-3, "halfway: {half}");
        assert_eq!(out[PITCH][100 + 2400], 1.0);
        assert_eq!(out[PITCH][N - 1], 1.0);
    }

    #[test]
    fn other_channels_and_malformed_messages_change_nothing() {
        let mut m = module(&[("channel", 2.0)]);
        let out = play(
            &mut m,
            &[
                (0, &[0x90, 60, 100]),  // channel 1
                (1, &[0x91]),           // too short
                (2, &[0x91, 200, 100]), // data byte out of range
                (3, &[0x42, 0x42, 0x42]),
                (4, &[0xF8]),
            ],
        );
        assert!(out.iter().flatten().all(|&v| v == 0.0));
        let out = play(&mut m, &[(0, &[0x91, 61, 100])]);
        assert!(out[GATE].iter().all(|&g| g == 1.0));
    }

    #[test]
    fn a_held_note_stays_held_in_a_copy_of_the_state() {
        let mut primary = module(&[]);
        play(&mut primary, &[(10, &[0x90, 69, 100])]);
        let mut standby = module(&[]);
        standby.restore(primary.state());
        let out = play(&mut standby, &[]);
        assert!(out[GATE].iter().all(|&g| g == 1.0));
        assert_eq!(out[PITCH][0], 9.0 / 12.0);
        let out = play(&mut standby, &[(5, &[0x80, 69, 0])]);
        assert_eq!(out[GATE][4], 1.0);
        assert_eq!(out[GATE][5], 0.0);
    }

    #[test]
    fn all_notes_off_releases_every_key() {
        let mut m = module(&[]);
        let out = play(
            &mut m,
            &[
                (0, &[0x90, 60, 100]),
                (1, &[0x90, 62, 100]),
                (50, &[0xB0, 123, 0]),
            ],
        );
        assert!(out[GATE][50..].iter().all(|&g| g == 0.0));
    }
}

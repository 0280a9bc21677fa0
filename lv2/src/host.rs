//! One running plugin instance.
//!
//! [`Host::new`] finds the plugin, instantiates and activates it (through
//! `livi`: URID map, options with the block lengths, bounded block length, the
//! worker schedule), off the audio thread. [`Host::run`] is what the audio thread
//! calls: it writes the control values, connects the period's buffers, copies the
//! period's MIDI messages into the plugin's atom sequence (allocated here, with
//! room for [`MIDI_EVENTS`] messages), runs the plugin and replaces any
//! non-finite sample it wrote with silence, counting them. It never allocates,
//! locks or logs.

use crate::discover::{self, PortKind};
use crate::spec::{self, Control};
use livi::event::LV2AtomSequence;
use std::ops::Range;

/// How many MIDI messages one block can carry into a plugin: as many as the
/// worker keeps of a period (`modsynth_worker::midi::CAPACITY`, which drops the
/// rest and anything longer than three bytes, and counts them), so that every
/// message the worker kept fits.
pub const MIDI_EVENTS: usize = 512;

/// Bytes an atom event of a short MIDI message takes in a sequence: its 16-byte
/// header and up to 3 bytes, padded to 8.
const MIDI_EVENT_BYTES: usize = 24;

/// The MIDI input of a plugin: the atom sequence it reads, refilled every block.
struct MidiInput {
    /// Allocated at instantiation with room for [`MIDI_EVENTS`] messages; cleared
    /// and refilled in place by [`Host::run`], never grown.
    sequence: LV2AtomSequence,
    /// The URID of `midi:MidiEvent` in the plugin's URID map.
    midi_event: u32,
}

/// A plugin instance, ready for the audio thread.
pub struct Host {
    instance: livi::Instance,
    /// The plugin (for a [`crate::state::StateSaver`]) and the features it was made with (its
    /// URID map, which a restored state must be read with).
    plugin: livi::Plugin,
    features: std::sync::Arc<livi::Features>,
    uri: String,
    /// Whether the plugin has state of its own (the LV2 state extension).
    has_state: bool,
    controls: Vec<Control>,
    /// The value of every control port, by port index, where the plugin reads
    /// and writes them (connected at instantiation; never moves: boxed). Ours,
    /// not livi's, because livi clamps control values to the unscaled range of
    /// `lv2:sampleRate` ports (a cutoff to 0.45 Hz).
    values: Box<[f32]>,
    /// The port indices of the control outputs (meters, latency reports), in port
    /// order: what [`Host::read_control_outputs`] copies out.
    control_outputs: Vec<usize>,
    audio_inputs: usize,
    cv_inputs: usize,
    audio_outputs: usize,
    cv_outputs: usize,
    max_block: usize,
    /// The atom input that takes MIDI, if the plugin has one (at most one:
    /// [`discover`] refuses plugins with more).
    midi: Option<MidiInput>,
}

impl std::fmt::Debug for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Host")
            .field("controls", &self.controls.len())
            .finish_non_exhaustive()
    }
}

impl Host {
    /// Instantiates the plugin `uri` at `sample_rate` for periods of at most
    /// `max_block` frames. Allocates and reads files: never on the audio thread.
    pub fn new(uri: &str, sample_rate: f64, max_block: usize) -> Result<Host, String> {
        let info = discover::find(uri)?;
        if let Some(why) = &info.refused {
            return Err(format!("cannot host LV2 plugin {uri}: {why}"));
        }
        let world = discover::world();
        let plugin = world
            .plugin_by_uri(&info.uri)
            .ok_or_else(|| format!("LV2 plugin {uri} is installed but lilv cannot load it"))?;
        let features = world
            .try_build_features(livi::FeaturesBuilder {
                min_block_length: 1,
                max_block_length: max_block.max(1),
            })
            .map_err(|e| format!("LV2 features for {uri}: {e}"))?;
        if !(sample_rate.is_finite() && sample_rate > 0.0) {
            return Err(format!(
                "cannot run {uri} at a sample rate of {sample_rate}"
            ));
        }
        // Made with the features the instance gets: one URID map for both.
        let midi = info.ports_of(PortKind::MidiIn).next().map(|_| MidiInput {
            sequence: LV2AtomSequence::new(&features, MIDI_EVENTS * MIDI_EVENT_BYTES),
            midi_event: features.midi_urid(),
        });
        // SAFETY: the plugin's library and metadata come from the same installed
        // bundle (lilv checked its required features against livi's list above);
        // the sample rate is finite and positive. What the plugin's native code does
        // is beyond any host's proof: that is why it runs in its own worker process
        // with a standby, so that a crash costs this process, not the set.
        let instance = unsafe { plugin.instantiate(features.clone(), sample_rate) }
            .map_err(|e| format!("LV2 plugin {uri} failed to instantiate: {e:?}"))?;
        let mut instance = instance;
        let mut values = vec![0.0f32; info.ports.len()].into_boxed_slice();
        for p in &info.ports {
            if matches!(p.kind, PortKind::ControlIn | PortKind::ControlOut) {
                values[p.index] = p.default.unwrap_or(0.0);
                // SAFETY: `values` is boxed and lives as long as the instance (both
                // are fields of this Host, the box never reallocated), the index is
                // a control port of this plugin, and nothing else writes there.
                unsafe {
                    instance
                        .raw_mut()
                        .instance_mut()
                        .connect_port_mut(p.index, &mut values[p.index] as *mut f32)
                };
            }
        }
        let count = |k| info.ports_of(k).count();
        let has_state = crate::state::has_state(&instance);
        Ok(Host {
            instance,
            plugin,
            features,
            uri: info.uri.clone(),
            has_state,
            values,
            control_outputs: info
                .ports_of(PortKind::ControlOut)
                .map(|p| p.index)
                .collect(),
            controls: spec::controls(&info),
            audio_inputs: count(PortKind::AudioIn),
            cv_inputs: count(PortKind::CvIn),
            audio_outputs: count(PortKind::AudioOut),
            cv_outputs: count(PortKind::CvOut),
            max_block: max_block.max(1),
            midi,
        })
    }

    /// Whether the plugin has state of its own (the LV2 state extension), which
    /// [`Host::state_saver`] saves and [`Host::restore_state`] restores.
    pub fn has_state(&self) -> bool {
        self.has_state
    }

    /// Restores a state `set save` wrote (see [`crate::state`]): before the
    /// instance plays, off the audio thread (the spec's instantiation class).
    /// A plugin without the state extension refuses it.
    pub fn restore_state(&mut self, text: &str) -> Result<(), String> {
        if !self.has_state {
            return Err(format!(
                "{} has no state of its own (no LV2 state extension): remove its state",
                self.uri
            ));
        }
        crate::state::restore(&mut self.instance, &self.features, &self.uri, text)
    }

    /// What saves this instance's state while the audio thread plays it, or
    /// `None` for a plugin without the state extension.
    ///
    /// # Safety
    /// The saver must be dropped before this `Host` is (it holds a raw handle on
    /// the instance), and must not save while [`Host::restore_state`] runs.
    pub unsafe fn state_saver(&self) -> Option<crate::state::StateSaver> {
        if !self.has_state {
            return None;
        }
        // SAFETY: passed on to the caller (this function's contract).
        Some(unsafe {
            crate::state::StateSaver::new(
                &self.plugin,
                &self.instance,
                self.features.clone(),
                &self.uri,
            )
        })
    }

    /// Runs the plugin over `range` of the period's buffers with the parameters
    /// `params` (catalog order, already validated). `inputs` and `outputs` are the
    /// module's ports in catalog order (audio, then CV); each must hold `range`.
    /// `midi` is the period's MIDI input: (frame in the period, message), sorted
    /// by frame; those inside `range` reach the plugin at their frames (a plugin
    /// without a MIDI input ignores them).
    /// Returns how many output samples were not finite and were replaced by 0.
    /// Never allocates.
    pub fn run<'m>(
        &mut self,
        params: &[f32],
        inputs: &[&[f32]],
        outputs: &mut [&mut [f32]],
        midi: impl Iterator<Item = (usize, &'m [u8])> + Clone,
        range: Range<usize>,
    ) -> u64 {
        for (control, &value) in self.controls.iter().zip(params) {
            if let Some(slot) = self.values.get_mut(control.port) {
                *slot = control.mapping.control_value(value);
            }
        }
        let n_in = self.audio_inputs + self.cv_inputs;
        let n_out = self.audio_outputs + self.cv_outputs;
        let fits = inputs.len() >= n_in
            && outputs.len() >= n_out
            && inputs[..n_in].iter().all(|b| b.len() >= range.end)
            && outputs[..n_out].iter().all(|b| b.len() >= range.end);
        let mut replaced = 0;
        let mut start = range.start;
        while fits && start < range.end {
            // Never more than the block length the plugin was promised.
            let end = range.end.min(start + self.max_block);
            let r = start..end;
            let (audio_in, cv_in) = inputs[..n_in].split_at(self.audio_inputs);
            let (audio_out, cv_out) = outputs[..n_out].split_at_mut(self.audio_outputs);
            if let Some(input) = self.midi.as_mut() {
                input.fill(midi.clone(), r.clone());
            }
            let ports = livi::PortConnections {
                audio_inputs: audio_in.iter().map(|b| &b[r.clone()]),
                audio_outputs: audio_out.iter_mut().map(|b| &mut b[r.clone()]),
                atom_sequence_inputs: self.midi.iter().map(|m| &m.sequence),
                atom_sequence_outputs: std::iter::empty(),
                cv_inputs: cv_in.iter().map(|b| &b[r.clone()]),
                cv_outputs: cv_out.iter_mut().map(|b| &mut b[r.clone()]),
            };
            // SAFETY: every buffer holds `r` (checked above) and lives through the
            // call; the iterators yield exactly the plugin's port counts, in port
            // order within each type (the catalog's order); its only atom port is
            // the MIDI input (others are refused at discovery), given a sequence
            // made with this instance's URID map that `MidiInput::fill` left well
            // formed. Nothing else runs this instance.
            let ran = unsafe { self.instance.run(end - start, ports) };
            if ran.is_err() {
                for out in outputs[..n_out].iter_mut() {
                    out[r.clone()].fill(0.0);
                }
            }
            start = end;
        }
        let n_out = n_out.min(outputs.len());
        for out in outputs[..n_out].iter_mut() {
            let end = range.end.min(out.len());
            if !fits {
                out[range.start.min(end)..end].fill(0.0);
            }
            for s in &mut out[range.start.min(end)..end] {
                if !s.is_finite() {
                    *s = 0.0;
                    replaced += 1;
                }
            }
        }
        replaced
    }

    /// Copies the values the plugin last wrote to its control outputs, in port
    /// order (see [`spec::control_outputs`]), into `to` (as many as fit); a non-finite
    /// one is copied as 0, like a non-finite sample. Never allocates.
    pub fn read_control_outputs(&self, to: &mut [f32]) {
        for (slot, &port) in to.iter_mut().zip(&self.control_outputs) {
            let v = self.values.get(port).copied().unwrap_or(0.0);
            *slot = if v.is_finite() { v } else { 0.0 };
        }
    }
}

impl MidiInput {
    /// Empties the sequence and fills it with the messages of `midi` inside
    /// `block` (frames of the period), timed from the block's start. Never
    /// allocates: the sequence keeps its size. [`MIDI_EVENTS`] short messages
    /// fit; a message past them, or longer than three bytes (the worker passes
    /// neither), is left out.
    fn fill<'m>(&mut self, midi: impl Iterator<Item = (usize, &'m [u8])>, block: Range<usize>) {
        self.sequence.clear();
        for (frame, bytes) in midi {
            if frame >= block.end {
                break;
            }
            if frame < block.start {
                continue;
            }
            let time = (frame - block.start) as i64;
            let _ = self
                .sequence
                .push_midi_event::<3>(time, self.midi_event, bytes);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_block_of_512_midi_messages_fits_the_sequence_each_timed_from_the_blocks_start() {
        let features = discover::world()
            .try_build_features(livi::FeaturesBuilder {
                min_block_length: 1,
                max_block_length: 1024,
            })
            .unwrap();
        let mut input = MidiInput {
            sequence: LV2AtomSequence::new(&features, MIDI_EVENTS * MIDI_EVENT_BYTES),
            midi_event: features.midi_urid(),
        };
        let note = [0x90u8, 60, 100];
        // 513 messages over frames 0..1026: the block 2..1026 holds the last 512.
        let messages: Vec<(usize, &[u8])> = (0..=MIDI_EVENTS).map(|i| (i * 2, &note[..])).collect();
        input.fill(messages.iter().copied(), 2..1026);
        let events: Vec<i64> = input
            .sequence
            .iter()
            .map(|e| e.event.time_in_frames)
            .collect();
        assert_eq!(events.len(), MIDI_EVENTS);
        assert_eq!(events[0], 0, "frame 2 is the block's first");
        assert_eq!(events[MIDI_EVENTS - 1], 1022);
        assert!(input.sequence.iter().all(|e| e.data == note));
        // The next block starts empty.
        input.fill(std::iter::empty(), 0..1024);
        assert_eq!(input.sequence.iter().count(), 0);
    }
}

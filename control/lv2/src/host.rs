//! One running plugin instance.
//!
//! [`Host::new`] finds the plugin, instantiates and activates it (through
//! `livi`: URID map, options with the block lengths, bounded block length, the
//! worker schedule), off the audio thread. [`Host::run`] is what the audio thread
//! calls: it writes the control values, connects the period's buffers, runs the
//! plugin and replaces any non-finite sample it wrote with silence, counting them.
//! It never allocates, locks or logs.

use crate::discover::{self, PortKind};
use crate::spec::{self, Control};
use std::ops::Range;

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
    /// Returns how many output samples were not finite and were replaced by 0.
    /// Never allocates.
    pub fn run(
        &mut self,
        params: &[f32],
        inputs: &[&[f32]],
        outputs: &mut [&mut [f32]],
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
            let ports = livi::PortConnections {
                audio_inputs: audio_in.iter().map(|b| &b[r.clone()]),
                audio_outputs: audio_out.iter_mut().map(|b| &mut b[r.clone()]),
                atom_sequence_inputs: std::iter::empty(),
                atom_sequence_outputs: std::iter::empty(),
                cv_inputs: cv_in.iter().map(|b| &b[r.clone()]),
                cv_outputs: cv_out.iter_mut().map(|b| &mut b[r.clone()]),
            };
            // SAFETY: every buffer holds `r` (checked above) and lives through the
            // call; the iterators yield exactly the plugin's port counts, in port
            // order within each type (the catalog's order); the plugin has no atom
            // ports (refused at discovery). Nothing else runs this instance.
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

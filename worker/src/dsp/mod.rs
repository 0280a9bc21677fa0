//! The DSP modules.
//!
//! A module's whole state is plain `#[repr(C)]` data ([`ModuleState`]) plus one
//! optional large buffer (a delay line). Nothing in the state points anywhere, so the
//! state can be copied byte for byte into shared memory and continued by another
//! process. Parameter values are part of the state.
//!
//! Every kernel is deterministic: the same state and the same inputs give
//! bit-identical output.
//!
//! ```
//! use modsynth_worker::dsp::Module;
//! use modsynth_model::catalog;
//!
//! let mut vco = Module::new(catalog::module("vco").unwrap(), 48_000.0);
//! let out = vco.render(&[], 256);
//! assert_eq!(out[0].len(), 256);
//! ```

use crate::midi::MidiEvent;
use modsynth_model::catalog::{self, Kind, ModuleSpec, MAX_INPUTS, MAX_OUTPUTS, MAX_PARAMS};
use smooth::Ramps;
use std::ops::Range;

pub mod adsr;
pub mod clock;
pub mod constant;
pub mod delay;
pub mod lfo;
pub mod midi2cv;
pub mod mixer;
pub mod noise;
pub mod seq;
pub mod smooth;
#[cfg(test)]
mod tests;
pub mod vca;
pub mod vcf;
pub mod vco;
mod wave;

/// The ports of one period as a kernel sees them. Inputs and outputs are in catalog
/// order; entries past the module's own port count are empty slices.
pub struct Io<'a> {
    /// This period's input buffers.
    pub inputs: [&'a [f32]; MAX_INPUTS],
    /// This period's output buffers, written by the kernel.
    pub outputs: [&'a mut [f32]; MAX_OUTPUTS],
    /// The period's messages at the MIDI input, sorted by frame (empty for modules
    /// without one). A kernel called for a part of the period reads those inside it.
    pub midi: &'a [MidiEvent],
}

impl<'a> Io<'a> {
    /// An `Io` with every input and output empty; fill in the module's own ports.
    pub fn empty() -> Io<'a> {
        Io {
            inputs: [&[]; MAX_INPUTS],
            outputs: std::array::from_fn(|_| <&mut [f32]>::default()),
            midi: &[],
        }
    }
}

/// What every kernel reads besides its own state.
pub struct Context<'a> {
    /// The server's sample rate, Hz.
    pub sample_rate: f32,
    /// The module's parameters in catalog order (already validated), as they are at
    /// this sample: a smoothed parameter that is gliding reads its value on the way.
    pub params: &'a [f32; MAX_PARAMS],
}

/// The per-type DSP state, one variant per catalog entry, in catalog order.
// Plain fixed-size data on purpose (it is copied into shared-memory state slots):
// boxing the VCO's larger state would put it out of the segment's reach.
#[allow(clippy::large_enum_variant)]
#[repr(C, u32)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Kernel {
    /// A `vco`'s state.
    Vco(vco::Vco),
    /// An `lfo`'s state.
    Lfo(lfo::Lfo),
    /// A `vcf`'s state.
    Vcf(vcf::Vcf),
    /// A `vca`'s state.
    Vca(vca::Vca),
    /// An `adsr`'s state.
    Adsr(adsr::Adsr),
    /// A `mixer`'s state.
    Mixer(mixer::Mixer),
    /// A `noise`'s state.
    Noise(noise::Noise),
    /// A `delay`'s state (its buffer is outside the state, see [`Module`]).
    Delay(delay::Delay),
    /// A `seq`'s state.
    Seq(seq::Seq),
    /// A `const`'s state.
    Const(constant::Const),
    /// A `midi2cv`'s state.
    Midi2cv(midi2cv::Midi2cv),
    /// A `clock`'s state.
    Clock(clock::Clock),
    /// An LV2 plugin: its state is inside the plugin ([`Module`] holds it), which
    /// is why its standby runs in lockstep instead of loading it. What is here is
    /// how far the plugin has run.
    Lv2(Lv2Clock),
}

/// How many frames an LV2 plugin instance has run since it was made: published by
/// the primary, so that a standby made later can catch up (see
/// [`Module::catch_up`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Lv2Clock {
    /// Frames run.
    pub frames: u64,
}

impl Kernel {
    /// The initial state for a module of kind `kind`.
    fn new(kind: Kind) -> Kernel {
        match kind {
            Kind::Vco => Kernel::Vco(vco::Vco::default()),
            Kind::Lfo => Kernel::Lfo(lfo::Lfo::default()),
            Kind::Vcf => Kernel::Vcf(vcf::Vcf::default()),
            Kind::Vca => Kernel::Vca(vca::Vca::default()),
            Kind::Adsr => Kernel::Adsr(adsr::Adsr::default()),
            Kind::Mixer => Kernel::Mixer(mixer::Mixer::default()),
            Kind::Noise => Kernel::Noise(noise::Noise::default()),
            Kind::Delay => Kernel::Delay(delay::Delay::default()),
            Kind::Seq => Kernel::Seq(seq::Seq::default()),
            Kind::Const => Kernel::Const(constant::Const::default()),
            Kind::Midi2cv => Kernel::Midi2cv(midi2cv::Midi2cv::default()),
            Kind::Clock => Kernel::Clock(clock::Clock::default()),
            Kind::Lv2 => Kernel::Lv2(Lv2Clock::default()),
        }
    }

    /// Whether every number in the state is one the kernel can have produced:
    /// finite, positions inside their rings, counters far from overflow. A state
    /// restored from shared memory (written by another process) is only trusted
    /// after this.
    fn is_sane(&self) -> bool {
        // Far below u64::MAX and exact in f64: a position counter cannot overflow.
        const MAX_COUNT: u64 = 1 << 53;
        match self {
            Kernel::Vco(k) => {
                k.phase.is_finite()
                    && k.triangle.is_finite()
                    && (k.position as usize) < k.history.len()
                    && k.history.iter().all(|x| x.is_finite())
            }
            Kernel::Lfo(k) => k.phase.is_finite(),
            Kernel::Vcf(k) => k.ic1eq.is_finite() && k.ic2eq.is_finite(),
            Kernel::Adsr(k) => k.level.is_finite() && k.release_step.is_finite(),
            Kernel::Seq(k) => {
                k.origin.is_finite()
                    && k.rate.is_finite()
                    && k.samples < MAX_COUNT
                    && k.next_step < catalog::seq::STEPS_HELD as u64
                    && k.step < MAX_COUNT
                    && k.clocked <= 1
                    && k.inputs_high <= 3
            }
            Kernel::Midi2cv(k) => k.is_sane(),
            Kernel::Clock(k) => k.is_sane(),
            Kernel::Vca(_)
            | Kernel::Mixer(_)
            | Kernel::Noise(_)
            | Kernel::Delay(_)
            | Kernel::Const(_)
            | Kernel::Lv2(_) => true,
        }
    }

    fn process(&mut self, ctx: &Context, io: &mut Io, range: Range<usize>, buffer: &mut [f32]) {
        match self {
            Kernel::Vco(k) => k.process(ctx, io, range),
            Kernel::Lfo(k) => k.process(ctx, io, range),
            Kernel::Vcf(k) => k.process(ctx, io, range),
            Kernel::Vca(k) => k.process(ctx, io, range),
            Kernel::Adsr(k) => k.process(ctx, io, range),
            Kernel::Mixer(k) => k.process(ctx, io, range),
            Kernel::Noise(k) => k.process(ctx, io, range),
            Kernel::Delay(k) => k.process(ctx, io, range, buffer),
            Kernel::Seq(k) => k.process(ctx, io, range),
            Kernel::Const(k) => k.process(ctx, io, range),
            Kernel::Midi2cv(k) => k.process(ctx, io, range),
            Kernel::Clock(k) => k.process(ctx, io, range),
            // Played by the module's plugin (see `run`), not by a kernel.
            Kernel::Lv2(_) => {}
        }
    }
}

/// Length of the large buffer a module type needs at `sample_rate` (0 for most):
/// a delay's line, an LV2 plugin's control outputs (its primary writes them every
/// period; the supervisor reads them there for `/module/get`).
pub fn buffer_len(spec: &ModuleSpec, sample_rate: f32) -> usize {
    match spec.lv2_uri() {
        Some(uri) => modsynth_lv2::spec::control_outputs(uri).len(),
        None if spec.name == "delay" => delay::buffer_len(sample_rate),
        None => 0,
    }
}

/// Everything a module is, as plain data: the type, the sample rate, the parameter
/// values with their ramps in flight, and the kernel state.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ModuleState {
    /// Index of the module type in [`catalog::modules`].
    pub type_index: u32,
    /// The sample rate the state was made at, Hz.
    pub sample_rate: f32,
    /// Parameter values: where each one is now and where it is gliding to.
    pub params: Ramps,
    /// The DSP kernel's own state.
    pub kernel: Kernel,
}

/// Puts restored parameter ramps back into a state the engine can run: every
/// target finite and in its range (an enum's a whole choice), every current value
/// finite. A state whose ramps do not add up (a step that is not finite, a
/// direction that is neither, a count of moving ramps that is not the number of
/// ramps with samples left: `advance` would underflow it) has every ramp ended on
/// its target. A consistent, valid state is left bit for bit as it is, so a
/// hand-over stays exact.
fn check_ramps(r: &mut Ramps, spec: &ModuleSpec) {
    let moving = r.remaining.iter().filter(|&&n| n != 0).count();
    let mut consistent = r.active as usize == moving
        && r.in_octaves.iter().all(|&o| o <= 1)
        && r.step.iter().all(|s| s.is_finite());
    for i in 0..MAX_PARAMS {
        let Some(p) = spec.params.get(i) else {
            consistent &= r.remaining[i] == 0;
            r.current[i] = 0.0;
            r.target[i] = 0.0;
            continue;
        };
        let target = if r.target[i].is_finite() {
            r.target[i]
        } else {
            p.default
        };
        let target = if p.is_enum() { target.round() } else { target }.clamp(p.min, p.max);
        if target != r.target[i] {
            r.target[i] = target;
            consistent = false;
        }
        if !r.current[i].is_finite() {
            r.current[i] = target;
            consistent = false;
        }
    }
    if !consistent {
        for i in 0..MAX_PARAMS {
            r.current[i] = r.target[i];
            r.remaining[i] = 0;
            r.step[i] = 0.0;
            r.in_octaves[i] = 0;
        }
        r.active = 0;
    }
}

/// Runs `state`'s kernel over `range`. While a parameter glides the kernel runs one
/// sample at a time with the ramps advanced before each sample (the kernels read
/// their parameters once per call); once nothing moves, the rest of the range runs
/// in one call, so a module at rest costs what it did before smoothing existed.
///
/// A module with a plugin runs the plugin instead of its (empty) kernel, and
/// counts the non-finite samples the plugin wrote (replaced by silence) in
/// `non_finite`.
fn run(
    state: &mut ModuleState,
    n_params: usize,
    io: &mut Io,
    range: Range<usize>,
    buffer: &mut [f32],
    mut plugin: Option<&mut PluginSlot>,
) {
    let ModuleState {
        sample_rate,
        params,
        kernel,
        ..
    } = state;
    let mut play =
        |params: &[f32; MAX_PARAMS], io: &mut Io, r: Range<usize>| match plugin.as_deref_mut() {
            Some(slot) => {
                if let Kernel::Lv2(clock) = kernel {
                    clock.frames += r.len() as u64;
                }
                let midi = io.midi;
                let events = midi.iter().map(|e| (e.frame as usize, e.message()));
                slot.non_finite += slot
                    .host
                    .run(params, &io.inputs, &mut io.outputs, events, r);
                // Its meters, where `/module/get` reads them (the shared buffer).
                slot.host.read_control_outputs(buffer);
            }
            None => {
                let ctx = Context {
                    sample_rate: *sample_rate,
                    params,
                };
                kernel.process(&ctx, io, r, buffer);
            }
        };
    let mut start = range.start;
    while params.moving() && start < range.end {
        params.advance(n_params);
        play(&params.current, io, start..start + 1);
        start += 1;
    }
    if start < range.end {
        play(&params.current, io, start..range.end);
    }
}

/// A module's LV2 plugin instance, with the count of the non-finite samples it
/// wrote (replaced by silence before anyone heard them).
#[derive(Debug)]
struct PluginSlot {
    host: Box<modsynth_lv2::host::Host>,
    non_finite: u64,
    /// Silence to run the plugin on while it catches up, and where its output
    /// then goes: one period each, made with the module.
    zeros: Box<[f32]>,
    scratch: Box<[f32]>,
}

/// How many frames a standby catches up at most per period on the real-time
/// thread, in periods: it runs its plugin at up to twice the real rate until it is
/// in step (the bulk was caught up at assignment, off that thread).
pub const CATCH_UP_PERIODS: usize = 1;

/// How much a standby catches up at assignment, off the real-time thread, at most:
/// a minute of the primary's playing (an oscillator made an hour ago is not
/// replayed; its standby then takes over without a gap but not in phase).
pub const CATCH_UP_MAX_SECONDS: f32 = 60.0;

/// One running module: its state and its large buffer, or its LV2 plugin.
///
/// Building one allocates (the delay line, the plugin instance); do it off the
/// real-time thread and hand it over. [`Module::set_param`] and
/// [`Module::process`] never allocate.
#[derive(Debug)]
pub struct Module {
    spec: &'static ModuleSpec,
    state: ModuleState,
    buffer: Box<[f32]>,
    plugin: Option<PluginSlot>,
}

impl Module {
    /// A module of type `spec` with every parameter at its default.
    pub fn new(spec: &'static ModuleSpec, sample_rate: f32) -> Module {
        let type_index = catalog::module_index(spec.name).expect("spec comes from the catalog");
        Module {
            spec,
            state: ModuleState {
                type_index: type_index as u32,
                sample_rate,
                params: Ramps::at(&spec.defaults()),
                kernel: Kernel::new(spec.kind),
            },
            buffer: vec![0.0; buffer_len(spec, sample_rate)].into_boxed_slice(),
            plugin: None,
        }
    }

    /// A module of type `spec` ready to play: for an LV2 type, with its plugin
    /// instantiated for periods of at most `max_block` frames (which can fail:
    /// the reason says why). Allocates, loads a library: off the real-time thread.
    pub fn create(
        spec: &'static ModuleSpec,
        sample_rate: f32,
        max_block: usize,
    ) -> Result<Module, String> {
        let mut module = Module::new(spec, sample_rate);
        if let Some(uri) = spec.lv2_uri() {
            let host = modsynth_lv2::host::Host::new(uri, sample_rate as f64, max_block)?;
            let n_out = spec.output_ports().count();
            module.plugin = Some(PluginSlot {
                host: Box::new(host),
                non_finite: 0,
                zeros: vec![0.0; max_block.max(1)].into_boxed_slice(),
                scratch: vec![0.0; max_block.max(1) * n_out.max(1)].into_boxed_slice(),
            });
        }
        Ok(module)
    }

    /// Gives the module's LV2 plugin the state `set save` took from another
    /// instance of it (see `modsynth_lv2::state`): before the module plays, off
    /// the real-time thread. A built-in module has no such state.
    pub fn restore_plugin_state(&mut self, text: &str) -> Result<(), String> {
        match self.plugin.as_mut() {
            Some(slot) => slot.host.restore_state(text),
            None => Err(format!(
                "a {} has no plugin state (only LV2 plugins do)",
                self.spec.name
            )),
        }
    }

    /// What saves the plugin's own state while the real-time thread plays it;
    /// `None` for a built-in module or a plugin without the state extension.
    ///
    /// # Safety
    /// The saver must not be used once this module is dropped (it holds a raw
    /// handle on the plugin instance), nor while its state is being restored.
    pub unsafe fn plugin_state_saver(&self) -> Option<modsynth_lv2::state::StateSaver> {
        // SAFETY: passed on to the caller (this function's contract).
        self.plugin
            .as_ref()
            .and_then(|slot| unsafe { slot.host.state_saver() })
    }

    /// Whether a standby of this module must run it in lockstep with its primary
    /// (same inputs, same parameter changes, output silenced) because its state
    /// is opaque (an LV2 plugin's) and cannot be loaded from shared memory.
    pub fn is_lockstep(&self) -> bool {
        self.spec.kind == Kind::Lv2
    }

    /// Frames its plugin has run (0 for built-in modules).
    pub fn plugin_frames(&self) -> u64 {
        match self.state.kernel {
            Kernel::Lv2(clock) => clock.frames,
            _ => 0,
        }
    }

    /// Runs the plugin of a lockstep standby on silence, its output thrown away,
    /// for up to `frames` frames (at most [`CATCH_UP_PERIODS`] periods, or
    /// `unbounded` off the real-time thread), so that it has run as many frames as
    /// its primary: a plugin whose state depends on how long it has run (an
    /// oscillator's phase) and on recent input only is then in step with it.
    /// Returns the frames run. Never allocates.
    pub fn catch_up(&mut self, frames: u64, unbounded: bool) -> u64 {
        let Some(slot) = self.plugin.as_mut() else {
            return 0;
        };
        let block = slot.zeros.len();
        let limit = if unbounded {
            frames
        } else {
            frames.min((block * CATCH_UP_PERIODS) as u64)
        };
        let n_out = self.spec.output_ports().count();
        let n_in = self.spec.input_ports().count();
        let mut done = 0;
        while done < limit {
            let n = (limit - done).min(block as u64) as usize;
            let inputs: [&[f32]; MAX_INPUTS] = [&slot.zeros[..]; MAX_INPUTS];
            let mut outputs: [&mut [f32]; MAX_OUTPUTS] =
                std::array::from_fn(|_| <&mut [f32]>::default());
            for (o, chunk) in outputs
                .iter_mut()
                .zip(slot.scratch.chunks_mut(block))
                .take(n_out)
            {
                *o = chunk;
            }
            // No MIDI: what the primary was played before the standby existed is
            // gone (a note held then is not held in the standby).
            let _ = slot.host.run(
                &self.state.params.current,
                &inputs[..n_in],
                &mut outputs[..],
                std::iter::empty(),
                0..n,
            );
            done += n as u64;
        }
        if let Kernel::Lv2(clock) = &mut self.state.kernel {
            clock.frames += done;
        }
        done
    }

    /// Non-finite samples the module's plugin wrote so far, each replaced by
    /// silence before it left the module (0 for built-in modules, which cannot).
    pub fn non_finite_samples(&self) -> u64 {
        self.plugin.as_ref().map_or(0, |p| p.non_finite)
    }

    /// The module type.
    pub fn spec(&self) -> &'static ModuleSpec {
        self.spec
    }

    /// The whole state as plain data.
    pub fn state(&self) -> &ModuleState {
        &self.state
    }

    /// The large buffer (the delay line; empty for most types).
    pub fn buffer(&self) -> &[f32] {
        &self.buffer
    }

    /// The value parameter `index` was last set to (where a glide is heading).
    pub fn param(&self, index: usize) -> f32 {
        self.state.params.target[index]
    }

    /// Sets parameter `index` (catalog order) to a value checked by
    /// [`modsynth_model::param::validate`], gliding there from the next sample
    /// processed as the catalog's [`Smoothing`](catalog::Smoothing) says. An index
    /// past the module's parameters or a non-finite value is ignored, so nothing
    /// unchecked reaches the DSP.
    pub fn set_param(&mut self, index: usize, value: f32) {
        let Some(spec) = self.spec.params.get(index) else {
            return;
        };
        if value.is_finite() {
            let params = &mut self.state.params;
            let samples =
                spec.smoothing
                    .samples(params.current[index], value, self.state.sample_rate);
            match spec.smoothing {
                catalog::Smoothing::Octaves(_) => params.start_in_octaves(index, value, samples),
                _ => params.start(index, value, samples),
            }
        }
    }

    /// Sets parameter `index` at once, without a glide: for the values a module is
    /// created with, which are its starting point, not a change. Checked like
    /// [`Module::set_param`].
    pub fn init_param(&mut self, index: usize, value: f32) {
        if index < self.spec.params.len() && value.is_finite() {
            self.state.params.jump(index, value);
        }
    }

    /// Replaces the whole state with `state` (a standby taking over); ignored unless
    /// it is a state of this module type. The state comes from another process's
    /// shared memory, so it is checked like any input before the DSP sees it:
    /// parameters are put back in range (a non-finite one to its default; a NaN
    /// `seq.steps` once reached `% 0`), a kernel state with impossible numbers
    /// starts fresh, and the sample rate stays this worker's own. Never allocates
    /// (it runs on the real-time thread).
    ///
    /// A lockstep module (an LV2 plugin) keeps its own [`Lv2Clock`]: the clock
    /// counts the frames *this* instance ran, and the next standby catches up to
    /// what is published. The primary's published count lags its standby's when
    /// the standby ran the period the primary died in (it plays in lockstep until
    /// the owner word changes; the server often drops that cycle): taking that
    /// count made the clock a period short of the plugin, and the next standby a
    /// period behind the new primary, heard as a phase jump one takeover later.
    pub fn restore(&mut self, state: &ModuleState) {
        if state.type_index != self.state.type_index {
            return;
        }
        let mut checked = *state;
        checked.sample_rate = self.state.sample_rate;
        if self.is_lockstep() {
            checked.kernel = self.state.kernel;
        }
        check_ramps(&mut checked.params, self.spec);
        if !checked.kernel.is_sane() {
            checked.kernel = Kernel::new(self.spec.kind);
        }
        self.state = checked;
    }

    /// Runs the module over `range`, with `buffer` as its large buffer (the one in
    /// shared memory) instead of its own.
    pub fn process_with_buffer(&mut self, io: &mut Io, range: Range<usize>, buffer: &mut [f32]) {
        run(
            &mut self.state,
            self.spec.params.len(),
            io,
            range,
            buffer,
            self.plugin.as_mut(),
        );
    }

    /// Runs the module over `range` of the period's buffers.
    pub fn process(&mut self, io: &mut Io, range: Range<usize>) {
        run(
            &mut self.state,
            self.spec.params.len(),
            io,
            range,
            &mut self.buffer,
            self.plugin.as_mut(),
        );
    }

    /// Renders `frames` samples offline. `inputs` are in catalog order; missing ones
    /// read silence. Returns one buffer per output port. Allocates: for tests and the
    /// bench, not for the real-time thread.
    pub fn render(&mut self, inputs: &[&[f32]], frames: usize) -> Vec<Vec<f32>> {
        self.render_with_midi(inputs, &[], frames)
    }

    /// [`Module::render`] with `midi` (sorted by frame) at the MIDI input.
    pub fn render_with_midi(
        &mut self,
        inputs: &[&[f32]],
        midi: &[MidiEvent],
        frames: usize,
    ) -> Vec<Vec<f32>> {
        let silence = vec![0.0; frames];
        let n_out = self.spec.output_ports().count();
        let mut outs = vec![vec![0.0; frames]; MAX_OUTPUTS];
        {
            let mut io = Io::empty();
            for (k, slot) in io.inputs.iter_mut().enumerate() {
                *slot = inputs.get(k).copied().unwrap_or(&silence[..]);
            }
            for (slot, buf) in io.outputs.iter_mut().zip(outs.iter_mut()) {
                *slot = &mut buf[..];
            }
            io.midi = midi;
            self.process(&mut io, 0..frames);
        }
        outs.truncate(n_out);
        outs
    }
}

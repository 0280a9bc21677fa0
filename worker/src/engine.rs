//! The real-time engine: what runs inside the JACK process callback, without JACK.
//!
//! The control thread talks to the engine only through a [`Controller`]: commands go
//! in through one `rtrb` ring, and everything the engine lets go of (a replaced
//! module) comes back through a second ring, so that it is freed off the real-time
//! thread. [`Engine::process`] never allocates, locks, logs or blocks.
//!
//! Parameter changes carry an optional target frame (JACK frame time) and are applied
//! at exactly that sample inside the period; a change without one, or for a frame that
//! has already passed, is applied at the start of the next period. A smoothed
//! parameter's glide starts on that sample (see [`crate::dsp::smooth`]).
//!
//! ```
//! use modsynth_model::catalog;
//! use modsynth_worker::dsp::Module;
//! use modsynth_worker::engine::{self, Buffers};
//!
//! let (mut controller, mut engine) = engine::new::<Buffers>(64);
//! let vco = catalog::module("const").unwrap();
//! controller.install(Module::new(vco, 48_000.0), Buffers::new(vco, 256)).unwrap();
//! controller.set_param(0, 0.25, Some(100)).unwrap(); // `value` -> 0.25 from frame 100
//! engine.process(0, 256, &());
//! let out = &engine.ports().unwrap().outputs[0];
//! // The 5 ms glide (240 samples) starts on frame 100 and ends on frame 339.
//! assert_eq!((out[99], out[100]), (0.0, 0.25 / 240.0));
//! engine.process(256, 256, &());
//! let out = &engine.ports().unwrap().outputs[0];
//! assert_eq!((out[339 - 256 - 1] < 0.25, out[339 - 256]), (true, 0.25));
//! ```
//!
//! # Handovers
//!
//! A module moves between two live workers without a gap by a planned handover
//! ([`modsynth_shm::Handover`], written into its state segment): the new owner's
//! engine writes it when its control thread sends [`Controller::hand_over`]. The
//! old owner reads it at the end of every period it plays: when the next period
//! starts at or after the handover's frame, it swaps the owner word to the new
//! owner (the fencing compare-and-swap) right after publishing. The new owner
//! plays from the period after the last one published (if it runs after the old
//! owner in the period the swap happened in, it stays silent in it): every frame
//! is played once, in whatever order (or at the same time) the server runs the
//! two, and the new owner continues from the state published at the end of the
//! period before its first.
//! A handover written after its frame happens at the first period the old owner
//! ends after seeing it: the next one or the one after, depending on which of the
//! two ran first in the period it was written in. An old owner that has stopped
//! running is taken over by the new owner itself after [`HANDOVER_PATIENCE`]
//! periods.

use crate::denormals::FlushToZero;
use crate::dsp::{Io, Kernel, Module};
use crate::gate::{GateChange, OutputGate};
use crate::shared_state::SharedState;
use modsynth_model::catalog::ModuleSpec;
use modsynth_model::histogram::Histogram;
use modsynth_shm::Handover;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

/// The ports a module reads and writes, as seen from the real-time thread. The JACK
/// host implements it over JACK ports; [`Buffers`] implements it over memory for tests.
pub trait Ports: Send + 'static {
    /// What the host hands the callback (JACK's `ProcessScope`; `()` for [`Buffers`]).
    type Scope;
    /// The buffers of this period. Must not allocate.
    fn bind<'a>(&'a mut self, n_frames: usize, scope: &'a Self::Scope) -> Io<'a>;
}

/// A module together with its ports: what the engine plays.
pub struct Slot<P> {
    /// The module: its state and kernel.
    pub module: Module,
    /// Where it reads and writes its samples.
    pub ports: P,
    /// The module's state in shared memory, when it has one (see
    /// [`crate::shared_state`]): then the engine plays only while this worker owns it.
    pub shared: Option<SharedState>,
}

/// A message from the control thread to the real-time thread.
pub enum Command<P> {
    /// Set a parameter (see [`ParamChange`]).
    SetParam(ParamChange),
    /// Play this slot from the next period on; the previous one is handed back.
    Install(Box<Slot<P>>),
    /// Move the output gate (see [`crate::gate`]); an installed module starts open.
    Gate(GateChange),
    /// Stop playing: the module fades out (see [`FADE_SECONDS`]), one whole period
    /// of silence is written to every output, then the slot is handed back.
    Remove,
    /// Take the playing module over from its live owner `from` on the first
    /// period that starts at or after JACK frame `at` (see [Handovers](self#handovers)).
    HandOver {
        /// The first frame this engine plays.
        at: u32,
        /// The owner it takes the module from.
        from: u64,
    },
}

/// One parameter change on its way to the real-time thread.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ParamChange {
    /// Parameter index in catalog order.
    pub index: u16,
    /// The value, already validated.
    pub value: f32,
    /// JACK frame to apply it at; `None` means as soon as possible.
    pub at: Option<u32>,
    /// JACK frame at which the request was received, if known: the engine counts the
    /// latency from there to the sample the change lands on (for immediate changes).
    pub received: Option<u32>,
}

/// How many latencies the ring from the real-time thread to the control thread
/// holds: the control thread records them after every message it handles, and each
/// latency comes from a message, so the ring only has to hold what arrives between
/// two of them. A full ring counts [`Stats::latencies_unrecorded`].
pub const LATENCY_RING: usize = 4096;

/// Counters the engine keeps and any thread may read.
#[derive(Debug)]
pub struct Stats {
    /// Periods processed.
    pub cycles: AtomicU64,
    /// Parameter changes taken from the ring.
    pub params_received: AtomicU64,
    /// Parameter changes applied to the module.
    pub params_applied: AtomicU64,
    /// Changes applied on arrival instead of at their frame because the schedule was full.
    pub params_late: AtomicU64,
    /// Changes discarded because their module was replaced or removed first.
    pub params_dropped: AtomicU64,
    /// Immediate changes whose receipt-to-application latency was not recorded
    /// because the ring to the control thread was full (see [`LATENCY_RING`]).
    pub latencies_unrecorded: AtomicU64,
    /// Times this engine started owning a shared module (took it over or created it).
    pub takeovers: AtomicU64,
    /// At the last takeover (written before `takeovers` is incremented): the frames
    /// of the periods this engine ran silent, waiting for ownership, after the end
    /// of its predecessor's last published period. No less than what a listener
    /// missed: cycles the server skipped for every client are not counted (a
    /// frame-clock difference counted them, and said 256 for seamless takeovers),
    /// but jackd2 also skips everything downstream of a dead primary for a cycle or
    /// two while this engine, upstream, runs them silent: those count and are never
    /// heard (measured: 256 and 512 reported, recordings seamless, as many frames
    /// dropped by the server).
    pub last_takeover_gap: AtomicU64,
    /// Non-finite samples the module's plugin wrote, replaced by silence (an LV2
    /// plugin's; built-in modules never write any).
    pub non_finite: AtomicU64,
    /// Whether the last period played a module as its owner (a module without
    /// shared state is always its worker's own): a standby host without a
    /// supervisor plays on while one of its seats does.
    pub owning: AtomicBool,
}

impl Default for Stats {
    fn default() -> Stats {
        Stats {
            cycles: AtomicU64::new(0),
            params_received: AtomicU64::new(0),
            params_applied: AtomicU64::new(0),
            params_late: AtomicU64::new(0),
            params_dropped: AtomicU64::new(0),
            latencies_unrecorded: AtomicU64::new(0),
            takeovers: AtomicU64::new(0),
            last_takeover_gap: AtomicU64::new(0),
            non_finite: AtomicU64::new(0),
            owning: AtomicBool::new(false),
        }
    }
}

impl Stats {
    /// Changes that have been dealt with: applied, or dropped with their module.
    pub fn params_settled(&self) -> u64 {
        self.params_applied.load(Ordering::Acquire) + self.params_dropped.load(Ordering::Acquire)
    }
}

/// How long a removed module fades out: as long as a parameter glide, so freeing a
/// module mid-note sounds like turning its level down quickly, not a cut.
pub const FADE_SECONDS: f32 = 0.005;

/// A removed module on its way out.
struct Fading<P> {
    slot: Box<Slot<P>>,
    /// Samples of the fade already played.
    done: usize,
}

/// How many future-scheduled parameter changes the engine holds at once.
const SCHEDULE_CAPACITY: usize = 256;

#[derive(Clone, Copy, Default)]
struct Scheduled {
    at: u32,
    change: ParamChange,
}

/// The control thread's end: sends commands, frees what the engine retired.
pub struct Controller<P> {
    commands: rtrb::Producer<Command<P>>,
    retired: rtrb::Consumer<Box<Slot<P>>>,
    /// Receipt-to-application latencies (samples) of immediate changes, from the
    /// engine; recorded into `latency` off the real-time thread.
    latencies: rtrb::Consumer<u32>,
    /// Every latency recorded so far (see [`Controller::latency_quantile`]).
    latency: Histogram,
    stats: Arc<Stats>,
}

/// How long installing or removing a module waits for room in a full command
/// ring: many periods, so only a real-time thread that stopped makes it fail.
pub const WAIT_FOR_ROOM: std::time::Duration = std::time::Duration::from_secs(1);

/// Why a command could not be sent.
#[derive(Debug, PartialEq, Eq)]
pub enum SendError {
    /// The ring is full: the real-time thread is not running or far behind.
    Full,
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the real-time thread is not taking commands (ring full)")
    }
}

impl std::error::Error for SendError {}

impl<P> Controller<P> {
    /// Schedules a parameter change; `at` is a JACK frame time, `None` means now.
    pub fn set_param(
        &mut self,
        index: usize,
        value: f32,
        at: Option<u32>,
    ) -> Result<(), SendError> {
        self.send_change(ParamChange {
            index: index as u16,
            value,
            at,
            received: None,
        })
    }

    /// Schedules a parameter change with all its details.
    pub fn send_change(&mut self, change: ParamChange) -> Result<(), SendError> {
        self.send(Command::SetParam(change))
    }

    /// Hands a module and its ports to the engine.
    pub fn install(&mut self, module: Module, ports: P) -> Result<(), SendError> {
        self.install_shared(module, ports, None)
    }

    /// Hands a module whose state lives in shared memory to the engine.
    pub fn install_shared(
        &mut self,
        module: Module,
        ports: P,
        shared: Option<SharedState>,
    ) -> Result<(), SendError> {
        self.send_waiting(Command::Install(Box::new(Slot {
            module,
            ports,
            shared,
        })))
    }

    /// Moves the module's output gate at a frame (see [`crate::gate`]): a set
    /// switch mutes and unmutes whole sets on one sample. Waits for room like an
    /// install: a lost gate change would leave a set silent or sounding.
    pub fn set_gate(&mut self, change: GateChange) -> Result<(), SendError> {
        self.send_waiting(Command::Gate(change))
    }

    /// Asks the engine to stop playing its module.
    pub fn remove(&mut self) -> Result<(), SendError> {
        self.send_waiting(Command::Remove)
    }

    /// Asks the engine to take its module over from live owner `from` on the
    /// first period that starts at or after frame `at` (see
    /// [Handovers](self#handovers)); [`Stats::takeovers`] counts it once it has.
    pub fn hand_over(&mut self, at: u32, from: u64) -> Result<(), SendError> {
        self.send_waiting(Command::HandOver { at, from })
    }

    /// Takes back everything the engine has let go of, so the caller can free it or
    /// unregister its ports.
    pub fn collect_retired(&mut self) -> Vec<Box<Slot<P>>> {
        let mut out = Vec::new();
        while let Ok(slot) = self.retired.pop() {
            out.push(slot);
        }
        out
    }

    /// Moves the latencies the engine measured into the histogram. Called after
    /// every message the worker handles (by the host's tidy-up) and before a
    /// quantile is read.
    pub fn record_latencies(&mut self) {
        while let Ok(samples) = self.latencies.pop() {
            self.latency.record(f64::from(samples));
        }
    }

    /// The latency (samples) within which `q` (0..=1) of the measured immediate
    /// changes landed after their receipt, exact to the sample (see
    /// [`Histogram`]). `None` before anything was measured.
    pub fn latency_quantile(&mut self, q: f64) -> Option<u32> {
        self.record_latencies();
        self.latency.quantile(q).map(|samples| samples as u32)
    }

    /// The engine's counters.
    pub fn stats(&self) -> &Arc<Stats> {
        &self.stats
    }

    fn send(&mut self, command: Command<P>) -> Result<(), SendError> {
        self.commands.push(command).map_err(|_| SendError::Full)
    }

    /// Sends a command that must not be lost to a burst of parameter changes
    /// (installing or removing the module): waits for room in the ring, which
    /// the real-time thread empties every period, for up to [`WAIT_FOR_ROOM`].
    fn send_waiting(&mut self, mut command: Command<P>) -> Result<(), SendError> {
        let deadline = std::time::Instant::now() + WAIT_FOR_ROOM;
        loop {
            match self.commands.push(command) {
                Ok(()) => return Ok(()),
                Err(rtrb::PushError::Full(back)) => command = back,
            }
            if std::time::Instant::now() >= deadline {
                return Err(SendError::Full);
            }
            std::thread::sleep(std::time::Duration::from_micros(200));
        }
    }
}

/// The real-time thread's end.
pub struct Engine<P> {
    commands: rtrb::Consumer<Command<P>>,
    retired: rtrb::Producer<Box<Slot<P>>>,
    /// Where the latency of each immediate change goes (see [`LATENCY_RING`]).
    latencies: rtrb::Producer<u32>,
    slot: Option<Box<Slot<P>>>,
    /// A removed module still fading out.
    fading: Option<Fading<P>>,
    /// The gain on the module's outputs (set switches).
    gate: OutputGate,
    schedule: [Scheduled; SCHEDULE_CAPACITY],
    scheduled: usize,
    stats: Arc<Stats>,
    /// This worker's id in a shared state's `owner` word (its pid).
    owner_id: u64,
    /// Whether the last period played a shared module as its owner; when it starts
    /// owning one, the state is first loaded from the published slot.
    owning: bool,
    /// The last periods run without playing the module, for the takeover gap.
    silent: SilentPeriods,
    /// What this engine published last (or loaded, when it started owning): its
    /// next publication is fenced on it still being what is published.
    last_published: (u32, usize),
    /// The handover this engine planned as its module's next owner, until it owns it.
    planned: Option<Planned>,
}

/// A handover an engine wrote into its module's state, as the next owner.
#[derive(Debug, Clone, Copy)]
struct Planned {
    /// What it wrote.
    handover: Handover,
    /// The owner it takes the module from.
    from: u64,
    /// Periods this engine ran since the handover came due without owning the
    /// module: past [`HANDOVER_PATIENCE`], the old owner is taken for dead.
    overdue: u64,
}

/// Periods a planned handover may be due without the old owner giving the module
/// away before the new owner takes it itself: a live owner gives it at the end of
/// the first period that ends at or after the handover's frame, so only one that
/// stopped running (died, hung) keeps it longer. As many as a standby's watcher
/// waits for a silent primary ([`crate::standby::HANG_PERIODS`]): a slow owner
/// still inside an old period must not be played over.
pub const HANDOVER_PATIENCE: u64 = crate::standby::HANG_PERIODS;

/// A connected controller and engine; `capacity` is the command ring's size.
pub fn new<P: Ports>(capacity: usize) -> (Controller<P>, Engine<P>) {
    let (commands_tx, commands_rx) = rtrb::RingBuffer::new(capacity);
    // Room for every slot the controller could send before collecting: the engine
    // must never be unable to hand one back (it would have to free it itself).
    let (retired_tx, retired_rx) = rtrb::RingBuffer::new(capacity + 1);
    let (latencies_tx, latencies_rx) = rtrb::RingBuffer::new(LATENCY_RING);
    let stats = Arc::new(Stats::default());
    (
        Controller {
            commands: commands_tx,
            retired: retired_rx,
            latencies: latencies_rx,
            latency: Histogram::new(),
            stats: stats.clone(),
        },
        Engine {
            commands: commands_rx,
            retired: retired_tx,
            latencies: latencies_tx,
            slot: None,
            fading: None,
            gate: OutputGate::default(),
            schedule: [Scheduled::default(); SCHEDULE_CAPACITY],
            scheduled: 0,
            stats,
            owner_id: std::process::id() as u64,
            owning: false,
            silent: SilentPeriods {
                ring: [(0, 0); SILENT_MEMORY],
                next: 0,
            },
            last_published: (0, 0),
            planned: None,
        },
    )
}

impl<P: Ports> Engine<P> {
    /// Runs one period of `n_frames` starting at JACK frame `frame_time`.
    pub fn process(&mut self, frame_time: u32, n_frames: usize, scope: &P::Scope) {
        if self.slot.is_none() && self.fading.is_none() && self.commands.is_empty() {
            // Nothing to play and nothing coming (a spare, an empty seat of a
            // standby host): one atomic load, no flush-to-zero switch.
            self.silent.note(frame_time, n_frames);
            return;
        }
        // A decaying tail must reach 0, not crawl through subnormals (slow on x86).
        let _ftz = FlushToZero::new();
        self.take_commands(frame_time);
        self.fade_out(n_frames, scope);
        let Some(slot) = self.slot.as_deref_mut() else {
            self.drop_schedule();
            // A spare that may replace a dead primary: its idle periods are ones no
            // one played the module in.
            self.silent.note(frame_time, n_frames);
            self.stats.owning.store(false, Ordering::Relaxed);
            return;
        };
        let Slot {
            module,
            ports,
            shared,
        } = slot;
        let mut io = ports.bind(n_frames, scope);
        // A kernel indexes its outputs up to the end of its range; never past them.
        let n_frames = n_frames.min(io.outputs[0].len());
        let mut period = Period {
            schedule: &mut self.schedule,
            scheduled: &mut self.scheduled,
            latencies: &mut self.latencies,
            stats: &self.stats,
            frame_time,
            n_frames,
        };
        let mut large = None;
        if let Some(shared) = shared.as_ref() {
            follow_planned(shared, &mut self.planned, frame_time, self.owner_id);
            // A new owner starts with the period after the last one its predecessor
            // published: one that gave the module away (or died) at the end of this
            // very period, before this engine ran it, played it already.
            let mine = shared.owner() == self.owner_id
                && (self.owning || frame_offset(shared.published().0, frame_time) <= 0);
            if !mine {
                // A standby, or a primary that lost its module: silent, state untouched.
                // A module whose state is opaque (an LV2 plugin) is played in
                // lockstep with its primary instead, its output thrown away, so that
                // its state is the primary's when it takes over.
                if module.is_lockstep() {
                    // In step means having run as many frames as the primary: a
                    // standby made after it catches up (see `Module::catch_up`).
                    let (published_end, published_slot) = shared.published();
                    let type_index = module.state().type_index;
                    let loaded = shared.load(published_slot, type_index).map(|s| s.kernel);
                    // Still what was published after the copy: a primary that
                    // published twice meanwhile (this thread preempted for a period)
                    // rewrote that slot with a later count, which paired with the
                    // older frame would run the standby ahead. Next period, then.
                    let unchanged = shared.published() == (published_end, published_slot);
                    if let (Some(Kernel::Lv2(clock)), true) = (loaded, unchanged) {
                        // Its count at this period's start: what it published, less
                        // this period if it has played it already. Never projected
                        // forward over periods it has not published: the server may
                        // have skipped them for everyone.
                        let primary =
                            clock.frames as i64 + frame_offset(frame_time, published_end).min(0);
                        let behind = primary - module.plugin_frames() as i64;
                        if behind > 0 {
                            module.catch_up(behind as u64, false);
                        }
                    }
                    period.play(module, &mut io, None);
                }
                for out in io.outputs.iter_mut() {
                    out.fill(0.0);
                }
                // Scaling zeros changes nothing, but a scheduled change comes due.
                self.gate.apply(&mut io.outputs[..], frame_time, n_frames);
                self.owning = false;
                self.silent.note(frame_time, n_frames);
                self.stats.owning.store(false, Ordering::Relaxed);
                self.stats.cycles.fetch_add(1, Ordering::Relaxed);
                return;
            }
            if !self.owning {
                // Just took over: continue from the last completed period.
                let (published_frame, published_slot) = shared.published();
                let type_index = module.state().type_index;
                if let Some(state) = shared.load(published_slot, type_index) {
                    module.restore(&state);
                }
                self.last_published = (published_frame, published_slot);
                self.owning = true;
                let gap = self.silent.heard_gap(published_frame, frame_time);
                self.stats.last_takeover_gap.store(gap, Ordering::Relaxed);
                self.stats.takeovers.fetch_add(1, Ordering::Release);
            }
            shared.enter(frame_time, self.owner_id);
            // SAFETY: we own the module (checked above), so we are its only writer,
            // and this is the only reference to the buffer this period.
            large = Some(unsafe { shared.large() });
        }
        period.play(module, &mut io, large);
        self.gate.apply(&mut io.outputs[..], frame_time, n_frames);
        if let Some(shared) = shared.as_ref() {
            let end = frame_time.wrapping_add(n_frames as u32);
            // Fenced twice: the owner word again (a standby may have taken over
            // during this period), and the publication itself only if nobody else
            // published since our last one.
            let published = (shared.owner() == self.owner_id)
                .then(|| shared.publish_after(self.last_published, module.state(), end))
                .flatten();
            match published {
                Some(now) => {
                    self.last_published = now;
                    give_away_if_due(shared, end, self.owner_id);
                }
                // Someone else wrote the module's state: if we still own it, the
                // next period continues from what they published.
                None => self.owning = false,
            }
        }
        self.stats.owning.store(true, Ordering::Relaxed);
        self.stats.cycles.fetch_add(1, Ordering::Relaxed);
    }

    /// Sets the id this engine writes into a shared state's `owner` word and plays
    /// by (its process id by default), so tests can run a primary and its standby as
    /// two engines in one process.
    pub fn set_owner_id(&mut self, id: u64) {
        self.owner_id = id;
        self.owning = false;
    }

    /// The playing module, if any (for tests and the host's bookkeeping).
    pub fn module(&self) -> Option<&Module> {
        self.slot.as_deref().map(|s| &s.module)
    }

    /// The playing module's ports, if any.
    pub fn ports(&self) -> Option<&P> {
        self.slot.as_deref().map(|s| &s.ports)
    }

    /// The playing module's ports, mutably: offline tests and the bench fill the
    /// inputs of [`Buffers`] before each period.
    pub fn ports_mut(&mut self) -> Option<&mut P> {
        self.slot.as_deref_mut().map(|s| &mut s.ports)
    }

    fn take_commands(&mut self, frame_time: u32) {
        while let Ok(command) = self.commands.pop() {
            match command {
                Command::SetParam(change) => {
                    self.stats.params_received.fetch_add(1, Ordering::Relaxed);
                    // "As soon as possible" and "already past" both mean this period's
                    // first sample.
                    let at = match change.at {
                        Some(at) if frame_offset(at, frame_time) > 0 => at,
                        _ => frame_time,
                    };
                    if self.scheduled == SCHEDULE_CAPACITY {
                        // Full: apply it now rather than drop it (counted, so the
                        // supervisor can report it).
                        self.stats.params_late.fetch_add(1, Ordering::Relaxed);
                        if let Some(slot) = self.slot.as_deref_mut() {
                            slot.module.set_param(change.index as usize, change.value);
                            self.stats.params_applied.fetch_add(1, Ordering::Release);
                        } else {
                            self.stats.params_dropped.fetch_add(1, Ordering::Release);
                        }
                        continue;
                    }
                    self.schedule[self.scheduled] = Scheduled { at, change };
                    self.scheduled += 1;
                }
                Command::Gate(change) => self.gate.schedule(change, frame_time),
                Command::Install(slot) => {
                    self.withdraw_handover();
                    self.drop_schedule();
                    self.owning = false;
                    self.gate = OutputGate::default();
                    if let Some(old) = self.slot.replace(slot) {
                        self.retire(old);
                    }
                }
                Command::Remove => {
                    self.withdraw_handover();
                    self.drop_schedule();
                    if let Some(slot) = self.slot.take() {
                        let fading = Fading { slot, done: 0 };
                        if let Some(old) = self.fading.replace(fading) {
                            self.retire(old.slot);
                        }
                    }
                }
                Command::HandOver { at, from } => self.plan_handover(at, from),
            }
        }
    }

    /// Writes a handover of the playing module to this engine into its state (one
    /// atomic store) and remembers it; without a shared module there is nothing
    /// to take over (the control thread's wait for the takeover times out).
    fn plan_handover(&mut self, at: u32, from: u64) {
        let Some(shared) = self.slot.as_deref().and_then(|s| s.shared.as_ref()) else {
            return;
        };
        let handover = Handover {
            to: self.owner_id as u32,
            at,
        };
        shared.set_handover(handover);
        self.planned = Some(Planned {
            handover,
            from,
            overdue: 0,
        });
    }

    /// Removes the handover this engine planned, if it has not happened yet: its
    /// module is being replaced or removed.
    fn withdraw_handover(&mut self) {
        let planned = self.planned.take();
        let shared = self.slot.as_deref().and_then(|s| s.shared.as_ref());
        if let (Some(planned), Some(shared)) = (planned, shared) {
            shared.clear_handover(planned.handover);
        }
    }

    /// Plays one period of the removed module's fade, or of silence once it is over,
    /// and hands the slot back after the first whole period of silence.
    fn fade_out(&mut self, n_frames: usize, scope: &P::Scope) {
        let owner_id = self.owner_id;
        let owning = self.owning;
        // A muted module (the outgoing set of a switch) fades out muted.
        let gain = self.gate.gain();
        let Some(fading) = self.fading.as_mut() else {
            return;
        };
        let Slot {
            module,
            ports,
            shared,
        } = &mut *fading.slot;
        let mut io = ports.bind(n_frames, scope);
        let n_frames = n_frames.min(io.outputs[0].len());
        let fade = ((FADE_SECONDS * module.state().sample_rate) as usize).max(1);
        // Only the owner sounds: a standby's outputs were silent all along.
        let sounding = match shared.as_ref() {
            Some(shared) => owning && shared.owner() == owner_id,
            None => true,
        };
        let left = fade.saturating_sub(fading.done).min(n_frames);
        if sounding && left > 0 {
            match shared.as_ref() {
                // SAFETY: we own the module (checked above), so we are its only
                // writer, and this is the only reference to the buffer this period.
                Some(shared) => {
                    module.process_with_buffer(&mut io, 0..left, unsafe { shared.large() })
                }
                None => module.process(&mut io, 0..left),
            }
            // Outputs past the module's own are empty slices.
            for out in io.outputs.iter_mut() {
                let n = left.min(out.len());
                for (i, s) in out[..n].iter_mut().enumerate() {
                    // Linear, from just below 1 down to 0 on the fade's last sample.
                    *s *= gain * (1.0 - (fading.done + i + 1) as f32 / fade as f32);
                }
            }
        }
        let silent_from = if sounding { left } else { 0 };
        for out in io.outputs.iter_mut() {
            let from = silent_from.min(out.len());
            out[from..].fill(0.0);
        }
        fading.done += left;
        // Handed back only after a whole period of zeros: JACK keeps an output port's
        // buffer as the last period left it, so a port handed back with the end of
        // the fade in it would replay that to whoever still listens, every period.
        if silent_from == 0 {
            let fading = self.fading.take().expect("checked above");
            self.retire(fading.slot);
        }
    }

    /// Forgets pending changes (their module is gone), counting them as dropped.
    fn drop_schedule(&mut self) {
        if self.scheduled > 0 {
            self.stats
                .params_dropped
                .fetch_add(self.scheduled as u64, Ordering::Release);
            self.scheduled = 0;
        }
    }

    fn retire(&mut self, slot: Box<Slot<P>>) {
        if let Err(rtrb::PushError::Full(slot)) = self.retired.push(slot) {
            // Cannot happen while the ring is larger than the command ring, but if it
            // did, leaking beats freeing on the real-time thread.
            std::mem::forget(slot);
        }
    }
}

/// Signed distance from `now` to `at` in frames, correct across the u32 wrap of JACK's
/// frame counter (about 24 hours at 48 kHz).
/// The last [`SILENT_MEMORY`] periods an engine ran without playing its module:
/// (first frame, length; 0 = empty), a ring at `next`. Plain data, no allocation.
struct SilentPeriods {
    ring: [(u32, u32); SILENT_MEMORY],
    next: usize,
}

impl SilentPeriods {
    /// Remembers a period run without playing the module.
    fn note(&mut self, frame_time: u32, n_frames: usize) {
        self.ring[self.next] = (frame_time, n_frames as u32);
        self.next = (self.next + 1) % SILENT_MEMORY;
    }

    /// Frames of the silent periods remembered that started at or after `published`
    /// (the end of the predecessor's last period): what a listener missed before
    /// the period starting at `now`. When every period remembered is one of them
    /// (a spare replacing a dead primary can take longer than that), the whole span
    /// on the frame clock. Forgets them, so the next takeover counts its own.
    fn heard_gap(&mut self, published: u32, now: u32) -> u64 {
        let (mut gap, mut periods) = (0, 0);
        for (start, len) in self.ring.iter_mut() {
            if *len > 0 && frame_offset(*start, published) >= 0 {
                gap += *len as u64;
                periods += 1;
            }
            *len = 0;
        }
        if periods == SILENT_MEMORY {
            frame_offset(now, published).max(0) as u64
        } else {
            gap
        }
    }
}

/// Silent periods an engine remembers for [`SilentPeriods::heard_gap`]: more than a standby
/// waits for a dead primary (its hang limit is 16 periods), so a gap is never
/// under-counted; a longer one is measured on the frame clock.
const SILENT_MEMORY: usize = 32;

/// The new owner's side of a planned handover, at the start of a period, before
/// its owner check: once it owns the module it clears the record it wrote. An old
/// owner that stopped running never gives the module away: after
/// [`HANDOVER_PATIENCE`] due periods the new owner takes it with the fencing
/// compare-and-swap from the owner it recorded.
fn follow_planned(shared: &SharedState, planned: &mut Option<Planned>, frame_time: u32, me: u64) {
    let Some(p) = planned.as_mut() else {
        return;
    };
    if shared.owner() != me {
        if !p.handover.is_due(frame_time) {
            return;
        }
        p.overdue += 1;
        if p.overdue <= HANDOVER_PATIENCE || !shared.take_over(p.from, me) {
            return;
        }
    }
    shared.clear_handover(p.handover);
    *planned = None;
}

/// The old owner's side of a planned handover, at the end of a period it played
/// and published (`next_frame`: where the next period starts): if the next period
/// is the handover's or later, the module goes to its new owner now, with the
/// fencing compare-and-swap, so that both see the new owner word from the next
/// period's start, whichever of them runs first in it (or both at once: jackd2
/// runs clients that do not feed each other in parallel). Not at the start of that
/// period: the new owner may have run it silent already.
fn give_away_if_due(shared: &SharedState, next_frame: u32, me: u64) {
    if let Some(h) = shared.handover() {
        if u64::from(h.to) != me && h.is_due(next_frame) {
            shared.take_over(me, u64::from(h.to));
        }
    }
}

fn frame_offset(at: u32, now: u32) -> i64 {
    at.wrapping_sub(now) as i32 as i64
}

/// The scheduled change that comes first inside this period, with its offset.
fn due_offset(schedule: &[Scheduled], frame_time: u32, n_frames: usize) -> Option<(usize, usize)> {
    let mut best: Option<(usize, usize)> = None;
    for (i, s) in schedule.iter().enumerate() {
        let offset = frame_offset(s.at, frame_time).max(0) as usize;
        if offset < n_frames && best.is_none_or(|(_, b)| offset < b) {
            best = Some((i, offset));
        }
    }
    best
}

/// What one period of playing a module needs besides the module: the schedule of
/// parameter changes, where their latencies go, the counters, the period.
struct Period<'a> {
    schedule: &'a mut [Scheduled; SCHEDULE_CAPACITY],
    scheduled: &'a mut usize,
    latencies: &'a mut rtrb::Producer<u32>,
    stats: &'a Stats,
    frame_time: u32,
    n_frames: usize,
}

impl Period<'_> {
    /// Runs `module` over the period, split at every scheduled change that falls
    /// inside it (applied on its sample), with `large` as its large buffer when
    /// it lives in shared memory.
    fn play(&mut self, module: &mut Module, io: &mut Io, mut large: Option<&mut [f32]>) {
        let (frame_time, n_frames) = (self.frame_time, self.n_frames);
        let mut start = 0;
        loop {
            // The next scheduled change inside this period splits the period there.
            let next = due_offset(&self.schedule[..*self.scheduled], frame_time, n_frames);
            let end = next.map_or(n_frames, |(_, offset)| offset);
            if end > start {
                match large.as_deref_mut() {
                    Some(buffer) => module.process_with_buffer(io, start..end, buffer),
                    None => module.process(io, start..end),
                }
                start = end;
            }
            let Some((i, _)) = next else { break };
            let Scheduled { change, .. } = self.schedule[i];
            // Keep arrival order among changes for the same frame: shift, don't swap.
            self.schedule.copy_within(i + 1..*self.scheduled, i);
            *self.scheduled -= 1;
            module.set_param(change.index as usize, change.value);
            if let (None, Some(received)) = (change.at, change.received) {
                let landed = frame_time.wrapping_add(start as u32);
                let latency = frame_offset(landed, received).max(0) as u32;
                if self.latencies.push(latency).is_err() {
                    self.stats
                        .latencies_unrecorded
                        .fetch_add(1, Ordering::Relaxed);
                }
            }
            self.stats.params_applied.fetch_add(1, Ordering::Release);
        }
        self.stats
            .non_finite
            .store(module.non_finite_samples(), Ordering::Relaxed);
    }
}

/// In-memory ports: input and output buffers of a fixed size, for tests and benches.
pub struct Buffers {
    /// One buffer per input, read by the module.
    pub inputs: Vec<Vec<f32>>,
    /// One buffer per output, written by the module.
    pub outputs: Vec<Vec<f32>>,
    /// The MIDI input's messages, every period the same (sorted by frame).
    pub midi: Vec<crate::midi::MidiEvent>,
}

impl Buffers {
    /// Silent inputs and zeroed outputs for `spec`'s ports, `n_frames` long.
    pub fn new(spec: &ModuleSpec, n_frames: usize) -> Buffers {
        Buffers {
            inputs: vec![vec![0.0; n_frames]; spec.input_ports().count()],
            outputs: vec![vec![0.0; n_frames]; spec.output_ports().count()],
            midi: Vec::new(),
        }
    }
}

impl Ports for Buffers {
    type Scope = ();

    fn bind<'a>(&'a mut self, n_frames: usize, _: &'a ()) -> Io<'a> {
        let mut io = Io::empty();
        for (slot, buf) in io.inputs.iter_mut().zip(&self.inputs) {
            *slot = &buf[..n_frames.min(buf.len())];
        }
        for (slot, buf) in io.outputs.iter_mut().zip(&mut self.outputs) {
            let n = n_frames.min(buf.len());
            *slot = &mut buf[..n];
        }
        io.midi = &self.midi;
        io
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use modsynth_model::catalog;

    const N: usize = 256;

    fn const_engine() -> (Controller<Buffers>, Engine<Buffers>) {
        let (mut c, e) = new::<Buffers>(64);
        let spec = catalog::module("const").unwrap();
        c.install(Module::new(spec, 48_000.0), Buffers::new(spec, N))
            .unwrap();
        (c, e)
    }

    fn out(e: &Engine<Buffers>) -> Vec<f32> {
        e.ports().unwrap().outputs[0].clone()
    }

    /// Samples of the default 5 ms glide at 48 kHz (`const.value` glides so).
    const RAMP: usize = 240;

    /// The first sample of a glide from `from` to `to` over [`RAMP`] samples.
    fn first_step(from: f32, to: f32) -> f32 {
        from + (to - from) / RAMP as f32
    }

    /// A segment for one test, unlinked however the test ends.
    struct TestSegment(String);

    impl TestSegment {
        fn new(label: &str) -> TestSegment {
            let name = format!("/mstest{}-{label}-state", std::process::id());
            let _ = SharedState::unlink(&name);
            TestSegment(name)
        }
    }

    impl Drop for TestSegment {
        fn drop(&mut self) {
            let _ = SharedState::unlink(&self.0);
        }
    }

    /// A vco at full gain: deterministic and never still, so a missing or doubled
    /// period shows in the sum of two engines' outputs.
    fn loud_vco() -> Module {
        let spec = catalog::module("vco").unwrap();
        let mut vco = Module::new(spec, 48_000.0);
        vco.init_param(spec.param_index("gain").unwrap(), 1.0);
        vco
    }

    /// An engine with id `id` playing [`loud_vco`] from `segment`, which it
    /// creates (as its owner) or opens (a standby).
    fn vco_engine(segment: &str, id: u64, create: bool) -> (Controller<Buffers>, Engine<Buffers>) {
        let (mut c, mut e) = new::<Buffers>(64);
        e.set_owner_id(id);
        let vco = loud_vco();
        let shared = if create {
            SharedState::create(segment, vco.state(), vco.buffer(), id).unwrap()
        } else {
            SharedState::open(segment, vco.state().type_index).unwrap()
        };
        let spec = catalog::module("vco").unwrap();
        c.install_shared(vco, Buffers::new(spec, N), Some(shared))
            .unwrap();
        (c, e)
    }

    /// The frame period `p` of the handover tests starts on (not 0: the state's
    /// first publication says frame 0).
    fn frame(p: usize) -> u32 {
        4096 + (p * N) as u32
    }

    /// What each engine of a handover run played, period by period.
    struct Run {
        old: Vec<Vec<f32>>,
        new: Vec<Vec<f32>>,
        third: Vec<Vec<f32>>,
        /// What one engine that never stopped played.
        reference: Vec<Vec<f32>>,
        new_stats: Arc<Stats>,
        third_stats: Arc<Stats>,
        segment: SharedState,
    }

    const PERIODS: usize = 16;

    /// Old owner 1 plays the vco, new owner 2 and a third engine 3 stand by on
    /// the same segment; before period `sent`, 2 is told to take over at the
    /// start of period `at`. Each period the engines run in the order `order`
    /// gives (true: the new owner first).
    fn handover_run(label: &str, sent: usize, at: usize, order: impl Fn(usize) -> bool) -> Run {
        let segment = TestSegment::new(label);
        let (_oc, mut old) = vco_engine(&segment.0, 1, true);
        let (mut nc, mut next) = vco_engine(&segment.0, 2, false);
        let (tc, mut third) = vco_engine(&segment.0, 3, false);
        let (mut rc, mut reference) = new::<Buffers>(64);
        let spec = catalog::module("vco").unwrap();
        rc.install(loud_vco(), Buffers::new(spec, N)).unwrap();
        let mut run = Run {
            old: Vec::new(),
            new: Vec::new(),
            third: Vec::new(),
            reference: Vec::new(),
            new_stats: nc.stats().clone(),
            third_stats: tc.stats().clone(),
            segment: SharedState::open(&segment.0, loud_vco().state().type_index).unwrap(),
        };
        // The controllers live as long as their engines (a dropped ring's end
        // would not matter, but the retired modules come back to them).
        let _keep = (_oc, rc, tc);
        for p in 0..PERIODS {
            if p == sent {
                nc.hand_over(frame(at), 1).unwrap();
            }
            let f = frame(p);
            // Planning, giving and taking a module never allocate either.
            assert_no_alloc::assert_no_alloc(|| {
                if order(p) {
                    next.process(f, N, &());
                    third.process(f, N, &());
                    old.process(f, N, &());
                } else {
                    old.process(f, N, &());
                    third.process(f, N, &());
                    next.process(f, N, &());
                }
            });
            reference.process(f, N, &());
            run.old.push(out(&old));
            run.new.push(out(&next));
            run.third.push(out(&third));
            run.reference.push(out(&reference));
        }
        run
    }

    /// The first period the new owner played in; checks that the old owner
    /// played every period before it and none from it, and the new owner the
    /// reverse, and that together they played exactly what one engine would.
    fn switch_period(run: &Run) -> usize {
        let sounds = |o: &Vec<f32>| o.iter().any(|&v| v != 0.0);
        let switch = run
            .new
            .iter()
            .position(sounds)
            .expect("the new owner never played");
        for p in 0..PERIODS {
            assert_eq!(sounds(&run.old[p]), p < switch, "old owner, period {p}");
            assert_eq!(sounds(&run.new[p]), p >= switch, "new owner, period {p}");
            let sum: Vec<f32> = run.old[p]
                .iter()
                .zip(&run.new[p])
                .map(|(a, b)| a + b)
                .collect();
            assert_eq!(
                sum, run.reference[p],
                "period {p}: a gap or a doubled period"
            );
        }
        assert_eq!(run.new_stats.takeovers.load(Ordering::Relaxed), 1);
        assert_eq!(run.new_stats.last_takeover_gap.load(Ordering::Relaxed), 0);
        assert_eq!(run.segment.owner(), 2);
        assert_eq!(
            run.segment.handover(),
            None,
            "the new owner cleared the record"
        );
        switch
    }

    #[test]
    fn a_handover_at_a_frame_plays_every_frame_once_whichever_engine_runs_first() {
        /// Whether the new owner runs first in a period.
        type Order = fn(usize) -> bool;
        let orders: [(&str, Order); 3] = [
            ("old-first", |_| false),
            ("new-first", |_| true),
            ("alternating", |p| p % 2 == 0),
        ];
        for (label, order) in orders {
            let run = handover_run(&format!("ho-{label}"), 2, 6, order);
            assert_eq!(switch_period(&run), 6, "{label}");
        }
    }

    #[test]
    fn a_handover_written_after_its_frame_happens_at_the_first_period_the_old_owner_ends_after_it()
    {
        // Written in period 8 for period 4: if the new owner ran first in period 8,
        // the old owner sees it at that period's end; if the old one ran first, at
        // the end of period 9.
        let run = handover_run("late-new-first", 8, 4, |_| true);
        assert_eq!(switch_period(&run), 9);
        let run = handover_run("late-old-first", 8, 4, |_| false);
        assert_eq!(switch_period(&run), 10);
    }

    #[test]
    fn a_handover_does_nothing_to_a_third_engine() {
        for (label, order) in [("third-a", false), ("third-b", true)] {
            let run = handover_run(label, 2, 6, move |_| order);
            switch_period(&run);
            assert!(
                run.third.iter().flatten().all(|&v| v == 0.0),
                "it stayed silent"
            );
            assert_eq!(run.third_stats.takeovers.load(Ordering::Relaxed), 0);
        }
    }

    #[test]
    fn a_handover_from_an_owner_that_stopped_running_is_taken_after_the_patience() {
        let segment = TestSegment::new("ho-dead");
        let (_oc, mut old) = vco_engine(&segment.0, 1, true);
        let (mut nc, mut next) = vco_engine(&segment.0, 2, false);
        nc.hand_over(frame(4), 1).unwrap();
        for p in 0..3 {
            old.process(frame(p), N, &());
            next.process(frame(p), N, &());
        }
        // The old owner died after period 2. Its successor waits out the patience.
        let mut first_played = None;
        for p in 3..(6 + HANDOVER_PATIENCE as usize) {
            next.process(frame(p), N, &());
            if first_played.is_none() && out(&next).iter().any(|&v| v != 0.0) {
                first_played = Some((p, out(&next)));
            }
        }
        let (p, played) = first_played.expect("the new owner never took over");
        assert_eq!(
            p,
            4 + HANDOVER_PATIENCE as usize,
            "after the patience, not before"
        );
        // It continued from the old owner's last publication (the end of period 2).
        let (mut rc, mut one) = new::<Buffers>(64);
        let spec = catalog::module("vco").unwrap();
        rc.install(loud_vco(), Buffers::new(spec, N)).unwrap();
        for q in 0..4 {
            one.process(frame(q), N, &());
        }
        assert_eq!(
            played,
            out(&one),
            "it continued from the last published state"
        );
    }

    #[test]
    fn the_takeover_gap_counts_only_periods_run_silent_after_the_predecessors_last() {
        let (_c, mut e) = new::<Buffers>(64);
        let n = N as u32;
        // Silent while the primary played up to frame 10 * n: none of it is a gap.
        for p in 0..10 {
            e.silent.note(p * n, N);
        }
        assert_eq!(e.silent.heard_gap(10 * n, 10 * n), 0, "a seamless takeover");
        // The server skipped two cycles at the death (nobody played them), then this
        // standby ran one silent period before it owned the module: one period heard.
        for p in 0..10 {
            e.silent.note(p * n, N);
        }
        e.silent.note(12 * n, N);
        assert_eq!(e.silent.heard_gap(10 * n, 13 * n), N as u64);
        // Across the frame clock's wrap.
        let published = u32::MAX - n + 1;
        e.silent.note(published.wrapping_sub(n), N);
        e.silent.note(published, N);
        assert_eq!(
            e.silent.heard_gap(published, published.wrapping_add(n)),
            N as u64
        );
        // A spare that replaced a dead primary after more periods than remembered:
        // the whole span.
        for p in 0..2 * SILENT_MEMORY as u32 {
            e.silent.note(p * n, N);
        }
        assert_eq!(e.silent.heard_gap(0, 100 * n), 100 * N as u64);
    }

    #[test]
    fn a_scheduled_change_starts_its_glide_on_its_frame_in_a_later_period() {
        let (mut c, mut e) = const_engine();
        c.set_param(0, 1.0, Some(1000 + 3 * N as u32 + 17)).unwrap();
        for p in 0..3 {
            e.process(1000 + (p * N) as u32, N, &());
            assert!(
                out(&e).iter().all(|&v| v == 0.0),
                "period {p} changed early"
            );
        }
        e.process(1000 + 3 * N as u32, N, &());
        let o = out(&e);
        assert_eq!((o[16], o[17]), (0.0, first_step(0.0, 1.0)));
        assert!(o[17..].windows(2).all(|w| w[1] > w[0]), "rises steadily");
        assert!(o[N - 1] < 1.0);
        // The glide's last sample is sample 17 + RAMP - 1 = 256: the next period's first.
        assert_eq!(17 + RAMP - 1, N);
        e.process(1000 + 4 * N as u32, N, &());
        assert!(out(&e).iter().all(|&v| v == 1.0), "ends exactly on 1.0");
        assert_eq!(c.stats().params_applied.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn an_immediate_or_past_change_starts_on_the_first_sample() {
        let (mut c, mut e) = const_engine();
        c.set_param(0, 0.5, None).unwrap();
        e.process(5000, N, &());
        assert_eq!(out(&e)[0], first_step(0.0, 0.5));
        assert!(out(&e)[RAMP - 1..].iter().all(|&v| v == 0.5));
        c.set_param(0, 0.25, Some(10)).unwrap();
        e.process(5000 + N as u32, N, &());
        assert_eq!(out(&e)[0], first_step(0.5, 0.25));
        assert!(out(&e)[RAMP - 1..].iter().all(|&v| v == 0.25));
    }

    #[test]
    fn changes_for_the_same_frame_apply_in_arrival_order() {
        let (mut c, mut e) = const_engine();
        for v in [0.1, 0.2, 0.3] {
            c.set_param(0, v, Some(100)).unwrap();
        }
        e.process(0, N, &());
        assert_eq!(out(&e)[100], first_step(0.0, 0.3));
        assert_eq!(out(&e)[99], 0.0);
    }

    #[test]
    fn schedules_survive_the_wrap_of_the_frame_counter() {
        let (mut c, mut e) = const_engine();
        let start = u32::MAX - 100;
        c.set_param(0, 1.0, Some(start.wrapping_add(200))).unwrap();
        e.process(start, N, &());
        let o = out(&e);
        assert_eq!((o[199], o[200]), (0.0, first_step(0.0, 1.0)));
    }

    #[test]
    fn a_remove_behind_a_full_ring_of_changes_waits_for_room_instead_of_being_lost() {
        let (mut c, mut e) = const_engine();
        e.process(0, N, &());
        let mut pushed = 0;
        while c.set_param(0, 0.5, None).is_ok() {
            pushed += 1;
        }
        assert!(pushed > 0, "the ring never filled");
        // The real-time thread goes on running periods (1 ms apart, like a fast
        // server) until the module is gone or 5 s passed.
        let rt = std::thread::spawn(move || {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
            let mut frame = N as u32;
            while e.module().is_some() && std::time::Instant::now() < deadline {
                e.process(frame, N, &());
                frame += N as u32;
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            e.module().is_none()
        });
        c.remove().expect("the remove waited for room");
        assert!(rt.join().unwrap(), "the module was removed");
    }

    #[test]
    fn an_installed_module_replaces_the_old_one_which_comes_back_to_be_freed() {
        let (mut c, mut e) = const_engine();
        e.process(0, N, &());
        let vco = catalog::module("vco").unwrap();
        c.install(Module::new(vco, 48_000.0), Buffers::new(vco, N))
            .unwrap();
        e.process(N as u32, N, &());
        assert_eq!(e.module().unwrap().spec().name, "vco");
        let retired = c.collect_retired();
        assert_eq!(retired.len(), 1);
        assert_eq!(retired[0].module.spec().name, "const");
        c.remove().unwrap();
        e.process(2 * N as u32, N, &());
        assert!(e.module().is_none());
        // Faded out in that period; handed back after the next, silent one.
        assert!(c.collect_retired().is_empty());
        e.process(3 * N as u32, N, &());
        assert_eq!(c.collect_retired().len(), 1);
    }

    #[test]
    fn a_removed_module_fades_out_within_5_ms_then_writes_a_whole_silent_period() {
        let (mut c, mut e) = new::<Buffers>(64);
        let spec = catalog::module("vco").unwrap();
        let mut vco = Module::new(spec, 48_000.0);
        vco.init_param(spec.param_index("gain").unwrap(), 1.0);
        c.install(vco, Buffers::new(spec, 128)).unwrap();
        let mut played = Vec::new();
        for p in 0..4 {
            e.process(p * 128, 128, &());
            played.extend_from_slice(&e.ports().unwrap().outputs[0]);
        }
        c.remove().unwrap();
        // Periods of 128 frames: the 240-sample fade spans two of them.
        let mut after = Vec::new();
        for p in 4..7 {
            e.process(p * 128, 128, &());
            // The slot is handed back only after the silent period: read its ports
            // from what comes back once it does.
            let retired = c.collect_retired();
            match (e.fading.as_ref(), retired.first()) {
                (Some(f), _) => after.extend_from_slice(&f.slot.ports.outputs[0]),
                (None, Some(slot)) => after.extend_from_slice(&slot.ports.outputs[0]),
                (None, None) => panic!("period {p}: the slot vanished"),
            }
        }
        let fade = (FADE_SECONDS * 48_000.0) as usize;
        assert!(
            after[..fade - 1].iter().any(|v| v.abs() > 0.5),
            "it fades, no cut"
        );
        assert!(
            after[fade - 1..].iter().all(|&v| v == 0.0),
            "silent after 5 ms"
        );
        let step = |x: &[f32]| {
            x.windows(2)
                .map(|w| (w[1] - w[0]).abs())
                .fold(0.0, f32::max)
        };
        let mut joined = played[played.len() - 1..].to_vec();
        joined.extend_from_slice(&after);
        assert!(
            step(&joined) <= step(&played) * 1.01,
            "the fade does not click"
        );
        assert!(e.fading.is_none() && e.module().is_none());
    }

    #[test]
    fn out_of_range_indices_and_non_finite_values_never_reach_the_dsp() {
        let (mut c, mut e) = const_engine();
        c.set_param(7, 1.0, None).unwrap();
        c.set_param(0, f32::NAN, None).unwrap();
        e.process(0, N, &());
        assert!(out(&e).iter().all(|&v| v == 0.0));
    }

    #[test]
    fn a_full_schedule_applies_changes_on_arrival_instead_of_dropping_them() {
        let (mut c, mut e) = new::<Buffers>(SCHEDULE_CAPACITY + 8);
        let spec = catalog::module("const").unwrap();
        c.install(Module::new(spec, 48_000.0), Buffers::new(spec, N))
            .unwrap();
        e.process(0, N, &());
        for i in 0..SCHEDULE_CAPACITY {
            c.set_param(0, 0.5, Some(1_000_000 + i as u32)).unwrap();
        }
        c.set_param(0, 0.75, Some(2_000_000)).unwrap();
        e.process(N as u32, N, &());
        assert_eq!(c.stats().params_late.load(Ordering::Relaxed), 1);
        assert_eq!(out(&e)[0], first_step(0.0, 0.75));
        assert!(out(&e)[RAMP - 1..].iter().all(|&v| v == 0.75));
    }

    /// A period of every kind of MIDI message, well-formed and not: notes held and
    /// released, more keys than the stack holds, bend, pressure, CCs, clock, junk.
    fn midi_workout(n: usize) -> Vec<crate::midi::MidiEvent> {
        let mut events = crate::midi::MidiEvents::new();
        let mut messages: Vec<Vec<u8>> = Vec::new();
        for key in 40..60u8 {
            messages.push(vec![0x90, key, 100]);
        }
        for key in 40..50u8 {
            messages.push(vec![0x80, key, 0]);
        }
        messages.extend([
            vec![0xE0, 0x7F, 0x7F],
            vec![0xD0, 90],
            vec![0xA0, 59, 80],
            vec![0xB0, 1, 64],
            vec![0xF8],
            vec![0x45, 0x90],
            vec![0x90, 200, 200],
            vec![0x9F, 61],
            vec![0xB0, 123, 0],
            vec![0x91, 62, 90],
        ]);
        let count = messages.len();
        for (i, m) in messages.iter().enumerate() {
            events.push((i * n / count) as u32, m, n);
        }
        events.as_slice().to_vec()
    }

    /// Every module, every parameter at its min, max and default, scheduled inside
    /// and across periods, plus module swaps: all under `assert_no_alloc`, which
    /// aborts the test process on any allocation or free.
    #[test]
    fn the_real_time_path_never_allocates() {
        let (mut c, mut e) = new::<Buffers>(4096);
        let mut frame = 0u32;
        // Every built-in module, and LV2 plugins of the Debian packs scripts/setup
        // installs (a filter, a delay, one with an enumeration, a synth whose
        // MIDI input gets the MIDI workout through its atom sequence).
        modsynth_lv2::install();
        let plugins = ["lv2:lowpass_iir", "lv2:delay_n", "lv2:Leslie", "lv2:EPiano"]
            .map(|name| catalog::lookup(name).unwrap());
        for spec in catalog::modules().iter().chain(plugins) {
            let mut buffers = Buffers::new(spec, N);
            for (k, input) in buffers.inputs.iter_mut().enumerate() {
                for (i, s) in input.iter_mut().enumerate() {
                    *s = ((i * (k + 3)) % 17) as f32 / 17.0 - 0.4;
                }
            }
            if spec.midi_input().is_some() {
                buffers.midi = midi_workout(N);
            }
            c.install(Module::create(spec, 48_000.0, N).unwrap(), buffers)
                .unwrap();
            for (index, p) in spec.params.iter().enumerate() {
                for (j, v) in [p.min, p.max, p.default].into_iter().enumerate() {
                    let at = frame.wrapping_add((j * 97 + index * 13) as u32);
                    c.set_param(index, v, Some(at)).unwrap();
                }
                c.set_param(index, p.max, None).unwrap();
            }
            // A set switch's gate: closed, then opened with a crossfade mid-period.
            let gate = |gain, at, ramp| crate::gate::GateChange { gain, at, ramp };
            c.set_gate(gate(0.0, None, 0)).unwrap();
            c.set_gate(gate(1.0, Some(frame.wrapping_add(N as u32 + 7)), 100))
                .unwrap();
            for _ in 0..8 {
                assert_no_alloc::assert_no_alloc(|| e.process(frame, N, &()));
                frame = frame.wrapping_add(N as u32);
            }
            let applied = c.stats().params_applied.load(Ordering::Relaxed);
            assert_eq!(
                applied,
                c.stats().params_received.load(Ordering::Relaxed),
                "{}",
                spec.name
            );
            let module = e.module().unwrap();
            for (index, p) in spec.params.iter().enumerate() {
                // The last change in arrival order at the latest frame is the default.
                assert_eq!(module.param(index), p.default, "{}.{}", spec.name, p.name);
            }
            for o in &e.ports().unwrap().outputs {
                assert!(
                    o.iter().all(|v| v.is_finite()),
                    "{} produced non-finite output",
                    spec.name
                );
            }
            drop(c.collect_retired());
        }
        // A muted module being freed (the outgoing set after a switch).
        c.set_gate(crate::gate::GateChange::default()).unwrap();
        c.remove().unwrap();
        for _ in 0..2 {
            assert_no_alloc::assert_no_alloc(|| e.process(frame, N, &()));
            frame = frame.wrapping_add(N as u32);
        }
        assert_eq!(c.collect_retired().len(), 1);
    }
}

//! One module's part of a pooled worker: a `Seat` serves the supervisor's
//! messages about the module it plays or stands by for.
//!
//! An ordinary worker has one seat and serves every message with it. A standby
//! host (`modsynth-worker --pool --seats N`, see [`crate::jack_host`]) has N, one
//! per engine of its one JACK client: the supervisor addresses seat `s` with
//! `ToSeat { seat: s, .. }`, and the seat answers as a worker of its own would,
//! inside `FromSeat { seat: s, .. }` (its watcher's `Promoted` too). So the
//! per-module logic exists once, whether a module has a process of its own or a
//! seat in a host.
//!
//! A seat only stands by ([`refusal`]): a primary or a replacement needs a
//! process of its own (a crash of the host would take every module it plays), and
//! a module that runs in lockstep with its primary (an LV2 plugin) costs a whole
//! module's DSP every period, which is what a standby host exists to save.
//!
//! A module moves between two live workers by a planned handover
//! (`TakeOverAt` to the new owner, then `StandBy` to the old one; see
//! [Handovers](crate::engine#handovers)): this is how a module that failed over
//! into a seat goes back to a worker of its own without a gap.

use crate::coalesce::Coalescer;
use crate::engine::{ParamChange, Stats};
use crate::jack_host::{Host, StatePlan};
use crate::pooled::{rss_kib, wait_for, CpuClock, DspClock, Uplink, RT_TIMEOUT};
use crate::shared_state::SharedState;
use crate::standby::Watch;
use modsynth_model::catalog::{self, Kind, ModuleSpec};
use modsynth_model::protocol::{FromWorker, ParamTraffic, Playing, Role, ToWorker, WorkerReport};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a new owner waits for its first owned period after a handover's
/// frame (and after a `TakeNames`) before it answers `TookOver` without a gap.
const FIRST_PERIOD_WAIT: Duration = Duration::from_secs(1);

/// The longest a `TakeOverAt` waits for its frame to come: a frame further ahead
/// than this is a mistake, and the control thread must not block that long.
const HANDOVER_WAIT_MAX: Duration = Duration::from_secs(10);

/// Why a standby host's seat refuses to be assigned `spec` as `role`, if it does
/// (see the module docs).
///
/// ```
/// use modsynth_model::catalog;
/// use modsynth_model::protocol::Role;
/// use modsynth_worker::seats::refusal;
///
/// let vco = catalog::module("vco").unwrap();
/// assert_eq!(refusal(vco, Role::Standby { primary_pid: 7 }), None);
/// assert!(refusal(vco, Role::Primary).is_some());
/// assert!(refusal(vco, Role::Replacement).is_some());
/// ```
pub fn refusal(spec: &ModuleSpec, role: Role) -> Option<String> {
    if !matches!(role, Role::Standby { .. }) {
        return Some(format!(
            "a standby host's seat only stands by ({role:?} needs a worker of its own)"
        ));
    }
    if spec.kind == Kind::Lv2 {
        return Some(format!(
            "{} runs in lockstep with its primary: its standby needs a worker of its own",
            spec.name
        ));
    }
    None
}

/// One module's part of a pooled worker (see the module docs).
pub(crate) struct Seat {
    /// Its engine in the host.
    index: usize,
    /// In a standby host, the seat number its messages to the supervisor carry
    /// (`FromSeat`); `None` in an ordinary worker.
    seat: Option<u16>,
    /// The thread that watches this standby's primary; dropping it stops it.
    watching: Option<Watch>,
    /// Parameter changes handed to the real-time thread so far.
    sent: u64,
    /// Parameter changes that met a full ring: held (the last value wins) or,
    /// if scheduled, dropped; counted.
    params: Coalescer,
    /// The engine's takeover count before the takeover being waited for (set at
    /// assignment and when a handover is planned).
    takeovers_before: u64,
    /// The current module's state segment and type, if it has one.
    assigned_state: Option<(String, String)>,
    /// What the current assignment is, for a supervisor that adopts this worker.
    assigned: Option<Assigned>,
    cpu: CpuClock,
    dsp: DspClock,
}

/// A seat's current assignment, as a new supervisor needs to know it.
struct Assigned {
    id: String,
    module_type: String,
    role: Role,
    state: String,
    ports: Vec<String>,
}

impl Seat {
    /// The seat of an ordinary worker.
    pub(crate) fn only() -> Seat {
        Seat::new(0, None)
    }

    /// Seat `seat` of a standby host.
    pub(crate) fn of_host(seat: u16) -> Seat {
        Seat::new(seat as usize, Some(seat))
    }

    fn new(index: usize, seat: Option<u16>) -> Seat {
        Seat {
            index,
            seat,
            watching: None,
            sent: 0,
            params: Coalescer::default(),
            takeovers_before: 0,
            assigned_state: None,
            assigned: None,
            cpu: CpuClock::now(),
            dsp: DspClock::default(),
        }
    }

    /// Wraps what the seat says for the supervisor (`FromSeat` in a standby host).
    pub(crate) fn wrap(&self, message: FromWorker) -> FromWorker {
        match self.seat {
            Some(seat) => FromWorker::FromSeat {
                seat,
                message: Box::new(message),
            },
            None => message,
        }
    }

    /// Whether it has a module (playing or standing by).
    pub(crate) fn has_module(&self) -> bool {
        self.assigned_state.is_some()
    }

    /// Its segment, for logs.
    pub(crate) fn segment(&self) -> Option<&str> {
        self.assigned_state.as_ref().map(|(s, _)| s.as_str())
    }

    /// Whether parameter changes wait for room in the ring.
    pub(crate) fn holds_params(&self) -> bool {
        !self.params.is_empty()
    }

    /// Serves `message` (never `Shutdown` or `ToSeat`: the worker deals with
    /// those); returns the answer, unwrapped.
    pub(crate) fn handle(
        &mut self,
        host: &mut Host,
        uplink: &Uplink,
        message: ToWorker,
    ) -> Option<FromWorker> {
        tracing::trace!(seat = self.index, "from the supervisor: {}", message.kind());
        match message {
            ToWorker::Assign {
                token,
                id,
                module_type,
                params,
                role,
                state,
                plugin_state,
            } => Some(FromWorker::Assigned {
                token,
                result: self.assign(
                    host,
                    uplink,
                    &id,
                    &module_type,
                    &params,
                    role,
                    &state,
                    plugin_state.as_deref(),
                ),
            }),
            ToWorker::TakeNames { id } => {
                if let Some(a) = &mut self.assigned {
                    a.role = Role::Primary;
                }
                // The supervisor sends this once the old owner is dead. A standby
                // normally took over already (its watcher saw the death first); if
                // its watcher missed it, it takes over now rather than stay silent.
                if let Some((segment, module_type)) = self.assigned_state.clone() {
                    take_over_from_the_dead(&segment, &module_type);
                }
                host.name_ports(self.index, &id);
                Some(FromWorker::TookOver {
                    silent_frames: self.first_owned_period(host, FIRST_PERIOD_WAIT),
                })
            }
            ToWorker::TakeOverAt { at, id } => Some(FromWorker::TookOver {
                silent_frames: self.take_over_at(host, at, &id),
            }),
            ToWorker::StandBy { primary_pid } => {
                self.stand_by(host, uplink, primary_pid);
                None
            }
            ToWorker::SetParam {
                index,
                value,
                at,
                received,
            } => {
                let change = ParamChange {
                    index,
                    value,
                    at,
                    received: Some(received),
                };
                // Never waits for room: a blocked worker would block the
                // supervisor's sends behind it.
                let controller = host.controller(self.index);
                self.sent += self
                    .params
                    .offer(change, &mut |c| controller.send_change(c));
                None
            }
            ToWorker::Gate { gain, at, fade_ms } => {
                let rate = host.client().sample_rate() as u64;
                let ramp = (u64::from(fade_ms) * rate / 1000).min(u64::from(u32::MAX)) as u32;
                let change = crate::gate::GateChange { gain, at, ramp };
                if let Err(e) = host.controller(self.index).set_gate(change) {
                    tracing::error!("output gate not moved: {e}");
                }
                None
            }
            ToWorker::Rename { id } => {
                if let Some(a) = &mut self.assigned {
                    a.id = id.clone();
                    match a.role {
                        Role::Standby { .. } => host.label_standby(self.index, &id),
                        Role::Primary | Role::Replacement => host.rename_ports(self.index, &id),
                    }
                }
                None
            }
            ToWorker::Sync { token } => {
                // Held changes were sent before the sync: they go first.
                let deadline = Instant::now() + RT_TIMEOUT;
                self.flush_params(host);
                while !self.params.is_empty() && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_micros(200));
                    self.flush_params(host);
                }
                let stats = host.controller(self.index).stats().clone();
                let sent = self.sent;
                wait_for(RT_TIMEOUT, || stats.params_settled() >= sent);
                Some(FromWorker::Synced { token })
            }
            ToWorker::Free { token } => {
                self.stop_watching();
                self.assigned_state = None;
                self.assigned = None;
                if let Err(e) = host.free(self.index, RT_TIMEOUT) {
                    // Answering Freed now would return a worker to the pool that
                    // may still be playing the module: exit instead, and the
                    // supervisor replaces it.
                    tracing::error!("free: {e}; exiting");
                    std::process::exit(1);
                }
                Some(FromWorker::Freed { token })
            }
            ToWorker::Report { token } => Some(FromWorker::Report {
                token,
                report: self.report(host),
            }),
            ToWorker::SavePluginState { token } => Some(FromWorker::PluginState {
                token,
                result: host.save_plugin_state(self.index),
            }),
            ToWorker::SeqPosition { token } => Some(FromWorker::SeqPosition {
                token,
                position: self.seq_position(),
            }),
            ToWorker::ToSeat { .. } | ToWorker::Shutdown => {
                tracing::warn!("{} is not for a seat: ignored", message.kind());
                None
            }
        }
    }

    /// Plays (or stands by for) module `id` of `module_type`; the port names.
    #[allow(clippy::too_many_arguments)]
    fn assign(
        &mut self,
        host: &mut Host,
        uplink: &Uplink,
        id: &str,
        module_type: &str,
        params: &[(u16, f32)],
        role: Role,
        state: &str,
        plugin_state: Option<&str>,
    ) -> Result<Vec<String>, String> {
        tracing::debug!(seat = self.index, "assign received");
        // Plugin ranges given as fractions of the rate are scaled by ours.
        modsynth_lv2::spec::set_sample_rate(host.client().sample_rate());
        let spec = catalog::lookup(module_type)?;
        if self.seat.is_some() {
            if let Some(reason) = refusal(spec, role) {
                return Err(reason);
            }
            if self.has_module() {
                return Err(format!("seat {} has a module: free it first", self.index));
            }
        }
        self.stop_watching();
        self.takeovers_before = self.takeovers(host);
        self.assigned_state = Some((state.to_string(), module_type.to_string()));
        let params: Vec<(usize, f32)> = params.iter().map(|&(i, v)| (i as usize, v)).collect();
        // A primary makes the module's state and names its ports at once; a
        // replacement or a standby opens the state a primary made.
        let (name, plan) = match role {
            Role::Primary => (Some(id), StatePlan::Create(state)),
            Role::Replacement | Role::Standby { .. } => (None, StatePlan::Open(state)),
        };
        let result = host.assign(self.index, spec, &params, name, plan, plugin_state);
        if result.is_ok() {
            match role {
                Role::Primary => {}
                Role::Replacement => take_over_from_the_dead(state, module_type),
                Role::Standby { primary_pid } => {
                    host.label_standby(self.index, id);
                    self.watch(host, uplink, primary_pid);
                }
            }
        }
        if result.is_err() {
            self.assigned_state = None; // nothing plays: still a spare (an empty seat)
        }
        self.assigned = result.as_ref().ok().map(|ports| Assigned {
            id: id.to_string(),
            module_type: module_type.to_string(),
            role,
            state: state.to_string(),
            ports: ports.clone(),
        });
        result
    }

    /// `TakeOverAt`: stops watching the primary, plans the handover (the engine
    /// writes it into the state), names the ports and waits for the first owned
    /// period (see [Handovers](crate::engine#handovers)); the gap before it.
    fn take_over_at(&mut self, host: &mut Host, at: u32, id: &str) -> Option<u32> {
        let Some((segment, module_type)) = self.assigned_state.clone() else {
            tracing::error!(seat = self.index, "take over at {at}: no module here");
            return None;
        };
        self.stop_watching();
        let type_index = catalog::module_index(&module_type).unwrap_or(0) as u32;
        match SharedState::open(&segment, type_index) {
            Ok(shared) => {
                let from = shared.owner();
                if from != u64::from(std::process::id()) {
                    self.takeovers_before = self.takeovers(host);
                    if let Err(e) = host.controller(self.index).hand_over(at, from) {
                        tracing::error!("cannot plan the handover of {segment}: {e}");
                    }
                }
            }
            Err(e) => tracing::error!("take over at {at}: cannot map {segment}: {e}"),
        }
        if let Some(a) = &mut self.assigned {
            a.role = Role::Primary;
            a.id = id.to_string();
        }
        host.name_ports(self.index, id);
        // Until the frame comes (the server's clock, estimated off the audio
        // thread), then as long as after a TakeNames.
        let client = host.client();
        let ahead = at.wrapping_sub(client.frame_time()) as i32;
        let until_at =
            Duration::from_secs_f64(f64::from(ahead.max(0)) / client.sample_rate() as f64);
        self.first_owned_period(host, (until_at + FIRST_PERIOD_WAIT).min(HANDOVER_WAIT_MAX))
    }

    /// `StandBy`: the module now plays in `primary_pid`; this seat drops its
    /// names, says it stands by, and watches the new primary.
    fn stand_by(&mut self, host: &mut Host, uplink: &Uplink, primary_pid: u32) {
        let Some(a) = &mut self.assigned else {
            tracing::error!(
                seat = self.index,
                "stand by for {primary_pid}: no module here"
            );
            return;
        };
        a.role = Role::Standby { primary_pid };
        let id = a.id.clone();
        host.stand_by(self.index, &id);
        let stats = host.controller(self.index).stats().clone();
        if stats.owning.load(Ordering::Relaxed) {
            // The handover has not happened (yet): the watch takes the module back
            // only if the new primary dies, and the supervisor knows who plays.
            tracing::warn!("told to stand by for {primary_pid}, but {id} still plays here");
        }
        self.stop_watching();
        self.watch(host, uplink, primary_pid);
    }

    /// As a standby: watch the primary and take the module over the moment it dies
    /// (see [`crate::standby`]); tell the supervisor once promoted.
    fn watch(&mut self, host: &mut Host, uplink: &Uplink, primary_pid: u32) {
        let Some((segment, module_type)) = self.assigned_state.clone() else {
            return;
        };
        let type_index = catalog::module_index(&module_type).unwrap_or(0) as u32;
        let stats: Arc<Stats> = host.controller(self.index).stats().clone();
        let uplink = uplink.clone();
        let promoted = self.wrap(FromWorker::Promoted);
        self.watching = Watch::start(primary_pid, segment, type_index, stats, move || {
            uplink.send(promoted);
        });
    }

    fn takeovers(&self, host: &mut Host) -> u64 {
        host.controller(self.index)
            .stats()
            .takeovers
            .load(Ordering::Acquire)
    }

    /// Waits (up to `within`) for the first period this seat plays as the owner of
    /// its module since the takeover it waits for, and returns the gap before it.
    fn first_owned_period(&mut self, host: &mut Host, within: Duration) -> Option<u32> {
        let stats = host.controller(self.index).stats().clone();
        let before = self.takeovers_before;
        if !wait_for(within, || stats.takeovers.load(Ordering::Acquire) > before) {
            return None;
        }
        let gap = stats.last_takeover_gap.load(Ordering::Relaxed);
        Some(gap.min(u32::MAX as u64) as u32)
    }

    /// Stops the watcher, if one runs.
    pub(crate) fn stop_watching(&mut self) {
        if let Some(watch) = self.watching.take() {
            watch.stop();
        }
    }

    /// Sends held parameter changes the ring has room for.
    pub(crate) fn flush_params(&mut self, host: &mut Host) {
        let controller = host.controller(self.index);
        self.sent += self.params.flush(&mut |c| controller.send_change(c));
    }

    /// This seat's counters; CPU and memory are the process's.
    fn report(&mut self, host: &mut Host) -> WorkerReport {
        let stats = host.controller(self.index).stats().clone();
        let controller = host.controller(self.index);
        let (p50, p95, p99) = (
            controller.latency_quantile(0.5).unwrap_or(0),
            controller.latency_quantile(0.95).unwrap_or(0),
            controller.latency_quantile(0.99).unwrap_or(0),
        );
        WorkerReport {
            pid: std::process::id(),
            client: host.client().name().to_string(),
            cycles: stats.cycles.load(Ordering::Relaxed),
            xruns: host.events().xruns.load(Ordering::Relaxed),
            params: ParamTraffic {
                received: self.sent
                    + self.params.held()
                    + self.params.coalesced
                    + self.params.dropped,
                dropped: self.params.dropped,
                coalesced: self.params.coalesced,
                applied: stats.params_applied.load(Ordering::Relaxed),
            },
            latency_p50: p50,
            latency_p95: p95,
            latency_p99: p99,
            latencies_unrecorded: stats.latencies_unrecorded.load(Ordering::Relaxed),
            dsp_load: self.dsp.percent_since_last(host.events()),
            cpu_percent: self.cpu.percent_since_last(),
            rss_kib: rss_kib(),
            non_finite: stats.non_finite.load(Ordering::Relaxed),
        }
    }

    /// The position the `seq` this seat plays published last (off the audio
    /// thread: a copy of the published slot).
    fn seq_position(&self) -> Option<modsynth_model::protocol::SeqPosition> {
        let (segment, module_type) = self.assigned_state.as_ref()?;
        let type_index = catalog::module_index(module_type)? as u32;
        let shared = SharedState::open(segment, type_index).ok()?;
        let (frame, slot) = shared.published();
        let state = shared.load(slot, type_index)?;
        let crate::dsp::Kernel::Seq(seq) = state.kernel else {
            return None;
        };
        Some(modsynth_model::protocol::SeqPosition {
            frame,
            samples: seq.samples,
            origin: seq.origin,
            rate: seq.rate,
            sample_rate: f64::from(state.sample_rate),
        })
    }

    /// What it plays, for a supervisor that adopts the worker (parameter values
    /// read from the last published state).
    pub(crate) fn playing(&self, sample_rate: f32) -> Option<Playing> {
        let me = std::process::id();
        self.assigned.as_ref().map(|a| {
            let spec = catalog::module(&a.module_type);
            let type_index = catalog::module_index(&a.module_type).unwrap_or(0) as u32;
            let shared = SharedState::open(&a.state, type_index).ok();
            let owner = shared.as_ref().is_some_and(|s| s.owner() == me as u64);
            let params = match (shared, spec) {
                (Some(shared), Some(spec)) => {
                    // Read through a Module, which knows how its state keeps each
                    // value (the value last set, where a glide is heading).
                    let mut module = crate::dsp::Module::new(spec, sample_rate);
                    if let Some(state) = shared.load(shared.published().1, type_index) {
                        module.restore(&state);
                    }
                    (0..spec.params.len()).map(|i| module.param(i)).collect()
                }
                _ => Vec::new(),
            };
            Playing {
                id: a.id.clone(),
                module_type: a.module_type.clone(),
                role: a.role,
                state: a.state.clone(),
                owner,
                ports: a.ports.clone(),
                params,
            }
        })
    }
}

/// As a replacement: the module's previous owner is dead (the supervisor saw it
/// go), so whoever the owner word names is taken over; the real-time thread then
/// continues from the last published state.
fn take_over_from_the_dead(segment: &str, module_type: &str) {
    let type_index = catalog::module_index(module_type).unwrap_or(0) as u32;
    let shared = match SharedState::open(segment, type_index) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("replacement cannot map {segment}: {e}");
            return;
        }
    };
    let me = std::process::id() as u64;
    // A handover planned to someone else is void: that worker is dead too (this is
    // how a seat takes back a module whose new worker died in the middle of a
    // hand-back), and left standing it would give the module to the dead again.
    if let Some(planned) = shared.handover().filter(|h| u64::from(h.to) != me) {
        shared.clear_handover(planned);
    }
    // The owner word only changes by compare-and-swap; retry if it moved between
    // the read and the swap (it cannot keep moving: its owners are dead). Twice,
    // a millisecond apart: an audio thread that read the handover just before it
    // was cleared makes its swap within its own callback, microseconds later.
    let take = || {
        (0..100).any(|_| {
            let owner = shared.owner();
            owner == me || shared.take_over(owner, me)
        })
    };
    let taken = take() && {
        std::thread::sleep(std::time::Duration::from_millis(1));
        take()
    };
    if !taken {
        tracing::error!("could not take {segment} over");
    }
}

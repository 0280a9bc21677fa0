//! Pooled mode: a warm worker serving the supervisor.
//!
//! The JACK client is opened and activated before the worker says hello, so that when
//! the supervisor assigns a module the only costs left are registering its ports and
//! one message. The worker then serves [`ToWorker`] requests until the supervisor says
//! `Shutdown`. If the supervisor goes away instead (its channel closes), a worker
//! with a module plays on, and a spare exits after a grace period (see [`run`]).

use crate::coalesce::Coalescer;
use crate::engine::ParamChange;
use crate::jack_host::Host;
use crate::jack_host::StatePlan;
use crate::shared_state::SharedState;
use crate::standby::Watch;
use ipc_channel::ipc::{self, IpcOneShotServer, IpcSender};
use modsynth_model::catalog;
use modsynth_model::protocol::{
    Adoption, FromWorker, ParamTraffic, Playing, Role, ToWorker, WorkerCard, WorkerReport,
};
use modsynth_process::{jack_server_name, process_start_time};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long the worker waits for its real-time thread before answering anyway.
const RT_TIMEOUT: Duration = Duration::from_secs(2);

/// How long a spare (a worker without a module) waits for a supervisor after losing
/// its own before it exits, unless told otherwise (`--spare-grace`): long enough for
/// a watchdog to restart `modsynthd` and take it back, short enough that spares of a
/// supervisor that is gone for good do not linger.
pub const DEFAULT_SPARE_GRACE: Duration = Duration::from_secs(10);

/// How long a worker without a supervisor lets its JACK client go without a single
/// period before it concludes the server is gone too and exits (libjack's shutdown
/// notice normally says so at once; this catches a server that died without one).
const SERVER_SILENCE: Duration = Duration::from_secs(10);

/// How often the worker looks at its surroundings while nothing arrives.
const POLL: Duration = Duration::from_millis(200);

/// The channel to the supervisor, shared with the standby's watcher thread; `None`
/// while the worker has no supervisor.
#[derive(Clone)]
struct Uplink(Arc<Mutex<Option<IpcSender<FromWorker>>>>);

impl Uplink {
    fn new(to: IpcSender<FromWorker>) -> Uplink {
        Uplink(Arc::new(Mutex::new(Some(to))))
    }

    /// Sends `msg` if there is a supervisor; `false` if there is none (any more).
    fn send(&self, msg: FromWorker) -> bool {
        let mut to = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let sent = to.as_ref().is_some_and(|t| t.send(msg).is_ok());
        if !sent {
            *to = None;
        }
        sent
    }

    fn set(&self, to: IpcSender<FromWorker>) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(to);
    }

    fn lose(&self) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }
}

/// Runs a pooled worker with JACK client `client_name`, reporting to the supervisor's
/// one-shot server `server_name`.
///
/// The worker does not depend on its supervisor to play: when the supervisor's
/// channel closes (it crashed, or was killed), a worker that plays a module (as
/// primary or standby) goes on with it, its connections, its state publishing and
/// its standby watch; a spare exits after `spare_grace`. Either leaves when the JACK
/// server goes away.
///
/// With `cards` (the instance's `<state dir>/workers`), the worker can be taken back
/// by a new supervisor: it keeps an `IpcOneShotServer<Adoption>` open, publishes its
/// name in its [`WorkerCard`] there, and makes a new one after every adoption.
pub fn run(
    client_name: &str,
    server_name: &str,
    spare_grace: Duration,
    cards: Option<&Path>,
) -> Result<(), String> {
    let to_supervisor: IpcSender<FromWorker> = IpcSender::connect(server_name.to_string())
        .map_err(|e| format!("cannot reach the supervisor at {server_name}: {e}"))?;
    // If the server goes away the worker has nothing to serve: exit, as on Shutdown.
    let (shutdown_tx, shutdown_rx) = std::sync::mpsc::channel::<()>();
    let on_shutdown = Box::new(move || {
        let _ = shutdown_tx.send(());
    });
    let mut host = Host::open(client_name, on_shutdown).map_err(|e| e.to_string())?;
    host.keep_spare_ports()?;
    let (commands_tx, commands) = ipc::channel::<ToWorker>().map_err(|e| e.to_string())?;
    to_supervisor
        .send(FromWorker::Hello {
            pid: std::process::id(),
            client: client_name.to_string(),
            commands: commands_tx,
            seats: 0,
        })
        .map_err(|e| format!("cannot greet the supervisor: {e}"))?;

    let mut worker = Worker {
        uplink: Uplink::new(to_supervisor),
        assigned: None,
        watching: None,
        host,
        sent: 0,
        params: Coalescer::default(),
        takeovers_at_assign: 0,
        assigned_state: None,
        cpu: CpuClock::now(),
        dsp: DspClock::default(),
    };
    let (adoptions_tx, adoptions) = std::sync::mpsc::channel::<Adoption>();
    // Removes the card and the pending server's socket however `run` returns, and
    // before the supervisor's channel closes (declared after `worker`, so dropped
    // before it): a supervisor that sees every worker gone finds no live card.
    let offer = cards.map(|dir| AdoptionOffer::start(dir, client_name, adoptions_tx));
    let mut commands = Some(commands);
    // Since when the worker has had no supervisor, and its periods' progress then.
    let mut alone_since: Option<Instant> = None;
    let mut server_progress = (0u64, Instant::now());
    // An adoption that arrived while the loop waited for one.
    let mut adoption: Option<Adoption> = None;
    loop {
        if shutdown_rx.try_recv().is_ok() {
            return Err("the JACK server shut down".into());
        }
        if let Some(new) = adoption.take().or_else(|| adoptions.try_recv().ok()) {
            commands = worker.adopted_by(new);
            alone_since = None;
            continue;
        }
        let Some(rx) = &commands else {
            let since = *alone_since.get_or_insert_with(Instant::now);
            if worker.assigned_state.is_none() && since.elapsed() >= spare_grace {
                tracing::info!("no supervisor for {spare_grace:?} and no module: exiting");
                break;
            }
            let cycles = worker
                .host
                .controller()
                .stats()
                .cycles
                .load(Ordering::Relaxed);
            // Only a worker with a module counts its periods (a spare's callback
            // returns at once); a spare leaves after its grace anyway.
            if cycles != server_progress.0 || worker.assigned_state.is_none() {
                server_progress = (cycles, Instant::now());
            } else if server_progress.1.elapsed() >= SERVER_SILENCE {
                return Err(format!(
                    "no supervisor, and the JACK server ran no period for {SERVER_SILENCE:?}: \
                     it is gone too"
                ));
            }
            // An adoption wakes the loop at once; the rest is looked at every POLL.
            adoption = adoptions.recv_timeout(POLL).ok();
            continue;
        };
        // Held parameter changes go to the ring as soon as it has room (it empties
        // every period): look again in a millisecond while there are some.
        let wait = if worker.params.is_empty() {
            POLL
        } else {
            Duration::from_millis(1)
        };
        let message = match rx.try_recv_timeout(wait) {
            Ok(m) => m,
            Err(ipc_channel::TryRecvError::Empty) => {
                worker.flush_params();
                continue;
            }
            Err(ipc_channel::TryRecvError::IpcError(_)) => {
                worker.supervisor_lost();
                commands = None;
                continue;
            }
        };
        if matches!(message, ToWorker::Shutdown) {
            break;
        }
        if let Some(reply) = worker.handle(message) {
            if !worker.uplink.send(reply) {
                worker.supervisor_lost();
                commands = None;
            }
        }
        // Off the critical path: the assignment has been answered.
        worker.host.tidy();
    }
    drop(offer);
    host = worker.host;
    host.close()
}

struct Worker {
    host: Host,
    uplink: Uplink,
    /// The thread that watches this standby's primary; dropping it stops it.
    watching: Option<Watch>,
    /// Parameter changes handed to the real-time thread so far.
    sent: u64,
    /// Parameter changes that met a full ring: held (the last value wins) or,
    /// if scheduled, dropped; counted.
    params: Coalescer,
    /// The engine's takeover count when the current module was assigned.
    takeovers_at_assign: u64,
    /// The current module's state segment and type, if it has one.
    assigned_state: Option<(String, String)>,
    /// What the current assignment is, for a supervisor that adopts this worker.
    assigned: Option<Assigned>,
    cpu: CpuClock,
    dsp: DspClock,
}

/// A worker's current assignment, as a new supervisor needs to know it.
struct Assigned {
    id: String,
    module_type: String,
    role: Role,
    state: String,
    ports: Vec<String>,
}

impl Worker {
    /// A new supervisor took this worker back: answer on its channel with what the
    /// worker plays (parameter values read from the last published state) and
    /// return the commands to serve; `None` if that supervisor is gone already.
    fn adopted_by(&mut self, adoption: Adoption) -> Option<ipc::IpcReceiver<ToWorker>> {
        self.uplink.set(adoption.supervisor);
        let reply = self.what_it_plays();
        if self.uplink.send(reply) {
            tracing::info!("adopted by a new supervisor");
            Some(adoption.commands)
        } else {
            self.supervisor_lost();
            None
        }
    }

    /// [`FromWorker::Adopted`] for this worker.
    fn what_it_plays(&mut self) -> FromWorker {
        let me = std::process::id();
        let sample_rate = self.host.client().sample_rate() as f32;
        let playing = self.assigned.as_ref().map(|a| {
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
        });
        FromWorker::Adopted {
            pid: me,
            client: self.host.client().name().to_string(),
            playing,
        }
    }

    /// The position the `seq` this worker plays published last (off the audio
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

    /// The supervisor's channel closed: play on without it (see [`run`]).
    fn supervisor_lost(&mut self) {
        self.uplink.lose();
        match &self.assigned_state {
            Some((segment, _)) => {
                tracing::warn!("the supervisor is gone: playing {segment} on without it")
            }
            None => tracing::warn!("the supervisor is gone: waiting for another as a spare"),
        }
    }

    fn handle(&mut self, message: ToWorker) -> Option<FromWorker> {
        let message_kind = message.kind();
        tracing::trace!("from the supervisor: {message_kind}");
        match message {
            ToWorker::Assign {
                token,
                id,
                module_type,
                params,
                role,
                state,
                plugin_state,
            } => {
                tracing::debug!("assign received");
                let plugin_state = plugin_state.as_deref();
                self.stop_watching();
                self.takeovers_at_assign = self.takeovers();
                self.assigned_state = Some((state.clone(), module_type.clone()));
                // Plugin ranges given as fractions of the rate are scaled by ours.
                modsynth_lv2::spec::set_sample_rate(self.host.client().sample_rate());
                let spec = match catalog::lookup(&module_type) {
                    Ok(spec) => spec,
                    Err(e) => {
                        return Some(FromWorker::Assigned {
                            token,
                            result: Err(e),
                        })
                    }
                };
                let params: Vec<(usize, f32)> =
                    params.iter().map(|&(i, v)| (i as usize, v)).collect();
                // A primary makes the module's state and names its ports at once; a
                // replacement or a standby opens the state a primary made.
                let (name, plan) = match role {
                    Role::Primary => (Some(id.as_str()), StatePlan::Create(&state)),
                    Role::Replacement | Role::Standby { .. } => (None, StatePlan::Open(&state)),
                };
                let result = self.host.assign(spec, &params, name, plan, plugin_state);
                if result.is_ok() {
                    match role {
                        Role::Primary => {}
                        Role::Replacement => self.take_over_from_the_dead(&state, &module_type),
                        Role::Standby { primary_pid } => {
                            self.host.label_standby(&id);
                            let type_index =
                                catalog::module_index(&module_type).unwrap_or(0) as u32;
                            let stats = self.host.controller().stats().clone();
                            self.watch(primary_pid, state.clone(), type_index, stats);
                        }
                    }
                }
                self.assigned = result.as_ref().ok().map(|ports| Assigned {
                    id: id.clone(),
                    module_type: module_type.clone(),
                    role,
                    state: state.clone(),
                    ports: ports.clone(),
                });
                Some(FromWorker::Assigned { token, result })
            }
            ToWorker::TakeNames { id } => {
                if let Some(a) = &mut self.assigned {
                    a.role = Role::Primary;
                }
                // The supervisor sends this once the old owner is dead. A standby
                // normally took over already (its watcher saw the death first); if
                // its watcher missed it, it takes over now rather than stay silent.
                if let Some((segment, module_type)) = self.assigned_state.clone() {
                    self.take_over_from_the_dead(&segment, &module_type);
                }
                self.host.name_ports(&id);
                Some(FromWorker::TookOver {
                    silent_frames: self.first_owned_period(),
                })
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
                let controller = self.host.controller();
                self.sent += self
                    .params
                    .offer(change, &mut |c| controller.send_change(c));
                None
            }
            ToWorker::Gate { gain, at, fade_ms } => {
                let rate = self.host.client().sample_rate() as u64;
                let ramp = (u64::from(fade_ms) * rate / 1000).min(u64::from(u32::MAX)) as u32;
                let change = crate::gate::GateChange { gain, at, ramp };
                if let Err(e) = self.host.controller().set_gate(change) {
                    tracing::error!("output gate not moved: {e}");
                }
                None
            }
            ToWorker::Rename { id } => {
                if let Some(a) = &mut self.assigned {
                    a.id = id.clone();
                    match a.role {
                        Role::Standby { .. } => self.host.label_standby(&id),
                        Role::Primary | Role::Replacement => self.host.rename_ports(&id),
                    }
                }
                None
            }
            ToWorker::Sync { token } => {
                // Held changes were sent before the sync: they go first.
                let deadline = Instant::now() + RT_TIMEOUT;
                self.flush_params();
                while !self.params.is_empty() && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_micros(200));
                    self.flush_params();
                }
                let stats = self.host.controller().stats().clone();
                let sent = self.sent;
                wait_for(RT_TIMEOUT, || stats.params_settled() >= sent);
                Some(FromWorker::Synced { token })
            }
            ToWorker::Free { token } => {
                self.stop_watching();
                self.assigned_state = None;
                self.assigned = None;
                if let Err(e) = self.host.free(RT_TIMEOUT) {
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
                report: self.report(),
            }),
            ToWorker::SavePluginState { token } => Some(FromWorker::PluginState {
                token,
                result: self.host.save_plugin_state(),
            }),
            ToWorker::SeqPosition { token } => Some(FromWorker::SeqPosition {
                token,
                position: self.seq_position(),
            }),
            ToWorker::ToSeat { .. } | ToWorker::TakeOverAt { .. } | ToWorker::StandBy { .. } => {
                tracing::error!("{} is not served by this worker yet", message_kind);
                None
            }
            ToWorker::Shutdown => None,
        }
    }

    /// As a standby: watch the primary and take the module over the moment it dies
    /// (see [`crate::standby`]); tell the supervisor once promoted.
    fn watch(
        &mut self,
        primary_pid: u32,
        segment: String,
        type_index: u32,
        stats: Arc<crate::engine::Stats>,
    ) {
        let uplink = self.uplink.clone();
        self.watching = Watch::start(primary_pid, segment, type_index, stats, move || {
            uplink.send(FromWorker::Promoted);
        });
    }

    fn takeovers(&mut self) -> u64 {
        self.host
            .controller()
            .stats()
            .takeovers
            .load(Ordering::Acquire)
    }

    /// Waits (up to a second) for the first period this worker plays as the owner of
    /// its module since the last assignment, and returns the gap before it.
    fn first_owned_period(&mut self) -> Option<u32> {
        let stats = self.host.controller().stats().clone();
        let before = self.takeovers_at_assign;
        if !wait_for(Duration::from_secs(1), || {
            stats.takeovers.load(Ordering::Acquire) > before
        }) {
            return None;
        }
        let gap = stats.last_takeover_gap.load(Ordering::Relaxed);
        Some(gap.min(u32::MAX as u64) as u32)
    }

    /// As a replacement: the module's previous owner is dead (the supervisor saw it
    /// go), so whoever the owner word names is taken over; the real-time thread then
    /// continues from the last published state.
    fn take_over_from_the_dead(&self, segment: &str, module_type: &str) {
        let type_index = catalog::module_index(module_type).unwrap_or(0) as u32;
        let shared = match SharedState::open(segment, type_index) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!("replacement cannot map {segment}: {e}");
                return;
            }
        };
        let me = std::process::id() as u64;
        // The owner word only changes by compare-and-swap; retry if it moved between
        // the read and the swap (it cannot keep moving: its owners are dead).
        for _ in 0..100 {
            let owner = shared.owner();
            if owner == me || shared.take_over(owner, me) {
                return;
            }
        }
        tracing::error!("could not take {segment} over");
    }

    fn stop_watching(&mut self) {
        if let Some(watch) = self.watching.take() {
            watch.stop();
        }
    }

    /// Sends held parameter changes the ring has room for.
    fn flush_params(&mut self) {
        let controller = self.host.controller();
        self.sent += self.params.flush(&mut |c| controller.send_change(c));
    }

    fn report(&mut self) -> WorkerReport {
        let stats = self.host.controller().stats().clone();
        let client = self.host.client();
        WorkerReport {
            pid: std::process::id(),
            client: client.name().to_string(),
            cycles: stats.cycles.load(Ordering::Relaxed),
            xruns: self.host.events().xruns.load(Ordering::Relaxed),
            params: ParamTraffic {
                received: self.sent
                    + self.params.held()
                    + self.params.coalesced
                    + self.params.dropped,
                dropped: self.params.dropped,
                coalesced: self.params.coalesced,
                applied: stats.params_applied.load(Ordering::Relaxed),
            },
            latency_p50: self.host.controller().latency_quantile(0.5).unwrap_or(0),
            latency_p95: self.host.controller().latency_quantile(0.95).unwrap_or(0),
            latency_p99: self.host.controller().latency_quantile(0.99).unwrap_or(0),
            latencies_unrecorded: stats.latencies_unrecorded.load(Ordering::Relaxed),
            dsp_load: self.dsp.percent_since_last(self.host.events()),
            cpu_percent: self.cpu.percent_since_last(),
            rss_kib: rss_kib(),
            non_finite: stats.non_finite.load(Ordering::Relaxed),
        }
    }
}

/// Polls `done` (every 0.2 ms: the real-time thread answers within a period) until
/// it holds or `within` has passed; returns whether it held.
fn wait_for(within: Duration, done: impl Fn() -> bool) -> bool {
    let deadline = Instant::now() + within;
    while !done() {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    true
}

/// Time in the process callback, to report this worker's DSP load between two
/// reports (JACK's own `cpu_load` is the server's, the same for every worker).
struct DspClock {
    wall: Instant,
    busy_us: u64,
}

impl Default for DspClock {
    fn default() -> DspClock {
        DspClock {
            wall: Instant::now(),
            busy_us: 0,
        }
    }
}

impl DspClock {
    /// Callback time since the last call, % of the wall time.
    fn percent_since_last(&mut self, events: &crate::jack_host::HostEvents) -> f32 {
        let busy = events.busy_us.load(Ordering::Relaxed);
        let now = Instant::now();
        let wall_us = now.duration_since(self.wall).as_secs_f64() * 1e6;
        let spent = busy.saturating_sub(self.busy_us) as f64;
        (self.wall, self.busy_us) = (now, busy);
        if wall_us > 0.0 {
            (100.0 * spent / wall_us) as f32
        } else {
            0.0
        }
    }
}

/// Process CPU time, to report CPU % between two reports.
struct CpuClock {
    wall: Instant,
    cpu: Duration,
}

impl CpuClock {
    fn now() -> CpuClock {
        CpuClock {
            wall: Instant::now(),
            cpu: process_cpu_time(),
        }
    }

    fn percent_since_last(&mut self) -> f32 {
        let now = CpuClock::now();
        let wall = now.wall.duration_since(self.wall).as_secs_f64();
        let cpu = now.cpu.saturating_sub(self.cpu).as_secs_f64();
        *self = now;
        if wall > 0.0 {
            (100.0 * cpu / wall) as f32
        } else {
            0.0
        }
    }
}

fn process_cpu_time() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    Duration::new(
        t.tv_sec.max(0) as u64,
        t.tv_nsec.clamp(0, 999_999_999) as u32,
    )
}

/// Resident set size from /proc/self/statm, KiB (0 if unreadable).
pub fn rss_kib() -> u64 {
    let page_kib = rustix::param::page_size() as u64 / 1024;
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .nth(1)
                .and_then(|v| v.parse::<u64>().ok())
        })
        .map_or(0, |pages| pages * page_kib)
}

/// This worker's offer to be adopted: its card in the state dir and the thread that
/// keeps an `IpcOneShotServer<Adoption>` open. Dropping it (the worker exits)
/// removes the card and the pending server's socket.
struct AdoptionOffer {
    card: PathBuf,
    /// The socket path of the server waiting now.
    pending: Arc<Mutex<Option<String>>>,
}

impl AdoptionOffer {
    fn start(
        dir: &Path,
        client: &str,
        adoptions: std::sync::mpsc::Sender<Adoption>,
    ) -> AdoptionOffer {
        let offer = AdoptionOffer {
            card: dir.join(format!("{client}.json")),
            pending: Arc::new(Mutex::new(None)),
        };
        let (card, pending, client) = (
            offer.card.clone(),
            offer.pending.clone(),
            client.to_string(),
        );
        let spawned = std::thread::Builder::new()
            .name("adoption".into())
            .spawn(move || offer_adoption(&card, &client, &pending, &adoptions));
        if let Err(e) = spawned {
            tracing::error!(
                "no adoption thread ({e}): a new supervisor cannot take this worker back"
            );
        }
        offer
    }
}

impl Drop for AdoptionOffer {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.card);
        if let Some(socket) = self
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            // ipc-channel makes a temporary dir per server and removes it only when
            // the server is dropped, which a thread blocked in accept() never does.
            let socket = PathBuf::from(socket);
            let _ = std::fs::remove_file(&socket);
            if let Some(dir) = socket.parent() {
                let _ = std::fs::remove_dir(dir);
            }
        }
    }
}

/// Serves adoptions until the worker exits: a server, its name on the card, one
/// adoption handed to the main loop, and again.
fn offer_adoption(
    card: &Path,
    client: &str,
    pending: &Mutex<Option<String>>,
    adoptions: &std::sync::mpsc::Sender<Adoption>,
) {
    let pid = std::process::id();
    let Some(start_time) = process_start_time(pid) else {
        tracing::error!("cannot read this process's start time: it cannot be adopted");
        return;
    };
    loop {
        let (server, name) = match IpcOneShotServer::<Adoption>::new() {
            Ok(v) => v,
            Err(e) => {
                tracing::error!(
                    "no adoption server ({e}): a new supervisor cannot take this worker back"
                );
                return;
            }
        };
        *pending.lock().unwrap_or_else(|p| p.into_inner()) = Some(name.clone());
        let entry = WorkerCard {
            pid,
            start_time,
            client: client.to_string(),
            server: name,
            jack_server: jack_server_name(),
        };
        if let Err(e) = write_card(card, &entry) {
            tracing::error!("cannot write {}: {e}", card.display());
        }
        match server.accept() {
            Ok((_, adoption)) => {
                if adoptions.send(adoption).is_err() {
                    return;
                }
            }
            // A supervisor that died between connecting and sending: offer anew.
            Err(e) => tracing::debug!("an adoption failed: {e:?}"),
        }
    }
}

/// Writes the card atomically (temp file, rename): a supervisor never reads half.
fn write_card(card: &Path, entry: &WorkerCard) -> std::io::Result<()> {
    let json = serde_json::to_string(entry).map_err(std::io::Error::other)?;
    let tmp = card.with_extension("json.tmp");
    std::fs::write(&tmp, json)?;
    std::fs::rename(&tmp, card)
}

//! Pooled mode: a warm worker serving the supervisor.
//!
//! The JACK client is opened and activated before the worker says hello, so that when
//! the supervisor assigns a module the only costs left are registering its ports and
//! one message. The worker then serves [`ToWorker`] requests until the supervisor says
//! `Shutdown`. If the supervisor goes away instead (its channel closes), a worker
//! with a module plays on, and a spare exits after a grace period (see [`run`]).
//!
//! What a module needs served is a [`crate::seats`] `Seat`'s job; this module is
//! the process around it: the channel, the loop, adoption. An ordinary worker has
//! one seat; a standby host (`seats` > 0) has that many, addressed by `ToSeat`.

use crate::jack_host::Host;
use crate::seats::Seat;
use ipc_channel::ipc::{self, IpcOneShotServer, IpcSender};
use modsynth_model::protocol::{Adoption, FromWorker, ToWorker, WorkerCard, WorkerReport};
use modsynth_process::{jack_server_name, process_start_time};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long the worker waits for its real-time thread before answering anyway.
pub(crate) const RT_TIMEOUT: Duration = Duration::from_secs(2);

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
pub(crate) struct Uplink(Arc<Mutex<Option<IpcSender<FromWorker>>>>);

impl Uplink {
    fn new(to: IpcSender<FromWorker>) -> Uplink {
        Uplink(Arc::new(Mutex::new(Some(to))))
    }

    /// Sends `msg` if there is a supervisor; `false` if there is none (any more).
    pub(crate) fn send(&self, msg: FromWorker) -> bool {
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
/// one-shot server `server_name`; with `seats` > 0, a standby host of that many
/// seats (see [`crate::seats`]).
///
/// The worker does not depend on its supervisor to play: when the supervisor's
/// channel closes (it crashed, or was killed), a worker that plays a module (as
/// primary or standby) goes on with it, its connections, its state publishing and
/// its standby watch; a spare exits after `spare_grace`. A standby host is a spare
/// unless one of its seats plays (owns) its module: its standbys alone do not keep
/// it. Either leaves when the JACK server goes away.
///
/// With `cards` (the instance's `<state dir>/workers`), an ordinary worker can be
/// taken back by a new supervisor: it keeps an `IpcOneShotServer<Adoption>` open,
/// publishes its name in its [`WorkerCard`] there, and makes a new one after every
/// adoption. A standby host is never adopted (the protocol has no way to say what
/// its seats play): it publishes no card.
pub fn run(
    client_name: &str,
    server_name: &str,
    spare_grace: Duration,
    cards: Option<&Path>,
    seats: u16,
) -> Result<(), String> {
    let to_supervisor: IpcSender<FromWorker> = IpcSender::connect(server_name.to_string())
        .map_err(|e| format!("cannot reach the supervisor at {server_name}: {e}"))?;
    // If the server goes away the worker has nothing to serve: exit, as on Shutdown.
    let (shutdown_tx, shutdown_rx) = std::sync::mpsc::channel::<()>();
    let on_shutdown = Box::new(move || {
        let _ = shutdown_tx.send(());
    });
    let host = if seats > 0 {
        Host::open_seats(client_name, seats as usize, on_shutdown).map_err(|e| e.to_string())?
    } else {
        let mut host = Host::open(client_name, on_shutdown).map_err(|e| e.to_string())?;
        host.keep_spare_ports()?;
        host
    };
    let (commands_tx, commands) = ipc::channel::<ToWorker>().map_err(|e| e.to_string())?;
    to_supervisor
        .send(FromWorker::Hello {
            pid: std::process::id(),
            client: client_name.to_string(),
            commands: commands_tx,
            seats,
        })
        .map_err(|e| format!("cannot greet the supervisor: {e}"))?;

    let mut worker = Worker {
        uplink: Uplink::new(to_supervisor),
        seats: if seats > 0 {
            (0..seats).map(Seat::of_host).collect()
        } else {
            vec![Seat::only()]
        },
        hosting: seats > 0,
        host,
        cpu: CpuClock::now(),
        dsp: DspClock::default(),
    };
    let (adoptions_tx, adoptions) = std::sync::mpsc::channel::<Adoption>();
    // Removes the card and the pending server's socket however `run` returns, and
    // before the supervisor's channel closes (declared after `worker`, so dropped
    // before it): a supervisor that sees every worker gone finds no live card.
    let offer = cards
        .filter(|_| !worker.hosting)
        .map(|dir| AdoptionOffer::start(dir, client_name, adoptions_tx));
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
            let plays = worker.plays_on();
            if !plays && since.elapsed() >= spare_grace {
                tracing::info!("no supervisor for {spare_grace:?} and no module: exiting");
                break;
            }
            let cycles = worker.cycles();
            // Only a worker with a module counts its periods (a spare's callback
            // returns at once); a spare leaves after its grace anyway.
            if cycles != server_progress.0 || !plays {
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
        let wait = if worker.seats.iter().any(Seat::holds_params) {
            Duration::from_millis(1)
        } else {
            POLL
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
    for seat in &mut worker.seats {
        seat.stop_watching();
    }
    worker.host.close()
}

/// The process around the seats: the JACK host, the channel.
struct Worker {
    host: Host,
    uplink: Uplink,
    /// One per engine of the host (one in an ordinary worker).
    seats: Vec<Seat>,
    /// A standby host: its seats are addressed by `ToSeat`.
    hosting: bool,
    /// For a standby host's own `Report` (its seats keep their own clocks).
    cpu: CpuClock,
    dsp: DspClock,
}

impl Worker {
    /// A new supervisor took this worker back: answer on its channel with what the
    /// worker plays (parameter values read from the last published state) and
    /// return the commands to serve; `None` if that supervisor is gone already.
    fn adopted_by(&mut self, adoption: Adoption) -> Option<ipc::IpcReceiver<ToWorker>> {
        self.uplink.set(adoption.supervisor);
        let reply = FromWorker::Adopted {
            pid: std::process::id(),
            client: self.host.client().name().to_string(),
            playing: self.seats[0].playing(self.host.client().sample_rate() as f32),
        };
        if self.uplink.send(reply) {
            tracing::info!("adopted by a new supervisor");
            Some(adoption.commands)
        } else {
            self.supervisor_lost();
            None
        }
    }

    /// Whether, without a supervisor, it plays on: an ordinary worker with a
    /// module (primary or standby), a standby host with a seat that owns its module.
    fn plays_on(&mut self) -> bool {
        if !self.hosting {
            return self.seats[0].has_module();
        }
        (0..self.seats.len()).any(|i| {
            let stats = self.host.controller(i).stats();
            stats.owning.load(Ordering::Relaxed)
        })
    }

    /// Periods its engines ran with a module, all seats together.
    fn cycles(&mut self) -> u64 {
        (0..self.seats.len())
            .map(|i| {
                self.host
                    .controller(i)
                    .stats()
                    .cycles
                    .load(Ordering::Relaxed)
            })
            .sum()
    }

    /// The supervisor's channel closed: play on without it (see [`run`]).
    fn supervisor_lost(&mut self) {
        self.uplink.lose();
        let playing: Vec<&str> = self.seats.iter().filter_map(Seat::segment).collect();
        if playing.is_empty() {
            tracing::warn!("the supervisor is gone: waiting for another as a spare");
        } else {
            tracing::warn!("the supervisor is gone: playing {playing:?} on without it");
        }
    }

    /// Sends held parameter changes the rings have room for.
    fn flush_params(&mut self) {
        for seat in &mut self.seats {
            seat.flush_params(&mut self.host);
        }
    }

    fn handle(&mut self, message: ToWorker) -> Option<FromWorker> {
        if !self.hosting {
            if let ToWorker::ToSeat { seat, .. } = message {
                tracing::error!("a message for seat {seat}, but this worker has no seats");
                return None;
            }
            return self.seats[0].handle(&mut self.host, &self.uplink, message);
        }
        match message {
            ToWorker::ToSeat { seat, message } => {
                let Some(to) = self.seats.get_mut(seat as usize) else {
                    tracing::error!(
                        "{} for seat {seat}: this host has {} seats; dropped",
                        message.kind(),
                        self.seats.len()
                    );
                    return None;
                };
                if matches!(*message, ToWorker::ToSeat { .. } | ToWorker::Shutdown) {
                    tracing::warn!(
                        "{} inside a message for seat {seat}: ignored",
                        message.kind()
                    );
                    return None;
                }
                let reply = to.handle(&mut self.host, &self.uplink, *message)?;
                Some(to.wrap(reply))
            }
            ToWorker::Report { token } => Some(FromWorker::Report {
                token,
                report: self.host_report(),
            }),
            other => {
                tracing::error!(
                    "{} to a standby host, not to one of its seats: dropped",
                    other.kind()
                );
                None
            }
        }
    }

    /// A standby host's own counters: the process's, the client's, and the sum of
    /// its seats' periods and parameter changes applied.
    fn host_report(&mut self) -> WorkerReport {
        let mut report = WorkerReport {
            pid: std::process::id(),
            client: self.host.client().name().to_string(),
            xruns: self.host.events().xruns.load(Ordering::Relaxed),
            dsp_load: self.dsp.percent_since_last(self.host.events()),
            cpu_percent: self.cpu.percent_since_last(),
            rss_kib: rss_kib(),
            ..WorkerReport::default()
        };
        for i in 0..self.seats.len() {
            let stats = self.host.controller(i).stats();
            report.cycles += stats.cycles.load(Ordering::Relaxed);
            report.params.applied += stats.params_applied.load(Ordering::Relaxed);
        }
        report
    }
}

/// Polls `done` (every 0.2 ms: the real-time thread answers within a period) until
/// it holds or `within` has passed; returns whether it held.
pub(crate) fn wait_for(within: Duration, done: impl Fn() -> bool) -> bool {
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
pub(crate) struct DspClock {
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
    pub(crate) fn percent_since_last(&mut self, events: &crate::jack_host::HostEvents) -> f32 {
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
pub(crate) struct CpuClock {
    wall: Instant,
    cpu: Duration,
}

impl CpuClock {
    pub(crate) fn now() -> CpuClock {
        CpuClock {
            wall: Instant::now(),
            cpu: process_cpu_time(),
        }
    }

    pub(crate) fn percent_since_last(&mut self) -> f32 {
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

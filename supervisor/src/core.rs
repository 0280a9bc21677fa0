//! The supervisor's core: one struct that owns all state and decides.
//!
//! Every other thread (OSC, worker links, spawners, signals) only turns what it sees
//! into an [`Event`]; [`Core::handle`] takes one event at a time and acts through the
//! [`Effects`] trait. Tests drive the core with a fake `Effects` and check what it did,
//! without JACK, sockets or processes.

use crate::restart::{CrashHistory, Recovery, RestartPolicy};
use modsynth_control::catalog::{self, ModuleSpec, MAX_PARAMS};
use modsynth_control::osc::{self, Arg, Fail, Request, Standby};
use modsynth_control::param;
use modsynth_control::protocol::{FromWorker, Role as WorkerRole, ToWorker, WorkerReport};
use modsynth_control::setfile::{self, Connection};
use modsynth_control::status::{Counters, ModuleStatus, StatusReport};
use rosc::{OscMessage, OscType};
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// A worker's identity inside the supervisor (its pool slot number).
pub type WorkerId = u32;

/// Who asked, for replies: an OSC sender.
pub type ReplyTo = SocketAddr;

/// A spawned, connected, ready worker.
#[derive(Debug)]
pub struct NewWorker {
    pub id: WorkerId,
    pub pid: u32,
    pub client: String,
    pub commands: ipc_channel::ipc::IpcSender<ToWorker>,
    /// Time from spawn to hello.
    pub spawn_time: Duration,
}

/// Something that happened, for the core to decide on.
#[derive(Debug)]
pub enum Event {
    /// A decoded (or refused) OSC message from `from`. `received` is the JACK frame at
    /// receipt; `at` the JACK frame its bundle's timetag names, if in the future.
    Osc {
        from: ReplyTo,
        request: Result<Request, Fail>,
        received: u32,
        at: Option<u32>,
    },
    /// A worker finished starting.
    Spawned(NewWorker),
    /// A worker could not be started.
    SpawnFailed { id: WorkerId, reason: String },
    /// A message from a worker.
    FromWorker(WorkerId, FromWorker),
    /// A worker's channel closed: it exited or was killed.
    WorkerGone(WorkerId),
    /// New JACK ports exist: pending connections may now be made.
    PortsAppeared,
    /// Two JACK ports (by JACK port id) were connected or disconnected, by anyone.
    PortsConnected { a: u32, b: u32, connected: bool },
    /// Stop everything.
    Shutdown,
}

/// What the core can do to the world.
pub trait Effects {
    /// Sends an OSC message to a client.
    fn reply(&mut self, to: ReplyTo, msg: OscMessage);
    /// Sends a message to a worker; `false` if its channel is gone.
    fn send(&mut self, worker: &WorkerLink, msg: ToWorker) -> bool;
    /// Starts worker `id` in the background; it arrives as `Spawned` or `SpawnFailed`.
    fn spawn(&mut self, id: WorkerId);
    /// Kills a worker's process (it then arrives as `WorkerGone`).
    fn kill(&mut self, worker: &WorkerLink);
    /// Connects or disconnects two JACK ports by full name.
    fn patch(&mut self, connect: bool, src: &str, dst: &str) -> Result<(), String>;
    /// Whether a JACK port of that full name exists.
    fn port_exists(&mut self, name: &str) -> bool;
    /// Full names of the ports connected to `port`.
    fn connections(&mut self, port: &str) -> Vec<String>;
    /// Reads a set file.
    fn read_file(&mut self, path: &str) -> Result<String, String>;
    /// Writes a set file atomically.
    fn write_file(&mut self, path: &str, contents: &str) -> Result<(), String>;
    /// The full name of the JACK port with this id.
    fn port_name(&mut self, id: u32) -> Option<String>;
    /// Removes a module's state segment from /dev/shm.
    fn unlink_state(&mut self, name: &str);
    /// Time, for measuring (tests may fake it).
    fn now(&self) -> Instant;
    /// The first frame of the last cycle the JACK server ran, and its period.
    fn last_cycle(&mut self) -> Option<(u32, u32)>;
    /// The frame each state segment was last published at (`None`: cannot map it).
    fn published_frames(&mut self, segments: &[&str]) -> Vec<Option<u32>>;
}

/// What the registry should hold, from [`Core::registry_view`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RegistryView {
    /// Module state segments, by module id.
    pub segments: Vec<RegisteredSegment>,
    /// Live workers (spares, primaries, standbys), by pid.
    pub workers: Vec<RegisteredWorker>,
}

/// One module's state segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisteredSegment {
    pub module: String,
    /// `/<instance>-<module>-state`.
    pub segment: String,
    /// The worker that plays the module (and owns the segment's contents).
    pub owner_pid: u32,
}

/// One worker as the registry lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisteredWorker {
    pub pid: u32,
    pub jack_client: String,
    pub role: RegisteredRole,
    pub module: Option<String>,
}

/// A worker's role in the registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegisteredRole {
    Spare,
    Primary,
    Standby,
}

/// How the core reaches one worker.
#[derive(Debug)]
pub struct WorkerLink {
    pub id: WorkerId,
    pub pid: u32,
    pub client: String,
    pub commands: ipc_channel::ipc::IpcSender<ToWorker>,
}

#[derive(Debug, Clone, PartialEq)]
enum Role {
    /// Warm, no module: in the ready queue.
    Spare,
    /// Playing a module (or being assigned one).
    Primary(String),
    /// Being freed; becomes a spare when the worker says so.
    Freeing,
    /// Told to exit (surplus, or failed an assignment): its exit is expected.
    Retiring,
    /// Told to exit because the supervisor is stopping.
    Stopping,
    /// Hot standby of a module: silent, same ports and connections, takes over
    /// when the primary dies.
    Standby(String),
}

struct Worker {
    link: WorkerLink,
    role: Role,
    last_report: Option<WorkerReport>,
}

/// A module as the supervisor knows it.
struct Module {
    spec: &'static ModuleSpec,
    worker: WorkerId,
    params: [f32; MAX_PARAMS],
    /// Full JACK port names, catalog order; empty until the worker confirms.
    ports: Vec<String>,
    standby: Standby,
    /// The state segment (`/<instance>-<id>-state`); empty without a standby.
    state: String,
    /// The hot standby, once assigned, with its port names (catalog order).
    standby_worker: Option<WorkerId>,
    standby_ports: Vec<String>,
    /// Every connection of the primary's ports, by port index, the other end as a
    /// module port (`vcf1:in`) or a JACK name: restored on a replacement, whose
    /// ports start unconnected (JACK dropped the dead primary's connections).
    links: std::collections::BTreeSet<(usize, String)>,
    history: CrashHistory,
    /// Left silent after a crash loop: no worker, reported as quarantined.
    quarantined: bool,
    /// Since when the module has been without its primary, until the replacement
    /// has its names and has played its first period.
    recovering_since: Option<Instant>,
    /// Since when the module has been without a ready standby after losing a worker.
    degraded_since: Option<Instant>,
    /// Since when its current primary has played it (for the heartbeat check).
    playing_since: Option<Instant>,
}

/// The `worker` of a module that has none (being replaced, or quarantined).
const NO_WORKER: WorkerId = WorkerId::MAX;

/// Who is waiting for a create.
#[derive(Debug, Clone, Copy)]
enum Origin {
    /// An OSC client, answered with `/done` or `/fail`.
    Client(ReplyTo),
    /// A set being loaded (the token of its `Pending::Load`).
    Load(u64),
}

enum Pending {
    Create {
        from: Origin,
        id: String,
        started: Instant,
        cold: bool,
    },
    Load {
        from: ReplyTo,
        path: String,
        creating: HashSet<String>,
        failures: Vec<String>,
    },
    Free {
        from: ReplyTo,
        id: String,
    },
    /// A standby being assigned to module `id`.
    Standby {
        id: String,
    },
    /// A spare taking over module `id`, whose primary died without a ready standby;
    /// `fresh`: from a new state, after a crash loop.
    Replace {
        id: String,
        fresh: bool,
    },
    Sync {
        from: ReplyTo,
        sync_id: i32,
        waiting: HashSet<u64>,
    },
    Status {
        from: ReplyTo,
        waiting: HashSet<u64>,
    },
}

/// Workers started at once. jackd serializes client opens anyway, and a burst of
/// simultaneous opens makes jackd2 refuse some of them (seen: 6 of 8 failed with
/// SERVER_FAILED when eight release-built workers opened together).
pub const MAX_CONCURRENT_SPAWNS: usize = 2;

/// How long a refill waits after a create took a spare. A new worker's start
/// (client open, port registrations: each a latency pass over every client on
/// jackd2) competes with creates for jackd; waiting lets a burst of creates (a set
/// being loaded, a performer patching) finish first, and a module freed meanwhile
/// refills the pool for free. A create that finds the pool empty does not wait.
pub const REFILL_DELAY: Duration = Duration::from_millis(250);

/// Freed workers are kept as spares while fewer than this many times the pool size
/// are ready; only beyond that are they retired.
pub const MAX_SPARES_FACTOR: usize = 2;

/// Spawn failures in a row after which the pool stops refilling by itself (a broken
/// installation must not spin); any successful spawn resets the count.
pub const MAX_SPAWN_FAILURES_IN_A_ROW: u32 = 3;

/// Periods a primary may fall behind the server's cycles without publishing its
/// state before the supervisor kills it as hung (SIGSTOPped, looping, zombified by
/// jackd). Twice the standby's own limit: a standby normally notices first and takes
/// over; this catches modules without a standby, and standbys that missed it.
pub const HANG_PERIODS: u32 = 32;

/// How often the heartbeats are checked.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_millis(50);

/// A primary's first moments are not judged: its first period as the owner may take
/// as long as an assignment.
const HEARTBEAT_GRACE: Duration = Duration::from_millis(500);

/// Start-up settings the core needs.
#[derive(Debug, Clone)]
pub struct Config {
    /// Spares to keep ready.
    pub pool: usize,
    /// Instance name: prefix of the shared-memory segments.
    pub instance: String,
    /// When a module's deaths are a crash loop.
    pub restart: RestartPolicy,
}

/// The supervisor's state.
pub struct Core {
    config: Config,
    workers: HashMap<WorkerId, Worker>,
    /// Spares in the order they became ready (oldest first).
    ready: VecDeque<WorkerId>,
    /// Workers being started.
    starting: HashSet<WorkerId>,
    next_worker: WorkerId,
    modules: BTreeMap<String, Module>,
    /// Creates waiting for a spare (the pool was empty).
    waiting: VecDeque<(Origin, Request, Instant)>,
    /// Modules waiting for a spare to become their standby.
    needs_standby: std::collections::BTreeSet<String>,
    /// Modules without a primary waiting for a spare to take them over (`true`:
    /// from a fresh state).
    needs_replacement: BTreeMap<String, bool>,
    /// Connections to keep: made now if both ports exist, else as soon as they do,
    /// and again whenever a port comes back (a program restarted). Module ports are
    /// kept as `module:port`.
    wanted: std::collections::BTreeSet<Connection>,
    pending: HashMap<u64, Pending>,
    /// token sent to a worker -> (the pending request it belongs to, that worker), for
    /// Sync and Status, which wait for an answer from several workers.
    fan_out: HashMap<u64, (u64, WorkerId)>,
    next_token: u64,
    subscribers: HashSet<ReplyTo>,
    counters: Counters,
    spawn_failures_in_a_row: u32,
    /// A refill is due at this time (see [`REFILL_DELAY`]).
    refill_after: Option<Instant>,
    /// When the heartbeats are checked next.
    next_heartbeat: Option<Instant>,
    /// Workers killed as hung whose death has not arrived yet.
    killed_as_hung: HashSet<WorkerId>,
    shutting_down: bool,
}

impl Core {
    pub fn new(config: Config) -> Core {
        Core {
            config,
            workers: HashMap::new(),
            ready: VecDeque::new(),
            starting: HashSet::new(),
            next_worker: 0,
            modules: BTreeMap::new(),
            waiting: VecDeque::new(),
            wanted: Default::default(),
            needs_standby: Default::default(),
            needs_replacement: Default::default(),
            pending: HashMap::new(),
            fan_out: HashMap::new(),
            next_token: 1,
            subscribers: HashSet::new(),
            counters: Counters::default(),
            spawn_failures_in_a_row: 0,
            refill_after: None,
            next_heartbeat: None,
            killed_as_hung: HashSet::new(),
            shutting_down: false,
        }
    }

    /// Starts filling the pool.
    pub fn start(&mut self, fx: &mut impl Effects) {
        self.refill(fx);
    }

    /// Spares ready now.
    pub fn spares_ready(&self) -> usize {
        self.ready.len()
    }

    /// Whether every worker has been told to stop.
    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down
    }

    /// Workers still alive or starting.
    pub fn worker_count(&self) -> usize {
        self.workers.len() + self.starting.len()
    }

    /// After a shutdown: every worker is gone.
    pub fn is_stopped(&self) -> bool {
        self.shutting_down && self.workers.is_empty() && self.starting.is_empty()
    }

    /// Kills every worker still there (shutdown took too long).
    pub fn kill_all(&mut self, fx: &mut impl Effects) {
        for w in self.workers.values() {
            fx.kill(&w.link);
        }
    }

    /// Handles one event.
    pub fn handle(&mut self, event: Event, fx: &mut impl Effects) {
        match event {
            Event::Osc {
                from,
                request,
                received,
                at,
            } => match request {
                Ok(request) => self.request(from, request, received, at, fx),
                Err(fail) => fx.reply(from, fail.to_message()),
            },
            Event::Spawned(new) => self.spawned(new, fx),
            Event::SpawnFailed { id, reason } => {
                tracing::error!("worker w{id:02} did not start: {reason}");
                self.starting.remove(&id);
                self.counters.spawn_failures += 1;
                self.spawn_failures_in_a_row += 1;
                self.refill(fx);
                if self.ready.is_empty() && self.starting.is_empty() {
                    let waiting: Vec<_> = self.waiting.drain(..).collect();
                    for (from, request, _) in waiting {
                        if let Request::New { id, .. } = request {
                            self.create_failed(
                                from,
                                &id,
                                &format!("no worker could be started: {reason}"),
                                fx,
                            );
                        }
                    }
                }
            }
            Event::FromWorker(id, msg) => self.worker_said(id, msg, fx),
            Event::WorkerGone(id) => self.worker_gone(id, fx),
            Event::PortsAppeared => self.make_wanted_connections(fx),
            Event::PortsConnected { a, b, connected } => {
                self.mirror_connection(a, b, connected, fx)
            }
            Event::Shutdown => {
                self.shutting_down = true;
                for m in self.modules.values().filter(|m| !m.quarantined) {
                    fx.unlink_state(&m.state);
                }
                self.stop_next_workers(fx);
            }
        }
    }

    fn request(
        &mut self,
        from: ReplyTo,
        request: Request,
        received: u32,
        at: Option<u32>,
        fx: &mut impl Effects,
    ) {
        if self.shutting_down {
            fx.reply(
                from,
                Fail::new("/", "modsynthd is shutting down").to_message(),
            );
            return;
        }
        match request {
            Request::New { .. } => self.create(Origin::Client(from), request, fx.now(), fx),
            Request::Free { id } => self.free(from, id, fx),
            Request::Set { id, param, value } => {
                self.set(from, &id, &param, &value, received, at, fx)
            }
            Request::Get { id, param } => self.get(from, &id, &param, fx),
            Request::Connect { src, dst } => self.patch(from, true, &src, &dst, fx),
            Request::Disconnect { src, dst } => self.patch(from, false, &src, &dst, fx),
            Request::LoadSet { path, replace } => self.load_set(from, &path, replace, fx),
            Request::SaveSet { path } => self.save_set(from, &path, fx),
            Request::Status => self.status(from, fx),
            Request::Notify { on } => {
                if on {
                    self.subscribers.insert(from);
                } else {
                    self.subscribers.remove(&from);
                }
                fx.reply(from, osc::done("/notify", vec![OscType::Int(on as i32)]));
            }
            Request::Sync { id } => self.sync(from, id, fx),
        }
    }

    fn token(&mut self) -> u64 {
        self.next_token += 1;
        self.next_token
    }

    fn create(&mut self, from: Origin, request: Request, started: Instant, fx: &mut impl Effects) {
        let Request::New {
            spec,
            id,
            params,
            standby,
        } = request
        else {
            return;
        };
        if self.modules.contains_key(&id) || self.is_waiting(&id) {
            self.create_failed(from, &id, &format!("a module '{id}' exists already"), fx);
            return;
        }
        let Some(wid) = self.ready.pop_front() else {
            // An empty pool makes the create wait for the next spare, never fail.
            tracing::info!("pool empty: /module/new {id} waits for a spare");
            self.waiting.push_back((
                from,
                Request::New {
                    spec,
                    id,
                    params,
                    standby,
                },
                started,
            ));
            // After repeated failures the pool stopped refilling; a user's request is
            // worth one more try (and fails with the reason if that fails too).
            self.spawn_failures_in_a_row = self
                .spawn_failures_in_a_row
                .min(MAX_SPAWN_FAILURES_IN_A_ROW - 1);
            self.refill(fx);
            return;
        };
        let cold = fx.now().duration_since(started) > Duration::from_millis(1);
        let token = self.token();
        let mut values = spec.defaults();
        for &(i, v) in &params {
            values[i] = v;
        }
        // Every module's state lives in shared memory, with or without a standby: a
        // replacement (a standby, or a spare after a crash) continues from it.
        let state = format!("/{}-{id}-state", self.config.instance);
        let assign = ToWorker::Assign {
            token,
            id: id.clone(),
            module_type: spec.name.to_string(),
            params: params.iter().map(|&(i, v)| (i as u16, v)).collect(),
            role: WorkerRole::Primary,
            state: state.clone(),
        };
        let worker = self.workers.get_mut(&wid).expect("ready workers are known");
        worker.role = Role::Primary(id.clone());
        self.modules.insert(
            id.clone(),
            Module {
                spec,
                worker: wid,
                params: values,
                ports: Vec::new(),
                standby,
                state,
                standby_worker: None,
                standby_ports: Vec::new(),
                links: Default::default(),
                history: CrashHistory::default(),
                quarantined: false,
                recovering_since: None,
                degraded_since: None,
                playing_since: None,
            },
        );
        self.pending.insert(
            token,
            Pending::Create {
                from,
                id,
                started,
                cold,
            },
        );
        let link = &self.workers[&wid].link;
        if !fx.send(link, assign) {
            // Its death arrives as WorkerGone, which fails the create.
            tracing::warn!("worker {} is gone before its assignment", link.client);
        }
        self.refill_soon(fx.now());
    }

    fn is_waiting(&self, id: &str) -> bool {
        self.waiting
            .iter()
            .any(|(_, r, _)| matches!(r, Request::New { id: w, .. } if w == id))
    }

    fn free(&mut self, from: ReplyTo, id: String, fx: &mut impl Effects) {
        let Some(module) = self.modules.remove(&id) else {
            fx.reply(
                from,
                fail("/module/free", &id, &format!("no module '{id}'")),
            );
            return;
        };
        match self.release_module(&id, module, fx) {
            Some(token) => {
                self.pending.insert(token, Pending::Free { from, id });
            }
            None => fx.reply(from, osc::done("/module/free", vec![osc::text(&id)])),
        }
    }

    /// Lets go of a module that was removed from `modules`: its connections are no
    /// longer wanted, its primary and standby are freed (back to the pool), and its
    /// state segment is unlinked. Returns the token of the primary's Free.
    fn release_module(&mut self, id: &str, module: Module, fx: &mut impl Effects) -> Option<u64> {
        let prefix = format!("{id}:");
        self.wanted
            .retain(|c| !c.from.starts_with(&prefix) && !c.to.starts_with(&prefix));
        self.needs_standby.remove(id);
        if let Some(standby) = module.standby_worker {
            self.free_worker(standby, fx);
        }
        self.needs_replacement.remove(id);
        if !module.quarantined {
            fx.unlink_state(&module.state);
        }
        self.free_worker(module.worker, fx)
    }

    /// Tells a worker to stop playing its module; it becomes a spare (or retires)
    /// when it answers. Returns the token of that answer.
    fn free_worker(&mut self, wid: WorkerId, fx: &mut impl Effects) -> Option<u64> {
        let token = self.token();
        let worker = self.workers.get_mut(&wid)?;
        worker.role = Role::Freeing;
        fx.send(&worker.link, ToWorker::Free { token });
        Some(token)
    }

    fn module(&self, address: &str, id: &str) -> Result<&Module, OscMessage> {
        self.modules
            .get(id)
            .ok_or_else(|| Fail::new(address, format!("no module '{id}'")).to_message())
    }

    #[allow(clippy::too_many_arguments)]
    fn set(
        &mut self,
        from: ReplyTo,
        id: &str,
        name: &str,
        value: &Arg,
        received: u32,
        at: Option<u32>,
        fx: &mut impl Effects,
    ) {
        let module = match self.module("/module/set", id) {
            Ok(m) => m,
            Err(reply) => return fx.reply(from, reply),
        };
        let (index, value) = match param::validate(module.spec, name, value.as_value()) {
            Ok(v) => v,
            Err(e) => return fx.reply(from, Fail::new("/module/set", e.to_string()).to_message()),
        };
        let wid = module.worker;
        if let Some(m) = self.modules.get_mut(id) {
            m.params[index] = value;
        }
        if let Some(worker) = self.workers.get(&wid) {
            fx.send(
                &worker.link,
                ToWorker::SetParam {
                    index: index as u16,
                    value,
                    at,
                    received,
                },
            );
        }
    }

    fn get(&mut self, from: ReplyTo, id: &str, name: &str, fx: &mut impl Effects) {
        let module = match self.module("/module/get", id) {
            Ok(m) => m,
            Err(reply) => return fx.reply(from, reply),
        };
        let Some(index) = module.spec.param_index(name) else {
            let e = param::ParamError::UnknownParam {
                module: module.spec.name,
                param: name.to_string(),
            };
            return fx.reply(from, Fail::new("/module/get", e.to_string()).to_message());
        };
        let spec = &module.spec.params[index];
        let value = module.params[index];
        let value = if spec.is_enum() {
            osc::text(spec.values[value as usize])
        } else {
            OscType::Float(value)
        };
        fx.reply(
            from,
            osc::message("/module/value", vec![osc::text(id), osc::text(name), value]),
        );
    }

    /// `vco1:out` -> the worker's real port name; any other name passes through.
    fn resolve_port(&self, name: &str) -> Result<String, String> {
        let (client, port) = name
            .split_once(':')
            .ok_or_else(|| format!("'{name}' is not a port name"))?;
        match self.modules.get(client) {
            Some(m) => {
                let (i, _) = m.spec.port_of(client, port)?;
                m.ports.get(i).cloned().ok_or_else(|| {
                    if m.quarantined {
                        format!("{client} is quarantined (it kept crashing): free it or create it again")
                    } else if m.recovering_since.is_some() {
                        format!("{client} is being taken over by a new worker: try again in a moment")
                    } else {
                        format!("{client} is still being created")
                    }
                })
            }
            None => Ok(name.to_string()),
        }
    }

    fn patch(&mut self, from: ReplyTo, connect: bool, src: &str, dst: &str, fx: &mut impl Effects) {
        let address = if connect {
            "/patch/connect"
        } else {
            "/patch/disconnect"
        };
        let resolved = self
            .resolve_port(src)
            .and_then(|s| self.resolve_port(dst).map(|d| (s, d)));
        let result = resolved.and_then(|(s, d)| {
            for (given, real) in [(src, &s), (dst, &d)] {
                if !fx.port_exists(real) {
                    return Err(format!(
                        "no port '{given}' (modules: `modsynth ls`, JACK ports: `jack_lsp`)"
                    ));
                }
            }
            fx.patch(connect, &s, &d)?;
            // The same on the standbys' ports, so a standby that takes over is
            // already patched (best effort: the primary's result is the answer).
            for (s2, d2) in self.standby_pairs(src, dst) {
                if let Err(e) = fx.patch(connect, &s2, &d2) {
                    tracing::warn!("standby mirror: {e}");
                }
            }
            Ok(())
        });
        match result {
            Ok(()) => {
                let c = Connection {
                    from: src.to_string(),
                    to: dst.to_string(),
                };
                if connect {
                    self.wanted.insert(c);
                } else {
                    self.wanted.remove(&c);
                }
                fx.reply(
                    from,
                    osc::done(address, vec![osc::text(src), osc::text(dst)]),
                )
            }
            Err(e) => fx.reply(from, Fail::new(address, e).to_message()),
        }
    }

    /// Makes every wanted connection whose two ports exist now. Already-connected
    /// pairs are skipped, so this is cheap to call on every graph change.
    fn make_wanted_connections(&mut self, fx: &mut impl Effects) {
        for c in self.wanted.clone() {
            let (Ok(src), Ok(dst)) = (self.resolve_port(&c.from), self.resolve_port(&c.to)) else {
                continue;
            };
            let pairs = std::iter::once((src, dst)).chain(self.standby_pairs(&c.from, &c.to));
            for (src, dst) in pairs {
                if fx.port_exists(&src)
                    && fx.port_exists(&dst)
                    && !fx.connections(&src).contains(&dst)
                {
                    match fx.patch(true, &src, &dst) {
                        Ok(()) => {
                            tracing::info!("connected {src} -> {dst} ({} -> {})", c.from, c.to)
                        }
                        Err(e) => tracing::warn!("pending connection {} -> {}: {e}", c.from, c.to),
                    }
                }
            }
        }
    }

    /// A connection changed in the JACK graph (qjackctl, jack_connect, anyone): if
    /// one end is a primary's port, the same change is made on its standby's port,
    /// so hand-made patches survive a failover.
    fn mirror_connection(&mut self, a: u32, b: u32, connected: bool, fx: &mut impl Effects) {
        if self.shutting_down {
            return; // workers closing disconnect everything: nothing to keep
        }
        let (Some(na), Some(nb)) = (fx.port_name(a), fx.port_name(b)) else {
            return;
        };
        self.record_link(&na, &nb, connected, fx);
        let mut changes = Vec::new();
        for m in self.modules.values() {
            for (here, other) in [(&na, &nb), (&nb, &na)] {
                let Some(i) = m.ports.iter().position(|p| p == here) else {
                    continue;
                };
                let (Some(standby), Some(spec)) = (m.standby_ports.get(i), m.spec.ports.get(i))
                else {
                    continue;
                };
                if m.standby_ports.contains(other) {
                    continue; // primary <-> its own standby: never mirrored
                }
                // A dying primary's ports are disconnected by JACK when it removes the
                // client; only a disconnection of a port that still exists was made
                // by someone, and is mirrored.
                if !connected && !fx.port_exists(here) {
                    continue;
                }
                changes.push(match spec.direction {
                    catalog::Direction::Out => (standby.clone(), other.clone()),
                    catalog::Direction::In => (other.clone(), standby.clone()),
                });
            }
        }
        for (src, dst) in changes {
            let already = fx.connections(&src).contains(&dst);
            if already != connected {
                if let Err(e) = fx.patch(connected, &src, &dst) {
                    tracing::warn!("mirroring onto a standby: {e}");
                }
            }
        }
    }

    /// Keeps each module's record of its primary's connections (see `Module::links`)
    /// up to date with a change in the JACK graph. When a worker dies JACK drops its
    /// connections: such disconnections (one end gone) are not forgotten.
    fn record_link(&mut self, na: &str, nb: &str, connected: bool, fx: &mut impl Effects) {
        if !(connected || fx.port_exists(na) && fx.port_exists(nb)) {
            return;
        }
        let is_standby_port = |name: &str| {
            self.modules
                .values()
                .any(|m| m.standby_ports.iter().any(|p| p == name))
        };
        if is_standby_port(na) || is_standby_port(nb) {
            return; // mirrors, not the patch
        }
        let mut changes = Vec::new();
        for (id, m) in &self.modules {
            for (here, other) in [(na, nb), (nb, na)] {
                if let Some(i) = m.ports.iter().position(|p| p == here) {
                    changes.push((id.clone(), i, self.module_port_name(other)));
                }
            }
        }
        for (id, i, other) in changes {
            if let Some(m) = self.modules.get_mut(&id) {
                if connected {
                    m.links.insert((i, other));
                } else {
                    m.links.remove(&(i, other));
                }
            }
        }
    }

    /// `vcf1:in` for a module primary's real port name; any other name as it is.
    fn module_port_name(&self, real: &str) -> String {
        for (id, m) in &self.modules {
            if let Some(i) = m.ports.iter().position(|p| p == real) {
                if let Some(spec) = m.spec.ports.get(i) {
                    return format!("{id}:{}", spec.name);
                }
            }
        }
        real.to_string()
    }

    /// Every real port a name stands for: the primary's and, once it has one, the
    /// standby's (any other JACK name stands for itself).
    fn all_real_ports(&self, name: &str) -> Vec<String> {
        let mut out: Vec<String> = self.resolve_port(name).into_iter().collect();
        if let Some((client, port)) = name.split_once(':') {
            if let Some(m) = self.modules.get(client) {
                if let Ok((i, _)) = m.spec.port_of(client, port) {
                    out.extend(m.standby_ports.get(i).cloned());
                }
            }
        }
        out
    }

    /// The connections that mirror `src -> dst` onto standbys: every pairing of the
    /// two ends' real ports except primary -> primary. A standby must hear what its
    /// primary hears, and its output must already reach where the primary's does.
    fn standby_pairs(&self, src: &str, dst: &str) -> Vec<(String, String)> {
        let (srcs, dsts) = (self.all_real_ports(src), self.all_real_ports(dst));
        let mut pairs = Vec::new();
        for (i, s) in srcs.iter().enumerate() {
            for (j, d) in dsts.iter().enumerate() {
                if i > 0 || j > 0 {
                    pairs.push((s.clone(), d.clone()));
                }
            }
        }
        pairs
    }

    /// Answers a failed create, to a client or to the set load it belongs to.
    fn create_failed(&mut self, from: Origin, id: &str, reason: &str, fx: &mut impl Effects) {
        match from {
            Origin::Client(to) => fx.reply(to, fail("/module/new", id, reason)),
            Origin::Load(token) => self.load_progress(token, id, Some(reason), fx),
        }
    }

    /// `/set/load`: checks the whole file, then applies it as a diff against what
    /// runs: new modules are created, existing ones get the file's parameter values,
    /// connections are made (or kept pending until their ports exist).
    fn load_set(&mut self, from: ReplyTo, path: &str, replace: bool, fx: &mut impl Effects) {
        let set = match fx
            .read_file(path)
            .and_then(|text| setfile::parse(path, &text).map_err(|e| e.to_string()))
        {
            Ok(set) => set,
            Err(e) => return fx.reply(from, Fail::new("/set/load", e).to_message()),
        };
        // A module of the same id but another type cannot be changed into it: refuse
        // before doing anything, so a bad file changes nothing.
        for m in &set.modules {
            if let Some(running) = self.modules.get(&m.id) {
                if running.spec.name != m.spec.name && !replace {
                    let reason = format!("{path}: module '{}' runs as a {} but the set has a {} (load with replace to swap it)", m.id, running.spec.name, m.spec.name);
                    return fx.reply(from, Fail::new("/set/load", reason).to_message());
                }
            }
        }
        let in_set: HashSet<&str> = set.modules.iter().map(|m| m.id.as_str()).collect();
        let stale: Vec<String> = self
            .modules
            .iter()
            .filter(|(id, m)| {
                let other_type = set
                    .modules
                    .iter()
                    .any(|s| &s.id == *id && s.spec.name != m.spec.name);
                (replace && !in_set.contains(id.as_str())) || other_type
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in stale {
            self.free_quietly(&id, fx);
        }
        let token = self.token();
        let mut creating = HashSet::new();
        for m in &set.modules {
            if self.modules.contains_key(&m.id) {
                for &(index, value) in &m.params {
                    let spec = &m.spec.params[index];
                    let arg = if spec.is_enum() {
                        Arg::Text(spec.values[value as usize].to_string())
                    } else {
                        Arg::Float(value)
                    };
                    self.set(from, &m.id, spec.name, &arg, 0, None, fx);
                }
            } else {
                creating.insert(m.id.clone());
            }
        }
        for c in &set.connections {
            self.wanted.insert(Connection {
                from: c.from.clone(),
                to: c.to.clone(),
            });
        }
        self.pending.insert(
            token,
            Pending::Load {
                from,
                path: path.to_string(),
                creating: creating.clone(),
                failures: Vec::new(),
            },
        );
        for m in set.modules.into_iter().filter(|m| creating.contains(&m.id)) {
            let request = Request::New {
                spec: m.spec,
                id: m.id,
                params: m.params,
                standby: m.standby,
            };
            self.create(Origin::Load(token), request, fx.now(), fx);
        }
        self.make_wanted_connections(fx);
        self.load_progress(token, "", None, fx);
    }

    /// One create of a set load finished (`id` empty: just check for completion).
    fn load_progress(
        &mut self,
        token: u64,
        id: &str,
        failure: Option<&str>,
        fx: &mut impl Effects,
    ) {
        let Some(Pending::Load {
            creating, failures, ..
        }) = self.pending.get_mut(&token)
        else {
            return;
        };
        creating.remove(id);
        if let Some(reason) = failure {
            failures.push(format!("{id}: {reason}"));
        }
        if !creating.is_empty() {
            return;
        }
        if let Some(Pending::Load {
            from,
            path,
            failures,
            ..
        }) = self.pending.remove(&token)
        {
            self.make_wanted_connections(fx);
            if failures.is_empty() {
                fx.reply(from, osc::done("/set/load", vec![osc::text(&path)]));
            } else {
                fx.reply(
                    from,
                    Fail::new("/set/load", format!("{path}: {}", failures.join("; "))).to_message(),
                );
            }
        }
    }

    /// Frees a module with no one to answer (a set load replacing it).
    fn free_quietly(&mut self, id: &str, fx: &mut impl Effects) {
        if let Some(module) = self.modules.remove(id) {
            self.release_module(id, module, fx);
        }
    }

    /// `/set/save`: every module with its current parameters, and every connection
    /// that touches a module, whoever made it (qjackctl, jack_connect, modsynth), plus
    /// connections still waiting for their ports.
    fn save_set(&mut self, from: ReplyTo, path: &str, fx: &mut impl Effects) {
        let set = self.current_set(fx);
        match fx.write_file(path, &set.to_toml()) {
            Ok(()) => fx.reply(from, osc::done("/set/save", vec![osc::text(path)])),
            Err(e) => fx.reply(from, Fail::new("/set/save", e).to_message()),
        }
    }

    /// The running patch as a set.
    pub fn current_set(&self, fx: &mut impl Effects) -> setfile::SetFile {
        // Real port name -> module:port, to write module names, not worker names.
        let mut by_real: HashMap<String, String> = HashMap::new();
        for (id, m) in &self.modules {
            for (real, spec) in m.ports.iter().zip(m.spec.ports) {
                by_real.insert(real.clone(), format!("{id}:{}", spec.name));
            }
        }
        let mut connections: std::collections::BTreeSet<Connection> = self.wanted.clone();
        for (id, m) in &self.modules {
            for (real, spec) in m.ports.iter().zip(m.spec.ports) {
                let here = format!("{id}:{}", spec.name);
                for other in fx.connections(real) {
                    let other = by_real.get(&other).cloned().unwrap_or(other);
                    let c = match spec.direction {
                        catalog::Direction::Out => Connection {
                            from: here.clone(),
                            to: other,
                        },
                        catalog::Direction::In => Connection {
                            from: other,
                            to: here.clone(),
                        },
                    };
                    connections.insert(c);
                }
            }
        }
        let modules = self
            .modules
            .iter()
            .map(|(id, m)| setfile::SetModule {
                id: id.clone(),
                spec: m.spec,
                params: (0..m.spec.params.len()).map(|i| (i, m.params[i])).collect(),
                standby: m.standby,
            })
            .collect();
        setfile::SetFile {
            jack: Default::default(),
            modules,
            connections: connections.into_iter().collect(),
        }
    }

    fn playing_workers(&self) -> Vec<WorkerId> {
        let mut ids: Vec<WorkerId> = self.modules.values().map(|m| m.worker).collect();
        ids.sort_unstable();
        ids
    }

    fn sync(&mut self, from: ReplyTo, sync_id: i32, fx: &mut impl Effects) {
        let request_token = self.token();
        let mut waiting = HashSet::new();
        for wid in self.playing_workers() {
            let token = self.token();
            if let Some(w) = self.workers.get(&wid) {
                if fx.send(&w.link, ToWorker::Sync { token }) {
                    waiting.insert(token);
                    self.fan_out.insert(token, (request_token, wid));
                }
            }
        }
        self.pending.insert(
            request_token,
            Pending::Sync {
                from,
                sync_id,
                waiting,
            },
        );
        self.settle(request_token, fx);
    }

    fn status(&mut self, from: ReplyTo, fx: &mut impl Effects) {
        let request_token = self.token();
        let mut waiting = HashSet::new();
        // Workers on their way out would answer nothing; ask the ones that serve.
        let mut ids: Vec<WorkerId> = self
            .workers
            .iter()
            .filter(|(_, w)| matches!(w.role, Role::Spare | Role::Primary(_) | Role::Freeing))
            .map(|(&id, _)| id)
            .collect();
        ids.sort_unstable();
        for wid in ids {
            let token = self.token();
            if fx.send(&self.workers[&wid].link, ToWorker::Report { token }) {
                waiting.insert(token);
                self.fan_out.insert(token, (request_token, wid));
            }
        }
        self.pending
            .insert(request_token, Pending::Status { from, waiting });
        self.settle(request_token, fx);
    }

    /// Answers a fanned-out request once nothing is outstanding.
    fn settle(&mut self, request_token: u64, fx: &mut impl Effects) {
        let done = match self.pending.get(&request_token) {
            Some(Pending::Sync { waiting, .. }) | Some(Pending::Status { waiting, .. }) => {
                waiting.is_empty()
            }
            _ => false,
        };
        if !done {
            return;
        }
        match self.pending.remove(&request_token) {
            Some(Pending::Sync { from, sync_id, .. }) => {
                fx.reply(from, osc::message("/synced", vec![OscType::Int(sync_id)]));
            }
            Some(Pending::Status { from, .. }) => {
                let json = serde_json::to_string(&self.status_report()).unwrap_or_default();
                fx.reply(from, osc::message("/status.reply", vec![osc::text(&json)]));
            }
            _ => {}
        }
    }

    /// What the shared-memory registry should say now: the state segment of every
    /// module, owned by the worker playing it, and every worker with its role. The
    /// runtime writes it to `registry.json` whenever it changes.
    pub fn registry_view(&self) -> RegistryView {
        let segments = self
            .modules
            .iter()
            .filter(|(_, m)| !m.state.is_empty() && !m.quarantined)
            .map(|(id, m)| RegisteredSegment {
                module: id.clone(),
                segment: m.state.clone(),
                owner_pid: self.workers.get(&m.worker).map_or(0, |w| w.link.pid),
            })
            .collect();
        let mut workers: Vec<RegisteredWorker> = self
            .workers
            .values()
            .filter_map(|w| {
                let (role, module) = match &w.role {
                    Role::Spare => (RegisteredRole::Spare, None),
                    Role::Primary(id) => (RegisteredRole::Primary, Some(id.clone())),
                    Role::Standby(id) => (RegisteredRole::Standby, Some(id.clone())),
                    Role::Freeing | Role::Retiring | Role::Stopping => return None,
                };
                Some(RegisteredWorker {
                    pid: w.link.pid,
                    jack_client: w.link.client.clone(),
                    role,
                    module,
                })
            })
            .collect();
        workers.sort_by_key(|w| w.pid);
        RegistryView { segments, workers }
    }

    /// Everything `/status` reports.
    pub fn status_report(&self) -> StatusReport {
        let modules = self
            .modules
            .iter()
            .map(|(id, m)| {
                let w = self.workers.get(&m.worker);
                let r = w.and_then(|w| w.last_report.clone()).unwrap_or_default();
                let standby = m
                    .standby_worker
                    .filter(|_| !m.standby_ports.is_empty())
                    .and_then(|s| self.workers.get(&s));
                ModuleStatus {
                    id: id.clone(),
                    module_type: m.spec.name.to_string(),
                    role: if m.quarantined {
                        "quarantined"
                    } else if m.recovering_since.is_some() && w.is_none() {
                        "recovering"
                    } else {
                        "primary"
                    }
                    .into(),
                    pid: w.map_or(0, |w| w.link.pid),
                    jack_client: w.map_or_else(String::new, |w| w.link.client.clone()),
                    standby_client: standby.map_or_else(String::new, |s| s.link.client.clone()),
                    standby_pid: standby.map_or(0, |s| s.link.pid),
                    standby: matches!(m.standby, Standby::Hot),
                    params_received: r.params_received,
                    params_applied: r.params_applied,
                    latency_samples: [r.latency_p50, r.latency_p95, r.latency_p99],
                    xruns: r.xruns,
                    dsp_load: r.dsp_load,
                    cpu_percent: r.cpu_percent,
                    rss_kib: r.rss_kib,
                }
            })
            .collect();
        StatusReport {
            pool_size: self.config.pool,
            spare_ready: self.ready.len(),
            workers: self.workers.len(),
            modules,
            counters: self.counters.clone(),
        }
    }

    fn spawned(&mut self, new: NewWorker, fx: &mut impl Effects) {
        self.starting.remove(&new.id);
        self.spawn_failures_in_a_row = 0;
        self.counters
            .spawn_time_ms
            .record(new.spawn_time.as_secs_f64() * 1e3);
        let link = WorkerLink {
            id: new.id,
            pid: new.pid,
            client: new.client,
            commands: new.commands,
        };
        if self.shutting_down {
            self.workers.insert(
                new.id,
                Worker {
                    link,
                    role: Role::Spare,
                    last_report: None,
                },
            );
            self.stop_next_workers(fx);
            return;
        }
        self.workers.insert(
            new.id,
            Worker {
                link,
                role: Role::Spare,
                last_report: None,
            },
        );
        self.ready.push_back(new.id);
        self.notify(
            fx,
            osc::message("/pool/spare", vec![OscType::Int(self.ready.len() as i32)]),
        );
        // A module that lost its primary goes first, then a create that waited for
        // this spare, then a module without its standby.
        if let Some((id, fresh)) = self.needs_replacement.pop_first() {
            self.replace(&id, fresh, fx);
        } else if let Some((from, request, started)) = self.waiting.pop_front() {
            self.counters.cold_creates += 1;
            self.create(from, request, started, fx);
        } else if let Some(id) = self.needs_standby.pop_first() {
            self.add_standby(&id, fx);
        }
        self.refill(fx);
    }

    fn worker_said(&mut self, wid: WorkerId, msg: FromWorker, fx: &mut impl Effects) {
        match msg {
            FromWorker::Hello { .. } => {}
            FromWorker::Assigned { token, result } => {
                let (from, id, started, cold) = match self.pending.remove(&token) {
                    Some(Pending::Create {
                        from,
                        id,
                        started,
                        cold,
                    }) => (from, id, started, cold),
                    Some(Pending::Standby { id }) => {
                        return self.standby_assigned(wid, &id, result, fx)
                    }
                    Some(Pending::Replace { id, fresh }) => {
                        return self.replaced(wid, &id, fresh, result, fx)
                    }
                    _ => return,
                };
                match result {
                    Ok(ports) => {
                        let mut wants_standby = false;
                        let now = fx.now();
                        if let Some(m) = self.modules.get_mut(&id) {
                            m.ports = ports;
                            m.playing_since = Some(now);
                            wants_standby = m.standby == Standby::Hot;
                        }
                        if wants_standby {
                            self.add_standby(&id, fx);
                        }
                        let ms = fx.now().duration_since(started).as_secs_f64() * 1e3;
                        self.counters.creates += 1;
                        if !cold {
                            self.counters.create_time_ms.record(ms);
                        }
                        self.notify(fx, osc::message("/module/ready", vec![osc::text(&id)]));
                        self.make_wanted_connections(fx);
                        match from {
                            Origin::Client(to) => {
                                fx.reply(to, osc::done("/module/new", vec![osc::text(&id)]))
                            }
                            Origin::Load(token) => self.load_progress(token, &id, None, fx),
                        }
                    }
                    Err(reason) => {
                        self.modules.remove(&id);
                        self.create_failed(from, &id, &reason, fx);
                        // A worker that failed an assignment is not trusted again.
                        self.retire(wid, fx);
                        self.refill(fx);
                    }
                }
            }
            FromWorker::TookOver { gap_frames } => {
                let id = self
                    .modules
                    .iter()
                    .find(|(_, m)| m.worker == wid)
                    .map(|(id, _)| id.clone());
                if let Some(id) = id {
                    self.finish_recovery(&id, gap_frames, fx);
                }
            }
            FromWorker::Promoted if self.shutting_down => {}
            FromWorker::Promoted => {
                // The standby took over: its primary died (its WorkerGone may still be
                // on the way) or hung. Killing it is harmless in the first case and
                // needed in the second; its death then fails the module over.
                let hung = self
                    .modules
                    .values()
                    .find(|m| m.standby_worker == Some(wid))
                    .map(|m| m.worker);
                if let Some(primary) = hung.and_then(|p| self.workers.get(&p)) {
                    tracing::info!(
                        "standby took over from {}: making sure it is gone (dead or hung)",
                        primary.link.client
                    );
                    fx.kill(&primary.link);
                }
            }
            FromWorker::Freed { token } => {
                if let Some(Pending::Free { from, id }) = self.pending.remove(&token) {
                    fx.reply(from, osc::done("/module/free", vec![osc::text(&id)]));
                }
                // Surplus spares are kept up to twice the pool: retiring one closes a
                // JACK client, which on jackd2 is a synchronous notification to every
                // client and slowed creates running at the same time (measured).
                if self.ready.len() < MAX_SPARES_FACTOR * self.config.pool && !self.shutting_down {
                    self.make_spare(wid);
                } else {
                    self.retire(wid, fx);
                }
            }
            FromWorker::Synced { token } | FromWorker::Report { token, .. }
                if !self.fan_out.contains_key(&token) => {}
            FromWorker::Synced { token } => self.answered(token, fx),
            FromWorker::Report { token, report } => {
                if let Some(w) = self.workers.get_mut(&wid) {
                    w.last_report = Some(report);
                }
                self.answered(token, fx);
            }
        }
    }

    fn answered(&mut self, token: u64, fx: &mut impl Effects) {
        let Some((request_token, _)) = self.fan_out.remove(&token) else {
            return;
        };
        match self.pending.get_mut(&request_token) {
            Some(Pending::Sync { waiting, .. }) | Some(Pending::Status { waiting, .. }) => {
                waiting.remove(&token);
            }
            _ => {}
        }
        self.settle(request_token, fx);
    }

    fn worker_gone(&mut self, wid: WorkerId, fx: &mut impl Effects) {
        self.handle_departure(wid, fx);
        // Sync and status requests stop waiting for answers this worker owed, however
        // it left; only now, so that a status answered here sees the state after the
        // departure was dealt with (a failover done, not half done).
        let owed: Vec<u64> = self
            .fan_out
            .iter()
            .filter(|(_, &(_, w))| w == wid)
            .map(|(&t, _)| t)
            .collect();
        for token in owed {
            self.answered(token, fx);
        }
    }

    fn handle_departure(&mut self, wid: WorkerId, fx: &mut impl Effects) {
        let Some(worker) = self.workers.remove(&wid) else {
            return;
        };
        self.killed_as_hung.remove(&wid);
        self.ready.retain(|&w| w != wid);
        if self.shutting_down {
            self.stop_next_workers(fx);
            return;
        }
        if worker.role == Role::Retiring {
            return;
        }
        self.counters.crash_count += 1;
        tracing::warn!(
            "worker {} (pid {}) is gone",
            worker.link.client,
            worker.link.pid
        );
        match worker.role {
            Role::Standby(id) => {
                // A standby's death only needs a new standby.
                if let Some(m) = self.modules.get_mut(&id) {
                    m.standby_worker = None;
                    m.standby_ports.clear();
                    m.degraded_since.get_or_insert(fx.now());
                }
                self.add_standby(&id, fx);
            }
            Role::Primary(id) => self.primary_died(&id, fx),
            _ => {}
        }
        self.refill(fx);
    }

    /// Module `id` lost its primary: the restart policy says how it goes on.
    fn primary_died(&mut self, id: &str, fx: &mut impl Effects) {
        let now = fx.now();
        let policy = self.config.restart;
        let Some(m) = self.modules.get(id) else {
            return;
        };
        if m.quarantined {
            return;
        }
        if m.ports.is_empty() && m.recovering_since.is_none() {
            // It died while being created: nothing played yet, the create fails.
            return self.died_while_created(id, fx);
        }
        // A replacement that died before it was ready is just another death.
        self.pending
            .retain(|_, p| !matches!(p, Pending::Replace { id: r, .. } if r == id));
        self.notify(fx, osc::message("/module/died", vec![osc::text(id)]));
        let Some(m) = self.modules.get_mut(id) else {
            return;
        };
        let standby_ready = m.standby_worker.is_some() && !m.standby_ports.is_empty();
        let recovery = policy.decide(&mut m.history, now, standby_ready);
        m.worker = NO_WORKER;
        m.ports.clear();
        m.playing_since = None;
        m.recovering_since = Some(now);
        m.degraded_since.get_or_insert(now);
        tracing::warn!("module {id} lost its worker: {recovery:?}");
        match recovery {
            Recovery::Standby => {
                self.fail_over(id, fx);
            }
            Recovery::Spare => {
                // A standby still being set up watches the dead primary: it is of
                // no use; the replacement gets a new one.
                self.drop_standby(id, fx);
                self.replace(id, false, fx);
            }
            Recovery::Fresh => {
                self.drop_standby(id, fx);
                self.counters.fresh_restarts += 1;
                self.replace(id, true, fx);
            }
            Recovery::Quarantine => self.quarantine(id, fx),
        }
    }

    /// The primary died before its module was confirmed: the create fails and the
    /// module is gone.
    fn died_while_created(&mut self, id: &str, fx: &mut impl Effects) {
        if let Some(m) = self.modules.remove(id) {
            fx.unlink_state(&m.state);
            if let Some(standby) = m.standby_worker {
                self.retire(standby, fx);
            }
        }
        let creates: Vec<u64> = self
            .pending
            .iter()
            .filter(|(_, p)| matches!(p, Pending::Create { id: c, .. } if c == id))
            .map(|(&t, _)| t)
            .collect();
        for t in creates {
            if let Some(Pending::Create { from, id, .. }) = self.pending.remove(&t) {
                self.create_failed(from, &id, "its worker died while starting it", fx);
            }
        }
    }

    /// Lets go of module `id`'s standby (it watches a dead primary, or maps a state
    /// that makes workers crash); the worker itself is fine and returns to the pool.
    fn drop_standby(&mut self, id: &str, fx: &mut impl Effects) {
        self.needs_standby.remove(id);
        let Some(m) = self.modules.get_mut(id) else {
            return;
        };
        m.standby_ports.clear();
        if let Some(standby) = m.standby_worker.take() {
            self.free_worker(standby, fx);
        }
    }

    /// A spare takes module `id` over: from its shared state (the old owner is
    /// dead), or from a fresh one. Without a spare now, the next one is used.
    fn replace(&mut self, id: &str, fresh: bool, fx: &mut impl Effects) {
        let token = self.token();
        let Some(m) = self.modules.get(id) else {
            return;
        };
        let Some(wid) = self.ready.pop_front() else {
            self.needs_replacement.insert(id.to_string(), fresh);
            self.refill(fx);
            return;
        };
        if fresh {
            // The old state made workers crash: start over from a new segment.
            fx.unlink_state(&m.state);
        }
        let assign = ToWorker::Assign {
            token,
            id: id.to_string(),
            module_type: m.spec.name.to_string(),
            params: (0..m.spec.params.len())
                .map(|i| (i as u16, m.params[i]))
                .collect(),
            role: if fresh {
                WorkerRole::Primary
            } else {
                WorkerRole::Replacement
            },
            state: m.state.clone(),
        };
        self.pending.insert(
            token,
            Pending::Replace {
                id: id.to_string(),
                fresh,
            },
        );
        if let Some(w) = self.workers.get_mut(&wid) {
            w.role = Role::Primary(id.to_string());
            fx.send(&w.link, assign);
        }
        self.refill_soon(fx.now());
    }

    /// The replacement's ports exist: it is the module's primary now.
    fn replaced(
        &mut self,
        wid: WorkerId,
        id: &str,
        fresh: bool,
        result: Result<Vec<String>, String>,
        fx: &mut impl Effects,
    ) {
        let ports = match result {
            Ok(ports) => ports,
            Err(reason) => {
                tracing::error!("replacing the worker of {id} failed: {reason}");
                self.retire(wid, fx);
                return self.quarantine(id, fx);
            }
        };
        let now = fx.now();
        let Some(m) = self.modules.get_mut(id) else {
            // Freed meanwhile.
            return self.retire(wid, fx);
        };
        m.worker = wid;
        m.ports = ports;
        m.history.took_over(now);
        m.playing_since = Some(now);
        self.counters.replacements += 1;
        let links: Vec<(usize, String)> = m.links.iter().cloned().collect();
        let params: Vec<(u16, f32)> = (0..m.spec.params.len())
            .map(|i| (i as u16, m.params[i]))
            .collect();
        if let Some(w) = self.workers.get(&wid) {
            if fresh {
                // A fresh primary named its ports when it was assigned.
                self.finish_recovery(id, None, fx);
            } else {
                fx.send(&w.link, ToWorker::TakeNames { id: id.to_string() });
                for (index, value) in params {
                    let change = ToWorker::SetParam {
                        index,
                        value,
                        at: None,
                        received: 0,
                    };
                    fx.send(&w.link, change);
                }
            }
        }
        self.restore_links(id, &links, fx);
        self.make_wanted_connections(fx);
        tracing::warn!(
            "module {id} was taken over by a pool spare{}",
            if fresh { " from a fresh state" } else { "" }
        );
        self.add_standby(id, fx);
    }

    /// Connects a replacement's ports as the dead primary's were.
    fn restore_links(&mut self, id: &str, links: &[(usize, String)], fx: &mut impl Effects) {
        let Some(m) = self.modules.get(id) else {
            return;
        };
        let mut patches = Vec::new();
        for (i, other) in links {
            let (Some(own), Some(spec)) = (m.ports.get(*i), m.spec.ports.get(*i)) else {
                continue;
            };
            let Ok(other) = self.resolve_port(other) else {
                continue;
            };
            patches.push(match spec.direction {
                catalog::Direction::Out => (own.clone(), other),
                catalog::Direction::In => (other, own.clone()),
            });
        }
        for (src, dst) in patches {
            if let Err(e) = fx.patch(true, &src, &dst) {
                tracing::warn!("restoring a connection of {id}: {e}");
            }
        }
    }

    /// The module's new primary has its names and has played its first period.
    fn finish_recovery(&mut self, id: &str, gap_frames: Option<u32>, fx: &mut impl Effects) {
        let now = fx.now();
        let Some(m) = self.modules.get_mut(id) else {
            return;
        };
        if let Some(since) = m.recovering_since.take() {
            self.counters
                .failover_time_ms
                .record(now.duration_since(since).as_secs_f64() * 1e3);
        }
        if let Some(gap) = gap_frames {
            self.counters.failover_gap_frames.record(gap as f64);
        }
        let gap = gap_frames.map_or(-1, |g| g.min(i32::MAX as u32) as i32);
        self.notify(
            fx,
            osc::message("/module/failover", vec![osc::text(id), OscType::Int(gap)]),
        );
    }

    /// Leaves module `id` silent after a crash loop: no worker plays it, its state
    /// is dropped, it stays listed (and its connections remembered) until freed or
    /// created anew.
    fn quarantine(&mut self, id: &str, fx: &mut impl Effects) {
        self.drop_standby(id, fx);
        self.needs_replacement.remove(id);
        let Some(m) = self.modules.get_mut(id) else {
            return;
        };
        m.quarantined = true;
        m.worker = NO_WORKER;
        m.ports.clear();
        m.recovering_since = None;
        m.degraded_since = None;
        fx.unlink_state(&m.state);
        self.counters.quarantined += 1;
        tracing::error!(
            "module {id} keeps crashing: quarantined (silent); free it or create it again"
        );
        self.notify(
            fx,
            osc::message(
                "/module/quarantined",
                vec![osc::text(id), osc::text("its workers kept crashing")],
            ),
        );
    }

    /// During shutdown: keeps [`MAX_CONCURRENT_SPAWNS`] workers closing at a time.
    /// Many JACK clients closing at once stall jackd2 (seen: 13 of 15 hung in
    /// `jack_client_close` for over 3 s), one or two at a time close in ~20 ms each.
    fn stop_next_workers(&mut self, fx: &mut impl Effects) {
        let closing = self
            .workers
            .values()
            .filter(|w| w.role == Role::Stopping)
            .count();
        let mut ids: Vec<WorkerId> = self
            .workers
            .iter()
            .filter(|(_, w)| w.role != Role::Stopping)
            .map(|(&id, _)| id)
            .collect();
        ids.sort_unstable();
        for id in ids
            .into_iter()
            .take(MAX_CONCURRENT_SPAWNS.saturating_sub(closing))
        {
            if let Some(w) = self.workers.get_mut(&id) {
                w.role = Role::Stopping;
                if !fx.send(&w.link, ToWorker::Shutdown) {
                    tracing::debug!("worker {} is already gone", w.link.client);
                }
            }
        }
    }

    /// Gives module `id` a hot standby from the pool: same type and ports, the state
    /// segment mapped, silent until its primary dies. Without a spare now, the next
    /// spare that arrives is used.
    fn add_standby(&mut self, id: &str, fx: &mut impl Effects) {
        let Some(m) = self.modules.get(id) else {
            return;
        };
        if m.standby != Standby::Hot || m.standby_worker.is_some() || self.shutting_down {
            return;
        }
        let Some(primary_pid) = self.workers.get(&m.worker).map(|w| w.link.pid) else {
            return;
        };
        let (module_type, params, state) = (
            m.spec.name.to_string(),
            (0..m.spec.params.len())
                .map(|i| (i as u16, m.params[i]))
                .collect(),
            m.state.clone(),
        );
        let Some(wid) = self.ready.pop_front() else {
            self.needs_standby.insert(id.to_string());
            self.refill_soon(fx.now());
            return;
        };
        let token = self.token();
        let assign = ToWorker::Assign {
            token,
            id: id.to_string(),
            module_type,
            params,
            role: WorkerRole::Standby { primary_pid },
            state,
        };
        if let Some(m) = self.modules.get_mut(id) {
            m.standby_worker = Some(wid);
        }
        if let Some(w) = self.workers.get_mut(&wid) {
            w.role = Role::Standby(id.to_string());
            self.pending
                .insert(token, Pending::Standby { id: id.to_string() });
            fx.send(&w.link, assign);
        }
        self.refill_soon(fx.now());
    }

    /// The standby's ports exist: give them the primary's connections.
    fn standby_assigned(
        &mut self,
        wid: WorkerId,
        id: &str,
        result: Result<Vec<String>, String>,
        fx: &mut impl Effects,
    ) {
        match result {
            Ok(ports) => {
                let now = fx.now();
                let Some(m) = self
                    .modules
                    .get_mut(id)
                    .filter(|m| m.standby_worker == Some(wid))
                else {
                    // Let go of meanwhile (module freed, crash loop): the Free sent
                    // then is queued behind the assignment and returns it to the pool.
                    return;
                };
                m.standby_ports = ports;
                if let Some(since) = m.degraded_since.take() {
                    self.counters
                        .rebuild_time_ms
                        .record(now.duration_since(since).as_secs_f64() * 1e3);
                }
                let pairs: Vec<(String, String, bool)> = m
                    .ports
                    .iter()
                    .zip(&m.standby_ports)
                    .zip(m.spec.ports)
                    .map(|((p, s), spec)| {
                        (
                            p.clone(),
                            s.clone(),
                            spec.direction == catalog::Direction::Out,
                        )
                    })
                    .collect();
                // Connections made by hand (qjackctl, jack_connect) are copied too.
                for (primary, standby, output) in pairs {
                    for other in fx.connections(&primary) {
                        let (src, dst) = if output {
                            (&standby, &other)
                        } else {
                            (&other, &standby)
                        };
                        if let Err(e) = fx.patch(true, src, dst) {
                            tracing::warn!("standby of {id}: {e}");
                        }
                    }
                }
                self.make_wanted_connections(fx);
            }
            Err(reason) => match self.modules.get_mut(id) {
                // Freed while its standby was being set up: the worker is unharmed
                // (it tries the state before its ports), back to the pool with it.
                None => self.make_spare(wid),
                Some(m) => {
                    tracing::error!("no standby for {id}: {reason}");
                    m.standby_worker = None;
                    self.retire(wid, fx);
                }
            },
        }
    }

    /// Module `id` lost its primary and its standby has already taken the state over
    /// (it watches the primary's pidfd): move the module's name, port names and
    /// parameters to it, and find it a new standby.
    fn fail_over(&mut self, id: &str, fx: &mut impl Effects) {
        let now = fx.now();
        let Some(m) = self.modules.get_mut(id) else {
            return;
        };
        let Some(new_primary) = m.standby_worker.take() else {
            return;
        };
        m.worker = new_primary;
        m.ports = std::mem::take(&mut m.standby_ports);
        m.history.took_over(now);
        m.playing_since = Some(now);
        let params: Vec<(u16, f32)> = (0..m.spec.params.len())
            .map(|i| (i as u16, m.params[i]))
            .collect();
        self.counters.failovers += 1;
        if let Some(w) = self.workers.get_mut(&new_primary) {
            w.role = Role::Primary(id.to_string());
            fx.send(&w.link, ToWorker::TakeNames { id: id.to_string() });
            // Changes sent to the dead primary may not have landed: the supervisor's
            // copy of every value is sent again, so the final values are right.
            for (index, value) in params {
                fx.send(
                    &w.link,
                    ToWorker::SetParam {
                        index,
                        value,
                        at: None,
                        received: 0,
                    },
                );
            }
        }
        tracing::warn!("module {id} failed over to its standby");
        self.add_standby(id, fx);
    }

    /// Puts a worker without a module back in the ready queue (once).
    fn make_spare(&mut self, wid: WorkerId) {
        if let Some(w) = self.workers.get_mut(&wid) {
            w.role = Role::Spare;
            if !self.ready.contains(&wid) {
                self.ready.push_back(wid);
            }
        }
    }

    /// Tells a worker to exit; its exit is then expected, not a death.
    fn retire(&mut self, wid: WorkerId, fx: &mut impl Effects) {
        self.ready.retain(|&w| w != wid);
        if let Some(w) = self.workers.get_mut(&wid) {
            w.role = Role::Retiring;
            fx.send(&w.link, ToWorker::Shutdown);
        }
    }

    fn notify(&self, fx: &mut impl Effects, msg: OscMessage) {
        for &s in &self.subscribers {
            fx.reply(s, msg.clone());
        }
    }

    /// Schedules a refill [`REFILL_DELAY`] from now (see there), unless one is due.
    fn refill_soon(&mut self, now: Instant) {
        self.refill_after.get_or_insert(now + REFILL_DELAY);
    }

    /// Does what has come due (a delayed refill). The main loop calls it on every
    /// wake-up; [`Core::next_deadline`] says when it must wake at the latest.
    pub fn tick(&mut self, fx: &mut impl Effects) {
        let now = fx.now();
        if self.refill_after.is_some_and(|t| now >= t) {
            self.refill_after = None;
            self.refill(fx);
        }
        if self.next_heartbeat.is_none_or(|t| now >= t) {
            self.next_heartbeat = Some(now + HEARTBEAT_INTERVAL);
            self.check_heartbeats(fx);
        }
    }

    /// When [`Core::tick`] has something to do next.
    pub fn next_deadline(&self) -> Option<Instant> {
        match (self.refill_after, self.next_heartbeat) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Kills every primary whose state was last published more than
    /// [`HANG_PERIODS`] behind the server's last cycle: it is hung, and its death
    /// fails the module over. Held against the server's cycles, not the wall clock,
    /// so a stalled server does not make every module look hung.
    fn check_heartbeats(&mut self, fx: &mut impl Effects) {
        if self.shutting_down {
            return;
        }
        let Some((cycle, period)) = fx.last_cycle() else {
            return;
        };
        let now = fx.now();
        let playing: Vec<(&str, WorkerId, &str)> = self
            .modules
            .iter()
            .filter(|(_, m)| {
                m.playing_since
                    .is_some_and(|t| now.duration_since(t) >= HEARTBEAT_GRACE)
                    && !self.killed_as_hung.contains(&m.worker)
            })
            .map(|(id, m)| (id.as_str(), m.worker, m.state.as_str()))
            .collect();
        let segments: Vec<&str> = playing.iter().map(|&(_, _, s)| s).collect();
        let published = fx.published_frames(&segments);
        let limit = (HANG_PERIODS * period.max(1)) as i32;
        let mut hung = Vec::new();
        for (&(id, wid, _), frame) in playing.iter().zip(published) {
            let Some(frame) = frame else { continue };
            let behind = cycle.wrapping_sub(frame) as i32;
            if behind > limit {
                hung.push((id.to_string(), wid, behind));
            }
        }
        for (id, wid, behind) in hung {
            if let Some(w) = self.workers.get(&wid) {
                tracing::warn!(
                    "module {id}: worker {} published nothing for {} periods: hung, killing it",
                    w.link.client,
                    behind / period.max(1) as i32
                );
                fx.kill(&w.link);
                self.killed_as_hung.insert(wid);
            }
        }
    }

    /// Starts workers until spares plus starting ones reach the pool size, a few at
    /// a time; each arrival calls this again.
    fn refill(&mut self, fx: &mut impl Effects) {
        if self.shutting_down || self.spawn_failures_in_a_row >= MAX_SPAWN_FAILURES_IN_A_ROW {
            return;
        }
        let want = self.config.pool + self.waiting.len() + self.needs_replacement.len();
        while self.ready.len() + self.starting.len() < want
            && self.starting.len() < MAX_CONCURRENT_SPAWNS
        {
            let id = self.next_worker;
            self.next_worker += 1;
            self.starting.insert(id);
            fx.spawn(id);
        }
    }
}

fn fail(address: &str, id: &str, reason: &str) -> OscMessage {
    osc::message(
        "/fail",
        vec![osc::text(address), osc::text(id), osc::text(reason)],
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use modsynth_control::osc::decode;
    use rosc::OscType as T;

    /// Records what the core did; ports listed in `ports` exist.
    #[derive(Default)]
    struct Fake {
        replies: Vec<(ReplyTo, OscMessage)>,
        sent: Vec<(WorkerId, ToWorker)>,
        spawned: Vec<WorkerId>,
        killed: Vec<WorkerId>,
        patched: Vec<(bool, String, String)>,
        ports: HashSet<String>,
        /// Workers whose channel is gone.
        dead: HashSet<WorkerId>,
        files: HashMap<String, String>,
        /// The fake clock; tests move it forward.
        clock: Option<Instant>,
        unlinked: Vec<String>,
        port_ids: HashMap<u32, String>,
        /// The server's last cycle, and each state segment's published frame.
        cycle: Option<u32>,
        published: HashMap<String, u32>,
    }

    impl Effects for Fake {
        fn reply(&mut self, to: ReplyTo, msg: OscMessage) {
            self.replies.push((to, msg));
        }
        fn send(&mut self, w: &WorkerLink, msg: ToWorker) -> bool {
            self.sent.push((w.id, msg));
            !self.dead.contains(&w.id)
        }
        fn spawn(&mut self, id: WorkerId) {
            self.spawned.push(id);
        }
        fn kill(&mut self, w: &WorkerLink) {
            self.killed.push(w.id);
        }
        fn patch(&mut self, connect: bool, src: &str, dst: &str) -> Result<(), String> {
            self.patched.push((connect, src.into(), dst.into()));
            Ok(())
        }
        fn port_exists(&mut self, name: &str) -> bool {
            self.ports.contains(name)
        }
        fn connections(&mut self, port: &str) -> Vec<String> {
            self.patched
                .iter()
                .filter(|(c, s, _)| *c && s == port)
                .map(|(_, _, d)| d.clone())
                .chain(
                    self.patched
                        .iter()
                        .filter(|(c, _, d)| *c && d == port)
                        .map(|(_, s, _)| s.clone()),
                )
                .collect()
        }
        fn unlink_state(&mut self, name: &str) {
            self.unlinked.push(name.to_string());
        }
        fn port_name(&mut self, id: u32) -> Option<String> {
            self.port_ids.get(&id).cloned()
        }
        fn read_file(&mut self, path: &str) -> Result<String, String> {
            self.files
                .get(path)
                .cloned()
                .ok_or_else(|| format!("{path}: cannot read it: no such file"))
        }
        fn write_file(&mut self, path: &str, contents: &str) -> Result<(), String> {
            self.files.insert(path.to_string(), contents.to_string());
            Ok(())
        }
        fn now(&self) -> Instant {
            self.clock.unwrap_or_else(Instant::now)
        }
        fn last_cycle(&mut self) -> Option<(u32, u32)> {
            self.cycle.map(|c| (c, 256))
        }
        fn published_frames(&mut self, segments: &[&str]) -> Vec<Option<u32>> {
            segments
                .iter()
                .map(|s| self.published.get(*s).copied())
                .collect()
        }
    }

    /// Moves the fake clock past the refill delay and lets the core act on it.
    fn after_refill_delay(core: &mut Core, fx: &mut Fake) {
        fx.clock = Some(fx.now() + REFILL_DELAY);
        core.tick(fx);
    }

    fn client() -> ReplyTo {
        "127.0.0.1:9000".parse().unwrap()
    }

    fn osc(core: &mut Core, fx: &mut Fake, addr: &str, args: Vec<T>) {
        let request = decode(&osc::message(addr, args));
        core.handle(
            Event::Osc {
                from: client(),
                request,
                received: 1000,
                at: None,
            },
            fx,
        );
    }

    fn ready(core: &mut Core, fx: &mut Fake, id: WorkerId) {
        let (commands, _rx) = ipc_channel::ipc::channel().unwrap();
        std::mem::forget(_rx);
        let new = NewWorker {
            id,
            pid: 100 + id,
            client: format!("ms-w{id:02}"),
            commands,
            spawn_time: Duration::from_millis(20),
        };
        core.handle(Event::Spawned(new), fx);
    }

    /// A core whose pool of `n` is ready.
    fn started(n: usize) -> (Core, Fake) {
        let mut core = Core::new(Config {
            pool: n,
            instance: "ms".into(),
            restart: RestartPolicy::default(),
        });
        let mut fx = Fake::default();
        core.start(&mut fx);
        let mut next = 0;
        while next < fx.spawned.len() {
            let id = fx.spawned[next];
            ready(&mut core, &mut fx, id);
            next += 1;
        }
        (core, fx)
    }

    fn last_reply(fx: &Fake) -> (String, Vec<T>) {
        let (_, m) = fx.replies.last().expect("a reply");
        (m.addr.clone(), m.args.clone())
    }

    fn s(v: &str) -> T {
        T::String(v.into())
    }

    /// Creates `id` of `ty` and acknowledges the assignment.
    /// Creates `id` of `ty` without a standby and acknowledges the assignment.
    fn create(core: &mut Core, fx: &mut Fake, ty: &str, id: &str) -> WorkerId {
        create_with(core, fx, ty, id, "none")
    }

    /// Creates `id` with `standby` (`hot` or `none`); acknowledges the primary only.
    fn create_with(core: &mut Core, fx: &mut Fake, ty: &str, id: &str, standby: &str) -> WorkerId {
        osc(
            core,
            fx,
            "/module/new",
            vec![s(ty), s(id), s("standby"), s(standby)],
        );
        let (wid, token) = fx
            .sent
            .iter()
            .rev()
            .find_map(|(w, m)| match m {
                ToWorker::Assign { token, id: i, .. } if i == id => Some((*w, *token)),
                _ => None,
            })
            .expect("an Assign");
        let spec = catalog::module(ty).unwrap();
        ack_assign(core, fx, wid, token, spec);
        wid
    }

    /// Answers an Assign as a worker would: its ports now exist.
    fn ack_assign(core: &mut Core, fx: &mut Fake, wid: WorkerId, token: u64, spec: &ModuleSpec) {
        let ports: Vec<String> = spec
            .ports
            .iter()
            .map(|p| format!("ms-w{wid:02}:{}", p.name))
            .collect();
        fx.ports.extend(ports.iter().cloned());
        core.handle(
            Event::FromWorker(
                wid,
                FromWorker::Assigned {
                    token,
                    result: Ok(ports),
                },
            ),
            fx,
        );
    }

    #[test]
    fn the_pool_fills_to_its_size_at_start_a_few_workers_at_a_time() {
        let mut core = Core::new(Config {
            pool: 4,
            instance: "ms".into(),
            restart: RestartPolicy::default(),
        });
        let mut fx = Fake::default();
        core.start(&mut fx);
        assert_eq!(fx.spawned.len(), MAX_CONCURRENT_SPAWNS);
        let (core, fx) = started(4);
        assert_eq!(fx.spawned, vec![0, 1, 2, 3]);
        assert_eq!(core.spares_ready(), 4);
    }

    #[test]
    fn repeated_spawn_failures_stop_the_refill_instead_of_spinning() {
        let mut core = Core::new(Config {
            pool: 4,
            instance: "ms".into(),
            restart: RestartPolicy::default(),
        });
        let mut fx = Fake::default();
        core.start(&mut fx);
        let mut i = 0;
        while i < fx.spawned.len() {
            let id = fx.spawned[i];
            core.handle(
                Event::SpawnFailed {
                    id,
                    reason: "broken".into(),
                },
                &mut fx,
            );
            i += 1;
        }
        assert!(fx.spawned.len() <= MAX_SPAWN_FAILURES_IN_A_ROW as usize + MAX_CONCURRENT_SPAWNS);
        let before = fx.spawned.len();
        osc(&mut core, &mut fx, "/module/new", vec![s("vco"), s("v")]);
        assert!(fx.spawned.len() > before, "a create tries once more");
        assert!(fx.replies.is_empty());
        let retried: Vec<WorkerId> = fx.spawned[before..].to_vec();
        for id in retried {
            core.handle(
                Event::SpawnFailed {
                    id,
                    reason: "broken".into(),
                },
                &mut fx,
            );
        }
        assert!(matches!(&last_reply(&fx).1[2], T::String(r) if r.contains("broken")));
    }

    #[test]
    fn creating_takes_a_spare_replies_done_and_refills_the_pool() {
        let (mut core, mut fx) = started(2);
        let wid = create(&mut core, &mut fx, "vco", "vco1");
        assert_eq!(wid, 0);
        assert_eq!(
            last_reply(&fx),
            ("/done".into(), vec![s("/module/new"), s("vco1")])
        );
        assert_eq!(
            fx.spawned,
            vec![0, 1],
            "the refill waits until the create is done"
        );
        assert!(core.next_deadline().is_some());
        after_refill_delay(&mut core, &mut fx);
        assert_eq!(fx.spawned, vec![0, 1, 2], "a replacement spare was started");
        assert_eq!(core.status_report().modules[0].jack_client, "ms-w00");
    }

    #[test]
    fn an_empty_pool_makes_a_create_wait_for_the_next_spare_not_fail() {
        let mut core = Core::new(Config {
            pool: 1,
            instance: "ms".into(),
            restart: RestartPolicy::default(),
        });
        let mut fx = Fake::default();
        core.start(&mut fx);
        osc(&mut core, &mut fx, "/module/new", vec![s("lfo"), s("l1")]);
        assert!(fx.replies.is_empty(), "no reply before a worker exists");
        assert!(
            fx.spawned.len() >= 2,
            "the waiting create asks for a worker of its own"
        );
        ready(&mut core, &mut fx, 0);
        assert!(matches!(&fx.sent[0], (0, ToWorker::Assign { id, .. }) if id == "l1"));
        assert_eq!(core.counters.cold_creates, 1);
    }

    #[test]
    fn a_duplicate_id_fails_and_changes_nothing() {
        let (mut core, mut fx) = started(2);
        create(&mut core, &mut fx, "vco", "a");
        let sent = fx.sent.len();
        osc(&mut core, &mut fx, "/module/new", vec![s("lfo"), s("a")]);
        let (addr, args) = last_reply(&fx);
        assert_eq!(
            (addr.as_str(), &args[..2]),
            ("/fail", &[s("/module/new"), s("a")][..])
        );
        assert_eq!(fx.sent.len(), sent);
        assert_eq!(core.status_report().modules.len(), 1);
    }

    #[test]
    fn set_checks_the_param_against_the_module_type_before_sending() {
        let (mut core, mut fx) = started(2);
        let wid = create(&mut core, &mut fx, "vcf", "f");
        let sent = fx.sent.len();
        for (param, value) in [
            ("freq", T::Float(1.0)),
            ("cutoff", T::Float(1e9)),
            ("mode", s("notch")),
        ] {
            osc(
                &mut core,
                &mut fx,
                "/module/set",
                vec![s("f"), s(param), value],
            );
            assert_eq!(last_reply(&fx).0, "/fail", "{param} was accepted");
        }
        osc(
            &mut core,
            &mut fx,
            "/module/set",
            vec![s("nobody"), s("cutoff"), T::Float(100.0)],
        );
        assert!(matches!(&last_reply(&fx).1[1], T::String(r) if r.contains("no module 'nobody'")));
        assert_eq!(fx.sent.len(), sent, "nothing reached the worker");
        osc(&mut core, &mut fx, "/f/cutoff", vec![T::Int(300)]);
        assert_eq!(
            fx.sent.last().unwrap(),
            &(
                wid,
                ToWorker::SetParam {
                    index: 1,
                    value: 300.0,
                    at: None,
                    received: 1000
                }
            )
        );
        osc(&mut core, &mut fx, "/module/get", vec![s("f"), s("cutoff")]);
        assert_eq!(
            last_reply(&fx),
            (
                "/module/value".into(),
                vec![s("f"), s("cutoff"), T::Float(300.0)]
            )
        );
    }

    #[test]
    fn a_timetagged_set_carries_its_frame_to_the_worker() {
        let (mut core, mut fx) = started(1);
        create(&mut core, &mut fx, "const", "c");
        let request = decode(&osc::message(
            "/module/set",
            vec![s("c"), s("value"), T::Float(1.0)],
        ));
        core.handle(
            Event::Osc {
                from: client(),
                request,
                received: 5,
                at: Some(48_000),
            },
            &mut fx,
        );
        assert!(matches!(
            fx.sent.last().unwrap().1,
            ToWorker::SetParam {
                at: Some(48_000),
                received: 5,
                ..
            }
        ));
    }

    #[test]
    fn connect_resolves_module_ports_and_passes_jack_names_through() {
        let (mut core, mut fx) = started(2);
        let a = create(&mut core, &mut fx, "vco", "osc");
        fx.ports.insert("system:playback_1".into());
        osc(
            &mut core,
            &mut fx,
            "/patch/connect",
            vec![s("osc:out"), s("system:playback_1")],
        );
        assert_eq!(
            fx.patched,
            vec![(true, format!("ms-w{a:02}:out"), "system:playback_1".into())]
        );
        assert_eq!(last_reply(&fx).0, "/done");
        osc(
            &mut core,
            &mut fx,
            "/patch/connect",
            vec![s("osc:nope"), s("system:playback_1")],
        );
        assert!(
            matches!(&last_reply(&fx).1[1], T::String(r) if r.contains("it has: pitch, fm, out"))
        );
        osc(
            &mut core,
            &mut fx,
            "/patch/connect",
            vec![s("osc:out"), s("ghost:in")],
        );
        assert!(matches!(&last_reply(&fx).1[1], T::String(r) if r.contains("no port 'ghost:in'")));
        assert_eq!(fx.patched.len(), 1);
    }

    #[test]
    fn sync_answers_once_every_playing_worker_has_synced() {
        let (mut core, mut fx) = started(3);
        let a = create(&mut core, &mut fx, "vco", "a");
        let b = create(&mut core, &mut fx, "vco", "b");
        osc(&mut core, &mut fx, "/sync", vec![T::Int(42)]);
        let tokens: Vec<(WorkerId, u64)> = fx
            .sent
            .iter()
            .filter_map(|(w, m)| match m {
                ToWorker::Sync { token } => Some((*w, *token)),
                _ => None,
            })
            .collect();
        assert_eq!(tokens.iter().map(|t| t.0).collect::<Vec<_>>(), vec![a, b]);
        core.handle(
            Event::FromWorker(a, FromWorker::Synced { token: tokens[0].1 }),
            &mut fx,
        );
        assert_ne!(last_reply(&fx).0, "/synced");
        // b dies instead of answering: the sync still completes.
        core.handle(Event::WorkerGone(b), &mut fx);
        assert!(fx
            .replies
            .iter()
            .any(|(_, m)| m.addr == "/synced" && m.args == vec![T::Int(42)]));
    }

    #[test]
    fn a_dead_primary_without_a_standby_is_taken_over_by_a_spare_from_its_state() {
        let (mut core, mut fx) = started(2);
        osc(&mut core, &mut fx, "/notify", vec![T::Int(1)]);
        let wid = create(&mut core, &mut fx, "noise", "n");
        // Someone ran `jack_connect n:out system:playback_1`.
        fx.port_ids.insert(1, format!("ms-w{wid:02}:out"));
        fx.port_ids.insert(2, "system:playback_1".into());
        fx.ports.insert("system:playback_1".into());
        let connected = Event::PortsConnected {
            a: 1,
            b: 2,
            connected: true,
        };
        core.handle(connected, &mut fx);
        osc(&mut core, &mut fx, "/n/gain", vec![T::Float(0.25)]);
        fx.ports.remove(&format!("ms-w{wid:02}:out"));
        core.handle(Event::WorkerGone(wid), &mut fx);
        assert!(fx
            .replies
            .iter()
            .any(|(_, m)| m.addr == "/module/died" && m.args == vec![s("n")]));
        assert_eq!(core.status_report().modules[0].role, "recovering");
        let (spare, token, role, state) = last_assign(&fx, "n");
        assert_ne!(spare, wid);
        assert_eq!(
            (role, state.as_str()),
            (WorkerRole::Replacement, "/ms-n-state")
        );
        ack_assign(
            &mut core,
            &mut fx,
            spare,
            token,
            catalog::module("noise").unwrap(),
        );
        let to_spare: Vec<&ToWorker> = fx
            .sent
            .iter()
            .filter(|(w, _)| *w == spare)
            .map(|(_, m)| m)
            .collect();
        assert!(to_spare.contains(&&ToWorker::TakeNames { id: "n".into() }));
        assert!(
            to_spare
                .iter()
                .any(|m| matches!(m, ToWorker::SetParam { value, .. } if *value == 0.25)),
            "values replayed"
        );
        assert!(
            fx.patched.contains(&(
                true,
                format!("ms-w{spare:02}:out"),
                "system:playback_1".into()
            )),
            "the hand-made connection is restored: {:?}",
            fx.patched
        );
        core.handle(
            Event::FromWorker(
                spare,
                FromWorker::TookOver {
                    gap_frames: Some(256),
                },
            ),
            &mut fx,
        );
        assert!(fx
            .replies
            .iter()
            .any(|(_, m)| m.addr == "/module/failover" && m.args == vec![s("n"), T::Int(256)]));
        let report = core.status_report();
        assert_eq!(report.modules[0].role, "primary");
        assert_eq!(report.modules[0].jack_client, format!("ms-w{spare:02}"));
        assert_eq!(
            (report.counters.crash_count, report.counters.replacements),
            (1, 1)
        );
        assert_eq!(report.counters.failover_gap_frames.last, 256.0);
        assert!(fx.unlinked.is_empty(), "the state lives on");
    }

    #[test]
    fn a_module_that_keeps_crashing_restarts_fresh_once_then_is_quarantined() {
        let (mut core, mut fx) = started(3);
        osc(&mut core, &mut fx, "/notify", vec![T::Int(1)]);
        let mut wid = create(&mut core, &mut fx, "vco", "v");
        let t0 = fx.now();
        let limit = core.config.restart.max_deaths;
        let mut fresh_assigns = 0;
        for death in 0..=limit + 1 {
            fx.clock = Some(t0 + Duration::from_secs(death as u64));
            core.handle(Event::WorkerGone(wid), &mut fx);
            if core.status_report().modules[0].role == "quarantined" {
                break;
            }
            while core.ready.len() < 2 {
                let id = core.next_worker;
                core.next_worker += 1;
                ready(&mut core, &mut fx, id);
            }
            let (next, token, role, _) = last_assign(&fx, "v");
            assert_ne!(next, wid, "death {death}: a new worker");
            if role == WorkerRole::Primary {
                fresh_assigns += 1;
            }
            ack_assign(
                &mut core,
                &mut fx,
                next,
                token,
                catalog::module("vco").unwrap(),
            );
            wid = next;
        }
        assert_eq!(fresh_assigns, 1, "one fresh restart");
        assert_eq!(
            fx.unlinked.iter().filter(|u| *u == "/ms-v-state").count(),
            2,
            "fresh, then quarantined"
        );
        let report = core.status_report();
        assert_eq!(report.modules[0].role, "quarantined");
        assert_eq!(
            (report.counters.fresh_restarts, report.counters.quarantined),
            (1, 1)
        );
        assert!(fx
            .replies
            .iter()
            .any(|(_, m)| m.addr == "/module/quarantined"));
        // A quarantined module keeps its place in the set and can be freed.
        osc(&mut core, &mut fx, "/module/free", vec![s("v")]);
        assert_eq!(last_reply(&fx).0, "/done");
        assert!(core.status_report().modules.is_empty());
        assert!(core.registry_view().segments.is_empty());
    }

    #[test]
    fn a_standby_dying_right_after_taking_over_is_a_crash_loop() {
        let (mut core, mut fx) = started(4);
        let primary = create_with(&mut core, &mut fx, "vco", "v", "hot");
        let (standby, token, _, _) = last_assign(&fx, "v");
        ack_assign(
            &mut core,
            &mut fx,
            standby,
            token,
            catalog::module("vco").unwrap(),
        );
        fx.clock = Some(fx.now());
        core.handle(Event::WorkerGone(primary), &mut fx);
        fx.clock = Some(fx.now() + Duration::from_millis(10));
        core.handle(Event::WorkerGone(standby), &mut fx);
        let (_, _, role, _) = last_assign(&fx, "v");
        assert_eq!(role, WorkerRole::Primary, "restarted from a fresh state");
        assert_eq!(core.counters.fresh_restarts, 1);
        assert_eq!(fx.unlinked, vec!["/ms-v-state".to_string()]);
    }

    #[test]
    fn a_freed_worker_returns_to_the_pool_or_retires_when_the_pool_is_full() {
        let (mut core, mut fx) = started(1);
        let wid = create(&mut core, &mut fx, "vca", "v");
        ready(&mut core, &mut fx, 1); // the refill arrived: pool full again
        ready(&mut core, &mut fx, 2); // and a surplus spare: twice the pool
        osc(&mut core, &mut fx, "/module/free", vec![s("v")]);
        let token = match fx.sent.last().unwrap() {
            (w, ToWorker::Free { token }) if *w == wid => *token,
            other => panic!("expected Free, got {other:?}"),
        };
        core.handle(Event::FromWorker(wid, FromWorker::Freed { token }), &mut fx);
        assert_eq!(
            last_reply(&fx),
            ("/done".into(), vec![s("/module/free"), s("v")])
        );
        assert_eq!(fx.sent.last().unwrap(), &(wid, ToWorker::Shutdown));
        core.handle(Event::WorkerGone(wid), &mut fx);
        assert_eq!(
            core.counters.crash_count, 0,
            "a retired worker's exit is not a death"
        );
        osc(&mut core, &mut fx, "/module/free", vec![s("v")]);
        assert_eq!(last_reply(&fx).0, "/fail");
    }

    /// Acknowledges every outstanding Assign the way a worker would.
    fn ack_assigns(core: &mut Core, fx: &mut Fake) {
        let assigns: Vec<(WorkerId, u64, String, String)> = fx
            .sent
            .iter()
            .filter_map(|(w, m)| match m {
                ToWorker::Assign {
                    token,
                    id,
                    module_type,
                    ..
                } => Some((*w, *token, id.clone(), module_type.clone())),
                _ => None,
            })
            .collect();
        for (wid, token, _, ty) in assigns {
            let spec = catalog::module(&ty).unwrap();
            ack_assign(core, fx, wid, token, spec);
        }
    }

    const SET: &str = "[[module]]\nid = \"o\"\ntype = \"vco\"\nparams = { freq = 110 }\n\n[[module]]\nid = \"f\"\ntype = \"vcf\"\n\n[[connect]]\nfrom = \"o:out\"\nto = \"f:in\"\n\n[[connect]]\nfrom = \"f:out\"\nto = \"later:in\"\n";

    #[test]
    fn loading_a_set_creates_its_modules_connects_them_and_answers_once() {
        let (mut core, mut fx) = started(3);
        fx.files.insert("s.toml".into(), SET.into());
        osc(&mut core, &mut fx, "/set/load", vec![s("s.toml")]);
        assert!(fx.replies.is_empty(), "no answer before the modules exist");
        ack_assigns(&mut core, &mut fx);
        assert_eq!(
            last_reply(&fx),
            ("/done".into(), vec![s("/set/load"), s("s.toml")])
        );
        let o = core.modules["o"].worker;
        let f = core.modules["f"].worker;
        assert_eq!(core.modules["o"].params[0], 110.0);
        assert!(fx
            .patched
            .contains(&(true, format!("ms-w{o:02}:out"), format!("ms-w{f:02}:in"))));
    }

    #[test]
    fn a_connection_to_a_missing_port_is_made_when_it_appears_and_again_after_a_restart() {
        let (mut core, mut fx) = started(3);
        fx.files.insert("s.toml".into(), SET.into());
        osc(&mut core, &mut fx, "/set/load", vec![s("s.toml")]);
        ack_assigns(&mut core, &mut fx);
        let f = core.modules["f"].worker;
        let wanted = (true, format!("ms-w{f:02}:out"), "later:in".to_string());
        assert!(!fx.patched.contains(&wanted));
        fx.ports.insert("later:in".into());
        core.handle(Event::PortsAppeared, &mut fx);
        assert_eq!(fx.patched.iter().filter(|p| **p == wanted).count(), 1);
        // The program restarts: its port goes, JACK drops the connection, it comes back.
        fx.patched.retain(|p| *p != wanted);
        core.handle(Event::PortsAppeared, &mut fx);
        assert_eq!(fx.patched.iter().filter(|p| **p == wanted).count(), 1);
    }

    #[test]
    fn a_bad_set_file_fails_with_file_and_line_and_changes_nothing() {
        let (mut core, mut fx) = started(2);
        create(&mut core, &mut fx, "lfo", "keep");
        fx.files.insert(
            "bad.toml".into(),
            "[[module]]\nid = \"x\"\ntype = \"vco\"\nparams = { freq = -5 }\n".into(),
        );
        let sent = fx.sent.len();
        osc(
            &mut core,
            &mut fx,
            "/set/load",
            vec![s("bad.toml"), T::Int(1)],
        );
        let (addr, args) = last_reply(&fx);
        assert_eq!(addr, "/fail");
        assert!(
            matches!(&args[1], T::String(r) if r.starts_with("bad.toml:4: vco.freq = -5 is out of range")),
            "{args:?}"
        );
        assert_eq!(fx.sent.len(), sent, "nothing was sent to any worker");
        assert!(core.modules.contains_key("keep"));
        osc(&mut core, &mut fx, "/set/load", vec![s("missing.toml")]);
        assert!(matches!(&last_reply(&fx).1[1], T::String(r) if r.contains("missing.toml")));
    }

    #[test]
    fn saving_records_parameters_and_every_connection_including_hand_made_ones() {
        let (mut core, mut fx) = started(3);
        let o = create(&mut core, &mut fx, "vco", "o");
        osc(&mut core, &mut fx, "/o/wave", vec![s("square")]);
        // Made in qjackctl: modsynth never saw it.
        fx.patched
            .push((true, format!("ms-w{o:02}:out"), "system:playback_2".into()));
        osc(&mut core, &mut fx, "/set/save", vec![s("out.toml")]);
        assert_eq!(last_reply(&fx).0, "/done");
        let saved = setfile::parse("out.toml", &fx.files["out.toml"]).unwrap();
        assert_eq!(saved.modules.len(), 1);
        assert!(
            saved.modules[0].params.contains(&(1, 2.0)),
            "wave = square is saved"
        );
        assert_eq!(
            saved.connections,
            vec![Connection {
                from: "o:out".into(),
                to: "system:playback_2".into()
            }]
        );
    }

    #[test]
    fn loading_with_replace_frees_modules_that_are_not_in_the_set() {
        let (mut core, mut fx) = started(4);
        create(&mut core, &mut fx, "noise", "old");
        fx.files.insert("s.toml".into(), SET.into());
        osc(
            &mut core,
            &mut fx,
            "/set/load",
            vec![s("s.toml"), T::Int(1)],
        );
        ack_assigns(&mut core, &mut fx);
        assert!(!core.modules.contains_key("old"));
        assert!(fx
            .sent
            .iter()
            .any(|(_, m)| matches!(m, ToWorker::Free { .. })));
        assert_eq!(last_reply(&fx).0, "/done");
    }

    #[test]
    fn status_is_answered_when_a_retiring_worker_exits_before_reporting() {
        let (mut core, mut fx) = started(1);
        let wid = create(&mut core, &mut fx, "vca", "v");
        ready(&mut core, &mut fx, 1);
        ready(&mut core, &mut fx, 2);
        osc(&mut core, &mut fx, "/module/free", vec![s("v")]);
        let token = match fx.sent.last().unwrap() {
            (_, ToWorker::Free { token }) => *token,
            other => panic!("{other:?}"),
        };
        core.handle(Event::FromWorker(wid, FromWorker::Freed { token }), &mut fx);
        assert_eq!(
            fx.sent.last().unwrap(),
            &(wid, ToWorker::Shutdown),
            "surplus worker retired"
        );
        osc(&mut core, &mut fx, "/status", vec![]);
        assert!(
            !fx.sent
                .iter()
                .any(|(w, m)| *w == wid && matches!(m, ToWorker::Report { .. })),
            "an exiting worker is not asked"
        );
        let asked: Vec<(WorkerId, u64)> = fx
            .sent
            .iter()
            .filter_map(|(w, m)| match m {
                ToWorker::Report { token } => Some((*w, *token)),
                _ => None,
            })
            .collect();
        core.handle(Event::WorkerGone(wid), &mut fx);
        for (w, token) in asked {
            assert_ne!(
                last_reply(&fx).0,
                "/status.reply",
                "answered before every spare reported"
            );
            core.handle(
                Event::FromWorker(
                    w,
                    FromWorker::Report {
                        token,
                        report: Default::default(),
                    },
                ),
                &mut fx,
            );
        }
        assert_eq!(last_reply(&fx).0, "/status.reply");
    }

    /// The last Assign sent for `id`, with its worker and role.
    fn last_assign(fx: &Fake, id: &str) -> (WorkerId, u64, WorkerRole, String) {
        fx.sent
            .iter()
            .rev()
            .find_map(|(w, m)| match m {
                ToWorker::Assign {
                    token,
                    id: i,
                    role,
                    state,
                    ..
                } if i == id => Some((*w, *token, *role, state.clone())),
                _ => None,
            })
            .expect("an Assign")
    }

    #[test]
    fn a_module_gets_a_standby_that_shares_its_state_and_connections() {
        let (mut core, mut fx) = started(3);
        let primary = create_with(&mut core, &mut fx, "vco", "v", "hot");
        let (standby, token, role, state) = last_assign(&fx, "v");
        assert_ne!(standby, primary);
        assert_eq!(
            role,
            WorkerRole::Standby {
                primary_pid: 100 + primary
            }
        );
        assert_eq!(state, "/ms-v-state");
        ack_assign(
            &mut core,
            &mut fx,
            standby,
            token,
            catalog::module("vco").unwrap(),
        );
        fx.ports.insert("system:playback_1".into());
        osc(
            &mut core,
            &mut fx,
            "/patch/connect",
            vec![s("v:out"), s("system:playback_1")],
        );
        let p_out = format!("ms-w{primary:02}:out");
        let s_out = format!("ms-w{standby:02}:out");
        assert!(fx
            .patched
            .contains(&(true, p_out, "system:playback_1".into())));
        assert!(
            fx.patched
                .contains(&(true, s_out, "system:playback_1".into())),
            "mirrored to the standby"
        );
    }

    #[test]
    fn connections_made_by_hand_are_mirrored_onto_the_standby() {
        let (mut core, mut fx) = started(3);
        let primary = create_with(&mut core, &mut fx, "vco", "v", "hot");
        let (standby, token, _, _) = last_assign(&fx, "v");
        ack_assign(
            &mut core,
            &mut fx,
            standby,
            token,
            catalog::module("vco").unwrap(),
        );
        // Someone ran `jack_connect v:out system:playback_2`.
        fx.port_ids.insert(1, format!("ms-w{primary:02}:out"));
        fx.port_ids.insert(2, "system:playback_2".into());
        core.handle(
            Event::PortsConnected {
                a: 1,
                b: 2,
                connected: true,
            },
            &mut fx,
        );
        let mirrored = (
            true,
            format!("ms-w{standby:02}:out"),
            "system:playback_2".to_string(),
        );
        assert!(fx.patched.contains(&mirrored));
        core.handle(
            Event::PortsConnected {
                a: 1,
                b: 2,
                connected: false,
            },
            &mut fx,
        );
        assert!(
            fx.patched
                .contains(&(false, mirrored.1.clone(), mirrored.2.clone())),
            "and disconnections too"
        );
    }

    #[test]
    fn a_standby_that_took_over_from_a_hung_primary_gets_it_killed() {
        let (mut core, mut fx) = started(3);
        let primary = create_with(&mut core, &mut fx, "vco", "v", "hot");
        let (standby, token, _, _) = last_assign(&fx, "v");
        ack_assign(
            &mut core,
            &mut fx,
            standby,
            token,
            catalog::module("vco").unwrap(),
        );
        core.handle(Event::FromWorker(standby, FromWorker::Promoted), &mut fx);
        assert_eq!(fx.killed, vec![primary]);
    }

    #[test]
    fn a_module_freed_while_its_standby_is_set_up_returns_that_worker_once() {
        let (mut core, mut fx) = started(3);
        create_with(&mut core, &mut fx, "vco", "v", "hot");
        let (standby, token, _, _) = last_assign(&fx, "v");
        osc(&mut core, &mut fx, "/module/free", vec![s("v")]);
        let free_token = fx.sent.iter().rev().find_map(|(w, m)| match m {
            ToWorker::Free { token } if *w == standby => Some(*token),
            _ => None,
        });
        core.handle(
            Event::FromWorker(
                standby,
                FromWorker::Assigned {
                    token,
                    result: Err("gone".into()),
                },
            ),
            &mut fx,
        );
        core.handle(
            Event::FromWorker(
                standby,
                FromWorker::Freed {
                    token: free_token.unwrap(),
                },
            ),
            &mut fx,
        );
        assert_eq!(core.ready.iter().filter(|&&w| w == standby).count(), 1);
        assert!(
            !fx.sent
                .iter()
                .any(|(w, m)| *w == standby && *m == ToWorker::Shutdown),
            "not retired"
        );
    }

    #[test]
    fn a_dead_primary_fails_over_to_its_standby_with_names_and_values() {
        let (mut core, mut fx) = started(4);
        osc(&mut core, &mut fx, "/notify", vec![T::Int(1)]);
        let primary = create_with(&mut core, &mut fx, "vco", "v", "hot");
        let (standby, token, _, _) = last_assign(&fx, "v");
        ack_assign(
            &mut core,
            &mut fx,
            standby,
            token,
            catalog::module("vco").unwrap(),
        );
        osc(&mut core, &mut fx, "/v/freq", vec![T::Float(330.0)]);
        core.handle(Event::WorkerGone(primary), &mut fx);
        core.handle(
            Event::FromWorker(
                standby,
                FromWorker::TookOver {
                    gap_frames: Some(0),
                },
            ),
            &mut fx,
        );
        assert!(fx
            .replies
            .iter()
            .any(|(_, m)| m.addr == "/module/failover" && m.args == vec![s("v"), T::Int(0)]));
        assert_eq!(core.counters.failovers, 1);
        assert_eq!(
            core.status_report().modules[0].jack_client,
            format!("ms-w{standby:02}")
        );
        let to_new: Vec<&ToWorker> = fx
            .sent
            .iter()
            .filter(|(w, _)| *w == standby)
            .map(|(_, m)| m)
            .collect();
        assert!(to_new.contains(&&ToWorker::TakeNames { id: "v".into() }));
        assert!(
            to_new.contains(&&ToWorker::SetParam {
                index: 0,
                value: 330.0,
                at: None,
                received: 0
            }),
            "values replayed"
        );
        let (next, _, role, _) = last_assign(&fx, "v");
        assert_ne!(next, standby);
        assert_eq!(
            role,
            WorkerRole::Standby {
                primary_pid: 100 + standby
            },
            "a fresh standby watches the new primary"
        );
        osc(&mut core, &mut fx, "/module/free", vec![s("v")]);
        assert_eq!(fx.unlinked, vec!["/ms-v-state".to_string()]);
    }

    #[test]
    fn a_primary_that_stops_publishing_while_the_server_runs_is_killed_as_hung() {
        let (mut core, mut fx) = started(2);
        let wid = create(&mut core, &mut fx, "vco", "v");
        let t0 = fx.now();
        fx.clock = Some(t0 + HEARTBEAT_GRACE + HEARTBEAT_INTERVAL);
        // Keeping up: published at the end of the last cycle.
        fx.cycle = Some(100_000);
        fx.published.insert("/ms-v-state".into(), 100_256);
        core.tick(&mut fx);
        assert!(fx.killed.is_empty());
        // The server ran 40 more periods; the module published nothing.
        fx.cycle = Some(100_000 + 40 * 256);
        fx.clock = Some(fx.now() + HEARTBEAT_INTERVAL);
        core.tick(&mut fx);
        assert_eq!(fx.killed, vec![wid]);
        // Killed once, not again on every check while its death is on the way.
        fx.clock = Some(fx.now() + HEARTBEAT_INTERVAL);
        core.tick(&mut fx);
        assert_eq!(fx.killed, vec![wid]);
    }

    #[test]
    fn a_new_primary_is_not_judged_before_its_grace_time() {
        let (mut core, mut fx) = started(2);
        create(&mut core, &mut fx, "vco", "v");
        fx.cycle = Some(1_000_000);
        fx.published.insert("/ms-v-state".into(), 0);
        fx.clock = Some(fx.now() + HEARTBEAT_INTERVAL);
        core.tick(&mut fx);
        assert!(fx.killed.is_empty());
    }

    #[test]
    fn a_primary_dying_before_its_module_was_confirmed_fails_the_create() {
        let (mut core, mut fx) = started(2);
        osc(&mut core, &mut fx, "/module/new", vec![s("lfo"), s("l")]);
        let (wid, _, _, state) = last_assign(&fx, "l");
        assert_eq!(state, "/ms-l-state", "every module has a state segment");
        core.handle(Event::WorkerGone(wid), &mut fx);
        assert_eq!(last_reply(&fx).0, "/fail");
        assert!(core.status_report().modules.is_empty());
        assert_eq!(fx.unlinked, vec!["/ms-l-state".to_string()]);
    }

    #[test]
    fn shutdown_stops_every_worker_a_few_at_a_time_and_refuses_new_requests() {
        let (mut core, mut fx) = started(5);
        core.handle(Event::Shutdown, &mut fx);
        let stops = |fx: &Fake| {
            fx.sent
                .iter()
                .filter(|(_, m)| *m == ToWorker::Shutdown)
                .count()
        };
        assert_eq!(stops(&fx), MAX_CONCURRENT_SPAWNS);
        osc(&mut core, &mut fx, "/module/new", vec![s("vco"), s("late")]);
        assert_eq!(last_reply(&fx).0, "/fail");
        for id in 0..5 {
            assert!(!core.is_stopped());
            core.handle(Event::WorkerGone(id), &mut fx);
        }
        assert_eq!(stops(&fx), 5);
        assert!(core.is_stopped());
    }
}

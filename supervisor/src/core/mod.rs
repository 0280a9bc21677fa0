//! The supervisor's core: one struct that owns all state and decides.
//!
//! The loop it runs in ([`event_loop`](crate::event_loop)) and the threads that
//! remain (worker links, JACK notifications, TCP readers, spawners) only turn what
//! they see into an [`Event`]; [`Core::handle`] takes one event at a time and acts
//! through the [`Effects`] trait. Tests drive the core with a fake `Effects` and
//! check what it did, without JACK, sockets or processes.
//!
//! [`Core`] is split along what it owns. Parts that own their state, decide on it
//! alone and are tested alone: `modules::Modules` (the module table and the
//! creates waiting for a spare), `pool::Pool` (spares, workers starting, refill
//! timing), `failover::Failover` (spares owed to modules, create retries, the
//! heartbeat check's verdicts), `patching::Patch` (connections wanted,
//! disconnections to follow, and in `jack_jobs::JackJobs` the changes asked of
//! JACK), `requests::Requests` (tokens, the fan-out of `/sync` and `/status`),
//! `subscribers::Subscribers` (`/notify`), [`midi::Midi`] (CC maps, learn,
//! program sets; `maps` acts on what it decides) and `seats::Seats` (standby hosts
//! and their seats: which seats are free, the hosts being started; a seat is a
//! worker of its own in the core, see `seats`). The `impl Core` in each of those
//! files ties its part to the workers and the other parts. The rest is split by
//! what it is about, as methods of [`Core`]: `sets` (set files), `switch`
//! (prepared sets; `bars` places a switch on a bar), `plugin_states` (LV2 states in
//! sets, with the saves in flight kept in its `PluginStates`), `adopt` and
//! `reports` (status, sync, registry).

use crate::restart::{CrashHistory, Recovery, RestartPolicy};
use modsynth_model::catalog::{self, ModuleSpec, MAX_PARAMS};
use modsynth_model::param;
use modsynth_model::protocol::{FromWorker, Role as WorkerRole, ToWorker, WorkerReport};
use modsynth_protocol::osc::{self, Arg, Fail, OnBar, Request, Standby};
use modsynth_protocol::setfile::{self, Connection};
use modsynth_protocol::status::{Counters, ModuleRole, ModuleStatus, StandbyWorker, StatusReport};
use rosc::{OscMessage, OscType};
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

pub use adopt::{AdoptedWorker, Saved};
use failover::Failover;
use jack_jobs::{JackJobs, Then};
pub use jack_jobs::{PatchJob, PATCH_DEADLINE};
use modules::Modules;
use patching::Patch;
use pool::Pool;
use requests::Requests;
use subscribers::Subscribers;
pub use switch::SavedPrepared;

/// A worker's identity inside the supervisor (its pool slot number).
pub type WorkerId = u32;

/// Who asked, for replies: an OSC sender.
pub type ReplyTo = SocketAddr;

/// A spawned, connected, ready worker.
#[derive(Debug)]
pub struct NewWorker {
    /// The core's number for it.
    pub id: WorkerId,
    /// Its process.
    pub pid: u32,
    /// Its JACK client name.
    pub client: String,
    /// Where the core sends it commands.
    pub commands: ipc_channel::ipc::IpcSender<ToWorker>,
    /// Time from spawn to hello.
    pub spawn_time: Duration,
    /// Seats it has, as its hello said: 0 for an ordinary worker, N for a standby
    /// host (started with [`Effects::spawn_host`]).
    pub seats: u16,
}

/// Something that happened, for the core to decide on.
#[derive(Debug)]
pub enum Event {
    /// A decoded (or refused) OSC message from `from`. `received` is the JACK frame at
    /// receipt; `at` the JACK frame its bundle's timetag names, if in the future.
    Osc {
        /// Where the reply goes.
        from: ReplyTo,
        /// The request, or why it was refused.
        request: Result<Request, Fail>,
        /// JACK frame time at receipt.
        received: u32,
        /// JACK frame its bundle's timetag names, if in the future.
        at: Option<u32>,
    },
    /// A worker finished starting.
    Spawned(NewWorker),
    /// A worker could not be started.
    SpawnFailed {
        /// The worker's number.
        id: WorkerId,
        /// What went wrong.
        reason: String,
    },
    /// A message from a worker.
    FromWorker(WorkerId, FromWorker),
    /// A worker's channel closed: it exited or was killed.
    WorkerGone(WorkerId),
    /// The sentinel saw a worker's process end (`how`: exit status or signal). The
    /// same death also arrives as `WorkerGone`; whichever comes first counts.
    WorkerDied {
        /// The worker's number.
        id: WorkerId,
        /// Exit status or signal.
        how: String,
    },
    /// New JACK ports exist: pending connections may now be made.
    PortsAppeared,
    /// Two JACK ports (by JACK port id) were connected or disconnected, by anyone.
    PortsConnected {
        /// One port's JACK id.
        a: u32,
        /// The other port's JACK id.
        b: u32,
        /// Connected (true) or disconnected.
        connected: bool,
    },
    /// A connection change asked through [`Effects::patch`] was made, or failed.
    Patched {
        /// The job's token ([`PatchJob::token`]).
        token: u64,
        /// Done, or why not.
        result: Result<(), String>,
    },
    /// The leak scan found this many leaked shared-memory segments.
    ShmLeaks(u64),
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
    /// Starts standby host `id` with `seats` seats in the background
    /// (`modsynth-worker --pool --seats N`); it arrives as `Spawned` (its hello
    /// says its seats) or `SpawnFailed`.
    fn spawn_host(&mut self, id: WorkerId, seats: u16);
    /// Kills a worker's process (it then arrives as `WorkerGone`). For a seat,
    /// that is its host's process: every seat of that host dies with it.
    fn kill(&mut self, worker: &WorkerLink);
    /// Connects or disconnects two JACK ports by full name.
    ///
    /// `Some(result)` when it was made (or refused) at once; `None` when it is
    /// under way off the core's thread (a JACK server may take long to answer, or
    /// never): its result arrives as [`Event::Patched`] with the job's token. The
    /// core fails it by itself once `job.due` has passed.
    fn patch(&mut self, job: &PatchJob) -> Option<Result<(), String>>;
    /// Whether a JACK port of that full name exists.
    fn port_exists(&mut self, name: &str) -> bool;
    /// Full names of the ports connected to `port`.
    fn connections(&mut self, port: &str) -> Vec<String>;
    /// Reads set file `name` from the sets directory (a checked name, never a path).
    fn read_file(&mut self, name: &str) -> Result<String, String>;
    /// Writes set file `name` in the sets directory atomically.
    fn write_file(&mut self, name: &str, contents: &str) -> Result<(), String>;
    /// The sets directory, for `/set/dir`.
    fn sets_dir(&mut self) -> String {
        String::new()
    }
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
    /// What worker `pid`, the owner of state segment `segment` (mapped by the last
    /// [`published_frames`](Self::published_frames)), is doing while it publishes
    /// nothing.
    fn silence(&mut self, segment: &str, pid: u32) -> Silence;
    /// The frame one state segment was last published at, leaving the other
    /// mappings alone (`None`: cannot map it, or not known).
    fn published_frame(&mut self, _segment: &str) -> Option<u32> {
        None
    }
    /// Control output `index` of an LV2 plugin module whose state segment is
    /// `segment`, as its owner last wrote it (`None`: cannot map it, or no such
    /// output).
    fn control_output(&mut self, _segment: &str, _index: usize) -> Option<f32> {
        None
    }
    /// The control and program changes that arrived at `midi_in` since the last
    /// call, oldest first.
    /// What arrived at `midi_in` since the last call.
    fn read_midi(&mut self) -> Vec<midi::MidiIn> {
        Vec::new()
    }
    /// How often `midi_in` is drained while something listens to it.
    fn midi_poll_interval(&mut self) -> Duration {
        Duration::from_millis(1)
    }
    /// OSC traffic counts for `/status` (the OSC thread keeps them).
    fn traffic(&mut self) -> modsynth_protocol::status::TrafficReport {
        Default::default()
    }
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
    /// The module's id.
    pub module: String,
    /// `/<instance>-<module>-state`.
    pub segment: String,
    /// The worker that plays the module (and owns the segment's contents).
    pub owner_pid: u32,
}

/// One worker as the registry lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisteredWorker {
    /// Its process.
    pub pid: u32,
    /// Its JACK client name.
    pub jack_client: String,
    /// What it does.
    pub role: RegisteredRole,
    /// The module it plays or stands by for.
    pub module: Option<String>,
}

/// A worker's role in the registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegisteredRole {
    /// In the pool, playing nothing.
    Spare,
    /// Plays a module.
    Primary,
    /// Stands by for a module.
    Standby,
}

/// How the core reaches one worker.
#[derive(Debug)]
pub struct WorkerLink {
    /// The core's number for it.
    pub id: WorkerId,
    /// Its process (a seat's: its host's).
    pub pid: u32,
    /// Its JACK client name (a seat's: its host's).
    pub client: String,
    /// Where the core sends it commands (a seat's: its host's channel).
    pub commands: ipc_channel::ipc::IpcSender<ToWorker>,
    /// `Some` for a seat of a standby host: what it is sent goes to its host
    /// wrapped in [`ToWorker::ToSeat`] (see [`WorkerLink::wrap`]).
    pub seat: Option<SeatOf>,
}

/// Which host and which of its seats a seat worker is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeatOf {
    /// The host's worker id.
    pub host: WorkerId,
    /// The seat's number on its host (0-based).
    pub seat: u16,
}

impl WorkerLink {
    /// `msg` as it goes over this link's channel: as it is for a worker, wrapped in
    /// [`ToWorker::ToSeat`] for a seat.
    ///
    /// ```
    /// use modsynth_supervisor::core::{SeatOf, WorkerLink};
    /// use modsynth_model::protocol::ToWorker;
    ///
    /// let (commands, _rx) = ipc_channel::ipc::channel().unwrap();
    /// let mut link = WorkerLink { id: 9, pid: 1, client: "ms-w03".into(), commands, seat: None };
    /// assert!(matches!(link.wrap(ToWorker::Shutdown), ToWorker::Shutdown));
    /// link.seat = Some(SeatOf { host: 3, seat: 2 });
    /// assert!(matches!(
    ///     link.wrap(ToWorker::Sync { token: 7 }),
    ///     ToWorker::ToSeat { seat: 2, message } if matches!(*message, ToWorker::Sync { token: 7 })
    /// ));
    /// ```
    pub fn wrap(&self, msg: ToWorker) -> ToWorker {
        match self.seat {
            Some(SeatOf { seat, .. }) => ToWorker::ToSeat {
                seat,
                message: Box::new(msg),
            },
            None => msg,
        }
    }
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
    /// A standby host: the process (and JACK client) behind its seats, which are
    /// workers of their own in the core. Never a spare, never a primary.
    Host,
    /// A seat of a standby host with no module, ready for a standby
    /// (`seats::Seats` keeps the free ones in order).
    EmptySeat,
}

struct Worker {
    link: WorkerLink,
    role: Role,
    last_report: Option<WorkerReport>,
    /// Asked for a report by a `/status` and not answered yet: `/status` marks
    /// what it shows of this worker as late.
    report_asked: bool,
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
    /// An LV2 plugin's own state (Turtle, see `plugin_states`): what a set load
    /// brought or the last `/set/save` took; every worker assigned to the module
    /// restores it. `None`: the plugin's default state.
    plugin_state: Option<String>,
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
    /// Parameters (bit per catalog index) changed while the primary was stalled
    /// and not sent yet: their values in `params` go out once it plays again.
    held: u32,
    /// The held values, by catalog index (only those with their bit in `held`).
    held_values: [f32; MAX_PARAMS],
    /// Where the hand-back of a module that plays in a seat (it failed over into
    /// one) to its standby stands; `None` for any other module.
    handback: Option<seats::HandBack>,
    /// The last published frame seen by a parameter change, and the changes sent
    /// since it (see [`SEND_BUDGET`]).
    last_frame: Option<u32>,
    sent_since_frame: u32,
}

// `Module::held` has a bit per parameter.
const _: () = assert!(MAX_PARAMS <= 32);

/// The `worker` of a module that has none (being replaced, or quarantined).
const NO_WORKER: WorkerId = WorkerId::MAX;

impl Module {
    /// A module played by `worker`, with nothing assigned yet besides: no ports
    /// confirmed, no standby worker, no links, no crashes and no held changes.
    fn new(
        spec: &'static ModuleSpec,
        worker: WorkerId,
        params: [f32; MAX_PARAMS],
        standby: Standby,
        state: String,
    ) -> Module {
        Module {
            spec,
            worker,
            params,
            ports: Vec::new(),
            standby,
            state,
            plugin_state: None,
            standby_worker: None,
            standby_ports: Vec::new(),
            links: Default::default(),
            history: CrashHistory::default(),
            quarantined: false,
            recovering_since: None,
            degraded_since: None,
            playing_since: None,
            held: 0,
            held_values: [0.0; MAX_PARAMS],
            handback: None,
            last_frame: None,
            sent_since_frame: 0,
        }
    }

    /// The supervisor's copy of every parameter value, as (catalog index, value).
    fn param_values(&self) -> Vec<(u16, f32)> {
        (0..self.spec.params.len())
            .map(|i| (i as u16, self.params[i]))
            .collect()
    }

    /// Whether its primary has played it for [`HEARTBEAT_GRACE`] at `now`: only
    /// then is it judged by what it publishes (its first period as the owner may
    /// take as long as an assignment).
    fn past_grace(&self, now: Instant) -> bool {
        self.playing_since
            .is_some_and(|t| now.duration_since(t) >= HEARTBEAT_GRACE)
    }

    /// `worker` took the module over at `now` and plays it on `ports`.
    fn taken_over_by(&mut self, worker: WorkerId, ports: Vec<String>, now: Instant) {
        self.worker = worker;
        self.ports = ports;
        self.history.took_over(now);
        self.playing_since = Some(now);
    }
}

/// Who is waiting for a create.
#[derive(Debug, Clone, Copy)]
enum Origin {
    /// An OSC client, answered with `/done` or `/fail`.
    Client(ReplyTo),
    /// A set being loaded (the token of its `Pending::Load`).
    Load(u64),
}

/// What a set load does once its last create is done.
enum AfterLoad {
    /// `/set/load`: answer.
    Answer,
    /// `/set/load ... atomic`: the rest of the load if every create succeeded,
    /// else undo the creates.
    Atomic(Box<sets::Deferred>),
    /// `/set/prepare`: the prepared set of this name is ready (or undone).
    Prepare(String),
}

enum Pending {
    Create {
        from: Origin,
        id: String,
        started: Instant,
        cold: bool,
    },
    Load {
        /// `None`: a program change asked for it.
        from: Option<ReplyTo>,
        path: String,
        creating: HashSet<String>,
        failures: Vec<String>,
        /// What happens once every create is done.
        then: AfterLoad,
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
        /// Answered by then with what the late workers said last.
        due: Instant,
    },
}

/// How long `/status` waits for workers' reports. A worker whose control thread
/// is busy (opening ports on a server that stalls) answers late; the status is
/// answered without it, with what it reported last, so that a user asking what
/// plays during trouble is told within a second (seen: 3 s without an answer
/// during a jackd2 stall).
pub const STATUS_DEADLINE: Duration = Duration::from_millis(750);

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

/// The first retry of a worker start that failed waits this long, each further
/// failure in a row twice as long (up to [`SPAWN_RETRY_MAX`]): a server busy
/// closing clients (seen: 64 at once during a `set load --replace`) refuses or
/// stalls opens for a moment, and retrying at once only adds to its queue.
pub const SPAWN_RETRY_BACKOFF: Duration = Duration::from_millis(50);

/// The longest wait between two tries of a failing worker start.
pub const SPAWN_RETRY_MAX: Duration = Duration::from_secs(1);

/// A create that has waited this long for a spare fails (with the last spawn
/// failure as its reason), alone: the others keep waiting. Three times a worker's
/// own start timeout, so a slow start or two does not fail anything.
pub const CREATE_WAIT_LIMIT: Duration = Duration::from_secs(30);

/// Periods a primary may fall behind the server's cycles without publishing its
/// state before the supervisor kills it as hung, if it is: stopped, or inside a
/// period it began that long ago (looping, blocked). Twice the standby's own limit:
/// a standby normally notices first and takes over; this catches modules without a
/// standby, and standbys that missed it.
pub const HANG_PERIODS: u32 = 32;

/// Periods a primary that is neither stopped nor inside a period may go uncalled,
/// while most modules play, before it is killed anyway: the server left it out of
/// its graph (a client jackd1 zombified). Shorter stalls of a worker that waits to
/// be called are the server's, or the machine's, and killing workers then only
/// adds starts to the server's load (seen: 8 healthy workers killed during a 3 s
/// jackd2 stall).
pub const ABANDONED_PERIODS: u32 = 16 * HANG_PERIODS;

/// What a worker whose module published nothing lately is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Silence {
    /// The process is stopped (SIGSTOP): it runs nothing.
    Stopped,
    /// Inside the period that began at this frame, which it has not finished.
    InPeriod(u32),
    /// Neither: waiting for the server to call it.
    Waiting,
}

/// How long a disconnection of a module port waits before the module's record of
/// its connections forgets it: long enough for the death of the worker that caused
/// it (JACK disconnects a dead client's ports) to be known by then.
pub const FORGET_LINK_DELAY: Duration = Duration::from_millis(250);

/// How long a `/notify 1` lasts: a subscriber that wants to go on hearing sends
/// it again before then (as scsynth clients renew theirs). Without an expiry every
/// address that ever subscribed would be sent every event forever, long after the
/// program behind it is gone (or to an address someone else's now).
pub const NOTIFY_TTL: Duration = Duration::from_secs(300);

/// Subscribers at most at once.
pub const MAX_SUBSCRIBERS: usize = 32;

/// Periods a primary may fall behind before parameter changes for it are held
/// back in the supervisor (the latest value of each kept) instead of sent: a
/// stopped worker reads nothing, and a few hundred changes fill its ipc socket,
/// after which a send would block the core (measured: `/status` unanswered for
/// seconds while a SIGSTOPped worker's module was flooded). Half the hang limit:
/// a worker this far behind is about to be taken over anyway.
pub const STALL_PERIODS: u32 = HANG_PERIODS / 2;

/// Immediate parameter changes sent to one worker between two periods it
/// publishes; more wait in the supervisor, the latest value of each parameter
/// kept, until it has played one (then the held values go out). A healthy worker
/// publishes every period, so this is 128 changes per period per module (24,000
/// a second at 256 frames); a stopped one gets no more than 128 before it is
/// noticed, which its ipc socket holds. Scheduled changes (bundles with a time)
/// are not counted: merging them would move them off their sample.
pub const SEND_BUDGET: u32 = 128;

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
    /// How many modules and JACK clients the instance may have.
    pub limits: Limits,
    /// Where standbys sit (`--standby-seats`).
    pub placement: crate::placement::Placement,
}

/// What one instance may use, checked before a create (`/fail ... limit: ...`): a
/// sender (or a set file) asking for module after module must not fill the
/// machine with processes or the JACK server's client table, which every other
/// JACK application on the server shares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Modules at most (`--max-modules`), created or waiting for a spare.
    pub max_modules: usize,
    /// JACK clients at most for modules and their standbys (the pool's spares come
    /// on top). jackd2's client table holds 256 for the whole server (the issue's
    /// run filled it at about 125 modules with standbys); 192 leaves room for every
    /// other application.
    pub jack_clients: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_modules: modsynth_protocol::capacity::DEFAULT_MAX_MODULES,
            jack_clients: modsynth_protocol::capacity::DEFAULT_MODULE_CLIENTS,
        }
    }
}

/// The supervisor's state.
pub struct Core {
    config: Config,
    workers: HashMap<WorkerId, Worker>,
    /// Spares and workers being started.
    pool: Pool,
    /// Standby hosts and their seats.
    seats: seats::Seats,
    /// The modules, and the creates waiting for a spare.
    modules: Modules,
    /// Connections wanted, disconnections to follow, changes asked of JACK.
    patch: Patch,
    /// Requests waiting for workers' answers.
    requests: Requests,
    /// `/notify` subscribers.
    subscribers: Subscribers,
    counters: Counters,
    /// Why the last worker start failed, for the creates that time out waiting.
    last_spawn_error: Option<String>,
    /// Spares owed to modules, creates retried, the heartbeat check's judgements.
    failover: Failover,
    /// Prepared sets by name, waiting for their switch.
    prepared: BTreeMap<String, switch::Prepared>,
    /// The set switch under way.
    switching: Option<switch::Switch>,
    /// A switch on a bar waiting for the seq's position.
    placing: Option<switch::BarSwitch>,
    /// Workers the last set switch freed, kept as spares beyond the usual limit
    /// for the next prepare.
    switch_reserve: usize,
    /// CC maps, a learn, program sets.
    midi: midi::Midi,
    /// When `midi_in` is drained next (`None`: nothing listens; drained with the
    /// heartbeat and dropped).
    next_midi_poll: Option<Instant>,
    /// Who waits for the answer of a `/map/learn`.
    learner: Option<ReplyTo>,
    /// LV2 plugin states: saves waiting for them, and those a load brought.
    plugin_states: plugin_states::PluginStates,
    shutting_down: bool,
}

impl Core {
    /// A core with no workers yet, set up by `config`.
    pub fn new(config: Config) -> Core {
        Core {
            config,
            workers: HashMap::new(),
            pool: Pool::default(),
            seats: seats::Seats::default(),
            modules: Modules::default(),
            patch: Patch::default(),
            requests: Requests::default(),
            subscribers: Subscribers::default(),
            counters: Counters::default(),
            last_spawn_error: None,
            failover: Failover::default(),
            prepared: BTreeMap::new(),
            switching: None,
            placing: None,
            switch_reserve: 0,
            midi: Default::default(),
            next_midi_poll: None,
            learner: None,
            plugin_states: Default::default(),
            shutting_down: false,
        }
    }

    /// Starts filling the pool.
    pub fn start(&mut self, fx: &mut impl Effects) {
        self.refill(fx);
    }

    /// Spares ready now.
    pub fn spares_ready(&self) -> usize {
        self.pool.spares()
    }

    /// Whether every worker has been told to stop.
    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down
    }

    /// Leaked shared-memory segments, as the last leak scan reported them.
    pub fn shm_leaks(&self) -> u64 {
        self.counters.shm_leaks
    }

    /// Modules known (playing, recovering or quarantined).
    pub fn module_count(&self) -> usize {
        self.modules.len()
    }

    /// Worker processes (standby hosts included, their seats not) still alive or
    /// starting.
    pub fn worker_count(&self) -> usize {
        self.processes() + self.pool.starting() + self.seats.starting()
    }

    /// Worker processes alive: every worker but seats (their host is the process).
    fn processes(&self) -> usize {
        self.workers
            .values()
            .filter(|w| w.link.seat.is_none())
            .count()
    }

    /// After a shutdown: every worker is gone.
    pub fn is_stopped(&self) -> bool {
        self.shutting_down
            && self.workers.is_empty()
            && self.pool.starting() == 0
            && self.seats.starting() == 0
    }

    /// Kills every worker still there (shutdown took too long); a seat's process
    /// is its host, killed once.
    pub fn kill_all(&mut self, fx: &mut impl Effects) {
        for w in self.workers.values().filter(|w| w.link.seat.is_none()) {
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
            Event::SpawnFailed { id, reason } => self.spawn_failed(id, reason, fx),
            Event::FromWorker(id, msg) => self.worker_said(id, msg, fx),
            Event::WorkerGone(id) => self.worker_gone(id, fx),
            Event::WorkerDied { id, how } => {
                if let Some(w) = self.workers.get(&id) {
                    tracing::info!("worker {} (pid {}) {how}", w.link.client, w.link.pid);
                }
                self.worker_gone(id, fx)
            }
            Event::PortsAppeared => self.make_wanted_connections(fx),
            Event::PortsConnected { a, b, connected } => self.graph_changed(a, b, connected, fx),
            Event::Patched { token, result } => self.patched(token, result, fx),
            Event::ShmLeaks(n) => self.counters.shm_leaks = n,
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
            Request::LoadSet {
                path,
                replace,
                atomic,
            } => self.load_set(Some(from), &path, replace, atomic, fx),
            Request::PrepareSet { path, name } => self.prepare_set(from, &path, &name, fx),
            Request::SwitchSet {
                name,
                fade_ms,
                on_bar,
            } => self.switch_set(from, &name, fade_ms, on_bar, at, fx),
            Request::SaveSet { path } => self.save_set(from, &path, fx),
            Request::SetsDir => {
                let dir = fx.sets_dir();
                fx.reply(from, osc::done("/set/dir", vec![osc::text(&dir)]))
            }
            Request::Status => self.status(from, fx),
            Request::Notify { on } => match self.subscribers.request(from, on, fx.now()) {
                Ok(()) => fx.reply(from, osc::done("/notify", vec![OscType::Int(on as i32)])),
                Err(reason) => fx.reply(from, Fail::new("/notify", reason).to_message()),
            },
            Request::Sync { id } => self.sync(from, id, fx),
            request @ (Request::MapCc { .. }
            | Request::Learn { .. }
            | Request::Unmap { .. }
            | Request::ListMaps) => self.map_request(from, request, fx),
        }
    }

    fn token(&mut self) -> u64 {
        self.requests.token()
    }

    fn worker_said(&mut self, wid: WorkerId, msg: FromWorker, fx: &mut impl Effects) {
        match msg {
            FromWorker::Hello { .. } | FromWorker::Adopted { .. } => {}
            FromWorker::FromSeat { seat, message } => self.seat_said(wid, seat, *message, fx),
            FromWorker::Assigned { token, result } => {
                let (from, id, started, cold) = match self.requests.remove(token) {
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
                self.failover.create_over(&id);
                match result {
                    Ok(ports) => {
                        let mut wants_standby = false;
                        let now = fx.now();
                        if let Some(m) = self.modules.get_mut(&id) {
                            m.ports = ports;
                            m.playing_since = Some(now);
                            wants_standby = m.standby == Standby::Hot;
                        }
                        if wants_standby && self.modules.waiting() > 0 {
                            // Primaries first: while creates wait for spares (a set
                            // being loaded), a standby would take the spare the next
                            // module needs to play. It follows once they are served.
                            self.failover.owe_standby(&id);
                        } else if wants_standby {
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
            FromWorker::TookOver { silent_frames } => {
                if let Some(id) = self.modules.played_by(wid).map(str::to_string) {
                    self.finish_recovery(&id, silent_frames, fx);
                } else {
                    // A standby that was told to take its module over from a seat.
                    self.handed_back(wid, silent_frames, fx);
                }
            }
            FromWorker::Promoted if self.shutting_down => {}
            FromWorker::Promoted => {
                // The standby took over: its primary died (its WorkerGone may still be
                // on the way) or hung. Killing it is harmless in the first case and
                // needed in the second; its death then fails the module over. A
                // primary in a seat is killed with its host, and every seat there.
                let hung = self.modules.primary_of_standby(wid);
                if let Some(primary) = hung.and_then(|p| self.workers.get(&p)) {
                    tracing::info!(
                        "standby took over from {}: making sure it is gone (dead or hung)",
                        primary.link.client
                    );
                    fx.kill(&primary.link);
                }
            }
            FromWorker::Freed { token } => {
                if let Some(Pending::Free { from, id }) = self.requests.remove(token) {
                    fx.reply(from, osc::done("/module/free", vec![osc::text(&id)]));
                }
                self.worker_freed(wid, fx);
            }
            FromWorker::PluginState { token, result } => {
                self.plugin_state_arrived(token, result, fx)
            }
            FromWorker::SeqPosition { token, position } => {
                self.seq_position_arrived(token, position, fx)
            }
            FromWorker::Synced { token } | FromWorker::Report { token, .. }
                if !self.requests.expects(token) => {}
            FromWorker::Synced { token } => self.answered(token, fx),
            FromWorker::Report { token, report } => {
                if let Some(w) = self.workers.get_mut(&wid) {
                    w.last_report = Some(report);
                    w.report_asked = false;
                }
                self.answered(token, fx);
            }
        }
    }

    fn answered(&mut self, token: u64, fx: &mut impl Effects) {
        if let Some(request_token) = self.requests.answered(token) {
            self.settle(request_token, fx);
        }
    }

    fn worker_gone(&mut self, wid: WorkerId, fx: &mut impl Effects) {
        // A host's seats go with it.
        let seats = self.seats.seats_of(wid);
        self.handle_departure(wid, fx);
        // Sync and status requests stop waiting for answers this worker owed, however
        // it left; only now, so that a status answered here sees the state after the
        // departure was dealt with (a failover done, not half done).
        for gone in std::iter::once(wid).chain(seats) {
            let owed = self.requests.owed_by(gone);
            for token in owed {
                self.answered(token, fx);
            }
            self.plugin_states_lost(gone, fx);
        }
    }

    fn notify(&self, fx: &mut impl Effects, msg: OscMessage) {
        let now = fx.now();
        for to in self.subscribers.current(now) {
            fx.reply(to, msg.clone());
        }
    }

    /// Does what has come due (a delayed refill). The main loop calls it on every
    /// wake-up; [`Core::next_deadline`] says when it must wake at the latest.
    pub fn tick(&mut self, fx: &mut impl Effects) {
        let now = fx.now();
        if self.pool.refill_due(now) {
            self.refill(fx);
        }
        if self.failover.heartbeat_due(now) {
            self.check_heartbeats(fx);
            self.expire_waiting(fx);
            self.send_held(false, fx);
            if self.next_midi_poll.is_none() {
                self.poll_midi(fx);
            }
        }
        if self.next_midi_poll.is_some() {
            self.poll_midi(fx);
        }
        self.answer_late_statuses(fx);
        self.advance_handbacks(fx);
        self.follow_disconnections(fx);
        self.follow_switch(fx);
        self.expire_bar_switch(fx);
        self.expire_patches(fx);
        self.expire_plugin_state_saves(fx);
    }

    /// When [`Core::tick`] has something to do next.
    pub fn next_deadline(&self) -> Option<Instant> {
        [
            self.pool.refill_deadline(),
            self.failover.heartbeat_deadline(),
            self.switch_deadline(),
            self.placing.as_ref().map(|p| p.due),
            self.next_midi_poll,
            self.patch.jobs.deadline(),
            self.plugin_states.deadline(),
        ]
        .into_iter()
        .flatten()
        .min()
    }
}

/// `/fail address id reason`.
fn fail(address: &str, id: &str, reason: &str) -> OscMessage {
    osc::message(
        "/fail",
        vec![osc::text(address), osc::text(id), osc::text(reason)],
    )
}

mod adopt;
mod bars;
mod failover;
mod jack_jobs;
mod maps;
pub mod midi;
mod modules;
mod patching;
mod plugin_states;
mod pool;
mod reports;
mod requests;
mod seats;
mod sets;
mod subscribers;
mod switch;
#[cfg(test)]
mod tests;

//! Messages between `modsynthd` and its pooled workers, sent over `ipc-channel`.
//!
//! Bootstrap: the supervisor makes an `IpcOneShotServer<FromWorker>` and starts
//! `modsynth-worker --pool --client <name> --connect <server name>`. The worker opens
//! and activates its JACK client, makes its own `ToWorker` channel, connects to the
//! server and sends [`FromWorker::Hello`] carrying the sending end of that channel.
//! From then on the supervisor sends [`ToWorker`] and receives [`FromWorker`]. A
//! worker that dies closes its channel: the supervisor sees the receive fail.
//!
//! Requests that expect an answer carry a `token` the answer repeats.
//!
//! ```
//! use modsynth_model::protocol::{Role, ToWorker};
//!
//! // Play osc1 as a vco at 220 Hz (parameter 0), creating its state segment.
//! let assign = ToWorker::Assign {
//!     token: 7,
//!     id: "osc1".into(),
//!     module_type: "vco".into(),
//!     params: vec![(0, 220.0)],
//!     role: Role::Primary,
//!     state: "/live-osc1-state".into(),
//!     plugin_state: None,
//! };
//! assert!(matches!(assign, ToWorker::Assign { role: Role::Primary, .. }));
//! ```

use serde::{Deserialize, Serialize};

/// Supervisor -> worker.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub enum ToWorker {
    /// Play module `module_type` as `id`: register its ports, alias each port
    /// `<id>:<port>`, set the JACK pretty-names of client and ports to the id, apply
    /// `params` (index, value; already validated) and swap it into the callback.
    /// Answered by [`FromWorker::Assigned`].
    Assign {
        /// Repeated by the answer.
        token: u64,
        /// The module's id.
        id: String,
        /// Its catalog type.
        module_type: String,
        /// Parameter values to start with: (index, value), already validated.
        params: Vec<(u16, f32)>,
        /// Primary (plays; names its ports) or standby (silent until it takes over).
        role: Role,
        /// The module's state segment (`/<instance>-<id>-state`): a primary creates
        /// it, a standby or a replacement opens it. Every module has one (an
        /// assignment without a valid segment name fails).
        state: String,
        /// An LV2 plugin's own state (the Turtle text `set save` took from a
        /// playing instance of it), restored before the module plays: by a
        /// primary, its standby and every later replacement alike. `None`: the
        /// plugin starts from its default state.
        #[serde(default)]
        plugin_state: Option<String>,
    },
    /// The worker now plays module `id` (a standby that took over, or a replacement):
    /// give its ports the module's aliases and pretty-names. Answered by
    /// [`FromWorker::TookOver`] once its first period as the owner has run.
    TakeNames {
        /// The module's id.
        id: String,
    },
    /// Set parameter `index` (already validated) at JACK frame `at`, or as soon as
    /// possible. `received` is the JACK frame time at which the supervisor received the
    /// request; the worker counts the latency from it to the frame the change lands on.
    SetParam {
        /// The parameter's index (catalog order).
        index: u16,
        /// Its new value.
        value: f32,
        /// The JACK frame it applies on; `None`: as soon as possible.
        at: Option<u32>,
        /// The JACK frame time the supervisor received the request at.
        received: u32,
    },
    /// Move the module's output gate (a gain on all its outputs) to `gain` (0 muted,
    /// 1 open), ramping over `fade_ms` from JACK frame `at` (`None`: at once).
    /// A set switch closes the outgoing set's gates and opens the incoming set's on
    /// the same frame. A newly assigned module starts open. No answer.
    Gate {
        /// 0 (muted) to 1 (open).
        gain: f32,
        /// The JACK frame the ramp starts on; `None`: as soon as possible.
        at: Option<u32>,
        /// How long the ramp takes, ms (0: a step).
        fade_ms: u32,
    },
    /// The module now has id `id` (a prepared set's module after the switch): give
    /// the ports of a primary the aliases and pretty-names of the new id, label a
    /// standby's with it. No answer.
    Rename {
        /// The module's new id.
        id: String,
    },
    /// Answer [`FromWorker::Synced`] once every `SetParam` sent before this one has
    /// been applied by the real-time thread.
    Sync {
        /// Repeated by the answer.
        token: u64,
    },
    /// Stop playing the module: remove it from the callback, unregister its ports,
    /// aliases and metadata. Answered by [`FromWorker::Freed`].
    Free {
        /// Repeated by the answer.
        token: u64,
    },
    /// Answer [`FromWorker::Report`] with the current counters.
    Report {
        /// Repeated by the answer.
        token: u64,
    },
    /// Answer [`FromWorker::PluginState`] with the playing LV2 plugin's own state
    /// (`set save`). The worker's control thread saves it while the audio thread
    /// plays on (the LV2 state spec allows `save` concurrently with `run`).
    SavePluginState {
        /// Repeated by the answer.
        token: u64,
    },
    /// Answer [`FromWorker::SeqPosition`] with the position a `seq` module
    /// published last (for a switch on its bar).
    SeqPosition {
        /// Repeated by the answer.
        token: u64,
    },
    /// For a standby host (a worker that said `seats > 0` in its hello): the
    /// message is for seat `seat` (0-based, below the seats it has), which acts on
    /// it as a worker of its own would and answers inside
    /// [`FromWorker::FromSeat`]. A seat only ever stands by: it is assigned with
    /// [`Role::Standby`] (any other role, or a module that must run in lockstep,
    /// such as an LV2 plugin, is refused in `Assigned`), may take its module over
    /// (its primary died: [`FromWorker::Promoted`]), plays it until it hands it to
    /// a worker of its own ([`ToWorker::TakeOverAt`] to that worker, then
    /// [`ToWorker::StandBy`] to the seat), and is freed like any module. A message
    /// for a seat that does not exist is logged and dropped; `Shutdown` and a
    /// nested `ToSeat` inside one are ignored.
    ToSeat {
        /// Which seat.
        seat: u16,
        /// What for it.
        message: Box<ToWorker>,
    },
    /// For a standby whose primary is alive (a standby host's seat that plays the
    /// module since a failover): take the module over on the first period that
    /// starts at or after JACK frame `at` and after this message arrived, and give
    /// the ports the module's names (as [`ToWorker::TakeNames`]). The primary plays
    /// every period before that one and is silent from it on, so no frame is
    /// missing or played twice: the handover is written into the state segment,
    /// where both workers' callbacks read it at the start of every period. The
    /// worker stops watching its primary. Answered by [`FromWorker::TookOver`].
    TakeOverAt {
        /// The JACK frame from which this worker plays.
        at: u32,
        /// The module's id.
        id: String,
    },
    /// The module this worker played now plays in `primary_pid` (which took it
    /// over with [`ToWorker::TakeOverAt`]): drop the module's names from the ports
    /// (aliases, pretty-names), label them as its standby, and watch
    /// `primary_pid` as a standby watches its primary. No answer.
    StandBy {
        /// The process that now plays the module.
        primary_pid: u32,
    },
    /// Close the JACK client and exit.
    Shutdown,
}

impl ToWorker {
    /// The message's name, for logs: not its contents (an assignment can carry a
    /// whole plugin state).
    ///
    /// ```
    /// use modsynth_model::protocol::ToWorker;
    ///
    /// assert_eq!(ToWorker::Shutdown.kind(), "shutdown");
    /// assert_eq!(ToWorker::Free { token: 3 }.kind(), "free");
    /// ```
    pub fn kind(&self) -> &'static str {
        match self {
            ToWorker::Assign { .. } => "assign",
            ToWorker::TakeNames { .. } => "take-names",
            ToWorker::SetParam { .. } => "set-param",
            ToWorker::Gate { .. } => "gate",
            ToWorker::Rename { .. } => "rename",
            ToWorker::Sync { .. } => "sync",
            ToWorker::Free { .. } => "free",
            ToWorker::Report { .. } => "report",
            ToWorker::SavePluginState { .. } => "save-plugin-state",
            ToWorker::SeqPosition { .. } => "seq-position",
            ToWorker::ToSeat { .. } => "to-seat",
            ToWorker::TakeOverAt { .. } => "take-over-at",
            ToWorker::StandBy { .. } => "stand-by",
            ToWorker::Shutdown => "shutdown",
        }
    }
}

/// What an assignment makes of a worker.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub enum Role {
    /// Plays the module and names its ports.
    Primary,
    /// Watches `primary_pid` and takes the module over when it dies.
    Standby {
        /// The process of the primary it watches.
        primary_pid: u32,
    },
    /// Replaces a primary that died without a ready standby: opens the existing
    /// state segment, takes the module over at once (its old owner is dead) and
    /// continues from the last published state. Ports are named by a later
    /// [`ToWorker::TakeNames`].
    Replacement,
}

/// Worker -> supervisor.
#[derive(Debug, Serialize, Deserialize)]
pub enum FromWorker {
    /// First message: the worker's JACK client is open and active, playing silence.
    Hello {
        /// The worker's process.
        pid: u32,
        /// Its JACK client name.
        client: String,
        /// Where the supervisor sends it commands.
        commands: ipc_channel::ipc::IpcSender<ToWorker>,
        /// 0: an ordinary worker, one module at a time. N > 0: a standby host,
        /// one JACK client standing by for up to N modules, each in a seat
        /// addressed with [`ToWorker::ToSeat`] (`modsynth-worker --pool --seats N`).
        #[serde(default)]
        seats: u16,
    },
    /// The module's ports are registered and named, and the module is on its way to
    /// the audio thread, which plays it from its next period (this reply does not
    /// wait for that period). `ports` are its full JACK port names, catalog order.
    Assigned {
        /// The `Assign`'s token.
        token: u64,
        /// The port names, or why the module could not be assigned.
        result: Result<Vec<String>, String>,
    },
    /// Every `SetParam` before the matching `Sync` has been applied.
    Synced {
        /// The `Sync`'s token.
        token: u64,
    },
    /// The module is gone; the worker is blank again and may be reused.
    Freed {
        /// The `Free`'s token.
        token: u64,
    },
    /// A `seq`'s position, as asked for by `SeqPosition` (`None`: this worker
    /// plays no seq, or its state cannot be read).
    SeqPosition {
        /// The request's token.
        token: u64,
        /// Where it was.
        position: Option<SeqPosition>,
    },
    /// The playing LV2 plugin's own state, as asked for by `SavePluginState`:
    /// Turtle text, `None` for a module without one (built-in, or a plugin
    /// without the state extension), or why it could not be saved.
    PluginState {
        /// The request's token.
        token: u64,
        /// The state, none, or the reason.
        result: Result<Option<String>, String>,
    },
    /// Counters, as asked for by `Report`.
    Report {
        /// The `Report`'s token.
        token: u64,
        /// The counters.
        report: WorkerReport,
    },
    /// This standby saw its primary die and took the module over (the state's owner
    /// word is now this worker's pid).
    Promoted,
    /// Answer to [`ToWorker::TakeNames`] and [`ToWorker::TakeOverAt`]: the ports carry the module's names and the
    /// worker has played its first period as the owner. `silent_frames`: the frames
    /// of the periods it ran silent after the end of the last period its predecessor
    /// published (0: no sample missing; cycles the server skipped are not counted);
    /// `None` if the first owned period did not come within a second.
    TookOver {
        /// Frames the new owner ran silent (see above).
        silent_frames: Option<u32>,
    },
    /// From seat `seat` of a standby host: what that seat says, as an ordinary
    /// worker would say it (never `Hello`, `Adopted` or a nested `FromSeat`).
    FromSeat {
        /// Which seat.
        seat: u16,
        /// What it says.
        message: Box<FromWorker>,
    },
    /// Answer to an [`Adoption`]: who the worker is and what it plays.
    Adopted {
        /// The worker's process.
        pid: u32,
        /// Its JACK client name.
        client: String,
        /// The module it plays, if any.
        playing: Option<Playing>,
    },
}

/// The first message a new supervisor sends to a running worker it takes back
/// ("adopts") after the previous supervisor died, over the worker's
/// `IpcOneShotServer` (whose name the worker publishes in the instance's state dir,
/// see `modsynth_worker::pooled`). It carries both directions of the new channel:
/// from then on the worker serves `commands` and answers on `supervisor`, starting
/// with [`FromWorker::Adopted`].
#[derive(Debug, Serialize, Deserialize)]
pub struct Adoption {
    /// Where the worker answers from now on.
    pub supervisor: ipc_channel::ipc::IpcSender<FromWorker>,
    /// What the worker serves from now on.
    pub commands: ipc_channel::ipc::IpcReceiver<ToWorker>,
}

/// What an adopted worker plays, as it reports it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Playing {
    /// The module's id.
    pub id: String,
    /// Its catalog type (`vco`, ...).
    pub module_type: String,
    /// The role it was assigned (a standby that took over since still says
    /// standby: `owner` tells).
    pub role: Role,
    /// Its state segment.
    pub state: String,
    /// Whether the segment's owner word names this worker: it is the one playing.
    pub owner: bool,
    /// Full JACK port names, catalog order.
    pub ports: Vec<String>,
    /// Parameter values (catalog order) from the last published state.
    pub params: Vec<f32>,
}

/// A `seq` module's position as it published it for its standby: where its
/// steps fall in JACK frames while the tempo stays.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct SeqPosition {
    /// The JACK frame the state holds at (the end of the period that wrote it).
    pub frame: u32,
    /// Samples played since its last tempo change.
    pub samples: u64,
    /// Its position, in steps, at the last tempo change.
    pub origin: f64,
    /// bpm * div it counts with (0: it has not played yet).
    pub rate: f64,
    /// The sample rate it plays at, Hz.
    pub sample_rate: f64,
}

/// What became of the parameter changes sent to a worker: every change received is
/// applied, dropped or coalesced, so nothing is lost without being counted.
///
/// In `/status` JSON its fields sit flat beside the module's others, as
/// `params_received`, `params_applied`, `params_dropped` and `params_coalesced`.
///
/// ```
/// use modsynth_model::protocol::ParamTraffic;
/// let t = ParamTraffic { received: 3, applied: 2, dropped: 0, coalesced: 1 };
/// let json = serde_json::to_string(&t).unwrap();
/// assert_eq!(json, r#"{"params_received":3,"params_applied":2,"params_dropped":0,"params_coalesced":1}"#);
/// ```
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ParamTraffic {
    /// Changes received from the supervisor.
    #[serde(rename = "params_received")]
    pub received: u64,
    /// Changes the audio thread applied.
    #[serde(rename = "params_applied")]
    pub applied: u64,
    /// Of those received, scheduled ones dropped because the audio thread's ring
    /// was full.
    #[serde(rename = "params_dropped", default)]
    pub dropped: u64,
    /// Of those received, replaced by a newer value of the same parameter while
    /// the audio thread's ring was full (the last value wins, as a knob wants).
    #[serde(rename = "params_coalesced", default)]
    pub coalesced: u64,
}

/// What a worker counts about itself.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct WorkerReport {
    /// The worker's process.
    pub pid: u32,
    /// Its JACK client name.
    pub client: String,
    /// Periods processed.
    pub cycles: u64,
    /// Xruns the worker's JACK client was told of.
    pub xruns: u64,
    /// What became of the parameter changes sent to it.
    pub params: ParamTraffic,
    /// Latency from the supervisor's receipt to the sample a change landed on, in
    /// samples (50th, 95th, 99th percentile; 0 when nothing was measured).
    pub latency_p50: u32,
    /// See `latency_p50`.
    pub latency_p95: u32,
    /// See `latency_p50`.
    pub latency_p99: u32,
    /// Changes applied whose latency is missing from those percentiles: the ring
    /// that carries latencies off the audio thread was full.
    #[serde(default)]
    pub latencies_unrecorded: u64,
    /// Share of the wall time this worker's process callback ran since the last
    /// report, %: the module's own DSP load (JACK's `cpu_load` is the whole server's).
    pub dsp_load: f32,
    /// CPU time of the whole process since the last report, % of one core.
    pub cpu_percent: f32,
    /// Resident memory, KiB.
    pub rss_kib: u64,
    /// Non-finite samples (NaN, inf) the module's LV2 plugin wrote, each replaced
    /// by silence before it left the worker.
    #[serde(default)]
    pub non_finite: u64,
}

/// A pooled worker's card, `<state dir>/workers/<client>.json`, written by the worker
/// (atomically, again after every adoption): how a new supervisor finds it and
/// checks it is who it says before taking it back.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct WorkerCard {
    /// The worker's process.
    pub pid: u32,
    /// See `modsynth_process::process_start_time`: with the pid, it names one process for ever.
    pub start_time: u64,
    /// Its JACK client name, `<instance>-wNN`.
    pub client: String,
    /// The name of its `IpcOneShotServer<Adoption>`.
    pub server: String,
    /// The JACK server it plays on (`modsynth_process::jack_server_name`): a supervisor on another
    /// server does not adopt it.
    #[serde(default)]
    pub jack_server: String,
}

/// The directory of the worker cards in a state dir.
pub const WORKER_CARDS_DIR: &str = "workers";

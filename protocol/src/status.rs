//! What `/status` reports: the supervisor's counters and every module's numbers.
//!
//! `/status.reply` carries one JSON string of a [`StatusReport`]; `modsynth status`
//! prints it as a table.

use modsynth_model::histogram::Histogram;
use modsynth_model::protocol::ParamTraffic;
use serde::{Deserialize, Serialize};

/// Pool and timing counters reported by `/status`.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Counters {
    /// Modules created since `modsynthd` started.
    pub creates: u64,
    /// Of those, creates that had to wait for a worker to start (no spare was ready).
    pub cold_creates: u64,
    /// Workers that could not be started.
    pub spawn_failures: u64,
    /// Workers that died without being told to (killed, crashed, hung).
    #[serde(alias = "worker_deaths")]
    pub crash_count: u64,
    /// Modules whose standby took over after their primary died.
    #[serde(default)]
    pub failovers: u64,
    /// Modules whose primary died without a ready standby and that a pool spare
    /// took over (from their shared state, or fresh after a crash loop).
    #[serde(default)]
    pub replacements: u64,
    /// Modules restarted from a fresh state because they kept crashing.
    #[serde(default)]
    pub fresh_restarts: u64,
    /// Modules quarantined: left silent because they kept crashing after a fresh restart.
    #[serde(default)]
    pub quarantined: u64,
    /// Time from a `/module/new` to its reply, ms.
    pub create_time_ms: Percentiles,
    /// Time from starting a worker to its hello, ms.
    pub spawn_time_ms: Percentiles,
    /// From the supervisor learning of a primary's death to the replacement having
    /// its names and its first period as the owner played.
    #[serde(default)]
    pub failover_time_ms: Percentiles,
    /// Frames a module's new owner ran silent at a takeover, after the last period
    /// its predecessor published (see `FromWorker::TookOver`): no less than what a
    /// listener missed. Called `failover_gap_frames` before, when it also counted
    /// the cycles the server skipped.
    #[serde(default, alias = "failover_gap_frames")]
    pub failover_silent_frames: Percentiles,
    /// From a module losing a worker to it having a ready standby again.
    #[serde(default)]
    pub rebuild_time_ms: Percentiles,
    /// Leaked shared-memory segments of the instance, as the last leak scan found
    /// them (filled by the runtime in `metrics.json`; the scan runs every few seconds).
    #[serde(default)]
    pub shm_leaks: u64,
    /// Parameter changes replaced in the supervisor by a newer value of the same
    /// parameter before they were sent: the module's worker was not taking them
    /// (stopped, or more than 128 changes in one period); the latest value is
    /// sent once it has played a period, or to its replacement.
    #[serde(default)]
    pub params_held_back: u64,
    /// Modules handed back from the seat of a standby host they had failed over
    /// into to a worker of their own, without a gap (`TakeOverAt`).
    #[serde(default)]
    pub handbacks: u64,
    /// Standby hosts that could not be started (also counted in `spawn_failures`).
    #[serde(default)]
    pub host_spawn_failures: u64,
}

/// The median and p99 of every sample since the supervisor started, and the last
/// one, as `/status` reports them (see [`Histogram`] for their precision).
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Percentiles {
    /// The latest sample.
    pub last: f64,
    /// The median of all samples.
    pub p50: f64,
    /// The 99th percentile of all samples.
    pub p99: f64,
    #[serde(skip)]
    samples: Histogram,
}

impl Percentiles {
    /// Adds a sample and updates `last`, `p50` and `p99`.
    ///
    /// ```
    /// let mut create_ms = modsynth_protocol::status::Percentiles::default();
    /// for ms in [3.0, 4.0, 5.0, 40.0] {
    ///     create_ms.record(ms);
    /// }
    /// assert_eq!((create_ms.last, create_ms.p50, create_ms.p99), (40.0, 4.0, 40.0));
    /// ```
    pub fn record(&mut self, value: f64) {
        self.samples.record(value);
        self.last = value;
        self.p50 = self.samples.quantile(0.5).unwrap_or(value);
        self.p99 = self.samples.quantile(0.99).unwrap_or(value);
    }
}

/// `/status.reply`'s content.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct StatusReport {
    /// Spares the pool keeps ready (`--pool`).
    pub pool_size: usize,
    /// Spares ready now.
    pub spare_ready: usize,
    /// Worker processes alive: spares, primaries, standbys, standby hosts and those
    /// stopping (a host's seats are not counted: the host is their process).
    pub workers: usize,
    /// Standby hosts alive (`modsynthd --standby-seats N`; 0 when seats are off).
    #[serde(default)]
    pub standby_hosts: usize,
    /// Seats of standby hosts without a module, ready for a standby.
    #[serde(default)]
    pub free_seats: usize,
    /// Every module.
    pub modules: Vec<ModuleStatus>,
    /// The counters since `modsynthd` started.
    pub counters: Counters,
    /// What arrived over OSC and what became of it.
    #[serde(default)]
    pub traffic: TrafficReport,
}

/// OSC traffic: by sender, what was received, refused and dropped, and what was
/// lost before any sender could be known.
///
/// For every sender, `received = accepted + refused + dropped`: a message is
/// counted once when it arrives, and again as `refused` (answered with `/fail`) or
/// `dropped` (the queue to the core was full: answered with `/fail / busy`).
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrafficReport {
    /// Datagrams the kernel dropped because the socket's receive buffer was full
    /// (`SO_RXQ_OVFL`); their senders are unknown.
    pub kernel_drops: u64,
    /// Packets from senders outside `--allow`: ignored and not answered.
    pub not_allowed: u64,
    /// Bundles refused because their timetag was beyond the scheduling horizon.
    pub far_future: u64,
    /// Messages waiting for the core now.
    pub queued: u64,
    /// The most messages that may wait for the core; more are dropped.
    pub queue_limit: u64,
    /// The socket's receive buffer, in bytes, as the kernel granted it.
    pub receive_buffer: u64,
    /// Counts by sender IP address (`other` once too many senders were seen).
    pub sources: std::collections::BTreeMap<String, SourceCounts>,
}

/// One sender's messages.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceCounts {
    /// Messages (or undecodable packets) that arrived.
    pub received: u64,
    /// Answered with `/fail` (malformed, invalid, unknown module, ...).
    pub refused: u64,
    /// Dropped because the queue to the core was full (answered `/fail / busy`).
    pub dropped: u64,
}

/// Where a module stands, in `/status.reply` (`"primary"`, `"recovering"`,
/// `"quarantined"`).
///
/// ```
/// use modsynth_protocol::status::ModuleRole;
///
/// assert_eq!(serde_json::to_string(&ModuleRole::Recovering).unwrap(), r#""recovering""#);
/// assert_eq!(ModuleRole::Quarantined.to_string(), "quarantined");
/// ```
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModuleRole {
    /// A primary worker plays it.
    #[default]
    Primary,
    /// Its worker died and no other has taken it over yet.
    Recovering,
    /// It kept crashing after a fresh restart: left silent.
    Quarantined,
}

impl std::fmt::Display for ModuleRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ModuleRole::Primary => "primary",
            ModuleRole::Recovering => "recovering",
            ModuleRole::Quarantined => "quarantined",
        })
    }
}

/// A module's ready hot standby in `/status.reply`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StandbyWorker {
    /// Its JACK client name.
    pub client: String,
    /// Its process id.
    pub pid: u32,
}

/// One module in `/status.reply`.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct ModuleStatus {
    /// The module's id.
    pub id: String,
    /// Its type.
    pub module_type: String,
    /// Whether a primary plays it, it waits for one, or it was given up on.
    pub role: ModuleRole,
    /// The primary's process id (0 while it has none).
    pub pid: u32,
    /// The primary's JACK client name.
    pub jack_client: String,
    /// The hot standby, once it is ready (`None` without one, or while it starts).
    #[serde(default)]
    pub standby_worker: Option<StandbyWorker>,
    /// The module's ports: module port name -> full JACK port name of the primary
    /// (`out` -> `modsynth-w07:out_1`; workers keep generic port names, the module's
    /// names are aliases and pretty-names). Empty while it has no primary.
    #[serde(default)]
    pub ports: std::collections::BTreeMap<String, String>,
    /// Whether the module wants a hot standby.
    pub standby: bool,
    /// Whether it plays in a seat of a standby host (`modsynthd --standby-seats`):
    /// its standby there took it over after its own worker died, until it is handed
    /// back to a worker of its own (a few periods once that worker's connections
    /// are made).
    #[serde(default)]
    pub in_seat: bool,
    /// Its worker did not answer this `/status` in time (750 ms; busy, such as
    /// opening ports on a stalling server): the counters below are the ones it
    /// reported last (zeros if it never did).
    #[serde(default)]
    pub report_late: bool,
    /// What became of the parameter changes sent to the primary.
    #[serde(flatten)]
    pub params: ParamTraffic,
    /// p50, p95, p99 in samples.
    pub latency_samples: [u32; 3],
    /// Changes applied whose latency is missing from `latency_samples` (the ring
    /// that carries latencies off the primary's audio thread was full).
    #[serde(default)]
    pub latencies_unrecorded: u64,
    /// Xruns the primary's JACK client saw.
    pub xruns: u64,
    /// Share of the wall time the primary's process callback ran since the last
    /// report, %: the module's own DSP load, not the server's.
    pub dsp_load: f32,
    /// CPU time of the primary's whole process since its last report, % of one core.
    pub cpu_percent: f32,
    /// The primary's resident memory, KiB.
    pub rss_kib: u64,
    /// Non-finite samples (NaN, inf) the primary's LV2 plugin wrote, replaced by
    /// silence (muted and counted, never passed on).
    #[serde(default)]
    pub non_finite: u64,
}

impl StatusReport {
    /// The real JACK port that plays module port `name` (`echo1:out`) now; `None` if
    /// `name` is not a port of a module in this report (a foreign JACK port) or the
    /// module has no primary just now.
    ///
    /// ```
    /// use modsynth_protocol::status::{ModuleStatus, StatusReport};
    ///
    /// let mut echo = ModuleStatus { id: "echo1".into(), ..Default::default() };
    /// echo.ports.insert("out".into(), "modsynth-w04:out_1".into());
    /// let report = StatusReport { modules: vec![echo], ..Default::default() };
    /// assert_eq!(report.real_port("echo1:out").as_deref(), Some("modsynth-w04:out_1"));
    /// assert_eq!(report.real_port("system:playback_1"), None);
    /// ```
    pub fn real_port(&self, name: &str) -> Option<String> {
        let (id, port) = name.split_once(':')?;
        let m = self.modules.iter().find(|m| m.id == id)?;
        m.ports.get(port).filter(|p| !p.is_empty()).cloned()
    }
}

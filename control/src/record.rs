//! Recording JACK ports: [`Recorder`], the one JACK recorder modsynth has (the
//! test harness's capture client is one too), and [`record`], `modsynth record`:
//! a recorder streaming into a WAV file.
//!
//! A [`Recorder`] is a JACK client with one input per channel. Its process callback
//! only copies each period into preallocated `rtrb` rings (one per channel) and
//! pushes the period's frame time into another: no allocation, no lock, no
//! blocking. If the rings are full it drops the whole period and counts it. The
//! reader ([`Periods`]) takes whole periods off the rings with their frame times, so
//! a lost period shows as a jump in frame time instead of being spliced out.
//!
//! [`record`] drains a recorder into a WAV file, so a long recording needs no
//! memory beyond the rings, and a slow disk shows up as counted dropped frames,
//! never as an xrun. A channel's source is either an output port (recorded
//! directly) or an input port such as `system:playback_1`: then the recorder
//! records whatever is connected to it, and keeps following as connections come and
//! go (checked every 50 ms).
//!
//! Module port names (`echo1:out`) are resolved by the caller's `resolve` (the CLI
//! asks `modsynthd`), not by JACK: PipeWire's JACK does not see the aliases workers
//! give their ports. They are resolved again every second, so a recording follows
//! a module to the worker that took it over (its standby was already connected to
//! the recorder as a mirror of the primary's connection, so nothing is lost).
//!
//! The file is written under a temporary name next to `path` and renamed when it is
//! complete: a recording that fails never leaves a broken WAV under `path`.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Seconds of audio each channel ring of a [`Recorder`] holds: far more than a
/// period, so only a reader stalled that long (a stalled disk) loses periods.
pub const RING_SECONDS: u32 = 2;

/// The frame time and length of one recorded period.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeriodInfo {
    /// JACK frame time of the period's first frame (`jack_last_frame_time`).
    pub frame: u32,
    /// Frames in the period.
    pub n_frames: u32,
    /// Frames the real-time side had dropped (rings full) when this period was
    /// stored: frames dropped between two periods are the difference.
    pub dropped_before: u64,
}

/// What the real-time callback owns.
struct Process {
    ports: Vec<jack::Port<jack::AudioIn>>,
    rings: Vec<rtrb::Producer<f32>>,
    periods: rtrb::Producer<PeriodInfo>,
    counters: Arc<Counters>,
}

/// Counters the callbacks keep and any thread reads.
#[derive(Default)]
struct Counters {
    /// Frames dropped because the rings were full.
    dropped_frames: AtomicU64,
    /// xruns the server reported.
    xruns: AtomicU64,
    /// The server shut down (or threw the client out).
    stopped: AtomicBool,
}

impl jack::ProcessHandler for Process {
    fn process(&mut self, _: &jack::Client, ps: &jack::ProcessScope) -> jack::Control {
        let n = ps.n_frames() as usize;
        let fits = self.periods.slots() >= 1 && self.rings.iter().all(|r| r.slots() >= n);
        if !fits {
            let dropped = &self.counters.dropped_frames;
            dropped.fetch_add(n as u64, Ordering::Relaxed);
            return jack::Control::Continue;
        }
        for (port, ring) in self.ports.iter().zip(self.rings.iter_mut()) {
            // Cannot fail: the space was checked above and only this thread writes.
            let _ = ring.push_entire_slice(port.as_slice(ps));
        }
        // Samples first, then the period entry: the reader never sees an entry whose
        // samples are not in the rings yet.
        let _ = self.periods.push(PeriodInfo {
            frame: ps.last_frame_time(),
            n_frames: n as u32,
            dropped_before: self.counters.dropped_frames.load(Ordering::Relaxed),
        });
        jack::Control::Continue
    }
}

/// Notices the server going away and counts xruns.
struct Notify {
    counters: Arc<Counters>,
}

impl jack::NotificationHandler for Notify {
    unsafe fn shutdown(&mut self, _status: jack::ClientStatus, _reason: &str) {
        self.counters.stopped.store(true, Ordering::Release);
    }

    fn xrun(&mut self, _: &jack::Client) -> jack::Control {
        self.counters.xruns.fetch_add(1, Ordering::Relaxed);
        jack::Control::Continue
    }
}

/// The reading ends of a [`Recorder`]'s rings: whole periods, oldest first.
pub struct Periods {
    rings: Vec<rtrb::Consumer<f32>>,
    periods: rtrb::Consumer<PeriodInfo>,
}

impl Periods {
    /// Throws away every period buffered so far.
    pub fn discard(&mut self) {
        while let Ok(p) = self.periods.pop() {
            self.skip(p.n_frames as usize);
        }
    }

    /// Takes the oldest buffered period, if there is one: appends its first `take`
    /// frames (all of them if it has fewer) to `channels[k]` for every input `k`
    /// (`channels` has one buffer per input) and drops the rest of the period.
    pub fn pop(&mut self, channels: &mut [Vec<f32>], take: usize) -> Option<PeriodInfo> {
        let period = self.periods.pop().ok()?;
        let n = period.n_frames as usize;
        for (ring, out) in self.rings.iter_mut().zip(channels.iter_mut()) {
            // The callback pushed all n samples of every ring before the entry.
            let Ok(chunk) = ring.read_chunk(n.min(ring.slots())) else {
                continue;
            };
            let (a, b) = chunk.as_slices();
            out.extend(a.iter().chain(b).take(take).copied());
            chunk.commit_all();
        }
        Some(period)
    }

    /// Whether a whole period is waiting to be taken.
    pub fn has_buffered(&self) -> bool {
        !self.periods.is_empty()
    }

    fn skip(&mut self, n: usize) {
        for ring in &mut self.rings {
            if let Ok(chunk) = ring.read_chunk(n.min(ring.slots())) {
                chunk.commit_all();
            }
        }
    }
}

/// A recording JACK client with inputs `in_1..in_n`, active until dropped.
///
/// One thread at a time reads its periods ([`Recorder::periods`]); any thread may
/// use the client (to connect its inputs) and read the counters meanwhile.
pub struct Recorder {
    client: jack::AsyncClient<Notify, Process>,
    name: String,
    n_inputs: usize,
    sample_rate: u32,
    periods: Mutex<Periods>,
    counters: Arc<Counters>,
}

impl Recorder {
    /// Registers inputs `in_1..in_{n_inputs}` on `client` and activates it.
    pub fn start(client: jack::Client, n_inputs: usize) -> Result<Recorder, String> {
        let name = client.name().to_string();
        let sample_rate = client.sample_rate();
        let period = (client.buffer_size() as usize).max(1);
        let ring_len = (sample_rate * RING_SECONDS) as usize;
        let mut ports = Vec::with_capacity(n_inputs);
        let mut producers = Vec::with_capacity(n_inputs);
        let mut consumers = Vec::with_capacity(n_inputs);
        for k in 0..n_inputs {
            let port = client
                .register_port(&format!("in_{}", k + 1), jack::AudioIn::default())
                .map_err(|e| format!("cannot register {name}:in_{}: {e}", k + 1))?;
            ports.push(port);
            let (p, c) = rtrb::RingBuffer::new(ring_len);
            producers.push(p);
            consumers.push(c);
        }
        // Enough entries even if the server switches to much smaller periods.
        let (period_p, period_c) = rtrb::RingBuffer::new(ring_len / period * 4 + 64);
        let counters = Arc::new(Counters::default());
        let process = Process {
            ports,
            rings: producers,
            periods: period_p,
            counters: counters.clone(),
        };
        let notify = Notify {
            counters: counters.clone(),
        };
        let client = client
            .activate_async(notify, process)
            .map_err(|e| format!("cannot activate {name}: {e}"))?;
        Ok(Recorder {
            client,
            name,
            n_inputs,
            sample_rate,
            periods: Mutex::new(Periods {
                rings: consumers,
                periods: period_c,
            }),
            counters,
        })
    }

    /// The JACK client name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The number of inputs.
    pub fn n_inputs(&self) -> usize {
        self.n_inputs
    }

    /// The server's sample rate.
    pub fn sample_rate(&self) -> u32 {
        self.sample_rate
    }

    /// The full JACK name of input `k` (0-based): `<client>:in_{k+1}`.
    pub fn port(&self, k: usize) -> String {
        format!("{}:in_{}", self.name, k + 1)
    }

    /// The JACK client (for connecting, querying ports, ...).
    pub fn client(&self) -> &jack::Client {
        self.client.as_client()
    }

    /// The periods recorded so far; the reader waits while another thread reads.
    pub fn periods(&self) -> MutexGuard<'_, Periods> {
        // A reader that panicked left whole periods behind: still readable.
        self.periods.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Frames dropped since start because the rings were full (including while
    /// nobody was reading, which is expected).
    pub fn dropped_frames(&self) -> u64 {
        self.counters.dropped_frames.load(Ordering::Relaxed)
    }

    /// xruns the server has reported since start.
    pub fn xruns(&self) -> u64 {
        self.counters.xruns.load(Ordering::Relaxed)
    }

    /// Whether the server shut down (nothing more will be recorded).
    pub fn server_stopped(&self) -> bool {
        self.counters.stopped.load(Ordering::Acquire)
    }
}

/// What a finished recording holds.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// Frames written per channel.
    pub frames: u64,
    /// Channels written.
    pub channels: usize,
    /// The server's sample rate.
    pub sample_rate: u32,
    /// Frames lost because the writer fell behind (0 on a healthy machine).
    pub dropped_frames: u64,
    /// Largest absolute sample value recorded.
    pub peak: f32,
    /// Whether the JACK server stopped before the recording was done: it holds
    /// what came until then.
    pub server_stopped: bool,
}

/// One channel's source, as given on the command line.
fn resolve_sources(client: &jack::Client, name: &str) -> Result<Vec<String>, String> {
    let port = client
        .port_by_name(name)
        .ok_or_else(|| format!("no JACK port '{name}' (list them with `jack_lsp`)"))?;
    if port.flags().contains(jack::PortFlags::IS_INPUT) {
        Ok(port.get_connections())
    } else {
        Ok(vec![name.to_string()])
    }
}

/// Records `sources` (one channel each) into `path` for `duration` (or until `stop`
/// is set), calling `progress` about once a second with the seconds recorded.
///
/// `resolve` maps a module port name to the real JACK port playing it now (`None`:
/// not a module port, or no supervisor to ask: the name is used as it is).
pub fn record(
    path: &Path,
    sources: &[String],
    duration: Option<Duration>,
    stop: &AtomicBool,
    mut progress: impl FnMut(f64),
    mut resolve: impl FnMut(&str) -> Option<String>,
) -> Result<Summary, String> {
    if sources.is_empty() {
        return Err("name at least one JACK port to record".into());
    }
    let mut resolve_all = || -> Vec<String> {
        sources
            .iter()
            .map(|s| resolve(s).unwrap_or_else(|| s.clone()))
            .collect()
    };
    let mut real = resolve_all();
    let options = jack::ClientOptions::NO_START_SERVER;
    let (client, _) = jack::Client::new("modsynth-record", options).map_err(|e| {
        format!("cannot reach a JACK server ({e}); start one or set JACK_DEFAULT_SERVER")
    })?;
    // Check every source before anything is created on disk.
    for (given, s) in sources.iter().zip(&real) {
        resolve_sources(&client, s).map_err(|e| {
            if given == s {
                e
            } else {
                format!("{given} (played by {s}): {e}")
            }
        })?;
    }
    let channels = sources.len();
    let recorder = Recorder::start(client, channels)?;
    let rate = recorder.sample_rate();
    let own: Vec<String> = (0..channels).map(|k| recorder.port(k)).collect();

    let spec = hound::WavSpec {
        channels: channels as u16,
        sample_rate: rate,
        bits_per_sample: 32,
        sample_format: hound::SampleFormat::Float,
    };
    let partial = partial_path(path);
    let mut writer = hound::WavWriter::create(&partial, spec)
        .map_err(|e| format!("cannot write {}: {e}", partial.display()))?;
    let wanted = duration.map(|d| (d.as_secs_f64() * rate as f64).round() as u64);
    let mut frames = 0u64;
    let mut peak = 0f32;
    let mut last_follow = Instant::now() - Duration::from_secs(1);
    let mut last_resolve = Instant::now();
    let mut made: Vec<Vec<String>> = vec![Vec::new(); channels];
    let mut last_progress = Instant::now();
    let mut failure = None;
    let mut period: Vec<Vec<f32>> = vec![Vec::new(); channels];
    let dropped_at_start = recorder.dropped_frames();
    let mut periods = recorder.periods();
    'recording: loop {
        if last_resolve.elapsed() >= Duration::from_secs(1) {
            real = resolve_all();
            last_resolve = Instant::now();
        }
        if last_follow.elapsed() >= Duration::from_millis(50) {
            follow(recorder.client(), &real, &own, &mut made);
            last_follow = Instant::now();
        }
        loop {
            let take = wanted.map_or(usize::MAX, |w| (w - frames) as usize);
            if take == 0 {
                break 'recording;
            }
            period.iter_mut().for_each(Vec::clear);
            if periods.pop(&mut period, take).is_none() {
                break;
            }
            let n = period[0].len();
            for i in 0..n {
                for channel in &period {
                    let s = channel[i];
                    peak = peak.max(s.abs());
                    if let Err(e) = writer.write_sample(s) {
                        failure = Some(format!("writing {} failed: {e}", path.display()));
                        break 'recording;
                    }
                }
            }
            frames += n as u64;
        }
        if stop.load(Ordering::SeqCst) {
            break;
        }
        // What was recorded is kept: the server stopping ends a recording, as
        // Ctrl-C does, and the summary says so.
        if recorder.server_stopped() && !periods.has_buffered() {
            break;
        }
        if last_progress.elapsed() >= Duration::from_secs(1) {
            progress(frames as f64 / rate as f64);
            last_progress = Instant::now();
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let dropped_frames = recorder.dropped_frames() - dropped_at_start;
    let server_stopped = recorder.server_stopped();
    drop(periods);
    drop(recorder);
    let finished = writer
        .finalize()
        .map_err(|e| format!("finishing {} failed: {e}", partial.display()));
    let result = match (failure, finished) {
        (Some(e), _) | (None, Err(e)) => Err(e),
        (None, Ok(())) => std::fs::rename(&partial, path).map_err(|e| {
            format!(
                "cannot rename {} to {}: {e}",
                partial.display(),
                path.display()
            )
        }),
    };
    if let Err(e) = result {
        let _ = std::fs::remove_file(&partial);
        return Err(e);
    }
    Ok(Summary {
        frames,
        channels,
        sample_rate: rate,
        dropped_frames,
        peak,
        server_stopped,
    })
}

/// `.<name>.part<pid>` next to `path`: where the recording is written until done.
fn partial_path(path: &Path) -> std::path::PathBuf {
    let name = path
        .file_name()
        .map_or_else(|| "recording".into(), |n| n.to_string_lossy().into_owned());
    path.with_file_name(format!(".{name}.part{}", std::process::id()))
}

/// Connects each recorder input to what its source currently carries, and undoes
/// connections it made itself that are no longer wanted. Others are left alone:
/// modsynthd mirrors the recorder's connection to a module onto the module's
/// standby, and that mirror is what keeps a recording whole across a failover.
fn follow(client: &jack::Client, sources: &[String], own: &[String], made: &mut [Vec<String>]) {
    for ((source, input), made) in sources.iter().zip(own).zip(made) {
        let Ok(wanted) = resolve_sources(client, source) else {
            continue;
        };
        let Some(port) = client.port_by_name(input) else {
            continue;
        };
        let have = port.get_connections();
        for w in wanted.iter().filter(|w| !have.contains(w)) {
            if client.connect_ports_by_name(w, input).is_ok() {
                made.push(w.clone());
            }
        }
        made.retain(|m| {
            if wanted.contains(m) {
                return true;
            }
            if have.contains(m) {
                let _ = client.disconnect_ports_by_name(m, input);
            }
            false
        });
    }
}

//! A JACK client that records what arrives on its input ports.
//!
//! The real-time callback only copies each period into preallocated `rtrb` rings (one
//! per channel) and pushes the period's frame time into another ring: no allocation,
//! no lock, no blocking. If the rings are full it drops the whole period and counts
//! it. [`Capture::record`] runs on the caller's thread: it discards what was buffered
//! before the call and collects the next periods, checking that their frame times are
//! contiguous, so a lost period is reported ([`Recording::frame_jumps`]) instead of
//! silently spliced out.
//!
//! Port numbers are 0-based everywhere in this module: port `k` is named `in_{k+1}`
//! and is recorded in `channels[k]`.

use crate::jack_server::{ClientLease, JackServer};
use jack::{AudioIn, Client, ClientStatus, Control, Port, ProcessScope};
use rtrb::{Consumer, Producer, RingBuffer};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// [`retake_while_disturbed`] takes a measurement at least this many times...
pub const MIN_TAKES: u32 = 5;
/// ...and goes on for this long before it gives up.
pub const RETAKE_FOR: Duration = Duration::from_secs(30);

/// Takes a measurement (`take`: whatever it plays or sends, and the recording of
/// it) again while the server disturbed the recording (skipped cycles: see
/// [`Recording::is_continuous`]), at least [`MIN_TAKES`] times and for up to
/// [`RETAKE_FOR`]; returns the first undisturbed one, or an error.
///
/// Why by time and not only by count: the dummy server skips cycles when a 2-core
/// machine is starved, and starvation comes in bursts (a build, a JACK client
/// opening); five takes of a 3 s recording back to back did not outlast one. No
/// check is relaxed: every check runs on a whole recording.
pub fn retake_while_disturbed<T>(
    mut take: impl FnMut() -> Result<(Recording, T), String>,
) -> Result<(Recording, T), String> {
    let started = Instant::now();
    let mut takes = 0;
    loop {
        let (rec, with) = take()?;
        takes += 1;
        if rec.is_continuous() {
            return Ok((rec, with));
        }
        eprintln!(
            "recording disturbed ({} frames dropped, {} xruns): taking it again",
            rec.dropped_frames, rec.xruns
        );
        if takes >= MIN_TAKES && started.elapsed() >= RETAKE_FOR {
            return Err(format!(
                "{takes} recordings in {:.0?} were all disturbed: the machine is too loaded \
                 to measure",
                started.elapsed()
            ));
        }
    }
}

/// Seconds of audio each channel ring holds; [`Capture::record`] drains the rings
/// while recording, so this only has to cover the reader's scheduling hiccups.
pub const RING_SECONDS: u32 = 2;

static CAPTURE_COUNTER: AtomicU64 = AtomicU64::new(0);

/// The frame time and length of one period, as pushed by the real-time side.
#[derive(Clone, Copy, Debug)]
struct PeriodInfo {
    frame: u32,
    n_frames: u32,
    /// The drop counter when this period was stored: periods dropped between two
    /// entries are the difference of their counters.
    dropped_before: u64,
}

/// What the real-time callback owns.
struct CaptureProcess {
    ports: Vec<Port<AudioIn>>,
    rings: Vec<Producer<f32>>,
    periods: Producer<PeriodInfo>,
    dropped_periods: Arc<AtomicU64>,
}

impl jack::ProcessHandler for CaptureProcess {
    fn process(&mut self, _: &Client, ps: &ProcessScope) -> Control {
        let n = ps.n_frames() as usize;
        let fits = self.periods.slots() >= 1 && self.rings.iter().all(|r| r.slots() >= n);
        if !fits {
            self.dropped_periods.fetch_add(1, Ordering::Relaxed);
            return Control::Continue;
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
            dropped_before: self.dropped_periods.load(Ordering::Relaxed),
        });
        Control::Continue
    }
}

/// Notices the server going away, so [`Capture::record`] fails fast.
struct CaptureNotify {
    stopped: Arc<AtomicBool>,
    xruns: Arc<AtomicU64>,
}

impl jack::NotificationHandler for CaptureNotify {
    unsafe fn shutdown(&mut self, _status: ClientStatus, _reason: &str) {
        self.stopped.store(true, Ordering::Release);
    }

    fn xrun(&mut self, _: &Client) -> Control {
        self.xruns.fetch_add(1, Ordering::Relaxed);
        Control::Continue
    }
}

/// The non-real-time ends of the rings.
struct Reader {
    rings: Vec<Consumer<f32>>,
    periods: Consumer<PeriodInfo>,
}

impl Reader {
    /// Throws away every complete period currently buffered.
    fn discard_buffered(&mut self) {
        while let Ok(p) = self.periods.pop() {
            self.skip(p.n_frames as usize);
        }
    }

    /// Throws away `n` samples of every channel.
    fn skip(&mut self, n: usize) {
        for ring in &mut self.rings {
            if let Ok(chunk) = ring.read_chunk(n.min(ring.slots())) {
                chunk.commit_all();
            }
        }
    }
}

/// A recording client with `n` input ports `in_1..in_n`, active until dropped.
pub struct Capture {
    client: jack::AsyncClient<CaptureNotify, CaptureProcess>,
    /// Dropped after `client` (fields drop in order): keeps the process pinned to
    /// the server while the client is open.
    _lease: ClientLease,
    name: String,
    n_inputs: usize,
    sample_rate: u32,
    reader: Mutex<Reader>,
    dropped_periods: Arc<AtomicU64>,
    stopped: Arc<AtomicBool>,
    xruns: Arc<AtomicU64>,
}

/// Frames captured from every input, starting at a period boundary.
#[derive(Clone, Debug, PartialEq)]
pub struct Recording {
    /// JACK frame time (`jack_last_frame_time` of its period) of the first sample.
    /// JACK counts frames in 32 bits, so this wraps after 2^32 frames (~24.8 h at
    /// 48 kHz) of server uptime; private test servers never get there.
    pub start_frame: u64,
    /// Sample rate of the server.
    pub sample_rate: u32,
    /// One buffer per input port (`channels[k]` is port `in_{k+1}`), all the same
    /// length.
    pub channels: Vec<Vec<f32>>,
    /// Frames missing inside the recording: the sum of the forward jumps in the frame
    /// times of consecutive periods (a period dropped because the rings were full,
    /// or the server skipping frames after a late cycle). The channels hold the
    /// periods that did arrive, back to back.
    pub dropped_frames: u64,
    /// How many times the frame time of a period was not the previous period's end,
    /// in either direction (jackd2 can also step its frame timer back after an xrun).
    /// When non-zero, sample indices after the first jump do not map to
    /// `start_frame + index`.
    pub frame_jumps: u32,
    /// Whether the real-time side dropped at least one period for lack of ring space
    /// while this recording was being taken.
    pub overflowed: bool,
    /// xruns the server reported while this recording was being taken. On a loaded
    /// machine a late dummy-backend cycle makes the server skip frames, which shows
    /// up as [`Recording::frame_jumps`] with an xrun here.
    pub xruns: u64,
}

impl Recording {
    /// Number of frames per channel.
    pub fn frames(&self) -> usize {
        self.channels.first().map_or(0, Vec::len)
    }

    /// Whether every frame from `start_frame` on arrived (no gap, no overflow), so
    /// that sample `i` was captured at frame time `start_frame + i`.
    pub fn is_continuous(&self) -> bool {
        self.frame_jumps == 0 && !self.overflowed
    }

    /// The index of the sample captured at JACK frame time `frame`, if it is inside a
    /// continuous recording.
    pub fn index_of_frame(&self, frame: u64) -> Option<usize> {
        let i = frame.checked_sub(self.start_frame)? as usize;
        (self.is_continuous() && i < self.frames()).then_some(i)
    }

    /// Writes the channels as a 32-bit float WAV file.
    pub fn write_wav(&self, path: impl AsRef<Path>) -> Result<(), String> {
        let path = path.as_ref();
        let spec = hound::WavSpec {
            channels: self.channels.len().max(1) as u16,
            sample_rate: self.sample_rate,
            bits_per_sample: 32,
            sample_format: hound::SampleFormat::Float,
        };
        let err = |e: hound::Error| format!("writing {}: {e}", path.display());
        let mut w = hound::WavWriter::create(path, spec).map_err(err)?;
        for i in 0..self.frames() {
            for ch in &self.channels {
                w.write_sample(ch[i]).map_err(err)?;
            }
        }
        w.finalize().map_err(err)
    }
}

impl Capture {
    /// Opens and activates a client named `capture-<n>` on `server` with input ports
    /// `in_1..in_{n_inputs}`.
    pub fn start(server: &JackServer, n_inputs: usize) -> Result<Capture, String> {
        let name = format!(
            "capture-{}",
            CAPTURE_COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let (client, lease) = server.open_client(&name)?.into_parts();
        let sample_rate = client.sample_rate();
        let period = (client.buffer_size() as usize).max(1);
        let ring_len = (sample_rate * RING_SECONDS) as usize;
        let mut ports = Vec::with_capacity(n_inputs);
        let mut producers = Vec::with_capacity(n_inputs);
        let mut consumers = Vec::with_capacity(n_inputs);
        for k in 0..n_inputs {
            let port = client
                .register_port(&format!("in_{}", k + 1), AudioIn::default())
                .map_err(|e| format!("registering {name}:in_{}: {e}", k + 1))?;
            ports.push(port);
            let (p, c) = RingBuffer::new(ring_len);
            producers.push(p);
            consumers.push(c);
        }
        // Enough entries even if the server switches to much smaller periods.
        let (period_p, period_c) = RingBuffer::new(ring_len / period * 4 + 64);
        let dropped_periods = Arc::new(AtomicU64::new(0));
        let stopped = Arc::new(AtomicBool::new(false));
        let process = CaptureProcess {
            ports,
            rings: producers,
            periods: period_p,
            dropped_periods: dropped_periods.clone(),
        };
        let xruns = Arc::new(AtomicU64::new(0));
        let notify = CaptureNotify {
            stopped: stopped.clone(),
            xruns: xruns.clone(),
        };
        let client = client
            .activate_async(notify, process)
            .map_err(|e| format!("activating {name}: {e}"))?;
        let name = client.as_client().name().to_string();
        Ok(Capture {
            client,
            _lease: lease,
            name,
            n_inputs,
            sample_rate,
            reader: Mutex::new(Reader {
                rings: consumers,
                periods: period_c,
            }),
            dropped_periods,
            stopped,
            xruns,
        })
    }

    /// The JACK client name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The number of input ports.
    pub fn n_inputs(&self) -> usize {
        self.n_inputs
    }

    /// The server's sample rate.
    pub fn sample_rate(&self) -> u32 {
        self.sample_rate
    }

    /// The full JACK name of input port `k` (0-based): `<client>:in_{k+1}`.
    pub fn port(&self, k: usize) -> String {
        format!("{}:in_{}", self.name, k + 1)
    }

    /// The underlying JACK client (for connecting, querying ports, ...).
    pub fn client(&self) -> &Client {
        self.client.as_client()
    }

    /// Connects the output port named `src_port_name` (full JACK name) to input `k`
    /// (0-based).
    pub fn connect_from(&self, src_port_name: &str, k: usize) -> Result<(), String> {
        if k >= self.n_inputs {
            return Err(format!(
                "capture has {} inputs, no input {k}",
                self.n_inputs
            ));
        }
        let dst = self.port(k);
        self.client()
            .connect_ports_by_name(src_port_name, &dst)
            .map_err(|e| format!("connecting {src_port_name} -> {dst}: {e}"))
    }

    /// Periods the real-time side has dropped for lack of ring space since start
    /// (including while nobody was recording, which is expected).
    pub fn dropped_periods(&self) -> u64 {
        self.dropped_periods.load(Ordering::Relaxed)
    }

    /// xruns the server has reported to this client since start.
    pub fn xruns(&self) -> u64 {
        self.xruns.load(Ordering::Relaxed)
    }

    /// Discards everything captured before the call, then returns the next `frames`
    /// frames of every input, starting at a period boundary. Fails (instead of
    /// hanging) if the server stops or the frames do not arrive within their own
    /// duration plus 10 s.
    pub fn record(&self, frames: usize) -> Result<Recording, String> {
        let timeout = Duration::from_secs_f64(frames as f64 / self.sample_rate as f64)
            + Duration::from_secs(10);
        self.record_timeout(frames, timeout)
    }

    /// Records `frames` frames of steady-state signal, taking the recording again (at
    /// most 5 tries) when the server skipped cycles in it: the dummy server does that
    /// when a loaded 2-core machine starves it. This re-takes a disturbed
    /// measurement, never a wrong result: every check runs on a whole one.
    pub fn record_continuous(&self, frames: usize) -> Result<Recording, String> {
        retake_while_disturbed(|| Ok((self.record(frames)?, ()))).map(|(rec, ())| rec)
    }

    /// [`Capture::record`] with an explicit timeout.
    pub fn record_timeout(&self, frames: usize, timeout: Duration) -> Result<Recording, String> {
        self.record_then(frames, timeout, |_| {})
    }

    /// Like [`Capture::record_timeout`], and calls `started(start_frame)` (on the
    /// calling thread) as soon as the first period of the recording has arrived,
    /// before collecting the rest. Use it to trigger a stimulus only once the
    /// recording is known to be running, e.g. by sending on a channel to the thread
    /// that calls [`Player::play`](crate::player::Player::play):
    /// everything that thread plays afterwards starts in a later period, inside the
    /// recording.
    pub fn record_then(
        &self,
        frames: usize,
        timeout: Duration,
        started: impl FnOnce(u64),
    ) -> Result<Recording, String> {
        let mut started = Some(started);
        let deadline = Instant::now() + timeout;
        let mut reader = self.reader.lock().unwrap_or_else(|p| p.into_inner());
        let mut channels: Vec<Vec<f32>> = (0..self.n_inputs)
            .map(|_| Vec::with_capacity(frames))
            .collect();
        reader.discard_buffered();
        let xruns_before = self.xruns();
        let mut first_dropped: u64 = 0;
        let mut last_dropped: u64 = 0;
        let mut start_frame: Option<u64> = None;
        let mut expected: u32 = 0;
        let mut dropped_frames: u64 = 0;
        let mut frame_jumps: u32 = 0;
        let mut collected = 0usize;
        while collected < frames {
            let period = match reader.periods.pop() {
                Ok(p) => p,
                Err(_) => {
                    if self.stopped.load(Ordering::Acquire) {
                        return Err(format!(
                            "capture '{}': JACK server shut down after {collected} of {frames} frames",
                            self.name
                        ));
                    }
                    if Instant::now() >= deadline {
                        return Err(format!(
                            "capture '{}': only {collected} of {frames} frames within {timeout:?}",
                            self.name
                        ));
                    }
                    std::thread::sleep(Duration::from_millis(1));
                    continue;
                }
            };
            match start_frame {
                None => {
                    start_frame = Some(period.frame as u64);
                    first_dropped = period.dropped_before;
                    if let Some(f) = started.take() {
                        f(period.frame as u64);
                    }
                }
                Some(_) if period.frame != expected => {
                    frame_jumps += 1;
                    let jump = period.frame.wrapping_sub(expected) as i32;
                    dropped_frames += jump.max(0) as u64;
                }
                Some(_) => {}
            }
            expected = period.frame.wrapping_add(period.n_frames);
            last_dropped = period.dropped_before;
            let n = period.n_frames as usize;
            let take = n.min(frames - collected);
            for (ring, out) in reader.rings.iter_mut().zip(channels.iter_mut()) {
                let chunk = ring
                    .read_chunk(n)
                    .map_err(|e| format!("capture ring: {e}"))?;
                let (a, b) = chunk.as_slices();
                let both = a.iter().chain(b.iter());
                out.extend(both.take(take).copied());
                chunk.commit_all();
            }
            collected += take;
        }
        let overflowed = last_dropped != first_dropped;
        Ok(Recording {
            start_frame: start_frame.unwrap_or(0),
            sample_rate: self.sample_rate,
            channels,
            dropped_frames,
            frame_jumps,
            overflowed,
            xruns: self.xruns() - xruns_before,
        })
    }
}

//! The harness's capture client: a [`Recorder`] (the one JACK recorder, shared with
//! `modsynth record`) on a test server, and recordings checked for gaps.
//!
//! [`Capture::record`] runs on the caller's thread: it discards what was buffered
//! before the call and collects the next periods, checking that their frame times
//! are contiguous, so a lost period is reported ([`Recording::frame_jumps`])
//! instead of silently spliced out.
//!
//! Port numbers are 0-based everywhere in this module: port `k` is named `in_{k+1}`
//! and is recorded in `channels[k]`.

use crate::jack_server::{ClientLease, JackServer};
use modsynth_control::record::Recorder;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

pub use modsynth_control::record::RING_SECONDS;

/// A measurement the machine disturbed is taken again at least this many times...
pub const MIN_TAKES: u32 = 5;
/// ...and for this long: starvation on a 2-core machine comes in bursts (another
/// test's processes going away, a build), and five takes back to back of a short
/// recording do not outlast one.
pub const RETAKE_FOR: Duration = Duration::from_secs(30);
/// How much longer than the disturbed take the idle baseline records.
pub const BASELINE_FACTOR: usize = 4;

/// Whether retakes the machine forced have run out: at least [`MIN_TAKES`] of them,
/// for at least [`RETAKE_FOR`].
fn out_of_patience(takes: u32, started: Instant) -> bool {
    takes >= MIN_TAKES && started.elapsed() >= RETAKE_FOR
}

/// What a disturbed take and its idle baseline measured, for the test's output.
fn disturbance(rec: &Recording) -> String {
    format!(
        "{} xruns, {} frames dropped, {} frame jumps",
        rec.xruns, rec.dropped_frames, rec.frame_jumps
    )
}

static CAPTURE_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A recording client with `n` input ports `in_1..in_n`, active until dropped.
pub struct Capture {
    recorder: Recorder,
    /// Dropped after `recorder` (fields drop in order): keeps the process pinned to
    /// the server while the client is open.
    _lease: ClientLease,
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
    /// Where each of those jumps is: the index of the first sample after it, in
    /// order. A measurement that must not straddle a jump (a phase) keeps its
    /// windows between them.
    pub jumps: Vec<usize>,
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
        Ok(Capture {
            recorder: Recorder::start(client, n_inputs)?,
            _lease: lease,
        })
    }

    /// The JACK client name.
    pub fn name(&self) -> &str {
        self.recorder.name()
    }

    /// The number of input ports.
    pub fn n_inputs(&self) -> usize {
        self.recorder.n_inputs()
    }

    /// The server's sample rate.
    pub fn sample_rate(&self) -> u32 {
        self.recorder.sample_rate()
    }

    /// The full JACK name of input port `k` (0-based): `<client>:in_{k+1}`.
    pub fn port(&self, k: usize) -> String {
        self.recorder.port(k)
    }

    /// The underlying JACK client (for connecting, querying ports, ...).
    pub fn client(&self) -> &jack::Client {
        self.recorder.client()
    }

    /// Connects the output port named `src_port_name` (full JACK name) to input `k`
    /// (0-based).
    pub fn connect_from(&self, src_port_name: &str, k: usize) -> Result<(), String> {
        if k >= self.n_inputs() {
            return Err(format!(
                "capture has {} inputs, no input {k}",
                self.n_inputs()
            ));
        }
        let dst = self.port(k);
        self.client()
            .connect_ports_by_name(src_port_name, &dst)
            .map_err(|e| format!("connecting {src_port_name} -> {dst}: {e}"))
    }

    /// Frames the real-time side has dropped for lack of ring space since start
    /// (including while nobody was recording, which is expected).
    pub fn dropped_frames(&self) -> u64 {
        self.recorder.dropped_frames()
    }

    /// xruns the server has reported to this client since start.
    pub fn xruns(&self) -> u64 {
        self.recorder.xruns()
    }

    /// Discards everything captured before the call, then returns the next `frames`
    /// frames of every input, starting at a period boundary. Fails (instead of
    /// hanging) if the server stops or the frames do not arrive within their own
    /// duration plus 10 s.
    pub fn record(&self, frames: usize) -> Result<Recording, String> {
        let timeout = Duration::from_secs_f64(frames as f64 / self.sample_rate() as f64)
            + Duration::from_secs(10);
        self.record_timeout(frames, timeout)
    }

    /// Records `frames` frames of steady-state signal, nothing else happening: a
    /// recording the server disturbed (skipped cycles, xruns) is taken again, said
    /// on stderr, at least [`MIN_TAKES`] times and for [`RETAKE_FOR`]. With no
    /// action in it there is nothing but the machine to blame (the graph left alone
    /// is what is recorded); an action's recording goes through
    /// [`Capture::retake_while_disturbed`].
    pub fn record_continuous(&self, frames: usize) -> Result<Recording, String> {
        let started = Instant::now();
        let mut takes = 0;
        loop {
            let rec = self.record(frames)?;
            takes += 1;
            if rec.is_continuous() {
                return Ok(rec);
            }
            if out_of_patience(takes, started) {
                return Err(format!(
                    "{takes} steady recordings in {:.0?} were disturbed, the last ({}): \
                     the machine is too loaded to measure",
                    started.elapsed(),
                    disturbance(&rec)
                ));
            }
            eprintln!(
                "RETAKEN: a steady recording was disturbed ({}): the machine",
                disturbance(&rec)
            );
        }
    }

    /// Takes a measurement (`take`: whatever it plays, sends or kills, and the
    /// recording of it) and, if the server disturbed the recording (skipped cycles,
    /// xruns: see [`Recording::is_continuous`]), asks whether the machine or the
    /// measured action did it: it records the same graph left alone for four times
    /// as long ([`BASELINE_FACTOR`]).
    ///
    /// - The baseline is disturbed too: the machine is, and the measurement is
    ///   taken again (said on stderr with both counts), at least [`MIN_TAKES`]
    ///   times and for [`RETAKE_FOR`].
    /// - The baseline is clean: a strike against the action. One strike may be a
    ///   passing glitch and is taken again; the second is an error with the
    ///   counts: the action disturbs the server, and no retake hides it.
    ///
    /// No check is relaxed: every check runs on one whole, undisturbed recording.
    pub fn retake_while_disturbed<T>(
        &self,
        mut take: impl FnMut() -> Result<(Recording, T), String>,
    ) -> Result<(Recording, T), String> {
        let mut strikes = Vec::new();
        let started = Instant::now();
        let mut takes = 0;
        while !out_of_patience(takes, started) {
            takes += 1;
            let (rec, with) = take()?;
            if rec.is_continuous() {
                return Ok((rec, with));
            }
            let idle = self.record(rec.frames().max(4_800) * BASELINE_FACTOR)?;
            if idle.is_continuous() {
                strikes.push(disturbance(&rec));
                if strikes.len() >= 2 {
                    return Err(format!(
                        "the recording was disturbed twice ({}) while the same graph \
                         left alone for four times as long was not: what the test did \
                         disturbed it",
                        strikes.join("; ")
                    ));
                }
                eprintln!(
                    "RETAKEN: recording disturbed ({}), the same graph left alone was \
                     not: one strike against what the test did",
                    disturbance(&rec)
                );
            } else {
                eprintln!(
                    "RETAKEN: recording disturbed ({}), and so was the same graph left \
                     alone ({}): the machine",
                    disturbance(&rec),
                    disturbance(&idle)
                );
            }
        }
        Err(format!(
            "{takes} recordings in {:.0?} were disturbed, and so was the graph left \
             alone: the machine is too loaded to measure",
            started.elapsed()
        ))
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
        self.record_while(frames, timeout, (0, started), || true, 0)
    }

    /// Records from before `act` runs until `tail` frames after it returned, at most
    /// `max_frames` (more is an error: `act` took longer than the recording was
    /// meant to last), and returns the recording with what `act` returned. `act`
    /// runs on the calling thread once the recording's first period has arrived.
    /// For a recording across an action of unknown length:
    ///
    /// ```no_run
    /// # use modsynth_tests::{capture::Capture, jack_server::JackServer};
    /// # let server = JackServer::start().unwrap();
    /// # let capture = Capture::start(&server, 1).unwrap();
    /// let (rec, restarts) = capture
    ///     .record_across(60 * 48_000, 48_000, || {
    ///         // ... kill and restart something, as often as it takes ...
    ///         20
    ///     })
    ///     .unwrap();
    /// ```
    pub fn record_across<T>(
        &self,
        max_frames: usize,
        tail: usize,
        act: impl FnOnce() -> T,
    ) -> Result<(Recording, T), String> {
        let acting = std::sync::atomic::AtomicBool::new(true);
        let (started_tx, started_rx) = std::sync::mpsc::channel();
        let timeout = Duration::from_secs_f64(max_frames as f64 / self.sample_rate() as f64)
            + Duration::from_secs(10);
        std::thread::scope(|s| {
            let recording = s.spawn(|| {
                let mut ended = false;
                let going = || {
                    let on = acting.load(std::sync::atomic::Ordering::SeqCst);
                    ended |= !on;
                    on
                };
                let started = move |_: u64| {
                    let _ = started_tx.send(());
                };
                let rec = self.record_while(max_frames, timeout, (0, started), going, tail);
                (rec, ended)
            });
            // No first period (the recording failed): its error, and no act.
            let out = started_rx.recv().ok().map(|()| act());
            acting.store(false, std::sync::atomic::Ordering::SeqCst);
            let (rec, ended) = recording
                .join()
                .map_err(|_| "the recording thread panicked".to_string())?;
            let rec = rec?;
            match out {
                Some(out) if ended => Ok((rec, out)),
                _ => Err(format!(
                    "capture '{}': {max_frames} frames recorded and the action still ran",
                    self.name()
                )),
            }
        })
    }

    /// Records `frames` frames and runs `act` (on the calling thread) once the
    /// first `lead` of them have arrived: the recording holds `lead` frames from
    /// before the act however late the recording started, where a sleep before the
    /// act could leave it with none, or act before the recording ran at all.
    ///
    /// ```no_run
    /// # use modsynth_tests::{capture::Capture, jack_server::JackServer};
    /// # let server = JackServer::start().unwrap();
    /// # let capture = Capture::start(&server, 1).unwrap();
    /// # let pid = 0;
    /// // 400 ms of the module before its primary dies, 1.6 s after.
    /// let rec = capture
    ///     .record_with_lead(96_000, 19_200, || modsynth_tests::workers::sigkill(pid))
    ///     .unwrap();
    /// ```
    pub fn record_with_lead(
        &self,
        frames: usize,
        lead: usize,
        act: impl FnOnce(),
    ) -> Result<Recording, String> {
        let timeout = Duration::from_secs_f64(frames as f64 / self.sample_rate() as f64)
            + Duration::from_secs(10);
        self.record_while(frames, timeout, (lead, |_| act()), || true, 0)
    }

    /// The recording loop of [`Capture::record_then`], [`Capture::record_with_lead`]
    /// and [`Capture::record_across`]: up to `frames`, or `tail` frames after
    /// `going()` first says no. `started.1` is called with the first frame's time
    /// once `started.0` frames have arrived (0: as soon as the first period has).
    fn record_while(
        &self,
        frames: usize,
        timeout: Duration,
        started: (usize, impl FnOnce(u64)),
        mut going: impl FnMut() -> bool,
        tail: usize,
    ) -> Result<Recording, String> {
        let (act_after, started) = started;
        let mut frames = frames;
        let mut watching = true;
        let mut started = Some(started);
        let deadline = Instant::now() + timeout;
        let n_inputs = self.n_inputs();
        let name = self.name();
        let mut periods = self.recorder.periods();
        let mut channels: Vec<Vec<f32>> =
            (0..n_inputs).map(|_| Vec::with_capacity(frames)).collect();
        periods.discard();
        let xruns_before = self.xruns();
        let mut first_dropped: u64 = 0;
        let mut last_dropped: u64 = 0;
        let mut start_frame: Option<u64> = None;
        let mut expected: u32 = 0;
        let mut dropped_frames: u64 = 0;
        let mut frame_jumps: u32 = 0;
        let mut jumps = Vec::new();
        let mut collected = 0usize;
        while collected < frames {
            if watching && !going() {
                watching = false;
                frames = frames.min(collected + tail);
                if collected >= frames {
                    break;
                }
            }
            let Some(period) = periods.pop(&mut channels, frames - collected) else {
                if self.recorder.server_stopped() {
                    return Err(format!(
                        "capture '{name}': JACK server shut down after {collected} of {frames} frames"
                    ));
                }
                if Instant::now() >= deadline {
                    return Err(format!(
                        "capture '{name}': only {collected} of {frames} frames within {timeout:?}"
                    ));
                }
                std::thread::sleep(Duration::from_millis(1));
                continue;
            };
            match start_frame {
                None => {
                    start_frame = Some(period.frame as u64);
                    first_dropped = period.dropped_before;
                }
                Some(_) if period.frame != expected => {
                    frame_jumps += 1;
                    jumps.push(collected);
                    let jump = period.frame.wrapping_sub(expected) as i32;
                    dropped_frames += jump.max(0) as u64;
                }
                Some(_) => {}
            }
            expected = period.frame.wrapping_add(period.n_frames);
            last_dropped = period.dropped_before;
            collected = channels
                .first()
                .map_or(collected + period.n_frames as usize, Vec::len);
            if collected >= act_after {
                if let (Some(f), Some(start)) = (started.take(), start_frame) {
                    f(start);
                }
            }
        }
        let overflowed = last_dropped != first_dropped;
        Ok(Recording {
            start_frame: start_frame.unwrap_or(0),
            sample_rate: self.sample_rate(),
            channels,
            dropped_frames,
            frame_jumps,
            jumps,
            overflowed,
            xruns: self.xruns() - xruns_before,
        })
    }
}

//! Rows about crashes: SIGKILL of a playing VCO's primary worker, over and over, with
//! its output recorded by a capture client around every kill.
//!
//! One `modsynthd` (`--crash-loop` off: these deaths are the bench's, not a crash
//! loop) plays two 440 Hz sine VCOs: `hot`, with a hot standby, and `solo`, created
//! with `standby none`. Frame counts are at the server's rate and period (the
//! `failover.silent_frames` note says which).
//!
//! - `failover.xruns_baseline`: xruns the server reported over the time the kill
//!   loop is planned to take, with nothing killed (measured first, same set-up);
//!   `failover.xruns_with_kills`: xruns during the kill loop. The loop is paced (one
//!   kill per [`SLOT`]) so both windows are equally long; the notes give both.
//! - `failover.process_exit_ms`: SIGKILL -> the killed worker's pidfd readable (the
//!   kernel has torn the process down): what any detection of a death waits for.
//! - `failover.detection_ms`: SIGKILL -> the `/module/died` event received by a
//!   `/notify` subscriber (process exit, the supervisor noticing, the OSC hop).
//! - `failover.silent_frames`: the longest run of exact zeros at `hot`'s output in a
//!   recording around the kill (JACK gives silence to a port nobody writes), per
//!   kill; `failover.max_silent_frames` the largest, `failover.zero_gap_share_pct`
//!   the share of kills without a single missing sample (target: >= 95 %, never
//!   more than one period).
//! - `failover.owner_silent_frames`: the frames the new owner ran silent after its
//!   predecessor's last published period, as it measured them, from the
//!   `/module/failover id silent_frames` event.
//! - `failover.step_beyond_slope`: the largest discontinuity in the recording around
//!   the kill ([`max_step_beyond_slope`]): a phase-continuous takeover stays at the
//!   tone's own score (noted), a gap or a phase jump scores up to the amplitude.
//! - `failover.phase_jumps`: per kill, the places where the killed module's tone
//!   skipped or repeated ([`phase_jumps`]: what a listener hears as a click, silent
//!   sample or not); `failover.untouched_phase_jumps` the same for the other module,
//!   which shares the listener but is never killed.
//! - `failover.server_dropped_frames`: frames the JACK server skipped around the kill
//!   (jackd2 skips a cycle when a client dies in its graph; every listener misses
//!   those, whoever plays, and it counts as an xrun). The recording holds the
//!   periods that did arrive back to back: a module whose state did not advance in
//!   a skipped cycle stays continuous across the splice; one whose state advanced
//!   by a period that never reached the listener (computed and published, then the
//!   cycle aborted) shows that period's phase as a step.
//! - `failover.time_ms`: the supervisor's own `failover_time_ms` of each kill (it
//!   learning of the death -> the new primary named and playing).
//! - `failover.standby_rebuilt_ms`: the supervisor's `rebuild_time_ms` of each kill
//!   (module lost a worker -> a ready standby again).
//! - `failover.spare_spawn_ms`: the supervisor's `spawn_time_ms` (p50, p99) at the
//!   end; `n` is the workers spawned (the pool, then one `/pool/spare` each).
//! - `failover.spare_takeover_silent_frames` / `_ms`: the same kill loop on `solo`:
//!   without a standby a pool spare has to map the state, take the names and be
//!   connected (slower, and what `standby none` trades for half the workers).
//! - `failover.handbacks`: modules a seat handed back to a worker of their own
//!   (with `--standby-seats`, every kill of `hot` is a failover into a seat, then a
//!   hand-back, usually inside the kill's recording; 0 without seats).
//!
//! Before every kill the system is settled (pool full, standby ready, no module
//! left in a seat) and left
//! alone for [`QUIET`]: a kill while jackd still handles the graph changes of the
//! previous one stalls the server (see [`crate::leaks`]).

use crate::events::{int_arg, Events};
use crate::settle::{plays_protected, wait_settled, PATIENCE};
use crate::Row;
use modsynth_control::status::Counters;
use modsynth_tests::analysis::{longest_silent_run, max_step_beyond_slope};
use modsynth_tests::capture::Capture;
use modsynth_tests::continuity::phase_jumps;
use modsynth_tests::jack_server::JackServer;
use modsynth_tests::supervisor::Supervisor;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::os::fd::{AsFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

/// `modsynthd --crash-loop`: no death of the bench's counts as a crash loop.
pub const NO_CRASH_LOOP: &str = "100000/1";

/// A worker killed within 50 ms of taking a module over counts as a crash loop at
/// once; the next kill of the same module waits at least this long after a takeover.
pub const AFTER_TAKEOVER: Duration = Duration::from_millis(120);

/// Quiet time between the system settling and the next kill (longer than
/// [`AFTER_TAKEOVER`]).
const QUIET: Duration = Duration::from_millis(150);

/// Time per kill of the paced loop (kill, recovery, new standby, a pause).
const SLOT: Duration = Duration::from_millis(600);

/// The module with a hot standby.
const HOT: &str = "hot";
/// The module without one.
const SOLO: &str = "solo";
/// The tone both play.
const FREQ: f32 = 440.0;
/// Their default `gain`.
const GAIN: f64 = 0.5;

/// What one kill measured.
struct Kill {
    silent_frames: usize,
    /// The recording ended in silence: the gap is longer than measured.
    ends_silent: bool,
    dropped_frames: u64,
    step: f32,
    /// Phase jumps (skipped or repeated stretches) in the killed module's tone and
    /// in the other module's, which shares the listener.
    phase_jumps: usize,
    other_phase_jumps: usize,
    process_exit_ms: f64,
    detection_ms: f64,
    /// `None` when the new owner could not tell (`-1`).
    owner_gap_frames: Option<u32>,
    time_ms: f64,
    /// `None` for a module without a standby.
    rebuilt_ms: Option<f64>,
}

/// How a kill loop runs.
struct Plan {
    /// The module to kill.
    id: &'static str,
    /// The capture input its output is connected to.
    channel: usize,
    kills: usize,
    /// Recording length around each kill, and when in it the kill comes.
    record: Duration,
    kill_after: Duration,
    /// Minimum time per kill (pacing); zero for as fast as it settles.
    slot: Duration,
}

/// What the kill loops share.
struct Rig<'a> {
    sup: &'a Supervisor,
    events: &'a Events,
    capture: &'a Capture,
    rate: u32,
}

/// What the whole run measured.
struct Run {
    period: u32,
    rate: u32,
    /// The paced loop's planned length, which the baseline was measured over, and
    /// how long it took.
    window: Duration,
    took: Duration,
    xruns_baseline: u64,
    xruns_with_kills: u64,
    hot: Vec<Kill>,
    solo: Vec<Kill>,
    /// Workers spawned in the run, and the supervisor's counters at the end.
    spawns: usize,
    counters: Counters,
}

/// Every failover row; `standby_seats` is `modsynthd --standby-seats` (0: the hot
/// standby is a worker of its own).
pub fn rows(server: &JackServer, quick: bool, standby_seats: u32) -> Result<Vec<Row>, String> {
    let seats = standby_seats.to_string();
    let sup = Supervisor::start_with(
        server,
        4,
        &["--crash-loop", NO_CRASH_LOOP, "--standby-seats", &seats],
    )?;
    let events = Events::subscribe(&sup)?;
    sup.new_module("vco", HOT, &[("freq", FREQ)])?;
    sup.new_module_without_standby("vco", SOLO, &[("freq", FREQ)])?;
    let capture = Capture::start(server, 2)?;
    sup.connect(&format!("{HOT}:out"), &capture.port(0))?;
    sup.connect(&format!("{SOLO}:out"), &capture.port(1))?;
    wait_settled(&sup)?;
    let rig = Rig {
        sup: &sup,
        events: &events,
        capture: &capture,
        rate: server.sample_rate(),
    };

    let hot = Plan {
        id: HOT,
        channel: 0,
        kills: if quick { 10 } else { 100 },
        record: Duration::from_millis(200),
        kill_after: Duration::from_millis(80),
        slot: SLOT,
    };
    let window = hot.slot * hot.kills as u32;
    let x0 = capture.xruns();
    std::thread::sleep(window);
    let xruns_baseline = capture.xruns() - x0;
    let (x0, t0) = (capture.xruns(), Instant::now());
    let hot = rig.kill_loop(&hot)?;
    let (xruns_with_kills, took) = (capture.xruns() - x0, t0.elapsed());

    let solo = Plan {
        id: SOLO,
        channel: 1,
        kills: if quick { 5 } else { 20 },
        record: Duration::from_millis(1000),
        kill_after: Duration::from_millis(100),
        slot: Duration::ZERO,
    };
    let solo = rig.kill_loop(&solo)?;

    wait_settled(&sup)?;
    events.drain()?;
    let status = sup.status()?;
    Ok(Run {
        period: server.period(),
        rate: server.sample_rate(),
        window,
        took,
        xruns_baseline,
        xruns_with_kills,
        hot,
        solo,
        spawns: status.pool_size + events.spares_seen(),
        counters: status.counters,
    }
    .rows())
}

impl Run {
    fn rows(&self) -> Vec<Row> {
        let (hot, solo, c) = (&self.hot, &self.solo, &self.counters);
        let n = hot.len();
        let silent: Vec<f64> = hot.iter().map(|k| k.silent_frames as f64).collect();
        let zero = silent.iter().filter(|&&g| g == 0.0).count() as f64 * 100.0 / n as f64;
        let max = silent.iter().copied().fold(0.0, f64::max);
        let solo_silent: Vec<f64> = solo.iter().map(|k| k.silent_frames as f64).collect();
        let solo_ms = solo_silent
            .iter()
            .map(|f| f / self.rate as f64 * 1e3)
            .collect();
        let mut spawn = Row::summary("failover.spare_spawn_ms", "ms", 0.0, self.spawns);
        (spawn.median, spawn.p99) = (c.spawn_time_ms.p50, c.spawn_time_ms.p99);
        let mut counted = Vec::new();
        if c.failovers != n as u64 {
            counted.push(format!("{} failovers counted for {n} kills", c.failovers));
        }
        if c.replacements != solo.len() as u64 {
            counted.push(format!(
                "{} spare takeovers counted for {} kills without a standby",
                c.replacements,
                solo.len()
            ));
        }
        let mut silent_note = format!(
            "{}-frame periods at {} Hz (one period = {:.2} ms)",
            self.period,
            self.rate,
            self.period as f64 / self.rate as f64 * 1e3,
        );
        if let Some(t) = truncated(hot) {
            silent_note = format!("{silent_note}; {t}");
        }
        let per_kill = |name: &str, unit, value: fn(&Kill) -> f64| {
            Row::new(name, unit, hot.iter().map(value).collect())
        };
        vec![
            Row::summary(
                "failover.xruns_baseline",
                "xruns",
                self.xruns_baseline as f64,
                1,
            )
            .note(format!(
                "{:.1} s without kills, then {:.1} s with {n} kills (xruns_with_kills)",
                self.window.as_secs_f64(),
                self.took.as_secs_f64()
            )),
            Row::summary(
                "failover.xruns_with_kills",
                "xruns",
                self.xruns_with_kills as f64,
                1,
            ),
            per_kill("failover.process_exit_ms", "ms", |k| k.process_exit_ms),
            per_kill("failover.detection_ms", "ms", |k| k.detection_ms),
            Row::new("failover.silent_frames", "frames", silent).note(silent_note),
            Row::summary("failover.max_silent_frames", "frames", max, n),
            Row::summary("failover.zero_gap_share_pct", "%", zero, n),
            owner_gap_row(hot),
            step_row(hot, self.rate),
            per_kill("failover.phase_jumps", "jumps", |k| k.phase_jumps as f64).note(format!(
                "skipped or repeated stretches of the killed module's tone, per kill \
                 (what a listener hears as a click even without a silent sample): in {} \
                 of {n} kills",
                hot.iter().filter(|k| k.phase_jumps > 0).count()
            )),
            per_kill("failover.untouched_phase_jumps", "jumps", |k| {
                k.other_phase_jumps as f64
            })
            .note(format!(
                "the other module, on the same listener, never touched: in {} of {n} kills",
                hot.iter().filter(|k| k.other_phase_jumps > 0).count()
            )),
            per_kill("failover.server_dropped_frames", "frames", |k| {
                k.dropped_frames as f64
            }),
            per_kill("failover.time_ms", "ms", |k| k.time_ms).note(counted.join("; ")),
            Row::new(
                "failover.standby_rebuilt_ms",
                "ms",
                hot.iter().filter_map(|k| k.rebuilt_ms).collect(),
            ),
            spawn,
            Row::new(
                "failover.spare_takeover_silent_frames",
                "frames",
                solo_silent,
            )
            .note(truncated(solo).unwrap_or_default()),
            Row::new("failover.spare_takeover_silent_ms", "ms", solo_ms),
            Row::summary("failover.handbacks", "hand-backs", c.handbacks as f64, 1),
        ]
    }
}

impl Rig<'_> {
    /// Runs `plan.kills` kills of `plan.id`'s primary, one per `plan.slot` at least,
    /// each once the system has settled and then been quiet for [`QUIET`].
    fn kill_loop(&self, plan: &Plan) -> Result<Vec<Kill>, String> {
        let start = Instant::now();
        let mut kills = Vec::with_capacity(plan.kills);
        for k in 0..plan.kills {
            let due = start + plan.slot * k as u32;
            std::thread::sleep(due.saturating_duration_since(Instant::now()));
            wait_settled(self.sup)?;
            std::thread::sleep(QUIET);
            kills.push(self.kill_once(plan)?);
        }
        Ok(kills)
    }

    /// One kill: records around it, reads the events, waits until the module plays
    /// with a new primary (and a ready standby if it has one).
    fn kill_once(&self, plan: &Plan) -> Result<Kill, String> {
        let before = self
            .sup
            .module_status(plan.id)
            .filter(plays_protected)
            .ok_or_else(|| format!("{} does not play before the kill", plan.id))?;
        let frames = (plan.record.as_secs_f64() * self.rate as f64) as usize;
        let pidfd = pidfd(before.pid)?;
        let (started_tx, started) = std::sync::mpsc::channel();
        let (rec, exited, died, failover, killed_at) = std::thread::scope(|s| {
            let recording = s.spawn(|| {
                self.capture
                    .record_then(frames, plan.record + Duration::from_secs(10), move |_| {
                        let _ = started_tx.send(());
                    })
            });
            let join = || {
                recording
                    .join()
                    .map_err(|_| "the recording thread panicked".to_string())?
            };
            if started.recv().is_err() {
                return Err(join().err().unwrap_or_default());
            }
            std::thread::sleep(plan.kill_after);
            let exit = s.spawn(|| exited(&pidfd));
            let killed_at = Instant::now();
            kill(Pid::from_raw(before.pid as i32), Signal::SIGKILL)
                .map_err(|e| format!("kill {}: {e}", before.pid))?;
            let died = self.events.next("/module/died", plan.id)?;
            let failover = self.events.next("/module/failover", plan.id)?;
            let exited = exit
                .join()
                .map_err(|_| "the pidfd thread panicked".to_string())??;
            Ok((join()?, exited, died, failover, killed_at))
        })?;
        self.sup.wait_for_module(plan.id, PATIENCE, |m| {
            m.pid != before.pid && plays_protected(m)
        });
        let counters = self.sup.status()?.counters;
        let out = &rec.channels[plan.channel];
        let other = &rec.channels[1 - plan.channel];
        Ok(Kill {
            phase_jumps: phase_jumps(out, f64::from(FREQ), f64::from(self.rate)).len(),
            other_phase_jumps: phase_jumps(other, f64::from(FREQ), f64::from(self.rate)).len(),
            silent_frames: longest_silent_run(out, 0.0),
            ends_silent: out.last() == Some(&0.0),
            dropped_frames: rec.dropped_frames,
            step: max_step_beyond_slope(out),
            process_exit_ms: ms(exited - killed_at),
            detection_ms: ms(died.1 - killed_at),
            owner_gap_frames: int_arg(&failover.0, 1).and_then(|g| u32::try_from(g).ok()),
            time_ms: counters.failover_time_ms.last,
            rebuilt_ms: before.standby.then_some(counters.rebuild_time_ms.last),
        })
    }
}

/// A pidfd of process `pid` (Linux >= 5.3): readable once the process has exited.
fn pidfd(pid: u32) -> Result<OwnedFd, String> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
    let fd = unsafe { nix::libc::syscall(nix::libc::SYS_pidfd_open, pid as nix::libc::pid_t, 0) };
    if fd < 0 {
        return Err(format!(
            "pidfd_open({pid}): {}",
            std::io::Error::last_os_error()
        ));
    }
    // SAFETY: the fd was just returned to us and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Waits (up to [`PATIENCE`]) until the process behind `pidfd` has exited, and
/// returns when that was seen.
fn exited(pidfd: &OwnedFd) -> Result<Instant, String> {
    let timeout = PollTimeout::try_from(PATIENCE).map_err(|e| e.to_string())?;
    let mut fds = [PollFd::new(pidfd.as_fd(), PollFlags::POLLIN)];
    match poll(&mut fds, timeout) {
        Ok(n) if n > 0 => Ok(Instant::now()),
        Ok(_) => Err(format!("a killed worker still ran after {PATIENCE:?}")),
        Err(e) => Err(format!("poll on a pidfd: {e}")),
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// A note when the silence outlasted some recordings.
fn truncated(kills: &[Kill]) -> Option<String> {
    match kills.iter().filter(|k| k.ends_silent).count() {
        0 => None,
        k => Some(format!(
            "{k} of {} recordings ended in silence: those gaps are longer than counted",
            kills.len()
        )),
    }
}

fn owner_gap_row(kills: &[Kill]) -> Row {
    let gaps: Vec<f64> = kills
        .iter()
        .filter_map(|k| k.owner_gap_frames)
        .map(f64::from)
        .collect();
    let unknown = kills.len() - gaps.len();
    let row = Row::new("failover.owner_silent_frames", "frames", gaps);
    match unknown {
        0 => row,
        u => row.note(format!(
            "{u} of {} takeovers reported no gap (-1)",
            kills.len()
        )),
    }
}

fn step_row(kills: &[Kill], rate: u32) -> Row {
    let steps: Vec<f64> = kills.iter().map(|k| f64::from(k.step)).collect();
    let clean = GAIN * (2.0 * std::f64::consts::PI * FREQ as f64 / rate as f64).powi(2);
    let skipped = kills.iter().filter(|k| k.dropped_frames > 0).count();
    Row::new("failover.step_beyond_slope", "", steps).note(format!(
        "the clean tone scores {clean:.4}, a gap up to {GAIN}; the server skipped \
         frames in {skipped} of {} recordings (spliced, see the module docs)",
        kills.len()
    ))
}

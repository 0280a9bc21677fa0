//! The module set as real JACK clients: standalone workers on a private server, their
//! output recorded by a capture client and analysed.

use modsynth_tests::analysis::{
    band_energy_db, cents, has_non_finite, pitch_hz, strongest_non_harmonic_db,
};
use modsynth_tests::capture::{Capture, Recording};
use modsynth_tests::jack_server::JackServer;
use modsynth_tests::player::Player;
use modsynth_tests::workers::{bin_path, wait_for_port};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const RATE: f64 = 48_000.0;

/// A standalone worker, stopped with SIGTERM and reaped when dropped.
struct Worker(Child);

impl Worker {
    fn start(server: &JackServer, module_type: &str, id: &str, params: &[&str]) -> Worker {
        let child = server
            .command(bin_path("modsynth-worker").unwrap())
            .arg("--standalone")
            .args([module_type, id])
            .args(params)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("modsynth-worker starts");
        let worker = Worker(child);
        let first_port = modsynth_model::catalog::module(module_type).unwrap().ports[0].name;
        wait_for_port(
            server,
            &format!("{id}:{first_port}"),
            Instant::now() + Duration::from_secs(10),
        )
        .unwrap();
        worker
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.0.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let _ = self.0.wait();
    }
}

/// Records `frames` of `ports` (full JACK names), undisturbed (see
/// [`Capture::record_continuous`]).
fn record(server: &JackServer, ports: &[&str], frames: usize) -> Recording {
    let capture = Capture::start(server, ports.len()).unwrap();
    for (k, p) in ports.iter().enumerate() {
        capture.connect_from(p, k).unwrap();
    }
    // Let one period pass so every connection is in the graph.
    capture.record(256).unwrap();
    let rec = capture.record_continuous(frames).unwrap();
    for c in &rec.channels {
        assert!(!has_non_finite(c), "non-finite samples");
    }
    rec
}

#[test]
fn vco_sine_plays_440_hz_within_a_cent_and_follows_its_pitch_input() {
    let server = JackServer::start().unwrap();
    let _vco = Worker::start(&server, "vco", "osc", &["freq=440"]);
    let rec = record(&server, &["osc:out"], 24_000);
    let f = pitch_hz(&rec.channels[0], RATE);
    eprintln!(
        "measured: vco 440 Hz -> {f:.4} Hz ({:+.4} cents)",
        cents(f, 440.0)
    );
    assert!(
        cents(f, 440.0).abs() < 1.0,
        "440 Hz measured as {f} ({:+.3} cents)",
        cents(f, 440.0)
    );

    for (cv, want) in [(1.0, 880.0), (-1.0, 220.0)] {
        let cv_source = Worker::start(&server, "const", "cv", &[&format!("value={cv}")]);
        let ok = server
            .command("jack_connect")
            .args(["cv:out", "osc:pitch"])
            .status()
            .unwrap();
        assert!(ok.success());
        let rec = record(&server, &["osc:out"], 24_000);
        let f = pitch_hz(&rec.channels[0], RATE);
        eprintln!(
            "measured: vco pitch {cv} -> {f:.4} Hz ({:+.4} cents)",
            cents(f, want)
        );
        assert!(
            cents(f, want).abs() < 1.0,
            "pitch {cv}: {f} Hz, want {want} ({:+.3} cents)",
            cents(f, want)
        );
        drop(cv_source);
    }
}

#[test]
fn a_3_khz_saw_keeps_aliases_40_db_below_the_fundamental() {
    let server = JackServer::start().unwrap();
    // Not exactly 3000 Hz: at 48 kHz every alias of 3000 Hz falls on a harmonic and
    // could not be seen. Around it, aliases land between harmonics.
    for f0 in [2900.0f32, 3100.0, 3300.0] {
        let _vco = Worker::start(&server, "vco", "saw", &["wave=saw", &format!("freq={f0}")]);
        let rec = record(&server, &["saw:out"], 48_000);
        let (alias_hz, db) = strongest_non_harmonic_db(&rec.channels[0], RATE, f0 as f64);
        eprintln!("measured: {f0} Hz saw, strongest alias {alias_hz:.0} Hz at {db:.1} dB");
        assert!(
            db <= -40.0,
            "{f0} Hz saw: strongest alias at {alias_hz:.0} Hz is {db:.1} dB"
        );
    }
}

#[test]
fn vcf_lowpass_at_1_khz_attenuates_4_khz_by_18_db_more_than_250_hz() {
    let server = JackServer::start().unwrap();
    let _noise = Worker::start(&server, "noise", "n", &["gain=0.5"]);
    let _vcf = Worker::start(
        &server,
        "vcf",
        "lp",
        &["mode=lowpass", "cutoff=1000", "resonance=0"],
    );
    assert!(server
        .command("jack_connect")
        .args(["n:out", "lp:in"])
        .status()
        .unwrap()
        .success());
    let rec = record(&server, &["lp:out", "n:out"], 96_000);
    let out = &rec.channels[0];
    let low = band_energy_db(out, RATE, 200.0, 300.0);
    let high = band_energy_db(out, RATE, 3800.0, 4200.0);
    // Relative to the input's own spectrum in the same bands (white noise is flat).
    let input = &rec.channels[1];
    let in_low = band_energy_db(input, RATE, 200.0, 300.0);
    let in_high = band_energy_db(input, RATE, 3800.0, 4200.0);
    let attenuation = (low - in_low) - (high - in_high);
    eprintln!("measured: vcf lowpass 1 kHz, 4 kHz is {attenuation:.1} dB below 250 Hz");
    assert!(
        attenuation >= 18.0,
        "4 kHz is only {attenuation:.1} dB below 250 Hz"
    );
}

/// Plays `signal` on the player's first port once a recording of `frames` runs (its
/// first period has arrived: what is played lands inside it), taking both again
/// when the machine disturbed the recording (see
/// [`Capture::retake_while_disturbed`]).
fn play_while_recording(
    player: &Player,
    capture: &Capture,
    signal: Vec<f32>,
    frames: usize,
) -> Recording {
    capture
        .retake_while_disturbed(|| {
            let mut played = None;
            let rec = capture.record_then(frames, Duration::from_secs(20), |_| {
                played = Some(player.play(vec![signal.clone()]));
            })?;
            played.expect("the recording started")?;
            Ok((rec, ()))
        })
        .unwrap()
        .0
}

/// Finds rising edges (>= 0.5) in a gate signal.
fn rising_edges(gate: &[f32]) -> Vec<usize> {
    (1..gate.len())
        .filter(|&i| gate[i] >= 0.5 && gate[i - 1] < 0.5)
        .collect()
}

#[test]
fn adsr_stages_take_their_times_within_a_millisecond() {
    let server = JackServer::start().unwrap();
    let (attack, decay, sustain, release) = (0.010, 0.050, 0.5, 0.100);
    let _env = Worker::start(
        &server,
        "adsr",
        "env",
        &[
            &format!("attack={attack}"),
            &format!("decay={decay}"),
            &format!("sustain={sustain}"),
            &format!("release={release}"),
        ],
    );
    let player = Player::start(&server, 1).unwrap();
    player.connect_to(0, "env:gate").unwrap();
    let capture = Capture::start(&server, 2).unwrap();
    capture.connect_from(&player.port(0), 0).unwrap();
    capture.connect_from("env:out", 1).unwrap();
    capture.record(256).unwrap();
    // Gate high for 200 ms, then low.
    let mut gate = vec![1.0f32; 9600];
    gate.extend(vec![0.0; 9600]);
    let recording = play_while_recording(&player, &capture, gate, 48_000);
    let g = &recording.channels[0];
    let env = &recording.channels[1];
    let on = rising_edges(g)[0];
    let off = on + g[on..].iter().position(|&v| v < 0.5).unwrap();
    let ms = |samples: usize| samples as f64 * 1000.0 / RATE;
    let peak_at = on
        + env[on..]
            .iter()
            .position(|&v| v >= 0.9999)
            .expect("reaches 1");
    let sustain_at = peak_at
        + env[peak_at..]
            .iter()
            .position(|&v| (v - sustain).abs() < 1e-4)
            .expect("reaches sustain");
    let zero_at = off
        + env[off..]
            .iter()
            .position(|&v| v <= 1e-6)
            .expect("returns to 0");
    let check = |name: &str, got: f64, want: f64| {
        assert!(
            (got - want * 1000.0).abs() <= 1.0,
            "{name}: {got:.3} ms, want {:.3} ms",
            want * 1000.0
        );
    };
    eprintln!(
        "measured: adsr attack {:.3} ms, decay {:.3} ms, release {:.3} ms",
        ms(peak_at - on),
        ms(sustain_at - peak_at),
        ms(zero_at - off)
    );
    check("attack", ms(peak_at - on), attack);
    check("decay", ms(sustain_at - peak_at), decay);
    check("release", ms(zero_at - off), release);
    assert!(
        (env[off - 1] - sustain).abs() < 1e-4,
        "holds sustain while the gate is high"
    );
}

#[test]
fn delay_moves_an_impulse_by_exactly_its_time_in_samples() {
    let server = JackServer::start().unwrap();
    // 600 samples: a whole number, so the interpolating delay returns the impulse
    // unchanged (fractional times are tested offline, in the worker's DSP tests).
    let time = 0.0125;
    let _delay = Worker::start(
        &server,
        "delay",
        "d",
        &[&format!("time={time}"), "feedback=0", "mix=1"],
    );
    let player = Player::start(&server, 1).unwrap();
    player.connect_to(0, "d:in").unwrap();
    let capture = Capture::start(&server, 2).unwrap();
    capture.connect_from(&player.port(0), 0).unwrap();
    capture.connect_from("d:out", 1).unwrap();
    capture.record(256).unwrap();
    let mut impulse = vec![0.0f32; 4096];
    impulse[1000] = 1.0;
    let rec = play_while_recording(&player, &capture, impulse, 24_000);
    let input_at = rec.channels[0]
        .iter()
        .position(|&v| v == 1.0)
        .expect("the impulse was captured");
    let output_at = rec.channels[1]
        .iter()
        .position(|&v| v != 0.0)
        .expect("the delay let it out");
    assert_eq!(output_at - input_at, (time * RATE).round() as usize);
    assert_eq!(rec.channels[1][output_at], 1.0, "unchanged in level");
}

#[test]
fn seq_steps_start_on_the_samples_the_bpm_implies() {
    let server = JackServer::start().unwrap();
    // 137 bpm, 4 steps per beat: a step is 48000*60/548 = 5255.47... samples.
    let _seq = Worker::start(
        &server,
        "seq",
        "s",
        &[
            "bpm=137",
            "div=4",
            "steps=4",
            "step1=0.1",
            "step2=0.2",
            "step3=0.3",
            "step4=0.4",
        ],
    );
    let rec = record(&server, &["s:gate", "s:pitch"], 96_000);
    let edges = rising_edges(&rec.channels[0]);
    assert!(edges.len() >= 10, "{} steps in 2 s", edges.len());
    let step = RATE * 60.0 / (137.0 * 4.0);
    // Step k starts at ceil(k * step) samples from the module's start, so every gap
    // between two starts is floor(step) or ceil(step), and over n steps they add up.
    for pair in edges.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(
            gap == step.floor() as usize || gap == step.ceil() as usize,
            "gap of {gap} samples"
        );
    }
    let n = edges.len() - 1;
    let total = edges[n] - edges[0];
    assert!(
        (total as f64 - n as f64 * step).abs() < 1.0 + 1e-9,
        "{n} steps took {total} samples"
    );
    // The pitch output changes exactly at step starts.
    let pitch = &rec.channels[1];
    for &e in &edges[1..] {
        assert_ne!(pitch[e], pitch[e - 1], "pitch changes with the gate")
    }
}

#[test]
fn a_bad_param_value_exits_non_zero_naming_the_range() {
    let out = Command::new(bin_path("modsynth-worker").unwrap())
        .args(["--standalone", "vcf", "f", "cutoff=5"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("vcf.cutoff = 5 is out of range 20..20000 Hz"),
        "stderr: {err}"
    );
    let out = Command::new(bin_path("modsynth-worker").unwrap())
        .args(["--standalone", "vco", "v", "freq=nan"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("finite"));
}

#[test]
fn a_client_that_cannot_open_says_what_failed_not_that_no_server_runs() {
    let server = JackServer::start().unwrap();
    let _first = Worker::start(&server, "const", "twin", &[]);
    // The same client name again: the server runs fine and refuses the name
    // (jackd2 says "communication error", not "name not unique", for an exact name).
    let out = server
        .command(bin_path("modsynth-worker").unwrap())
        .args(["--standalone", "const", "twin"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot open JACK client 'twin'")
            && err.contains("although the server runs")
            && err.contains("a client of that name is already open")
            && !err.contains("Is a JACK server running"),
        "stderr: {err}"
    );
    // The probe the message relies on sees this server, and no other.
    assert!(modsynth_worker::jack_host::jackd_runs(server.name()));
    assert!(!modsynth_worker::jack_host::jackd_runs(
        "modsynth-no-such-server"
    ));
    // No server at all: then it says so.
    let out = Command::new(bin_path("modsynth-worker").unwrap())
        .args(["--standalone", "const", "alone"])
        .env("JACK_DEFAULT_SERVER", "modsynth-no-such-server")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("Is a JACK server running?"),
        "stderr: {err}"
    );
}

#[test]
fn parameter_lines_on_stdin_reach_the_playing_module() {
    let server = JackServer::start().unwrap();
    let mut child = server
        .command(bin_path("modsynth-worker").unwrap())
        .args(["--standalone", "const", "k", "value=0.25"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    wait_for_port(&server, "k:out", Instant::now() + Duration::from_secs(10)).unwrap();
    let rec = record(&server, &["k:out"], 512);
    assert!(rec.channels[0].iter().all(|&v| v == 0.25));
    use std::io::Write;
    let stdin = child.stdin.as_mut().unwrap();
    writeln!(stdin, "value=99").unwrap(); // refused: out of range, changes nothing
    writeln!(stdin, "value=-0.5").unwrap();
    stdin.flush().unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let rec = record(&server, &["k:out"], 512);
        if rec.channels[0].iter().all(|&v| v == -0.5) {
            break;
        }
        // `value` glides from 0.25 to -0.5: only values on the way ever play.
        assert!(
            rec.channels[0].iter().all(|&v| (-0.5..=0.25).contains(&v)),
            "only valid values ever play"
        );
        assert!(Instant::now() < deadline, "the change never arrived");
    }
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    assert!(child.wait().unwrap().success(), "SIGTERM closes cleanly");
}

// Determinism and hand-over are proven in worker/tests/handover.rs: a standby engine
// that maps the published state continues every module type bit-exactly (the test
// that stood here rendered twice from the same fresh state, which cannot fail).

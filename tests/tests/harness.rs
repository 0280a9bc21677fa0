//! Tests of the harness itself on private JACK servers: server lifecycle, the
//! Player -> Capture path with exact frame times, parallel servers.

use modsynth_tests::analysis::{first_index_above, peak};
use modsynth_tests::workers::wait_for_port;
use modsynth_tests::{Capture, JackServer, Player};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const TIMEOUT: Duration = Duration::from_secs(20);

/// Records `frames` on `capture` while `player` plays `channels`, started only once
/// the recording runs. Returns the recording and the player's start frame. Takes it
/// again when the server's frame timer jumped during the recording (an xrun on a
/// loaded machine), since sample indices then no longer map to frame times (see
/// `Capture::retake_while_disturbed`).
fn play_during_recording(
    capture: &Capture,
    player: &Player,
    frames: usize,
    channels: Vec<Vec<f32>>,
) -> (modsynth_tests::Recording, u64) {
    capture
        .retake_while_disturbed(|| {
            let (tx, rx) = mpsc::channel();
            let (rec, start) = std::thread::scope(|s| {
                let rec = s.spawn(move || {
                    capture.record_then(frames, TIMEOUT, move |_| {
                        let _ = tx.send(());
                    })
                });
                rx.recv_timeout(TIMEOUT).expect("recording started");
                let start = player.play(channels.clone()).expect("play");
                (rec.join().expect("recording thread"), start)
            });
            let rec = rec?;
            assert!(!rec.overflowed, "the reader keeps up with 2 s rings");
            player.wait_idle(TIMEOUT).expect("player idle");
            Ok((rec, start))
        })
        .expect("an undisturbed recording")
}

fn impulse(len: usize, at: usize) -> Vec<f32> {
    let mut v = vec![0.0; len];
    v[at] = 1.0;
    v
}

#[test]
fn impulse_played_at_sample_1000_is_captured_at_player_start_frame_plus_1000() {
    let server = JackServer::start().expect("jack server");
    let capture = Capture::start(&server, 1).unwrap();
    let player = Player::start(&server, 1).unwrap();
    capture.connect_from(&player.port(0), 0).unwrap();

    let (rec, start) = play_during_recording(&capture, &player, 48_000, vec![impulse(4096, 1000)]);

    assert!(rec.is_continuous(), "{} frame jumps", rec.frame_jumps);
    assert_eq!(rec.sample_rate, 48_000);
    assert!(
        start > rec.start_frame,
        "played at {start}, recording from {}",
        rec.start_frame
    );
    let expected = rec
        .index_of_frame(start + 1000)
        .expect("impulse frame inside the recording");
    let ch = &rec.channels[0];
    assert_eq!(first_index_above(ch, 0.5), Some(expected));
    assert_eq!(ch[expected], 1.0);
    assert_eq!(peak(&ch[expected + 1..]), 0.0, "exactly one impulse");
}

#[test]
fn player_plays_each_channel_on_its_own_port_and_pads_short_ones_with_silence() {
    let server = JackServer::start().expect("jack server");
    let capture = Capture::start(&server, 3).unwrap();
    let player = Player::start(&server, 3).unwrap();
    for k in 0..3 {
        capture.connect_from(&player.port(k), k).unwrap();
    }
    // Channel 2 is not given at all: it must stay silent.
    let channels = vec![impulse(2000, 10), impulse(500, 300)];
    let (rec, start) = play_during_recording(&capture, &player, 24_000, channels);
    assert!(rec.is_continuous(), "{} frame jumps", rec.frame_jumps);
    let base = rec.index_of_frame(start).unwrap();
    assert_eq!(first_index_above(&rec.channels[0], 0.5), Some(base + 10));
    assert_eq!(first_index_above(&rec.channels[1], 0.5), Some(base + 300));
    assert_eq!(peak(&rec.channels[2]), 0.0);
    assert!(player.finished() >= 1);
}

#[test]
fn consecutive_plays_start_after_each_other_and_buffers_are_returned() {
    let server = JackServer::start().expect("jack server");
    let player = Player::start(&server, 1).unwrap();
    let mut last = None;
    for _ in 0..40 {
        let start = player.play(vec![vec![0.25; 600]]).unwrap();
        if let Some(prev) = last {
            assert!(start >= prev + 600, "{start} after {prev}");
        }
        last = Some(start);
    }
    player.wait_idle(TIMEOUT).unwrap();
    assert_eq!(player.finished(), 40);
}

#[test]
fn recording_starts_on_a_period_boundary_and_gaps_come_only_from_server_xruns() {
    let server = JackServer::start_with(48_000, 128).expect("jack server");
    let capture = Capture::start(&server, 2).unwrap();
    let xruns_before = capture.xruns();
    let rec = capture.record(10_000).unwrap();
    assert_eq!(rec.frames(), 10_000);
    assert_eq!(rec.channels.len(), 2);
    assert_eq!(
        rec.start_frame % 128,
        0,
        "dummy backend periods start at multiples of 128"
    );
    assert!(!rec.overflowed, "the reader keeps up with 2 s rings");
    if rec.frame_jumps > 0 {
        // A late cycle on a loaded machine: the server skipped frames and must say so
        // (the xrun notification arrives asynchronously).
        let deadline = Instant::now() + Duration::from_secs(5);
        while capture.xruns() == xruns_before && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(
            capture.xruns() > xruns_before,
            "{} frame jumps without an xrun",
            rec.frame_jumps
        );
    }
    // A second recording discards what was buffered in between: it starts later.
    let rec2 = capture.record(256).unwrap();
    assert!(rec2.start_frame >= rec.start_frame + 10_000);
}

#[test]
fn two_private_servers_run_at_once_and_in_process_clients_take_turns() {
    // Started from this thread, both share its turn at JACK (see `jack_turn`).
    let a = JackServer::start().unwrap();
    let b = JackServer::start().unwrap();
    assert_ne!(a.name(), b.name());
    let pa = Player::start(&a, 1).unwrap();
    wait_for_port(&a, &pa.port(0), Instant::now() + TIMEOUT).unwrap();

    // Child processes reach either server; each sees only its own clients.
    let lsp = |server: &JackServer| {
        let out = server.command("jack_lsp").output().expect("jack_lsp");
        assert!(out.status.success());
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert!(lsp(&a).lines().any(|l| l == pa.port(0)));
    assert!(!lsp(&b).lines().any(|l| l == pa.port(0)));

    // libjack serves one server per process: B waits while A's clients are open...
    let err = b
        .open_client_timeout("look", Duration::from_millis(200))
        .unwrap_err();
    assert!(err.contains("one server per process"), "{err}");

    // ...and gets its turn once they are closed, while A keeps running.
    drop(pa);
    let cb = Capture::start(&b, 1).unwrap();
    assert_eq!(cb.record(4800).unwrap().frames(), 4800);
    drop(cb);
    let ca = Capture::start(&a, 1).unwrap();
    assert_eq!(ca.record(4800).unwrap().frames(), 4800);
}

#[test]
fn wait_for_port_times_out_with_an_error_for_a_missing_port() {
    let server = JackServer::start().expect("jack server");
    let deadline = Instant::now() + Duration::from_millis(100);
    let err = wait_for_port(&server, "nobody:out", deadline).unwrap_err();
    assert!(err.contains("nobody:out"), "{err}");
}

#[test]
fn command_points_child_processes_at_the_private_server() {
    let server = JackServer::start().expect("jack server");
    let player = Player::start(&server, 1).unwrap();
    let out = server
        .command("jack_lsp")
        .output()
        .expect("jack_lsp (jackd2 example clients)");
    let listing = String::from_utf8_lossy(&out.stdout);
    assert!(
        listing.lines().any(|l| l == player.port(0)),
        "jack_lsp printed:\n{listing}"
    );
}

#[test]
fn dropping_the_server_kills_and_reaps_its_jackd() {
    let server = JackServer::start().expect("jack server");
    let pid = server.pid();
    let proc_dir = std::path::PathBuf::from(format!("/proc/{pid}"));
    assert!(proc_dir.exists());
    drop(server);
    // Reaped: no process and no zombie left under that pid (barring pid reuse).
    let status = std::fs::read_to_string(proc_dir.join("status")).unwrap_or_default();
    assert!(
        !status.contains("jackd"),
        "pid {pid} still there:\n{status}"
    );
}

#[test]
fn record_fails_instead_of_hanging_when_the_server_dies() {
    let server = JackServer::start().expect("jack server");
    let capture = Capture::start(&server, 1).unwrap();
    drop(server);
    let t0 = Instant::now();
    let err = capture
        .record_timeout(48_000 * 60, Duration::from_secs(5))
        .unwrap_err();
    assert!(t0.elapsed() < Duration::from_secs(30));
    assert!(err.contains("capture"), "{err}");
}

#[test]
fn recording_round_trips_through_a_float_wav() {
    let server = JackServer::start().expect("jack server");
    let capture = Capture::start(&server, 2).unwrap();
    let player = Player::start(&server, 2).unwrap();
    capture.connect_from(&player.port(0), 0).unwrap();
    capture.connect_from(&player.port(1), 1).unwrap();
    let ramp: Vec<f32> = (0..1000).map(|i| i as f32 / 1000.0).collect();
    let (rec, _) = play_during_recording(&capture, &player, 4800, vec![ramp, vec![-0.5; 1000]]);
    let path = std::env::temp_dir().join(format!("modsynth-harness-{}.wav", std::process::id()));
    rec.write_wav(&path).unwrap();
    let mut reader = hound::WavReader::open(&path).unwrap();
    let spec = reader.spec();
    assert_eq!(
        (spec.channels, spec.sample_rate, spec.bits_per_sample),
        (2, 48_000, 32)
    );
    let samples: Vec<f32> = reader.samples::<f32>().map(Result::unwrap).collect();
    let _ = std::fs::remove_file(&path);
    let left: Vec<f32> = samples.iter().step_by(2).copied().collect();
    let right: Vec<f32> = samples.iter().skip(1).step_by(2).copied().collect();
    assert_eq!(left, rec.channels[0]);
    assert_eq!(right, rec.channels[1]);
}

//! Playing modsynth over JACK MIDI: a harness MIDI player sends notes with known
//! frames into `midi2cv` inside a running `modsynthd`, and the recorded CV and the
//! audio of a VCO it drives are analysed.

use modsynth_tests::analysis::{cents, pitch_hz};
use modsynth_tests::capture::Capture;
use modsynth_tests::jack_server::JackServer;
use modsynth_tests::midi_player::MidiPlayer;
use modsynth_tests::supervisor::ReadyStandby;
use modsynth_tests::supervisor::Supervisor;
use modsynth_tests::workers::sigkill;
use std::time::Duration;

const RATE: f64 = 48_000.0;
const PATIENCE: Duration = Duration::from_secs(30);
/// Middle C, the VCO's `freq`: the pitch of `base_note` 60.
const MIDDLE_C: f64 = 261.625_58;

/// The C major scale from middle C up, as MIDI keys.
const SCALE: [u8; 8] = [60, 62, 64, 65, 67, 69, 71, 72];
/// Frames from one note-on to the next, and how long each key is held.
const NOTE_EVERY: u64 = 12_000;
const NOTE_LENGTH: u64 = 9_600;

/// The note-on and note-off offsets of scale note `k`: not on period boundaries, and
/// each at a different place in its period.
fn note_frames(k: usize) -> (u64, u64) {
    let on = k as u64 * NOTE_EVERY + 100 + 37 * k as u64;
    (on, on + NOTE_LENGTH)
}

#[test]
fn a_c_major_scale_over_jack_midi_plays_in_tune_with_gates_on_the_note_frames_and_bends_two_semitones(
) {
    let server = JackServer::start().unwrap();
    let sup = Supervisor::start(&server, 3).unwrap();
    sup.new_module("midi2cv", "keys", &[("bend_range", 2.0)])
        .unwrap();
    sup.new_module("vco", "osc", &[("freq", MIDDLE_C as f32), ("gain", 0.5)])
        .unwrap();
    let player = MidiPlayer::start(&server).unwrap();
    let capture = Capture::start(&server, 3).unwrap();
    sup.connect(&player.port(), "keys:midi").unwrap();
    sup.connect("keys:pitch", "osc:pitch").unwrap();
    sup.connect("keys:gate", &capture.port(0)).unwrap();
    sup.connect("keys:pitch", &capture.port(1)).unwrap();
    sup.connect("osc:out", &capture.port(2)).unwrap();
    sup.wait_until_settled(PATIENCE);

    // Each take starts from no key held and the bend centred: a retake follows a
    // take that ended with middle C held and bent.
    let mut events = vec![(0, vec![0xB0, 123, 0]), (0, vec![0xE0, 0x00, 0x40])];
    for (k, &key) in SCALE.iter().enumerate() {
        let (on, off) = note_frames(k);
        events.push((on, vec![0x90, key, 100]));
        events.push((off, vec![0x80, key, 0]));
    }
    // Then middle C held, bent full up half way through.
    let held = SCALE.len() as u64 * NOTE_EVERY;
    let bend_at = held + NOTE_EVERY;
    events.push((held, vec![0x90, 60, 100]));
    events.push((bend_at, vec![0xE0, 0x7F, 0x7F]));
    let total = (bend_at + 2 * NOTE_EVERY) as usize;

    let (rec, start) = play_while_recording(&capture, &player, &events, total + 4096);
    assert_eq!(player.refused(), 0);
    let [gate, pitch, audio] = &rec.channels[..] else {
        unreachable!()
    };
    let at = |offset: u64| {
        rec.index_of_frame(start + offset)
            .expect("the notes are inside the recording")
    };

    let mut latencies = Vec::new();
    for (k, &key) in SCALE.iter().enumerate() {
        let (on, off) = note_frames(k);
        let (on_i, off_i) = (at(on), at(off));
        // Where the gate rose and fell, searched around the note's frames.
        let rose = (on_i.saturating_sub(512).max(at(1))..off_i)
            .find(|&i| gate[i] >= 0.5)
            .unwrap();
        let fell = (rose..off_i + 4096).find(|&i| gate[i] < 0.5).unwrap();
        latencies.push((rose as i64 - on_i as i64, fell as i64 - off_i as i64));
        let want = (key as f32 - 60.0) / 12.0;
        assert!(
            pitch[rose..fell].iter().all(|&p| p == want),
            "key {key}: pitch CV not exactly {want} while the gate is high"
        );
        let middle = (rose + fell) / 2;
        let f = pitch_hz(&audio[middle - 4096..middle + 4096], RATE);
        let f_want = MIDDLE_C * 2f64.powf((key as f64 - 60.0) / 12.0);
        eprintln!(
            "measured: key {key}: gate {:+} / {:+} frames from note-on / note-off, {f:.3} Hz ({:+.3} cents)",
            rose as i64 - on_i as i64,
            fell as i64 - off_i as i64,
            cents(f, f_want)
        );
        assert!(
            cents(f, f_want).abs() < 1.0,
            "key {key}: {f} Hz, want {f_want} ({:+.3} cents)",
            cents(f, f_want)
        );
    }
    // The documented latency: none, when the MIDI source runs before the module in
    // JACK's graph (a connected source does). The same for every note either way.
    assert!(
        latencies.iter().all(|&l| l == (0, 0)),
        "gate edges off the note frames: {latencies:?}"
    );

    let bend_i = at(bend_at);
    assert_eq!(pitch[bend_i - 1], 0.0, "middle C before the bend");
    assert_eq!(pitch[bend_i], 2.0 / 12.0, "bent on its frame");
    let f = pitch_hz(&audio[bend_i + 2048..bend_i + 2048 + 8192], RATE);
    let f_want = MIDDLE_C * 2f64.powf(2.0 / 12.0);
    eprintln!(
        "measured: full pitch bend up: {f:.3} Hz ({:+.3} cents from +2 semitones)",
        cents(f, f_want)
    );
    assert!(cents(f, f_want).abs() < 1.0, "bent to {f} Hz");
}

#[test]
fn a_held_note_stays_held_when_the_midi2cv_primary_is_killed() {
    let server = JackServer::start().unwrap();
    let period = server.period() as usize;
    let sup = Supervisor::start(&server, 3).unwrap();
    sup.new_module("midi2cv", "keys", &[]).unwrap();
    let player = MidiPlayer::start(&server).unwrap();
    let capture = Capture::start(&server, 2).unwrap();
    sup.connect(&player.port(), "keys:midi").unwrap();
    sup.connect("keys:gate", &capture.port(0)).unwrap();
    sup.connect("keys:pitch", &capture.port(1)).unwrap();
    let before = sup.wait_for_module("keys", PATIENCE, |m| m.standby_worker.is_some());
    sup.wait_until_settled(PATIENCE);
    player.play(vec![(0, vec![0x90, 67, 100])]).unwrap();
    let held = capture.record_continuous(4096).unwrap();
    assert!(
        held.channels[0].iter().all(|&g| g == 1.0),
        "the key is held"
    );

    let rec = capture
        .record_with_lead(48_000, 14_400, || sigkill(before.pid))
        .unwrap();
    let after = sup.wait_for_module("keys", PATIENCE, |m| m.pid != before.pid);
    assert_eq!(
        after.pid,
        before.ready_standby().pid,
        "the standby took over"
    );
    let [gate, pitch] = &rec.channels[..] else {
        unreachable!()
    };
    let low = gate.iter().filter(|&&g| g < 0.5).count();
    eprintln!(
        "measured: midi2cv failover during a held note: gate low for {low} samples, {} frames dropped by the server",
        rec.dropped_frames
    );
    assert!(low <= period, "the gate dropped for {low} samples");
    let tail = &gate[gate.len() - 12_000..];
    assert!(
        tail.iter().all(|&g| g == 1.0),
        "the gate is high after the failover"
    );
    let tail = &pitch[pitch.len() - 12_000..];
    assert!(
        tail.iter().all(|&p| p == 7.0 / 12.0),
        "still the held key's pitch"
    );
}

/// Frames between MIDI clocks at 120 BPM and 48 kHz: 24 per quarter note.
const TICK: u64 = 1000;

#[test]
fn midi_clock_at_120_bpm_steps_seq_on_the_clock_frames_and_stop_continue_and_start_behave() {
    let server = JackServer::start().unwrap();
    let sup = Supervisor::start(&server, 3).unwrap();
    sup.new_module("clock", "midiclock", &[("div", 6.0)])
        .unwrap();
    let mut seq_params = vec![("clock", 1.0), ("steps", 4.0)];
    let steps = ["step1", "step2", "step3", "step4"];
    for (k, s) in steps.iter().enumerate() {
        seq_params.push((s, k as f32 / 12.0));
    }
    sup.new_module("seq", "steps", &seq_params).unwrap();
    let player = MidiPlayer::start(&server).unwrap();
    let capture = Capture::start(&server, 2).unwrap();
    sup.connect(&player.port(), "midiclock:midi").unwrap();
    for port in ["clock", "run", "reset"] {
        sup.connect(&format!("midiclock:{port}"), &format!("steps:{port}"))
            .unwrap();
    }
    sup.connect("steps:pitch", &capture.port(0)).unwrap();
    sup.connect("steps:gate", &capture.port(1)).unwrap();
    sup.wait_until_settled(PATIENCE);

    // Start, 24 clocks (4 sixteenths), Stop, 12 clocks that must do nothing,
    // Continue, 12 clocks (2 sixteenths), Start again (back to step 1), 12 clocks.
    let mut events = vec![(50, vec![0xFA])];
    let clock = |k: u64| (100 + k * TICK, vec![0xF8]);
    events.extend((0..24).map(clock));
    events.push((24 * TICK + 50, vec![0xFC]));
    events.extend((24..36).map(clock));
    events.push((36 * TICK + 50, vec![0xFB]));
    events.extend((36..48).map(clock));
    events.push((48 * TICK + 50, vec![0xFA]));
    events.extend((48..60).map(clock));
    let total = (61 * TICK) as usize;
    let (rec, start) = play_while_recording(&capture, &player, &events, total + 4096);
    let [pitch, gate] = &rec.channels[..] else {
        unreachable!()
    };
    let at = |offset: u64| rec.index_of_frame(start + offset).unwrap();
    let step_at = |i: usize| (pitch[i] * 12.0).round() as i32;
    // Which clock plays which step: every 6th counted clock; the 12 while stopped
    // are not counted, Start again goes back to step 1.
    let expected = [
        (0, 0),
        (6, 1),
        (12, 2),
        (18, 3),
        (36, 0),
        (42, 1),
        (48, 0),
        (54, 1),
    ];
    let mut rises = Vec::new();
    for (clock_k, want_step) in expected {
        let i = at(100 + clock_k * TICK);
        assert_eq!(gate[i - 1], 0.0, "gate low before clock {clock_k}");
        assert_eq!(gate[i], 1.0, "gate rises on clock {clock_k}'s frame");
        assert_eq!(step_at(i), want_step, "step on clock {clock_k}");
        rises.push(i);
    }
    let all_rises = (1..gate.len())
        .filter(|&i| gate[i] >= 0.5 && gate[i - 1] < 0.5)
        .count();
    eprintln!(
        "measured: seq on MIDI clock: {} gate rises on the expected frames of {all_rises}",
        rises.len()
    );
    assert_eq!(all_rises, expected.len(), "no step while stopped");
}

/// Plays `events` once a recording of `frames` runs; returns the recording and the
/// frame the events started at (taken again only when the machine disturbed it).
fn play_while_recording(
    capture: &Capture,
    player: &MidiPlayer,
    events: &[(u64, Vec<u8>)],
    frames: usize,
) -> (modsynth_tests::Recording, u64) {
    capture
        .retake_while_disturbed(|| {
            let mut start = None;
            let rec = capture.record_then(frames, Duration::from_secs(20), |_| {
                start = Some(player.play(events.to_vec()));
            })?;
            Ok((rec, start.expect("the recording started")?))
        })
        .unwrap()
}

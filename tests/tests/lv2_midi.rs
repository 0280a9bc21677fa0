//! LV2 plugins with a MIDI input: mda `EPiano` (Debian's `mda-lv2`, installed by
//! `scripts/setup`), whose atom input `event_in` is the module's JACK MIDI input,
//! played by the harness's MIDI player: the note's pitch by FFT, the frame it
//! starts on, and a failover while a note is held (the lockstep standby heard
//! the same note-on on its own port).

use modsynth_tests::analysis::{cents, first_index_above, longest_silent_run, pitch_hz};
use modsynth_tests::capture::Capture;
use modsynth_tests::jack_server::JackServer;
use modsynth_tests::midi_player::MidiPlayer;
use modsynth_tests::supervisor::{ReadyStandby, Supervisor};
use modsynth_tests::workers::sigkill;
use std::time::Duration;

const RATE: f64 = 48_000.0;
const PATIENCE: Duration = Duration::from_secs(15);
const EPIANO: &str = "lv2:EPiano";

/// The frequency of MIDI note `note` (A4 = 69 = 440 Hz).
fn note_hz(note: u8) -> f64 {
    440.0 * 2f64.powf((note as f64 - 69.0) / 12.0)
}

/// How far from equal temperament EPiano's notes may be: its samples are tuned by
/// ear, not exactly (A3 measured +2.6 cents, A4 -0.2 offline); a wrong note is
/// 100 cents or more away.
const TUNING_CENTS: f64 = 15.0;

#[test]
fn an_lv2_synth_plays_the_pitch_of_each_midi_note_from_the_frame_it_was_sent_on() {
    let server = JackServer::start().unwrap();
    let sup = Supervisor::start(&server, 3).unwrap();
    sup.new_module(EPIANO, "keys", &[]).unwrap();
    let player = MidiPlayer::start(&server).unwrap();
    let capture = Capture::start(&server, 1).unwrap();
    sup.connect(&player.port(), "keys:event_in").unwrap();
    sup.connect("keys:left_out", &capture.port(0)).unwrap();
    sup.wait_until_settled(PATIENCE);
    let period = server.period() as u64;
    // Off the period boundaries: a note moved to the start of its period would
    // sound 3/8 of a period early, one moved to the next 5/8 late. At least 2048
    // frames in: the check looks at the 2048 before each note.
    let first = 12 * period + 3 * period / 8;
    let notes: [(u8, u64); 2] = [(57, first), (64, first + 48_000)];
    let length = 24_000;
    let mut events = vec![(0, vec![0xB0, 123, 0])]; // all notes off: a clean take
    for &(note, on) in &notes {
        events.push((on, vec![0x90, note, 100]));
        events.push((on + length, vec![0x80, note, 0]));
    }
    let total = (notes[1].1 + length + 4_096) as usize;
    let (rec, start) = capture
        .retake_while_disturbed(|| {
            let mut start = None;
            let rec = capture.record_then(
                total + 2 * period as usize,
                Duration::from_secs(20),
                |_| {
                    start = Some(player.play(events.clone()));
                },
            )?;
            Ok((rec, start.expect("the recording started")?))
        })
        .unwrap();
    assert_eq!(player.refused(), 0);
    let out = &rec.channels[0];
    let at = |offset: u64| {
        rec.index_of_frame(start + offset)
            .expect("the notes are inside the recording")
    };
    for &(note, on) in &notes {
        let on_i = at(on);
        // Silent before the note (the one before it released 0.5 s earlier has
        // died away: EPiano's release is short), sounding from its frame on.
        let before = &out[on_i - 2_048..on_i];
        let quiet = before.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let onset = first_index_above(&out[on_i - 2_048..], 1e-3).map(|i| i as i64 - 2_048);
        let f = pitch_hz(&out[on_i + 2_400..on_i + 2_400 + 16_384], RATE);
        let off_by = cents(f, note_hz(note));
        eprintln!(
            "measured: note {note}: {f:.2} Hz ({off_by:+.1} cents), first sample above 1e-3 {onset:?} frames from the note's frame, loudest before it {quiet:.1e}"
        );
        assert!(
            off_by.abs() < TUNING_CENTS,
            "note {note}: {f:.2} Hz, want {:.2}",
            note_hz(note)
        );
        let onset = onset.expect("the note sounds");
        assert!(
            (0..64).contains(&onset),
            "note {note} started {onset} frames from its frame"
        );
    }
}

#[test]
fn sigkill_of_an_lv2_synth_holding_a_midi_note_fails_over_to_its_standby_which_plays_the_same_note()
{
    let server = JackServer::start().unwrap();
    let sup = Supervisor::start(&server, 4).unwrap();
    sup.new_module(EPIANO, "keys", &[]).unwrap();
    let player = MidiPlayer::start(&server).unwrap();
    let capture = Capture::start(&server, 1).unwrap();
    sup.connect(&player.port(), "keys:event_in").unwrap();
    sup.connect("keys:left_out", &capture.port(0)).unwrap();
    let before = sup.wait_for_module("keys", PATIENCE, |m| m.standby_worker.is_some());
    sup.wait_until_settled(PATIENCE);
    // The standby reads the same JACK MIDI port (the supervisor connected it like
    // the primary's), so it hears the note-on too.
    let note = 57;
    player.play(vec![(0, vec![0x90, note, 100])]).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let rec = capture
        .record_with_lead(48_000, 19_200, || sigkill(before.pid))
        .unwrap();
    let after = sup.wait_for_module("keys", PATIENCE, |m| m.pid != before.pid && m.pid != 0);
    assert_eq!(
        after.pid,
        before.ready_standby().pid,
        "the standby took over"
    );
    let out = &rec.channels[0];
    let gap = longest_silent_run(out, 1e-6);
    let early = pitch_hz(&out[..12_000], RATE);
    let late = pitch_hz(&out[out.len() - 16_384..], RATE);
    eprintln!(
        "measured: failover with note {note} held: {gap} silent samples, {early:.2} Hz before, {late:.2} Hz after ({} frames dropped by the server)",
        rec.dropped_frames
    );
    // Lockstep: the standby's next period is the primary's; a standby that had
    // not heard the note-on would be silent from the kill on (~30000 samples).
    assert!(gap <= server.period() as usize, "{gap} silent samples");
    for f in [early, late] {
        assert!(
            cents(f, note_hz(note)).abs() < TUNING_CENTS,
            "{f:.2} Hz, want {:.2}",
            note_hz(note)
        );
    }
}

//! Rows about playing over JACK MIDI (one `modsynthd`, one `midi2cv` with its hot
//! standby, a harness MIDI player connected to it and a capture of its gate):
//!
//! - `midi_note_to_gate_frames`: frames from a note-on's JACK timestamp to the first
//!   high sample of the gate at the module's output, over notes at every position in
//!   their period. 0 is the design: the player runs before the module in JACK's
//!   graph, and the kernel applies each message on its own frame.
//! - `midi_note_off_to_gate_frames`: the same for the falling edge.

use crate::Row;
use modsynth_tests::capture::Capture;
use modsynth_tests::jack_server::JackServer;
use modsynth_tests::midi_player::MidiPlayer;
use modsynth_tests::supervisor::Supervisor;
use std::time::Duration;

/// Every row of this module.
pub fn rows(server: &JackServer, quick: bool) -> Result<Vec<Row>, String> {
    let notes: u64 = if quick { 50 } else { 400 };
    let period = server.period() as u64;
    let sup = Supervisor::start(server, 2)?;
    sup.new_module("midi2cv", "keys", &[])?;
    let player = MidiPlayer::start(server)?;
    let capture = Capture::start(server, 1)?;
    sup.connect(&player.port(), "keys:midi")?;
    sup.connect("keys:gate", &capture.port(0))?;
    sup.wait_until_settled(Duration::from_secs(30));
    // A note every 1000 frames, 500 long: not a multiple of the period, so the
    // note-ons walk through every position inside a period.
    let (every, length) = (1000u64, 500u64);
    let mut events = Vec::new();
    for k in 0..notes {
        let on = 64 + k * every;
        events.push((on, vec![0x90, 60 + (k % 12) as u8, 100]));
        events.push((on + length, vec![0x80, 60 + (k % 12) as u8, 0]));
    }
    let frames = (notes * every + 4 * period) as usize;
    let mut started = None;
    let rec = capture.record_then(frames, Duration::from_secs(60), |_| {
        started = Some(player.play(events.clone()));
    })?;
    let start = started.ok_or("the recording never started")??;
    let gate = &rec.channels[0];
    let (mut on_delays, mut off_delays) = (Vec::new(), Vec::new());
    for k in 0..notes {
        let on = start + 64 + k * every;
        let (Some(on_i), Some(off_i)) = (rec.index_of_frame(on), rec.index_of_frame(on + length))
        else {
            continue; // a disturbed recording: only the undisturbed part counts
        };
        if let Some(rose) = (on_i..off_i).find(|&i| gate[i] >= 0.5) {
            on_delays.push((rose - on_i) as f64);
        }
        if let Some(fell) =
            (off_i..(off_i + every as usize).min(gate.len())).find(|&i| gate[i] < 0.5)
        {
            off_delays.push((fell - off_i) as f64);
        }
    }
    if on_delays.is_empty() {
        return Err("no note's gate was measured (recording disturbed)".into());
    }
    let note = format!(
        "{} of {notes} notes measured; {} frames dropped by the server",
        on_delays.len(),
        rec.dropped_frames
    );
    Ok(vec![
        Row::new("midi_note_to_gate_frames", "frames", on_delays).note(note),
        Row::new("midi_note_off_to_gate_frames", "frames", off_delays),
    ])
}

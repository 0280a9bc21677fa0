//! Rows about playing over JACK MIDI (one `modsynthd`, one `midi2cv` with its hot
//! standby, a harness MIDI player connected to it and a capture of its gate):
//!
//! - `midi_note_to_gate_frames`: frames from a note-on's JACK timestamp to the first
//!   high sample of the gate at the module's output, over notes at every position in
//!   their period. 0 is the design: the player runs before the module in JACK's
//!   graph, and the kernel applies each message on its own frame.
//! - `midi_note_off_to_gate_frames`: the same for the falling edge.
//! - `midi_cc_to_param_frames`: frames from a CC's JACK timestamp (played into
//!   `modsynthd`'s own `midi_in`, mapped to a `const` module's `value`) to the
//!   first sample of the module's output that moved: the change applied in the
//!   worker, heard at its output. The supervisor's callback copies the CC into a
//!   ring, its core drains it every quarter period and sends the change to the
//!   worker, which applies it at the start of its next period: so at most one
//!   period when the hops take less than three quarters of one, two otherwise.
//! - `midi_map_supervisor_cpu_pct`: `modsynthd`'s own CPU (its process only) while
//!   a map listens and CCs arrive, against the same window with no map
//!   (`midi_idle_supervisor_cpu_pct`): the cost of draining `midi_in` every
//!   quarter period.

use crate::load::cpu_seconds;
use crate::Row;
use modsynth_control::osc::{message, text};
use modsynth_tests::capture::Capture;
use modsynth_tests::jack_server::JackServer;
use modsynth_tests::midi_player::MidiPlayer;
use modsynth_tests::supervisor::Supervisor;
use rosc::OscType;
use std::time::Duration;

/// Every row of this module: a disturbed recording of the notes does not keep
/// the CC rows from being measured.
pub fn rows(server: &JackServer, quick: bool) -> Result<Vec<Row>, String> {
    let player = MidiPlayer::start(server)?;
    let capture = Capture::start(server, 1)?;
    let notes = note_rows(server, &player, &capture, quick);
    let ccs = cc_rows(server, &player, &capture, quick);
    match (notes, ccs) {
        (Err(a), Err(b)) => Err(format!("{a}; {b}")),
        (notes, ccs) => {
            for e in [&notes, &ccs].into_iter().filter_map(|r| r.as_ref().err()) {
                eprintln!("bench: midi: {e}");
            }
            Ok(notes.into_iter().chain(ccs).flatten().collect())
        }
    }
}

/// The note-on and note-off rows (see the module doc).
fn note_rows(
    server: &JackServer,
    player: &MidiPlayer,
    capture: &Capture,
    quick: bool,
) -> Result<Vec<Row>, String> {
    let notes: u64 = if quick { 50 } else { 400 };
    let period = server.period() as u64;
    let sup = Supervisor::start(server, 2)?;
    sup.new_module("midi2cv", "keys", &[])?;
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

/// The CC -> parameter rows (see the module doc).
fn cc_rows(
    server: &JackServer,
    player: &MidiPlayer,
    capture: &Capture,
    quick: bool,
) -> Result<Vec<Row>, String> {
    let ccs: u64 = if quick { 50 } else { 200 };
    let period = server.period() as u64;
    let sup = Supervisor::start(server, 2)?;
    sup.new_module("const", "ctl", &[("value", 0.0)])?;
    sup.connect(&player.port(), &format!("{}:midi_in", sup.name))?;
    sup.connect("ctl:out", &capture.port(0))?;
    sup.wait_until_settled(Duration::from_secs(30));
    let seconds = |d: Duration| d.as_secs_f64();
    let idle_from = (std::time::Instant::now(), cpu_seconds(sup.pid()));
    std::thread::sleep(Duration::from_secs(3));
    let idle_pct = (cpu_seconds(sup.pid()) - idle_from.1) / seconds(idle_from.0.elapsed()) * 100.0;
    let args = vec![
        OscType::Int(1),
        OscType::Int(0),
        text("ctl"),
        text("value"),
        OscType::Float(0.0),
        OscType::Float(1.0),
    ];
    sup.client().call(message("/map/cc", args))?;
    // A CC every 4000 frames (more than two periods of 1024 and the 5 ms glide),
    // not a multiple of the period: the CCs walk through every position in it.
    // In takes of 20 CCs (under 2 s), each taken again while the server dropped
    // frames in it (a whole run in one take was always disturbed at 256 frames).
    let every = 4000u64;
    let per_take = 20u64;
    let events: Vec<(u64, Vec<u8>)> = (0..per_take)
        .map(|k| {
            (
                64 + k * every,
                vec![0xB0, 1, if k % 2 == 0 { 127 } else { 0 }],
            )
        })
        .collect();
    let frames = (per_take * every + 4 * period) as usize;
    let busy_from = (std::time::Instant::now(), cpu_seconds(sup.pid()));
    let mut delays = Vec::new();
    let mut dropped = 0;
    for _ in 0..ccs / per_take {
        let (rec, start) = capture.retake_while_disturbed(|| {
            let mut started = None;
            let rec = capture.record_then(frames, Duration::from_secs(60), |_| {
                started = Some(player.play(events.clone()));
            })?;
            Ok((rec, started.ok_or("the recording never started")??))
        })?;
        dropped += rec.dropped_frames;
        let out = &rec.channels[0];
        // The first CC of a take may repeat the value the last take ended on.
        for k in 1..per_take {
            let at = start + 64 + k * every;
            let (Some(i), Some(end)) = (rec.index_of_frame(at), rec.index_of_frame(at + every))
            else {
                continue;
            };
            let old = out[i.saturating_sub(1)];
            if let Some(moved) = (i..end).find(|&j| (out[j] - old).abs() > 1e-4) {
                delays.push((moved - i) as f64);
            }
        }
    }
    let busy_pct = (cpu_seconds(sup.pid()) - busy_from.1) / seconds(busy_from.0.elapsed()) * 100.0;
    if delays.is_empty() {
        return Err("no CC was measured (recording disturbed)".into());
    }
    let note = format!(
        "{} of {} CCs measured, in takes of {per_take} (each retaken while disturbed); \
         period {period} frames; {dropped} frames dropped by the server in the kept takes",
        delays.len(),
        ccs / per_take * (per_take - 1),
    );
    Ok(vec![
        Row::new("midi_cc_to_param_frames", "frames", delays).note(note),
        Row::new("midi_map_supervisor_cpu_pct", "%", vec![busy_pct]),
        Row::new("midi_idle_supervisor_cpu_pct", "%", vec![idle_pct]),
    ])
}

//! Playing a set list (issue 18): a set prepared silently beside the one that plays,
//! then switched to on the frame a timetag names.

use modsynth_control::osc::{message, text};
use modsynth_tests::analysis::{
    band_energy_db, cents, first_index_above, longest_silent_run, pitch_hz, rms,
};
use modsynth_tests::capture::Capture;
use modsynth_tests::continuity::phase_jumps;
use modsynth_tests::jack_server::JackServer;
use modsynth_tests::player::Player;
use modsynth_tests::supervisor::Supervisor;
use rosc::{OscBundle, OscPacket, OscTime, OscType};
use std::f64::consts::TAU;
use std::time::{Duration, SystemTime};

/// A two-module set (`osc` vco -> `amp` vca -> `to`) playing a sine at `freq`.
/// Both sets use the same module ids: the prepared one must not collide.
fn set_at(freq: f32, to: &str) -> String {
    format!(
        "[[module]]\nid = \"osc\"\ntype = \"vco\"\nstandby = \"none\"\nparams = {{ freq = {freq}, wave = \"sine\" }}\n\n\
         [[module]]\nid = \"amp\"\ntype = \"vca\"\nstandby = \"none\"\nparams = {{ gain = 0.8 }}\n\n\
         [[connect]]\nfrom = \"osc:out\"\nto = \"amp:in\"\n\n\
         [[connect]]\nfrom = \"amp:out\"\nto = \"{to}\"\n"
    )
}

/// The ids of the modules `/status` lists, sorted.
fn module_ids(sup: &Supervisor) -> Vec<String> {
    let mut ids: Vec<String> = sup
        .status()
        .unwrap()
        .modules
        .iter()
        .map(|m| m.id.clone())
        .collect();
    ids.sort();
    ids
}

/// The frame a switch landed on, from its `/done /set/switch name frame`.
fn switched_frame(reply: &rosc::OscMessage) -> u32 {
    match reply.args.get(2) {
        Some(OscType::Int(frame)) => *frame as u32,
        other => panic!("/done /set/switch without a frame: {other:?}"),
    }
}

/// `/set/switch next` in a bundle timetagged `lead` from now.
fn switch_in(lead: Duration) -> OscPacket {
    OscPacket::Bundle(OscBundle {
        timetag: OscTime::try_from(SystemTime::now() + lead).unwrap(),
        content: vec![OscPacket::Message(message(
            "/set/switch",
            vec![text("next")],
        ))],
    })
}

/// Loads the first of two sets (set file, what it plays), then prepares whichever
/// does not play as `next`, lets `check_ids` look at the module ids, and sends
/// `switch()` while recording `seconds`, long enough to hold the old set's frees
/// and the new one's renames. A recording with an xrun or a skipped cycle is taken
/// again only while the same graph left alone is disturbed too (the machine); a
/// switch that disturbs the server fails the test. Returns the recording, the
/// switch's frame, and what played before and after it.
fn switch_to_the_other_set<T: Copy + PartialEq>(
    sup: &Supervisor,
    capture: &Capture,
    sets: [(String, T); 2],
    switch: impl Fn() -> OscPacket,
    seconds: f64,
    check_ids: impl Fn(&[String]),
) -> (modsynth_tests::capture::Recording, u32, T, T) {
    let rate = f64::from(capture.sample_rate());
    let files = [("a.toml", sets[0].1), ("b.toml", sets[1].1)];
    for ((file, _), (set, _)) in files.iter().zip(&sets) {
        std::fs::write(sup.sets_dir.join(file), set).unwrap();
    }
    let client = sup.client().with_timeout(Duration::from_secs(60));
    client
        .call(message("/set/load", vec![text("a.toml")]))
        .unwrap();
    let mut playing = files[0].1;
    let (rec, (frame, old, new)) = capture
        .retake_while_disturbed(|| {
            let (file, next) = if playing == files[0].1 {
                files[1]
            } else {
                files[0]
            };
            client.call(message("/set/prepare", vec![text(file), text("next")]))?;
            check_ids(&module_ids(sup));
            sup.wait_until_settled(Duration::from_secs(30));
            let switch = switch();
            let frames = (seconds * rate) as usize;
            let rec = capture.record_then(frames, Duration::from_secs(20), |_| {
                client.send_packet(&switch).unwrap();
            })?;
            let reply = client.wait_for(|m| {
                (m.addr == "/done" || m.addr == "/fail")
                    && m.args.first() == Some(&text("/set/switch"))
            })?;
            assert_eq!(reply.addr, "/done", "{reply:?}");
            let was = playing;
            playing = next;
            Ok((rec, (switched_frame(&reply), was, next)))
        })
        .unwrap();
    (rec, frame, old, new)
}

#[test]
fn a_prepared_set_is_silent_and_a_timetagged_switch_lands_on_its_frame_without_a_gap() {
    let server = JackServer::start().unwrap();
    let sup = Supervisor::start(&server, 4).unwrap();
    let capture = Capture::start(&server, 1).unwrap();
    let rate = f64::from(capture.sample_rate());
    let period = server.period() as usize;
    let to = capture.port(0);
    let (low, high) = (220.0f64, 330.0f64);
    // Each take switches to the set that does not play, prepared anew.
    let (rec, frame, old, new) = switch_to_the_other_set(
        &sup,
        &capture,
        [
            (set_at(low as f32, &to), low),
            (set_at(high as f32, &to), high),
        ],
        || switch_in(Duration::from_millis(500)),
        2.5,
        |ids| {
            let want = ["amp", "next.amp", "next.osc", "osc"].map(String::from);
            assert_eq!(
                ids, want,
                "prepared beside the playing set under its own ids"
            );
        },
    );
    // After the switch the prepared modules have the final ids, the old ones are gone.
    assert_eq!(module_ids(&sup), ["amp", "osc"].map(String::from));
    let at = rec.index_of_frame(u64::from(frame)).unwrap_or_else(|| {
        panic!(
            "switch frame {frame} outside the recording from {}",
            rec.start_frame
        )
    });
    // Sent 500 ms ahead just after the recording started: not applied at once.
    assert!(
        at as f64 > 0.3 * rate,
        "the switch landed {at} frames into the recording, before its timetag"
    );
    let fade = (0.005 * rate) as usize; // the default crossfade
    let signal = &rec.channels[0];
    assert!(
        at > 8 * period && at + fade + 8 * period < signal.len(),
        "switch at {at} of {}",
        signal.len()
    );
    let before = &signal[..at];
    let after = &signal[at + fade..];
    // The old set up to the frame, the new one from it on: judged on the last
    // 1024 frames before it and the first 1024 after the fade (a 256-frame period
    // holds 1.2 cycles of 220 Hz, too few to tell a pitch).
    let judged = period.max(1024);
    let last_period = &before[before.len() - judged..];
    let first_period = &after[..judged];
    for (what, part, want) in [
        ("the 1024 frames before the switch frame", last_period, old),
        ("the 1024 frames after the switch frame", first_period, new),
        ("everything before", before, old),
        ("everything after", after, new),
    ] {
        let f = pitch_hz(part, rate);
        assert!(
            cents(f, want).abs() < 100.0,
            "{what}: {f:.1} Hz, wanted {want} Hz (old {old}, new {new})"
        );
    }
    // The prepared set was silent before the switch, the old one after it.
    let (level_before, level_after) = (rms(before), rms(after));
    let band = |part: &[f32], f: f64| band_energy_db(part, rate, f * 0.95, f * 1.05);
    let leak_before = band(before, new) - band(before, old);
    let leak_after = band(after, old) - band(after, new);
    assert!(
        leak_before < -40.0,
        "the prepared set was heard before the switch: {leak_before:.1} dB"
    );
    assert!(
        leak_after < -40.0,
        "the old set was heard after the switch: {leak_after:.1} dB"
    );
    // No silence between them: a sine at 220 Hz or more is never below 1e-3 for more
    // than a few samples around its zero crossings.
    let silent = longest_silent_run(signal, 1e-3);
    assert!(
        silent < 16,
        "{silent} silent samples in the recording (levels {level_before:.3} / {level_after:.3})"
    );
    // Neither module skipped or repeated a period: the outgoing one up to the
    // switch, the incoming one through its frees and renames to the end.
    for (what, part, hz) in [("before", before, old), ("after", after, new)] {
        let jumps = phase_jumps(part, hz, rate);
        assert!(
            jumps.is_empty(),
            "the {hz} Hz tone {what} the switch: {jumps:?}"
        );
    }
    eprintln!(
        "switch {old} -> {new} Hz at frame {frame}: leak before {leak_before:.1} dB, after {leak_after:.1} dB, longest silence {silent} samples"
    );
}

/// A set of `2 n` modules: `n` `vco -> vca` chains into `to`, chain `k` a sine at
/// `lowest + 100 k` Hz. Partials 100 Hz apart are resolved in one 1024-frame period,
/// so each period's energy in the set's band is steady enough to judge alone.
fn chains(n: usize, lowest: f32, to: &str) -> String {
    let mut set = String::new();
    // Together at most 1.0.
    let gain = 1.0 / n as f32;
    for k in 0..n {
        let freq = lowest + 100.0 * k as f32;
        set.push_str(&format!(
            "[[module]]\nid = \"osc{k}\"\ntype = \"vco\"\nstandby = \"none\"\nparams = {{ freq = {freq}, wave = \"sine\" }}\n\n\
             [[module]]\nid = \"amp{k}\"\ntype = \"vca\"\nstandby = \"none\"\nparams = {{ gain = {gain} }}\n\n\
             [[connect]]\nfrom = \"osc{k}:out\"\nto = \"amp{k}:in\"\n\n\
             [[connect]]\nfrom = \"amp{k}:out\"\nto = \"{to}\"\n\n"
        ));
    }
    set
}

/// Issue 18 asks for 32-module sets; this test switches 16. At 32, jackd2 first
/// wedged (1 of 4 runs): a lock cycle in its metadata database, which `modsynthd`
/// now breaks (`supervisor/src/metadata_deadlocks.rs`; runs of four loads of
/// 32-module sets on a 72-worker pool wedged 7 of 9 times before, 0 of 14 after).
/// With that fixed, 64 debug-build workers at once still overload this 2-core
/// machine: in 1 of 2 runs every take for 31 s was disturbed (8-80 xruns each).
/// The bench switches 32-module sets in a release build (`set_switch_ms.modules_32`).
///
/// A tone another client plays beside the sets must not skip or repeat a period
/// while 16 modules are freed and 16 renamed (issue 28: 24 of 24 switches clean at
/// 256 frames on `jackd -R`, measured with this harness).
#[test]
fn a_prepared_16_module_set_replaces_a_playing_16_module_set_on_its_frame_without_a_gap_an_xrun_or_a_skip_beside_it(
) {
    const CHAINS: usize = 8;
    const UNTOUCHED_HZ: f64 = 600.0;
    let server = JackServer::start().unwrap();
    let sup = Supervisor::start(&server, 8).unwrap();
    let capture = Capture::start(&server, 2).unwrap();
    let rate = f64::from(capture.sample_rate());
    let period = server.period() as usize;
    let to = capture.port(0);
    // What plays beside the sets (another instrument on the same server): a steady
    // tone into the recorder's second input, never touched by a switch.
    let beside = Player::start(&server, 1).unwrap();
    beside.connect_to(0, &capture.port(1)).unwrap();
    let minutes = (rate * 600.0) as usize;
    beside
        .play(vec![(0..minutes)
            .map(|i| (0.3 * (TAU * UNTOUCHED_HZ * i as f64 / rate).sin()) as f32)
            .collect()])
        .unwrap();
    // The low set's 8 partials lie in 200-900 Hz, the high set's in 2500-3200 Hz.
    let (low, high) = ((150.0, 950.0), (2450.0, 3250.0));
    // Each take prepares the set that does not play and switches to it. A take the
    // server disturbed (an xrun, a skipped cycle) is taken again, so passing means a
    // 16-module switch happened without one.
    let (rec, frame, old, new) = switch_to_the_other_set(
        &sup,
        &capture,
        [
            (chains(CHAINS, 200.0, &to), low),
            (chains(CHAINS, 2500.0, &to), high),
        ],
        || switch_in(Duration::from_millis(700)),
        2.5,
        |ids| assert_eq!(ids.len(), 4 * CHAINS, "both sets side by side"),
    );
    let untouched = phase_jumps(&rec.channels[1], UNTOUCHED_HZ, rate);
    assert!(
        untouched.is_empty(),
        "the tone beside the sets skipped or repeated at a switch: {untouched:?}"
    );
    assert_eq!(module_ids(&sup).len(), 2 * CHAINS, "the old set is freed");
    let at = rec
        .index_of_frame(u64::from(frame))
        .unwrap_or_else(|| panic!("switch frame {frame} outside the recording"));
    let fade = (0.005 * rate) as usize;
    let signal = &rec.channels[0];
    assert!(
        at > 8 * period && at + fade + 8 * period < signal.len(),
        "switch at {at} of {}",
        signal.len()
    );
    let band = |part: &[f32], (lo, hi): (f64, f64)| band_energy_db(part, rate, lo, hi);
    // Which set a stretch plays: its band's energy over the other's, in dB.
    let margin = |part: &[f32], set, other| band(part, set) - band(part, other);
    let (before, after) = (&signal[..at], &signal[at + fade..]);
    for (what, part, set, other) in [
        (
            "the period before the switch frame",
            &before[before.len() - period..],
            old,
            new,
        ),
        (
            "the period after the switch frame",
            &after[..period],
            new,
            old,
        ),
        ("everything before", before, old, new),
        ("everything after", after, new, old),
    ] {
        let m = margin(part, set, other);
        assert!(
            m > 40.0,
            "{what}: the set that should play is only {m:.1} dB over the other"
        );
    }
    // No silence between them: 8 sines sum to a signal that never stays below 1e-3
    // for more than a few samples around a zero crossing.
    let silent = longest_silent_run(signal, 1e-3);
    assert!(silent < 16, "{silent} silent samples in the recording");
    eprintln!(
        "16-module switch at frame {frame}: margin {:.1} dB before, {:.1} dB after, longest silence {silent} samples, 0 xruns, 0 jumps beside",
        margin(before, old, new),
        margin(after, new, old)
    );
}

/// The repository's root.
fn repo() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A free UDP port on 127.0.0.1.
fn free_port() -> u16 {
    let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    s.local_addr().unwrap().port()
}

#[test]
fn scripts_live_plays_a_set_list_in_order_advancing_on_osc_live_next() {
    use std::io::BufRead;
    // scripts/live starts its own jackd: take the turn the harness's servers take.
    let _turn = modsynth_tests::jack_server::jack_turn().unwrap();
    let dir = std::env::temp_dir().join(format!("modsynth-setlist-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("sets")).unwrap();
    let freqs = [220.0f64, 330.0, 440.0];
    let files: Vec<String> = freqs
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let path = dir.join(format!("song{i}.toml"));
            std::fs::write(&path, set_at(*f as f32, "system:playback_1")).unwrap();
            path.to_str().unwrap().to_string()
        })
        .collect();
    let wav = dir.join("list.wav");
    let (osc_port, live_port) = (free_port(), free_port());
    let mut child = std::process::Command::new(repo().join("scripts/live"))
        .args(&files)
        .args([
            "--duration",
            "6",
            "--period",
            "1024",
            "--record",
            wav.to_str().unwrap(),
        ])
        .env(
            "JACK_DEFAULT_SERVER",
            format!("modsynth-setlist-{}", std::process::id()),
        )
        .env("MODSYNTH_OSC_PORT", osc_port.to_string())
        .env("MODSYNTH_LIVE_PORT", live_port.to_string())
        .env("MODSYNTH_SETS_DIR", dir.join("sets"))
        .env(
            "MODSYNTH_BIN_DIR",
            modsynth_tests::workers::bin_path("modsynth")
                .unwrap()
                .parent()
                .unwrap(),
        )
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    // Ready once it says how to advance (the recording runs from then on).
    for line in out.by_ref() {
        let line = line.unwrap();
        eprintln!("{line}");
        if line.contains("/live/next") {
            break;
        }
    }
    let sender = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    for _ in 0..2 {
        std::thread::sleep(Duration::from_secs(2));
        let next = modsynth_control::osc::encode(message("/live/next", vec![]));
        sender.send_to(&next, ("127.0.0.1", live_port)).unwrap();
    }
    for line in out {
        eprintln!("{}", line.unwrap());
    }
    let status = child.wait().unwrap();
    assert!(status.success(), "scripts/live exited with {status}");
    let reader = hound::WavReader::open(&wav).unwrap();
    let channels = reader.spec().channels as usize;
    let rate = f64::from(reader.spec().sample_rate);
    let samples: Vec<f32> = reader.into_samples::<f32>().map(Result::unwrap).collect();
    let left: Vec<f32> = samples.iter().step_by(channels).copied().collect();
    let _ = std::fs::remove_dir_all(&dir);
    // Which set plays in each 100 ms: the index of the pitch, or none.
    let window = (0.1 * rate) as usize;
    let heard: Vec<Option<usize>> = left
        .chunks_exact(window)
        .map(|w| {
            let f = pitch_hz(w, rate);
            freqs.iter().position(|&want| cents(f, want).abs() < 50.0)
        })
        .collect();
    // In order, each set for at least a second, nothing else between them (a
    // window holding a switch may show either neighbour).
    let mut runs: Vec<(usize, usize)> = Vec::new();
    for (i, h) in heard.iter().enumerate() {
        match (h, runs.last_mut()) {
            (Some(set), Some((last, len))) if last == set => *len += 1,
            (Some(set), _) => runs.push((*set, 1)),
            (None, _) => panic!("window {i} of {}: no set's pitch ({heard:?})", heard.len()),
        }
    }
    let order: Vec<usize> = runs
        .iter()
        .filter(|(_, len)| *len >= 10)
        .map(|(s, _)| *s)
        .collect();
    assert_eq!(order, [0, 1, 2], "sets heard in 100 ms windows: {heard:?}");
    // The recorder's first periods may be silent (its connections land a period
    // or two after it starts); from the first sound on, no gap.
    let first = first_index_above(&left, 0.01).expect("a silent recording");
    assert!(first < 8192, "silent for the first {first} samples");
    let silent = longest_silent_run(&left[first..], 1e-3);
    assert!(
        silent < 16,
        "{silent} silent samples in the set list's recording (sets {runs:?})"
    );
}

/// A set with a sequencer (`clock`: 240 bpm, one step a beat, 4 steps, so a bar
/// of 48_000 frames at 48 kHz, its `pitch` 1.0 on step 1 and 0 on the others,
/// into `bars_to`) beside a sine at `freq` (into `to`). The seq keeps its hot
/// standby: its position is read from the state it publishes for it.
fn set_with_bars(freq: f32, to: &str, bars_to: &str) -> String {
    format!(
        "[[module]]\nid = \"clock\"\ntype = \"seq\"\nparams = {{ bpm = 240, div = 1, steps = 4, step1 = 1.0, step2 = 0.0, step3 = 0.0, step4 = 0.0 }}\n\n\
         [[module]]\nid = \"osc\"\ntype = \"vco\"\nstandby = \"none\"\nparams = {{ freq = {freq}, wave = \"sine\" }}\n\n\
         [[connect]]\nfrom = \"clock:pitch\"\nto = \"{bars_to}\"\n\n\
         [[connect]]\nfrom = \"osc:out\"\nto = \"{to}\"\n"
    )
}

/// Where each bar of the recorded seq pitch (1.0 on step 1 only) begins: its
/// rising edges.
fn bar_starts(pitch: &[f32]) -> Vec<usize> {
    (1..pitch.len())
        .filter(|&i| pitch[i] >= 0.5 && pitch[i - 1] < 0.5)
        .collect()
}

#[test]
fn a_switch_on_the_next_bar_lands_on_the_first_frame_of_the_sequencers_bar() {
    let server = JackServer::start().unwrap();
    let sup = Supervisor::start(&server, 4).unwrap();
    let capture = Capture::start(&server, 2).unwrap();
    let rate = f64::from(capture.sample_rate());
    let period = server.period() as usize;
    let (to, bars_to) = (capture.port(0), capture.port(1));
    let (low, high) = (220.0f64, 330.0f64);
    let set = |freq: f64| set_with_bars(freq as f32, &to, &bars_to);
    let (rec, frame, old, new) = switch_to_the_other_set(
        &sup,
        &capture,
        [(set(low), low), (set(high), high)],
        || {
            // The third bar to begin: between 2 and 3 s after it is asked, so the
            // recording holds two bar starts of the playing seq before it.
            let switch = message(
                "/set/switch",
                vec![
                    text("next"),
                    OscType::Int(0),
                    text("next_bar"),
                    OscType::Int(3),
                ],
            );
            OscPacket::Message(switch)
        },
        4.0,
        |_| {},
    );
    let at = rec.index_of_frame(u64::from(frame)).unwrap_or_else(|| {
        panic!(
            "switch frame {frame} outside the recording from {}",
            rec.start_frame
        )
    });
    // The bar the switch landed on, as the playing seq played its bars up to it.
    let starts: Vec<usize> = bar_starts(&rec.channels[1])
        .into_iter()
        .filter(|&i| i < at)
        .collect();
    let bar = (4.0 * 60.0 / 240.0 * rate) as usize;
    let [.., before_last, last] = starts[..] else {
        panic!("fewer than two bars began before the switch at {at}: {starts:?}");
    };
    let measured_bar = last - before_last;
    let predicted = last + measured_bar;
    let off = at as i64 - predicted as i64;
    eprintln!(
        "measured: switch {old} -> {new} Hz at frame {frame}, {off} frames from the bar's \
         first frame (bars of {measured_bar} frames, starts {starts:?}, switch at {at})"
    );
    assert_eq!(measured_bar, bar, "the seq's bar is 4 steps at 240 bpm");
    assert!(
        off.unsigned_abs() as usize <= period,
        "the switch landed {off} frames from the bar's first frame"
    );
    // The pitch changes there: the old set's sine before, the new one's after.
    let signal = &rec.channels[0];
    let window = 4 * period;
    assert!(at > window && at + window < signal.len(), "switch at {at}");
    for (what, part, want) in [
        ("before the bar", &signal[at - window..at], old),
        ("from the bar on", &signal[at..at + window], new),
    ] {
        let f = pitch_hz(part, rate);
        assert!(
            cents(f, want).abs() < 100.0,
            "{what}: {f:.1} Hz, wanted {want} Hz (old {old}, new {new})"
        );
    }
}

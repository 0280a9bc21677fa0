//! Playing modsynth from a controller: MIDI learn and CC maps, saved in set files
//! and taken by a fresh `modsynthd`, and program changes that switch sets. The
//! harness MIDI player plays into the supervisor's own `midi_in` port.

use modsynth_control::osc::{message, text};
use modsynth_tests::capture::Capture;
use modsynth_tests::jack_server::JackServer;
use modsynth_tests::midi_player::MidiPlayer;
use modsynth_tests::supervisor::Supervisor;
use modsynth_tests::workers::sigkill;
use rosc::OscType;
use std::time::{Duration, Instant};

const PATIENCE: Duration = Duration::from_secs(30);

/// A control change on `channel` (1..16).
fn cc(channel: u8, number: u8, value: u8) -> Vec<u8> {
    vec![0xB0 | (channel - 1), number, value]
}

/// `/module/get id param` as a number.
fn get(sup: &Supervisor, id: &str, param: &str) -> f32 {
    match sup.param_value(id, param) {
        OscType::Float(v) => v,
        other => panic!("{id}.{param}: {other:?}"),
    }
}

/// Waits until `id`.`param` reads `want` (within 1e-4); panics with the last value.
fn wait_for_value(sup: &Supervisor, id: &str, param: &str, want: f32) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let v = get(sup, id, param);
        if (v - want).abs() < 1e-4 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{id}.{param} is {v}, not {want}, 10 s after the CC"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Plays `events` and waits until the player has started them.
fn play(player: &MidiPlayer, events: Vec<(u64, Vec<u8>)>) {
    player.play(events).unwrap();
}

#[test]
fn a_learned_cc_moves_its_parameter_is_saved_in_the_set_and_works_after_set_load_in_a_fresh_modsynthd(
) {
    let server = JackServer::start().unwrap();
    let mut sup = Supervisor::start(&server, 2).unwrap();
    sup.new_module_without_standby("const", "knob", &[("value", 0.0)])
        .unwrap();
    let player = MidiPlayer::start(&server).unwrap();
    let capture = Capture::start(&server, 1).unwrap();
    let midi_in = format!("{}:midi_in", sup.name);
    sup.connect(&player.port(), &midi_in).unwrap();
    sup.connect("knob:out", &capture.port(0)).unwrap();

    // Bad maps are refused and change nothing.
    let client = sup.client();
    for (args, want) in [
        (
            vec![
                OscType::Int(120),
                OscType::Int(0),
                text("knob"),
                text("value"),
            ],
            "0..119",
        ),
        (
            vec![
                OscType::Int(7),
                OscType::Int(17),
                text("knob"),
                text("value"),
            ],
            "1..16",
        ),
        (
            vec![
                OscType::Int(7),
                OscType::Int(0),
                text("nope"),
                text("value"),
            ],
            "no module 'nope'",
        ),
        (
            vec![
                OscType::Int(7),
                OscType::Int(0),
                text("knob"),
                text("value"),
                OscType::Float(-20.0),
                OscType::Float(1.0),
            ],
            "outside",
        ),
        (
            vec![
                OscType::Int(7),
                OscType::Int(0),
                text("knob"),
                text("value"),
                text("exp"),
            ],
            "above 0",
        ),
    ] {
        let e = client.call(message("/map/cc", args)).unwrap_err();
        assert!(e.contains(want), "{e}");
    }
    let list = client
        .query(message("/map/list", vec![]), "/map/list.reply")
        .unwrap();
    assert!(list.args.is_empty(), "refused maps left {list:?}");

    // Learn: the next CC moved (21 on channel 3) drives knob.value from -1 to 1.
    client
        .send(message(
            "/map/learn",
            vec![
                text("knob"),
                text("value"),
                OscType::Float(-1.0),
                OscType::Float(1.0),
            ],
        ))
        .unwrap();
    client.sync().unwrap();
    play(&player, vec![(0, cc(3, 21, 127))]);
    let learned = client
        .wait_for(|m| m.addr == "/done" || m.addr == "/fail")
        .unwrap();
    assert_eq!(
        learned.args,
        vec![
            text("/map/learn"),
            text("knob"),
            text("value"),
            OscType::Int(21),
            OscType::Int(3)
        ]
    );
    wait_for_value(&sup, "knob", "value", 1.0);
    for (value, want) in [(0u8, -1.0f32), (64, -1.0 + 2.0 * 64.0 / 127.0)] {
        play(&player, vec![(0, cc(3, 21, value))]);
        wait_for_value(&sup, "knob", "value", want);
    }
    // Another channel or CC moves nothing.
    play(&player, vec![(0, cc(4, 21, 127)), (10, cc(3, 22, 127))]);
    client.sync().unwrap();
    std::thread::sleep(Duration::from_millis(200));
    wait_for_value(&sup, "knob", "value", -1.0 + 2.0 * 64.0 / 127.0);

    // Heard: the recorded output goes from -1 to 1 after the CC frame.
    sup.wait_until_settled(PATIENCE);
    let period = server.period() as u64;
    let cc_at = 8 * period + 100;
    let (rec, start) = capture
        .retake_while_disturbed(|| {
            let mut start = None;
            let rec = capture.record_then(
                16 * period as usize + 8192,
                Duration::from_secs(20),
                |_| {
                    start = Some(player.play(vec![(0, cc(3, 21, 0)), (cc_at, cc(3, 21, 127))]));
                },
            )?;
            Ok((rec, start.expect("the recording started")?))
        })
        .unwrap();
    let out = &rec.channels[0];
    let at = rec
        .index_of_frame(start + cc_at)
        .expect("the CC is inside the recording");
    let before = &out[at.saturating_sub(period as usize)..at];
    assert!(
        before.iter().all(|&v| (v + 1.0).abs() < 1e-4),
        "not at -1 before the CC"
    );
    let moved = out[at..]
        .iter()
        .position(|&v| v > -0.999)
        .expect("the output moved");
    assert!(
        out.last().is_some_and(|&v| (v - 1.0).abs() < 1e-4),
        "the output ends at {:?}, not 1",
        out.last()
    );
    println!("CC -> output moving: {moved} frames (period {period})");
    assert!(
        moved as u64 <= 8 * period,
        "the output moved {moved} frames after the CC, more than 8 periods"
    );

    // Saved in the set, with the controller's connection.
    client
        .call(message("/set/save", vec![text("learned.toml")]))
        .unwrap();
    let saved = std::fs::read_to_string(sup.sets_dir.join("learned.toml")).unwrap();
    for want in [
        "[[map]]",
        "cc = 21",
        "channel = 3",
        "module = \"knob\"",
        "param = \"value\"",
        "min = -1.0",
        "max = 1.0",
        "[midi]",
        &format!("inputs = [\"{}\"]", player.port()),
    ] {
        assert!(saved.contains(want), "no {want:?} in\n{saved}");
    }
    assert!(
        !saved.contains(&midi_in),
        "the instance's own port is not in the set:\n{saved}"
    );
    sup.stop().unwrap();
    drop(sup);

    // A fresh modsynthd loads it: the controller is connected and the map works.
    let sup2 = Supervisor::start(&server, 2).unwrap();
    std::fs::write(sup2.sets_dir.join("learned.toml"), &saved).unwrap();
    sup2.client()
        .with_timeout(PATIENCE)
        .call(message("/set/load", vec![text("learned.toml")]))
        .unwrap();
    let list = sup2
        .client()
        .query(message("/map/list", vec![]), "/map/list.reply")
        .unwrap();
    assert_eq!(
        list.args[..4],
        [
            OscType::Int(21),
            OscType::Int(3),
            text("knob"),
            text("value")
        ]
    );
    for (value, want) in [(127u8, 1.0f32), (0, -1.0)] {
        play(&player, vec![(0, cc(3, 21, value))]);
        wait_for_value(&sup2, "knob", "value", want);
    }
}

#[test]
fn program_changes_load_their_sets_as_a_diff_and_shared_modules_keep_running() {
    let server = JackServer::start().unwrap();
    let sup = Supervisor::start(&server, 3).unwrap();
    let player = MidiPlayer::start(&server).unwrap();
    let set = |extra: &str, value: f32, midi: &str| {
        format!(
            "[[module]]\nid = \"knob\"\ntype = \"const\"\nstandby = \"none\"\nparams = {{ value = {value} }}\n\n{extra}{midi}"
        )
    };
    let module =
        |id: &str| format!("[[module]]\nid = \"{id}\"\ntype = \"const\"\nstandby = \"none\"\n\n");
    let midi = format!(
        "[midi]\ninputs = [\"{}\"]\nprogram_sets = {{ 1 = \"verse.toml\", 2 = \"chorus.toml\" }}\n",
        player.port()
    );
    std::fs::write(sup.sets_dir.join("show.toml"), set("", 0.25, &midi)).unwrap();
    std::fs::write(
        sup.sets_dir.join("verse.toml"),
        set(&module("verse_pad"), 0.5, ""),
    )
    .unwrap();
    std::fs::write(
        sup.sets_dir.join("chorus.toml"),
        set(&module("chorus_lead"), 0.75, ""),
    )
    .unwrap();
    let client = sup.client().with_timeout(PATIENCE);
    client
        .call(message("/set/load", vec![text("show.toml")]))
        .unwrap();
    let pid_of = |id: &str| sup.module_status(id).map(|m| m.pid);
    let knob_pid = pid_of("knob").expect("knob plays");
    let wait_for_modules = |want: &[&str]| {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let mut ids: Vec<String> = sup
                .status()
                .unwrap()
                .modules
                .into_iter()
                .map(|m| m.id)
                .collect();
            ids.sort();
            if ids == want {
                return;
            }
            assert!(Instant::now() < deadline, "modules {ids:?}, want {want:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    };

    // Program 1 (sent as 0 on the wire, shown as 1 by devices): the verse.
    play(&player, vec![(0, vec![0xC0, 0])]);
    wait_for_modules(&["knob", "verse_pad"]);
    wait_for_value(&sup, "knob", "value", 0.5);
    // Program 2: the chorus replaces the verse; knob keeps its worker.
    play(&player, vec![(0, vec![0xC4, 1])]);
    wait_for_modules(&["chorus_lead", "knob"]);
    wait_for_value(&sup, "knob", "value", 0.75);
    assert_eq!(
        pid_of("knob"),
        Some(knob_pid),
        "knob was restarted by a program change"
    );
    // A program with no set changes nothing.
    play(&player, vec![(0, vec![0xC0, 9])]);
    client.sync().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    wait_for_modules(&["chorus_lead", "knob"]);
}

/// The level `knob:out` plays, from a short recording.
fn level(capture: &Capture) -> f32 {
    let rec = capture.record(4096).unwrap();
    let out = &rec.channels[0];
    let last = *out.last().expect("frames");
    assert!(
        out[out.len() / 2..]
            .iter()
            .all(|&v| (v - last).abs() < 1e-4),
        "knob:out is not steady"
    );
    last
}

#[test]
fn cc_maps_survive_a_failover_and_a_sigkill_of_modsynthd_with_a_new_one_taking_over() {
    let server = JackServer::start().unwrap();
    let name = modsynth_tests::supervisor::unique_name();
    let mut sup = Supervisor::start_named(&server, &name, 2, &[]).unwrap();
    sup.new_module("const", "knob", &[("value", 0.0)]).unwrap();
    let player = MidiPlayer::start(&server).unwrap();
    let capture = Capture::start(&server, 1).unwrap();
    let _leftovers = Leftovers(name.clone());
    sup.connect(&player.port(), &format!("{name}:midi_in"))
        .unwrap();
    sup.connect("knob:out", &capture.port(0)).unwrap();
    let args = vec![
        OscType::Int(7),
        OscType::Int(0),
        text("knob"),
        text("value"),
        OscType::Float(-1.0),
        OscType::Float(1.0),
    ];
    sup.client().call(message("/map/cc", args)).unwrap();
    let before = sup.wait_for_module("knob", PATIENCE, |m| m.standby_worker.is_some());
    let standby_pid = before.standby_worker.as_ref().map(|w| w.pid);

    // Failover: the standby plays knob, and the CC reaches it.
    sigkill(before.pid);
    sup.wait_for_module("knob", PATIENCE, |m| {
        Some(m.pid) == standby_pid && m.standby_worker.is_some()
    });
    play(&player, vec![(0, cc(1, 7, 127))]);
    wait_for_value(&sup, "knob", "value", 1.0);
    sup.client().sync().unwrap();
    std::thread::sleep(Duration::from_millis(50));
    assert!(
        (level(&capture) - 1.0).abs() < 1e-4,
        "the new primary plays the CC's value"
    );

    // modsynthd SIGKILLed: a new one takes the set back, with the map and the
    // controller's connection to its own midi_in.
    sup.sigkill().unwrap();
    let again = Supervisor::start_named(&server, &name, 2, &[]).unwrap();
    let list = again
        .client()
        .query(message("/map/list", vec![]), "/map/list.reply")
        .unwrap();
    assert_eq!(
        list.args[..4],
        [
            OscType::Int(7),
            OscType::Int(0),
            text("knob"),
            text("value")
        ]
    );
    let deadline = Instant::now() + PATIENCE;
    let connected = || {
        player
            .client()
            .port_by_name(&player.port())
            .is_some_and(|p| p.connected_count().unwrap_or(0) > 0)
    };
    while !connected() {
        assert!(
            Instant::now() < deadline,
            "the controller was not connected again"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    play(&player, vec![(0, cc(1, 7, 0))]);
    wait_for_value(&again, "knob", "value", -1.0);
    again.client().sync().unwrap();
    std::thread::sleep(Duration::from_millis(50));
    assert!(
        (level(&capture) + 1.0).abs() < 1e-4,
        "the adopted module plays the CC's value"
    );
}

/// Kills what the instance left behind when the test ends, passed or failed: its
/// workers outlive a SIGKILLed supervisor on purpose.
struct Leftovers(String);

impl Drop for Leftovers {
    fn drop(&mut self) {
        use modsynth_tests::supervisor::{segments_of, workers_of};
        for pid in workers_of(&self.0) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        for segment in segments_of(&self.0) {
            let _ = nix::sys::mman::shm_unlink(format!("/{segment}").as_str());
        }
    }
}

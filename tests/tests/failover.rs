//! Failover beyond the single SIGKILL of a primary with a ready standby (that one, and
//! the hang, are in `supervisor.rs`): modules without a standby, dead standbys,
//! several deaths at once, parameter changes in flight, crash loops, and leaks over
//! many kill cycles. Everything on a private JACK server with recorded audio.

use modsynth_control::osc::{message, text};
use modsynth_control::status::ModuleRole;
use modsynth_tests::analysis::{cents, longest_silent_run, pitch_hz, ZERO_CROSSING_SAMPLES};
use modsynth_tests::capture::Capture;
use modsynth_tests::jack_server::JackServer;
use modsynth_tests::supervisor::ReadyStandby;
use modsynth_tests::supervisor::{segments_of, Supervisor};
use modsynth_tests::workers::sigkill;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use rosc::OscType;
use std::time::{Duration, Instant};

const RATE: f64 = 48_000.0;
const PATIENCE: Duration = Duration::from_secs(15);

fn server() -> JackServer {
    JackServer::start().expect("a private JACK server")
}

fn is_connected(capture: &Capture, port: &str, other: &str) -> bool {
    capture
        .client()
        .port_by_name(port)
        .is_some_and(|p| p.is_connected_to(other).unwrap_or(false))
}

fn wait_until(what: &str, within: Duration, ok: impl Fn() -> bool) {
    let deadline = Instant::now() + within;
    while !ok() {
        assert!(
            Instant::now() < deadline,
            "{what} did not happen within {within:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_module_without_a_standby_is_taken_over_by_a_spare_with_its_connections() {
    let server = server();
    let sup = Supervisor::start(&server, 3).unwrap();
    sup.new_module_without_standby("vco", "solo", &[("freq", 440.0), ("gain", 0.5)])
        .unwrap();
    let capture = Capture::start(&server, 1).unwrap();
    sup.connect("solo:out", &capture.port(0)).unwrap();
    let by_hand = server
        .command("jack_connect")
        .args(["solo:out", "system:playback_2"])
        .status()
        .unwrap();
    assert!(by_hand.success());
    let before = sup.module_status("solo").unwrap();
    assert!(before.standby_worker.is_none(), "standby none has none");

    let rec = capture
        .record_with_lead(96_000, 19_200, || sigkill(before.pid))
        .unwrap();
    let out = &rec.channels[0];
    let gap = longest_silent_run(out, 1e-6);
    let tail = &out[out.len() - 24_000..];
    let f = pitch_hz(tail, RATE);
    eprintln!(
        "measured: spare takeover gap {gap} samples ({:.1} ms), {} frames dropped by the server, pitch after {f:.3} Hz",
        gap as f64 / RATE * 1e3,
        rec.dropped_frames
    );
    assert!(cents(f, 440.0).abs() < 5.0, "pitch after the takeover {f}");
    // A spare has to register ports and be connected: slower than a standby, but a
    // fraction of a second, not a lost module (measured by the bench).
    assert!(gap < 24_000, "{gap} silent samples");

    let after = sup.wait_for_module("solo", PATIENCE, |m| {
        m.pid != before.pid && m.role == ModuleRole::Primary
    });
    let new_out = after.ports["out"].clone();
    wait_until("the connections' restoration", PATIENCE, || {
        is_connected(&capture, &new_out, &capture.port(0))
            && is_connected(&capture, &new_out, "system:playback_2")
    });
    let lsp = server.command("jack_lsp").arg("-A").output().unwrap();
    assert!(String::from_utf8_lossy(&lsp.stdout).contains("solo:out"));
    let status = sup.status().unwrap();
    assert_eq!(status.counters.replacements, 1);
    assert_eq!(status.counters.crash_count, 1);
    assert!(after.standby_worker.is_none(), "still no standby");
}

#[test]
fn killing_the_standby_gets_a_new_one_while_the_primary_plays_on() {
    let server = server();
    let sup = Supervisor::start(&server, 3).unwrap();
    sup.new_module("vco", "lead", &[("freq", 440.0), ("gain", 0.5)])
        .unwrap();
    let capture = Capture::start(&server, 1).unwrap();
    sup.connect("lead:out", &capture.port(0)).unwrap();
    let before = sup.wait_for_module("lead", PATIENCE, |m| m.standby_worker.is_some());
    let standby_pid = before.ready_standby().pid;
    let rec = capture
        .record_with_lead(48_000, 14_400, || sigkill(standby_pid))
        .unwrap();
    let gap = longest_silent_run(&rec.channels[0], 1e-6);
    eprintln!("measured: {gap} silent samples while the standby died");
    assert!(
        gap <= ZERO_CROSSING_SAMPLES,
        "the primary stopped: {gap} silent samples"
    );
    let after = sup.wait_for_module("lead", PATIENCE, |m| {
        m.standby_worker.is_some() && m.ready_standby().client != before.ready_standby().client
    });
    assert_eq!(after.pid, before.pid, "the primary is the same process");
}

#[test]
fn killing_primary_and_standby_together_brings_the_module_back() {
    let server = server();
    let sup = Supervisor::start(&server, 4).unwrap();
    sup.new_module("vco", "pair", &[("freq", 330.0), ("gain", 0.5)])
        .unwrap();
    let capture = Capture::start(&server, 1).unwrap();
    sup.connect("pair:out", &capture.port(0)).unwrap();
    let before = sup.wait_for_module("pair", PATIENCE, |m| m.standby_worker.is_some());
    let standby_pid = before.ready_standby().pid;
    sigkill(before.pid);
    sigkill(standby_pid);
    let after = sup.wait_for_module("pair", PATIENCE, |m| {
        m.role == ModuleRole::Primary && m.pid != before.pid && m.pid != standby_pid && m.pid != 0
    });
    let out = after.ports["out"].clone();
    wait_until("the connection's restoration", PATIENCE, || {
        is_connected(&capture, &out, &capture.port(0))
    });
    sup.wait_until_settled(PATIENCE);
    let rec = capture.record_continuous(24_000).unwrap();
    let f = pitch_hz(&rec.channels[0], RATE);
    eprintln!(
        "measured: after both died the module plays {f:.3} Hz ({:?})",
        sup.status().unwrap().counters
    );
    assert!(cents(f, 330.0).abs() < 5.0, "plays again: {f} Hz");
    sup.wait_for_module("pair", PATIENCE, |m| m.standby_worker.is_some());
}

#[test]
fn killing_several_modules_at_once_recovers_every_one() {
    let server = server();
    let sup = Supervisor::start(&server, 6).unwrap();
    let freqs = [220.0, 330.0, 495.0];
    let capture = Capture::start(&server, freqs.len()).unwrap();
    for (i, f) in freqs.iter().enumerate() {
        let id = format!("v{i}");
        sup.new_module("vco", &id, &[("freq", *f), ("gain", 0.5)])
            .unwrap();
        sup.connect(&format!("{id}:out"), &capture.port(i)).unwrap();
    }
    let before: Vec<_> = (0..freqs.len())
        .map(|i| sup.wait_for_module(&format!("v{i}"), PATIENCE, |m| m.standby_worker.is_some()))
        .collect();
    for m in &before {
        sigkill(m.pid);
    }
    for m in &before {
        sup.wait_for_module(&m.id, PATIENCE, |now| {
            now.pid != m.pid && now.role == ModuleRole::Primary && now.standby_worker.is_some()
        });
    }
    sup.wait_until_settled(PATIENCE);
    let rec = capture.record_continuous(24_000).unwrap();
    for (i, f) in freqs.iter().enumerate() {
        let got = pitch_hz(&rec.channels[i], RATE);
        assert!(
            cents(got, *f as f64).abs() < 5.0,
            "v{i} plays {got} Hz, not {f}"
        );
    }
    assert_eq!(sup.status().unwrap().counters.failovers, freqs.len() as u64);
}

#[test]
fn parameter_changes_sent_during_a_failover_are_all_applied() {
    let server = server();
    let sup = Supervisor::start(&server, 3).unwrap();
    sup.new_module("const", "knob", &[("value", 0.0)]).unwrap();
    let capture = Capture::start(&server, 1).unwrap();
    sup.connect("knob:out", &capture.port(0)).unwrap();
    let before = sup.wait_for_module("knob", PATIENCE, |m| m.standby_worker.is_some());
    let client = sup.client();
    let last = 300;
    // Recorded while the values are sent, across the kill: what the listener heard.
    let heard = std::thread::scope(|s| {
        let rec = s.spawn(|| capture.record(48_000).unwrap());
        for i in 1..=last {
            if i == last / 2 {
                sigkill(before.pid);
            }
            client
                .send(message(
                    "/module/set",
                    vec![
                        text("knob"),
                        text("value"),
                        OscType::Float(i as f32 / 1000.0),
                    ],
                ))
                .unwrap();
            std::thread::sleep(Duration::from_micros(500));
        }
        rec.join().unwrap()
    });
    // Every value that played came after the one before it: no change was applied
    // out of order and none reverted to an older value when the standby took over
    // (it continues from the published state, then gets the latest values).
    let mut played: Vec<f32> = heard.channels[0].clone();
    // Silence (0.0, the initial value) can fall between two values at the kill.
    played.retain(|&x| x != 0.0);
    played.dedup();
    assert!(
        played.windows(2).all(|w| w[0] < w[1]),
        "values played out of order: {played:?}"
    );
    eprintln!(
        "measured: {} of {last} values heard, in order",
        played.len()
    );
    assert!(
        played.len() > 10,
        "the changes were heard as they came: {played:?}"
    );
    let after = sup.wait_for_module("knob", PATIENCE, |m| {
        m.pid != before.pid && m.role == ModuleRole::Primary
    });
    sup.client().sync().unwrap();
    let out = after.ports["out"].clone();
    wait_until("the connection to the capture", PATIENCE, || {
        is_connected(&capture, &out, &capture.port(0))
    });
    let rec = capture.record(4_800).unwrap();
    let want = last as f32 / 1000.0;
    assert!(
        rec.channels[0].iter().all(|&x| x == want),
        "the last value sent ({want}) is what plays: {:?}",
        &rec.channels[0][..8]
    );
    let reply = client
        .query(
            message("/module/get", vec![text("knob"), text("value")]),
            "/module/value",
        )
        .unwrap();
    assert_eq!(reply.args[2], OscType::Float(want));
}

#[test]
fn a_module_that_keeps_crashing_restarts_fresh_then_is_quarantined_while_the_rest_plays() {
    let server = server();
    // More than 2 deaths within 60 s is a crash loop.
    let sup = Supervisor::start_with(&server, 4, &["--crash-loop", "2/60"]).unwrap();
    sup.new_module("vco", "good", &[("freq", 440.0), ("gain", 0.5)])
        .unwrap();
    sup.new_module("vco", "bad", &[("freq", 220.0)]).unwrap();
    let capture = Capture::start(&server, 1).unwrap();
    sup.connect("good:out", &capture.port(0)).unwrap();
    let events = sup.client();
    events
        .call(message("/notify", vec![OscType::Int(1)]))
        .unwrap();

    let mut pids = Vec::new();
    let mut victim = sup.wait_for_module("bad", PATIENCE, |m| m.standby_worker.is_some());
    let rec = std::thread::scope(|s| {
        let rec = s.spawn(|| capture.record(4 * 48_000).unwrap());
        // Deaths 1 and 2 fail over; 3 is a crash loop: fresh restart; 4: quarantine.
        for death in 1..=4 {
            pids.push(victim.pid);
            sigkill(victim.pid);
            if death == 4 {
                break;
            }
            victim = sup.wait_for_module("bad", PATIENCE, |m| {
                !pids.contains(&m.pid)
                    && m.role == ModuleRole::Primary
                    && m.standby_worker.is_some()
            });
            // Not within the relapse time: each death counts as one, not as a loop.
            std::thread::sleep(Duration::from_millis(150));
        }
        rec.join().unwrap()
    });
    let bad = sup.wait_for_module("bad", PATIENCE, |m| m.role == ModuleRole::Quarantined);
    assert_eq!(bad.pid, 0, "nothing plays it");
    let quarantined = events
        .wait_for(|m| m.addr == "/module/quarantined")
        .expect("a /module/quarantined event");
    assert_eq!(quarantined.args[0], text("bad"));
    let counters = sup.status().unwrap().counters;
    assert_eq!((counters.fresh_restarts, counters.quarantined), (1, 1));
    // The rest of the set never noticed.
    let good = &rec.channels[0];
    assert_eq!(longest_silent_run(good, 1e-6), 0, "good kept playing");
    sup.wait_until_settled(PATIENCE);
    let after = capture.record_continuous(24_000).unwrap();
    assert!(cents(pitch_hz(&after.channels[0], RATE), 440.0).abs() < 1.0);
    // No state is kept for a quarantined module.
    assert!(
        !segments_of(&sup.name).iter().any(|s| s.contains("-bad-")),
        "{:?}",
        segments_of(&sup.name)
    );
    // It can be freed and created again.
    sup.client()
        .call(message("/module/free", vec![text("bad")]))
        .unwrap();
    sup.new_module("vco", "bad", &[("freq", 220.0)]).unwrap();
}

#[test]
fn fifty_kill_cycles_leave_no_leaked_segment_and_a_clean_stop_leaves_nothing() {
    let server = server();
    let mut sup = Supervisor::start_with(&server, 3, &["--crash-loop", "1000/1"]).unwrap();
    sup.new_module("vco", "tough", &[("freq", 440.0)]).unwrap();
    sup.new_module("lfo", "calm", &[]).unwrap();
    let mut seen = Vec::new();
    let mut m = sup.wait_for_module("tough", PATIENCE, |m| m.standby_worker.is_some());
    let started = Instant::now();
    let cycles = 50;
    for _ in 0..cycles {
        seen.push(m.pid);
        sigkill(m.pid);
        m = sup.wait_for_module("tough", PATIENCE, |now| {
            !seen.contains(&now.pid)
                && now.role == ModuleRole::Primary
                && now.standby_worker.is_some()
        });
        // A worker killed right after it took over counts as a crash loop (it looks
        // like dying of the state it took over, within 50 ms): let each one play
        // twice that.
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!(
        "measured: {cycles} kill cycles (kill -> failed over -> new standby) in {:?}",
        started.elapsed()
    );
    let mut segments = segments_of(&sup.name);
    segments.sort();
    assert_eq!(
        segments,
        vec![
            format!("{}-calm-state", sup.name),
            format!("{}-tough-state", sup.name)
        ],
        "one state segment per module, nothing else"
    );
    assert_eq!(sup.status().unwrap().counters.failovers, cycles);
    let live_workers = sup.status().unwrap().workers;
    assert!(
        live_workers <= 3 * 2 + 4,
        "{live_workers} workers: some leaked"
    );
    let name = sup.name.clone();
    assert!(sup.stop().unwrap().success());
    assert!(
        segments_of(&name).is_empty(),
        "left: {:?}",
        segments_of(&name)
    );
    for pid in seen {
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "worker {pid} is still there"
        );
    }
}

#[test]
fn a_sigstopped_primary_without_a_standby_is_killed_by_the_heartbeat_check_and_replaced() {
    let server = server();
    let sup = Supervisor::start(&server, 3).unwrap();
    sup.new_module_without_standby("vco", "alone", &[("freq", 440.0)])
        .unwrap();
    let capture = Capture::start(&server, 1).unwrap();
    sup.connect("alone:out", &capture.port(0)).unwrap();
    let before = sup.module_status("alone").unwrap();
    // It plays before it hangs (so the heartbeat has a published frame to judge).
    // The heartbeat judges a new primary only after its grace time (500 ms), so the
    // detection time measured below includes what is left of it.
    wait_until("the tone at the capture", PATIENCE, || {
        capture
            .record(2_400)
            .is_ok_and(|r| r.channels[0].iter().any(|&x| x.abs() > 0.1))
    });
    let started = Instant::now();
    kill(Pid::from_raw(before.pid as i32), Signal::SIGSTOP).unwrap();
    let after = sup.wait_for_module("alone", PATIENCE, |m| {
        m.pid != before.pid && m.role == ModuleRole::Primary
    });
    let took = started.elapsed();
    wait_until("the hung primary's death", PATIENCE, || {
        !std::path::Path::new(&format!("/proc/{}", before.pid)).exists()
    });
    let out = after.ports["out"].clone();
    wait_until("the connection's restoration", PATIENCE, || {
        is_connected(&capture, &out, &capture.port(0))
    });
    sup.wait_until_settled(PATIENCE);
    let rec = capture.record_continuous(24_000).unwrap();
    let f = pitch_hz(&rec.channels[0], RATE);
    eprintln!("measured: hang without a standby detected and replaced in {took:?}; then {f:.3} Hz");
    assert!(cents(f, 440.0).abs() < 5.0, "plays again: {f} Hz");
}

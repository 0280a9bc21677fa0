//! The supervisor is no single point of failure (issue 11): a SIGKILLed `modsynthd`
//! leaves the JACK server and the modules playing, and a new one takes them back.
//! Everything on a private JACK server with recorded audio.

use modsynth_control::osc::{message, text};
use modsynth_tests::analysis::{cents, longest_silent_run, pitch_hz, ZERO_CROSSING_SAMPLES};
use modsynth_tests::capture::Capture;
use modsynth_tests::jack_server::JackServer;
use modsynth_tests::supervisor::ReadyStandby;
use modsynth_tests::supervisor::{
    descriptors_of, modsynthd_with, segments_of, unique_name, workers_of, Supervisor,
};
use modsynth_tests::workers::sigkill;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::process::Stdio;
use std::time::{Duration, Instant};

const RATE: f64 = 48_000.0;
/// How long a state a test waits for may take to come (a hang guard, not a timing).
const PATIENCE: Duration = Duration::from_secs(15);

fn server() -> JackServer {
    JackServer::start().expect("a private JACK server")
}

/// Kills whatever the instance left behind when the test ends, passed or failed:
/// its workers outlive their supervisor on purpose, and must not outlive the test.
struct Leftovers(String);

impl Drop for Leftovers {
    fn drop(&mut self) {
        for pid in workers_of(&self.0) {
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
        }
        for segment in segments_of(&self.0) {
            let _ = nix::sys::mman::shm_unlink(format!("/{segment}").as_str());
        }
    }
}

fn wait_until(what: &str, within: Duration, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !ok() {
        assert!(
            Instant::now() < deadline,
            "{what} did not happen within {within:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs `jack_lsp` on `server`; `None` if it did not answer within `within`.
fn jack_lsp(server: &JackServer, within: Duration) -> Option<String> {
    let mut child = server
        .command("jack_lsp")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("jack_lsp starts");
    let deadline = Instant::now() + within;
    loop {
        if let Ok(Some(_)) = child.try_wait() {
            let out = child.wait_with_output().ok()?;
            return Some(String::from_utf8_lossy(&out.stdout).into_owned());
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn sigkill_of_modsynthd_leaves_the_jack_server_running_and_no_worker_holds_its_client() {
    let server = server();
    let name = unique_name();
    let mut sup = Supervisor::start_named(&server, &name, 2, &[]).unwrap();
    sup.new_module("vco", "osc", &[("freq", 440.0)]).unwrap();
    let capture = Capture::start(&server, 1).unwrap();
    // Dropped before the capture: a worker holding the dead supervisor's client
    // wedges the server, and closing the capture would then hang instead of fail.
    let _leftovers = Leftovers(name.clone());
    sup.connect("osc:out", &capture.port(0)).unwrap();
    sup.wait_for_module("osc", PATIENCE, |m| m.standby_worker.is_some());
    // Spares are refilled after the create: wait until they are there too, so
    // workers spawned long after the supervisor's JACK client opened are checked.
    wait_until("a full pool besides the module", PATIENCE, || {
        workers_of(&name).len() >= 4
    });

    // jackd2 sees a client go when its sockets close. A worker holding a copy of
    // one of the supervisor's sockets (inherited at spawn) keeps that client alive
    // for jackd after the supervisor's death. (Semaphores are no evidence: every
    // JACK client opens every other client's.)
    let sockets = |pid: u32| -> Vec<String> {
        descriptors_of(pid)
            .into_iter()
            .filter(|d| d.starts_with("socket:"))
            .collect()
    };
    let supervisors = sockets(sup.pid());
    assert!(
        !supervisors.is_empty(),
        "the supervisor has sockets to look for"
    );
    for pid in workers_of(&name) {
        let shared: Vec<String> = sockets(pid)
            .into_iter()
            .filter(|s| supervisors.contains(s))
            .collect();
        assert!(
            shared.is_empty(),
            "worker {pid} holds the supervisor's sockets {shared:?}"
        );
    }

    sup.sigkill().unwrap();
    // Another client's callback keeps being called: a whole second arrives.
    let rec = capture
        .record_timeout(48_000, Duration::from_secs(10))
        .expect("the JACK server keeps running after modsynthd's SIGKILL");
    eprintln!(
        "measured: after the kill {} frames dropped, {} xruns at the capture",
        rec.dropped_frames, rec.xruns
    );
    let lsp = jack_lsp(&server, Duration::from_secs(10))
        .expect("jack_lsp answers after modsynthd's SIGKILL");
    assert!(
        lsp.contains(&capture.port(0)),
        "jack_lsp lists the capture: {lsp}"
    );
    // And the server is not waiting on a dead client: a new one can come and play.
    let second = Capture::start(&server, 1).expect("a new JACK client opens");
    second
        .record_timeout(4_800, Duration::from_secs(10))
        .expect("a new client's callback runs");
}

/// Records 0.5 s, does `act`, and records `frames` frames more.
fn record_across(capture: &Capture, frames: usize, act: impl FnOnce()) -> Vec<f32> {
    let (rec, ()) = capture
        .record_across(2 * frames + 48_000, frames, || {
            std::thread::sleep(Duration::from_millis(500));
            act()
        })
        .unwrap();
    eprintln!(
        "recording: {} frames dropped by the server, {} xruns",
        rec.dropped_frames, rec.xruns
    );
    rec.channels[0].clone()
}

#[test]
fn a_module_plays_on_without_its_supervisor_its_standby_still_takes_over_and_spares_leave() {
    let server = server();
    let name = unique_name();
    let mut sup = Supervisor::start_named(&server, &name, 2, &["--spare-grace", "2"]).unwrap();
    sup.new_module("vco", "osc", &[("freq", 440.0), ("gain", 0.5)])
        .unwrap();
    let capture = Capture::start(&server, 1).unwrap();
    let _leftovers = Leftovers(name.clone());
    sup.connect("osc:out", &capture.port(0)).unwrap();
    let before = sup.wait_for_module("osc", PATIENCE, |m| m.standby_worker.is_some());
    wait_until("a full pool besides the module", PATIENCE, || {
        workers_of(&name).len() >= 4
    });

    let out = record_across(&capture, 3 * 48_000, || sup.sigkill().unwrap());
    let gap = longest_silent_run(&out, 1e-6);
    let f = pitch_hz(&out[out.len() - 48_000..], RATE);
    eprintln!("measured: {gap} silent samples across modsynthd's SIGKILL, then {f:.2} Hz");
    assert!(
        gap <= server.period() as usize,
        "{gap} silent samples: the module stopped with its supervisor"
    );
    assert!(cents(f, 440.0).abs() < 5.0, "pitch after the kill {f}");

    // Spares leave after their grace; the module's two workers stay.
    wait_until("the spares' exit", PATIENCE, || {
        workers_of(&name).len() == 2
    });
    let mut left = workers_of(&name);
    left.sort_unstable();
    let mut players = vec![before.pid, before.ready_standby().pid];
    players.sort_unstable();
    assert_eq!(left, players, "the primary and its standby are left");

    // With no supervisor, the standby still takes over from a dead primary.
    let out = record_across(&capture, 2 * 48_000, || sigkill(before.pid));
    let gap = longest_silent_run(&out, 1e-6);
    let f = pitch_hz(&out[out.len() - 24_000..], RATE);
    eprintln!("measured: {gap} silent samples across the primary's SIGKILL with no supervisor, then {f:.2} Hz");
    assert!(
        gap <= server.period() as usize,
        "{gap} silent samples: the standby did not take over"
    );
    assert!(cents(f, 440.0).abs() < 5.0, "pitch after the takeover {f}");
    assert_eq!(workers_of(&name), vec![before.ready_standby().pid]);
}

#[test]
fn workers_whose_supervisor_and_server_are_both_gone_exit() {
    let mut server = server();
    let name = unique_name();
    let mut sup = Supervisor::start_named(&server, &name, 2, &[]).unwrap();
    let _leftovers = Leftovers(name.clone());
    sup.new_module("vco", "osc", &[("freq", 440.0)]).unwrap();
    sup.wait_for_module("osc", PATIENCE, |m| m.standby_worker.is_some());
    sup.sigkill().unwrap();
    sigkill(server.pid());
    wait_until("the exit of every worker", PATIENCE, || {
        workers_of(&name).is_empty()
    });
    assert!(!server.is_running());
}

/// The running patch as `/set/save` writes it (modules, values, connections).
fn saved_set(sup: &Supervisor, tag: &str) -> String {
    let name = format!("{}-{tag}.toml", sup.name);
    let path = sup.sets_dir.join(&name);
    sup.client()
        .call(message("/set/save", vec![text(&name)]))
        .expect("/set/save");
    let set = std::fs::read_to_string(&path).expect("the saved set");
    let _ = std::fs::remove_file(&path);
    set
}

/// Starts VCO -> VCF -> VCA -> capture on `sup`, every module with its standby.
fn play_a_chain(sup: &Supervisor, capture: &Capture) {
    sup.new_module("vco", "osc1", &[("freq", 440.0), ("gain", 0.5)])
        .unwrap();
    sup.new_module("vcf", "filt1", &[("cutoff", 8000.0)])
        .unwrap();
    sup.new_module("vca", "amp1", &[("gain", 1.0)]).unwrap();
    sup.connect("osc1:out", "filt1:in").unwrap();
    sup.connect("filt1:out", "amp1:in").unwrap();
    sup.connect("amp1:out", &capture.port(0)).unwrap();
    for id in ["osc1", "filt1", "amp1"] {
        sup.wait_for_module(id, PATIENCE, |m| m.standby_worker.is_some());
    }
}

#[test]
fn a_set_plays_on_through_modsynthd_sigkill_and_a_new_modsynthd_takes_it_back() {
    let server = server();
    let name = unique_name();
    // Spares wait for the new supervisor too.
    let extra = ["--spare-grace", "30"];
    let mut sup = Supervisor::start_named(&server, &name, 2, &extra).unwrap();
    let capture = Capture::start(&server, 1).unwrap();
    let _leftovers = Leftovers(name.clone());
    play_a_chain(&sup, &capture);
    let before = sup.status().unwrap();
    let set_before = saved_set(&sup, "before");
    let workers_before = {
        let mut w = workers_of(&name);
        w.sort_unstable();
        w
    };

    // Ten seconds and more without a supervisor.
    let out = record_across(&capture, 11 * 48_000, || sup.sigkill().unwrap());
    let gap = longest_silent_run(&out, 1e-6);
    let f = pitch_hz(&out[out.len() - 48_000..], RATE);
    eprintln!("measured: {gap} silent samples in 11 s after modsynthd's SIGKILL, then {f:.2} Hz");
    assert!(
        gap <= server.period() as usize,
        "{gap} silent samples after the supervisor's death"
    );
    assert!(
        cents(f, 440.0).abs() < 5.0,
        "pitch without a supervisor {f}"
    );

    // From the new supervisor's start to a second after its pool is ready.
    let again = {
        let (rec, again) = capture
            .record_across(30 * 48_000, 48_000, || {
                Supervisor::start_named(&server, &name, 2, &extra).unwrap()
            })
            .unwrap();
        let out = &rec.channels[0];
        let gap = longest_silent_run(out, 1e-6);
        eprintln!("measured: {gap} silent samples while the new modsynthd took the set back");
        assert!(
            gap <= server.period() as usize,
            "{gap} silent samples during the re-adoption"
        );
        again
    };
    eprintln!("the new modsynthd said {:?}", again.startup_output());
    assert!(
        again
            .startup_output()
            .iter()
            .any(|l| l.contains("took back")),
        "it took workers back: {:?}",
        again.startup_output()
    );
    let after = again.status().unwrap();
    for m in &before.modules {
        let a = after
            .modules
            .iter()
            .find(|a| a.id == m.id)
            .unwrap_or_else(|| panic!("module {} after the re-adoption", m.id));
        assert_eq!(
            (&a.module_type, a.pid, &a.ports, a.ready_standby().pid),
            (&m.module_type, m.pid, &m.ports, m.ready_standby().pid),
            "module {} is played by the same workers",
            m.id
        );
    }
    assert_eq!(after.modules.len(), before.modules.len());
    assert_eq!(
        saved_set(&again, "after"),
        set_before,
        "same modules, values, connections"
    );
    let mut adopted: Vec<u32> = workers_of(&name)
        .into_iter()
        .filter(|p| workers_before.contains(p))
        .collect();
    adopted.sort_unstable();
    assert_eq!(adopted, workers_before, "every worker was kept");

    // The new supervisor controls the set.
    again.set("osc1", "freq", 660.0).unwrap();
    let rec = capture.record_continuous(24_000).unwrap();
    let f = pitch_hz(&rec.channels[0], RATE);
    assert!(cents(f, 660.0).abs() < 5.0, "after /module/set {f} Hz");

    let mut again = again;
    again.stop().unwrap();
    wait_until("every worker's exit", PATIENCE, || {
        workers_of(&name).is_empty()
    });
    assert_eq!(
        segments_of(&name),
        Vec::<String>::new(),
        "no leaked segment"
    );
}

#[test]
fn a_primary_killed_while_no_supervisor_runs_fails_over_and_the_next_supervisor_gives_it_a_standby()
{
    let server = server();
    let name = unique_name();
    let extra = ["--spare-grace", "30"];
    let mut sup = Supervisor::start_named(&server, &name, 2, &extra).unwrap();
    sup.new_module("vco", "lead", &[("freq", 440.0), ("gain", 0.5)])
        .unwrap();
    let capture = Capture::start(&server, 1).unwrap();
    let _leftovers = Leftovers(name.clone());
    sup.connect("lead:out", &capture.port(0)).unwrap();
    let before = sup.wait_for_module("lead", PATIENCE, |m| m.standby_worker.is_some());
    let failovers_before = sup.status().unwrap().counters.failovers;
    sup.sigkill().unwrap();

    let out = record_across(&capture, 2 * 48_000, || sigkill(before.pid));
    let gap = longest_silent_run(&out, 1e-6);
    eprintln!("measured: {gap} silent samples across the primary's SIGKILL with no supervisor");
    assert!(
        gap <= ZERO_CROSSING_SAMPLES,
        "the standby took over after {gap} silent samples"
    );

    let again = Supervisor::start_named(&server, &name, 2, &extra).unwrap();
    let after = again.wait_for_module("lead", PATIENCE, |m| {
        m.pid == before.ready_standby().pid
            && m.standby_worker.is_some()
            && m.ready_standby().pid != before.pid
    });
    let status = again.status().unwrap();
    assert_eq!(
        status.counters.failovers,
        failovers_before + 1,
        "seen as failed over"
    );
    // The promoted standby carries the module's names and plays into the capture.
    let lsp = jack_lsp(&server, PATIENCE).expect("jack_lsp answers");
    assert!(lsp.contains(&after.ports["out"]), "{lsp}");
    let aliases = server
        .command("jack_lsp")
        .arg("-A")
        .output()
        .expect("jack_lsp -A");
    assert!(String::from_utf8_lossy(&aliases.stdout).contains("lead:out"));
    let rec = capture.record_continuous(24_000).unwrap();
    let f = pitch_hz(&rec.channels[0], RATE);
    assert!(cents(f, 440.0).abs() < 5.0, "pitch after the adoption {f}");

    // And the standby the new supervisor built takes over in turn.
    let out = record_across(&capture, 2 * 48_000, || sigkill(after.pid));
    let gap = longest_silent_run(&out, 1e-6);
    eprintln!("measured: {gap} silent samples across a SIGKILL of the adopted primary");
    assert!(
        gap <= ZERO_CROSSING_SAMPLES,
        "the new standby took over after {gap} silent samples"
    );
    again.wait_for_module("lead", PATIENCE, |m| m.pid == after.ready_standby().pid);
}

#[test]
fn twenty_supervisor_kills_and_restarts_under_a_playing_set_leave_nothing_behind() {
    let server = server();
    let name = unique_name();
    let extra = ["--spare-grace", "30"];
    let mut sup = Supervisor::start_named(&server, &name, 2, &extra).unwrap();
    let capture = Capture::start(&server, 1).unwrap();
    let _leftovers = Leftovers(name.clone());
    play_a_chain(&sup, &capture);
    // Settled: a worker still starting when its supervisor dies cannot say hello
    // and exits, and would count as lost.
    wait_until("a ready pool besides the set", PATIENCE, || {
        workers_of(&name).len() == 8 && sup.status().is_ok_and(|s| s.spare_ready == 2)
    });
    let mut players = workers_of(&name);
    players.sort_unstable();

    const CYCLES: usize = 20;
    // One recording over every cycle and a second after the last (at most 60 s: a
    // loaded machine restarts slowly).
    let (rec, restart_ms) = capture
        .record_across(60 * 48_000, 48_000, || {
            (0..CYCLES)
                .map(|_| {
                    sup.sigkill().unwrap();
                    let t = Instant::now();
                    sup = Supervisor::start_named(&server, &name, 2, &extra).unwrap();
                    t.elapsed().as_millis()
                })
                .collect::<Vec<_>>()
        })
        .unwrap();
    let out = &rec.channels[0];
    let gap = longest_silent_run(out, 1e-6);
    eprintln!("measured: {gap} silent samples over {CYCLES} kills and restarts; restart to adopted (ms): {restart_ms:?}");
    assert!(gap <= server.period() as usize, "{gap} silent samples");

    let mut now = workers_of(&name);
    now.sort_unstable();
    assert_eq!(now, players, "the same workers, no new and no lost one");
    let status = sup.status().unwrap();
    assert_eq!(status.counters.crash_count, 0, "no worker died");
    assert_eq!(status.modules.len(), 3);
    // The registry lists exactly the live workers and the set's segments.
    let dir = modsynth_shm::default_base_dir().join(&name);
    wait_until("a registry of the live workers", PATIENCE, || {
        let Ok(registry) = modsynth_shm::Registry::load(&dir) else {
            return false;
        };
        let mut pids: Vec<u32> = registry.workers().iter().map(|w| w.pid).collect();
        pids.sort_unstable();
        let mut segments: Vec<String> = registry
            .allocations()
            .iter()
            .map(|a| a.segment.trim_start_matches('/').to_string())
            .collect();
        segments.sort_unstable();
        let mut live = segments_of(&name);
        live.sort_unstable();
        pids == players && segments == live && live.len() == 3
    });

    sup.stop().unwrap();
    wait_until("every worker's exit", PATIENCE, || {
        workers_of(&name).is_empty()
    });
    assert_eq!(
        segments_of(&name),
        Vec::<String>::new(),
        "no leaked segment"
    );
    let left: Vec<String> = std::fs::read_dir(&dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    assert!(
        !dir.exists(),
        "the state dir is gone after the clean stop; it holds {left:?}"
    );
}

/// The live rig as the README starts it: `scripts/live` with the demo set, its
/// `modsynthd` SIGKILLed halfway through the recording.
#[test]
fn scripts_live_restarts_a_killed_modsynthd_which_takes_the_demo_back_without_a_gap() {
    // scripts/live starts its own jackd: take the turn the harness's servers take.
    let _turn = modsynth_tests::jack_server::jack_turn().unwrap();
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let wav =
        std::env::temp_dir().join(format!("modsynth-live-restart-{}.wav", std::process::id()));
    let server_name = format!("modsynth-live-restart-{}", std::process::id());
    let port = {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        s.local_addr().unwrap().port()
    };
    let mut live = std::process::Command::new(repo.join("scripts/live"))
        .args([
            repo.join("scripts/sets/demo.toml").to_str().unwrap(),
            "--duration",
            "6",
            "--record",
            wav.to_str().unwrap(),
        ])
        .env("JACK_DEFAULT_SERVER", &server_name)
        .env("MODSYNTH_OSC_PORT", port.to_string())
        .env(
            "MODSYNTH_BIN_DIR",
            modsynth_tests::workers::bin_path("modsynth")
                .unwrap()
                .parent()
                .unwrap(),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let said = echo_and_keep_output(&mut live);
    let has_said = |what: &str| {
        said.lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(what)
    };
    // modsynthd of this run: the only one on this OSC port.
    let port_arg = port.to_string();
    let modsynthd = || modsynthd_with("--osc-port", &port_arg);
    wait_until("the demo playing", Duration::from_secs(60), || {
        has_said("live: playing")
    });
    let first = modsynthd().expect("scripts/live's modsynthd");
    // Into the recording (it starts right after "playing").
    std::thread::sleep(Duration::from_secs(2));
    sigkill(first);
    let killed = Instant::now();
    let client =
        modsynth_control::client::Client::new(format!("127.0.0.1:{port}").parse().unwrap())
            .unwrap()
            // Asked again and again: a query sent before the new one listens is lost.
            .with_timeout(Duration::from_millis(100));
    wait_until("a new modsynthd answering", PATIENCE, || {
        modsynthd().is_some_and(|p| p != first)
            && client
                .query(message("/status", vec![]), "/status.reply")
                .is_ok()
    });
    let back = killed.elapsed();
    eprintln!(
        "measured: modsynthd back and answering {} ms after its SIGKILL",
        back.as_millis()
    );
    let status = live.wait().unwrap();
    assert!(status.success(), "scripts/live exited with {status}");
    assert!(
        has_said("live: modsynthd killed by signal 9"),
        "the restart is logged"
    );
    assert!(
        has_said("took back"),
        "the new modsynthd took the demo back"
    );

    let reader = hound::WavReader::open(&wav).unwrap();
    let samples: Vec<f32> = reader.into_samples::<f32>().map(Result::unwrap).collect();
    let _ = std::fs::remove_file(&wav);
    // Interleaved stereo: the left channel, without its first 0.1 s: the recorder
    // plays silence until it has connected its inputs (seen: up to 3 periods).
    let left: Vec<f32> = samples.iter().step_by(2).skip(4_800).copied().collect();
    let gap = longest_silent_run(&left, 1e-6);
    eprintln!("measured: longest silence in the recording {gap} samples");
    assert!(gap <= 256, "{gap} silent samples in the recording");
}

#[test]
fn a_modsynthd_that_fails_after_taking_workers_back_leaves_them_playing_for_the_next() {
    let server = server();
    let name = unique_name();
    let extra = ["--spare-grace", "30"];
    let mut sup = Supervisor::start_named(&server, &name, 1, &extra).unwrap();
    sup.new_module("vco", "osc", &[("freq", 440.0), ("gain", 0.5)])
        .unwrap();
    let capture = Capture::start(&server, 1).unwrap();
    let _leftovers = Leftovers(name.clone());
    sup.connect("osc:out", &capture.port(0)).unwrap();
    let before = sup.wait_for_module("osc", PATIENCE, |m| m.standby_worker.is_some());
    sup.sigkill().unwrap();

    // The next modsynthd takes the workers back, then cannot listen for OSC.
    let busy = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port().to_string();
    let mut failing = server
        .command(modsynth_tests::workers::bin_path("modsynthd").unwrap())
        .args(["--name", &name, "--osc-port", &port, "--spare-grace", "30"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_until("the failing modsynthd's exit", PATIENCE, || {
        failing.try_wait().unwrap().is_some()
    });
    let out = failing.wait_with_output().unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot listen for OSC"),
        "{out:?}"
    );
    assert!(said.contains("still play"), "it says it kept them: {said}");
    assert!(
        segments_of(&name).iter().any(|s| s.ends_with("-osc-state")),
        "the module's state survives"
    );
    let rec = capture.record_continuous(24_000).unwrap();
    let f = pitch_hz(&rec.channels[0], RATE);
    assert!(cents(f, 440.0).abs() < 5.0, "still playing {f}");

    let again = Supervisor::start_named(&server, &name, 1, &extra).unwrap();
    let after = again.wait_for_module("osc", PATIENCE, |m| m.standby_worker.is_some());
    assert_eq!(
        (after.pid, after.ready_standby().pid),
        (before.pid, before.ready_standby().pid)
    );
}

#[test]
fn a_module_without_a_standby_whose_worker_died_while_no_supervisor_ran_is_reported_gone() {
    let server = server();
    let name = unique_name();
    let extra = ["--spare-grace", "30"];
    let mut sup = Supervisor::start_named(&server, &name, 1, &extra).unwrap();
    let _leftovers = Leftovers(name.clone());
    sup.new_module_without_standby("vco", "solo", &[("freq", 220.0)])
        .unwrap();
    sup.new_module("vco", "kept", &[("freq", 440.0)]).unwrap();
    let solo = sup.wait_for_module("solo", PATIENCE, |_| true);
    sup.wait_for_module("kept", PATIENCE, |m| m.standby_worker.is_some());
    // The registry has both on record before the supervisor dies.
    let registry = modsynth_shm::default_base_dir().join(&name);
    wait_until("both modules in the registry", PATIENCE, || {
        modsynth_shm::Registry::load(&registry).is_ok_and(|r| r.allocations().len() == 2)
    });
    sup.sigkill().unwrap();
    sigkill(solo.pid);

    let again = Supervisor::start_named(&server, &name, 1, &extra).unwrap();
    let said = again.startup_output().join("\n");
    assert!(
        said.contains("1 module(s) lost every worker") && said.contains("solo"),
        "{said}"
    );
    let status = again.status().unwrap();
    let ids: Vec<&str> = status.modules.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(ids, vec!["kept"]);
    assert!(
        !segments_of(&name).iter().any(|s| s.contains("-solo-")),
        "the lost module's segment is removed"
    );
}

/// `scripts/live` on a JACK server it did not start, its watchdog allowed no
/// restart: when it gives up, the modules play on; when the script ends, a last
/// `modsynthd` takes the workers back and stops them, so nothing is left running.
#[test]
fn scripts_live_whose_watchdog_gave_up_still_stops_every_worker_at_the_end() {
    let server = server();
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let port = {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        s.local_addr().unwrap().port()
    };
    let mut live = server
        .command(repo.join("scripts/live"))
        .args([
            repo.join("scripts/sets/minimal.toml").to_str().unwrap(),
            "--duration",
            "4",
        ])
        .env("MODSYNTH_OSC_PORT", port.to_string())
        .env("MODSYNTH_RESTARTS", "0/60")
        .env(
            "MODSYNTH_BIN_DIR",
            modsynth_tests::workers::bin_path("modsynth")
                .unwrap()
                .parent()
                .unwrap(),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let name = format!("live{}", live.id());
    let _leftovers = Leftovers(name.clone());
    let said = echo_and_keep_output(&mut live);
    let has_said = |what: &str| {
        said.lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(what)
    };
    wait_until("the set playing", Duration::from_secs(60), || {
        has_said("live: playing")
    });
    let modsynthd = modsynthd_with("--name", &name).expect("scripts/live's modsynthd");
    sigkill(modsynthd);
    wait_until("the watchdog giving up", PATIENCE, || has_said("giving up"));
    assert!(!workers_of(&name).is_empty(), "the set plays on meanwhile");
    let status = live.wait().unwrap();
    assert!(status.success(), "scripts/live exited with {status}");
    assert!(has_said("taking them back to stop them"));
    assert_eq!(
        workers_of(&name),
        Vec::<u32>::new(),
        "no worker left running"
    );
    assert_eq!(segments_of(&name), Vec::<String>::new(), "no segment left");
}

/// Echoes `child`'s stdout and stderr line by line (so a failed test shows them) and
/// keeps them, both in one text, for the test to look at.
fn echo_and_keep_output(
    child: &mut std::process::Child,
) -> std::sync::Arc<std::sync::Mutex<String>> {
    use std::io::{BufRead, BufReader};
    use std::sync::{Arc, Mutex};
    let said = Arc::new(Mutex::new(String::new()));
    for pipe in [
        Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
        Box::new(child.stderr.take().unwrap()),
    ] {
        let said = said.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                eprintln!("{line}");
                let mut text = said.lock().unwrap_or_else(|p| p.into_inner());
                text.push_str(&line);
                text.push('\n');
            }
        });
    }
    said
}

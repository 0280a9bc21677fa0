//! Live sets end to end: set files loaded and saved through modsynthd, pending
//! connections, the demo's music, and `scripts/live` cleaning up after itself.

use modsynth_control::osc::{message, text};
use modsynth_control::setfile::{self, Connection};
use modsynth_control::status::{ModuleRole, StatusReport};
use modsynth_tests::analysis::{has_non_finite, magnitude_spectrum_db, peak};
use modsynth_tests::capture::Capture;
use modsynth_tests::jack_server::JackServer;
use modsynth_tests::supervisor::ReadyStandby;
use modsynth_tests::supervisor::Supervisor;
use modsynth_tests::workers::sigkill;
use modsynth_tests::workers::{bin_path, wait_for_port};
use rosc::OscType;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const RATE: f64 = 48_000.0;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A file in a fresh temporary directory, removed with it.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("modsynth-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn file(&self, name: &str, contents: &str) -> String {
        let path = self.0.join(name);
        std::fs::write(&path, contents).unwrap();
        path.to_str().unwrap().to_string()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn status(sup: &Supervisor) -> StatusReport {
    let reply = sup
        .client()
        .query(message("/status", vec![]), "/status.reply")
        .unwrap();
    let OscType::String(json) = &reply.args[0] else {
        panic!("no json")
    };
    serde_json::from_str(json).unwrap()
}

/// The real JACK port behind `id:port`.
fn real(sup: &Supervisor, id: &str, port: &str) -> String {
    let s = status(sup);
    let m = s
        .modules
        .iter()
        .find(|m| m.id == id)
        .unwrap_or_else(|| panic!("no module {id}"));
    m.ports[port].clone()
}

/// Loads the set file at `path` as `modsynth set load` does: copied into the
/// supervisor's sets dir (if it exists), then loaded by its name.
fn load(sup: &Supervisor, path: &str) -> Result<(), String> {
    let path = Path::new(path);
    let name = path.file_name().unwrap().to_str().unwrap();
    let copy = sup.sets_dir.join(name);
    if path.exists() && path != copy {
        std::fs::copy(path, &copy).unwrap();
    }
    let client = sup.client().with_timeout(Duration::from_secs(30));
    client
        .call(message("/set/load", vec![text(name)]))
        .map(|_| ())
}

/// Waits until `src` is connected to `dst` (names as JACK shows them).
fn wait_connected(server: &JackServer, src: &str, dst: &str, deadline: Duration) -> bool {
    let end = Instant::now() + deadline;
    while Instant::now() < end {
        let out = server
            .command("jack_lsp")
            .args(["-c", src])
            .output()
            .unwrap();
        if String::from_utf8_lossy(&out.stdout)
            .lines()
            .any(|l| l.trim() == dst)
        {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

#[test]
fn the_demo_set_plays_its_sequence_in_order_at_a_sensible_level() {
    let server = JackServer::start().unwrap();
    // A small pool: every idle spare is one more JACK client woken every period,
    // and this test judges the set's sound, not the pool.
    let sup = Supervisor::start(&server, 2).unwrap();
    let demo = repo().join("scripts/sets/demo.toml");
    load(&sup, demo.to_str().unwrap()).unwrap();
    let capture = Capture::start(&server, 2).unwrap();
    capture
        .connect_from(&real(&sup, "echo1", "out"), 0)
        .unwrap();
    capture
        .connect_from(&real(&sup, "seq1", "pitch"), 1)
        .unwrap();
    sup.wait_until_settled(Duration::from_secs(30));
    capture.record(256).unwrap();
    let rec = capture.record_continuous(2 * 48_000).unwrap();
    let dir = TempDir::new("demo");
    let wav = dir.0.join("demo.wav");
    rec.write_wav(&wav).unwrap();

    // Analyse the file, as a listener would get it.
    let mut reader = hound::WavReader::open(&wav).unwrap();
    let samples: Vec<f32> = reader.samples::<f32>().map(Result::unwrap).collect();
    let audio: Vec<f32> = samples.iter().step_by(2).copied().collect();
    let pitch_cv: Vec<f32> = samples.iter().skip(1).step_by(2).copied().collect();
    assert!(!has_non_finite(&audio));
    let level = peak(&audio);
    assert!(
        level > 0.05 && level < 1.0,
        "peak {level}: silent or clipping"
    );

    // Steps start where the seq's pitch output changes; its value is the step's pitch.
    let starts: Vec<usize> = (1..pitch_cv.len())
        .filter(|&i| pitch_cv[i] != pitch_cv[i - 1])
        .collect();
    assert!(
        starts.len() >= 8,
        "only {} step changes in 2 s",
        starts.len()
    );
    let notes: Vec<f64> = [0.0, 1.0, 0.5833, 0.25, 0.8333, 0.4167]
        .iter()
        .map(|p: &f64| 110.0 * p.exp2())
        .collect();
    // Each step's note is the candidate with the strongest harmonic series in the
    // 60 ms after the step: |X(f)| + |X(2f)|/2 + |X(3f)|/3, the fundamental weighted
    // most. The previous notes' release and echo linger in that window, and 110 Hz
    // and 220 Hz share harmonics: a measure that weighed f and 2f alike picked
    // 110 Hz for a 220 Hz step whenever the lingering 110 Hz note was loud.
    let window = 2880;
    let mut checked = 0;
    let mut closest_margin = f64::INFINITY;
    for &s in starts.iter().filter(|&&s| s + window <= audio.len()) {
        let want = 110.0 * (pitch_cv[s] as f64).exp2();
        let spectrum = magnitude_spectrum_db(&audio[s..s + window], RATE);
        let amplitude =
            |hz: f64| 10f64.powf(spectrum.db[spectrum.bin(hz).min(spectrum.db.len() - 1)] / 20.0);
        let score = |f: f64| {
            (1..=3)
                .map(|k| amplitude(k as f64 * f) / k as f64)
                .sum::<f64>()
        };
        let mut ranked: Vec<(f64, f64)> = notes.iter().map(|&f| (score(f), f)).collect();
        ranked.sort_by(|a, b| b.0.total_cmp(&a.0));
        let (loudest, runner_up) = (ranked[0], ranked[1]);
        assert!(
            (loudest.1 - want).abs() < 1.0,
            "step at {s}: the loudest note is {:.1} Hz, the sequence says {want:.1} Hz: \
             {ranked:?}",
            loudest.1
        );
        closest_margin = closest_margin.min(loudest.0 / runner_up.0);
        checked += 1;
    }
    assert!(checked >= 8, "only {checked} steps could be judged");
    eprintln!(
        "measured: demo peak {level:.2}, {checked} steps each led by its own note \
         (closest: {closest_margin:.2}x the runner-up's score)"
    );
}

const PATCH: &str = r#"
[[module]]
id = "tone"
type = "vco"
params = { freq = 220, wave = "saw" }

[[module]]
id = "filter"
type = "vcf"
params = { cutoff = 900, resonance = 0.3 }

[[connect]]
from = "tone:out"
to = "filter:in"
"#;

#[test]
fn save_then_load_gives_the_same_patch_including_a_jack_connect_connection() {
    let server = JackServer::start().unwrap();
    let dir = TempDir::new("roundtrip");
    let first = dir.file("first.toml", PATCH);
    // Both supervisors share one sets dir: the second loads what the first saved.
    let sets = dir.0.join("sets");
    let sets_arg = ["--sets-dir", sets.to_str().unwrap()];
    let saved = sets.join("saved.toml").to_str().unwrap().to_string();
    {
        let mut sup = Supervisor::start_with(&server, 4, &sets_arg).unwrap();
        load(&sup, &first).unwrap();
        sup.set("filter", "cutoff", 1234.0).unwrap();
        // Patched by hand, by alias: modsynth never heard of it.
        let by_hand = server
            .command("jack_connect")
            .args(["filter:out", "system:playback_2"])
            .status()
            .unwrap();
        assert!(by_hand.success());
        sup.client()
            .call(message("/set/save", vec![text("saved.toml")]))
            .unwrap();
        sup.stop().unwrap();
    }
    let set = setfile::load(Path::new(&saved)).unwrap();
    let ids: Vec<&str> = set.modules.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(ids, vec!["filter", "tone"]);
    let filter = &set.modules[0];
    assert!(filter.params.contains(&(1, 1234.0)), "{:?}", filter.params);
    for c in [
        ("tone:out", "filter:in"),
        ("filter:out", "system:playback_2"),
    ] {
        assert!(
            set.connections.contains(&Connection {
                from: c.0.into(),
                to: c.1.into()
            }),
            "{c:?} not saved: {:?}",
            set.connections
        );
    }

    let sup = Supervisor::start_with(&server, 4, &sets_arg).unwrap();
    load(&sup, &saved).unwrap();
    assert_eq!(sup.param_value("filter", "cutoff"), OscType::Float(1234.0));
    assert_eq!(
        sup.param_value("tone", "wave"),
        OscType::String("saw".into())
    );
    let filter_out = real(&sup, "filter", "out");
    assert!(wait_connected(
        &server,
        &filter_out,
        "system:playback_2",
        Duration::from_secs(5)
    ));
    assert!(wait_connected(
        &server,
        &real(&sup, "tone", "out"),
        &real(&sup, "filter", "in"),
        Duration::from_secs(5)
    ));
}

#[test]
fn a_connection_to_a_program_started_later_is_made_when_it_appears_and_after_it_restarts() {
    let server = JackServer::start().unwrap();
    let sup = Supervisor::start(&server, 4).unwrap();
    let dir = TempDir::new("pending");
    let set = dir.file(
        "late.toml",
        "[[module]]\nid = \"src\"\ntype = \"vco\"\n\n[[connect]]\nfrom = \"src:out\"\nto = \"latecomer:in\"\n",
    );
    load(&sup, &set).unwrap();
    let src = real(&sup, "src", "out");
    let start_latecomer = || {
        let child = server
            .command(bin_path("modsynth-worker").unwrap())
            .args(["--standalone", "vca", "latecomer"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        wait_for_port(
            &server,
            "latecomer:in",
            Instant::now() + Duration::from_secs(10),
        )
        .unwrap();
        child
    };
    let stop = |mut child: std::process::Child| {
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
        child.wait().unwrap();
    };
    let first = start_latecomer();
    assert!(
        wait_connected(&server, &src, "latecomer:in", Duration::from_secs(5)),
        "not connected when it appeared"
    );
    stop(first);
    let again = start_latecomer();
    assert!(
        wait_connected(&server, &src, "latecomer:in", Duration::from_secs(5)),
        "not connected after the restart"
    );
    stop(again);
}

#[test]
fn bad_set_files_fail_with_file_and_line_and_change_nothing() {
    let server = JackServer::start().unwrap();
    let sup = Supervisor::start(&server, 4).unwrap();
    let dir = TempDir::new("bad");
    let good = dir.file("good.toml", PATCH);
    load(&sup, &good).unwrap();
    let before = status(&sup)
        .modules
        .iter()
        .map(|m| m.id.clone())
        .collect::<Vec<_>>();
    let cases = [
        ("syntax.toml", "[[module]\nid = 1\n", ":1:"),
        (
            "type.toml",
            "[[module]]\nid = \"x\"\ntype = \"vcx\"\n",
            ":3: no module type 'vcx'",
        ),
        (
            "param.toml",
            "[[module]]\nid = \"x\"\ntype = \"vco\"\nparams = { frq = 1 }\n",
            ":4: vco has no parameter 'frq'",
        ),
        (
            "range.toml",
            "[[module]]\nid = \"tone\"\ntype = \"vco\"\nparams = { freq = 99999 }\n",
            ":4: vco.freq = 99999 is out of range",
        ),
        (
            "dup.toml",
            "[[module]]\nid = \"a\"\ntype = \"vco\"\n[[module]]\nid = \"a\"\ntype = \"lfo\"\n",
            ":5: module id 'a' is used twice",
        ),
        (
            "port.toml",
            "[[connect]]\nfrom = \"noport\"\nto = \"x:y\"\n",
            ":2: 'noport' is not a port name",
        ),
    ];
    for (name, text_, want) in cases {
        let path = dir.file(name, text_);
        let err = load(&sup, &path).unwrap_err();
        assert!(
            err.starts_with(name) && err.contains(want),
            "{name}: '{err}' does not say '{want}'"
        );
    }
    let missing = dir.0.join("missing.toml").to_str().unwrap().to_string();
    let err = load(&sup, &missing).unwrap_err();
    assert!(err.contains("no set 'missing.toml'"), "{err}");
    // Nothing changed: same modules, same values.
    assert_eq!(
        status(&sup)
            .modules
            .iter()
            .map(|m| m.id.clone())
            .collect::<Vec<_>>(),
        before
    );
    assert_eq!(sup.param_value("tone", "freq"), OscType::Float(220.0));
    // The CLI says the same and exits non-zero.
    let bad = dir.0.join("type.toml");
    let out = Command::new(bin_path("modsynth").unwrap())
        .args([
            "--osc",
            &sup.osc.to_string(),
            "set",
            "load",
            bad.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no module type 'vcx'"));
    // A save that cannot be written fails, and an earlier save stays whole.
    let kept = sup.sets_dir.join("kept.toml");
    sup.client()
        .call(message("/set/save", vec![text("kept.toml")]))
        .unwrap();
    let before_save = std::fs::read_to_string(&kept).unwrap();
    std::fs::create_dir(sup.sets_dir.join("blocked.toml")).unwrap();
    let err = sup
        .client()
        .call(message("/set/save", vec![text("blocked.toml")]))
        .unwrap_err();
    assert!(err.contains("cannot save"), "{err}");
    assert_eq!(std::fs::read_to_string(&kept).unwrap(), before_save);
    // Paths are not set names: nothing outside the sets dir is written.
    let err = sup
        .client()
        .call(message(
            "/set/save",
            vec![text("/proc/modsynth-cannot-write.toml")],
        ))
        .unwrap_err();
    assert!(err.contains("not a set name"), "{err}");
}

/// Runs the README's first command (shortened) on a machine with no JACK server
/// running under the name it will use, and checks nothing is left behind.
#[test]
fn scripts_live_without_a_server_records_and_leaves_nothing_behind() {
    // scripts/live starts its own jackd: take the turn the harness's servers take.
    let _turn = modsynth_tests::jack_server::jack_turn().unwrap();
    let dir = TempDir::new("live");
    let wav = dir.0.join("x.wav");
    let server_name = format!("modsynth-live-test-{}", std::process::id());
    let port = {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        s.local_addr().unwrap().port()
    };
    let shm_before: Vec<String> = shm_entries();
    let status = Command::new(repo().join("scripts/live"))
        .args([
            repo().join("scripts/sets/minimal.toml").to_str().unwrap(),
            "--duration",
            "2",
            "--record",
            wav.to_str().unwrap(),
        ])
        .env("JACK_DEFAULT_SERVER", &server_name)
        .env("MODSYNTH_OSC_PORT", port.to_string())
        // `modsynth set load` copies the set into modsynthd's sets dir: a private one.
        .env("MODSYNTH_SETS_DIR", dir.0.join("sets"))
        // The binaries this test run built: a release build here would starve the
        // other tests' audio on a 2-core machine.
        .env(
            "MODSYNTH_BIN_DIR",
            bin_path("modsynth").unwrap().parent().unwrap(),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "scripts/live exited with {status}");
    let reader = hound::WavReader::open(&wav).unwrap();
    let spec = reader.spec();
    let frames = reader.duration() as f64 / spec.sample_rate as f64;
    assert_eq!(spec.channels, 2);
    assert!((frames - 2.0).abs() < 0.1, "{frames} s recorded");
    let samples: Vec<f32> = reader.into_samples::<f32>().map(Result::unwrap).collect();
    assert!(peak(&samples) > 0.1, "the recording is silent");
    // Nothing of that run is left: no process naming its server, no new /dev/shm
    // entries (JACK's or ours).
    let ours = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .filter(|cmd| String::from_utf8_lossy(cmd).contains(&server_name))
        .count();
    assert_eq!(ours, 0, "processes of the run are still there");
    // Only this run's entries: JACK's name the server, modsynth's start with the
    // instance scripts/live uses (`live<pid>-`); other tests run meanwhile.
    let of_this_run =
        |e: &String| e.contains(&server_name) || (e.starts_with("live") && e.contains('-'));
    let new: Vec<String> = shm_entries()
        .into_iter()
        .filter(|e| !shm_before.contains(e) && of_this_run(e))
        .collect();
    assert!(new.is_empty(), "left in /dev/shm: {new:?}");
}

fn shm_entries() -> Vec<String> {
    std::fs::read_dir("/dev/shm")
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// The JACK graph at module level, as `jack_lsp -c` shows it: every connection of a
/// module primary's port, each end named as the patch names it (`osc1:out`, or the
/// foreign port), as unordered pairs; and separately every connection of a
/// standby's port, its standby ends named for the module they stand for. A port of
/// any other modsynth worker keeps its real name, so a link to it shows up as a
/// difference.
#[derive(Debug, PartialEq)]
struct ModuleGraph {
    patch: std::collections::BTreeSet<(String, String)>,
    standby: std::collections::BTreeSet<(String, String)>,
}

fn module_graph(server: &JackServer, sup: &Supervisor) -> ModuleGraph {
    let s = status(sup);
    let mut primary = std::collections::HashMap::new();
    let mut standby_clients = std::collections::HashMap::new();
    for m in &s.modules {
        for (port, real) in &m.ports {
            primary.insert(real.clone(), format!("{}:{port}", m.id));
        }
        if let Some(standby) = &m.standby_worker {
            standby_clients.insert(standby.client.clone(), m.clone());
        }
    }
    // A standby's ports are in the same order as its primary's and carry the same
    // generic names (`in_1`, `out_1`): the primary's port of that short name.
    let standby_name = |real: &str| -> Option<String> {
        let (client, short) = real.split_once(':')?;
        let m = standby_clients.get(client)?;
        let (port, _) = m
            .ports
            .iter()
            .find(|(_, p)| p.split_once(':').map(|x| x.1) == Some(short))?;
        Some(format!("{}:{port}", m.id))
    };
    let out = server.command("jack_lsp").arg("-c").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut graph = ModuleGraph {
        patch: Default::default(),
        standby: Default::default(),
    };
    let mut current = String::new();
    for line in text.lines() {
        if !line.starts_with(char::is_whitespace) {
            current = line.to_string();
            continue;
        }
        let other = line.trim().to_string();
        // (module-level name, whether a module's primary, whether a standby).
        let level = |real: &str| match (primary.get(real), standby_name(real)) {
            (Some(n), _) => (n.clone(), true, false),
            (None, Some(n)) => (n, false, true),
            (None, None) => (real.to_string(), false, false),
        };
        let ((a, pa, sa), (b, pb, sb)) = (level(&current), level(&other));
        let pair = if a < b { (a, b) } else { (b, a) };
        if sa || sb {
            graph.standby.insert(pair);
        } else if pa || pb {
            graph.patch.insert(pair);
        }
    }
    graph
}

/// Waits until every module of `sup` has a ready standby.
fn wait_for_standbys(sup: &Supervisor, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let s = status(sup);
        if s.modules.iter().all(|m| m.standby_worker.is_some()) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "standbys not ready within {within:?}: {:?}",
            s.modules
                .iter()
                .map(|m| (&m.id, m.ready_standby().pid))
                .collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until `sup`'s module-level graph is `want`, and its standbys' links mirror
/// nothing else; panics with both graphs after `within`.
fn wait_for_graph(server: &JackServer, sup: &Supervisor, want: &ModuleGraph, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let got = module_graph(server, sup);
        let mirrors_only = got.standby.iter().all(|c| got.patch.contains(c));
        if got.patch == want.patch && mirrors_only {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the module-level graph is not the patch within {within:?}\n got: {:?}\n\
             standby links: {:?}\nwant: {:?}",
            got.patch,
            got.standby,
            want.patch
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_saved_set_holds_exactly_the_patch_and_loads_into_the_same_graph_before_and_after_failovers() {
    let server = JackServer::start().unwrap();
    let dir = TempDir::new("patch-only");
    // Both supervisors share one sets dir: the second loads what the first saved.
    let sets = dir.0.join("sets");
    let sets_arg = ["--sets-dir", sets.to_str().unwrap()];
    let saved = sets.join("saved.toml").to_str().unwrap().to_string();
    let demo = setfile::load(&repo().join("scripts/sets/demo.toml")).unwrap();
    let mut want: Vec<Connection> = demo.connections.clone();
    // One link patched by hand, as a user would in a patchbay: between the real
    // ports (what a patchbay connects; aliases are a jackd2 bonus PipeWire lacks).
    let by_hand = Connection {
        from: "lfo1:out".into(),
        to: "amp1:cv".into(),
    };
    want.push(by_hand.clone());
    want.sort();

    let first_graph = {
        let mut sup = Supervisor::start_with(&server, 8, &sets_arg).unwrap();
        load(
            &sup,
            repo().join("scripts/sets/demo.toml").to_str().unwrap(),
        )
        .unwrap();
        // The standbys carry mirrored links: what used to end up in saved files.
        wait_for_standbys(&sup, Duration::from_secs(20));
        let done = server
            .command("jack_connect")
            .args([real(&sup, "lfo1", "out"), real(&sup, "amp1", "cv")])
            .status()
            .unwrap();
        assert!(done.success());
        let expected = ModuleGraph {
            patch: want
                .iter()
                .map(|c| {
                    let (a, b) = (c.from.clone(), c.to.clone());
                    if a < b {
                        (a, b)
                    } else {
                        (b, a)
                    }
                })
                .collect(),
            standby: Default::default(),
        };
        wait_for_graph(&server, &sup, &expected, Duration::from_secs(10));
        // The hand-made link is mirrored onto both standbys before the save.
        let deadline = Instant::now() + Duration::from_secs(10);
        while !module_graph(&server, &sup)
            .standby
            .contains(&("amp1:cv".to_string(), "lfo1:out".to_string()))
        {
            assert!(
                Instant::now() < deadline,
                "the hand-made link was not mirrored"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        sup.client()
            .call(message("/set/save", vec![text("saved.toml")]))
            .unwrap();
        let graph = module_graph(&server, &sup);
        sup.stop().unwrap();
        graph
    };

    let text_ = std::fs::read_to_string(&saved).unwrap();
    let set = setfile::parse(&saved, &text_).unwrap();
    let mut got = set.connections.clone();
    got.sort();
    assert_eq!(
        got, want,
        "the saved connections are not the patch:\n{text_}"
    );
    assert_eq!(set.connections.len(), 10, "each connection once:\n{text_}");

    // A fresh modsynthd: its workers have other names.
    let mut sup = Supervisor::start(&server, 6).unwrap();
    load(&sup, &saved).unwrap();
    wait_for_standbys(&sup, Duration::from_secs(20));
    wait_for_graph(&server, &sup, &first_graph, Duration::from_secs(10));

    // Fail every module over to its standby, one after the other: each time the
    // graph must come back to the same patch, with the standbys mirroring only it.
    for m in status(&sup).modules {
        sigkill(m.pid);
        sup.wait_for_module(&m.id, Duration::from_secs(10), |now| {
            now.pid != m.pid && now.standby_worker.is_some() && now.role == ModuleRole::Primary
        });
    }
    wait_for_graph(&server, &sup, &first_graph, Duration::from_secs(10));
    sup.stop().unwrap();
}

#[test]
fn modsynth_record_follows_a_module_by_name_across_a_failover_and_never_leaves_a_broken_file() {
    use modsynth_tests::analysis::longest_silent_run;
    let server = JackServer::start().unwrap();
    let sup = Supervisor::start(&server, 3).unwrap();
    sup.new_module("vco", "tone", &[("freq", 440.0)]).unwrap();
    let before = sup.wait_for_module("tone", Duration::from_secs(10), |m| {
        m.standby_worker.is_some()
    });
    let dir = TempDir::new("record");
    let wav = dir.0.join("tone.wav");
    let osc = sup.osc.to_string();
    let modsynth = bin_path("modsynth").unwrap();
    // A port that does not exist: refused before anything is written.
    let out = server
        .command(&modsynth)
        .args(["--osc", &osc, "record", wav.to_str().unwrap(), "tone:nope"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert_eq!(
        std::fs::read_dir(&dir.0).unwrap().count(),
        0,
        "a file was left"
    );

    // By module name, which the recorder asks modsynthd to resolve (PipeWire's JACK
    // does not see the aliases).
    let mut recorder = server
        .command(&modsynth)
        .args(["--osc", &osc, "record", "--duration", "3"])
        .args([wav.to_str().unwrap(), "tone:out"])
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let standby_out =
        before.ports["out"].replace(&before.jack_client, &before.ready_standby().client);
    // The recorder's connection to the module is mirrored onto the standby, and the
    // recorder leaves that mirror alone: it is what carries the recording on.
    let mirrored = wait_connected(
        &server,
        &standby_out,
        "modsynth-record:in_1",
        Duration::from_secs(10),
    );
    assert!(
        mirrored,
        "the recorder's connection was not mirrored onto the standby"
    );
    sigkill(before.pid);
    assert!(recorder.wait().unwrap().success());
    let mut reader = hound::WavReader::open(&wav).unwrap();
    let samples: Vec<f32> = reader.samples::<f32>().map(Result::unwrap).collect();
    let first = samples.iter().position(|s| s.abs() > 1e-3).expect("silent");
    let gap = longest_silent_run(&samples[first..], 1e-6);
    eprintln!("measured: longest silence {gap} samples across the failover");
    assert!(gap <= 2 * server.period() as usize, "{gap} silent samples");
    let files: Vec<_> = std::fs::read_dir(&dir.0)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(files, vec![std::ffi::OsString::from("tone.wav")]);
}

#[test]
fn modsynth_record_keeps_what_it_recorded_when_the_jack_server_stops() {
    use std::io::Read;
    let server = JackServer::start().unwrap();
    let player = modsynth_tests::Player::start(&server, 1).unwrap();
    let dir = TempDir::new("record-stop");
    let wav = dir.0.join("take.wav");
    let modsynth = bin_path("modsynth").unwrap();
    // No modsynthd (nothing answers on port 9): port names are used as they are.
    let mut recorder = server
        .command(&modsynth)
        .args(["--osc", "127.0.0.1:9", "record", wav.to_str().unwrap()])
        .arg(player.port(0))
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let connected = wait_connected(
        &server,
        &player.port(0),
        "modsynth-record:in_1",
        Duration::from_secs(20),
    );
    assert!(connected, "the recorder never connected to the player");
    std::thread::sleep(Duration::from_millis(500));
    drop(player);
    drop(server);
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = recorder.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = recorder.kill();
            let _ = recorder.wait();
            panic!("modsynth record went on for 20 s after the server stopped");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    recorder
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(status.success(), "{status}: {err}");
    assert!(err.contains("JACK server stopped"), "{err}");
    let kept = hound::WavReader::open(&wav).unwrap().duration();
    assert!(kept > 0, "the file holds nothing: {err}");
    let files: Vec<_> = std::fs::read_dir(&dir.0)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(files, vec![std::ffi::OsString::from("take.wav")]);
}

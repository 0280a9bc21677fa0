//! The LV2 state extension in sets: `set save` stores a plugin's own state and
//! `set load` restores it, in the primary, its lockstep standby and the workers
//! that play the module after a crash. Measured on the test plugin `crashy`
//! (tests/lv2/crashy.lv2), whose level lives in its state only: `set_gain` sets
//! it when that control changes, so after a load only the state brings it back.

use modsynth_control::osc::{message, text};
use modsynth_control::setfile;
use modsynth_control::status::ModuleRole;
use modsynth_tests::analysis::rms;
use modsynth_tests::capture::Capture;
use modsynth_tests::jack_server::JackServer;
use modsynth_tests::supervisor::{unique_name, Supervisor};
use modsynth_tests::test_plugins::crashy;
use rosc::OscType;
use std::time::Duration;

const PATIENCE: Duration = Duration::from_secs(15);
/// crashy's sine at its default level (0.5 peak) and at the hidden level 0.25.
const RMS_DEFAULT: f64 = 0.5 * std::f64::consts::FRAC_1_SQRT_2;
const RMS_QUIET: f64 = 0.25 * RMS_DEFAULT;

/// The RMS of what `osc` plays, from a recording the server did not disturb.
fn level(sup: &Supervisor, capture: &Capture) -> f64 {
    sup.wait_until_settled(PATIENCE);
    let (rec, ()) = capture
        .retake_while_disturbed(|| Ok((capture.record(12_000)?, ())))
        .unwrap();
    rms(&rec.channels[0])
}

fn assert_level(what: &str, got: f64, want: f64) {
    eprintln!("measured: {what}: RMS {got:.4} (expected {want:.4})");
    assert!(
        (got / want - 1.0).abs() < 0.1,
        "{what}: RMS {got:.4}, expected {want:.4}"
    );
}

fn load(sup: &Supervisor, file: &str) -> Result<(), String> {
    sup.client()
        .with_timeout(Duration::from_secs(30))
        .call(message("/set/load", vec![text(file)]))
        .map(|_| ())
}

/// Waits until `osc`'s plugin has run: its `peak` meter (a control output) is up.
fn wait_until_playing(sup: &Supervisor) {
    let deadline = std::time::Instant::now() + PATIENCE;
    while !matches!(sup.param_value("osc", "peak"), OscType::Float(p) if p > 0.1) {
        assert!(std::time::Instant::now() < deadline, "osc never played");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Crashes `osc`'s primary (crashy segfaults in the process its `crash` names)
/// and waits until its standby plays it.
fn crash_primary(sup: &Supervisor) {
    let before = sup.wait_for_module("osc", PATIENCE, |m| m.standby_worker.is_some());
    // Not followed by a /sync: the worker that would answer it dies.
    sup.client()
        .send(message(
            "/module/set",
            vec![
                text("osc"),
                text("crash"),
                OscType::Float(before.pid as f32),
            ],
        ))
        .unwrap();
    sup.wait_for_module("osc", PATIENCE, |m| {
        m.pid != before.pid && m.role == ModuleRole::Primary
    });
}

#[test]
fn set_save_stores_an_lv2_plugins_state_and_set_load_restores_it_in_its_primary_its_standby_and_after_crashes(
) {
    crashy();
    // `lv2:` types resolve in this process too (the set file is read here).
    modsynth_lv2::install();
    let server = JackServer::start().unwrap();
    let sets = std::env::temp_dir().join(format!("modsynth-lv2-state-{}", unique_name()));
    let sets_arg = ["--sets-dir", sets.to_str().unwrap()];
    {
        let mut sup = Supervisor::start_with(&server, 3, &sets_arg).unwrap();
        sup.new_module("lv2:crashy", "osc", &[]).unwrap();
        // `set_gain` acts when it changes between two runs of the plugin: wait
        // until the plugin has run (its `peak` meter shows the sine).
        wait_until_playing(&sup);
        sup.set("osc", "set_gain", 0.25).unwrap();
        sup.client()
            .call(message("/set/save", vec![text("state.toml")]))
            .unwrap();
        sup.stop().unwrap();
    }
    let path = sets.join("state.toml");
    let saved = std::fs::read_to_string(&path).unwrap();
    eprintln!("{saved}");
    assert!(saved.contains("state = '''\n"), "{saved}");
    assert!(
        saved.contains("<urn:modsynth:test:crashy#gain> \"0.25\""),
        "{saved}"
    );
    let set = setfile::load(&path).unwrap();
    assert!(set.modules[0].plugin_state.is_some());

    let sup = Supervisor::start_with(&server, 4, &sets_arg).unwrap();
    let capture = Capture::start(&server, 1).unwrap();
    load(&sup, "state.toml").unwrap();
    sup.connect("osc:out", &capture.port(0)).unwrap();
    assert_level("loaded with its state", level(&sup, &capture), RMS_QUIET);
    // The standby restored the state too: it plays on at the same level; and the
    // standby made after that failover had it as well.
    crash_primary(&sup);
    assert_level(
        "after a crash of the primary",
        level(&sup, &capture),
        RMS_QUIET,
    );
    crash_primary(&sup);
    assert_level("after a second crash", level(&sup, &capture), RMS_QUIET);

    // Without its state, the same set plays the plugin's default level: the level
    // came from the state, not from the parameters.
    let without: String = strip_state(&saved);
    std::fs::write(sets.join("without.toml"), &without).unwrap();
    sup.client()
        .call(message("/module/free", vec![text("osc")]))
        .unwrap();
    load(&sup, "without.toml").unwrap();
    sup.connect("osc:out", &capture.port(0)).unwrap();
    assert_level(
        "loaded without its state",
        level(&sup, &capture),
        RMS_DEFAULT,
    );

    // A corrupt state is refused with its file and line, and changes nothing.
    let corrupt = "[[module]]\nid = \"other\"\ntype = \"lv2\"\nuri = \"urn:modsynth:test:crashy\"\nstate = '''\n<urn:x> a broken {\n'''\n";
    std::fs::write(sets.join("corrupt.toml"), corrupt).unwrap();
    let refused = load(&sup, "corrupt.toml").unwrap_err();
    eprintln!("measured: corrupt state refused: {refused}");
    assert!(refused.contains("corrupt.toml:5:"), "{refused}");
    assert!(refused.contains("not an LV2 state"), "{refused}");
    assert!(sup.module_status("other").is_none());
    assert_level("after the refused load", level(&sup, &capture), RMS_DEFAULT);
    let _ = std::fs::remove_dir_all(&sets);
}

/// `text` without its `state = '''...'''` entries.
fn strip_state(text: &str) -> String {
    let mut out = String::new();
    let mut inside = false;
    for line in text.lines() {
        if line.starts_with("state = '''") {
            inside = true;
        } else if inside && line.ends_with("'''") {
            inside = false;
        } else if !inside {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

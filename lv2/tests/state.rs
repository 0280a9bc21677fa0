//! The LV2 state extension through the host, without JACK: the test plugin
//! `crashy` (tests/lv2/crashy.lv2, built here with `cc`) keeps its level in its
//! state only; a state saved from one instance and restored into another brings
//! the level back, and what is not a state of that plugin is refused.

use modsynth_lv2::host::Host;
use std::path::PathBuf;
use std::process::Command;

const CRASHY: &str = "urn:modsynth:test:crashy";
const BLOCK: usize = 256;

/// Builds crashy into a directory of this process and puts it on `LV2_PATH`
/// before lilv's world is loaded (the first thing every test here does).
fn crashy() {
    static BUILT: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    BUILT.get_or_init(|| {
        let source = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/lv2/crashy.lv2");
        let dir = std::env::temp_dir().join(format!("modsynth-lv2-state-{}", std::process::id()));
        let bundle = dir.join("crashy.lv2");
        std::fs::create_dir_all(&bundle).unwrap();
        for file in ["manifest.ttl", "crashy.ttl"] {
            std::fs::copy(source.join(file), bundle.join(file)).unwrap();
        }
        let built = Command::new("cc")
            .args(["-shared", "-fPIC", "-O2", "-Wall", "-o"])
            .arg(bundle.join("crashy.so"))
            .arg(source.join("crashy.c"))
            .arg("-lm")
            .status()
            .expect("cc runs (scripts/setup installs gcc)");
        assert!(built.success(), "crashy.c did not compile");
        // Before any thread of this process reads the environment: every test
        // comes here first, and the OnceLock makes the others wait.
        std::env::set_var("LV2_PATH", format!("{}:/usr/lib/lv2", dir.display()));
    });
}

/// Runs `host` for one block with crashy's controls (freq, crash, nan,
/// set_gain) and returns the largest |sample|.
fn peak(host: &mut Host, set_gain: f32) -> f32 {
    let mut out = vec![0.0f32; BLOCK];
    let params = [440.0, 0.0, 0.0, set_gain];
    let replaced = host.run(
        &params,
        &[],
        &mut [&mut out[..]],
        std::iter::empty(),
        0..BLOCK,
    );
    assert_eq!(replaced, 0);
    out.iter().fold(0.0f32, |m, s| m.max(s.abs()))
}

#[test]
fn a_plugin_state_saved_from_one_instance_brings_its_hidden_level_back_in_another() {
    crashy();
    let mut first = Host::new(CRASHY, 48_000.0, BLOCK).unwrap();
    assert!(first.has_state());
    let full = peak(&mut first, 1.0);
    assert!((full - 0.5).abs() < 0.01, "level at instantiation: {full}");
    let quiet = peak(&mut first, 0.25); // the control changed: the level follows
    assert!(
        (quiet - 0.125).abs() < 0.01,
        "level after set_gain 0.25: {quiet}"
    );
    // SAFETY: `first` outlives the saver, and nothing restores it meanwhile.
    let text = unsafe { first.state_saver() }.unwrap().save().unwrap();
    eprintln!("measured: state of {} bytes:\n{text}", text.len());
    assert!(text.contains("urn:modsynth:test:crashy#gain"), "{text}");

    // A new instance at the same control value: only the state sets its level.
    let mut fresh = Host::new(CRASHY, 48_000.0, BLOCK).unwrap();
    let default = peak(&mut fresh, 0.25);
    assert!((default - 0.5).abs() < 0.01, "without the state: {default}");
    let mut restored = Host::new(CRASHY, 48_000.0, BLOCK).unwrap();
    restored.restore_state(&text).unwrap();
    let level = peak(&mut restored, 0.25);
    eprintln!("measured: peak {full:.4} at first, {quiet:.4} after set_gain, {default:.4} in a new instance, {level:.4} restored");
    assert!(
        (level - quiet).abs() < 1e-4,
        "restored: {level}, saved at {quiet}"
    );
}

#[test]
fn what_is_not_a_state_of_the_plugin_is_refused_and_changes_nothing() {
    crashy();
    let mut host = Host::new(CRASHY, 48_000.0, BLOCK).unwrap();
    // SAFETY: `host` outlives the saver.
    let good = unsafe { host.state_saver() }.unwrap().save().unwrap();
    let other = good.replace(CRASHY, "http://plugin.org.uk/swh-plugins/lowpass_iir");
    let huge = format!(
        "{good}#{}\n",
        "x".repeat(modsynth_lv2::state::MAX_STATE_BYTES)
    );
    for (bad, want) in [
        ("not turtle at all {{{", "not an LV2 state"),
        ("", "not an LV2 state"),
        (
            other.as_str(),
            "is for http://plugin.org.uk/swh-plugins/lowpass_iir",
        ),
        (huge.as_str(), "at most"),
        ("a\0b", "NUL"),
    ] {
        let e = modsynth_lv2::state::check(CRASHY, bad).unwrap_err();
        assert!(e.contains(want), "{e}");
        let e = host.restore_state(bad).unwrap_err();
        assert!(e.contains(want), "{e}");
    }
    // Nothing changed: still the default level, and the good state still loads.
    assert!((peak(&mut host, 1.0) - 0.5).abs() < 0.01);
    modsynth_lv2::state::check(CRASHY, &good).unwrap();
}

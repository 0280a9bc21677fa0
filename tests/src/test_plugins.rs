//! LV2 plugins built by the tests: `crashy` (tests/lv2/crashy.lv2), a sine
//! oscillator that segfaults, writes NaN on request and keeps its level in its
//! LV2 state.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

/// Builds the `crashy` bundle with `cc` into a directory of this test process and
/// puts it on `LV2_PATH` (before any supervisor starts: workers inherit it), once
/// per process. Its URI is `urn:modsynth:test:crashy`, its type `lv2:crashy`.
pub fn crashy() {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| {
        let source = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("lv2/crashy.lv2");
        let dir = std::env::temp_dir().join(format!("modsynth-lv2-{}", std::process::id()));
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
        let path = format!("{}:/usr/lib/lv2", dir.display());
        // Set once, before this process starts any thread that reads the
        // environment (every test waits here first).
        std::env::set_var("LV2_PATH", path);
        dir
    });
}

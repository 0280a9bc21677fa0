//! Finding the project's binaries, and waiting for JACK ports to appear.

use crate::jack_server::JackServer;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

static WATCHER_COUNTER: AtomicU64 = AtomicU64::new(0);

/// The cargo target profile directory this test or bench binary was built into
/// (`target/debug` or `target/release`): the directory of the current executable,
/// walked up out of `deps/` (integration tests and unit tests live there).
pub fn target_dir() -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    let mut dir = exe
        .parent()
        .map(Path::to_path_buf)
        .ok_or("current_exe has no parent")?;
    while dir
        .file_name()
        .is_some_and(|n| n == "deps" || n == "examples")
    {
        dir.pop();
    }
    Ok(dir)
}

/// The path of the workspace binary `name` (e.g. `"modsynth-worker"`) next to this
/// executable, in the same profile directory. Errors, telling to run
/// `cargo build --workspace`, if it has not been built.
///
/// `cargo test` builds the binaries of the package under test only, so tests that
/// spawn other crates' binaries need a workspace build first (`scripts/test` does).
pub fn bin_path(name: &str) -> Result<PathBuf, String> {
    let dir = target_dir()?;
    let path = dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    if path.is_file() {
        Ok(path)
    } else {
        Err(format!(
            "{} not found: run `cargo build --workspace`{} first",
            path.display(),
            if dir.ends_with("release") {
                " --release"
            } else {
                ""
            }
        ))
    }
}

/// Polls (every 5 ms) until a port named `port_name` (full JACK name,
/// `client:port`) exists on `server`, or `deadline` passes.
pub fn wait_for_port(
    server: &JackServer,
    port_name: &str,
    deadline: Instant,
) -> Result<(), String> {
    let name = format!(
        "port-watch-{}",
        WATCHER_COUNTER.fetch_add(1, Ordering::Relaxed)
    );
    let client = server.open_client(&name)?;
    loop {
        if client.port_by_name(port_name).is_some() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "JACK port '{port_name}' did not appear on server '{}'",
                server.name()
            ));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// SIGKILLs process `pid`, as a crash would: no handler runs, nothing is closed
/// cleanly. Panics when there is no such process (a test that kills a process
/// that is already gone has lost track of what it tests).
///
/// ```no_run
/// let child = std::process::Command::new("sleep").arg("60").spawn().unwrap();
/// modsynth_tests::workers::sigkill(child.id());
/// ```
pub fn sigkill(pid: u32) {
    let pid = i32::try_from(pid).expect("a pid fits an i32");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap_or_else(|e| panic!("SIGKILL to {pid}: {e}"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_dir_walks_out_of_deps() {
        let dir = target_dir().unwrap();
        assert_ne!(dir.file_name().unwrap(), "deps");
        assert!(dir.join("deps").is_dir(), "{}", dir.display());
    }

    #[test]
    fn missing_binary_error_says_how_to_build_it() {
        let err = bin_path("no-such-modsynth-binary").unwrap_err();
        assert!(err.contains("cargo build --workspace"), "{err}");
    }
}

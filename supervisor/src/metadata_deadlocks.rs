//! Breaks the deadlocks of jackd2's metadata database, which otherwise stop the
//! JACK server for good (issue 18).
//!
//! jackd2 1.9.21 keeps JACK metadata (pretty-names) in a Berkeley DB environment,
//! `/dev/shm/jack_db-<uid>`, shared by the server and every client of the user, with
//! locking on and no deadlock detection. The server's request thread walks the whole
//! database with a cursor at every port unregistration and client close
//! (`JackEngine::PortUnRegister` / `ClientCloseAux` -> `RemoveProperties`), while
//! clients write their names; the two can take the hash's locks in opposite orders
//! and then wait for each other forever. Seen with gdb while 32-module sets loaded on
//! a 72-worker pool: the server thread in `PortUnRegister` -> `__ham_get_meta`, a
//! starting spare in `jack_remove_property` -> `__ham_get_meta`; from then on no
//! client could open, close or connect, and a client that died afterwards (the
//! spawner's hello timeout killed the starting ones) stayed in the graph: `not
//! finished, state = Triggered` and `ProcessGraphAsyncMaster: Process error` each
//! cycle until jackd was killed. 7 of 9 such runs wedged; `db5.3_deadlock` run on a
//! wedged server found a cycle and aborted it ("Aborting locker"), too late there
//! (the starting workers had been killed holding locks). Kept running from the
//! start, it broke 1 to 21 cycles in 3 of 14 runs, and none of the 14 wedged.
//!
//! So `modsynthd` keeps Berkeley DB's own detector running on that environment:
//! `db5.3_deadlock -t 0.100000` (package `db5.3-util`; `db_deadlock` elsewhere) looks
//! for lock cycles every 100 ms and fails one request of each with
//! `DB_LOCK_DEADLOCK`. jackd's removal walk then ends early (the properties it had
//! not reached stay behind: a name of a port that is gone), or a worker's write fails
//! (it logs a warning; its module plays on without that pretty-name). Either beats a
//! server that never answers again. The detector must act within seconds: a client
//! that dies while it holds or waits for such a lock leaves it held for good.
//!
//! The detector is a child of `modsynthd`, started once the environment exists
//! (PipeWire's JACK has none, so none starts there), started again if it exits or the
//! environment is made anew (a restarted server), and sent SIGTERM when `modsynthd`
//! dies (`PR_SET_PDEATHSIG`). Like a worker it inherits no descriptor of `modsynthd`
//! (see [`crate::spawn`]): a copy of libjack's would keep a dead supervisor's JACK
//! client alive for the server.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// The detectors Berkeley DB installs, newest name first.
const DETECTORS: [&str; 2] = ["db5.3_deadlock", "db_deadlock"];

/// How often the detector looks for a cycle (`sec.usec`: the digits after the dot
/// are microseconds, so `0.1` would be every microsecond, a busy loop). A
/// deadlocked request waits this long; a check costs a few lock-table reads.
const INTERVAL: &str = "0.100000";

/// How long to wait before looking again for the environment or restarting an
/// exited detector.
const RETRY: Duration = Duration::from_secs(1);

/// jackd2's metadata environment for this user: `<jack tmpdir>/jack_db-<uid>`
/// (jackd2's tmpdir is `/dev/shm` on Linux).
pub fn environment() -> PathBuf {
    PathBuf::from(format!("/dev/shm/jack_db-{}", nix::unistd::getuid()))
}

/// The first of Berkeley DB's detectors (`db5.3_deadlock`, `db_deadlock`) found in `PATH`.
pub fn find_detector() -> Option<PathBuf> {
    first_in_path(&DETECTORS)
}

/// The first executable found in `PATH` by one of `names`, tried in order (all of
/// one directory before the next).
pub(crate) fn first_in_path(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| names.iter().map(move |name| dir.join(name)))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// Gives the next server's environment room for dead clients
/// ([`crate::metadata_room`]) and starts the thread that keeps a detector running on
/// [`environment`]. Without a detector installed, says once what to install and
/// starts nothing.
pub fn start() -> Result<(), String> {
    let env = environment();
    if let Err(e) = crate::metadata_room::make_room(&env) {
        tracing::warn!(
            "cannot give jackd2's metadata database room for dead clients ({}): {e}",
            env.join("DB_CONFIG").display()
        );
    }
    let Some(detector) = find_detector() else {
        tracing::warn!(
            "no Berkeley DB deadlock detector (install db5.3-util): jackd2 can deadlock in its \
             metadata database when many JACK clients start and stop at once, and then stops \
             for good (issue 18)"
        );
        return Ok(());
    };
    std::thread::Builder::new()
        .name("db-deadlocks".into())
        .spawn(move || keep_running(&detector, &environment()))
        .map(|_| ())
        .map_err(|e| format!("cannot start the metadata deadlock detector's thread: {e}"))
}

/// Runs `detector` on `env` for as long as the process lives. The child is started
/// from this thread, which never ends: `PR_SET_PDEATHSIG` fires when the thread that
/// forked a child ends, not only the process.
fn keep_running(detector: &Path, env: &Path) {
    let mut said_started = false;
    loop {
        if !env.is_dir() {
            std::thread::sleep(RETRY);
            continue;
        }
        let mut command = Command::new(detector);
        command
            .arg("-h")
            .arg(env)
            .args(["-t", INTERVAL])
            .stdin(Stdio::null())
            // Silent without `-v`; the aborts it makes show as the failed metadata
            // writes the workers log.
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let max_fd = crate::spawn::descriptor_limit();
        // SAFETY: the closure runs in the forked child before exec and only makes
        // raw syscalls (close_range or fcntl, prctl), which are async-signal-safe,
        // touches no lock and allocates nothing, as `pre_exec` requires.
        unsafe {
            command.pre_exec(move || {
                crate::spawn::inherit_nothing(max_fd);
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                Ok(())
            });
        }
        match command.spawn() {
            Ok(mut child) => {
                if !said_started {
                    tracing::info!(
                        "breaking metadata deadlocks of jackd2: {} on {} every 100 ms",
                        detector.display(),
                        env.display()
                    );
                    said_started = true;
                }
                // A server that stops deletes the environment and the next one makes
                // a new one, which a detector still attached to the old files would
                // never see: follow the region file's identity.
                let attached = region_identity(env);
                // On a thread of its own: `db_stat` waits for the region's lock,
                // which a dead client may hold, and this thread must go on
                // watching the detector.
                let watched = env.to_path_buf();
                let _ = std::thread::Builder::new()
                    .name("db-room".into())
                    .spawn(move || crate::metadata_room::report(&watched));
                loop {
                    std::thread::sleep(RETRY);
                    match child.try_wait() {
                        Ok(None) if region_identity(env) == attached => continue,
                        Ok(None) => {
                            let _ = child.kill();
                            let _ = child.wait();
                        }
                        Ok(Some(status)) => {
                            tracing::debug!("the metadata deadlock detector exited ({status})")
                        }
                        Err(e) => tracing::debug!("the metadata deadlock detector: {e}"),
                    }
                    break;
                }
            }
            Err(e) => {
                tracing::warn!("cannot start {}: {e}", detector.display());
                std::thread::sleep(RETRY);
            }
        }
    }
}

/// Which environment `env` holds now: the device and inode of its first region file.
fn region_identity(env: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    env.join("__db.001")
        .metadata()
        .ok()
        .map(|m| (m.dev(), m.ino()))
}

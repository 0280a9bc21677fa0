//! Shared memory end to end: the instance lock, the registry modsynthd keeps in
//! `registry.json`, its rebuild after a corrupt file, the clean-up at exit, and
//! `modsynth shm ls|gc`.

use modsynth_control::osc::{message, text};
use modsynth_shm::{default_base_dir, scan, InstanceLock, Registry, Role, Segment};
use modsynth_tests::jack_server::JackServer;
use modsynth_tests::supervisor::ReadyStandby;
use modsynth_tests::supervisor::{unique_name, Supervisor};
use modsynth_tests::workers::bin_path;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// How long something a test waits for may take on a busy 2-core machine.
const PATIENCE: Duration = Duration::from_secs(30);

fn server() -> JackServer {
    JackServer::start().expect("a private JACK server")
}

/// Polls `f` every 50 ms until it gives `Some`; panics after [`PATIENCE`] naming
/// `what` (and what `f` last saw, through `last`).
fn wait_until<T>(what: &str, mut f: impl FnMut(&mut String) -> Option<T>) -> T {
    let deadline = Instant::now() + PATIENCE;
    let mut last = String::new();
    loop {
        if let Some(v) = f(&mut last) {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not within {PATIENCE:?}; last seen: {last}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The state dir modsynthd uses for `name` without `--state-dir`.
fn state_dir_of(name: &str) -> PathBuf {
    default_base_dir().join(name)
}

/// `/dev/shm` entries of instance `name` (as segment names, `/<name>-...`).
fn segments_of(name: &str) -> Vec<String> {
    let prefix = format!("{name}-");
    let mut found: Vec<String> = std::fs::read_dir("/dev/shm")
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|f| f.starts_with(&prefix))
        .map(|f| format!("/{f}"))
        .collect();
    found.sort();
    found
}

/// Whether `pid` is a live process (a zombie is not).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        !matches!(
            stat.rsplit_once(')')
                .and_then(|(_, r)| r.trim_start().chars().next()),
            Some('Z' | 'X')
        )
    })
}

/// Runs `command` to its end (killing it after [`PATIENCE`]) and returns its output.
fn run(command: &mut Command) -> Output {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + PATIENCE;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

/// `modsynth args...`.
fn modsynth(args: &[&str]) -> Output {
    run(Command::new(bin_path("modsynth").unwrap()).args(args))
}

fn text_of(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Unlinks the segments of the given instances when the test ends, pass or fail.
struct SweepShm(Vec<String>);

impl Drop for SweepShm {
    fn drop(&mut self) {
        for name in &self.0 {
            for segment in segments_of(name) {
                let _ = Segment::unlink(&segment);
            }
        }
    }
}

/// A directory removed with everything in it when the test ends.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn a_corrupt_registry_at_start_is_reported_and_rebuilt() {
    let server = server();
    let name = unique_name();
    let _sweep = SweepShm(vec![name.clone()]);
    let tmp = TempDir(std::env::temp_dir().join(format!("modsynth-shm-test-{name}")));
    let dir = tmp.0.join(&name);
    std::fs::create_dir_all(&dir).unwrap();
    let garbage = b"{ \"allocations\": [ { \"id\": \x00\xff garbage";
    std::fs::write(dir.join("registry.json"), garbage).unwrap();
    // A segment of an earlier run that died.
    let stray = format!("/{name}-old-state");
    drop(Segment::create(&stray, 4096).unwrap());

    let sup = Supervisor::start_named(&server, &name, 2, &["--state-dir", dir.to_str().unwrap()])
        .unwrap();

    // Reported, naming the file the bad registry was kept as.
    let kept: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("registry.json.corrupt-")
        })
        .collect();
    assert_eq!(kept.len(), 1, "the corrupt registry is kept: {kept:?}");
    assert_eq!(std::fs::read(&kept[0]).unwrap(), garbage);
    let stderr = wait_until("a warning about the corrupt registry", |last| {
        *last = sup.stderr();
        (last.contains("corrupt") && last.contains(kept[0].to_str().unwrap())).then(|| last.clone())
    });
    assert!(stderr.contains("WARN"), "{stderr}");
    // Rebuilt: a registry that parses, and the earlier run's segment removed.
    Registry::load(&dir).expect("a registry that parses");
    assert!(Segment::open(&stray).is_err(), "{stray} is still there");
    assert!(
        sup.startup_output()
            .iter()
            .any(|l| l.contains("removed 1 segment(s) left by an earlier run")),
        "{:?}",
        sup.startup_output()
    );
    // And it serves: a module is created and lands in the registry.
    sup.new_module("vco", "v1", &[]).unwrap();
    wait_until("v1 in the rebuilt registry", |last| {
        let reg = Registry::load(&dir).ok()?;
        *last = format!("{:?}", reg.allocations());
        reg.allocations()
            .iter()
            .any(|a| a.id == "v1.state" && a.segment == format!("/{name}-v1-state"))
            .then_some(())
    });
}

#[test]
fn the_registry_lists_every_module_state_segment_and_worker() {
    let server = server();
    // Declared before the supervisor, so that it is dropped after it.
    let name = unique_name();
    let _sweep = SweepShm(vec![name.clone()]);
    let sup = Supervisor::start_named(&server, &name, 4, &[]).unwrap();
    let dir = state_dir_of(&name);
    sup.new_module("vco", "a", &[]).unwrap();
    sup.new_module("lfo", "b", &[]).unwrap();
    for id in ["a", "b"] {
        sup.wait_for_module(id, PATIENCE, |m| m.pid != 0 && m.standby_worker.is_some());
    }

    wait_until(
        "both modules, their workers and sizes in the registry",
        |last| {
            let status = sup.status().ok()?;
            let reg = Registry::load(&dir).ok()?;
            *last = format!("{:?} {:?}", reg.allocations(), reg.workers());
            for id in ["a", "b"] {
                let m = status.modules.iter().find(|m| m.id == id)?;
                let a = reg
                    .allocations()
                    .iter()
                    .find(|a| a.id == format!("{id}.state"))?;
                let segment = format!("/{name}-{id}-state");
                let size = std::fs::metadata(format!("/dev/shm{segment}")).ok()?.len();
                let right = a.segment == segment
                    && a.owner == format!("worker:{}", m.pid)
                    && a.kind == "state_snapshot"
                    && a.size == size;
                let primary = reg.workers().iter().any(|w| {
                    w.pid == m.pid && w.role == Role::Primary && w.module.as_deref() == Some(id)
                });
                let standby = reg.workers().iter().any(|w| {
                    w.pid == m.ready_standby().pid
                        && w.role == Role::Standby
                        && w.module.as_deref() == Some(id)
                });
                if !(right && primary && standby) {
                    return None;
                }
            }
            Some(())
        },
    );
    let reg = Registry::load(&dir).unwrap();
    assert_eq!(reg.allocations().len(), 2, "{:?}", reg.allocations());
    let report = scan(&name, &reg).unwrap();
    assert_eq!(report.leaked_count(), 0, "{report:?}");

    sup.client()
        .call(message("/module/free", vec![text("a")]))
        .unwrap();
    let gone = format!("/{name}-a-state");
    wait_until("a gone from the registry and /dev/shm", |last| {
        let reg = Registry::load(&dir).ok()?;
        *last = format!("{:?} {:?}", reg.allocations(), segments_of(&name));
        let ids: Vec<&str> = reg.allocations().iter().map(|a| a.id.as_str()).collect();
        (ids == ["b.state"] && !segments_of(&name).contains(&gone)).then_some(())
    });
    let reg = Registry::load(&dir).unwrap();
    assert_eq!(scan(&name, &reg).unwrap().leaked_count(), 0);
}

#[test]
fn a_clean_shutdown_leaves_no_segments_no_processes_and_no_state_dir() {
    let server = server();
    let name = unique_name();
    let _sweep = SweepShm(vec![name.clone()]);
    let mut sup = Supervisor::start_named(&server, &name, 3, &[]).unwrap();
    let dir = state_dir_of(&name);
    sup.new_module("vco", "v", &[]).unwrap();
    sup.new_module_without_standby("noise", "n", &[]).unwrap();
    sup.wait_for_module("v", PATIENCE, |m| m.standby_worker.is_some());
    // Every worker, spares included, as the registry lists them once it has both.
    let pids: Vec<u32> = wait_until("both modules in the registry", |last| {
        let reg = Registry::load(&dir).ok()?;
        *last = format!("{:?}", reg.allocations());
        (reg.allocations().len() == 2).then(|| reg.workers().iter().map(|w| w.pid).collect())
    });
    assert!(pids.len() >= 3, "{pids:?}");
    assert_eq!(segments_of(&name).len(), 2, "{:?}", segments_of(&name));
    wait_until("metrics.json", |_| {
        dir.join("metrics.json").exists().then_some(())
    });

    let status = sup.stop().unwrap();
    assert!(status.success(), "modsynthd exit: {status}");
    assert_eq!(segments_of(&name), Vec::<String>::new(), "segments left");
    wait_until("every worker gone", |last| {
        let left: Vec<u32> = pids.iter().copied().filter(|&p| alive(p)).collect();
        *last = format!("{left:?}");
        left.is_empty().then_some(())
    });
    assert!(!dir.exists(), "state dir {} left", dir.display());
}

#[test]
fn modsynth_shm_ls_and_gc_report_and_remove_leaks() {
    let server = server();
    let (live, dead) = (unique_name(), unique_name());
    let _sweep = SweepShm(vec![live.clone(), dead.clone()]);
    let dead_dir = TempDir(state_dir_of(&dead));
    let sup = Supervisor::start_named(&server, &live, 2, &[]).unwrap();
    sup.new_module_without_standby("vco", "v", &[]).unwrap();
    let pid = sup.wait_for_module("v", PATIENCE, |m| m.pid != 0).pid;
    let segment = format!("/{live}-v-state");

    // A live instance: its segment, registered to the worker that plays it.
    let listed = wait_until("`shm ls` listing v as registered", |last| {
        let out = modsynth(&["shm", "ls", "--name", &live]);
        *last = text_of(&out.stdout) + &text_of(&out.stderr);
        let stdout = text_of(&out.stdout);
        let line = stdout
            .lines()
            .find(|l| l.starts_with(&segment))?
            .to_string();
        (out.status.success() && line.ends_with("registered")).then_some((stdout, line))
    });
    assert!(listed.1.contains(&format!("worker:{pid}")), "{}", listed.0);
    assert!(listed.0.contains("0 leak(s)"), "{}", listed.0);
    let out = modsynth(&["shm", "ls", "--name", &live, "--json"]);
    assert!(out.status.success());
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["running"], true);
    assert_eq!(json["totals"]["leaks"], 0);
    assert_eq!(json["segments"][0]["segment"], segment.as_str());

    // A dead instance: a supervisor held its lock and is gone (as after a SIGKILL),
    // and left a segment.
    drop(InstanceLock::acquire(&dead_dir.0).unwrap());
    let leak = format!("/{dead}-vco1-state");
    drop(Segment::create(&leak, 4096).unwrap());
    let out = modsynth(&["shm", "ls", "--name", &dead]);
    let (stdout, stderr) = (text_of(&out.stdout), text_of(&out.stderr));
    assert!(!out.status.success(), "{stdout}");
    assert!(
        stderr.contains(&format!("no instance '{dead}'")),
        "{stderr}"
    );
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with(&leak) && l.ends_with("UNREGISTERED (leak)")),
        "{stdout}"
    );
    assert!(stdout.contains("modsynth shm gc"), "{stdout}");

    let out = modsynth(&["shm", "gc"]);
    let stdout = text_of(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text_of(&out.stderr));
    assert!(stdout.contains(&format!("removed {leak}")), "{stdout}");
    assert!(
        stdout.contains(&format!("'{live}': running (pid {})", sup.pid())),
        "{stdout}"
    );
    assert!(Segment::open(&leak).is_err(), "{leak} survived gc");
    assert!(
        Path::new(&format!("/dev/shm{segment}")).exists(),
        "gc removed a running instance's segment"
    );
    // The live instance serves on.
    sup.status().unwrap();
}

#[test]
fn a_second_modsynthd_with_the_same_name_is_refused() {
    let server = server();
    let name = unique_name();
    let _sweep = SweepShm(vec![name.clone()]);
    let sup = Supervisor::start_named(&server, &name, 2, &[]).unwrap();
    sup.new_module("lfo", "l", &[]).unwrap();
    let dir = state_dir_of(&sup.name);
    wait_until("l in the registry", |_| {
        Registry::load(&dir)
            .ok()?
            .allocations()
            .iter()
            .any(|a| a.id == "l.state")
            .then_some(())
    });

    let out = run(server.command(bin_path("modsynthd").unwrap()).args([
        "--name",
        &sup.name,
        "--pool",
        "1",
        "--osc-port",
        "0",
    ]));
    assert!(!out.status.success(), "the second modsynthd ran");
    let stderr = text_of(&out.stderr);
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(
        lines,
        [format!(
            "modsynthd: instance '{}' is already running (pid {}); pick another --name",
            sup.name,
            sup.pid()
        )],
        "one clear line"
    );
    // The first one is untouched: it serves, its registry and segment are there.
    sup.status().unwrap();
    let reg = Registry::load(&dir).unwrap();
    assert!(reg.allocations().iter().any(|a| a.id == "l.state"));
    assert!(segments_of(&sup.name).contains(&format!("/{}-l-state", sup.name)));
}

/// Segments are `/<instance>-<module>-<kind>` and module ids may hold a `-`: with
/// one in an instance name, `a` + `b-c` and `a-b` + `c` would name the same segment,
/// and one instance's scan or gc would take the other's. So no instance name has one.
#[test]
fn an_instance_name_with_a_dash_is_refused_so_two_instances_never_name_one_segment() {
    let name = format!("{}-b", unique_name());
    let sets = std::env::temp_dir().join(format!("modsynth-dash-sets-{name}"));
    let out = run(Command::new(bin_path("modsynthd").unwrap())
        .args(["--name", &name, "--osc-port", "0", "--sets-dir"])
        .arg(&sets)
        .env_remove("JACK_DEFAULT_SERVER"));
    let _ = std::fs::remove_dir_all(&sets);
    assert!(!out.status.success(), "modsynthd --name {name} started");
    let err = text_of(&out.stderr);
    assert!(err.contains("must not contain '-'"), "stderr: {err}");
    assert!(!state_dir_of(&name).exists(), "it made a state dir");
    let out = modsynth(&["shm", "ls", "--name", &name]);
    assert!(!out.status.success());
    assert!(text_of(&out.stderr).contains("must not contain '-'"));
}

//! A JACK server that stops answering (wedged, or here SIGSTOPped) must not make
//! `modsynthd` deaf: its connects wait on the patchbay thread with a deadline, and
//! everything else answers at once. And the wedge jackd2 fell into under modsynth's
//! load (a lock cycle in its metadata database, issue 18) is broken by a detector
//! `modsynthd` keeps running.

use modsynth_control::osc::{message, text};
use modsynth_tests::analysis::{cents, pitch_hz};
use modsynth_tests::capture::Capture;
use modsynth_tests::jack_server::JackServer;
use modsynth_tests::supervisor::Supervisor;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::time::{Duration, Instant};

const RATE: f64 = 48_000.0;

/// How fast `/status` must answer while the server is stopped: the core never
/// waits for JACK, so this is a loaded machine's scheduling, not a JACK timeout.
const ANSWER_AT_ONCE: Duration = Duration::from_millis(500);

/// The JACK server stopped with SIGSTOP until dropped (SIGCONT), so a failing
/// assertion does not leave a stopped server behind.
struct Stopped(Pid);

impl Stopped {
    fn server(server: &JackServer) -> Stopped {
        let pid = Pid::from_raw(server.pid() as i32);
        kill(pid, Signal::SIGSTOP).expect("SIGSTOP to our own jackd");
        Stopped(pid)
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        let _ = kill(self.0, Signal::SIGCONT);
    }
}

#[test]
fn a_stopped_jack_server_fails_only_the_connect_and_status_answers_at_once() {
    let server = JackServer::start().expect("a private JACK server");
    let sup = Supervisor::start(&server, 4).unwrap();
    sup.new_module("vco", "low", &[("freq", 440.0)]).unwrap();
    sup.new_module("vco", "high", &[("freq", 660.0)]).unwrap();
    let capture = Capture::start(&server, 2).unwrap();
    sup.connect("low:out", &capture.port(0)).unwrap();
    sup.wait_until_settled(Duration::from_secs(30));
    let f = pitch_hz(
        &capture.record_continuous(12_000).unwrap().channels[0],
        RATE,
    );
    assert!(cents(f, 440.0).abs() < 1.0, "before the stop: {f} Hz");

    let stopped = Stopped::server(&server);
    let started = Instant::now();
    sup.status().expect("/status while the server is stopped");
    let status_took = started.elapsed();

    let client = sup.client().with_timeout(Duration::from_secs(10));
    let started = Instant::now();
    let connect = client.call(message(
        "/patch/connect",
        vec![text("high:out"), text(&capture.port(1))],
    ));
    let connect_took = started.elapsed();

    // Asked while the connect above is still stuck inside libjack.
    let started = Instant::now();
    sup.status().expect("/status while a connect is stuck");
    let status_again_took = started.elapsed();
    // A /module/set (answered only when refused) is taken at once: the /status
    // behind it answers as fast.
    let started = Instant::now();
    client
        .send(message(
            "/module/set",
            vec![text("low"), text("freq"), rosc::OscType::Float(330.0)],
        ))
        .unwrap();
    sup.status().expect("/status after a /module/set");
    let set_took = started.elapsed();
    drop(stopped);
    eprintln!(
        "measured: /status {status_took:?}, /patch/connect failed after {connect_took:?}, \
         /status during the stuck connect {status_again_took:?}, /module/set + /status {set_took:?}"
    );
    let reason = connect.expect_err("a connect on a stopped server fails");
    assert!(
        reason.contains("the JACK server did not answer connecting")
            && reason.contains("within 2 s"),
        "{reason}"
    );
    assert!(status_took < ANSWER_AT_ONCE, "/status took {status_took:?}");
    assert!(
        status_again_took < ANSWER_AT_ONCE,
        "/status took {status_again_took:?}"
    );
    assert!(
        (Duration::from_millis(1900)..Duration::from_secs(4)).contains(&connect_took),
        "the connect failed after {connect_took:?}, not at its 2 s deadline"
    );
    assert!(
        set_took < ANSWER_AT_ONCE,
        "/module/set + /status took {set_took:?}"
    );

    // Running again: the set plays what was set while stopped (applied by the
    // worker's audio thread once the server runs it), and connects work.
    sup.wait_until_settled(Duration::from_secs(30));
    let f = pitch_hz(
        &capture.record_continuous(12_000).unwrap().channels[0],
        RATE,
    );
    assert!(cents(f, 330.0).abs() < 1.0, "after the stop: {f} Hz");
    sup.disconnect("low:out", &capture.port(0))
        .expect("a disconnect once the server answers");
    sup.connect("high:out", &capture.port(0))
        .expect("a connect once the server answers");
    let f = pitch_hz(
        &capture.record_continuous(12_000).unwrap().channels[0],
        RATE,
    );
    assert!(cents(f, 660.0).abs() < 1.0, "after the new connect: {f} Hz");
}

/// The process ids whose parent is `parent`, with their command lines (NUL-separated
/// arguments joined by spaces).
fn children_of(parent: u32) -> Vec<(u32, String)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // `pid (comm) state ppid ...`: comm may hold spaces, so split after its `)`.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if ppid == Some(parent) {
            let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
            let args = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            found.push((pid, args.trim().to_string()));
        }
    }
    found
}

/// jackd2 keeps pretty-names in a Berkeley DB without deadlock detection, and a lock
/// cycle there between the server and a worker stopped the server for good (issue
/// 18): `modsynthd` keeps Berkeley DB's detector running on that database.
#[test]
fn modsynthd_runs_a_deadlock_detector_on_jackd2s_metadata_database() {
    let server = JackServer::start().expect("a private JACK server");
    let sup = Supervisor::start(&server, 2).unwrap();
    let database = format!("/dev/shm/jack_db-{}", nix::unistd::getuid());
    let deadline = Instant::now() + Duration::from_secs(15);
    let detector = loop {
        let children = children_of(sup.pid());
        if let Some((pid, args)) = children.iter().find(|(_, args)| args.contains("deadlock")) {
            break (*pid, args.clone());
        }
        assert!(
            Instant::now() < deadline,
            "no deadlock detector among modsynthd's children after 15 s (is db5.3-util \
             installed? scripts/setup installs it): {children:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let (pid, args) = detector;
    assert!(
        // db5.3_deadlock overwrites the dot of its `-t sec.usec` with a NUL.
        args.contains(&format!("-h {database}")) && args.contains("-t 0 100000"),
        "the detector (pid {pid}) watches the wrong database or too rarely: {args}"
    );
    eprintln!("deadlock detector pid {pid}: {args}");
}

//! A standby host's seats, driven the way `modsynthd` drives them but without it:
//! this test speaks the worker protocol itself to workers it starts on a private
//! JACK server. An ordinary pool worker plays a vco, seat 1 of a
//! `modsynth-worker --pool --seats 2` stands by for it and takes it over when the
//! primary is killed; a new ordinary worker takes it back with a planned handover
//! (`TakeOverAt`) without a missing frame, the seat stands by again (`StandBy`) and
//! takes the module back once more when that worker is killed.

use ipc_channel::ipc::{IpcOneShotServer, IpcReceiver, IpcSender};
use modsynth_model::protocol::{FromWorker, Role, ToWorker};
use modsynth_shm::StateSegment;
use modsynth_tests::jack_server::JackServer;
use modsynth_tests::workers::bin_path;
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long something may take on a busy 2-core machine.
const PATIENCE: Duration = Duration::from_secs(20);

/// A worker this test started, and its channels. Killed (this child only) when
/// dropped.
struct Worker {
    child: Child,
    pid: u32,
    client: String,
    to: IpcSender<ToWorker>,
    from: IpcReceiver<FromWorker>,
    seats: u16,
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Worker {
    /// Starts `modsynth-worker --pool` (with `--seats`, a standby host) and takes
    /// its hello.
    fn start(server: &JackServer, client: &str, seats: Option<u16>) -> Worker {
        let (ipc, name) = IpcOneShotServer::<FromWorker>::new().expect("an ipc server");
        let mut command = server.command(bin_path("modsynth-worker").expect("a built worker"));
        command
            .args(["--pool", "--client", client, "--connect", &name])
            .args(["--spare-grace", "2"])
            .stdin(Stdio::null());
        if let Some(n) = seats {
            command.args(["--seats", &n.to_string()]);
        }
        let child = command.spawn().expect("the worker starts");
        // accept() blocks forever if the child dies first: on a thread, with a deadline.
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(ipc.accept().map_err(|e| format!("{e:?}")));
        });
        let (from, hello) = rx
            .recv_timeout(PATIENCE)
            .expect("a hello in time")
            .expect("an accepted connection");
        let FromWorker::Hello {
            pid,
            client,
            commands,
            seats,
        } = hello
        else {
            panic!("the first message is not a hello: {hello:?}");
        };
        Worker {
            child,
            pid,
            client,
            to: commands,
            from,
            seats,
        }
    }

    fn send(&self, message: ToWorker) {
        self.to.send(message).expect("the worker takes messages");
    }

    fn to_seat(&self, seat: u16, message: ToWorker) {
        self.send(ToWorker::ToSeat {
            seat,
            message: Box::new(message),
        });
    }

    /// The next message, within [`PATIENCE`].
    fn next(&self) -> FromWorker {
        match self.from.try_recv_timeout(PATIENCE) {
            Ok(m) => m,
            Err(e) => panic!("{}: nothing within {PATIENCE:?}: {e:?}", self.client),
        }
    }

    /// The next message, which must come from seat `seat`: what it says.
    fn answer_of_seat(&self, seat: u16) -> FromWorker {
        match self.next() {
            FromWorker::FromSeat { seat: s, message } if s == seat => *message,
            other => panic!("expected a message from seat {seat}, got {other:?}"),
        }
    }

    /// Kills it (SIGKILL, this child only) and reaps it.
    fn kill(&mut self) {
        self.child.kill().expect("kill");
        self.child.wait().expect("reap");
    }
}

fn assign(id: &str, role: Role, state: &str) -> ToWorker {
    ToWorker::Assign {
        token: 1,
        id: id.into(),
        module_type: "vco".into(),
        params: vec![],
        role,
        state: state.into(),
        plugin_state: None,
    }
}

fn ports(reply: FromWorker) -> Vec<String> {
    match reply {
        FromWorker::Assigned { result: Ok(p), .. } => p,
        other => panic!("not assigned: {other:?}"),
    }
}

/// Waits until the module's owner word names `pid` and its published frame has
/// moved on since: `pid` plays it.
fn wait_until_played_by(segment: &StateSegment, pid: u32) {
    let deadline = Instant::now() + PATIENCE;
    while segment.owner() != u64::from(pid) {
        assert!(Instant::now() < deadline, "{pid} never owned the module");
        std::thread::sleep(Duration::from_millis(10));
    }
    let (frame, _) = segment.published();
    while segment.published().0 == frame {
        assert!(
            Instant::now() < deadline,
            "{pid} owns the module but plays nothing"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Unlinks the test's segment however the test ends.
struct Unlink(String);

impl Drop for Unlink {
    fn drop(&mut self) {
        let _ = modsynth_shm::Segment::unlink(&self.0);
    }
}

#[test]
fn a_seat_takes_over_a_killed_primary_hands_it_back_without_a_gap_and_stands_by_again() {
    let server = JackServer::start().expect("a private JACK server");
    let tag = std::process::id();
    let state = format!("/seatstest{tag}-sv1-state");
    let _unlink = Unlink(state.clone());

    let host = Worker::start(&server, &format!("seats{tag}-host"), Some(2));
    assert_eq!(host.seats, 2, "the hello says how many seats");
    let mut primary = Worker::start(&server, &format!("seats{tag}-w1"), None);
    assert_eq!(primary.seats, 0, "an ordinary worker has none");

    primary.send(assign("sv1", Role::Primary, &state));
    ports(primary.next());
    let segment = StateSegment::open(&state).expect("the primary made the state");
    wait_until_played_by(&segment, primary.pid);

    // A seat refuses anything but a standby; a seat that does not exist says
    // nothing (the report right after it is the next answer).
    host.to_seat(0, assign("sv1", Role::Primary, &state));
    match host.answer_of_seat(0) {
        FromWorker::Assigned { result: Err(e), .. } => assert!(e.contains("only stands by"), "{e}"),
        other => panic!("a primary on a seat: {other:?}"),
    }
    host.to_seat(7, ToWorker::Report { token: 70 });
    host.to_seat(0, ToWorker::Report { token: 71 });
    assert!(matches!(
        host.answer_of_seat(0),
        FromWorker::Report { token: 71, .. }
    ));

    // Seat 1 stands by: its ports carry its prefix, in catalog order.
    let standby = Role::Standby {
        primary_pid: primary.pid,
    };
    host.to_seat(1, assign("sv1", standby, &state));
    let seat_ports = ports(host.answer_of_seat(1));
    assert!(!seat_ports.is_empty());
    for port in &seat_ports {
        assert!(
            port.starts_with(&format!("{}:s1-", host.client)),
            "{port} is not one of seat 1's"
        );
    }

    // The primary dies: seat 1 takes over and says so, and plays.
    primary.kill();
    assert!(matches!(host.answer_of_seat(1), FromWorker::Promoted));
    wait_until_played_by(&segment, host.pid);
    host.to_seat(1, ToWorker::TakeNames { id: "sv1".into() });
    assert!(matches!(
        host.answer_of_seat(1),
        FromWorker::TookOver { .. }
    ));

    // A new worker of its own takes it back on a planned frame, a few periods on.
    let mut back = Worker::start(&server, &format!("seats{tag}-w2"), None);
    back.send(assign(
        "sv1",
        Role::Standby {
            primary_pid: host.pid,
        },
        &state,
    ));
    ports(back.next());
    let at = segment.published().0.wrapping_add(8 * server.period());
    back.send(ToWorker::TakeOverAt {
        at,
        id: "sv1".into(),
    });
    match back.next() {
        FromWorker::TookOver { silent_frames } => {
            assert_eq!(silent_frames, Some(0), "no frame missing at the handover")
        }
        other => panic!("not took over: {other:?}"),
    }
    assert_eq!(segment.handover(), None, "the new owner cleared the record");
    wait_until_played_by(&segment, back.pid);

    // The seat stands by again, for the new primary: when it dies, the seat
    // takes the module back once more.
    host.to_seat(
        1,
        ToWorker::StandBy {
            primary_pid: back.pid,
        },
    );
    host.to_seat(1, ToWorker::Report { token: 72 });
    assert!(matches!(
        host.answer_of_seat(1),
        FromWorker::Report { token: 72, .. }
    ));
    back.kill();
    assert!(matches!(host.answer_of_seat(1), FromWorker::Promoted));
    wait_until_played_by(&segment, host.pid);

    // Freeing seat 1 frees it alone; then the host stops when told.
    host.to_seat(1, ToWorker::Free { token: 9 });
    assert!(matches!(
        host.answer_of_seat(1),
        FromWorker::Freed { token: 9 }
    ));
    host.send(ToWorker::Shutdown);
    let mut host = host;
    let deadline = Instant::now() + PATIENCE;
    while host.child.try_wait().expect("wait").is_none() {
        assert!(Instant::now() < deadline, "the host did not stop");
        std::thread::sleep(Duration::from_millis(20));
    }
}

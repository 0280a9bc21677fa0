//! Starting pool workers and listening to them.
//!
//! Each spawn runs on its own thread: start `modsynth-worker --pool`, wait for its
//! hello on an `IpcOneShotServer`, then keep reading its messages until its channel
//! closes. `accept()` has no timeout and would block forever if the child died before
//! connecting, so it runs on a helper thread while this one watches the child; if the
//! child dies (or takes too long), this thread unblocks `accept()` by connecting to the
//! server itself.

use crate::core::{Event, NewWorker, WorkerId};
use crate::sentinel::Sentinel;
use ipc_channel::ipc::{self, IpcOneShotServer, IpcReceiver, IpcSender};
use modsynth_control::protocol::{FromWorker, ToWorker};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

/// How long a worker may take from spawn to hello (opening a JACK client on a busy
/// server takes up to ~100 ms; this is a hang guard, not a target).
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

/// What every spawn needs.
#[derive(Clone, Debug)]
pub struct Spawner {
    /// The `modsynth-worker` binary.
    pub binary: PathBuf,
    /// Instance name: workers are `<instance>-wNN`.
    pub instance: String,
    /// Watches every worker that said hello.
    pub sentinel: Sentinel,
}

impl Spawner {
    /// The JACK client name of worker `id`.
    pub fn client_name(&self, id: WorkerId) -> String {
        format!("{}-w{id:02}", self.instance)
    }

    /// Starts worker `id` on a new thread; the outcome arrives on `events`.
    pub fn spawn(&self, id: WorkerId, events: Sender<Event>) {
        let this = self.clone();
        std::thread::Builder::new()
            .name(format!("worker-{id}"))
            .spawn(move || this.run(id, events))
            .expect("spawning a thread");
    }

    fn run(&self, id: WorkerId, events: Sender<Event>) {
        let started = Instant::now();
        let (receiver, hello, mut child) = match self.start(id) {
            Ok(v) => v,
            Err(reason) => {
                let _ = events.send(Event::SpawnFailed { id, reason });
                return;
            }
        };
        let FromWorker::Hello {
            pid,
            client,
            commands,
        } = hello
        else {
            let _ = child.kill();
            let _ = child.wait();
            let _ = events.send(Event::SpawnFailed {
                id,
                reason: "first message was not a hello".into(),
            });
            return;
        };
        self.sentinel.watch(id, pid);
        let new = NewWorker {
            id,
            pid,
            client,
            commands,
            spawn_time: started.elapsed(),
        };
        if events.send(Event::Spawned(new)).is_err() {
            let _ = child.kill();
        }
        // Forward everything the worker says; its channel closing means it is gone.
        while let Ok(msg) = receiver.recv() {
            if events.send(Event::FromWorker(id, msg)).is_err() {
                break;
            }
        }
        // Reap it so no zombie is left and its pid cannot be reused while we hold it.
        let status = child.wait();
        tracing::debug!("worker {id} exited: {status:?}");
        let _ = events.send(Event::WorkerGone(id));
    }

    fn start(&self, id: WorkerId) -> Result<(IpcReceiver<FromWorker>, FromWorker, Child), String> {
        let (server, server_name) =
            IpcOneShotServer::<FromWorker>::new().map_err(|e| format!("ipc server: {e}"))?;
        let client = self.client_name(id);
        let mut child = Command::new(&self.binary)
            .args(["--pool", "--client", &client, "--connect", &server_name])
            .stdin(Stdio::null())
            // Its own process group: a Ctrl-C in the terminal reaches the supervisor,
            // which stops workers in order, not every worker at once.
            .process_group(0)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", self.binary.display()))?;
        let (accepted_tx, accepted) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = accepted_tx.send(server.accept());
        });
        let deadline = Instant::now() + HELLO_TIMEOUT;
        loop {
            match accepted.recv_timeout(Duration::from_millis(5)) {
                Ok(Ok((receiver, hello))) => return Ok((receiver, hello, child)),
                Ok(Err(e)) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(format!("worker {client} did not connect: {e:?}"));
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return Err("accept thread vanished".into()),
            }
            let exited = child.try_wait().ok().flatten();
            if exited.is_some() || Instant::now() > deadline {
                let _ = child.kill();
                let status = child.wait();
                unblock_accept(&server_name);
                let _ = accepted.recv_timeout(Duration::from_secs(1));
                return Err(match exited {
                    Some(s) => format!(
                        "worker {client} exited before connecting ({s}); run it by hand to see why"
                    ),
                    None => format!(
                        "worker {client} did not connect within {HELLO_TIMEOUT:?} ({status:?})"
                    ),
                });
            }
        }
    }
}

/// Connects to a one-shot server whose child died, so its `accept()` returns.
fn unblock_accept(server_name: &str) {
    let Ok(sender) = IpcSender::<FromWorker>::connect(server_name.to_string()) else {
        return;
    };
    if let Ok((commands, _unused)) = ipc::channel::<ToWorker>() {
        let _ = sender.send(FromWorker::Hello {
            pid: 0,
            client: String::new(),
            commands,
        });
    }
}

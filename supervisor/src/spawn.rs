//! Starting pool workers and listening to them.
//!
//! Each spawn runs on its own thread: start `modsynth-worker --pool`, wait for its
//! hello on an `IpcOneShotServer`, then hand its channel and its `Spawned` event to
//! the core's loop and end. The loop reads the new worker's channel and watches its
//! pidfd from that event on (see [`event_loop`](crate::event_loop)), and reaps it
//! when it ends.
//! `accept()` has no timeout and would block forever if the child died before
//! connecting, so it runs on a helper thread while this one waits in `poll` on the
//! child's pidfd and an eventfd the helper rings once it accepted: a child that dies
//! while it starts is seen the moment it dies (not at the 10 s hello timeout, and without
//! waking to look), and this thread unblocks `accept()` by connecting to the server
//! itself.
//!
//! A worker inherits nothing of the supervisor but its standard output and error:
//! every other descriptor is made close-on-exec in the child between fork and exec
//! (`inherit_nothing`). libjack opens its sockets and its client's semaphore
//! without `O_CLOEXEC`, and once spares held copies of them, a SIGKILLed supervisor's
//! JACK client never went away for jackd2: the server waited on it every cycle and
//! every JACK application on it went silent (issue 11).

use crate::core::{Event, NewWorker, WorkerId};
use crate::event_loop::EventSender;
use ipc_channel::ipc::{self, IpcOneShotServer, IpcReceiver, IpcSender};
use modsynth_model::protocol::{FromWorker, ToWorker};
use rustix::event::{eventfd, poll, EventfdFlags, PollFd, PollFlags, Timespec};
use rustix::fd::OwnedFd;
use rustix::process::{pidfd_open, Pid, PidfdFlags};
use std::collections::HashMap;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver, Sender, TryRecvError};
use std::sync::Arc;
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
    /// Where a new worker's channel goes, before its `Spawned` event.
    pub channels: NewChannels,
    /// Where workers publish their cards (`<state dir>/workers`).
    pub cards: PathBuf,
    /// How long a worker without a module waits for a new supervisor after losing
    /// this one (`--spare-grace`).
    pub spare_grace: Duration,
}

/// New workers' channels on their way from the spawn threads to the core's loop.
/// A spawn thread puts a worker's channel here before it sends its `Spawned`
/// event, so the loop finds the channel when it handles that event
/// ([`ChannelsArriving::take`]). Cheap to clone.
#[derive(Clone, Debug)]
pub struct NewChannels {
    put: Sender<(WorkerId, IpcReceiver<FromWorker>)>,
}

/// The loop's end of [`NewChannels`].
#[derive(Debug)]
pub struct ChannelsArriving {
    arriving: Receiver<(WorkerId, IpcReceiver<FromWorker>)>,
    arrived: HashMap<WorkerId, IpcReceiver<FromWorker>>,
}

/// A pair of ends: the spawners', the loop's.
pub fn new_channels() -> (NewChannels, ChannelsArriving) {
    let (put, arriving) = mpsc::channel();
    (
        NewChannels { put },
        ChannelsArriving {
            arriving,
            arrived: HashMap::new(),
        },
    )
}

impl NewChannels {
    fn put(&self, id: WorkerId, receiver: IpcReceiver<FromWorker>) {
        // Fails only once the loop is gone (the supervisor is stopping).
        let _ = self.put.send((id, receiver));
    }
}

impl ChannelsArriving {
    /// Worker `id`'s channel, once its `Spawned` event arrived (`None`: it never
    /// had one here, which the loop treats as a worker gone).
    pub fn take(&mut self, id: WorkerId) -> Option<IpcReceiver<FromWorker>> {
        self.arrived.extend(self.arriving.try_iter());
        self.arrived.remove(&id)
    }
}

impl Spawner {
    /// The JACK client name of worker `id`.
    pub fn client_name(&self, id: WorkerId) -> String {
        format!("{}-w{id:02}", self.instance)
    }

    /// Starts worker `id` on a new thread; the outcome arrives on `events`.
    /// `seats` > 0 starts a standby host with that many seats (`--seats N`).
    pub fn spawn(&self, id: WorkerId, seats: u16, events: EventSender) {
        let this = self.clone();
        std::thread::Builder::new()
            .name(format!("worker-{id}"))
            .spawn(move || this.run(id, seats, events))
            .expect("spawning a thread");
    }

    fn run(&self, id: WorkerId, seats: u16, events: EventSender) {
        let started = Instant::now();
        let (receiver, hello, mut child) = match self.start(id, seats) {
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
            seats,
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
        let new = NewWorker {
            id,
            pid,
            client,
            commands,
            spawn_time: started.elapsed(),
            seats,
        };
        // The channel first: the loop takes it when it handles `Spawned`, so the
        // core knows the worker before anything it says is read.
        self.channels.put(id, receiver);
        if events.send(Event::Spawned(new)).is_err() {
            let _ = child.kill();
            let _ = child.wait();
        }
        // Not reaped here: the loop reaps it when its pidfd says it ended
        // (dropping a `Child` neither kills nor waits).
    }

    fn start(
        &self,
        id: WorkerId,
        seats: u16,
    ) -> Result<(IpcReceiver<FromWorker>, FromWorker, Child), String> {
        let (server, server_name) =
            IpcOneShotServer::<FromWorker>::new().map_err(|e| format!("ipc server: {e}"))?;
        let client = self.client_name(id);
        let mut command = Command::new(&self.binary);
        command
            .args(["--pool", "--client", &client, "--connect", &server_name])
            .arg("--cards")
            .arg(&self.cards)
            .arg("--spare-grace")
            .arg(self.spare_grace.as_secs_f64().to_string())
            .args(
                (seats > 0)
                    .then(|| ["--seats".to_string(), seats.to_string()])
                    .into_iter()
                    .flatten(),
            )
            .stdin(Stdio::null())
            // Its own process group: a Ctrl-C in the terminal reaches the supervisor,
            // which stops workers in order, not every worker at once.
            .process_group(0);
        let max_fd = descriptor_limit();
        // SAFETY: the closure runs in the forked child before exec; it only makes
        // raw syscalls (close_range, fcntl), which are async-signal-safe, touches no
        // lock and allocates nothing, as `pre_exec` requires.
        unsafe {
            command.pre_exec(move || {
                inherit_nothing(max_fd);
                Ok(())
            });
        }
        let mut child = command
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", self.binary.display()))?;
        let watch = match StartWatch::new(&child) {
            Ok(w) => w,
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                unblock_accept(&server_name);
                return Err(format!("cannot watch worker {client} start: {e}"));
            }
        };
        let (accepted_tx, accepted) = mpsc::channel();
        let accepted_rings = watch.accepted.clone();
        std::thread::spawn(move || {
            let _ = accepted_tx.send(server.accept());
            // The counter only has to be non-zero (see `EventSender::send`).
            let _ = rustix::io::write(&*accepted_rings, &1u64.to_ne_bytes());
        });
        let deadline = Instant::now() + HELLO_TIMEOUT;
        loop {
            match accepted.try_recv() {
                Ok(Ok((receiver, hello))) => return Ok((receiver, hello, child)),
                Ok(Err(e)) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(format!("worker {client} did not connect: {e:?}"));
                }
                Err(TryRecvError::Empty) => {}
                Err(TryRecvError::Disconnected) => return Err("accept thread vanished".into()),
            }
            watch.wait(deadline.saturating_duration_since(Instant::now()));
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

/// What a starting worker's spawner waits on: the child's pidfd (readable once it
/// has exited) and an eventfd the accepting thread rings.
struct StartWatch {
    pidfd: OwnedFd,
    accepted: Arc<OwnedFd>,
}

impl StartWatch {
    fn new(child: &Child) -> Result<StartWatch, String> {
        let pid = i32::try_from(child.id())
            .ok()
            .and_then(Pid::from_raw)
            .ok_or("no pid")?;
        // Our unreaped child: the pid cannot name another process yet.
        let pidfd = pidfd_open(pid, PidfdFlags::empty()).map_err(|e| format!("pidfd_open: {e}"))?;
        let accepted = eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)
            .map_err(|e| format!("eventfd: {e}"))?;
        Ok(StartWatch {
            pidfd,
            accepted: Arc::new(accepted),
        })
    }

    /// Returns when the child exited, the hello was accepted, or `timeout` passed.
    fn wait(&self, timeout: Duration) {
        let timeout = Timespec {
            tv_sec: timeout.as_secs() as i64,
            tv_nsec: timeout.subsec_nanos() as _,
        };
        let mut fds = [
            PollFd::new(&self.pidfd, PollFlags::IN),
            PollFd::new(&*self.accepted, PollFlags::IN),
        ];
        // EINTR or any other error: the caller looks at the child and the hello,
        // and waits again until its deadline.
        let _ = poll(&mut fds, Some(&timeout));
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
            seats: 0,
        });
    }
}

/// The highest descriptor number the process may hold (+1), read before forking: the
/// child must not allocate or read files to find it.
pub(crate) fn descriptor_limit() -> i32 {
    let mut limit = libc::rlimit {
        rlim_cur: 1024,
        rlim_max: 1024,
    };
    // SAFETY: getrlimit writes one rlimit into `limit`, which outlives the call.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return 1024;
    }
    limit.rlim_cur.min(1 << 20) as i32
}

/// In a forked child before exec: marks every descriptor above standard error
/// close-on-exec, so the new program starts with stdin, stdout and stderr only.
///
/// Chosen over spawning every worker before the supervisor opens its JACK client
/// (the pool is refilled all the time, long after that) and over a fork server (one
/// more process to supervise): the child's descriptor table is a private copy taken
/// at fork, so no descriptor another thread opens at the same time (libjack's
/// notification thread opens one per new JACK client) can slip through. Marking
/// rather than closing keeps std's exec-error pipe working until exec.
pub(crate) fn inherit_nothing(max_fd: i32) {
    // SAFETY: close_range only changes flags of this (forked) process's descriptors;
    // it reads no memory of ours.
    let marked = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            3u32,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    if marked == 0 {
        return;
    }
    // Kernels before 5.11 lack CLOSE_RANGE_CLOEXEC: one fcntl per possible descriptor
    // (EBADF for the ones not open, which is fine).
    for fd in 3..max_fd {
        // SAFETY: fcntl on a descriptor number only sets its flag or fails with EBADF.
        unsafe {
            libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
        }
    }
}
